"""Every scale's settings hang together; the GPU-sized offline scale builds and trains on a CPU."""

import pytest
import torch
import transformers

from kalavai_utils.protocol.models import freeze_prefix, n_params, offline_config
from kalavai_utils.protocol.training import TrainConfig, train_causal_lm
from kalavai_utils.scales import SCALES, get_scale


@pytest.mark.parametrize("name", list(SCALES))
def test_scale_is_consistent(name):
    s = get_scale(name)
    assert s.freeze_layers >= 0 and s.seeds and s.spec_steps > 0
    if s.is_hub:
        assert s.hub_model and s.hub_revision
        return
    assert s.d_model % s.n_heads == 0 and 0 <= s.freeze_layers < s.n_layers
    assert s.base_revision == f"step{max(s.pretrain_revisions)}" and s.pretrain_steps == max(s.pretrain_revisions)
    assert s.micro_batch * s.grad_accum <= s.docs_per_domain


def test_synthetic_25m_builds_and_takes_a_training_step():
    s = get_scale("synthetic-25m")
    model = transformers.GPTNeoXForCausalLM(offline_config(s))
    assert 20e6 < n_params(model) < 35e6  # the paper's control is a ~25M GPT
    chunks = torch.randint(0, s.vocab_size, (4, s.seq_len))
    cfg = TrainConfig.specialist(s, 42, steps=1, micro_batch=2, grad_accum=2, curve_every=0)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("gpt_neox.layers.0.")}
    log = train_causal_lm(model, chunks, cfg)
    assert len(log["loss"]) == 1 and log["loss"][0] == log["loss"][0]
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen_before.items())  # the frozen block stayed put
    assert len(freeze_prefix(model, s.freeze_layers)) > 0


def test_every_offline_scale_has_enough_code_on_this_python():
    # The code domain is the standard library's documented functions: a scale asking for more
    # specialist documents than this Python holds could not even prepare its data (notebook 00).
    from kalavai_utils import corpora

    biggest = max(s.docs_per_domain for s in SCALES.values() if not s.is_hub)
    assert len(corpora.generate_documents("code", biggest, seed=1234, overlap=0.5, stream="specialist")) == biggest
