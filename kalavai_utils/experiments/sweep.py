"""Notebook 04's conditions: many cooperatives spanning low to high divergence, and the
table of (divergence, gain, other predictors) that the gain predictor is fitted on.

Each condition is a cooperative run by cooperative.run_cooperative, with its own results
file in the common schema under runs/<scale>/sweep/<condition>/seed<seed>/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..protocol import prediction
from ..protocol import pipeline
from ..runtime import workers
from ..protocol.cooperative import (
    CAUSAL_ROUTER, Cooperative, cooperative_jobs, main_cooperative, paper_router, run_cooperative,
)
from ..scales import Scale

HOLDOUT_FRACTION = 0.3  # the held-out split's share of the conditions
EARLY_FRACTIONS = (0.1, 0.2, 0.3, 0.5)  # how much of the specialists' training the early prediction sees


@dataclass(frozen=True)
class Condition:
    name: str
    domains: tuple[str, ...]
    overlap: float | None = None  # offline corpora only; None: the scale's default
    overrides: dict = field(default_factory=dict)  # specialist TrainConfig overrides
    varies: str = ""  # which knob this condition turns, for the notebook's table


def conditions(scale: Scale) -> list[Condition]:
    """The sweep: turn one knob at a time away from the main cooperative."""
    main = tuple(scale.domains)
    if scale.is_hub:
        # Only the paper's conditions whose data our data_manifests describe.
        return [
            Condition("main", main, varies="main"),
            Condition("two-domain", main[:2], varies="specialists"),
            Condition("private-domains", tuple(scale.extra_domains), varies="domains"),
            Condition("cross-lingual", (*scale.languages, "code"), varies="languages"),
        ]
    extra, langs = tuple(scale.extra_domains), tuple(scale.languages)
    steps = scale.spec_steps
    every = [
        Condition("main", main, varies="main"),
        Condition("overlap0.20", main, overlap=0.2, varies="domain overlap"),
        Condition("overlap0.80", main, overlap=0.8, varies="domain overlap"),
        Condition("n2", main[:2], varies="specialists"),
        Condition("n4", (*main, extra[0]), varies="specialists"),
        Condition("n5", (*main, *extra[:2]), varies="specialists"),
        Condition(f"steps{steps // 4}", main, overrides={"steps": steps // 4}, varies="training steps"),
        Condition(f"steps{steps // 2}", main, overrides={"steps": steps // 2}, varies="training steps"),
        Condition("languages", langs, varies="languages"),
        Condition("code+languages", ("code", *langs[:2]), varies="languages"),
        # two frozen depths other than the scale's own (that one is the main cooperative)
        *(Condition(f"freeze{k}", main, overrides={"freeze_layers": k}, varies="frozen depth")
          for k in sorted({0, 1, scale.n_layers - 1} - {scale.freeze_layers})[:2]),
        Condition("overlap0.20-n5", (*main, *extra[:2]), overlap=0.2, varies="domain overlap + specialists"),
    ]
    return every[: scale.sweep_max_conditions or None]


def cooperative_for(scale: Scale, runs: Path, cond: Condition, seed: int) -> Cooperative:
    if cond.name == "main":  # the main experiment's cooperative: its results are reused as they are
        folder, _ = pipeline.prepare_corpus(scale, runs)
        return main_cooperative(scale, runs, seed, folder, ablation=(seed == scale.seeds[0]))
    folder, _ = pipeline.prepare_corpus(scale, runs, domains=cond.domains, overlap=cond.overlap)
    return Cooperative(scale=scale, experiment="sweep", condition=cond.name, seed=seed, domains=cond.domains,
                       data_dir=folder, train_overrides=dict(cond.overrides), routers=(paper_router(scale), CAUSAL_ROUTER),
                       monolithic=False)


def run_sweep(scale: Scale, runs: Path, base, base_fp: str, seeds=None, only=None) -> list[dict]:
    """Every condition x seed (cached); returns their results."""
    seeds = list(seeds or scale.sweep_seeds)
    todo = [(cond, seed) for cond in conditions(scale) if not only or cond.name in only for seed in seeds]
    coops = [cooperative_for(scale, runs, cond, seed) for cond, seed in todo]
    # several at a time where the machine has idle cores; the loop below then finds them cached
    workers.run_in_workers(cooperative_jobs([(coop, None) for coop in coops], runs), "sweep")
    out = []
    for (cond, _), coop in zip(todo, coops):
        res = run_cooperative(coop, runs, base, base_fp)
        out.append({**res, "sweep": {"condition": cond.name, "varies": cond.varies}})
    return out


def condition_of(result: dict) -> str:
    """The sweep condition a results file belongs to (the main cooperative's own condition otherwise)."""
    return result.get("sweep", {}).get("condition", result["condition"])


def point(result: dict, model: str) -> dict:
    """One cooperative as a row: its gain and every candidate predictor of it."""
    losses, domains = result["losses"], result["domains"]
    m = result["metrics"]
    specs = list(result["specialists"].values())
    divs = list(m["divergence_pct"].values())
    # How differently the specialists behave off their own domain: spread of cross-domain losses.
    spread = np.mean([np.ptp([losses[s][d] for s in specs]) for d in domains])
    return {
        "condition": condition_of(result),
        "varies": result.get("sweep", {}).get("varies", ""),
        "seed": result["seed"],
        "n_specialists": len(specs),
        "gain": m["gain_vs_best_pct"][model],
        "oracle_gain": m["oracle_gain_pct"],
        "mean_divergence": m["mean_divergence_pct"],
        "max_divergence": max(divs),
        "min_divergence": min(divs),
        "base_loss": float(np.mean([losses["base"][d] for d in domains])),
        "cross_loss_spread": float(spread),
        "non_improving": ",".join(m["non_improving_specialists"]),
    }


def points_table(results: list[dict], model: str) -> pd.DataFrame:
    return pd.DataFrame([point(r, model) for r in results if model in r["losses"]])


def own_domain_curves(result: dict) -> tuple[dict, dict, dict]:
    """Each specialist's own-domain held-out curve, the base's loss (step 0) and the final loss.

    All three come from the training-time curves, so they share one (shorter) protocol.
    """
    curves, base, final = {}, {}, {}
    for domain, curve in result["extra"]["curves"].items():
        if domain not in result["domains"]:
            continue  # the monolithic model has no own domain
        steps = [p["step"] for p in curve]
        losses = [p["losses"][domain] for p in curve]
        curves[domain] = {"steps": steps, "losses": losses}
        base[domain], final[domain] = losses[0], losses[-1]
    return curves, base, final


def validation(table: pd.DataFrame) -> tuple[dict, dict]:
    """The line checked out of sample on one router's points, by whole conditions (all seeds of a
    condition on one side): leave-one-condition-out, and one seeded held-out split."""
    x, y, groups = table["mean_divergence"], table["gain"], table["condition"]
    return (prediction.leave_one_out(x, y, groups=groups),
            prediction.holdout_validation(x, y, test_fraction=HOLDOUT_FRACTION, seed=0, groups=groups))


def early_errors(results: list[dict], model: str, fractions=EARLY_FRACTIONS) -> pd.DataFrame:
    """Per (cooperative, fraction, specialist): the final loss and divergence extrapolated from the first
    `fraction` of the held-out curve (prediction.early_error_table) against the measured ones."""
    rows = []
    for r in results:
        if model not in r["losses"] or not r["extra"].get("curves") or "lr_schedule" not in r["extra"]:
            continue  # early prediction needs the specialists' held-out curves and their schedule
        curves, base, final = own_domain_curves(r)
        final_step = max(max(c["steps"]) for c in curves.values())
        table = prediction.early_error_table(curves, base, final, fractions, final_step,
                                             lr_schedule=r["extra"]["lr_schedule"])
        table["condition"], table["seed"] = condition_of(r), r["seed"]
        rows.append(table)
    if not rows:
        return pd.DataFrame(columns=["fraction", "contributor", "abs_divergence_error", "abs_loss_error"])
    early = pd.concat(rows, ignore_index=True)
    early["abs_loss_error"] = (early["predicted_loss"] - early["actual_loss"]).abs()
    return early


def early_gain_errors(results: list[dict], model: str, fractions=EARLY_FRACTIONS) -> pd.DataFrame:
    """Per (cooperative, fraction): the fusion gain predicted before any fusion, from the first
    `fraction` of the specialists' training, against the gain measured after fusion.

    The specialists' extrapolated divergences (early_errors) are averaged and put on the line
    fitted without the cooperative's condition (prediction.predict_out_of_condition). Fraction 1
    puts the finished curves on that line: the error with finished specialists, on the curves'
    protocol, against which the cost of stopping early is read.
    """
    columns = ["condition", "seed", "fraction", "predicted_divergence", "actual_divergence", "gain",
               "predicted_gain", "gain_error", "abs_gain_error"]
    points = points_table(results, model)
    early = early_errors(results, model, (*fractions, 1.0))
    if not len(early) or points["condition"].nunique() < 4:  # three conditions left to fit
        return pd.DataFrame(columns=columns)
    coop = early.groupby(["condition", "seed", "fraction"], as_index=False)[["predicted_divergence", "actual_divergence"]].mean()
    coop = coop.merge(points[["condition", "seed", "gain"]], on=["condition", "seed"], validate="many_to_one")
    coop["predicted_gain"] = prediction.predict_out_of_condition(
        points["mean_divergence"], points["gain"], points["condition"], coop["predicted_divergence"], coop["condition"])
    coop["gain_error"] = coop["predicted_gain"] - coop["gain"]
    coop["abs_gain_error"] = coop["gain_error"].abs()
    return coop[columns]
