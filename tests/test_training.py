"""The one training loop: seeded, frozen prefix untouched, loss not inflated by accumulation."""
import copy

import torch
from transformers import GPTNeoXForCausalLM

from kalavai_utils.models import fingerprint, frozen_prefix_names, offline_config
from kalavai_utils.scales import get_scale
from kalavai_utils.training import TrainConfig, train_causal_lm


def _setup():
    scale = get_scale("smoke")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(offline_config(scale))
    chunks = torch.randint(0, scale.vocab_size, (24, scale.seq_len))
    return scale, model, chunks


def test_same_seed_same_weights_other_seed_differs():
    scale, base, chunks = _setup()
    runs = []
    for seed in (1, 1, 2):
        m = copy.deepcopy(base)
        train_causal_lm(m, chunks, TrainConfig.specialist(scale, seed, curve_every=0))
        runs.append(fingerprint(m))
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_frozen_prefix_unchanged_and_rest_trained():
    scale, base, chunks = _setup()
    m = copy.deepcopy(base)
    log = train_causal_lm(m, chunks, TrainConfig.specialist(scale, 0, curve_every=0))
    before, after = base.state_dict(), m.state_dict()
    frozen = frozen_prefix_names(after, scale.freeze_layers)
    assert frozen and log["frozen_tensors"] == len(frozen)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert any(not torch.equal(before[n], after[n]) for n in after if n not in frozen)


def test_logged_loss_is_mean_not_sum_over_accumulation():
    scale, base, chunks = _setup()
    m = copy.deepcopy(base)
    log = train_causal_lm(m, chunks, TrainConfig.specialist(scale, 0, grad_accum=4, curve_every=0, lr=0.0))
    # with lr 0 the model does not move: each logged step must be near the initial loss, not 4x it
    initial = base(input_ids=chunks[:4], labels=chunks[:4]).loss.item()
    assert all(abs(l - initial) < 0.5 for l in log["loss"])
    assert len(log["loss"]) == scale.spec_steps and len(log["lr"]) == scale.spec_steps


def test_curves_start_at_step_zero_and_end_at_last_step():
    scale, base, chunks = _setup()
    m = copy.deepcopy(base)
    log = train_causal_lm(m, chunks, TrainConfig.specialist(scale, 0), eval_sets={"x": chunks[:4]})
    steps = [p["step"] for p in log["curve"]]
    assert steps[0] == 0 and steps[-1] == scale.spec_steps
    assert log["tokens_per_s"] > 0 and log["flops_per_token"] > 6 * log["n_params"]
