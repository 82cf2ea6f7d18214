"""Tests of the gain-prediction statistics (kalavai_utils.protocol.prediction) and the paper's numbers."""

import math

import numpy as np
import pandas as pd
import pytest

from kalavai_utils import paper
from kalavai_utils.analysis import sweep_tables
from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.prediction import (
    LineFit,
    authors_refit,
    band_coverage,
    compare_predictors,
    condition_means,
    coverage_consistent,
    coverage_text,
    divergence,
    early_error_table,
    early_gain_prediction,
    extrapolate_final_loss,
    fit_line,
    fit_loglinear,
    fit_saturating_curve,
    holdout_validation,
    leave_one_out,
    load_fit,
    paper_fit,
    predict_gain,
    predict_out_of_condition,
    save_fit,
)


def warmup_cosine(total: int, warmup_frac: float = 0.1) -> list[float]:
    """The specialists' schedule shape (PAPER.md §2), peak 1."""
    w = int(warmup_frac * total)
    return [(s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (total - w))) for s in range(total)]


@pytest.fixture
def noisy_line():
    rng = np.random.default_rng(0)
    x = np.linspace(2, 30, 25)
    return x, 0.5 * x + 1 + rng.normal(0, 0.2, x.size)


# --------------------------------------------------------------------------- definitions


def test_divergence_definition():
    assert divergence(2.0872, 1.8791) == pytest.approx(9.97, abs=0.005)  # the paper's 410M code specialist
    assert divergence(2.0, 2.2) == pytest.approx(-10.0)
    with pytest.raises(KalavaiError):
        divergence(0.0, 1.0)


def test_paper_divergences_follow_from_paper_losses():
    # validates that paper.py's per-domain table and divergences are read consistently
    t = paper.PER_DOMAIN_410M
    divs = {d: divergence(t["base"][d], t[f"{d}_spec"][d]) for d in ("code", "science", "fiction")}
    for d, v in divs.items():
        assert v == pytest.approx(paper.DIVERGENCE_410M[d], abs=0.01)
    assert np.mean(list(divs.values())) == pytest.approx(paper.DIVERGENCE_410M["mean"], abs=0.01)


# --------------------------------------------------------------------------- fits


def test_fit_line_recovers_known_line(noisy_line):
    x, y = noisy_line
    f = fit_line(x, y)
    assert f.slope == pytest.approx(0.5, abs=0.02)
    assert f.intercept == pytest.approx(1.0, abs=0.3)
    assert f.slope_ci[0] < 0.5 < f.slope_ci[1]
    assert f.intercept_ci[0] < 1.0 < f.intercept_ci[1]
    assert f.r2 > 0.99 and f.n == x.size
    assert f.resid_std == pytest.approx(0.2, rel=0.4)
    mean, lo, hi = f.predict(15.0)
    assert lo < 0.5 * 15 + 1 < hi and lo < mean < hi
    # the prediction band is for a new observation: wider than 2 x 1.96 residual sd
    assert hi - lo > 2 * 1.96 * f.resid_std
    m, l, h = f.predict([5.0, 15.0])
    assert m.shape == (2,) and np.all(l < m) and np.all(m < h)


def test_fit_line_rejects_bad_input():
    with pytest.raises(KalavaiError):
        fit_line([1, 2], [1, 2])
    with pytest.raises(KalavaiError):
        fit_line([3, 3, 3], [1, 2, 3])
    with pytest.raises(KalavaiError):
        fit_line([1, 2, float("nan")], [1, 2, 3])
    with pytest.raises(KalavaiError):
        fit_loglinear([0, 1, 2], [1, 2, 3])


