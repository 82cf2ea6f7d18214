"""Model families as data (families.py): GPT-NeoX, Llama, Mistral and Qwen2 through the whole protocol.

Each family is tried on a small random configuration built here (hidden 32, 4 blocks, 4 heads,
GQA with 2 key/value heads where the family has it, vocabulary 64), as mergekit's tests do:
Mistral with a sliding window shorter than the sequences, Qwen2 with its head tied to the
embedding, and once more with its blocks mixing full and sliding-window attention.
"""

from __future__ import annotations

import copy
import json
import time

import pytest
import safetensors
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, Qwen2Config

from kalavai_utils.errors import KalavaiError
from kalavai_utils.families import FAMILIES, family_of, get_family
from kalavai_utils.protocol import lora, pipeline
from kalavai_utils.protocol.fusion import FusedModel, TiedHead, weight_average
from kalavai_utils.protocol.models import (
    build_causal_lm,
    fingerprint,
    freeze_prefix,
    frozen_prefix_names,
    load_causal_lm,
    offline_config,
)
from kalavai_utils.protocol.submission import verify_submission, write_submission
from kalavai_utils.protocol.training import TrainConfig, train_causal_lm
from kalavai_utils.runtime import prefix
from kalavai_utils.scales import SCALES, get_scale

K = 2  # frozen blocks of 4
VOCAB, SEQ = 64, 16
N = 3  # specialists

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    bos_token_id=0,
    eos_token_id=None,
    attention_dropout=0.0,
)
GQA = dict(num_key_value_heads=2)
# case -> (model_type, config values beyond COMMON)
CASES = {
    "gpt_neox": ("gpt_neox", dict(rotary_pct=0.25, use_parallel_residual=True, hidden_dropout=0.0)),
    "llama": ("llama", GQA),
    "mistral": ("mistral", dict(GQA, sliding_window=5)),  # shorter than the sequences: the window matters
    "qwen2-tied": ("qwen2", dict(GQA, tie_word_embeddings=True)),
    # blocks 2 and 3 (both in the experts' suffix) attend through a window, blocks 0 and 1 see everything
    "qwen2-mixed": (
        "qwen2",
        dict(GQA, tie_word_embeddings=True, use_sliding_window=True, sliding_window=5, max_window_layers=2),
    ),
}


def config_of(case: str, **changes):
    """The case's config, with `changes` over its values (another vocabulary, depth or context)."""
    model_type, extra = CASES[case]
    return get_family(model_type).config_cls(**{**COMMON, **extra, **changes})


def make_specialists(case: str, n: int = N, seed: int = 0):
    """A random base and n copies whose trainable tensors are perturbed differently (fake fine-tuning)."""
    torch.manual_seed(seed)
    base = build_causal_lm(config_of(case)).eval()
    specs = []
    for _ in range(n):
        m = copy.deepcopy(base)
        freeze_prefix(m, K)
        with torch.no_grad():
            for p in m.parameters():
                if p.requires_grad:
                    p.add_(0.3 * torch.randn_like(p))
        specs.append(m.eval())
    return base, specs


def fuse(specs, **kw):
    return FusedModel.from_specialists(specs, [f"e{i}" for i in range(len(specs))], K, **kw).eval()


def one_hot(i, n=N):
    g = torch.zeros(n)
    g[i] = 1.0
    return g


def tokens(batch=2, seq=SEQ, seed=1):
    return torch.randint(1, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=list(CASES))
def family_case(request):
    base, specs = make_specialists(request.param)
    return request.param, base, specs


