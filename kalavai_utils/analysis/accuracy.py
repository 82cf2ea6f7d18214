"""Does the fused model's loss gain carry over to multiple-choice accuracy? (protocol/choice.py scores it.)"""

from __future__ import annotations

from pathlib import Path

from ..protocol.cooperative import CAUSAL_FUSED, paper_fused
from ..protocol.metrics import best_specialist, equal_weight, improvement_pct
from ..scales import get_scale
from ..storage import read_json
from ..verdicts import Verdict


def loss_gain_carries_over(results: dict, accuracies: dict[str, dict], fused: str, task: str) -> Verdict:
    """The rule, on one task and one fused model, with `acc`:

    - the loss gain: the fused model's equal-weight held-out loss against the best specialist's
      (results.json, the paper's gain). Without a gain (the fused loss is not lower) there is
      nothing to carry over: inconclusive.
    - the comparator: the most accurate single model on the task among the base and the specialists.
    - holds when the lower end of the fused model's Wilson 95% interval is above the comparator's
      accuracy; does not hold when the fused model's accuracy is at or below the comparator's;
      inconclusive in between (more accurate, but within its own interval's reach of the comparator).
    """
    domains, specialists, losses = results["domains"], results["specialists"], results["losses"]
    best = best_specialist(losses, specialists, domains)
    gain = improvement_pct(equal_weight(losses[fused], domains), equal_weight(losses[best], domains))
    singles = ["base", *specialists.values()]
    rival = max(singles, key=lambda m: (accuracies[m]["acc"], -singles.index(m)))
    a, r = accuracies[fused], accuracies[rival]
    if gain <= 0:
        holds = None
    elif a["acc_lo"] > r["acc"]:
        holds = True
    elif a["acc"] <= r["acc"]:
        holds = False
    else:
        holds = None
    numbers = (
        f"loss gain {gain:+.2f}% over {best}; acc {a['acc']:.3f} [{a['acc_lo']:.3f}, {a['acc_hi']:.3f}] "
        f"against {rival}'s {r['acc']:.3f} [{r['acc_lo']:.3f}, {r['acc_hi']:.3f}], n={a['n']}"
    )
    return Verdict(
        id=f"accuracy.loss_gain_carries_over.{task}.{fused}",
        claim=f"{fused}'s loss gain carries over to accuracy on {task}",
        holds=holds,
        numbers=numbers,
    )


def cached_accuracies(coop_folder) -> dict | None:
    """The accuracies a notebook scored for one cooperative (protocol/choice.model_accuracies), if any."""
    path = Path(coop_folder) / "choice" / "accuracy.json"
    return read_json(path) if path.exists() else None


def summarize(results: dict, accuracies: dict, fused_models) -> dict:
    """The reference summary's accuracy block: every model's acc and interval per task, and the verdicts."""
    claims = [
        loss_gain_carries_over(results, accuracies[task], fused, task)
        for task in accuracies
        for fused in fused_models
        if fused in accuracies[task]
    ]
    return {
        "seed": results["seed"],
        "tasks": {
            task: {m: {k: a[k] for k in ("acc", "acc_lo", "acc_hi", "acc_norm", "n")} for m, a in by_model.items()}
            for task, by_model in accuracies.items()
        },
        "claims": claims,
    }


def main_accuracy(runs, results: list[dict]) -> dict | None:
    """Notebook 03's accuracies (the first seed's main cooperative) and their verdicts, when it scored them."""
    folder = Path(runs) / "main" / "main"
    scored = [(r, a) for r in results if (a := cached_accuracies(folder / f"seed{r['seed']}")) is not None]
    if not scored:
        return None
    first, scored = scored[0]
    return summarize(first, scored, (paper_fused(get_scale(first["scale"])), CAUSAL_FUSED))
