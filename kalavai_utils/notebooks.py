"""Run the numbered notebooks headless with papermill, each with its parameters cell filled in.

An executed notebook is meant to be read like the paper, so the kernel runs without
progress bars (every refresh of a bar would be stored as output) and without the one
warning tqdm raises about missing notebook widgets. Progress goes to the terminal
instead: papermill's own cell bar for each notebook, labelled `i/n`, plus the run's
elapsed and expected time, the expectation coming from the previous run's timings (on a
first run, the committed reference run's: results/<scale>/timings.json).

With `processes` (run_all's `--processes N`), notebook 02's training runs just before it over N
processes of this machine (`accelerate launch` of `kalavai train-cooperative`: data parallel,
or sharded with KALAVAI_FSDP=1), and the notebooks, in one process, then find it done.

Besides `runs/<scale>/notebooks/`, a run keeps
    timings.json          seconds per notebook (and for `train-cooperative`), total, machine
    report/<nb>.html      each executed notebook rendered by nbconvert
    report/index.html     links to them, with their times
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import KalavaiError
from .protocol.pipeline import ROOT, run_dir
from .protocol.training import TrainConfig, local_grad_accum
from .runtime.sharding import refuse_unsharded
from .scales import SHARDED_SCALES, get_scale
from .settings import FSDP_ENV, settings
from .storage import atomic_write_json, atomic_write_text, read_json

NOTEBOOK_DIR = ROOT / "notebooks"
MAIN_RESULT = ("00", "01", "02", "03")  # all that runs at a scale whose specialists train sharded
LAUNCH_CONFIG = ROOT / "accelerate_configs" / "multi_gpu.yaml"
TIMINGS = "timings.json"
REPORT = "report"

# The kernel inherits these (only for the duration of a run).
KERNEL_ENV = {
    # tqdm's env vars only supply defaults: a bar created with an explicit `disable=False`
    # still draws. `disable=None` (off when stderr is not a terminal, as in a kernel) also
    # keeps the kernel's notebooks clean.
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}
# tqdm.auto warns on import inside a kernel without ipywidgets, although no bar is drawn.
KERNEL_WARNING_FILTERS = ("ignore:IProgress not found",)


def available() -> dict[str, Path]:
    """Notebook number ("00", "01", ...) -> path."""
    return {p.name[:2]: p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))}


def select(only: str | None, scale_name: str | None = None) -> list[Path]:
    """The notebooks to run: those of `only` ("00,02"), else every one the scale runs."""
    notebooks = available()
    sharded = scale_name in SHARDED_SCALES
    if not only:
        return [p for n, p in notebooks.items() if n in MAIN_RESULT or not sharded]
    wanted = [n.strip().zfill(2) for n in only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in notebooks]
    if unknown:
        raise KalavaiError(f"unknown notebook number(s) {', '.join(unknown)}; available: {', '.join(notebooks)}")
    beyond = [n for n in wanted if sharded and n not in MAIN_RESULT]
    if beyond:
        raise KalavaiError(
            f"at scale {scale_name} only the main result runs (notebooks {', '.join(MAIN_RESULT)}), "
            f"as in the paper: notebook(s) {', '.join(beyond)} would train dozens more sharded specialists"
        )
    return [notebooks[n] for n in sorted(wanted)]


def parse_processes(processes: str | int | None, scale_name: str, selected: list[Path]) -> int | None:
    """The process count for notebook 02's training, checked now rather than after notebooks 00-01:
    it must split the scale's global batch evenly, and a scale that trains sharded needs it."""
    n = None
    if processes is not None:
        try:
            n = int(processes)
        except ValueError:
            n = 0
        if n < 1:
            raise KalavaiError(f"--processes takes a positive number, got {processes!r}")
        scale = get_scale(scale_name)
        local_grad_accum(TrainConfig.specialist(scale, scale.seeds[0]), n)
    if scale_name in SHARDED_SCALES and any(nb.name.startswith("02") for nb in selected):
        refuse_unsharded(scale_name, n or 1)
    return n


def parse_capacity_fraction(value: str | float | None, scale_name: str) -> float | None:
    """Notebook 05's capacity_pretrain_fraction from the command line (None: the notebook's default), checked now."""
    if value is None:
        return None
    from .experiments.ablations import capacity_pretrain_fraction, check_capacity_fraction

    fraction = check_capacity_fraction(value)
    capacity_pretrain_fraction(get_scale(scale_name), fraction)  # refused where it cannot apply (a Hub scale)
    return fraction


def parse_ablation_sections(value: str | None, scale_name: str) -> list[str] | None:
    """Notebook 05's `sections` from the command line ("freeze,crossover"; None: the scale's
    default, ablations.default_sections), checked now."""
    from .experiments.ablations import check_sections

    get_scale(scale_name)
    sections = check_sections(value)
    return list(sections) if sections else None