def test_the_table_says_where_each_familys_parts_are():
    for case in CASES:
        config = config_of(case)
        family = family_of(config)
        lm = build_causal_lm(config)
        assert type(lm) is family.causal_lm_cls and type(family.decoder_of(lm).config) is family.config_cls
        blocks = family.blocks_of(lm)
        assert len(blocks) == 4 and all(type(b) is family.layer_cls for b in blocks)
        assert [family.layer_index(b) for b in blocks] == [0, 1, 2, 3]
        assert type(family.final_norm_of(lm)) is type(family.make_final_norm(config))
        assert type(family.rotary_of(lm)) is type(family.make_rotary(config))
        assert family.embedding_of(lm) is lm.get_input_embeddings() and family.head_of(lm) is lm.get_output_embeddings()
        # the state-dict prefixes name real tensors; the tied head is exactly transformers' own mapping
        names = set(lm.state_dict())
        assert f"{family.embed_prefix}weight" in names and f"{family.head_prefix}weight" in names
        assert any(n.startswith(family.final_norm_prefix) for n in names)
        assert family.tied_keys(config) == (lm._tied_weights_keys if config.tie_word_embeddings else {})
        block_linears = {n.rsplit(".", 1)[-1] for n, m in blocks[0].named_modules() if isinstance(m, torch.nn.Linear)}
        assert set(family.lora_targets) == block_linears and family.queries in block_linears
        # frozen names: the embedding and blocks 0..K-1, found from the names alone too
        frozen = frozen_prefix_names(names, K, family=family)
        assert frozen == frozen_prefix_names(names, K)
        assert frozen and all(
            n.startswith((family.embed_prefix, family.layer_prefix(0), family.layer_prefix(1))) for n in frozen
        )
        assert f"{family.head_prefix}weight" not in frozen  # a tied head is the embedding, not listed twice


def test_an_unsupported_family_is_refused_in_one_line(tmp_path):
    supported = "gpt_neox, llama, mistral, qwen2"
    with pytest.raises(KalavaiError, match=f"unsupported model family 'gpt2'; supported: {supported}$"):
        get_family("gpt2")
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32))
    gpt2.save_pretrained(tmp_path / "gpt2")
    for attempt in (
        lambda: load_causal_lm(tmp_path / "gpt2"),
        lambda: FusedModel.from_specialists([gpt2], ["a"], 1),
        lambda: freeze_prefix(gpt2, 1),
        lambda: offline_config(get_scale("smoke").with_overrides(family="gpt2")),
    ):
        with pytest.raises(KalavaiError) as info:
            attempt()
        assert "'gpt2'" in str(info.value) and supported in str(info.value) and "\n" not in str(info.value)


@torch.no_grad()
def test_one_hot_gates_reproduce_each_specialist_dense_and_top_k(family_case):
    case, base, specs = family_case
    fused = fuse(specs)
    x = tokens()
    left = torch.ones_like(x)
    left[1, :5] = 0  # left padding: the real tokens' positions and masks must come out right
    for i, spec in enumerate(specs):
        want = spec(x).logits
        assert torch.allclose(fused(x, gates=one_hot(i)).logits, want, atol=1e-5), case
        real = left.bool()
        got = fused(x, attention_mask=left, gates=one_hot(i)).logits[real]
        assert torch.allclose(got, spec(x, attention_mask=left).logits[real], atol=1e-5), case
        for by in ("sequence", "token"):  # sparse dispatch: only the chosen expert runs
            fused.set_dispatch(1, by)
            assert torch.allclose(fused(x, gates=one_hot(i)).logits, want, atol=1e-5), (case, by)
        fused.set_dispatch(0)
    # top-2 mixes the two chosen experts' logits with renormalised weights
    fused.set_dispatch(2, "sequence")
    mixed = fused(x, gates=torch.tensor([0.6, 0.3, 0.1])).logits
    fused.set_dispatch(0)
    assert torch.allclose(mixed, (2 * specs[0](x).logits + specs[1](x).logits) / 3, atol=1e-5)
    # the specialists really differ, so the checks above could have failed
    assert not torch.allclose(specs[0](x).logits, specs[1](x).logits, atol=1e-3)


@torch.no_grad()
def test_cached_generation_equals_cache_free_generation(family_case):
    case, base, specs = family_case
    fused = fuse(specs, granularity="token")
    prompt = tokens(batch=2, seq=4, seed=3)
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    cached = fused.generate(prompt, use_cache=True, **greedy)
    assert cached.shape == (2, 12)  # longer than Mistral's and Qwen2's window of 5
    assert torch.equal(cached, fused.generate(prompt, use_cache=False, **greedy)), case
    # one expert alone, through the fused model's cache, generates what the specialist does with its own
    for i in (0, 2):
        ours = fused.generate(prompt, gates=one_hot(i), use_cache=True, **greedy)
        assert torch.equal(ours, specs[i].generate(prompt, **greedy)), (case, i)
    fused.set_dispatch(1, "sequence")  # sparse per sequence: the chosen experts' caches only
    assert torch.equal(
        fused.generate(prompt, use_cache=True, **greedy), fused.generate(prompt, use_cache=False, **greedy)
    )


