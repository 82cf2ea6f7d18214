"""Fused inference: cached generation, batched experts, sparse dispatch, placement, the benchmark's schema."""

import subprocess
import sys

import pytest
import torch
from test_fusion import make_specialists, one_hot

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.fusion import FusedCache, FusedModel

N_LAYERS = 4


def fuse(specs, freeze=1, **kw):
    return FusedModel.from_specialists(specs, [f"e{i}" for i in range(len(specs))], freeze, **kw)


@pytest.fixture(scope="module")
def specs():
    return make_specialists(n=3, n_layers=N_LAYERS)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("freeze", [0, 1, N_LAYERS])
@torch.no_grad()
def test_cached_generation_gives_the_cache_free_tokens(specs, tokens, freeze):
    specs = make_specialists(n=3, freeze=freeze, n_layers=N_LAYERS)
    fused = fuse(specs, freeze=freeze, granularity="token")
    prompt = tokens[:, :8]
    mask = torch.ones_like(prompt)
    mask[0, :3] = 0  # a left-padded row too
    kw = dict(attention_mask=mask, max_new_tokens=12)
    free = fused.generate(prompt, use_cache=False, do_sample=False, **kw)
    lengths = []
    hook = fused.embed_in.register_forward_hook(lambda m, args, out: lengths.append(args[0].shape[1]))
    cached = fused.generate(prompt, use_cache=True, do_sample=False, **kw)
    hook.remove()
    assert lengths == [8] + [1] * 11  # the prompt once, then one new token per step
    assert torch.equal(free, cached)
    # sampling with a fixed seed
    torch.manual_seed(3)
    free = fused.generate(prompt, use_cache=False, do_sample=True, **kw)
    torch.manual_seed(3)
    cached = fused.generate(prompt, use_cache=True, do_sample=True, **kw)
    assert torch.equal(free, cached)


@torch.no_grad()
def test_cached_logits_match_the_full_forward(specs, tokens):
    fused = fuse(specs)
    full = fused(tokens).logits
    cache = FusedCache(3)
    parts = [fused(tokens[:, :10], past_key_values=cache).logits]
    for t in range(10, tokens.shape[1]):
        parts.append(fused(tokens[:, t : t + 1], past_key_values=cache).logits)
    assert cache.seen == tokens.shape[1]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_sequence_router_is_refused_for_cached_generation(specs, tokens):
    fused = fuse(specs, granularity="sequence")
    with pytest.raises(KalavaiError, match="cached generation needs a causal router"):
        fused.generate(tokens[:1, :6], use_cache=True, max_new_tokens=2)
    # the default for it stays cache-free (re-reading the sequence so far at every step)
    out = fused.generate(tokens[:1, :6], max_new_tokens=2, do_sample=False)
    assert out.shape == (1, 8)


@torch.no_grad()
def test_batched_experts_equal_the_loop(specs, tokens):
    fused = fuse(specs)
    loop = fused(tokens, labels=tokens)
    fused.config.batched_experts = True
    batched = fused(tokens, labels=tokens)
    fused.config.batched_experts = False
    # stated tolerance: float32 rounding of the same matmuls in another order
    torch.testing.assert_close(batched.logits, loop.logits, atol=1e-5, rtol=1e-5)
    assert abs(batched.loss.item() - loop.loss.item()) < 1e-6


@pytest.mark.parametrize("sparse_by", ["sequence", "token"])
@torch.no_grad()
def test_top1_with_one_hot_gates_is_the_chosen_specialist(specs, tokens, sparse_by):
    fused = fuse(specs)
    fused.set_dispatch(1, sparse_by)
    calls = []
    for i, e in enumerate(fused.experts):
        e.layers[0].register_forward_hook(lambda *_, i=i: calls.append(i))
    for i in range(3):
        calls.clear()
        out = fused(tokens, gates=one_hot(i, 3))
        assert calls == [i]  # only the chosen expert ran
        torch.testing.assert_close(out.logits, specs[i](tokens).logits, atol=1e-5, rtol=1e-5)
    fused.set_dispatch(0)