def test_paper_fit_reproduces_the_papers_line():
    f = paper_fit()
    r = paper.REGRESSION_FIT
    assert f.n == r["n"] == 8
    assert f.slope == pytest.approx(r["slope"], abs=5e-5)
    assert f.intercept == pytest.approx(r["intercept"], abs=5e-5)
    assert f.r2 == pytest.approx(r["r2"], abs=5e-4)
    # the lower end is 0.514999..., which the paper printed as 0.52
    assert f.slope_ci == pytest.approx(r["slope_ci"], abs=6e-3)
    assert fit_loglinear(f.x, f.y).r2 == pytest.approx(r["loglinear_r2"], abs=5e-4)


def test_paper_text_points_do_not_give_the_papers_slope():
    # documents the paper/code disagreement kept in paper.py: 21.87 (text) vs 21.76 (fit script)
    f = paper_fit("text")
    assert abs(f.slope - paper.REGRESSION_FIT["slope"]) > 1e-3
    assert [p.condition for p in paper.paper_points("text")] == [p.condition for p in paper.paper_points()]


def test_paper_band_matches_the_authors_later_check():
    # our prediction band, on the paper's line, puts the same 2 of their 6 held-out points inside
    f = paper_fit()
    pts = paper.AUTHORS_LATER_CHECK_POINTS
    mean, lo, hi = f.predict([p.divergence for p in pts])
    y = np.array([p.gain for p in pts])
    assert int(((y >= lo) & (y <= hi)).sum()) == paper.AUTHORS_LATER_CHECK["in_band"]
    assert np.sqrt(np.mean((mean - y) ** 2)) == pytest.approx(paper.AUTHORS_LATER_CHECK["rmse_pp"], abs=0.05)


def test_band_coverage_reproduces_the_authors_later_check_point_by_point():
    cov = band_coverage(paper.AUTHORS_LATER_CHECK_POINTS, paper_fit())
    assert (cov["n_inside"], cov["n"]) == (paper.AUTHORS_LATER_CHECK["in_band"], paper.AUTHORS_LATER_CHECK["n"])
    assert cov["rmse"] == pytest.approx(paper.AUTHORS_LATER_CHECK["rmse_pp"], rel=1e-9)
    for label, pred, inside in zip(cov["labels"], cov["predicted"], cov["inside"]):
        assert (pred, inside) == (
            pytest.approx(paper.AUTHORS_LATER_CHECK_PREDICTED[label][0], rel=1e-9),
            paper.AUTHORS_LATER_CHECK_PREDICTED[label][1],
        )
    assert coverage_text(cov) == "2 of 6 inside the 95% band"
    assert not any(cov["in_fit"])


def test_authors_refit_of_fourteen_points_reproduces_theirs():
    f = authors_refit()
    reported = paper.AUTHORS_LATER_REFIT_14
    assert f.n == reported["n"] == len(paper.authors_refit_points())
    assert (f.slope, f.intercept, f.r2) == pytest.approx(
        (reported["slope"], reported["intercept"], reported["r2"]), rel=1e-9
    )
    # the authors' six points are in this line's sample: band_coverage says so
    assert all(band_coverage(paper.AUTHORS_LATER_CHECK_POINTS, f)["in_fit"])


def test_band_coverage_counts_points_known_to_be_inside_or_outside():
    # exact line y = 2x + 1 plus alternating noise: the band at x is narrow; points placed far
    # above or below it are outside by construction, points on the line inside
    x = np.arange(1.0, 11.0)
    f = fit_line(x, 2 * x + 1 + 0.1 * (-1) ** np.arange(10))
    pts = pd.DataFrame(
        {
            "label": ["on", "far above", "far below", "beyond"],
            "divergence": [3.0, 5.0, 7.0, 20.0],
            "gain": [7.0, 30.0, -10.0, 41.0],
        }
    )
    cov = band_coverage(pts, f)
    assert cov["inside"] == [True, False, False, True]
    assert (cov["n_inside"], cov["n"]) == (2, 4)
    assert cov["outside_fit_range"] == [False, False, False, True]
    assert cov["predicted"] == pytest.approx([7.0, 11.0, 15.0, 41.0], abs=0.1)
    records = [{"label": "on", "divergence": 3.0, "gain": 7.0}]
    assert band_coverage(records, f)["inside"] == [True]
    with pytest.raises(KalavaiError):
        band_coverage([], f)


