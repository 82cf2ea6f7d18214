"""Predict a cooperative's fusion gain before any router is trained.

All it needs is each specialist's own-domain held-out loss against the base's (their
divergences) and a fitted divergence -> gain line: this project's sweep fit (notebook 04
writes it) or the paper's line.

    python -m kalavai_utils predict-gain --base DIR --submissions DIR... --data DIR --fit paper
"""
from __future__ import annotations

from pathlib import Path

from . import data, prediction
from .evaluation import domain_loss
from .metrics import divergence_pct
from .models import load_causal_lm
from .storage import read_json
from .submission import collect_submissions


def choose_fit(fit: str):
    """'paper' -> the paper's line; anything else is a fit file written by notebook 04."""
    if fit == "paper":
        return prediction.paper_fit(), {"source": "paper (fit script points)"}
    line, meta = prediction.load_fit(fit)
    return line, {"source": str(fit), **meta}


def own_domain_divergences(base, submissions, data_dir: Path, eval_batch: int = 4, max_batches: int = 50) -> dict:
    """Each contributor's divergence on its own domain's held-out chunks."""
    out = {}
    for sub in submissions:
        domain = sub.manifest["data"].get("domain", sub.name)
        heldout = data.load_split(data_dir, domain, "heldout")
        out[sub.name] = divergence_pct(domain_loss(base, heldout, eval_batch, max_batches),
                                       domain_loss(sub.model, heldout, eval_batch, max_batches))
    return out


def forecast(base_dir: str, submission_dirs, data_dir: str, fit: str = "paper", freeze_layers: int | None = None) -> dict:
    base = load_causal_lm(base_dir)
    if freeze_layers is None:  # the coordinator's K; by default the one the first submission declares
        freeze_layers = int(read_json(Path(submission_dirs[0]) / "kalavai_submission.json")["freeze_layers"])
    subs = collect_submissions(submission_dirs, base, freeze_layers)
    divergences = own_domain_divergences(base, subs, Path(data_dir))
    line, meta = choose_fit(fit)
    return {**prediction.predict_gain(divergences, line), "fit": meta}


def describe(result: dict) -> str:
    lines = [f"mean divergence {result['mean_divergence']:.2f}% -> predicted gain {result['predicted_gain']:+.2f}% "
             f"(95% band {result['lo']:+.2f} .. {result['hi']:+.2f}) using {result['fit']['source']}"]
    if result["non_improving"]:
        lines.append(f"WARNING: no improvement over the base on their own domain: {', '.join(result['non_improving'])}")
    if result["below_floor"]:
        lines.append("WARNING: below the no-gain floor: fusion is not expected to beat the best specialist")
    if result.get("outside_fit_range"):
        lines.append("note: this divergence lies outside the range the fit was made on (extrapolation)")
    return "\n".join(lines)
