"""Predict a cooperative's fusion gain before any router is trained.

All it needs is each specialist's own-domain held-out loss against the base's (their
divergences) and a fitted divergence -> gain line: this project's sweep fit (notebook 04
writes it) or the paper's line.

    python -m kalavai_utils predict-gain --base DIR --submissions DIR... --data DIR --fit paper --scale tiny

The frozen depth K comes from the coordinator (--freeze-layers, or --scale's setting), never
from a submission.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import KalavaiError
from ..scales import get_scale
from ..storage import printable, sha256_bytes
from . import data, prediction
from .evaluation import domain_loss
from .metrics import divergence_pct
from .models import load_causal_lm
from .submission import iter_submissions


def choose_fit(fit: str):
    """'paper' -> the paper's line; anything else is a fit file written by notebook 04."""
    if fit == "paper":
        return prediction.paper_fit(), {"source": "paper (fit script points)"}
    line, meta = prediction.load_fit(fit)
    return line, {"source": str(fit), **meta}


def check_recorded_heldout(manifest: dict, heldout, path, submission) -> None:
    """The held-out chunks read from `path` are the split the submission recorded, if it recorded one
    (train-specialist --heldout-out writes its hash into the manifest's data)."""
    recorded = manifest["data"].get("heldout_chunks_sha256")
    if recorded is not None and recorded != sha256_bytes(heldout.int().numpy().tobytes()):
        raise KalavaiError(
            f"{printable(path)}: not the held-out split submission {printable(submission)} recorded "
            "(heldout_chunks_sha256 differs)"
        )


def own_domain_divergences(base, submissions, data_dir: Path, eval_batch: int = 4, max_batches: int = 50) -> dict:
    """Each contributor's divergence on its own domain's held-out chunks.

    The domain names a folder under `data_dir`, so it must be a plain name (load_split checks);
    a held-out split the submission recorded (train-specialist --heldout-out) must be the one read.
    """
    out = {}
    for sub in submissions:
        domain = sub.manifest["data"].get("domain", sub.name)
        try:
            heldout = data.load_split(data_dir, domain, "heldout")
        except KalavaiError as e:
            raise KalavaiError(f"submission {printable(sub.folder)}: {e}") from None
        path = data_dir / domain / "heldout.safetensors"
        check_recorded_heldout(sub.manifest, heldout, path, sub.folder)
        if len(heldout) == 0:
            raise KalavaiError(f"{path}: no held-out chunks")
        if heldout.min() < 0 or heldout.max() >= base.config.vocab_size:
            raise KalavaiError(f"{path}: token ids outside the base's vocabulary of {base.config.vocab_size}")
        out[sub.name] = divergence_pct(
            domain_loss(base, heldout, eval_batch, max_batches),
            domain_loss(sub.model, heldout, eval_batch, max_batches),
        )
    return out


def coordinator_freeze_layers(freeze_layers: int | None, scale: str | None) -> int:
    """The frozen depth K the submissions are checked against: the coordinator's own input.

    Given directly or as the scale's setting, never read from a submission: a contributor
    that declared its own K would then choose what "frozen" is checked against.
    """
    if scale is not None:
        from_scale = get_scale(scale).freeze_layers
        if freeze_layers is not None and freeze_layers != from_scale:
            raise KalavaiError(
                f"--freeze-layers {freeze_layers} contradicts scale {scale!r} (freeze_layers {from_scale})"
            )
        return from_scale
    if freeze_layers is None:
        raise KalavaiError("the coordinator's frozen depth is needed: give --freeze-layers K or --scale NAME")
    if isinstance(freeze_layers, bool) or not isinstance(freeze_layers, int) or freeze_layers < 0:
        raise KalavaiError(f"--freeze-layers must be a non-negative integer, got {freeze_layers!r}")
    return freeze_layers


def forecast(
    base_dir: str,
    submission_dirs,
    data_dir: str,
    fit: str = "paper",
    freeze_layers: int | None = None,
    scale: str | None = None,
) -> dict:
    freeze_layers = coordinator_freeze_layers(freeze_layers, scale)  # before anything is loaded
    line, meta = choose_fit(fit)  # a bad fit file is bad input: refused before any work
    base = load_causal_lm(base_dir)
    subs = iter_submissions(submission_dirs, base, freeze_layers, base_dir=base_dir)  # one loaded at a time
    divergences = own_domain_divergences(base, subs, Path(data_dir))
    return {**prediction.predict_gain(divergences, line), "fit": meta}


def describe(result: dict) -> str:
    lines = [
        f"mean divergence {result['mean_divergence']:.2f}% -> predicted gain {result['predicted_gain']:+.2f}% "
        f"(95% band {result['lo']:+.2f} .. {result['hi']:+.2f}) using {result['fit']['source']}"
    ]
    if result["non_improving"]:
        lines.append(f"WARNING: no improvement over the base on their own domain: {', '.join(result['non_improving'])}")
    if result["below_floor"]:
        lines.append("WARNING: below the no-gain floor: fusion is not expected to beat the best specialist")
    if result.get("outside_fit_range"):
        lines.append("note: this divergence lies outside the range the fit was made on (extrapolation)")
    return "\n".join(lines)
