"""The frozen prefix's output read back instead of recomputed: every result bit for bit the same."""

import copy

import pytest
import torch
from transformers import GPTNeoXForCausalLM

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.cooperative import evaluate_pass
from kalavai_utils.protocol.evaluation import evaluate_domains
from kalavai_utils.protocol.fusion import FusedModel
from kalavai_utils.protocol.lora import add_adapters, lora_spec
from kalavai_utils.protocol.models import fingerprint, freeze_prefix, offline_config
from kalavai_utils.protocol.routers import make_router, train_routers
from kalavai_utils.protocol.training import TrainConfig, train_causal_lm
from kalavai_utils.runtime import prefix
from kalavai_utils.scales import get_scale

SCALE = get_scale("smoke").with_overrides(n_layers=3)  # d=32, vocab 512, seq 32
K = 2


@pytest.fixture(autouse=True)
def fresh_stores(monkeypatch):
    """Each test starts with no stored rows, under the default budget."""
    monkeypatch.setattr(prefix, "_STORES", {})
    monkeypatch.setattr(prefix, "_kept_bytes", 0)
    monkeypatch.delenv(prefix.BUDGET_ENV, raising=False)


def base_model(seed=0):
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(offline_config(SCALE)).eval()


def chunks(n, seed=1):
    return torch.randint(0, SCALE.vocab_size, (n, SCALE.seq_len), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_chunks_prefix_output_does_not_depend_on_its_batch(threads):
    """What makes reading back exact: the same chunk gives the same bits in any batch, of any size."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, x = base_model(), chunks(12)
        with torch.no_grad():
            whole = model(input_ids=x, output_hidden_states=True).hidden_states[K]
            for size in (1, 3, 4, 5):
                parts = [
                    model(input_ids=x[i : i + size], output_hidden_states=True).hidden_states[K]
                    for i in range(0, len(x), size)
                ]
                assert torch.equal(torch.cat(parts), whole)
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
            shuffled = model(input_ids=x[perm], output_hidden_states=True).hidden_states[K]
            assert torch.equal(shuffled[perm.argsort()], whole)
    finally:
        torch.set_num_threads(old)


def test_read_back_states_equal_the_prefix_and_are_shared_by_equal_prefixes_only():
    model, x = base_model(), chunks(6)
    states = prefix.for_model(model, K)
    with torch.no_grad():
        expected = model(input_ids=x, output_hidden_states=True).hidden_states[K]
    assert torch.equal(states(x[:4]), expected[:4])  # computed
    assert torch.equal(states(x[2:]), expected[2:])  # two read back, two computed
    assert len(states.rows) == 6
    assert prefix.for_model(copy.deepcopy(model), K) is states  # another model, the same prefix
    assert prefix.for_model(model, K - 1) is not states
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.gpt_neox.layers[0].mlp.dense_4h_to_h.weight[0, 0] += 1e-3  # one weight of the prefix
    assert prefix.for_model(other, K) is not states
    with torch.no_grad():
        other.gpt_neox.layers[K].mlp.dense_4h_to_h.weight[0, 0] += 1e-3  # after the prefix: irrelevant
    assert prefix.for_model(other, K) is prefix.for_model(other, K)


def test_no_cache_without_frozen_blocks_or_budget(monkeypatch):
    model = base_model()
    assert prefix.for_model(model, 0) is None
    monkeypatch.setenv(prefix.BUDGET_ENV, "0")
    assert prefix.for_model(model, K) is None
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(prefix.BUDGET_ENV, bad)
        with pytest.raises(KalavaiError, match="prefix cache's size"):
            prefix.for_model(model, K)


def test_a_spent_budget_keeps_nothing_more_and_changes_no_value(monkeypatch):
    model, x = base_model(), chunks(8)
    row_bytes = SCALE.seq_len * SCALE.d_model * 4
    monkeypatch.setenv(prefix.BUDGET_ENV, str(3 * row_bytes / 2**30))
    states = prefix.for_model(model, K)
    with torch.no_grad():
        expected = model(input_ids=x, output_hidden_states=True).hidden_states[K]
    assert torch.equal(states(x), expected)
    assert len(states.rows) == 3
    assert torch.equal(states(x), expected)


def _train(model, data, eval_sets, lora=False):
    cfg = TrainConfig.specialist(SCALE, 7, freeze_layers=K, steps=6, curve_every=3)
    model = copy.deepcopy(model)
    if lora:
        model = add_adapters(model, lora_spec(4), K, seed=0)
    log = train_causal_lm(model, data, cfg, eval_sets=eval_sets)
    return fingerprint(model), log["loss"], log["curve"]


@pytest.mark.parametrize("lora", [False, True])
def test_training_reading_the_prefix_back_is_bit_for_bit_training_without(monkeypatch, lora):
    model, data, held = base_model(), chunks(24), {"a": chunks(8, seed=2)}
    monkeypatch.setenv(prefix.BUDGET_ENV, "0")
    plain = _train(model, data, held, lora)
    monkeypatch.setenv(prefix.BUDGET_ENV, "1")
    cold = _train(model, data, held, lora)  # computes and keeps every chunk's prefix output
    states = prefix.for_model(model, K)
    assert len(states.rows) == 32
    warm = _train(model, data, held, lora)  # reads every one back
    assert plain == cold == warm
    assert plain[1][0] != plain[1][-1]  # it did train


def test_evaluation_and_router_training_reading_the_prefix_back_are_exact(monkeypatch):
    base = base_model()
    specs = []
    for _ in range(3):
        m = copy.deepcopy(base)
        freeze_prefix(m, K)
        with torch.no_grad():
            for p in m.parameters():
                if p.requires_grad:
                    p.add_(0.2 * torch.randn_like(p))
        specs.append(m.eval())
    train, held = chunks(16), {"a": chunks(8, seed=2), "b": chunks(8, seed=3)}

    def run():
        fused = FusedModel.from_specialists(specs, ["x", "y", "z"], K)
        router = make_router("mlp", SCALE.d_model, 3, hidden=16, seed=1)
        losses = train_routers(fused, [(router, "sequence")], train, 10, 4, 1e-2, 0.0, seed=3, progress=False)
        variants = [
            ("uniform", "uniform", None, None),
            ("soft", "soft", router, "sequence"),
            ("hard", "hard", router, "sequence"),
        ]
        evaluated = evaluate_pass(fused, held, SCALE, variants, experts=True)
        return (
            losses,
            router.state_dict(),
            evaluated,
            evaluate_domains(specs[0], held, states=prefix.for_model(specs[0], K)),
        )

    monkeypatch.setenv(prefix.BUDGET_ENV, "0")
    plain = run()
    monkeypatch.setenv(prefix.BUDGET_ENV, "1")
    cold, warm = run(), run()
    assert prefix.for_fused(FusedModel.from_specialists(specs, ["x", "y", "z"], K)) is prefix.for_model(specs[1], K)
    for other in (cold, warm):
        assert other[0] == plain[0] and other[2] == plain[2] and other[3] == plain[3]
        assert all(torch.equal(v, other[1][k]) for k, v in plain[1].items())
    assert plain[2][0]["spec:x"] == pytest.approx(evaluate_domains(specs[0], held))  # and the losses are the models'


def test_the_log_counts_only_the_flops_its_steps_ran(monkeypatch):
    """A read-back prefix's forward is not computed, so it must not count toward the fraction of peak."""
    model, data = base_model(), chunks(24)
    cfg = TrainConfig.specialist(SCALE, 7, freeze_layers=K, steps=2, curve_every=0)
    logs = {}
    for budget in ("0", "1"):
        monkeypatch.setenv(prefix.BUDGET_ENV, budget)
        logs[budget] = train_causal_lm(copy.deepcopy(model), data, cfg)
    plain, read_back = logs["0"], logs["1"]
    assert not plain["prefix_read_back"] and plain["flops_per_token_run"] == plain["flops_per_token"]
    d, T = SCALE.d_model, SCALE.seq_len
    per_block = 2 * (3 * d * d + d * d + 4 * d * d + 4 * d * d) + 2 * 2 * T * d  # qkv, dense, MLP in and out; attention
    assert read_back["prefix_read_back"]
    assert read_back["flops_per_token"] - read_back["flops_per_token_run"] == K * per_block
