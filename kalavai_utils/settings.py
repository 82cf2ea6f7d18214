"""Execution settings: the KALAVAI_* environment variables, read and checked in this one place.

Each one changes how a run executes (sharding, compilation, worker processes, a cache's
memory, where runs go, which Python), never which experiment runs: experimental parameters
live in `scales.py` and in the notebooks' `parameters` cells, where the results record them.
The one exception is a test's: KALAVAI_SIZES=ci shrinks a Hub scale's sizes (steps, documents,
batches; scales.CI_SIZES) so that its code paths run on a CPU against a local Hub, never as a result.
`settings()` reads the environment at each call (tests and notebooks that set a variable are
seen at once); a bad value is one line naming the variable and what it accepts.
`python -m kalavai_utils env` prints them all; docs/configuration.md has the table.

Foundation layer: imports nothing of the package but `errors`.
"""

from __future__ import annotations

import functools
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import KalavaiError

ROOT = Path(__file__).resolve().parents[1]  # the repository: a relative KALAVAI_RUNS is taken from here

FSDP_ENV = "KALAVAI_FSDP"
COMPILE_ENV = "KALAVAI_COMPILE"
WORKERS_ENV = "KALAVAI_WORKERS"
PREFIX_CACHE_ENV = "KALAVAI_PREFIX_CACHE_GB"
RUNS_ENV = "KALAVAI_RUNS"
PYTHON_ENV = "KALAVAI_PYTHON"
VENV_ENV = "KALAVAI_VENV"
SIZES_ENV = "KALAVAI_SIZES"
SIZES = ("full", "ci")
# No longer read: an experimental parameter, now notebook 05's `capacity_pretrain_fraction`.
RETIRED = {
    "KALAVAI_CAPACITY_PRETRAIN_FRACTION": "the capacity control's pretraining fraction is notebook 05's "
    "parameter: ./run_all.sh --only 05 --capacity-pretrain-fraction F"
}


@dataclass(frozen=True)
class Settings:
    # Shard weights, gradients and optimizer state over the launched processes (torch FSDP2):
    # the only way 6.9b's specialists fit; the same numbers as data parallel up to float rounding.
    fsdp: bool = False
    # torch.compile the model before training: about 2x steady-state speed on an H100 at 410M
    # after a one-time compile; an execution choice, so no cache key holds it.
    compile: bool = False
    # Worker processes that run independent cooperatives side by side (None: 2 on a CPU with
    # 2+ threads, 1 on a GPU). Numbers equal a serial run's up to float rounding (~4e-8 nats).
    workers: int | None = None
    # GiB of frozen-prefix outputs kept in memory on a CPU (0: off). Exact: no number moves.
    prefix_cache_gb: float = 4.0
    # Where runs/<scale>/ goes (checkpoints, results, executed notebooks): large, so movable.
    runs: Path = ROOT / "runs"
    # The interpreter run_all.sh / run_tests.sh use instead of creating ./.venv (a conda env on a GPU machine).
    python: str | None = None
    # Where scripts/ensure_env.sh creates the CPU virtual environment when KALAVAI_PYTHON is unset.
    venv: str = ".venv"
    # "ci": a Hub scale's steps, documents and batches cut to a code-path test (scales.CI_SIZES).
    sizes: str = "full"


@dataclass(frozen=True)
class Variable:
    """One environment variable: its field in Settings and its documentation (the `env` command's rows)."""

    name: str
    field: str
    accepted: str
    meaning: str
    changes_numbers: str  # "no", or how


