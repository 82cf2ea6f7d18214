"""The regime calibration table of notebook 02: divergence, worst forgetting and the three bars."""
import pytest

from kalavai_utils import paper
from kalavai_utils.protocol import metrics

DOMAINS = ("code", "science", "fiction")


def paper_losses():
    return {k.replace("_spec", ""): {d: v for d, v in row.items() if d != "ew"} for k, row in paper.PER_DOMAIN_410M.items()}


def test_paper_410m_values_come_out_of_the_same_function():
    cal = metrics.regime_calibration(paper_losses(), {d: d for d in DOMAINS}, DOMAINS)
    rows = {r["specialist"]: r for r in cal["rows"]}
    for d in DOMAINS:
        assert rows[d]["divergence_pct"] == pytest.approx(paper.DIVERGENCE_410M[d], abs=0.01)
    assert rows["science"]["worst_on"] == "code"
    assert rows["science"]["worst_forgetting_pct"] == pytest.approx(4.15, abs=0.01)
    assert cal["best_specialist"] == "fiction" and all(cal["verdicts"].values())


def test_each_bar_can_fail():
    losses = {"base": {"code": 4.0, "science": 2.5, "fiction": 2.5},
              "code": {"code": 3.8, "science": 2.6, "fiction": 2.6},  # 5% divergence, 4% forgetting
              "science": {"code": 4.4, "science": 2.0, "fiction": 2.5},  # 10% forgetting on code
              "fiction": {"code": 4.1, "science": 2.5, "fiction": 2.0}}
    cal = metrics.regime_calibration(losses, {d: d for d in DOMAINS}, DOMAINS)
    div_bar, forget_bar, best_bar = cal["verdicts"].values()
    assert not div_bar and not forget_bar
    assert best_bar  # fiction: EW 2.867 < base 3.0
    rows = {r["specialist"]: r for r in cal["rows"]}
    assert rows["science"]["worst_on"] == "code" and rows["science"]["worst_forgetting_pct"] == pytest.approx(10.0)
    worse = {**losses, "science": {"code": 4.6, "science": 2.0, "fiction": 2.5}, "fiction": {"code": 4.5, "science": 2.6, "fiction": 2.2}, "code": {"code": 3.9, "science": 2.6, "fiction": 2.7}}
    assert not list(metrics.regime_calibration(worse, {d: d for d in DOMAINS}, DOMAINS)["verdicts"].values())[2]


def test_forgetting_needs_another_domain():
    with pytest.raises(metrics.KalavaiError):
        metrics.forgetting_pct({"code": 1.0}, {"code": 0.9}, "code", ["code"])