def parse_seeds(seeds: str | None) -> list[int] | None:
    if not seeds:
        return None
    try:
        parsed = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise KalavaiError(f"--seeds takes comma-separated integers, got {seeds!r}") from None
    if not parsed:
        raise KalavaiError(f"--seeds takes comma-separated integers, got {seeds!r} (no seed in it)")
    return parsed


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# ---------------------------------------------------------------- timings


def read_timings(folder: Path) -> dict:
    path = folder / TIMINGS
    return read_json(path) if path.exists() else {}


def cpu_name() -> str:
    """The processor's model name (Linux), else what the platform says."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def record_timing(folder: Path, scale: str, notebook: str, seconds: float) -> dict:
    """Merge one notebook's time into timings.json (a partial run keeps the others')."""
    import torch  # the kernel inherits this process's environment, hence its thread count

    timings = read_timings(folder)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    per_nb = dict(timings.get("notebooks", {}))
    per_nb[notebook] = {"seconds": round(seconds, 2), "date": now}
    timings = {
        "scale": scale,
        "notebooks": dict(sorted(per_nb.items())),
        "total_seconds": round(sum(t["seconds"] for t in per_nb.values()), 2),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_name(),
        # the vector instructions torch's kernels use: another set sums in another order (docs/reproducibility.md)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "date": now,
    }
    atomic_write_json(folder / TIMINGS, timings)
    return timings


def previous_timings(folder: Path, scale: str, reference_root: Path = ROOT / "results") -> dict:
    """The last run's timings in `folder`, and for each notebook it has not timed yet (a first run in
    a fresh clone, or a partial one) the committed reference run's."""
    own, reference = read_timings(folder), read_timings(Path(reference_root) / scale)
    return {**reference, **own, "notebooks": {**reference.get("notebooks", {}), **own.get("notebooks", {})}}


def expected_seconds(timings: dict, stems: list[str]) -> tuple[float, list[str]]:
    """Sum of the previous run's times for `stems`, and the stems it has no time for."""
    known = timings.get("notebooks", {})
    return sum(known[s]["seconds"] for s in stems if s in known), [s for s in stems if s not in known]


def _expectation(seconds: float, unknown: list[str]) -> str:
    if not unknown:
        return f"about {fmt_seconds(seconds)}"
    # the first name only: the list would repeat itself on every line of a first run
    missing = f"no earlier time for {unknown[0]}" + (f" and {len(unknown) - 1} more" if len(unknown) > 1 else "")
    return f"at least {fmt_seconds(seconds)} ({missing})" if seconds else f"unknown ({missing})"


def _kernel_manager_config():
    """Encrypt the kernel's local sockets where pyzmq can (ipykernel warns on every start otherwise)."""
    import zmq
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


# ---------------------------------------------------------------- report