def test_coverage_consistent_is_a_one_sided_binomial_test():
    # six points at 95%: P(at most 4 inside) = 0.033 < 0.05, P(at most 5) = 0.265
    assert [coverage_consistent(k, 6) for k in range(7)] == [False] * 5 + [True] * 2
    assert coverage_consistent(0, 0) is None
    assert coverage_consistent(19, 20) and not coverage_consistent(16, 20)
    with pytest.raises(KalavaiError):
        coverage_consistent(7, 6)


def test_three_lines_table_and_verdicts():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    fit = fit_line(x, 0.5 * x + np.array([0.0, 0.1, -0.1, 0.1, 0.0]), labels=list("abcde"))
    fits = sweep_tables.three_lines(fit)
    table = sweep_tables.fit_table(fits)
    assert list(table["n"]) == [5, 8, 14]
    assert table["slope"].iloc[2] == pytest.approx(paper.AUTHORS_LATER_REFIT_14["slope"], rel=1e-9)
    loo = leave_one_out(fit.x, fit.y)
    cov = sweep_tables.band_coverage(fits, sweep_tables.held_out_points(fit), loo)
    assert cov["ours", "ours"] is loo and len(cov) == 6
    rows = sweep_tables.coverage_table(cov).set_index(["points", "band"])
    refit_row = rows.loc[(sweep_tables.HELD_OUT["authors_w2"], sweep_tables.LINES["authors_refit_14"])]
    assert refit_row["validation"] == "in sample" and refit_row["consistent with 95%"] is None
    verdicts = {v.id: v for v in sweep_tables.law_verdicts(fit, loo)}
    assert "law.band_holds.authors_w2.authors_refit_14" not in verdicts  # in sample: no verdict
    assert verdicts["law.band_holds.authors_w2.paper"].holds is False  # 2 of 6
    assert "2 of 6" in verdicts["law.band_holds.authors_w2.paper"].numbers
    assert "law.band_holds.ours.ours" not in {v.id for v in sweep_tables.law_verdicts(fit)}  # no loo, no verdict
    # every one of the authors' points lies beyond our divergences (1 to 5): our band there is an extrapolation
    assert verdicts["law.band_holds.authors_w2.ours"].holds is None


def test_authors_w1_cloze_summary_follows_from_their_accuracies():
    for seed, reported in paper.AUTHORS_LATER_W1_AVG_CLOZE_VS_BEST_SPEC.items():
        avg = {m: np.mean(list(acc.values())) for m, acc in paper.AUTHORS_LATER_W1_CLOZE[seed].items()}
        best = max(v for m, v in avg.items() if m.endswith("_spec"))
        assert 100 * (avg["moe"] / best - 1) == pytest.approx(reported, abs=0.05)


def test_authors_later_losses_give_their_percentages():
    w3 = paper.AUTHORS_LATER_W3W4
    assert 100 * (w3["monolithic_ew"] - w3["fused_ew"]) / w3["monolithic_ew"] == pytest.approx(
        w3["fused_vs_monolithic_pct"], abs=0.01
    )
    assert 100 * (w3["best_spec_ew"] - w3["fused_ew"]) / w3["best_spec_ew"] == pytest.approx(
        w3["gain_in_domain_router_pct"], abs=0.01
    )
    for run in paper.AUTHORS_LATER_W5_BTX.values():
        for v in ("uniform", "kalavai", "btx"):
            assert 100 * (run["base_ew"] - run[f"{v}_ew"]) / run["base_ew"] == pytest.approx(
                run[f"{v}_vs_base_pct"], abs=0.001
            )
    w7 = paper.AUTHORS_LATER_W7_QWEN7B
    assert 100 * (w7["best_spec_ew"] - w7["fused_ew"]) / w7["best_spec_ew"] == pytest.approx(w7["gain_pct"], abs=0.001)


