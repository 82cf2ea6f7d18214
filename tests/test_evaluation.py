"""The evaluation protocol on a hand-computed case, and PAPER.md §4's definitions."""

import math

import pytest
import torch

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.evaluation import domain_loss
from kalavai_utils.protocol.metrics import divergence_pct, improvement_pct, summarize


class ConstantLoss(torch.nn.Module):
    """A 'model' whose loss on a batch is the mean of the batch's first tokens: checkable by hand."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, input_ids, labels=None, **kw):
        self.seen.append(input_ids[:, 0].tolist())
        return type("Out", (), {"loss": input_ids[:, 0].float().mean()})()


def test_domain_loss_is_mean_of_batch_means_in_order_with_cap():
    chunks = torch.tensor([[1], [2], [3], [4], [5], [6], [7], [8], [9], [10]])
    model = ConstantLoss()
    # batches of 4 in order: [1..4] mean 2.5, [5..8] mean 6.5, [9,10] mean 9.5
    assert domain_loss(model, chunks, batch_size=4, max_batches=50) == pytest.approx((2.5 + 6.5 + 9.5) / 3)
    assert model.seen[0] == [1, 2, 3, 4]
    model = ConstantLoss()
    assert domain_loss(model, chunks, batch_size=4, max_batches=2) == pytest.approx((2.5 + 6.5) / 2)
    assert len(model.seen) == 2


def test_empty_domain_is_refused():
    with pytest.raises(KalavaiError):
        domain_loss(ConstantLoss(), torch.zeros((0, 1), dtype=torch.long))


def test_definitions_on_the_papers_410m_numbers():
    losses = {
        "base": {"code": 2.0872, "science": 2.8920, "fiction": 2.9739},
        "spec:code": {"code": 1.8791, "science": 2.9085, "fiction": 2.9768},
        "spec:science": {"code": 2.1738, "science": 2.5565, "fiction": 3.0613},
        "spec:fiction": {"code": 2.1018, "science": 2.8904, "fiction": 2.2194},
        "fused": {"code": 1.8791, "science": 2.5565, "fiction": 2.2194},
    }
    specs = {"code": "spec:code", "science": "spec:science", "fiction": "spec:fiction"}
    m = summarize(losses, specs, ["code", "science", "fiction"])
    assert m["best_specialist"] == "spec:fiction"
    assert m["gain_vs_best_pct"]["fused"] == pytest.approx(7.72, abs=0.01)  # the paper's seed-42 gain
    assert m["divergence_pct"]["fiction"] == pytest.approx(25.37, abs=0.01)
    assert m["mean_divergence_pct"] == pytest.approx(15.65, abs=0.01)
    assert m["oracle_ew"] == pytest.approx(m["ew"]["fused"])
    assert m["conversion_efficiency"]["fused"] == pytest.approx(0.49, abs=0.01)
    assert m["non_improving_specialists"] == []


def test_non_improving_specialist_is_listed_and_bad_losses_refused():
    losses = {"base": {"a": 2.0, "b": 2.0}, "spec:a": {"a": 2.1, "b": 2.0}, "spec:b": {"a": 2.0, "b": 1.5}}
    m = summarize(losses, {"a": "spec:a", "b": "spec:b"}, ["a", "b"])
    assert m["non_improving_specialists"] == ["a"]
    assert improvement_pct(1.0, 2.0) == 50.0
    with pytest.raises(KalavaiError):
        divergence_pct(0.0, 1.0)
    with pytest.raises(KalavaiError):
        summarize({**losses, "spec:b": {"a": math.nan, "b": 1.0}}, {"a": "spec:a", "b": "spec:b"}, ["a", "b"])