@torch.no_grad()
def test_a_fused_folder_round_trips_through_auto_model(family_case, tmp_path):
    case, base, specs = family_case
    fused = fuse(specs, granularity="token")
    fused.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is FusedModel and loaded.family.model_type == CASES[case][0]
    x = tokens()
    assert torch.equal(loaded(x).logits, fused(x).logits)
    with safetensors.safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    tied = family_of(base).tied(base.config)
    # a tied head is the shared embedding: saved once, and every loaded expert reads the loaded embedding
    assert any(".lm_head." in n for n in names) is not tied
    if tied:
        assert all(isinstance(e.lm_head, TiedHead) and e.lm_head.embedding is loaded.embed_in for e in loaded.experts)
    assert json.loads((tmp_path / "config.json").read_text())["specialist"]["model_type"] == CASES[case][0]


def test_verification_accepts_an_honest_submission_and_refuses_a_tampered_frozen_block(family_case, tmp_path):
    case, base, specs = family_case
    family = family_of(base)

    def submit(model, folder, check=True):
        return write_submission(
            model,
            folder,
            base_fingerprint=fingerprint(base),
            base_state=base.state_dict() if check else None,
            freeze_layers=K,
            training={"steps": 1},
            data={"n_chunks": 1},
            contributor=folder.name,
        )

    sub = verify_submission(submit(specs[0], tmp_path / "honest"), base, K)
    assert fingerprint(sub.model) == fingerprint(specs[0]) and type(sub.model) is family.causal_lm_cls
    tampered = copy.deepcopy(specs[1])
    frozen = f"{family.layer_prefix(1)}{family.attention}.{family.queries}.weight"
    with torch.no_grad():
        tampered.get_parameter(frozen)[0, 0] += 1e-3
    with pytest.raises(KalavaiError, match=f"frozen tensor {frozen} changed"):
        submit(tampered, tmp_path / "contributor-side")  # the contributor's own check catches it first
    with pytest.raises(KalavaiError, match=f"frozen tensor {frozen} differs from the base"):
        verify_submission(submit(tampered, tmp_path / "tampered", check=False), base, K)
    if family.tied(base.config):  # a tied head moved moves the embedding: refused as the frozen embedding
        moved = copy.deepcopy(specs[2])
        with torch.no_grad():
            moved.get_output_embeddings().weight[3] += 1e-3
        with pytest.raises(KalavaiError, match=f"frozen tensor {family.embed_prefix}weight differs"):
            verify_submission(submit(moved, tmp_path / "head", check=False), base, K)


@torch.no_grad()
def test_weight_averaging(family_case):
    case, base, specs = family_case
    avg = weight_average(specs[:2])
    family = family_of(avg)
    assert type(avg) is family.causal_lm_cls
    name = f"{family.layer_prefix(3)}mlp.{family.lora_targets[-1]}.weight"
    a, b = (s.get_parameter(name) for s in specs[:2])
    assert torch.allclose(avg.get_parameter(name), (a + b) / 2, atol=1e-7) and not torch.equal(a, b)
    assert torch.equal(family.embedding_of(avg).weight, family.embedding_of(base).weight)
    if family.tied(avg.config):
        assert avg.get_output_embeddings().weight is family.embedding_of(avg).weight


