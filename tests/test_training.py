"""The one training loop: seeded, frozen prefix untouched, loss not inflated by accumulation."""

import copy
import signal
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from transformers import GPTNeoXForCausalLM, get_scheduler

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.models import fingerprint, frozen_prefix_names, offline_config
from kalavai_utils.protocol.training import (
    TrainConfig,
    local_grad_accum,
    micro_batch_order,
    process_shape,
    train_causal_lm,
)
from kalavai_utils.runtime.perf import training_flops_per_token
from kalavai_utils.runtime.sharding import set_activation_checkpointing
from kalavai_utils.scales import get_scale


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


def test_checkpointed_training_matches_plain_and_is_switched_off_after(recwarn):
    scale, base, chunks = _setup()
    plain, checkpointed = copy.deepcopy(base), copy.deepcopy(base)
    train_causal_lm(plain, chunks, TrainConfig.specialist(scale, 0, curve_every=0))
    during = []
    train_causal_lm(
        checkpointed,
        chunks,
        TrainConfig.specialist(scale, 0, curve_every=0, grad_checkpointing=True),
        on_step=lambda step, m: during.append(m.is_activation_checkpointing),
    )
    assert during and all(during)
    assert fingerprint(checkpointed) == fingerprint(plain)  # recomputing activations changes no arithmetic
    assert not checkpointed.is_activation_checkpointing  # the trained model is handed back as a plain one
    assert not [w for w in recwarn if "checkpointing" in str(w.message)]  # no deprecated name called


def test_releases_without_the_new_checkpointing_names_get_the_old_ones():
    calls = []
    older = SimpleNamespace(
        gradient_checkpointing_enable=lambda: calls.append("on"),
        gradient_checkpointing_disable=lambda: calls.append("off"),
    )
    set_activation_checkpointing(older, True)
    set_activation_checkpointing(older, False)
    assert calls == ["on", "off"]


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
    assert log["tokens_per_s"] > 0 and log["flops_per_token"] > 0
    assert log["curve_seconds"] > 0  # timed apart from train_seconds, for benchmark.run_phases


def test_pretraining_trains_the_embedding_and_specialists_never_do():
    """The base's own pretraining trains everything; every specialist recipe, K = 0 included, freezes the embedding."""
    scale, base, chunks = _setup()
    start = base.gpt_neox.embed_in.weight.clone()
    pretrained = copy.deepcopy(base)
    train_causal_lm(pretrained, chunks, TrainConfig.pretrain(scale.with_overrides(pretrain_steps=2, pretrain_batch=2)))
    assert not torch.equal(pretrained.gpt_neox.embed_in.weight, start)
    specialist = copy.deepcopy(base)
    train_causal_lm(specialist, chunks, TrainConfig.specialist(scale, 0, freeze_layers=0, steps=2))
    assert torch.equal(specialist.gpt_neox.embed_in.weight, start)
    assert not torch.equal(
        specialist.gpt_neox.layers[0].attention.query_key_value.weight,
        base.gpt_neox.layers[0].attention.query_key_value.weight,
    )


def test_flops_per_token_counts_matmuls_and_only_the_backward_that_runs():
    scale, base, chunks = _setup()
    m = copy.deepcopy(base)
    log = train_causal_lm(m, chunks, TrainConfig.specialist(scale, 0, steps=1, curve_every=0))
    d, L, T, V = scale.d_model, scale.n_layers, scale.seq_len, scale.vocab_size
    block, head, attention = 12 * d * d, V * d, 2 * 2 * T * d  # qkv 3d², out d², MLP 8d²; the lookup is free
    K = scale.freeze_layers
    forward = 2 * (L * block + head) + L * attention
    # frozen blocks run no backward at all; trained blocks and the head: weight and input gradients
    backward = (L - K) * (4 * block + 2 * attention) + 4 * head
    assert log["flops_per_token"] == forward + backward
    everything = training_flops_per_token(copy.deepcopy(base), T)
    assert everything == 6 * (L * block + head) + 12 * L * T * d  # PaLM's count when nothing is frozen


def test_logged_lr_is_the_one_each_update_used():
    scale, base, chunks = _setup()
    cfg = TrainConfig.specialist(scale, 0, steps=10, warmup_frac=0.2, curve_every=0)
    log = train_causal_lm(copy.deepcopy(base), chunks, cfg)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = get_scheduler("cosine", opt, num_warmup_steps=2, num_training_steps=10)
    used = []
    for _ in range(10):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert log["lr"] == used
    assert log["lr"][0] == 0.0 and log["lr"][-1] > 0  # warmup starts at 0; the last update is not at 0


def test_too_little_data_is_refused_not_spun_on():
    scale, base, chunks = _setup()

    def too_slow(*_):
        raise TimeoutError("training spun instead of refusing")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(10)
    try:
        for n in (1, 0):  # 1: the loader yields nothing and the loop used to spin forever
            with pytest.raises(KalavaiError, match="too little training data"):
                train_causal_lm(
                    copy.deepcopy(base), chunks[:n], TrainConfig.specialist(scale, 0, micro_batch=2, curve_every=0)
                )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_data_order_is_the_seeded_loaders_and_starts_anywhere():
    for n, mb, seed in ((24, 2, 1), (13, 4, 3), (5, 5, 2)):
        loader = DataLoader(
            TensorDataset(torch.arange(n)),
            batch_size=mb,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            drop_last=True,
        )
        expected = [b.tolist() for _ in range(4) for (b,) in loader]  # four epochs
        stream = micro_batch_order(n, mb, seed)
        assert [next(stream).tolist() for _ in expected] == expected
        for start in (1, n // mb, len(expected) - 1):
            assert next(micro_batch_order(n, mb, seed, start)).tolist() == expected[start]


def test_grad_accum_must_split_over_processes():
    cfg = TrainConfig(steps=1, lr=1e-3, seed=0, micro_batch=2, grad_accum=4)
    assert [local_grad_accum(cfg, p) for p in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(KalavaiError, match="8 sequences cannot be split evenly over 3 processes"):
        local_grad_accum(cfg, 3)
    # a one-GPU shape keeps its global batch over several processes: 8 x 1 runs as 4 x 2 on two
    one_gpu = TrainConfig(steps=1, lr=1e-3, seed=0, micro_batch=8, grad_accum=1)
    assert [local_grad_accum(one_gpu, p) for p in (1, 2, 4, 8)] == [1, 1, 1, 1]
    shapes = [process_shape(one_gpu, p) for p in (1, 2, 4, 8)]
    assert [(c.micro_batch, c.grad_accum) for c in shapes] == [(8, 1), (4, 2), (2, 4), (1, 8)]