def write_report(folder: Path) -> Path:
    """report/<nb>.html for every executed notebook of the run, and an index linking them."""
    from nbconvert import HTMLExporter

    report = folder / REPORT
    exporter = HTMLExporter()
    times = read_timings(folder).get("notebooks", {})
    rows = []
    for nb in sorted((folder / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if nb.stem.endswith(".failed"):
            continue
        page = report / f"{nb.stem}.html"
        if not page.exists() or page.stat().st_mtime < nb.stat().st_mtime:
            body, _ = exporter.from_filename(str(nb))
            atomic_write_text(page, body)
        t = times.get(nb.stem, {})
        rows.append(
            f'<tr><td><a href="{html.escape(page.name)}">{html.escape(nb.stem)}</a></td>'
            f"<td>{fmt_seconds(t.get('seconds'))}</td><td>{html.escape(t.get('date', ''))}</td></tr>"
        )
    title = f"KALAVAI reproduction: executed notebooks, scale {html.escape(folder.name)}"
    index = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title></head><body>\n"
        f"<h1>{title}</h1>\n<table>\n<tr><th>notebook</th><th>time</th><th>finished (UTC)</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n</body></html>\n"
    )
    return atomic_write_text(report / "index.html", index)


# ---------------------------------------------------------------- running


@contextmanager
def kernel_environment():
    """Set KERNEL_ENV (and the warning filter) for kernels started inside; restore afterwards."""
    env = dict(KERNEL_ENV)
    env["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), *KERNEL_WARNING_FILTERS]))
    env[FSDP_ENV] = None  # a kernel is one process: sharding is for the launched training (`processes`)
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def launch_training(scale_name: str, processes: int, seeds: str | None = None, runs_root: str | None = None) -> float:
    """Notebook 02's training over `processes` processes of this machine; returns its seconds.

    `accelerate launch` with accelerate_configs/multi_gpu.yaml, on gloo CPU processes where
    there is no GPU; KALAVAI_FSDP=1 in the environment shards the model.
    """
    import torch

    with socket.socket() as s:  # a free port, so that two runs on one machine do not meet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(LAUNCH_CONFIG),
        "--num_processes",
        str(processes),
        "--main_process_port",
        str(port),
        "-m",
        "kalavai_utils",
        "train-cooperative",
        "--scale",
        scale_name,
    ]
    cmd += ["--seeds", seeds] if seeds else []
    cmd += ["--runs-root", str(Path(runs_root).resolve())] if runs_root else []
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"
    began = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise KalavaiError(
            f"notebook 02's training over {processes} processes failed (exit {done.returncode}; "
            "its error is printed above)"
        )
    return time.perf_counter() - began


def run_notebooks(
    scale_name: str,
    only: str | None = None,
    seeds: str | None = None,
    runs_root: str | None = None,
    kernel: str | None = None,
    processes: str | int | None = None,
    capacity_pretrain_fraction: str | float | None = None,
    ablation_sections: str | None = None,
) -> list[Path]:
    import papermill as pm

    settings()  # a bad KALAVAI_* value fails now, not in a notebook
    scale = get_scale(scale_name)
    selected = select(only, scale.name)
    processes = parse_processes(processes, scale.name, selected)
    parsed_seeds = parse_seeds(seeds)
    fraction = parse_capacity_fraction(capacity_pretrain_fraction, scale.name)
    sections = parse_ablation_sections(ablation_sections, scale.name)
    folder = run_dir(scale, runs_root)
    out_dir = folder / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {
        "scale": scale.name,
        "seeds": parsed_seeds,
        "runs_root": str(Path(runs_root).resolve()) if runs_root else None,
    }
    previous = previous_timings(folder, scale.name)
    stems = [nb.stem for nb in selected]
    n = len(selected)
    total, unknown = expected_seconds(previous, stems)
    print(
        f"[kalavai] {n} notebook(s) at scale {scale.name}; expected {_expectation(total, unknown)}"
        + (f", from the run of {previous['date']}" if previous.get("date") else ""),
        flush=True,
    )
    written = []
    start = time.perf_counter()
    if processes and not any(nb.name.startswith("02") for nb in selected):
        print("[kalavai] --processes: notebook 02 is not among these, so no training is launched", flush=True)
    if fraction is not None and not any(nb.name.startswith("05") for nb in selected):
        print(
            "[kalavai] --capacity-pretrain-fraction: notebook 05 is not among these, so it changes nothing", flush=True
        )
    if sections is not None and not any(nb.name.startswith("05") for nb in selected):
        print("[kalavai] --ablation-sections: notebook 05 is not among these, so it changes nothing", flush=True)
    for i, nb in enumerate(selected, 1):
        if processes and nb.name.startswith("02"):  # after 00 and 01: the data and base are ready
            print(
                f"[kalavai] training notebook 02's specialists over {processes} processes (accelerate launch)",
                flush=True,
            )
            seconds = launch_training(scale.name, processes, seeds, runs_root)
            record_timing(folder, scale.name, "train-cooperative", seconds)
            print(f"[kalavai] trained in {fmt_seconds(seconds)}", flush=True)
        out = out_dir / nb.name
        tmp = out.with_name(f".{nb.stem}.running.ipynb")
        last = previous.get("notebooks", {}).get(nb.stem, {}).get("seconds")
        print(
            f"[kalavai] {i}/{n} {nb.stem} -> {out}" + (f" (last run {fmt_seconds(last)})" if last else ""), flush=True
        )
        # Explicit: the kernel's TQDM_DISABLE is set in this process too while a notebook runs.
        bar = {"desc": f"{i}/{n} {nb.stem}", "disable": False}
        began = time.perf_counter()
        try:
            with kernel_environment():
                # notebook 05's own parameters only where given: a default run's parameters stay as they were
                extra = {}
                if nb.name.startswith("05"):
                    extra = {
                        k: v
                        for k, v in (("capacity_pretrain_fraction", fraction), ("sections", sections))
                        if v is not None
                    }
                pm.execute_notebook(
                    str(nb),
                    str(tmp),
                    parameters={**params, **extra},
                    kernel_name=kernel or "python3",
                    cwd=str(NOTEBOOK_DIR),
                    progress_bar=bar,
                    log_output=False,
                    config=_kernel_manager_config(),
                )
        except pm.PapermillExecutionError as e:
            failed = out.with_name(f"{nb.stem}.failed.ipynb")
            os.replace(tmp, failed)
            raise KalavaiError(f"notebook {nb.name} failed ({e.ename}: {e.evalue}); see {failed}") from None
        seconds = time.perf_counter() - began
        os.replace(tmp, out)  # a finished notebook appears whole or not at all
        written.append(out)
        record_timing(folder, scale.name, nb.stem, seconds)
        write_report(folder)
        left, left_unknown = expected_seconds(previous, stems[i:])
        print(
            f"[kalavai] {i}/{n} {nb.stem} done in {fmt_seconds(seconds)}; elapsed {fmt_seconds(time.perf_counter() - start)}"
            + (f", {_expectation(left, left_unknown)} left" if i < n else ""),
            flush=True,
        )
    print(f"[kalavai] timings: {folder / TIMINGS}; report: {folder / REPORT / 'index.html'}", flush=True)
    return written