def test_specialist_training_trains_only_blocks_from_k(family_case):
    case, base, _ = family_case
    model, family = copy.deepcopy(base), family_of(base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    chunks = torch.randint(1, VOCAB, (8, SEQ), generator=torch.Generator().manual_seed(5))
    cfg = TrainConfig(steps=2, lr=1e-2, seed=0, freeze_layers=K, micro_batch=2, grad_accum=2, warmup_frac=0.0)
    log = train_causal_lm(model, chunks, cfg)
    after = model.state_dict()
    frozen = set(frozen_prefix_names(after, K, family=family))
    assert log["frozen_tensors"] == len(frozen) and all(torch.equal(before[n], after[n]) for n in frozen)
    head = f"{family.head_prefix}weight"
    assert torch.equal(before[head], after[head]) is family.tied(base.config)  # a tied head is the frozen embedding
    for i in range(K, 4):
        block = [n for n in after if family.layer_of(n) == i]
        assert block and any(not torch.equal(before[n], after[n]) for n in block), (case, i)


@torch.no_grad()
def test_prefix_states_give_the_plain_forward_bit_for_bit(family_case):
    case, base, specs = family_case
    states = prefix.for_model(specs[0], K)
    assert states is not None
    x = tokens(batch=3)
    read = prefix.lm_output(specs[0], states, x, labels=x)
    plain = specs[0](input_ids=x, labels=x, use_cache=False)
    assert torch.equal(read.logits, plain.logits) and torch.equal(read.loss, plain.loss), case
    fused = fuse(specs)
    assert torch.equal(fused.expert_hidden(x, states=prefix.for_fused(fused)), fused.expert_hidden(x))


def test_lora_adapts_the_familys_linears_in_blocks_from_k():
    for case in ("llama", "qwen2-tied"):
        base, _ = make_specialists(case, n=0)
        family = family_of(base)
        model = lora.add_adapters(copy.deepcopy(base), lora.lora_spec(2, family=family.model_type), K, seed=0)
        trained = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trained and all("lora_" in n for n in trained)
        assert {int(n.split(f".{family.layers}.")[1].split(".")[0]) for n in trained} == {2, 3}
        assert {t for t in family.lora_targets if any(f".{t}.lora_" in n for n in trained)} == set(family.lora_targets)


def test_the_qwen_scale_is_the_authors_qwen_run_and_selects_qwen2():
    s = SCALES["qwen-1.5b"]
    assert s.is_hub and s.hub_model == "Qwen/Qwen2.5-1.5B" and s.family == "qwen2"
    assert (s.freeze_layers, s.spec_steps, s.spec_lr, s.domains) == (2, 1000, 2e-5, ("code", "fiction"))
    # Qwen2.5-1.5B's published config (its shape; the Hub is not reached here): Qwen2, head tied
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=131072,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        sliding_window=131072,
        max_window_layers=21,
    )
    family = family_of(config)
    assert family is get_family(s.family) and family.tied(config)
    assert family.layer_types(config) == ["full_attention"] * 28
    # a model of another family than its scale names is refused
    with pytest.raises(KalavaiError, match="scale qwen-1.5b names the qwen2 family, but Qwen/Qwen2.5-1.5B is llama"):
        pipeline.check_family(build_causal_lm(config_of("llama")), s)
    # every other scale stays GPT-NeoX
    assert {n for n, sc in SCALES.items() if sc.family != "gpt_neox"} == {"qwen-1.5b"}


def test_every_family_builds_an_offline_base():
    smoke = get_scale("smoke")
    assert offline_config(smoke).to_dict() == offline_config(smoke.with_overrides(family="gpt_neox")).to_dict()
    for model_type, family in FAMILIES.items():
        config = offline_config(smoke.with_overrides(family=model_type))
        assert family_of(config) is family and config.hidden_size == smoke.d_model
        assert config.tie_word_embeddings is family.tie_default


def test_the_smoke_cooperative_runs_end_to_end_with_a_llama_base(tmp_path):
    """The smoke cooperative's main pieces, notebook-free, with a Llama base: pretrain it, train the three
    specialists, verify and fuse them, fit the routers and evaluate every baseline."""
    from kalavai_utils.protocol.cooperative import main_cooperative, run_cooperative

    start = time.perf_counter()
    scale = get_scale("smoke").with_overrides(family="llama")
    runs = pipeline.run_dir(scale, tmp_path)
    folder, _ = pipeline.prepare_corpus(scale, runs)
    info = pipeline.prepare_base(scale, runs)
    base = pipeline.load_base(scale, runs)
    assert type(base).__name__ == "LlamaForCausalLM"
    coop = main_cooperative(scale, runs, scale.seeds[0], folder)
    results = run_cooperative(coop, runs, base, info["fingerprint"])
    losses = results["losses"]
    assert {"base", "monolithic", "weight_avg", *(f"spec:{d}" for d in scale.domains)} <= set(losses)
    assert [k for k in losses if k.startswith("fused:")]
    assert all(0 < loss < 10 for by_domain in losses.values() for loss in by_domain.values())
    # each specialist moved on its own domain
    for d in scale.domains:
        assert losses[f"spec:{d}"][d] < losses["base"][d]
    assert time.perf_counter() - start < 120


@torch.no_grad()
def test_a_folder_fused_before_families_were_data_still_loads(tmp_path):
    """Fused folders saved before this table named the specialists' config `neox` (GPT-NeoX then)."""
    _, specs = make_specialists("gpt_neox", n=2)
    fused = fuse(specs)
    fused.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["neox"] = config.pop("specialist")
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.family.model_type == "gpt_neox" and torch.equal(loaded(tokens()).logits, fused(tokens()).logits)
