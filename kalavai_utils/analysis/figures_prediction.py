"""Figures of notebook 04 (gain prediction). Each function draws on the axes it is given.

The paper's points and line always get their own panel, titled as the paper's, so they
are never mistaken for this project's measurements. No numbers are typed here: the
paper's come from kalavai_utils.paper (via prediction.paper_fit), ours from the caller.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from .. import paper as _paper
from ..protocol.prediction import LineFit, paper_fit

OURS_COLOR = "tab:blue"
PAPER_COLOR = "tab:gray"


def _draw_fit(
    ax, fit: LineFit, color: str, x_pad: float = 0.1, n: int = 200, x_range=None, name: str = "", alpha: float = 0.15
) -> None:
    lo_x, hi_x = (min(fit.x), max(fit.x)) if x_range is None else x_range
    span = hi_x - lo_x
    xs = np.linspace(max(lo_x - x_pad * span, 1e-9 if fit.transform == "log" else -np.inf), hi_x + x_pad * span, n)
    mean, lo, hi = fit.predict(xs)
    band = f"{100 * (1 - fit.alpha):.0f}% prediction band"
    ax.fill_between(xs, lo, hi, color=color, alpha=alpha, lw=0, label=f"{name}: {band}" if name else band)
    n = (
        f"{fit.n_conditions} conditions, {fit.n_observations} observations"
        if fit.fit_on == "condition means"
        else f"n={fit.n}"
    )
    ax.plot(
        xs, mean, color=color, lw=2, label=f"{name + ': ' if name else ''}{fit.equation()}  (R$^2$={fit.r2:.3f}, {n})"
    )


def _label_points(ax, xs, ys, labels) -> None:
    if labels is None:
        return
    for x, y, s in zip(xs, ys, labels):
        ax.annotate(str(s), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)


def plot_regression(
    ax_ours,
    ax_paper,
    points_df: pd.DataFrame,
    fit: LineFit,
    paper: LineFit | None = None,
    x: str = "mean_divergence",
    y: str = "gain",
    label: str | None = "condition",
    show_out_of_sample: bool = True,
) -> None:
    """Our (divergence, gain) points with our line and band; the paper's in a separate panel.

    points_df: one row per cooperative of ours (condition x seed), columns `x`, `y` and
    (optional) `label`. When `fit` was made on condition means (prediction.fit_line with
    groups), those means are drawn and labelled too, the rows faintly behind them.
    paper: the paper's refitted line (default prediction.paper_fit()).
    """
    paper = paper_fit() if paper is None else paper

    grouped = fit.fit_on == "condition means"
    _draw_fit(ax_ours, fit, OURS_COLOR)
    sns.scatterplot(
        data=points_df,
        x=x,
        y=y,
        ax=ax_ours,
        color=OURS_COLOR,
        s=60 if not grouped else 30,
        zorder=5,
        edgecolor="black",
        alpha=0.45 if grouped else 1.0,
        label="cooperatives (condition x seed)" if grouped else None,
    )
    if grouped:
        ax_ours.scatter(
            fit.x,
            fit.y,
            marker="D",
            s=70,
            color=OURS_COLOR,
            edgecolor="black",
            zorder=6,
            label="condition means (fitted)",
        )
        _label_points(ax_ours, fit.x, fit.y, fit.labels)
    else:
        _label_points(ax_ours, points_df[x], points_df[y], points_df[label] if label in points_df else None)
    ax_ours.set_title("This project: gain vs mean divergence")

    _draw_fit(ax_paper, paper, PAPER_COLOR)
    ax_paper.scatter(paper.x, paper.y, color=PAPER_COLOR, s=60, zorder=5, edgecolor="black", label="paper's points")
    _label_points(ax_paper, paper.x, paper.y, paper.labels)
    if show_out_of_sample:
        p = _paper.OUT_OF_SAMPLE_20_CONTRIBUTOR
        ax_paper.scatter(
            [p.divergence],
            [p.gain],
            marker="*",
            s=160,
            color="tab:red",
            zorder=6,
            edgecolor="black",
            label=f"paper's out-of-sample: {p.label}",
        )
    r = _paper.REGRESSION_FIT
    ax_paper.set_title(
        f"The paper's regression (reported: gain = {r['slope']} x div {r['intercept']:+}, R$^2$ = {r['r2']})",
        fontsize=9,
    )

    for ax in (ax_ours, ax_paper):
        ax.axhline(0, color="black", lw=0.6, ls="--")
        ax.set_xlabel("mean specialist divergence (%)")
        ax.set_ylabel("fusion gain vs best specialist (%)")
        ax.legend(fontsize=7, loc="upper left")


AUTHORS_COLOR = "tab:orange"
LINE_COLORS = {"ours": OURS_COLOR, "paper": PAPER_COLOR, "authors_refit_14": AUTHORS_COLOR}


def plot_three_lines(ax, fits: dict, names: dict | None = None, title: str | None = None) -> None:
    """Several lines (sweep_tables.three_lines: ours, the paper's, the authors' 14-point refit) with
    their 95% prediction bands over one common divergence range, each line's own points, and the
    authors' six later held-out conditions (paper.AUTHORS_LATER_CHECK_POINTS) marked apart."""
    names = names or {}
    held = _paper.AUTHORS_LATER_CHECK_POINTS
    xs = [x for f in fits.values() for x in f.x] + [p.divergence for p in held]
    x_range = (min(0.0, min(xs)), max(xs))
    for key, f in fits.items():
        color = LINE_COLORS.get(key, "tab:green")
        _draw_fit(ax, f, color, x_pad=0.02, x_range=x_range, name=names.get(key, key), alpha=0.12)
    for key, f in fits.items():
        if key == "authors_refit_14":
            continue  # its points are the paper's eight and the six held-out ones, drawn by those
        color = LINE_COLORS.get(key, "tab:green")
        ax.scatter(f.x, f.y, color=color, s=40, zorder=5, edgecolor="black", label=f"{names.get(key, key)}: points")
    ax.scatter(
        [p.divergence for p in held],
        [p.gain for p in held],
        marker="X",
        s=90,
        color=AUTHORS_COLOR,
        edgecolor="black",
        zorder=6,
        label="the authors' later held-out conditions",
    )
    _label_points(ax, [p.divergence for p in held], [p.gain for p in held], [p.label for p in held])
    ax.axhline(0, color="black", lw=0.6, ls="--")
    ax.set_xlabel("mean specialist divergence (%)")
    ax.set_ylabel("fusion gain vs best specialist (%)")
    ax.set_title(title or "Three lines and their 95% prediction bands")
    ax.legend(fontsize=6, loc="upper left")


