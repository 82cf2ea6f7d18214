"""The regime calibration table of notebook 02: divergence, worst forgetting and the three bars."""

import pytest

from kalavai_utils import paper
from kalavai_utils.analysis import report
from kalavai_utils.protocol import metrics

DOMAINS = ("code", "science", "fiction")


def paper_losses():
    return {
        k.replace("_spec", ""): {d: v for d, v in row.items() if d != "ew"} for k, row in paper.PER_DOMAIN_410M.items()
    }


def test_paper_410m_values_come_out_of_the_same_function():
    cal = metrics.regime_calibration(paper_losses(), {d: d for d in DOMAINS}, DOMAINS)
    rows = {r["specialist"]: r for r in cal["rows"]}
    for d in DOMAINS:
        assert rows[d]["divergence_pct"] == pytest.approx(paper.DIVERGENCE_410M[d], abs=0.01)
    assert rows["science"]["worst_on"] == "code"
    assert rows["science"]["worst_forgetting_pct"] == pytest.approx(4.15, abs=0.01)
    assert cal["best_specialist"] == "fiction" and all(cal["verdicts"].values())


def test_each_bar_can_fail():
    losses = {
        "base": {"code": 4.0, "science": 2.5, "fiction": 2.5},
        "code": {"code": 3.8, "science": 2.6, "fiction": 2.6},  # 5% divergence, 4% forgetting
        "science": {"code": 4.4, "science": 2.0, "fiction": 2.5},  # 10% forgetting on code
        "fiction": {"code": 4.1, "science": 2.5, "fiction": 2.0},
    }
    cal = metrics.regime_calibration(losses, {d: d for d in DOMAINS}, DOMAINS)
    div_bar, forget_bar, best_bar = cal["verdicts"].values()
    assert not div_bar and not forget_bar
    assert best_bar  # fiction: EW 2.867 < base 3.0
    rows = {r["specialist"]: r for r in cal["rows"]}
    assert rows["science"]["worst_on"] == "code" and rows["science"]["worst_forgetting_pct"] == pytest.approx(10.0)
    worse = {
        **losses,
        "science": {"code": 4.6, "science": 2.0, "fiction": 2.5},
        "fiction": {"code": 4.5, "science": 2.6, "fiction": 2.2},
        "code": {"code": 3.9, "science": 2.6, "fiction": 2.7},
    }
    assert not list(metrics.regime_calibration(worse, {d: d for d in DOMAINS}, DOMAINS)["verdicts"].values())[2]


def test_forgetting_needs_another_domain():
    with pytest.raises(metrics.KalavaiError):
        metrics.forgetting_pct({"code": 1.0}, {"code": 0.9}, "code", ["code"])


def test_regime_table_aggregates_seeds_beside_the_papers_410m_values():
    base = {d: 2.0 for d in DOMAINS}
    # own-domain loss and the loss on each other domain; with base 2.0, 0.1 of loss is 5%
    seed42 = {
        "code": {"code": 1.8, "science": 2.1, "fiction": 2.0},  # divergence 10%, forgets 5% on science
        "science": {"code": 2.04, "science": 1.6, "fiction": 2.02},  # 20%, 2% on code
        "fiction": {"code": 2.0, "science": 2.06, "fiction": 1.5},
    }  # 25%, 3% on science
    seed137 = {
        "code": {"code": 1.76, "science": 2.0, "fiction": 2.08},  # 12%, 4% on fiction
        "science": {"code": 2.06, "science": 1.64, "fiction": 2.0},  # 18%, 3% on code
        "fiction": {"code": 2.0, "science": 2.16, "fiction": 1.42},
    }  # 29%, 8% on science: over the 6% bar
    baselines = {
        seed: {"base": base, **{f"spec:{d}": specs[d] for d in DOMAINS}}
        for seed, specs in ((42, seed42), (137, seed137))
    }
    table, verdicts = report.regime_table(baselines, DOMAINS)
    rows = table.set_index("specialist")
    # mean ± sample std (ddof 1) over the two seeds: sqrt(2) = 1.4142 for values 2 apart
    assert rows["divergence %"].tolist() == ["11.0000 ± 1.4142", "19.0000 ± 1.4142", "27.0000 ± 2.8284"]
    assert rows["worst forgetting %"].tolist() == ["4.5000 ± 0.7071", "2.5000 ± 0.7071", "5.5000 ± 3.5355"]
    assert rows["worst on"].tolist() == ["fiction, science", "code", "science"]
    paper_rows = {
        r["specialist"]: r for r in metrics.regime_calibration(paper_losses(), {d: d for d in DOMAINS}, DOMAINS)["rows"]
    }
    for d in DOMAINS:
        assert rows.loc[d, "paper 410M divergence %"] == round(paper_rows[d]["divergence_pct"], 2)
        assert rows.loc[d, "paper 410M divergence %"] == pytest.approx(paper.DIVERGENCE_410M[d], abs=0.01)
        assert rows.loc[d, "paper 410M worst forgetting %"] == round(paper_rows[d]["worst_forgetting_pct"], 2)
    assert rows.loc["science", "paper 410M worst forgetting %"] == 4.15
    divergence, forgetting, best = (
        verdicts.loc[next(k for k in verdicts.index if word in k)]
        for word in ("divergence", "forgetting", "best specialist")
    )
    assert divergence[[42, 137, "every seed", "paper 410M"]].tolist() == [True, True, True, True]
    assert forgetting[[42, 137, "every seed", "paper 410M"]].tolist() == [True, False, False, True]
    assert best[[42, 137, "every seed", "paper 410M"]].tolist() == [True, True, True, True]