VARIABLES = (
    Variable(
        name=FSDP_ENV,
        field="fsdp",
        accepted="0 or 1",
        meaning="shard training over the launched processes (torch FSDP2; 6.9b needs it)",
        changes_numbers="no (float rounding only)",
    ),
    Variable(
        name=COMPILE_ENV,
        field="compile",
        accepted="0 or 1",
        meaning="torch.compile the model before training (a GPU speed-up)",
        changes_numbers="no (float rounding only)",
    ),
    Variable(
        name=WORKERS_ENV,
        field="workers",
        accepted="a positive integer",
        meaning="worker processes for independent cooperatives (default: 2 on a CPU, 1 on a GPU)",
        changes_numbers="float rounding only (about 4e-8 nats)",
    ),
    Variable(
        name=PREFIX_CACHE_ENV,
        field="prefix_cache_gb",
        accepted="a number >= 0 (GiB; 0 turns it off)",
        meaning="memory for the CPU cache of frozen-prefix outputs",
        changes_numbers="no (exact)",
    ),
    Variable(
        name=RUNS_ENV,
        field="runs",
        accepted="a folder (relative: from the repository root)",
        meaning="where runs/<scale>/ is written and read",
        changes_numbers="no",
    ),
    Variable(
        name=PYTHON_ENV,
        field="python",
        accepted="a Python interpreter",
        meaning="the interpreter run_all.sh and run_tests.sh use (read by scripts/ensure_env.sh)",
        changes_numbers="no (unless its packages differ from the pins)",
    ),
    Variable(
        name=VENV_ENV,
        field="venv",
        accepted="a folder",
        meaning="where scripts/ensure_env.sh creates the CPU environment (read by scripts/ensure_env.sh)",
        changes_numbers="no",
    ),
    Variable(
        name=SIZES_ENV,
        field="sizes",
        accepted="full or ci",
        meaning="ci: a Hub scale's steps, documents and batches cut to a test of its code paths (local Hub, CPU)",
        changes_numbers="yes: a code-path test, never a result",
    ),
)
NAMES = tuple(v.name for v in VARIABLES)


def _flag(name: str, text: str) -> bool:
    if text not in ("0", "1"):
        raise KalavaiError(f"{name} must be 0 or 1, got {text!r}")
    return text == "1"


def _positive_int(name: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise KalavaiError(f"{name} must be a positive integer (1 runs everything in one process), got {text!r}")
    return int(text)


def _gib(name: str, text: str) -> float:
    try:
        gb = float(text)
    except ValueError:
        gb = math.nan
    if not 0 <= gb < math.inf:
        raise KalavaiError(
            f"{name} must be a number >= 0, the prefix cache's size in GiB (0 turns it off), got {text!r}"
        )
    return gb


def _folder(name: str, text: str) -> Path:
    return Path(text) if Path(text).is_absolute() else ROOT / text


def _text(name: str, text: str) -> str:
    return text


def _sizes(name: str, text: str) -> str:
    if text not in SIZES:
        raise KalavaiError(f"{name} must be one of {', '.join(SIZES)}, got {text!r}")
    return text


_PARSE = {
    "fsdp": _flag,
    "compile": _flag,
    "workers": _positive_int,
    "prefix_cache_gb": _gib,
    "runs": _folder,
    "python": _text,
    "venv": _text,
    "sizes": _sizes,
}


@functools.lru_cache(maxsize=16)
def _parse(values: tuple) -> Settings:
    for name, text in zip(RETIRED, values[len(NAMES) :]):
        if text:
            raise KalavaiError(f"{name} is no longer read: {RETIRED[name]}")
    # An empty value counts as unset (`KALAVAI_WORKERS= ./run_all.sh` means the default).
    return Settings(
        **{
            v.field: _PARSE[v.field](v.name, text.strip())
            for v, text in zip(VARIABLES, values)
            if text is not None and text.strip()
        }
    )


def settings() -> Settings:
    """The execution settings of this process's environment, now (checked; KalavaiError on a bad value)."""
    return _parse(tuple(os.environ.get(n) for n in (*NAMES, *RETIRED)))


def _show(field: str, value) -> str:
    if value is None:
        return "auto" if field == "workers" else "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe() -> list[dict]:
    """Every variable: name, value, source ("environment" or "default"), accepted values, meaning."""
    current = settings()
    return [
        {
            "name": v.name,
            "value": _show(v.field, getattr(current, v.field)),
            "source": "environment" if os.environ.get(v.name, "").strip() else "default",
            "accepted": v.accepted,
            "meaning": v.meaning,
            "changes_numbers": v.changes_numbers,
        }
        for v in VARIABLES
    ]


@contextmanager
def override(**values):
    """Run with these settings (field=value) set in the environment, restored afterwards; worker
    processes started inside inherit them. A value is checked as the variable's text would be."""
    by_field = {v.field: v for v in VARIABLES}
    unknown = set(values) - set(by_field)
    if unknown:
        raise KalavaiError(
            f"no such setting: {', '.join(sorted(unknown))} (known: {', '.join(f.name for f in fields(Settings))})"
        )
    texts = {by_field[f].name: ("1" if v else "0") if isinstance(v, bool) else str(v) for f, v in values.items()}
    for f, text in zip(values, texts.values()):
        _PARSE[f](by_field[f].name, text)
    old = {name: os.environ.get(name) for name in texts}
    os.environ.update(texts)
    try:
        yield settings()
    finally:
        for name, text in old.items():
            if text is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = text