@torch.no_grad()
def test_top_k_of_all_experts_is_dense_with_renormalized_gates(tokens):
    specs = make_specialists(n=2, n_layers=N_LAYERS)
    fused = fuse(specs)
    dense = fused(tokens)
    for by in ("sequence", "token"):
        fused.set_dispatch(2, by)
        sparse = fused(tokens)
        if by == "token":  # every token goes to both experts: exactly dense with the prefix router's gates
            torch.testing.assert_close(
                sparse.logits, fused.fuse(fused.expert_hidden(tokens), gates=sparse.gates).logits, atol=1e-5, rtol=1e-5
            )
        assert sparse.logits.shape == dense.logits.shape
    fused.set_dispatch(0)


@torch.no_grad()
def test_per_token_top1_expert_attends_only_to_its_tokens(specs, tokens):
    """Per-token top-1 = each expert run on its own tokens, gathered (checked here by hand for one row)."""
    fused = fuse(specs)
    fused.set_dispatch(1, "token")
    row = tokens[:1]
    out = fused(row)
    chosen = out.gates[0].argmax(dim=-1)
    for e in chosen.unique().tolist():
        pos = (chosen == e).nonzero().squeeze(-1)
        x, *_ = fused.prefix(row)
        xe, p = x[:, pos], pos[None]
        rope = fused.rotary_emb(xe, position_ids=p)
        from transformers.masking_utils import create_causal_mask

        mask = create_causal_mask(
            config=fused.specialist_config,
            inputs_embeds=xe,
            attention_mask=torch.ones_like(p),
            past_key_values=None,
            position_ids=p,
        )
        want = fused.experts[e].lm_head(fused.experts[e](xe, mask, p, rope))
        torch.testing.assert_close(out.logits[:, pos], want, atol=1e-5, rtol=1e-5)
    fused.set_dispatch(0)


@pytest.mark.parametrize("k", [1, 2])
@torch.no_grad()
def test_sparse_per_sequence_cached_generation(specs, tokens, k):
    fused = fuse(specs)
    fused.set_dispatch(k, "sequence")
    prompt = tokens[:, :8]
    free = fused.generate(prompt, use_cache=False, do_sample=False, max_new_tokens=8)
    cached = fused.generate(prompt, use_cache=True, do_sample=False, max_new_tokens=8)
    assert torch.equal(free, cached)
    fused.set_dispatch(1, "token")
    with pytest.raises(KalavaiError, match="per-token"):
        fused.generate(prompt, use_cache=True, max_new_tokens=2)
    assert fused.generate(prompt, use_cache=False, max_new_tokens=2, do_sample=False).shape == (2, 10)
    fused.set_dispatch(0)


def test_bad_dispatch_is_refused(specs):
    fused = fuse(specs)
    with pytest.raises(KalavaiError, match="top_k=3"):
        fused.set_dispatch(3)
    with pytest.raises(KalavaiError, match="sparse_by"):
        fused.set_dispatch(1, "chunk")


def test_benchmark_json_schema(tmp_path):
    import json

    from kalavai_utils.__main__ import main
    from kalavai_utils.analysis.inference_tables import generation_table, latency_table, verdicts
    from kalavai_utils.experiments.inference import FORWARD_VARIANTS

    out = tmp_path / "inference.json"
    assert (
        main(
            [
                "benchmark-inference",
                "--scale",
                "smoke",
                "--out",
                str(out),
                "--n-experts",
                "2,3",
                "--freeze-layers",
                "0",
                "--batch-sizes",
                "2",
                "--gen-lengths",
                "4,8",
                "--repeats",
                "1",
                "--min-seconds",
                "0",
            ]
        )
        == 0
    )
    bench = json.loads(out.read_text())
    assert {"scale", "device", "device_name", "dtype", "weights", "config", "settings", "forward", "generation"} <= set(
        bench
    )
    s = bench["settings"]
    assert s["freeze_layers"] == [0, 1] and s["batch_sizes"] == [2, 4] and s["main_n"] == 3
    variants = {r["variant"] for r in bench["forward"] if (r["n_experts"], r["freeze_layers"], r["batch"]) == (3, 1, 4)}
    assert variants == set(FORWARD_VARIANTS)
    for r in bench["forward"]:
        assert r["seconds"] > 0 and r["tokens_per_s"] > 0 and r["latency_x_single"] > 0
        assert r["ideal_dense_ratio"] == 1 + (r["n_experts"] - 1) * (2 - r["freeze_layers"]) / 2
    assert len(bench["generation"]) == 2 * 2 * 2  # lengths x models x cache on/off
    assert all(r["rounds"] == r["repeats"] == 1 for r in bench["generation"])
    assert len(generation_table(bench)) == 4 and len(verdicts(bench)) >= 2
    assert len(latency_table(bench)) == 4  # (N, K, batch): the N sweep's 2, K=0, batch 2