# --------------------------------------------------------------------------- validation


def test_loo_on_perfect_line():
    x = np.array([1.0, 3.0, 4.0, 7.0, 9.0, 12.0])
    r = leave_one_out(x, 0.5 * x + 1)
    assert r["rmse"] < 1e-9
    assert r["coverage"] == 1.0 and r["n"] == 6


def test_loo_and_holdout_on_noisy_line(noisy_line):
    x, y = noisy_line
    loo = leave_one_out(x, y)
    assert 0.1 < loo["rmse"] < 0.4
    assert loo["coverage"] >= 0.8
    h = holdout_validation(x, y, test_fraction=0.3, seed=1)
    assert h["n"] == 8 and len(h["train_index"]) == 17
    assert not set(h["train_index"]) & set(h["test_index"])
    assert h == holdout_validation(x, y, test_fraction=0.3, seed=1)  # seeded
    assert h["test_index"] != holdout_validation(x, y, test_fraction=0.3, seed=2)["test_index"]
    # an outlier in the held-out set is caught by the band
    y2 = y.copy()
    y2[h["test_index"][0]] += 10
    assert holdout_validation(x, y2, test_fraction=0.3, seed=1)["coverage"] < 1.0


def test_compare_predictors_ranks_the_informative_one_first(noisy_line):
    x, y = noisy_line
    rng = np.random.default_rng(3)
    table = pd.DataFrame(
        {
            "mean_divergence": x,
            "gain": y,
            "base_loss": rng.normal(2.5, 0.1, x.size),
            "max_divergence": x + rng.normal(0, 3, x.size),
        }
    )
    out = compare_predictors(table)
    assert list(out["predictor"])[:3] == ["mean_divergence", "max_divergence", "(constant)"]
    assert out["loo_rmse"].is_monotonic_increasing
    assert out.set_index("predictor").loc["mean_divergence", "r2"] > 0.99
    with pytest.raises(KalavaiError):
        compare_predictors(table, predictors=["nope"])


# --------------------------------------------------------------------------- several seeds per condition


@pytest.fixture
def two_seeds():
    """8 conditions x 2 seeds: seeds of a condition nearly agree, conditions scatter about the line."""
    rng = np.random.default_rng(4)
    cx = np.linspace(2, 30, 8)
    cy = 0.5 * cx + 1 + rng.normal(0, 1.5, cx.size)  # condition-level scatter: what a new condition would show
    names = [f"cond{i}" for i in range(cx.size)]
    x = np.repeat(cx, 2) + rng.normal(0, 0.05, 16)
    y = np.repeat(cy, 2) + rng.normal(0, 0.05, 16)
    groups = np.repeat(names, 2)
    return x, y, groups, names


def test_fit_is_on_condition_means(two_seeds, tmp_path):
    x, y, groups, names = two_seeds
    xm, ym, got_names, counts = condition_means(x, y, groups)
    assert got_names == names and counts.tolist() == [2] * 8
    assert xm[0] == pytest.approx(x[:2].mean()) and ym[3] == pytest.approx(y[6:8].mean())

    f = fit_line(x, y, groups=groups)
    assert f.n == f.n_conditions == 8 and f.n_observations == 16 and f.fit_on == "condition means"
    assert f.labels == tuple(names)
    means = fit_line(xm, ym)
    assert (f.slope, f.intercept, f.r2) == pytest.approx((means.slope, means.intercept, means.r2))
    assert f.slope_ci == pytest.approx(means.slope_ci)  # 6 degrees of freedom, not 14
    rows = fit_line(x, y)  # treating seeds as independent points claims a narrower slope interval
    assert rows.n == 16 and rows.fit_on == "points"
    assert np.diff(rows.slope_ci)[0] < np.diff(f.slope_ci)[0]

    d = f.to_dict()
    assert (d["fit_on"], d["n_conditions"], d["n_observations"]) == ("condition means", 8, 16)
    save_fit(tmp_path / "fit.json", f)
    g, _ = load_fit(tmp_path / "fit.json")
    assert g == f and g.fit_on == "condition means" and g.n_observations == 16
    assert fit_loglinear(x, y, groups=groups).n == 8


