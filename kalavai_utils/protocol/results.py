"""The one results schema (JSON) for every experiment of the project.

A results file holds what a figure or table needs and how it was made: configuration,
seed, base fingerprint, library versions, the model x domain held-out loss matrix, and
the metrics PAPER.md §4 defines (EW losses, gains, divergences, oracle, conversion
efficiency), plus router gates per domain. Figures and tables read these files only.
"""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path

from ..errors import KalavaiError
from ..storage import atomic_write_json, read_json
from .metrics import summarize

SCHEMA = "kalavai.results/1"
REQUIRED = (
    "schema",
    "experiment",
    "condition",
    "scale",
    "seed",
    "config",
    "base_fingerprint",
    "versions",
    "domains",
    "losses",
    "specialists",
    "metrics",
)
PACKAGES = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors", "numpy", "statsmodels")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def make_results(
    *,
    experiment: str,
    condition: str,
    scale: str,
    seed: int,
    config: dict,
    base_fingerprint: str,
    domains,
    losses: dict[str, dict[str, float]],
    specialists: dict[str, str],
    gates: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Assemble one results record; the metrics are computed here, never typed in."""
    domains = list(domains)
    return {
        "schema": SCHEMA,
        "experiment": experiment,
        "condition": condition,
        "scale": scale,
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "base_fingerprint": base_fingerprint,
        "versions": library_versions(),
        "domains": domains,
        "losses": losses,
        "specialists": specialists,
        "metrics": summarize(losses, specialists, domains),
        "gates": gates or {},
        "extra": extra or {},
    }


def write_results(path: str | Path, results: dict) -> Path:
    validate(results, path)
    return atomic_write_json(path, results)


def validate(results: dict, where="results") -> dict:
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise KalavaiError(f"{where}: not a {SCHEMA} results file")
    missing = [k for k in REQUIRED if k not in results]
    if missing:
        raise KalavaiError(f"{where}: results file lacks {', '.join(missing)}")
    return results


def load_results(path: str | Path) -> dict:
    return validate(read_json(path), path)


def specialist_names(result: dict) -> list[str]:
    """The specialists' model names in the cooperative's domain order (runs before 2026-11-24 wrote sorted files)."""
    return [result["specialists"][d] for d in result["domains"] if d in result["specialists"]]


def gate_matrix(result: dict, model: str, expert_names: list[str] | None = None):
    """Mean gate of each expert (columns) on each domain's held-out chunks (rows), both in the
    cooperative's domain order, as a DataFrame.

    The gate lists are indexed in that order, so rows follow it too rather than the dict's order
    (files written before 2026-11-24 have their keys sorted). Columns are named by
    `expert_names` (default: the domains).
    """
    import pandas as pd

    domains = list(result["domains"])
    gates = result["gates"][model]
    rows = [d for d in domains if d in gates] + [d for d in gates if d not in domains]  # extra held-out sets last
    return pd.DataFrame([gates[d] for d in rows], index=rows, columns=expert_names or domains)