def plot_residuals(ax, fit: LineFit, title: str = "Residuals of the linear fit") -> None:
    sns.scatterplot(x=list(fit.x), y=fit.residuals, ax=ax, s=50, color=OURS_COLOR, edgecolor="black")
    _label_points(ax, fit.x, fit.residuals, fit.labels)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("mean specialist divergence (%)")
    ax.set_ylabel("observed - fitted gain (pp)")
    ax.set_title(title)


def plot_loo(ax, loo: dict, labels=None, title: str | None = None) -> None:
    """loo: the dict of prediction.leave_one_out (or holdout_validation).

    One point per held-out condition (its mean over seeds when validated with groups, then
    labelled by the condition unless `labels` are given).
    """
    grouped = loo.get("fit_on") == "condition means"
    if title is None:
        title = (
            "Leave-one-condition-out: predicted vs actual gain"
            if grouped
            else "Leave-one-out: predicted vs actual gain"
        )
    if labels is None and grouped:
        labels = loo.get("test_conditions", loo.get("conditions"))
    actual, pred = np.asarray(loo["actual"]), np.asarray(loo["predicted"])
    lo, hi = np.asarray(loo["lo"]), np.asarray(loo["hi"])
    inside = np.asarray(loo["inside"], dtype=bool)
    ax.errorbar(actual, pred, yerr=[pred - lo, hi - pred], fmt="none", ecolor="gray", alpha=0.6, capsize=3)
    ax.scatter(actual[inside], pred[inside], color=OURS_COLOR, edgecolor="black", zorder=5, label="actual inside band")
    ax.scatter(
        actual[~inside], pred[~inside], color="tab:red", edgecolor="black", zorder=5, label="actual outside band"
    )
    _label_points(ax, actual, pred, labels)
    both = np.concatenate([actual, lo, hi])
    lim = (both.min(), both.max())
    ax.plot(lim, lim, color="black", lw=0.8, ls="--", label="predicted = actual")
    ax.set_xlabel("actual gain (%)")
    ax.set_ylabel("predicted gain, held out (%)")
    unit = ""
    if grouped:  # a held-out split's n_observations counts both sides: only leave-one-out holds every row out
        unit = " conditions inside the band" + (
            f" ({loo['n_observations']} observations)" if "test_conditions" not in loo else ""
        )
    ax.set_title(f"{title}\nRMSE {loo['rmse']:.2f} pp, {loo['n_inside']}/{loo['n']}{unit or ' inside the band'}")
    ax.legend(fontsize=7)


def plot_early_error(
    ax,
    table: pd.DataFrame,
    y: str = "abs_divergence_error",
    hue: str | None = "contributor",
    title: str = "Early prediction: error vs fraction of training seen",
) -> None:
    """table: prediction.early_error_table (or any frame with `fraction`, `y` and `hue`)."""
    sns.lineplot(data=table, x="fraction", y=y, hue=hue if hue in table else None, marker="o", ax=ax, seed=0)
    ax.set_xlabel("fraction of training steps seen")
    ax.set_ylabel(
        {"abs_divergence_error": "absolute divergence error (pp)", "abs_gain_error": "absolute gain error (pp)"}.get(
            y, y
        )
    )
    ax.set_title(title)
