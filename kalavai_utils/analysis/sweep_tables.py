"""Notebook 04's tables: one row per cooperative (its gain and every candidate predictor of
it), the fit's validation, and the early prediction's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..protocol import prediction
from ..verdicts import Verdict

HOLDOUT_FRACTION = 0.3  # the held-out split's share of the conditions
EARLY_FRACTIONS = (0.1, 0.2, 0.3, 0.5)  # how much of the specialists' training the early prediction sees


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
    return (
        prediction.leave_one_out(x, y, groups=groups),
        prediction.holdout_validation(x, y, test_fraction=HOLDOUT_FRACTION, seed=0, groups=groups),
    )


def early_errors(results: list[dict], model: str, fractions=EARLY_FRACTIONS) -> pd.DataFrame:
    """Per (cooperative, fraction, specialist): the final loss and divergence extrapolated from the first
    `fraction` of the held-out curve (prediction.early_error_table) against the measured ones."""
    rows = []
    for r in results:
        if model not in r["losses"] or not r["extra"].get("curves") or "lr_schedule" not in r["extra"]:
            continue  # early prediction needs the specialists' held-out curves and their schedule
        curves, base, final = own_domain_curves(r)
        final_step = max(max(c["steps"]) for c in curves.values())
        table = prediction.early_error_table(
            curves, base, final, fractions, final_step, lr_schedule=r["extra"]["lr_schedule"]
        )
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
    columns = [
        "condition",
        "seed",
        "fraction",
        "predicted_divergence",
        "actual_divergence",
        "gain",
        "predicted_gain",
        "gain_error",
        "abs_gain_error",
    ]
    points = points_table(results, model)
    early = early_errors(results, model, (*fractions, 1.0))
    if not len(early) or points["condition"].nunique() < 4:  # three conditions left to fit
        return pd.DataFrame(columns=columns)
    coop = early.groupby(["condition", "seed", "fraction"], as_index=False)[
        ["predicted_divergence", "actual_divergence"]
    ].mean()
    coop = coop.merge(points[["condition", "seed", "gain"]], on=["condition", "seed"], validate="many_to_one")
    coop["predicted_gain"] = prediction.predict_out_of_condition(
        points["mean_divergence"], points["gain"], points["condition"], coop["predicted_divergence"], coop["condition"]
    )
    coop["gain_error"] = coop["predicted_gain"] - coop["gain"]
    coop["abs_gain_error"] = coop["gain_error"].abs()
    return coop[columns]


def law_verdicts(fit) -> list[Verdict]:
    """Notebook 04's verdict on the law: does the gain rise with divergence (slope's 95% CI above zero)?"""
    lo, hi = fit.slope_ci
    return [
        Verdict(
            "law.gain_rises_with_divergence",
            "gain rises with divergence (slope CI above zero)",
            lo > 0,
            f"{fit.equation()}, slope 95% CI [{lo:.2f}, {hi:.2f}], R2 {fit.r2:.3f}",
        )
    ]
