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


# The three lines notebook 04 sets side by side (keys are stable: verdict ids use them).
LINES = {
    "ours": "this project (condition means)",
    "paper": "the paper's (8 points)",
    "authors_refit_14": "the authors' later refit (14 points)",
}
LINES_SHORT = {"ours": "our line", "paper": "the paper's line", "authors_refit_14": "the authors' 14-point refit"}
# The held-out points tested against every band.
HELD_OUT = {
    "authors_w2": "the authors' six later held-out conditions",
    "ours": "this project's conditions",
}


def three_lines(fit: prediction.LineFit) -> dict[str, prediction.LineFit]:
    """Our line, the paper's and the authors' 14-point refit, keyed as LINES."""
    return {"ours": fit, "paper": prediction.paper_fit(), "authors_refit_14": prediction.authors_refit()}


def fit_table(fits) -> pd.DataFrame:
    """One row per line: slope, intercept, R2, points fitted and in-sample RMSE (pp)."""
    rows = [
        {
            "line": LINES.get(k, k),
            "slope": f.slope,
            "intercept": f.intercept,
            "R2": f.r2,
            "n": f.n,
            "RMSE (pp)": prediction.fit_rmse(f),
        }
        for k, f in fits.items()
    ]
    return pd.DataFrame(rows).set_index("line")


def condition_points(fit: prediction.LineFit) -> pd.DataFrame:
    """A fit's own points (condition means when fitted on them) as held-out points: label, divergence, gain."""
    labels = fit.labels or [str(i) for i in range(fit.n)]
    return pd.DataFrame({"label": list(labels), "divergence": list(fit.x), "gain": list(fit.y)})


def held_out_points(fit: prediction.LineFit) -> dict:
    """The point sets of HELD_OUT: the authors' W2 conditions, and ours (our fit's condition means)."""
    from .. import paper

    return {"authors_w2": paper.AUTHORS_LATER_CHECK_POINTS, "ours": condition_points(fit)}


def band_coverage(fits, point_sets, loo: dict | None = None) -> dict:
    """(points key, line key) -> prediction.band_coverage of those points against that line's band.

    A line's own points are not held out: for our points against our line, pass `loo` (the
    leave-one-condition-out result of sweep_tables.validation), which then stands in for it.
    """
    out = {}
    for pk, pts in point_sets.items():
        for lk, f in fits.items():
            if pk == "ours" and lk == "ours":
                if loo is not None:
                    out[pk, lk] = loo
                continue  # a line's own points, unless left out one condition at a time
            out[pk, lk] = prediction.band_coverage(pts, f)
    return out


def _validation_kind(cov: dict) -> str:
    if "in_fit" not in cov:
        return "leave-one-condition-out"
    seen = sum(cov["in_fit"])
    return "held out" if seen == 0 else "in sample" if seen == cov["n"] else f"{seen} of {cov['n']} in the fit"


def coverage_table(coverage: dict) -> pd.DataFrame:
    """One row per (held-out points, band): how many inside, RMSE, extrapolations, and whether the
    coverage is consistent with the band's nominal 95% (prediction.coverage_consistent)."""
    rows = []
    for (pk, lk), c in coverage.items():
        kind = _validation_kind(c)
        rows.append(
            {
                "points": HELD_OUT.get(pk, pk),
                "band": LINES.get(lk, lk),
                "inside": prediction.coverage_text(c),
                "n_inside": c["n_inside"],
                "n": c["n"],
                "RMSE (pp)": c["rmse"],
                "extrapolated": sum(c.get("outside_fit_range", [])),
                "validation": kind,
                "consistent with 95%": None
                if kind == "in sample"
                else prediction.coverage_consistent(c["n_inside"], c["n"]),
            }
        )
    return pd.DataFrame(rows)


def coverage_points_table(coverage: dict) -> pd.DataFrame:
    """One row per held-out point and band: divergence, measured gain, prediction, band, inside?"""
    rows = []
    for (pk, lk), c in coverage.items():
        labels = c.get("labels", c.get("conditions"))
        divs = c.get("divergence", [None] * c["n"])
        beyond = c.get("outside_fit_range", [None] * c["n"])
        for i in range(c["n"]):
            rows.append(
                {
                    "points": pk,
                    "band": lk,
                    "condition": labels[i],
                    "divergence": divs[i],
                    "measured": c["actual"][i],
                    "predicted": c["predicted"][i],
                    "lo": c["lo"][i],
                    "hi": c["hi"][i],
                    "inside": bool(c["inside"][i]),
                    "extrapolation": beyond[i],
                }
            )
    return pd.DataFrame(rows)


def law_verdicts(fit, loo: dict | None = None) -> list[Verdict]:
    """Notebook 04's verdicts on the law: does the gain rise with divergence (slope's 95% CI above
    zero)? And, for each line's band and each set of points it did not see, is the share of
    held-out gains inside it consistent with 95%? The authors' points against their own refit
    are in its sample and get no verdict; ours against our line need `loo`. Inconclusive when
    every point lies beyond the divergences the line was fitted on."""
    lo, hi = fit.slope_ci
    out = [
        Verdict(
            "law.gain_rises_with_divergence",
            "gain rises with divergence (slope CI above zero)",
            lo > 0,
            f"{fit.equation()}, slope 95% CI [{lo:.2f}, {hi:.2f}], R2 {fit.r2:.3f}",
        )
    ]
    coverage = band_coverage(three_lines(fit), held_out_points(fit), loo)
    for (pk, lk), c in coverage.items():
        kind = _validation_kind(c)
        if kind == "in sample":
            continue
        extrapolated = sum(c.get("outside_fit_range", []))
        # a band stretched beyond every divergence its line saw is wide enough to hold anything: no verdict
        holds = None if extrapolated == c["n"] else prediction.coverage_consistent(c["n_inside"], c["n"])
        out.append(
            Verdict(
                f"law.band_holds.{pk}.{lk}",
                f"the 95% band of {LINES_SHORT[lk]} holds {HELD_OUT[pk]} at about its nominal rate",
                holds,
                f"{prediction.coverage_text(c)} ({kind}), RMSE {c['rmse']:.2f} pp"
                + (f"; {extrapolated} of {c['n']} beyond the line's fitted divergences" if extrapolated else ""),
            )
        )
    return out