def test_leave_one_out_leaves_out_whole_conditions(two_seeds):
    x, y, groups, names = two_seeds
    loo = leave_one_out(x, y, groups=groups)
    xm, ym, _, _ = condition_means(x, y, groups)
    assert loo["n"] == loo["n_conditions"] == 8 and loo["n_observations"] == 16
    assert loo["conditions"] == names and loo["fit_on"] == "condition means"
    assert loo["actual"] == pytest.approx(ym.tolist())
    by_means = leave_one_out(xm, ym)
    assert loo["predicted"] == pytest.approx(by_means["predicted"]) and loo["rmse"] == pytest.approx(by_means["rmse"])
    # row-wise leave-one-out keeps the held-out seed's twin in the fit, and looks better than it is
    assert leave_one_out(x, y)["rmse"] < loo["rmse"]
    with pytest.raises(KalavaiError, match="4 conditions"):
        leave_one_out(x[:6], y[:6], groups=groups[:6])  # 3 conditions, however many rows


def test_holdout_split_keeps_each_condition_on_one_side(two_seeds):
    x, y, groups, names = two_seeds
    for seed in range(10):
        h = holdout_validation(x, y, test_fraction=0.3, seed=seed, groups=groups)
        train, test = set(groups[h["train_index"]]), set(groups[h["test_index"]])
        assert not train & test, f"seed {seed}: a condition on both sides"
        assert sorted(h["train_index"] + h["test_index"]) == list(range(16))
        assert set(h["test_conditions"]) == test and set(h["train_conditions"]) == train
        assert h["n"] == len(h["test_conditions"]) == 2  # round(0.3 x 8) conditions
        assert h["fit"]["fit_on"] == "condition means" and h["fit"]["n"] == 6 and h["fit"]["n_observations"] == 12


def test_compare_predictors_groups_by_condition(two_seeds):
    x, y, groups, names = two_seeds
    rng = np.random.default_rng(5)
    table = pd.DataFrame(
        {"mean_divergence": x, "gain": y, "base_loss": rng.normal(2.5, 0.1, x.size), "condition": groups}
    )
    out = compare_predictors(table).set_index("predictor")
    assert out.loc["mean_divergence", "n"] == 16 and out.loc["mean_divergence", "n_conditions"] == 8
    assert out.loc["mean_divergence", "fit_on"] == "condition means"
    assert out.loc["mean_divergence", "loo_rmse"] == pytest.approx(leave_one_out(x, y, groups=groups)["rmse"])
    assert out.loc["(constant)", "n_conditions"] == 8
    ungrouped = compare_predictors(table, group=None).set_index("predictor")
    assert ungrouped.loc["mean_divergence", "n_conditions"] == 16


# --------------------------------------------------------------------------- saving and predicting


def test_save_load_round_trip(tmp_path, noisy_line):
    f = fit_line(*noisy_line, labels=[f"c{i}" for i in range(25)])
    save_fit(tmp_path / "fit.json", f, {"scale": "tiny", "seeds": [42]})
    g, meta = load_fit(tmp_path / "fit.json")
    assert meta == {"scale": "tiny", "seeds": [42]}
    assert g == f and g.labels == f.labels
    assert g.predict(11.0) == pytest.approx(f.predict(11.0))
    logf = fit_loglinear(*noisy_line)
    assert LineFit.from_dict(logf.to_dict()).predict(11.0) == pytest.approx(logf.predict(11.0))