def test_timings_take_turns_and_run_rounds_until_min_seconds():
    import time

    from kalavai_utils.experiments.inference import generation_repeats, timed

    order = []
    fns = {"a": lambda: (order.append("a"), time.sleep(0.002)), "b": lambda: order.append("b")}
    out = timed(fns, "cpu", repeats=3, warm_up=False)
    assert order == ["a", "b"] * 3 and out["a"]["rounds"] == 3 and out["a"]["seconds"] >= 0.002
    assert out["b"]["seconds"] < out["a"]["seconds"]
    order.clear()
    out = timed(fns, "cpu", repeats=2, warm_up=False, min_seconds=0.05)
    assert out["a"]["rounds"] >= 10 and order == ["a", "b"] * out["a"]["rounds"]  # 2 ms a round: many more than 2
    assert timed(fns, "cpu", repeats=2, warm_up=False, min_seconds=60, max_rounds=5)["b"]["rounds"] == 5
    # cache-free generation is quadratic: timed once beyond 256 new tokens, cached always `repeats` times
    assert [generation_repeats(3, n, False) for n in (64, 256, 1024)] == [3, 3, 1]
    assert generation_repeats(3, 1024, True) == 3


@pytest.mark.slow
def test_save_load_and_generate_from_a_folder(specs, tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from kalavai_utils.__main__ import main

    vocab = {f"w{i}": i for i in range(512)}
    bpe = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="w0", unk_token="w0")
    from kalavai_utils.experiments.inference import save_fused

    fused = fuse(specs, granularity="token")
    save_fused(fused, tokenizer, tmp_path / "fused")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "fused")  # plain transformers, no remote code
    assert isinstance(loaded, FusedModel)
    # a fresh interpreter: `import kalavai_utils` alone registers the fused architecture
    code = (
        "import sys, kalavai_utils, transformers; "
        "m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=False); "
        "print(type(m).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "fused")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.split()[-1] == "FusedModel", done.stderr[-2000:]
    assert main(["generate", "--fused", str(tmp_path / "fused"), "--prompt", "w5 w9 w13", "--max-new-tokens", "4"]) == 0
    streamed = capsys.readouterr().out
    ids = torch.tensor([[5, 9, 13]])
    want = fused.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert streamed.split() == [f"w{i}" for i in want[0].tolist()]
    assert main(["generate", "--fused", str(tmp_path / "nothing"), "--prompt", "w1"]) == 2


@torch.no_grad()
def test_experts_offloaded_to_disk_give_the_same_outputs(tokens, tmp_path):
    from kalavai_utils.experiments.inference import place_experts

    specs = make_specialists(n=3, n_layers=N_LAYERS)
    resident = fuse(specs, granularity="token")
    placed = fuse(specs, granularity="token")
    per_expert = sum(p.numel() * p.element_size() for p in placed.experts[0].parameters())
    device_map = place_experts(placed, {"cpu": int(per_expert * 2.9)}, offload_dir=tmp_path / "offload")
    assert device_map["experts.0"] == "cpu" and "disk" in device_map.values()  # some experts live on disk
    assert torch.equal(placed(tokens).logits, resident(tokens).logits)
    prompt = tokens[:, :6]
    kw = dict(max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(prompt), pad_token_id=0)
    assert torch.equal(placed.generate(prompt, **kw), resident.generate(prompt, **kw))  # cached, experts offloaded
    with pytest.raises(KalavaiError, match="offload_dir"):
        place_experts(fuse(specs), {"cpu": int(per_expert * 2.9)})


def test_summarize_keeps_losses_apart_from_timings(tmp_path):
    import json

    from kalavai_utils.analysis.inference_tables import summarize

    with pytest.raises(KalavaiError, match="run notebook 07"):
        summarize(tmp_path)
    (tmp_path / "inference" / "seed42").mkdir(parents=True)
    losses = {"fused:linear:token": {"dense": {"code": 2.0, "ew": 2.0}}}
    (tmp_path / "inference" / "seed42" / "losses.json").write_text(json.dumps(losses))
    (tmp_path / "benchmarks").mkdir()
    bench = {
        "device_name": "cpu",
        "settings": {"main_n": 3, "main_freeze_layers": 1, "main_batch": 4},
        "forward": [
            {
                "n_experts": 3,
                "freeze_layers": 1,
                "batch": 4,
                "variant": "dense",
                "latency_x_single": 1.9,
                "ideal_dense_ratio": 2.0,
            }
        ],
        "generation": [],
    }
    (tmp_path / "benchmarks" / "inference.json").write_text(json.dumps(bench))
    out = summarize(tmp_path)
    assert out["losses"] == {"seed42": losses} and out["ideal_dense_ratio"] == 2.0
    assert out["timings"]["main_point"] == {"dense": 1.9}
    assert out["timings"]["by_batch"] == {"batch4": {"dense": 1.9}}
    json.dumps(out)


def test_timing_tables_show_each_ratio_where_it_applies():
    import math

    from kalavai_utils.analysis.inference_tables import generation_table, latency_table, main_point_table

    def row(n, k, b, variant, seconds):
        return {
            "n_experts": n,
            "freeze_layers": k,
            "batch": b,
            "variant": variant,
            "seconds": seconds,
            "tokens_per_s": b * 8 / seconds,
            "latency_x_single": seconds / 0.01,
            "peak_memory_gib": None,
            "ideal_dense_ratio": 1 + (n - 1) * (2 - k) / 2,
            "flops_ratio": 2.5,
        }

    bench = {
        "settings": {"main_n": 3, "main_freeze_layers": 1, "main_batch": 4},
        "forward": [
            row(3, 1, 4, "top1-sequence", 0.012),
            row(3, 1, 4, "dense", 0.02),
            row(3, 1, 4, "single", 0.01),
            row(3, 0, 4, "single", 0.01),
            row(3, 0, 4, "dense", 0.03),
        ],
        "generation": [
            {"model": m, "new_tokens": 8, "cache": c, "tokens_per_s": 100.0 if c else 50.0}
            for m in ("single", "dense")
            for c in (True, False)
        ],
    }
    main = main_point_table(bench)
    assert list(main.index) == ["single", "dense", "top1-sequence"]  # in FORWARD_VARIANTS' order
    assert "peak_memory_gib" not in main  # nothing measured on CPU
    assert main.loc["dense", "ideal_dense_ratio"] == 2.0 and main.loc["dense", "flops_ratio"] == 2.5
    assert math.isnan(main.loc["single", "flops_ratio"]) and math.isnan(main.loc["top1-sequence", "ideal_dense_ratio"])
    wide = latency_table(bench)
    assert list(wide.index) == [(3, 0, 4), (3, 1, 4)] and wide.index.names == ["N", "K", "batch"]
    assert list(wide.columns) == ["one model (ms)", "dense", "top1-sequence", "ideal dense ratio", "FLOPs ratio"]
    assert wide.loc[(3, 1, 4), "dense"] == pytest.approx(2.0) and wide.loc[
        (3, 1, 4), "one model (ms)"
    ] == pytest.approx(10)
    assert math.isnan(wide.loc[(3, 0, 4), "top1-sequence"])  # not timed there
    assert wide.loc[(3, 0, 4), "ideal dense ratio"] == 3.0
    gen = generation_table(bench)
    assert gen.columns.name is None and list(gen["cache speedup"]) == [2.0, 2.0]
