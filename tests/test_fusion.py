"""The fused model: exactness against the specialists, routing modes, causality, I/O."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPTNeoXForCausalLM

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.fusion import FusedModel, weight_average
from kalavai_utils.protocol.models import frozen_prefix_names, offline_config
from kalavai_utils.scales import get_scale

K = 1  # frozen blocks
N_LAYERS = 3
VOCAB = 512


def tiny_config(n_layers=N_LAYERS):
    return offline_config(get_scale("smoke").with_overrides(n_layers=n_layers))  # d=32, vocab 512, seq 32


def make_specialists(n=3, freeze=K, seed=0, n_layers=N_LAYERS):
    """n copies of one random base whose unfrozen weights are perturbed differently (fake fine-tuning)."""
    torch.manual_seed(seed)
    base = GPTNeoXForCausalLM(tiny_config(n_layers)).eval()
    frozen = set(frozen_prefix_names(base.state_dict().keys(), freeze))
    specs = []
    for _ in range(n):
        m = GPTNeoXForCausalLM(tiny_config(n_layers))
        m.load_state_dict(base.state_dict())
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name not in frozen:
                    p.add_(0.2 * torch.randn_like(p))
        specs.append(m.eval())
    return specs


def fuse(specs, **kw):
    return FusedModel.from_specialists(specs, [f"e{i}" for i in range(len(specs))], K, **kw)


def one_hot(i, n):
    g = torch.zeros(n)
    g[i] = 1.0
    return g


@pytest.fixture(scope="module")
def specs():
    return make_specialists()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_soft_gates_are_a_distribution(specs, tokens):
    out = fuse(specs)(tokens)
    assert out.gates.shape == (2, 32, 3)
    assert (out.gates >= 0).all()
    assert torch.allclose(out.gates.sum(-1), torch.ones(2, 32), atol=1e-6)
    assert out.logits.shape == (2, 32, VOCAB)


@torch.no_grad()
def test_one_hot_gates_reproduce_each_specialist_exactly(specs, tokens):
    fused = fuse(specs)
    ones = torch.ones_like(tokens)
    for i, spec in enumerate(specs):
        g = one_hot(i, 3)
        assert torch.equal(fused(tokens, gates=g).logits, spec(tokens).logits)
        assert torch.equal(fused(tokens, attention_mask=ones, gates=g).logits, spec(tokens, attention_mask=ones).logits)
        assert torch.allclose(fused(tokens, labels=tokens, gates=g).loss, spec(tokens, labels=tokens).loss, atol=1e-6)
    # The specialists really differ, so the check above could have failed.
    assert not torch.allclose(specs[0](tokens).logits, specs[1](tokens).logits, atol=1e-3)


@torch.no_grad()
def test_padding_masks_match_the_specialist(specs, tokens):
    fused = fuse(specs)
    right = torch.ones_like(tokens)
    right[0, 25:] = 0
    left = torch.ones_like(tokens)
    left[1, :6] = 0
    for mask in (right, left):
        for i in (0, 1):
            ours = fused(tokens, attention_mask=mask, gates=one_hot(i, 3)).logits
            theirs = specs[i](tokens, attention_mask=mask).logits
            real = mask.bool()  # padded query rows are implementation-defined; compare the real tokens
            assert torch.allclose(ours[real], theirs[real], atol=1e-5)
    # Left padding changes what the real tokens see, so the check above could have failed.
    assert not torch.allclose(ours[real], fused(tokens, gates=one_hot(1, 3)).logits[real], atol=1e-3)
    # Explicit positions reach the rotary embedding. (RoPE is relative, so only positions
    # that are not a uniform shift change anything: stretch them.)
    # The mask of ones matters: without a mask (and without a cache) transformers reads jumps in
    # position_ids as packed-sequence boundaries.
    positions, ones = 2 * torch.arange(32).expand(2, 32), torch.ones_like(tokens)
    ours = fused(tokens, attention_mask=ones, position_ids=positions, gates=one_hot(2, 3)).logits
    assert torch.allclose(ours, specs[2](tokens, attention_mask=ones, position_ids=positions).logits, atol=1e-5)
    assert not torch.allclose(ours, fused(tokens, gates=one_hot(2, 3)).logits, atol=1e-4)
    # Without a mask we behave as GPT-NeoX without a cache does.
    ours = fused(tokens, position_ids=positions, gates=one_hot(2, 3)).logits
    assert torch.allclose(ours, specs[2](tokens, position_ids=positions, use_cache=False).logits, atol=1e-5)


@torch.no_grad()
def test_eager_attention_matches_sdpa(specs, tokens, tmp_path):
    fused = fuse(specs)
    fused.save_pretrained(tmp_path)
    eager = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    mask = torch.ones_like(tokens)
    mask[0, :4] = 0
    assert torch.allclose(
        eager(tokens, attention_mask=mask).logits[mask.bool()],
        fused(tokens, attention_mask=mask).logits[mask.bool()],
        atol=1e-5,
    )


@torch.no_grad()
def test_identical_experts_give_that_model(tokens):
    spec = make_specialists(n=1)[0]
    fused = fuse([spec, spec, spec], router_kind="mlp", router_hidden=16)
    assert torch.allclose(fused(tokens).logits, spec(tokens).logits, atol=1e-5)


@torch.no_grad()
def test_logits_are_the_gated_sum_of_expert_logits(specs, tokens):
    fused = fuse(specs)
    out = fused(tokens)
    per_expert = torch.stack([s(tokens).logits for s in specs])  # [N, B, T, V]
    expected = (out.gates.permute(2, 0, 1)[..., None] * per_expert).sum(0)
    assert torch.allclose(out.logits, expected, atol=1e-5)
    hidden = fused.expert_hidden(tokens)
    logits = fused.unembed(hidden)
    assert hidden.shape == (3, 2, 32, 32) and logits.shape == (3, 2, 32, VOCAB)
    assert torch.equal(logits, per_expert)
    # The router reads the specialists' final hidden states (after the final layer norm), averaged.
    each_h = torch.stack([s.gpt_neox(tokens).last_hidden_state for s in specs])
    assert torch.allclose(hidden, each_h, atol=1e-6)
    assert torch.allclose(out.gates, fused.router(each_h.mean(0)).softmax(-1), atol=1e-6)


@torch.no_grad()
def test_hard_mode_picks_the_argmax_expert(specs, tokens):
    fused = fuse(specs, seed=5)
    soft = fused(tokens).gates
    fused.set_mode("hard")
    out = fused(tokens)
    choice = soft.argmax(-1)
    assert torch.equal(out.gates, torch.nn.functional.one_hot(choice, 3).float())
    per_expert = torch.stack([s(tokens).logits for s in specs])
    b, t = torch.meshgrid(torch.arange(2), torch.arange(32), indexing="ij")
    assert torch.equal(out.logits, per_expert[choice, b, t])
    assert len(choice.unique()) > 1  # the random router does pick different experts, so this tests something


@torch.no_grad()
def test_uniform_mode_ignores_the_router(specs, tokens):
    fused = fuse(specs)
    fused.set_mode("uniform")
    out = fused(tokens)
    assert torch.allclose(out.gates, torch.full((2, 32, 3), 1 / 3))
    mean = torch.stack([s(tokens).logits for s in specs]).mean(0)
    assert torch.allclose(out.logits, mean, atol=1e-5)
    with torch.no_grad():
        fused.router.net.weight.mul_(10)
    assert torch.equal(fused(tokens).logits, out.logits)


@torch.no_grad()
def test_token_granularity_is_causal_and_sequence_is_not(specs, tokens):
    t = 10
    changed = tokens.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % VOCAB
    token = fuse(specs, granularity="token")
    a, b = token(tokens), token(changed)
    assert torch.equal(a.gates[:, : t + 1], b.gates[:, : t + 1])
    assert torch.equal(a.logits[:, : t + 1], b.logits[:, : t + 1])
    assert not torch.allclose(a.gates[:, t + 1 :], b.gates[:, t + 1 :])

    seq = fuse(specs, granularity="sequence")
    a, b = seq(tokens), seq(changed)
    assert not torch.allclose(a.gates[:, 0], b.gates[:, 0])  # position 0 saw the future: the authors' leak
    assert torch.allclose(a.gates, a.gates[:, :1].expand_as(a.gates))  # one gate vector per sequence


@torch.no_grad()
def test_sequence_pooling_respects_the_attention_mask(specs, tokens):
    seq = fuse(specs, granularity="sequence")
    mask = torch.ones_like(tokens)
    mask[:, 20:] = 0
    changed = tokens.clone()
    changed[:, 20:] = (changed[:, 20:] + 3) % VOCAB
    a, b = seq(tokens, attention_mask=mask), seq(changed, attention_mask=mask)
    assert torch.allclose(a.gates, b.gates, atol=1e-6)
    assert not torch.allclose(a.gates, seq(tokens).gates)


@pytest.mark.parametrize("n", [2, 4])
@torch.no_grad()
def test_shared_prefix_runs_once_per_forward(n, tokens):
    fused = fuse(make_specialists(n=n))
    calls = {"embed": 0, "shared": 0, "suffix": 0}

    def counter(key):
        def hook(*_):
            calls[key] += 1

        return hook

    fused.embed_in.register_forward_hook(counter("embed"))
    fused.shared_layers[0].register_forward_hook(counter("shared"))
    for expert in fused.experts:
        expert.layers[0].register_forward_hook(counter("suffix"))
    fused(tokens)
    assert calls == {"embed": 1, "shared": 1, "suffix": n}
    # Memory too: the prefix is stored once, not n times.
    n_shared = sum(p.numel() for p in fused.shared_layers.parameters()) + fused.embed_in.weight.numel()
    n_spec = sum(p.numel() for p in make_specialists(n=1)[0].parameters())
    n_router = sum(p.numel() for p in fused.router.parameters())
    assert sum(p.numel() for p in fused.parameters()) == n * (n_spec - n_shared) + n_shared + n_router


def test_mismatched_prefix_is_refused(specs):
    bad = make_specialists(n=1, seed=3)[0]  # another random base: everything differs
    with pytest.raises(KalavaiError, match=r"gpt_neox\.embed_in\.weight.*'e1'"):
        fuse([specs[0], bad])

    tweaked = make_specialists(n=2)
    with torch.no_grad():
        tweaked[1].gpt_neox.layers[0].mlp.dense_4h_to_h.bias[0] += 1e-6
    with pytest.raises(KalavaiError, match=r"gpt_neox\.layers\.0\.mlp\.dense_4h_to_h\.bias.*'e1'"):
        fuse(tweaked)
    # Claiming more frozen blocks than the specialists share is refused too.
    with pytest.raises(KalavaiError, match=r"gpt_neox\.layers\.1\."):
        FusedModel.from_specialists(specs, ["a", "b", "c"], 2)


def test_mismatched_configs_and_bad_choices_are_refused(specs):
    other = GPTNeoXForCausalLM(offline_config(get_scale("smoke").with_overrides(n_layers=N_LAYERS), vocab_size=256))
    with pytest.raises(KalavaiError, match="vocab_size"):
        fuse([specs[0], other])
    with pytest.raises(KalavaiError, match="router kind"):
        fuse(specs, router_kind="transformer")
    with pytest.raises(KalavaiError, match="granularity"):
        fuse(specs, granularity="chunk")
    with pytest.raises(KalavaiError, match="mode"):
        fuse(specs).set_mode("sparse")
    with pytest.raises(KalavaiError, match="names"):
        FusedModel.from_specialists(specs, ["a"], K)


@torch.no_grad()
def test_use_router_swaps_in_a_fresh_seeded_router(specs, tokens):
    fused = fuse(specs, router_kind="linear", granularity="token", seed=1)
    fused.use_router("mlp", "sequence", hidden=16, seed=4)
    assert (fused.config.router_kind, fused.config.granularity, fused.config.router_seed) == ("mlp", "sequence", 4)
    assert torch.equal(
        fused.router.net[0].weight, fuse(specs, router_kind="mlp", router_hidden=16, seed=4).router.net[0].weight
    )
    gates = fused(tokens).gates
    assert torch.allclose(gates, gates[:, :1].expand_as(gates))  # sequence granularity took effect
    with pytest.raises(KalavaiError, match="router kind"):
        fused.use_router("moe", "token")


@torch.no_grad()
def test_save_and_load_round_trip(specs, tokens, tmp_path):
    fused = fuse(specs, router_kind="mlp", router_hidden=16, granularity="sequence", seed=7)
    fused.set_mode("hard")
    fused.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "kalavai_fused" and "auto_map" not in saved

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=False)
    assert isinstance(loaded, FusedModel)
    assert loaded.config.expert_names == ["e0", "e1", "e2"]
    assert (loaded.config.mode, loaded.config.granularity, loaded.config.router_kind) == ("hard", "sequence", "mlp")
    a, b = fused(tokens), loaded(tokens)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.gates, b.gates)
    for (ka, va), (kb, vb) in zip(fused.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@torch.no_grad()
def test_generate(specs, tokens):
    fused = fuse(specs)
    prompt = tokens[:1, :6]
    out = fused.generate(prompt, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, 11) and torch.equal(out[:, :6], prompt)
    # Greedy decoding: each new token is the argmax of the fused logits over the sequence so far.
    for t in range(6, 11):
        assert out[0, t] == fused(out[:, :t]).logits[0, -1].argmax()
    # With fixed one-hot gates the fused model generates exactly what that specialist does.
    for i in (0, 2):
        mine = fused.generate(prompt, gates=one_hot(i, 3), max_new_tokens=5, do_sample=False)
        assert torch.equal(mine, specs[i].generate(prompt, max_new_tokens=5, do_sample=False))
    # Also for a left-padded batch (positions then count real tokens only).
    batch = tokens[:, :6].clone()
    mask = torch.ones_like(batch)
    mask[0, :2] = 0
    mine = fused.generate(batch, attention_mask=mask, gates=one_hot(1, 3), max_new_tokens=4, do_sample=False)
    theirs = specs[1].generate(batch, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(mine, theirs)


@torch.no_grad()
def test_weight_average(specs):
    same = weight_average([specs[0]] * 3)
    for (k, a), b in zip(same.state_dict().items(), specs[0].state_dict().values()):
        assert torch.equal(a, b), k
    avg = weight_average(specs[:2])
    w = [s.gpt_neox.layers[2].mlp.dense_h_to_4h.weight for s in specs[:2]]
    assert torch.allclose(avg.gpt_neox.layers[2].mlp.dense_h_to_4h.weight, (w[0] + w[1]) / 2, atol=1e-7)
    assert avg is not specs[0] and not torch.equal(avg.lm_head.weight, specs[0].lm_head.weight)


def test_weight_average_reads_its_specialists_once_and_is_the_float64_mean(specs):
    avg = weight_average(iter(specs))  # a one-shot iterator: read once, one at a time
    for key, value in avg.state_dict().items():
        expected = (sum(s.state_dict()[key].double() for s in specs) / len(specs)).to(value.dtype)
        assert torch.equal(value, expected), key


def test_fusion_from_a_stream_keeps_one_specialist_at_a_time_and_equals_fusing_a_list(specs):
    import gc
    import weakref

    states = [s.state_dict() for s in specs]
    alive, peak = weakref.WeakSet(), 0

    def stream():  # as cooperative.assemble reads submissions: each built, handed over, dropped
        nonlocal peak
        for state in states:
            model = GPTNeoXForCausalLM(tiny_config()).eval()
            model.load_state_dict(state)
            gc.collect()
            alive.add(model)
            peak = max(peak, len(alive))
            yield model
            del model

    streamed = FusedModel.from_specialists(stream(), ["e0", "e1", "e2"], K)
    assert peak == 1  # the fused model kept no specialist: each was gone before the next was read
    listed = fuse(specs)
    assert streamed.state_dict().keys() == listed.state_dict().keys()
    for key, value in listed.state_dict().items():
        assert torch.equal(streamed.state_dict()[key], value), key
    # the prefix is held once, as its own copy (not the first specialist's tensors)
    assert streamed.embed_in.weight.data_ptr() != specs[0].gpt_neox.embed_in.weight.data_ptr()
    with pytest.raises(KalavaiError, match="2 specialists but 3 names"):
        FusedModel.from_specialists(iter(specs[:2]), ["a", "b", "c"], K)
    with pytest.raises(KalavaiError, match="more specialists than the 2 names"):
        FusedModel.from_specialists(iter(specs), ["a", "b"], K)


def test_one_pass_evaluation_equals_each_model_evaluated_alone(specs):
    """evaluate_pass: every router, mode and specialist from one pass gives what each gives alone,
    and the experts' blocks run once per batch."""
    from kalavai_utils.protocol.cooperative import evaluate_pass, fused_name
    from kalavai_utils.protocol.evaluation import evaluate_domains
    from kalavai_utils.protocol.routers import make_router

    scale = get_scale("smoke").with_overrides(eval_batch=2, eval_max_batches=2)
    g = torch.Generator().manual_seed(5)
    heldout = {"a": torch.randint(0, VOCAB, (5, 32), generator=g), "b": torch.randint(0, VOCAB, (3, 32), generator=g)}
    fused = fuse(specs)
    routers = {
        ("mlp", "sequence"): make_router("mlp", 32, 3, hidden=16, seed=3),
        ("linear", "token"): make_router("linear", 32, 3, seed=4),
    }
    variants = [("uniform", "uniform", None, None)] + [
        (fused_name(k, gr, mode), mode, r, gr) for (k, gr), r in routers.items() for mode in ("soft", "hard")
    ]
    calls = []
    hook = fused.experts[0].layers[0].register_forward_hook(lambda *_: calls.append(1))
    losses, gates = evaluate_pass(fused, heldout, scale, variants, experts=True)
    hook.remove()
    assert len(calls) == 4  # a: 2 batches of 2 (at most 2); b: batches of 2 and 1: the experts ran once per batch

    for name, mode, router, granularity in variants:
        alone = fuse(
            specs, router_kind=router.kind if router else "linear", granularity=granularity or "token", router_hidden=16
        )
        if router is not None:
            alone.router.load_state_dict(router.state_dict())
        alone.set_mode(mode)
        seen = {d: [] for d in heldout}
        want = evaluate_domains(alone, heldout, 2, 2, lambda d, out: seen[d].append(out.gates.mean(dim=(0, 1))))
        assert losses[name] == pytest.approx(want, abs=1e-6), name
        if mode == "soft":
            for d in heldout:
                assert gates[name][d] == pytest.approx(torch.stack(seen[d]).mean(dim=0).tolist(), abs=1e-6)
    assert set(gates) == {fused_name(k, gr) for k, gr in routers}
    for i, spec in enumerate(specs):
        assert losses[f"spec:e{i}"] == pytest.approx(evaluate_domains(spec, heldout, 2, 2), abs=1e-5)