def test_load_refuses_tampered_or_foreign_files(tmp_path, noisy_line):
    import json

    f = fit_line(*noisy_line)
    save_fit(tmp_path / "fit.json", f, {})
    d = json.loads((tmp_path / "fit.json").read_text())
    d["fit"]["slope"] = 0.9
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(KalavaiError):
        load_fit(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(KalavaiError):
        load_fit(tmp_path / "other.json")
    with pytest.raises(KalavaiError):
        load_fit(tmp_path / "missing.json")


def test_predict_gain_flags():
    f = paper_fit()
    ok = predict_gain({"code": 9.97, "science": 11.60, "fiction": 25.37}, f)
    assert ok["mean_divergence"] == pytest.approx(15.6467, abs=1e-3)
    assert ok["predicted_gain"] == pytest.approx(f.slope * ok["mean_divergence"] + f.intercept)
    assert ok["lo"] < ok["predicted_gain"] < ok["hi"]
    assert not ok["below_floor"] and ok["non_improving"] == [] and not ok["outside_fit_range"]

    bad = predict_gain({"code": 2.0, "science": -1.5, "fiction": 0.0}, f)
    assert bad["non_improving"] == ["fiction", "science"]
    assert bad["below_floor"] and bad["outside_fit_range"]

    # positive divergences can still fall below the floor: the paper's line crosses 0 near 3.35%
    low = predict_gain({"a": 1.0, "b": 2.0}, f)
    assert low["non_improving"] == [] and low["below_floor"]
    with pytest.raises(KalavaiError):
        predict_gain({}, f)


# --------------------------------------------------------------------------- early prediction


def test_extrapolation_recovers_asymptote_from_first_30_percent():
    rng = np.random.default_rng(0)
    a, b, c, total = 2.0, 1.5, 0.6, 2000
    steps = np.arange(0, total + 1, 20)
    losses = a + b * (steps + 1.0) ** -c + rng.normal(0, 0.002, steps.size)
    k = steps <= 0.3 * total
    r = fit_saturating_curve(steps[k], losses[k], total)
    assert r["method"] == "power_law" and r["a"] == pytest.approx(a, abs=0.02)
    assert extrapolate_final_loss(steps[k], losses[k], 10**8) == pytest.approx(a, abs=0.02)
    assert extrapolate_final_loss(steps[k], losses[k], total) == pytest.approx(losses[-1], abs=0.01)


def test_extrapolation_on_cumulative_lr_clock():
    # a curve that is a power law in cumulative lr under warmup + cosine: the lr clock recovers
    # its final value, the step clock (which ignores the schedule) misses it badly
    rng = np.random.default_rng(1)
    total = 2000
    lr = warmup_cosine(total)
    clock = np.concatenate([[0.0], np.cumsum(lr)]) / max(lr)
    steps = np.arange(0, total + 1, 20)
    losses = 2.0 + 1.5 * (clock[steps] + 1) ** -0.6 + rng.normal(0, 0.002, steps.size)
    true_final = 2.0 + 1.5 * (clock[total] + 1) ** -0.6
    k = steps <= 0.3 * total
    with_lr = extrapolate_final_loss(steps[k], losses[k], total, lr_schedule=lr)
    assert with_lr == pytest.approx(true_final, abs=0.01)
    assert abs(extrapolate_final_loss(steps[k], losses[k], total) - true_final) > 0.05
    with pytest.raises(KalavaiError):
        extrapolate_final_loss(steps[k], losses[k], total, lr_schedule=lr[:100])


def test_extrapolation_falls_back_to_last_value():
    r = fit_saturating_curve([0, 10, 20], [3.0, 2.8, 2.7], 100)
    assert r["method"] == "last_value" and r["final_loss"] == 2.7
    assert extrapolate_final_loss([0, 10, 20, 30], [3.0, 2.8, 2.7, 2.65], 30) == 2.65  # already observed
    with pytest.raises(KalavaiError):
        extrapolate_final_loss([0, 20, 10], [3.0, 2.8, 2.7], 100)


def test_early_gain_prediction_and_error_table():
    total, steps = 1000, np.arange(0, 1001, 10)
    base = {"code": 3.0, "fiction": 3.2}
    asym = {"code": 2.4, "fiction": 2.2}
    curves = {
        d: {"steps": steps.tolist(), "losses": (asym[d] + (base[d] - asym[d]) * (steps + 1.0) ** -0.5).tolist()}
        for d in base
    }
    finals = {d: curves[d]["losses"][-1] for d in base}
    f = paper_fit()
    r = early_gain_prediction(curves, base, 0.3, total, f)
    assert r["predicted_divergence"] == r["divergences"] and set(r["divergences"]) == set(base)
    for d in base:
        assert r["predicted_final_loss"][d] == pytest.approx(finals[d], abs=0.01)
        assert r["curve_fit_method"][d] == "power_law"
    assert r["predicted_gain"] == pytest.approx(f.predict(r["mean_divergence"])[0])
    with pytest.raises(KalavaiError):
        early_gain_prediction(curves, {"code": 3.0}, 0.3, total, f)

    table = early_error_table(curves, base, finals, [0.1, 0.3, 1.0], total)
    assert len(table) == 6
    assert (table.loc[table.fraction == 1.0, "abs_divergence_error"] < 1e-9).all()
    assert (table["abs_divergence_error"] < 0.5).all()


def test_figures_draw(noisy_line):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kalavai_utils.analysis.figures_prediction import plot_early_error, plot_loo, plot_regression, plot_residuals

    x, y = noisy_line
    f = fit_line(x, y)
    df = pd.DataFrame({"mean_divergence": x, "gain": y, "condition": [f"c{i}" for i in range(x.size)]})
    fig, axes = plt.subplots(2, 3)
    plot_regression(axes[0, 0], axes[0, 1], df, f)
    assert "paper" in axes[0, 1].get_title()
    plot_residuals(axes[0, 2], f)
    plot_loo(axes[1, 0], leave_one_out(x, y))
    plot_early_error(
        axes[1, 1],
        pd.DataFrame(
            {
                "fraction": [0.1, 0.3, 0.1, 0.3],
                "abs_divergence_error": [2, 1, 3, 1],
                "contributor": ["a", "a", "b", "b"],
            }
        ),
    )
    plt.close(fig)


def test_a_figure_with_bootstrap_bands_is_the_same_every_time():
    """seaborn bootstraps its bands from fresh entropy unless seeded: the committed figures must not move."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kalavai_utils.analysis.figures_prediction import plot_early_error

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "fraction": np.repeat([0.1, 0.2, 0.3], 8),
            "abs_divergence_error": rng.gamma(2.0, 2.0, 24),
            "contributor": "all",
        }
    )

    def png() -> bytes:
        fig, ax = plt.subplots()
        plot_early_error(ax, table)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        return buf.getvalue()

    assert png() == png()


def test_a_prediction_out_of_condition_never_sees_its_own_condition():
    x = [1.0, 1.2, 2.0, 3.0, 3.1, 4.0, 5.0]
    y = [0.5, 0.7, 2.0, 2.9, 3.3, 4.2, 4.8]
    groups = ["a", "a", "b", "c", "c", "d", "e"]
    got = predict_out_of_condition(x, y, groups, [1.1, 3.05, 6.0], ["a", "c", "new"])
    # condition a's prediction is the line on the means of b..e, whatever a's own gains are
    others = fit_line([2.0, 3.05, 4.0, 5.0], [2.0, 3.1, 4.2, 4.8])
    assert got[0] == pytest.approx(others.predict(np.array([1.1]))[0][0])
    moved = predict_out_of_condition(x, [50.0, -50.0, *y[2:]], groups, [1.1], ["a"])
    assert moved[0] == pytest.approx(got[0])
    assert got[2] == pytest.approx(
        fit_line(x, y, groups=groups).predict(np.array([6.0]))[0][0]
    )  # unseen condition: all
    with pytest.raises(KalavaiError, match="fewer than 3"):
        predict_out_of_condition(x[:4], y[:4], groups[:4], [1.0], ["a"])
