"""The divergence->gain law: fitting it, its prediction band, predicting a gain, validating it.

Notebook 04 measures the law (its tables and figures are in analysis/); the sweep and phase 2
experiments and the coordinator's `predict-gain` use it, so it lives here in the protocol.

Definitions follow PAPER.md §4: divergence of a
specialist = (L_base,d - L_spec,d) / L_base,d x 100 on its own domain; gain = improvement
of the fused model's equal-weight loss over the best specialist's, in percent.

Everything here works on plain numbers, dicts and DataFrames; reading results files is
the caller's job. OLS is statsmodels', curve fitting scipy's.

Intervals: `LineFit.predict` gives the 95% PREDICTION band (statsmodels' obs_ci), the
range a new condition's gain should fall in, not the narrower band of the mean line.
That is the band the paper's "predictable gain" claim has to be judged against.

Seeds are not independent points. A sweep runs each condition (a cooperative's domains and
settings) at several seeds, and seeds of one condition share everything but the seed, so
counting them as separate points would understate the uncertainty and let validation see
the condition it is tested on. Every function here therefore takes `groups` (each row's
condition): the line is fitted on condition means (one point per condition, so n, the
degrees of freedom and the band are about conditions), leave-one-out leaves out a whole
condition, and the held-out split puts each condition entirely on one side. Without
`groups`, each row is taken to be its own condition. What a fit or a validation returns
says which it was: "fit_on" ("condition means" or "points"), "n_conditions",
"n_observations".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.optimize import curve_fit

from .. import paper as _paper
from ..errors import KalavaiError
from ..storage import atomic_write_json, read_json
from .metrics import divergence_pct

FIT_FILE_KIND = "kalavai.prediction.linefit"
divergence = divergence_pct  # PAPER.md §4's definition lives in protocol/metrics.py
DEFAULT_PREDICTORS = ("mean_divergence", "base_loss", "cross_loss_spread", "max_divergence", "min_divergence")
# A held-out point exactly on a zero-width band (perfectly linear data) must count as inside.
_BAND_SLACK = 1e-9


# --------------------------------------------------------------------------- fits


@dataclass(frozen=True)
class LineFit:
    """OLS of y on x (or on log x when transform == "log"), with what a prediction needs.

    The data travel with the fit, so a saved fit can be re-derived and checked on load.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    labels: tuple[str, ...] | None
    transform: str  # "identity" or "log": the regressor is x or ln(x)
    alpha: float
    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    r2: float
    n: int  # points fitted: conditions when fit_on == "condition means"
    resid_std: float  # sqrt of the residual mean square (n - 2 degrees of freedom)
    fit_on: str = "points"  # or "condition means": x and y are then one mean per condition
    n_observations: int = 0  # rows before averaging (seeds x conditions)
    _res: Any = field(default=None, repr=False, compare=False)

    @property
    def n_conditions(self) -> int:
        return self.n

    def _regressor(self, x: np.ndarray) -> np.ndarray:
        if self.transform == "log":
            if np.any(x <= 0):
                raise KalavaiError("a log-linear fit cannot predict at x <= 0")
            return np.log(x)
        return x

    def predict(self, x, alpha: float | None = None):
        """(mean, lo, hi) of the prediction band at x: floats for a scalar x, arrays otherwise."""
        scalar = np.ndim(x) == 0
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        exog = np.column_stack([np.ones_like(xs), self._regressor(xs)])
        frame = self._res.get_prediction(exog).summary_frame(alpha=self.alpha if alpha is None else alpha)
        mean, lo, hi = (frame[c].to_numpy() for c in ("mean", "obs_ci_lower", "obs_ci_upper"))
        if scalar:
            return float(mean[0]), float(lo[0]), float(hi[0])
        return mean, lo, hi

    @property
    def residuals(self) -> np.ndarray:
        return np.asarray(self._res.resid)

    @property
    def fitted(self) -> np.ndarray:
        return np.asarray(self._res.fittedvalues)

    def equation(self, y: str = "gain", x: str = "div") -> str:
        reg = f"ln({x})" if self.transform == "log" else x
        sign = "-" if self.intercept < 0 else "+"
        return f"{y} = {self.slope:.4f} x {reg} {sign} {abs(self.intercept):.4f}"

    def to_dict(self) -> dict:
        return {
            "kind": FIT_FILE_KIND,
            "transform": self.transform,
            "alpha": self.alpha,
            "x": list(self.x),
            "y": list(self.y),
            "labels": None if self.labels is None else list(self.labels),
            "slope": self.slope,
            "intercept": self.intercept,
            "slope_ci": list(self.slope_ci),
            "intercept_ci": list(self.intercept_ci),
            "r2": self.r2,
            "n": self.n,
            "resid_std": self.resid_std,
            "fit_on": self.fit_on,
            "n_conditions": self.n,
            "n_observations": self.n_observations,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "LineFit":
        """Refit from the stored points, and refuse a file whose numbers do not match them."""
        try:
            fit = _fit(
                d["x"],
                d["y"],
                d.get("labels"),
                d.get("transform", "identity"),
                d.get("alpha", 0.05),
                fit_on=d.get("fit_on", "points"),
                n_observations=d.get("n_observations"),
            )
            stored = (d["slope"], d["intercept"], d["r2"])
        except (KeyError, TypeError) as e:
            raise KalavaiError(f"not a line-fit record: {e}") from None
        if not np.allclose((fit.slope, fit.intercept, fit.r2), stored, rtol=1e-9, atol=1e-9):
            raise KalavaiError("fit record is inconsistent: its slope/intercept/R^2 do not follow from its points")
        return fit


def _as_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise KalavaiError(f"x and y differ in length ({x.size} vs {y.size})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise KalavaiError("x and y must be finite numbers")
    return x, y


def condition_means(x, y, groups=None) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(x means, y means, condition names, rows per condition), conditions in order of first appearance.

    Without groups every row is its own condition (named by its index).
    """
    x, y = _as_xy(x, y)
    if groups is None:
        return x, y, [str(i) for i in range(x.size)], np.ones(x.size, dtype=int)
    g = [str(v) for v in (groups.tolist() if hasattr(groups, "tolist") else list(groups))]
    if len(g) != x.size:
        raise KalavaiError(f"groups and points differ in length ({len(g)} vs {x.size})")
    names = list(dict.fromkeys(g))
    index = np.array([names.index(v) for v in g])
    counts = np.bincount(index, minlength=len(names))
    return (np.bincount(index, weights=x) / counts, np.bincount(index, weights=y) / counts, names, counts)


def _fit(
    x, y, labels, transform: str, alpha: float, fit_on: str = "points", n_observations: int | None = None
) -> LineFit:
    x, y = _as_xy(x, y)
    if x.size < 3:
        raise KalavaiError(f"a line with confidence intervals needs at least 3 points, got {x.size}")
    if transform not in ("identity", "log"):
        raise KalavaiError(f"unknown transform {transform!r}")
    if transform == "log" and np.any(x <= 0):
        raise KalavaiError("a log-linear fit needs x > 0")
    reg = np.log(x) if transform == "log" else x
    if np.ptp(reg) == 0:
        raise KalavaiError("all x values are equal: no line can be fitted")
    if labels is not None and len(labels) != x.size:
        raise KalavaiError("labels and points differ in length")
    with warnings.catch_warnings():
        # a perfect fit (tests, degenerate sweeps) makes statsmodels warn about zero variance
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sm.OLS(y, sm.add_constant(reg, has_constant="add")).fit()
        ci = np.asarray(res.conf_int(alpha=alpha))
    return LineFit(
        x=tuple(map(float, x)),
        y=tuple(map(float, y)),
        labels=None if labels is None else tuple(map(str, labels)),
        transform=transform,
        alpha=float(alpha),
        slope=float(res.params[1]),
        intercept=float(res.params[0]),
        slope_ci=(float(ci[1, 0]), float(ci[1, 1])),
        intercept_ci=(float(ci[0, 0]), float(ci[0, 1])),
        r2=float(res.rsquared) if np.var(y) > 0 else float("nan"),
        n=int(x.size),
        resid_std=float(np.sqrt(res.mse_resid)),
        fit_on=fit_on,
        n_observations=int(x.size if n_observations is None else n_observations),
        _res=res,
    )


def _grouped_fit(x, y, labels, groups, transform: str, alpha: float) -> LineFit:
    if groups is None:
        return _fit(x, y, labels, transform, alpha)
    xm, ym, names, counts = condition_means(x, y, groups)
    # one point per condition: the rows' own labels (condition/seed) no longer name a point
    return _fit(xm, ym, names, transform, alpha, fit_on="condition means", n_observations=int(counts.sum()))


def fit_line(x, y, labels: Sequence[str] | None = None, alpha: float = 0.05, groups=None) -> LineFit:
    """OLS of gain (%) on mean divergence (%), with 1-alpha CIs and prediction band.

    With `groups` (each row's condition), fitted on condition means: one point per
    condition, labelled by the condition; `fit_on` says so and `n_observations` keeps the
    number of rows. Seeds of a condition are not independent points.
    """
    return _grouped_fit(x, y, labels, groups, "identity", alpha)


def fit_loglinear(x, y, labels: Sequence[str] | None = None, alpha: float = 0.05, groups=None) -> LineFit:
    """OLS of gain on ln(divergence): the paper's alternative (R^2 0.683 there). `groups` as in fit_line."""
    return _grouped_fit(x, y, labels, groups, "log", alpha)


def paper_fit(source: str = "fit_script") -> LineFit:
    """The paper's line, refitted here from its eight points (see paper.paper_points for `source`)."""
    pts = _paper.paper_points(source)
    return fit_line([p.divergence for p in pts], [p.gain for p in pts], labels=[p.condition for p in pts])


def authors_refit() -> LineFit:
    """The authors' later line (PAPER.md §8, W2), refitted here from its fourteen points (see
    paper.authors_refit_points); paper.AUTHORS_LATER_REFIT_14 holds what they reported."""
    pts = _paper.authors_refit_points()
    return fit_line([p.divergence for p in pts], [p.gain for p in pts], labels=[p.condition for p in pts])


def fit_rmse(fit: LineFit) -> float:
    """In-sample root-mean-square residual (pp): the scatter of the fitted points about their own line."""
    return float(np.sqrt(np.mean(fit.residuals**2)))


# --------------------------------------------------------------------------- validation


def _heldout_report(x, y, train: np.ndarray, test: np.ndarray, alpha: float) -> dict:
    fit = fit_line(x[train], y[train], alpha=alpha)
    mean, lo, hi = fit.predict(x[test])
    slack = _BAND_SLACK * np.maximum(1.0, np.abs(y[test]))
    return {"mean": mean, "lo": lo, "hi": hi, "inside": (y[test] >= lo - slack) & (y[test] <= hi + slack)}


def _summary(actual: np.ndarray, pred: np.ndarray, lo: np.ndarray, hi: np.ndarray, inside: np.ndarray) -> dict:
    err = pred - actual
    return {
        "actual": actual.tolist(),
        "predicted": pred.tolist(),
        "lo": lo.tolist(),
        "hi": hi.tolist(),
        "error": err.tolist(),
        "inside": inside.tolist(),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "coverage": float(np.mean(inside)),
        "n_inside": int(inside.sum()),
        "n": int(actual.size),
    }


def _validation_unit(groups, n_obs: int, names: list[str]) -> dict:
    return {
        "fit_on": "points" if groups is None else "condition means",
        "conditions": names,
        "n_conditions": len(names),
        "n_observations": n_obs,
    }


def leave_one_out(x, y, alpha: float = 0.05, groups=None) -> dict:
    """Leave-one-condition-out: refit on the other conditions' means, predict the held-out condition's mean.

    Returns RMSE, MAE and how often the band holds the held-out value, one entry per
    condition (in the order of `conditions`). Without `groups`, every row is a condition.
    """
    xm, ym, names, counts = condition_means(x, y, groups)
    if xm.size < 4:
        raise KalavaiError(f"leave-one-out needs at least 4 conditions (3 left to fit), got {xm.size}")
    rows = [_heldout_report(xm, ym, np.delete(np.arange(xm.size), i), np.array([i]), alpha) for i in range(xm.size)]
    pick = lambda k: np.array([r[k][0] for r in rows])  # noqa: E731
    out = _summary(ym, pick("mean"), pick("lo"), pick("hi"), pick("inside"))
    return {**out, **_validation_unit(groups, int(counts.sum()), names)}


def predict_out_of_condition(x, y, groups, x_new, groups_new, alpha: float = 0.05) -> np.ndarray:
    """For each new point, the line fitted on the condition means of every OTHER condition, at its x.

    A new point's own condition (all its seeds) never informs its prediction, as in
    leave_one_out; a new point of a condition absent from `groups` is predicted by the line on all.
    """
    xm, ym, names, _ = condition_means(x, y, groups)
    x_new = np.asarray(x_new, dtype=float).ravel()
    g_new = [str(v) for v in _as_list(groups_new)]
    if len(g_new) != x_new.size:
        raise KalavaiError(f"groups_new and x_new differ in length ({len(g_new)} vs {x_new.size})")
    fits = {}
    for name in dict.fromkeys(g_new):
        keep = np.array([n != name for n in names])
        if keep.sum() < 3:
            raise KalavaiError(
                f"leaving out condition {name!r} leaves {int(keep.sum())} conditions, fewer than 3 to fit"
            )
        fits[name] = fit_line(xm[keep], ym[keep], alpha=alpha)
    return np.array([float(fits[g].predict(np.array([v]))[0][0]) for v, g in zip(x_new, g_new)])


def holdout_validation(x, y, test_fraction: float = 0.3, seed: int = 0, alpha: float = 0.05, groups=None) -> dict:
    """One seeded split of the conditions: fit on the train conditions' means, score the test conditions' means.

    Every row of a condition is on the same side; train_index / test_index are the rows on
    each side, train_conditions / test_conditions the conditions. Without `groups`, every
    row is a condition.
    """
    xm, ym, names, counts = condition_means(x, y, groups)
    n_test = max(1, int(round(test_fraction * xm.size)))
    if xm.size - n_test < 3:
        raise KalavaiError(f"{xm.size} conditions leave fewer than 3 to fit after holding out {n_test}")
    order = np.random.default_rng(seed).permutation(xm.size)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    r = _heldout_report(xm, ym, train, test, alpha)
    out = _summary(ym[test], r["mean"], r["lo"], r["hi"], r["inside"])
    row_condition = np.arange(xm.size) if groups is None else np.array([names.index(str(g)) for g in _as_list(groups)])
    fit = _fit(
        xm[train],
        ym[train],
        [names[i] for i in train] if groups is not None else None,
        "identity",
        alpha,
        fit_on="points" if groups is None else "condition means",
        n_observations=int(counts[train].sum()),
    )
    out.update(
        train_index=np.flatnonzero(np.isin(row_condition, train)).tolist(),
        test_index=np.flatnonzero(np.isin(row_condition, test)).tolist(),
        train_conditions=[names[i] for i in train],
        test_conditions=[names[i] for i in test],
        seed=seed,
        fit=fit.to_dict(),
        **_validation_unit(groups, int(counts.sum()), names),
    )
    return out


def _coverage_points(points) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(labels, divergences, gains) of held-out points: a DataFrame (columns divergence or
    mean_divergence, gain, and label or condition), or records with label, divergence and gain
    (paper.RegressionPoint, or dicts with those keys)."""
    if isinstance(points, pd.DataFrame):
        x_col = "divergence" if "divergence" in points else "mean_divergence"
        label_col = "label" if "label" in points else "condition" if "condition" in points else None
        labels = [str(v) for v in points[label_col]] if label_col else [str(i) for i in range(len(points))]
        x, y = _as_xy(points[x_col], points["gain"])
        return labels, x, y
    get = lambda p, k: p[k] if isinstance(p, Mapping) else getattr(p, k)  # noqa: E731
    rows = list(points)
    labels = [str(get(p, "label")) for p in rows]
    x, y = _as_xy([get(p, "divergence") for p in rows], [get(p, "gain") for p in rows])
    return labels, x, y


def band_coverage(points, fit: LineFit) -> dict:
    """Each point's measured gain against `fit`'s prediction band at its divergence.

    points: see _coverage_points. Returns, beside the summary of leave_one_out (actual, predicted,
    lo, hi, error, inside, rmse, mae, coverage, n_inside, n): the points' labels and divergences;
    `outside_fit_range`, whether each divergence lies beyond those the line was fitted on (its
    band there is an extrapolation); `in_fit`, whether the point (divergence and gain) is one the
    line was fitted on, so not held out at all; and `level`, the band's nominal coverage.
    """
    labels, x, y = _coverage_points(points)
    if x.size == 0:
        raise KalavaiError("no points to test against the band")
    mean, lo, hi = fit.predict(x)
    slack = _BAND_SLACK * np.maximum(1.0, np.abs(y))
    inside = (y >= lo - slack) & (y <= hi + slack)
    fx, fy = np.asarray(fit.x), np.asarray(fit.y)
    in_fit = np.array(
        [
            bool(np.any(np.isclose(fx, a, rtol=0, atol=1e-9) & np.isclose(fy, b, rtol=0, atol=1e-9)))
            for a, b in zip(x, y)
        ]
    )
    return {
        **_summary(y, np.asarray(mean), np.asarray(lo), np.asarray(hi), inside),
        "labels": labels,
        "divergence": x.tolist(),
        "outside_fit_range": ((x < min(fit.x)) | (x > max(fit.x))).tolist(),
        "in_fit": in_fit.tolist(),
        "level": 1 - fit.alpha,
    }


def coverage_text(coverage: Mapping) -> str:
    """'k of n inside the 95% band' for a band_coverage (or leave_one_out) result."""
    level = coverage.get("level", 0.95)
    return f"{coverage['n_inside']} of {coverage['n']} inside the {100 * level:.0f}% band"


def coverage_consistent(n_inside: int, n: int, level: float = 0.95, test_alpha: float = 0.05) -> bool | None:
    """Whether k of n points inside a band of nominal coverage `level` is consistent with that level.

    One-sided binomial test: inconsistent when, were each point inside with probability `level`,
    k or fewer inside would happen with probability at most `test_alpha` (6 points at 95%: 5 or
    6 inside are consistent, 4 or fewer are not). None when there are no points.
    """
    if n <= 0:
        return None
    if not 0 <= n_inside <= n:
        raise KalavaiError(f"{n_inside} inside of {n} points")
    from scipy.stats import binom

    return bool(binom.cdf(n_inside, n, level) > test_alpha)


def _as_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _constant_loo(y: np.ndarray, alpha: float) -> dict:
    """LOO of the no-predictor baseline: every held-out gain predicted by the others' mean (y: one value per condition)."""
    means, los, his = [], [], []
    for i in range(y.size):
        rest = np.delete(y, i)
        res = sm.OLS(rest, np.ones((rest.size, 1))).fit()
        f = res.get_prediction(np.ones((1, 1))).summary_frame(alpha=alpha)
        means.append(f["mean"].iloc[0]), los.append(f["obs_ci_lower"].iloc[0]), his.append(f["obs_ci_upper"].iloc[0])
    lo, hi = np.array(los), np.array(his)
    slack = _BAND_SLACK * np.maximum(1.0, np.abs(y))
    return _summary(y, np.array(means), lo, hi, (y >= lo - slack) & (y <= hi + slack))


def compare_predictors(
    table: pd.DataFrame,
    target: str = "gain",
    predictors: Sequence[str] | None = None,
    alpha: float = 0.05,
    include_constant: bool = True,
    group: str | None = "condition",
) -> pd.DataFrame:
    """Rank candidate predictors of `target` by leave-one-condition-out RMSE (then in-sample R^2).

    `predictors` defaults to those of DEFAULT_PREDICTORS present in `table`. Rows missing
    a predictor or the target are dropped for that predictor only (its n says how many rows
    were left, n_conditions how many conditions). When the table has the `group` column
    (default "condition"), fits are on condition means and a whole condition is left out at
    a time; otherwise each row is its own condition. The "(constant)" row predicts every
    gain by the mean of the others: a predictor that does not beat it predicts nothing.
    loo_coverage (the share of held-out conditions inside the band of the line fitted without
    them) checks that the band is honest, not that the predictor is good: a weak predictor's
    band widens with its scatter, so it can cover as often as a strong one.
    """
    if target not in table.columns:
        raise KalavaiError(f"target column {target!r} not in table")
    if predictors is None:
        predictors = [c for c in DEFAULT_PREDICTORS if c in table.columns]
    missing = [p for p in predictors if p not in table.columns]
    if missing:
        raise KalavaiError(f"predictor columns not in table: {', '.join(missing)}")
    grouped = group is not None and group in table.columns
    rows = []
    for p in predictors:
        sub = table[[p, target]].apply(pd.to_numeric, errors="coerce").dropna()
        groups = table.loc[sub.index, group] if grouped else None
        row = {
            "predictor": p,
            "n": len(sub),
            "n_conditions": len(set(_as_list(groups))) if grouped else len(sub),
            "fit_on": "condition means" if grouped else "points",
        }
        try:
            fit = fit_line(sub[p], sub[target], alpha=alpha, groups=groups)
            loo = leave_one_out(sub[p], sub[target], alpha=alpha, groups=groups)
            row.update(
                r2=fit.r2,
                slope=fit.slope,
                intercept=fit.intercept,
                loo_rmse=loo["rmse"],
                loo_mae=loo["mae"],
                loo_coverage=loo["coverage"],
            )
        except KalavaiError as e:  # too few points or a constant column: keep it visible, ranked last
            row.update(
                r2=np.nan,
                slope=np.nan,
                intercept=np.nan,
                loo_rmse=np.nan,
                loo_mae=np.nan,
                loo_coverage=np.nan,
                note=str(e),
            )
        rows.append(row)
    if include_constant:
        y_rows = pd.to_numeric(table[target], errors="coerce").dropna()
        groups = table.loc[y_rows.index, group] if grouped else None
        _, y, _, counts = condition_means(np.zeros(len(y_rows)), y_rows.to_numpy(float), groups)
        if y.size >= 3:
            loo = _constant_loo(y, alpha)
            rows.append(
                {
                    "predictor": "(constant)",
                    "n": int(counts.sum()),
                    "n_conditions": int(y.size),
                    "fit_on": "condition means" if grouped else "points",
                    "r2": 0.0,
                    "slope": 0.0,
                    "intercept": float(y.mean()),
                    "loo_rmse": loo["rmse"],
                    "loo_mae": loo["mae"],
                    "loo_coverage": loo["coverage"],
                }
            )
    out = pd.DataFrame(rows)
    out = out.sort_values(["loo_rmse", "r2"], ascending=[True, False], na_position="last")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- saving


def save_fit(path, fit: LineFit, meta: Mapping | None = None) -> None:
    atomic_write_json(path, {"kind": FIT_FILE_KIND, "fit": fit.to_dict(), "meta": dict(meta or {})})


def load_fit(path) -> tuple[LineFit, dict]:
    """(fit, meta) from a file written by save_fit."""
    d = read_json(path)
    if (
        not isinstance(d, dict)
        or d.get("kind") != FIT_FILE_KIND
        or not isinstance(d.get("fit"), dict)
        or not isinstance(d.get("meta", {}), dict)
    ):
        raise KalavaiError(f"{path} is not a saved gain-prediction fit")
    try:
        return LineFit.from_dict(d["fit"]), d.get("meta", {})
    except KalavaiError as e:
        raise KalavaiError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - numbers of the wrong kind, too few points...: the file is named
        raise KalavaiError(f"{path}: not a line-fit record ({type(e).__name__})") from None


# --------------------------------------------------------------------------- prediction


def predict_gain(divergences: Mapping[str, float], fit: LineFit) -> dict:
    """Predicted fusion gain (%) of a cooperative from its contributors' divergences (%).

    Flags rather than hides the cases the line says nothing useful about:
    - non_improving: contributors whose specialist does not beat the base on its own
      domain (divergence <= 0); they are still in the mean, but a cooperative with any
      such contributor should be looked at before it is trained further;
    - below_floor: the predicted gain (or the band's upper edge) is below 0: no gain expected;
    - band_includes_zero: the gain may be positive, but 0 is inside the 95% band;
    - outside_fit_range: the mean divergence lies outside the points the line was fitted
      on, so the prediction is an extrapolation.
    """
    if not divergences:
        raise KalavaiError("no contributors given")
    divs = {str(k): float(v) for k, v in divergences.items()}
    bad = [k for k, v in divs.items() if not math.isfinite(v)]
    if bad:
        raise KalavaiError(f"non-finite divergence for: {', '.join(bad)}")
    mean_div = float(np.mean(list(divs.values())))
    try:
        pred, lo, hi = fit.predict(mean_div)
    except KalavaiError:  # e.g. a log-linear fit asked about a mean divergence <= 0
        pred, lo, hi = float("nan"), float("nan"), float("nan")
    return {
        "divergences": divs,
        "n_contributors": len(divs),
        "mean_divergence": mean_div,
        "predicted_gain": pred,
        "lo": lo,
        "hi": hi,
        "below_floor": bool(not (pred >= 0) or hi < 0),  # NaN counts as "no gain expected"
        "band_includes_zero": bool(lo <= 0 <= hi),
        "non_improving": sorted(k for k, v in divs.items() if v <= 0),
        "outside_fit_range": bool(mean_div < min(fit.x) or mean_div > max(fit.x)),
    }


# --------------------------------------------------------------------------- early prediction
#
# The final held-out loss of a specialist is extrapolated from the start of its curve with
#     L(t) = a + b * (t + 1) ** -c      (a >= 0, b >= 0, 0 < c <= 3),
# where the clock t is either the optimizer step or, when the lr schedule is given, the
# cumulative learning rate in units of the peak lr ("steps at full lr"). The training
# schedule (10% linear warmup, cosine to 0) moves the weights little during warmup and
# during the tail, so in steps the curve flattens sooner than a power law; on the
# cumulative-lr clock the tail is compressed and the power law fits better. Neither clock
# captures the extra drop that annealing to lr 0 brings, so extrapolated losses tend to be
# a little high, and predicted divergences a little low.


def _saturating(t, a, b, c):
    return a + b * (t + 1.0) ** (-c)


def _clock(steps: np.ndarray, lr_schedule: Sequence[float] | None, final_step: int) -> tuple[np.ndarray, float]:
    if lr_schedule is None:
        return steps.astype(float), float(final_step)
    lr = np.asarray(lr_schedule, dtype=float)
    if lr.ndim != 1 or lr.size < final_step or np.any(lr < 0) or lr.max() <= 0:
        raise KalavaiError(f"lr_schedule must give a non-negative lr for each of the {final_step} steps")
    # the loss after s updates has seen lr[0..s-1]
    cum = np.concatenate([[0.0], np.cumsum(lr)]) / lr.max()
    return cum[steps], float(cum[final_step])


def fit_saturating_curve(
    steps: Sequence[int], losses: Sequence[float], final_step: int, lr_schedule: Sequence[float] | None = None
) -> dict:
    """Fit the saturating curve; returns its parameters, the clock used and the final-loss estimate.

    Falls back to the last observed loss ("method": "last_value") when there are fewer than
    4 points or the fit fails or gives nonsense.
    """
    s = np.asarray(steps, dtype=int)
    L = np.asarray(losses, dtype=float)
    if s.size == 0 or s.shape != L.shape:
        raise KalavaiError("steps and losses must be non-empty and of equal length")
    if not np.all(np.isfinite(L)) or np.any(s < 0) or np.any(np.diff(s) <= 0):
        raise KalavaiError("steps must be increasing and non-negative, losses finite")
    if final_step < s[-1]:
        raise KalavaiError(f"final_step {final_step} is before the last observed step {s[-1]}")
    t, t_final = _clock(s, lr_schedule, final_step)
    clock = "cumulative_lr" if lr_schedule is not None else "step"
    fallback = {
        "method": "last_value",
        "clock": clock,
        "a": np.nan,
        "b": np.nan,
        "c": np.nan,
        "final_loss": float(L[-1]),
    }
    if s[-1] == final_step:
        return {**fallback, "method": "observed"}
    if s.size < 4:  # three parameters
        return fallback
    lo_, hi_ = float(L.min()), float(L.max())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (a, b, c), _ = curve_fit(
                _saturating,
                t,
                L,
                p0=(0.9 * lo_, max(hi_ - 0.9 * lo_, 1e-6), 0.5),
                # asymptote below every observed loss; a flat curve is allowed (b = 0)
                bounds=([0.0, 0.0, 1e-3], [lo_, np.inf, 3.0]),
                maxfev=20000,
            )
    except (RuntimeError, ValueError):
        return fallback
    final = float(_saturating(t_final, a, b, c))
    if not math.isfinite(final) or final < 0:
        return fallback
    return {"method": "power_law", "clock": clock, "a": float(a), "b": float(b), "c": float(c), "final_loss": final}


def extrapolate_final_loss(
    steps: Sequence[int], losses: Sequence[float], final_step: int, lr_schedule: Sequence[float] | None = None
) -> float:
    """The held-out loss expected at `final_step`, from a prefix of the curve (see above)."""
    return fit_saturating_curve(steps, losses, final_step, lr_schedule)["final_loss"]


def _curve(c) -> tuple[list[int], list[float]]:
    if isinstance(c, Mapping):
        return list(c["steps"]), list(c["losses"])
    steps, losses = c
    return list(steps), list(losses)


def early_gain_prediction(
    curves: Mapping[str, Any],
    base_losses: Mapping[str, float],
    fraction: float,
    final_step: int,
    fit: LineFit,
    lr_schedule: Sequence[float] | None = None,
) -> dict:
    """Predict divergences and the fusion gain from the first `fraction` of training.

    curves: contributor -> its own-domain held-out curve, {"steps": [...], "losses": [...]}
    or (steps, losses). base_losses: contributor -> the base's loss on that domain.
    Returns predict_gain's dict plus the cut-off, the extrapolated losses and the fit method.
    """
    if not 0 < fraction <= 1:
        raise KalavaiError(f"fraction must be in (0, 1], got {fraction}")
    missing = sorted(set(curves) - set(base_losses))
    if missing:
        raise KalavaiError(f"no base loss for: {', '.join(missing)}")
    cutoff = fraction * final_step
    losses, methods, divs = {}, {}, {}
    for name, c in curves.items():
        steps, ls = _curve(c)
        keep = [i for i, s in enumerate(steps) if s <= cutoff]
        if not keep:
            raise KalavaiError(f"{name}: no curve point at or before step {cutoff:g}")
        r = fit_saturating_curve([steps[i] for i in keep], [ls[i] for i in keep], final_step, lr_schedule)
        losses[name], methods[name] = r["final_loss"], r["method"]
        divs[name] = divergence(base_losses[name], r["final_loss"])
    out = predict_gain(divs, fit)
    out.update(
        fraction=fraction,
        cutoff_step=cutoff,
        predicted_final_loss=losses,
        predicted_divergence=dict(divs),
        curve_fit_method=methods,
    )
    return out


def early_error_table(
    curves: Mapping[str, Any],
    base_losses: Mapping[str, float],
    final_losses: Mapping[str, float],
    fractions: Sequence[float],
    final_step: int,
    lr_schedule: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Per (fraction, contributor): extrapolated vs actual final loss and divergence error (pp)."""
    rows = []
    for f in fractions:
        for name, c in curves.items():
            steps, ls = _curve(c)
            keep = [i for i, s in enumerate(steps) if s <= f * final_step]
            if not keep:
                continue
            r = fit_saturating_curve([steps[i] for i in keep], [ls[i] for i in keep], final_step, lr_schedule)
            d_pred = divergence(base_losses[name], r["final_loss"])
            d_true = divergence(base_losses[name], final_losses[name])
            rows.append(
                {
                    "fraction": f,
                    "contributor": name,
                    "method": r["method"],
                    "predicted_loss": r["final_loss"],
                    "actual_loss": float(final_losses[name]),
                    "predicted_divergence": d_pred,
                    "actual_divergence": d_true,
                    "abs_divergence_error": abs(d_pred - d_true),
                }
            )
    return pd.DataFrame(rows)
