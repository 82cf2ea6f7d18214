"""What fused inference costs (notebook 07, the paper's inference section).

The fused model itself (cache, batched experts, sparse dispatch) lives in protocol/fusion.py; this
module measures it:

- `run_benchmark`: latency, throughput and peak memory of one model, the N specialists run
  one after another ("separate"), dense fusion (shared prefix once; experts in a loop or as one
  batched computation) and top-1 / top-2 dispatch, across the number of experts N, the frozen
  depth K and the batch size, and generation with and without the KV cache. Random weights:
  speed does not depend on them. Writes one JSON file (`python -m kalavai_utils
  benchmark-inference`); timings are the machine's, never reference numbers.
- `dispatch_losses`: the held-out loss of each dispatch by the one evaluation protocol
  (protocol/evaluation.py), for a trained cooperative: the other half of the paper's trade-off.

Its tables, verdicts and reference summary (`summarize`: losses exactly, timings apart) are in
analysis/inference_tables.py, its figures in analysis/figures_inference.py.

The ideal dense ratio against one model is 1 + (N-1)(L-K)/L (the prefix paid once, every
expert's L-K blocks paid N times), counting blocks only; `flops_ratio` also counts each
expert's output head, which at small scales costs as much as a block or more.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import PretrainedConfig

from ..errors import KalavaiError, first_line
from ..protocol.evaluation import evaluate_domains
from ..protocol.fusion import FusedConfig, FusedModel
from ..protocol.metrics import equal_weight
from ..protocol.models import build_causal_lm, offline_config
from ..protocol.results import library_versions
from ..runtime.perf import Clock
from ..scales import get_scale, pythia_410m_config
from ..settings import settings
from ..storage import atomic_write_json, read_json

# name -> (top_k, sparse_by); top_k 0 is dense
DISPATCHES = {
    "dense": (0, "sequence"),
    "top1-sequence": (1, "sequence"),
    "top2-sequence": (2, "sequence"),
    "top1-token": (1, "token"),
    "top2-token": (2, "token"),
}
# forward variants the benchmark times: one model, N separate forwards, dense (loop / batched), sparse
FORWARD_VARIANTS = ("single", "separate", "dense", "dense-batched", *[d for d in DISPATCHES if d != "dense"])
RESULTS_NAME = "07_inference.json"


# ---------------------------------------------------------------- ratios


def ideal_dense_ratio(n_experts: int, n_layers: int, freeze_layers: int) -> float:
    """Dense fused latency / one model's, counting blocks: 1 + (N-1)(L-K)/L."""
    return 1 + (n_experts - 1) * (n_layers - freeze_layers) / n_layers


def forward_flops(
    config: PretrainedConfig, seq_len: int, n_experts: int = 1, freeze_layers: int | None = None
) -> float:
    """Forward matmul FLOPs per token (runtime/perf.py's counting) of one model, or of N fused experts sharing K blocks."""
    d, L, V = config.hidden_size, config.num_hidden_layers, config.vocab_size
    block = 2 * (4 * d * d + 2 * d * config.intermediate_size) + 2 * 2 * seq_len * d
    k = L if freeze_layers is None else freeze_layers
    return k * block + n_experts * ((L - k) * block + 2 * d * V)


def flops_ratio(config: PretrainedConfig, seq_len: int, n_experts: int, freeze_layers: int) -> float:
    """The ideal dense ratio with every expert's output head counted too."""
    return forward_flops(config, seq_len, n_experts, freeze_layers) / forward_flops(config, seq_len)


# ---------------------------------------------------------------- dispatch


@contextmanager
def dispatch(fused: FusedModel, name: str):
    """Run `fused` with this dispatch inside the block (DISPATCHES), restored after."""
    if name not in DISPATCHES:
        raise KalavaiError(f"unknown dispatch {name!r}; choose one of: {', '.join(DISPATCHES)}")
    before = (fused.config.expert_top_k, fused.config.sparse_by)
    fused.set_dispatch(*DISPATCHES[name])
    try:
        yield fused
    finally:
        fused.set_dispatch(*before)


def dispatch_losses(
    fused: FusedModel, heldout: dict, batch_size: int, max_batches: int, dispatches=tuple(DISPATCHES)
) -> dict[str, dict[str, float]]:
    """Per-domain held-out losses and their equal-weight mean ("ew") for each dispatch, by the one protocol."""
    out = {}
    for name in dispatches:
        with dispatch(fused, name):
            losses = evaluate_domains(fused, heldout, batch_size, max_batches)
        out[name] = {**losses, "ew": equal_weight(losses)}
    return out


# ---------------------------------------------------------------- models for timing


def benchmark_config(scale_name: str) -> tuple[PretrainedConfig, str]:
    """The scale's architecture, never its weights: an offline scale's own config; at a Hub scale the
    model's config from the local Hugging Face cache, else (410m) Pythia-410M's published one."""
    scale = get_scale(scale_name)
    if not scale.is_hub:
        return offline_config(scale), "random init, the offline scale's architecture"
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(
            scale.hub_model, revision=scale.hub_revision, local_files_only=True, trust_remote_code=False
        )
        return config, "random init, real config from the local Hugging Face cache"
    except Exception:  # noqa: BLE001 - not cached: only 410m's config is known without it
        if scale.name == "410m":
            return pythia_410m_config(), "random init, Pythia-410M's published config (typed in benchmark.py)"
        raise KalavaiError(
            f"no config for {scale.hub_model} in the local Hugging Face cache; "
            "benchmark-inference knows 410m's by heart"
        ) from None


def random_models(config: PretrainedConfig, n_experts: int, freeze_layers: int, device, dtype, seed: int = 0):
    """One random model of the config's family and a random fused model of N experts sharing K blocks, built on `device`.

    The experts are independent random draws: speed does not depend on the weights.
    """
    torch.manual_seed(seed)
    with torch.device(device):
        single = build_causal_lm(config)
        fused = FusedModel(
            FusedConfig(
                specialist=config.to_dict(),
                n_experts=n_experts,
                freeze_layers=freeze_layers,
                granularity="token",
                bos_token_id=config.bos_token_id,
                eos_token_id=config.eos_token_id,
            )
        )
    fused.config._attn_implementation = single.config._attn_implementation
    return single.to(dtype).eval(), fused.to(dtype).eval()


# ---------------------------------------------------------------- many experts: placement and offload


def place_experts(fused: FusedModel, max_memory: dict, main_device="cpu", offload_dir=None) -> dict:
    """Spread the experts over devices, CPU memory and disk with accelerate's big-model utilities.

    `max_memory` is accelerate's ({0: "20GiB", 1: "20GiB", "cpu": "64GiB"}, say); what does not fit
    goes to `offload_dir` on disk. The shared prefix and the router stay on `main_device`; each
    expert (never split) goes where infer_auto_device_map puts it, and dispatch_model's hooks bring
    inputs to it and, for offloaded experts, its weights in for each forward. The fused model hands
    each expert's output back to the main device. Returns the device map.

    What it costs: an expert on another GPU costs a copy of the prefix's output [B, T, d] there and
    of its logits back; an offloaded expert re-reads all its weights every forward (and, in cached
    generation, every token), which bounds its speed by host-to-device (or disk) bandwidth.
    """
    from accelerate import dispatch_model, infer_auto_device_map

    main = {name: main_device for name in ("embed_in", "emb_dropout", "shared_layers", "rotary_emb", "router")}
    experts_only = {k: v for k, v in max_memory.items()}
    device_map = infer_auto_device_map(fused.experts, max_memory=experts_only, no_split_module_classes=["ExpertSuffix"])
    device_map = {**main, **{f"experts.{k}" if k else "experts": v for k, v in device_map.items()}}
    if "disk" in device_map.values() and offload_dir is None:
        raise KalavaiError("some experts do not fit in max_memory and no offload_dir was given for them")
    dispatch_model(fused, device_map=device_map, main_device=main_device, offload_dir=offload_dir)
    return device_map


# ---------------------------------------------------------------- timing


@contextmanager
def attention_backends(device):
    """On CUDA, SDPA without the cuDNN backend: cuDNN builds a plan for every new key length, and in
    generation every step has a new one (measured on an H100: 60-100 ms per token instead of ~16)."""
    if torch.device(device).type != "cuda":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(
    fns: dict, device, repeats: int, warm_up: bool = True, min_seconds: float = 0.0, max_rounds: int = 100
) -> dict[str, dict]:
    """Median seconds of each function over at least `repeats` rounds after one warm-up, its peak
    GPU memory (GiB; None on CPU) and the number of rounds.

    The functions take turns (round robin), so a load that comes and goes on the machine
    slows them alike instead of whichever happened to run during it. Rounds go on, up to
    `max_rounds`, until they have taken `min_seconds` in all: calls of a few milliseconds
    need dozens of samples before their median settles on a shared machine.
    """
    cuda = torch.device(device).type == "cuda"
    for fn in fns.values() if warm_up else ():
        fn()
    times = {name: [] for name in fns}
    peaks = dict.fromkeys(fns, 0.0)
    rounds, began = 0, time.perf_counter()
    while rounds < repeats or (time.perf_counter() - began < min_seconds and rounds < max_rounds):
        rounds += 1
        for name, fn in fns.items():
            _sync(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            if cuda:
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated() / 2**30)
    return {
        name: {
            "seconds": statistics.median(times[name]),
            "peak_memory_gib": peaks[name] if cuda else None,
            "rounds": rounds,
        }
        for name in fns
    }


def forward_fn(variant: str, single, fused, batch: torch.Tensor):
    """One forward pass over `batch` (with its loss, as in evaluation) by this variant, as a function."""
    n = fused.config.n_experts
    if variant == "single":
        return lambda: single(input_ids=batch, labels=batch, use_cache=False)
    if variant == "separate":  # the N specialists one after another (same architecture, same cost)
        return lambda: [single(input_ids=batch, labels=batch, use_cache=False) for _ in range(n)]
    name = "dense" if variant == "dense-batched" else variant

    def run():
        fused.config.batched_experts = variant == "dense-batched"
        try:
            with dispatch(fused, name):
                return fused(input_ids=batch, labels=batch)
        finally:
            fused.config.batched_experts = False

    return run


@torch.no_grad()
def time_generation(
    models: dict, prompt: torch.Tensor, new_tokens: int, use_cache: bool, device, repeats: int = 1
) -> dict[str, dict]:
    """Seconds for each model to generate exactly `new_tokens` greedy tokens (no early stop).

    After a short warm-up, the models take turns (`timed`: round robin, median of the rounds), so a
    passing load on the machine slows one model and the other alike and their ratio holds.
    """
    kw = dict(
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        eos_token_id=None,
        pad_token_id=0,
        use_cache=use_cache,
    )
    mask = torch.ones_like(prompt)

    def run(model, **extra):
        return lambda: model.generate(prompt, attention_mask=mask, **{**kw, **extra})

    with (
        quiet_transformers(),
        attention_backends(device),
    ):  # past max_position_embeddings is intended (rotary has no limit)
        for model in models.values():
            run(model, max_new_tokens=2, min_new_tokens=2)()
        result = timed({name: run(model) for name, model in models.items()}, device, repeats, warm_up=False)
    return {
        name: {**r, "repeats": repeats, "tokens_per_s": prompt.shape[0] * new_tokens / r["seconds"]}
        for name, r in result.items()
    }


def generation_repeats(repeats: int, new_tokens: int, use_cache: bool) -> int:
    """Cache-free generation is quadratic in its length: beyond 256 new tokens it is timed once."""
    return repeats if use_cache or new_tokens <= 256 else 1


def run_benchmark(
    scale_name: str,
    n_experts=(2, 3, 4, 5, 20),
    freeze_layers=None,
    batch_sizes=None,
    gen_lengths=(64, 256, 1024),
    main_n: int = 3,
    repeats: int = 3,
    seq_len: int | None = None,
    prompt_len: int = 32,
    variants=FORWARD_VARIANTS,
    device: str | None = None,
    seed: int = 0,
    progress: bool = False,
    offload: bool = True,
    min_seconds: float = 1.0,
) -> dict:
    """Every timing notebook 07 shows, as one JSON-able dict (see the module docstring).

    Sweeps, each around the main point (N=main_n, the scale's K, batch = the scale's eval batch,
    seq_len = the scale's): N over `n_experts` (every variant), K over `freeze_layers` and the
    batch size over `batch_sizes` (single, separate and dense), and generation at N=main_n,
    batch 1, with and without the cache, for one model and the dense fused model. Each forward
    setting is timed over at least `repeats` rounds and `min_seconds` (see `timed`).
    """
    scale = get_scale(scale_name)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if (device.type == "cuda" and scale.bf16) else torch.float32
    config, weights = benchmark_config(scale_name)
    L = config.num_hidden_layers
    T = seq_len or scale.seq_len
    k0, b0 = scale.freeze_layers, scale.eval_batch
    freeze_layers = sorted({k0, *(freeze_layers if freeze_layers is not None else (0, L // 2, L - 1))})
    batch_sizes = sorted({b0, *(batch_sizes if batch_sizes is not None else (1, 2 * b0))})
    for k in freeze_layers:
        if not 0 <= k <= L:
            raise KalavaiError(f"frozen depth {k} outside 0..{L}")
    unknown = sorted(set(variants) - set(FORWARD_VARIANTS))
    if unknown:
        raise KalavaiError(f"unknown variant(s) {', '.join(unknown)}; choose from: {', '.join(FORWARD_VARIANTS)}")
    basic = [v for v in ("single", "separate", "dense", "dense-batched") if v in variants]

    # (n, k, batch) -> the variants to time there
    plan: dict[tuple[int, int, int], list[str]] = {}
    for n in n_experts:
        todo = plan.setdefault((n, k0, b0), [])
        todo += [v for v in variants if v not in todo and not (v.startswith("top2") and n < 2)]
    for key in [(main_n, k, b0) for k in freeze_layers] + [(main_n, k0, b) for b in batch_sizes]:
        todo = plan.setdefault(key, [])
        # batch 1 is the authors' setting (paper_comparison): every variant there
        todo += [v for v in (variants if key[2] == 1 else basic) if v not in todo]

    def say(text):
        if progress:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    g = torch.Generator().manual_seed(seed)
    forward = []
    for (n, k, b), todo in sorted(plan.items()):
        single, fused = random_models(config, n, k, device, dtype, seed)
        batch = torch.randint(0, config.vocab_size, (b, T), generator=g).to(device)
        say(f"N={n} K={k} batch={b}: {', '.join(todo)}")
        with torch.no_grad(), attention_backends(device):
            measured = timed(
                {v: forward_fn(v, single, fused, batch) for v in todo}, device, repeats, min_seconds=min_seconds
            )
        forward += [
            {"n_experts": n, "freeze_layers": k, "batch": b, "seq_len": T, "variant": v, **measured[v]} for v in todo
        ]
        del single, fused
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if device.type == "cuda" and offload:
        # every expert's weights in CPU memory, brought to the GPU for each forward (accelerate's offload)
        say(f"N={main_n} K={k0} batch={b0}: dense-offloaded")
        single, fused = random_models(config, main_n, k0, "cpu", dtype, seed)
        place_experts(fused, {"cpu": 2**50}, main_device=str(device))
        batch = torch.randint(0, config.vocab_size, (b0, T), generator=g).to(device)
        with torch.no_grad(), attention_backends(device):
            measured = timed(
                {"dense-offloaded": forward_fn("dense", single, fused, batch)}, device, repeats, min_seconds=min_seconds
            )
        forward.append(
            {
                "n_experts": main_n,
                "freeze_layers": k0,
                "batch": b0,
                "seq_len": T,
                "variant": "dense-offloaded",
                **measured["dense-offloaded"],
            }
        )
        del single, fused
    base = {(r["n_experts"], r["freeze_layers"], r["batch"]): r["seconds"] for r in forward if r["variant"] == "single"}
    for r in forward:
        key = (r["n_experts"], r["freeze_layers"], r["batch"])
        r["tokens_per_s"] = r["batch"] * T / r["seconds"]
        r["latency_x_single"] = r["seconds"] / base[key] if key in base else None
        r["ideal_dense_ratio"] = ideal_dense_ratio(r["n_experts"], L, r["freeze_layers"])
        r["flops_ratio"] = flops_ratio(config, T, r["n_experts"], r["freeze_layers"])

    generation = []
    if gen_lengths:
        single, fused = random_models(config, main_n, k0, device, dtype, seed)
        prompt = torch.randint(0, config.vocab_size, (1, prompt_len), generator=g).to(device)
        for new in gen_lengths:
            say(f"generation: {new} new tokens")
            for use_cache in (True, False):
                timings = time_generation(
                    {"single": single, "dense": fused},
                    prompt,
                    new,
                    use_cache,
                    device,
                    generation_repeats(repeats, new, use_cache),
                )
                generation += [
                    {
                        "model": name,
                        "n_experts": main_n,
                        "freeze_layers": k0,
                        "batch": 1,
                        "prompt_len": prompt_len,
                        "new_tokens": new,
                        "cache": use_cache,
                        **t,
                    }
                    for name, t in timings.items()
                ]
        del single, fused
    return {
        "scale": scale.name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "dtype": str(dtype),
        "weights": weights,
        "attention": "SDPA: flash, memory-efficient or math (cuDNN excluded)" if device.type == "cuda" else "SDPA",
        "config": {"n_layers": L, "hidden_size": config.hidden_size, "vocab_size": config.vocab_size},
        "settings": {
            "n_experts": list(n_experts),
            "freeze_layers": freeze_layers,
            "batch_sizes": batch_sizes,
            "gen_lengths": list(gen_lengths),
            "main_n": main_n,
            "main_freeze_layers": k0,
            "main_batch": b0,
            "seq_len": T,
            "prompt_len": prompt_len,
            "repeats": repeats,
            "min_seconds": min_seconds,
            "variants": list(variants),
        },
        "forward": forward,
        "generation": generation,
        "versions": library_versions(),
    }


def main(scale_name: str, out: str, **kw) -> dict:
    result = run_benchmark(scale_name, **kw)
    atomic_write_json(out, result)
    return result


@contextmanager
def quiet_transformers():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


# ---------------------------------------------------------------- generating text


def save_fused(fused: FusedModel, tokenizer, folder, finish=None, replace: bool = True) -> Path:
    """A fused model folder that `generate` and plain AutoModelForCausalLM.from_pretrained read (safetensors).

    Written into a fresh folder beside it, then swapped in (the old one moved aside first and
    removed last), so a reader finds the old model or the new one, never half of one.
    `finish(new_folder)` writes further files (a model card, a record) before the swap; anything
    failing on the way leaves no new folder behind. With `replace` False nothing is ever
    replaced: the new folder takes the place of an empty one or of none, else a KalavaiError.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.new-"))
    try:
        fused.save_pretrained(new)
        tokenizer.save_pretrained(new)
        if finish is not None:
            finish(new)
        if not replace:
            try:
                os.rename(new, folder)  # onto an empty folder or none; refused over anything else
            except OSError as e:
                raise KalavaiError(
                    f"{folder}: {e.strerror or type(e).__name__}; something was written there meanwhile "
                    "(nothing of it is replaced, the new model is not kept)"
                ) from None
            return folder
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
        os.replace(folder, old / folder.name)
    os.replace(new, folder)
    if old is not None:
        shutil.rmtree(old)
    return folder


def load_fused(folder) -> tuple[FusedModel, object]:
    """A fused model folder through transformers' Auto classes (registered by kalavai_utils.protocol.fusion; no remote code)."""
    from transformers import AutoModelForCausalLM

    from ..protocol.tokenizer import load_local_tokenizer

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise KalavaiError(f"no fused model in {folder} (no config.json)")
    tokenizer = load_local_tokenizer(folder)  # first: it refuses a folder that names code (auto_map) to import
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:  # a malformed config or weights
        raise KalavaiError(f"cannot load the fused model in {folder}: {first_line(e)}") from None
    if not isinstance(model, FusedModel):
        raise KalavaiError(f"{folder} holds a {type(model).__name__}, not a fused model")
    return model.eval(), tokenizer


@torch.no_grad()
def generate_text(
    folder,
    prompt: str,
    max_new_tokens: int = 64,
    sample: bool = False,
    seed: int = 0,
    use_cache: bool | None = None,
    streamer=None,
) -> str:
    """Generate from a saved fused model, streaming tokens to stdout (transformers' TextStreamer).

    use_cache None: cached when the model's router is causal, else cache-free (FusedModel.generate).
    """
    from transformers import TextStreamer

    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise KalavaiError(f"--max-new-tokens must be at least 1, got {max_new_tokens!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise KalavaiError(f"--seed must be an integer from 0 to {2**32 - 1}, got {seed!r}")
    model, tokenizer = load_fused(folder)
    if torch.cuda.is_available():
        model = model.to("cuda")
    torch.manual_seed(seed)
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    if inputs["input_ids"].shape[1] == 0:
        raise KalavaiError("empty prompt")
    streamer = streamer or TextStreamer(tokenizer, skip_prompt=False)
    with quiet_transformers(), attention_backends(model.device):
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            use_cache=use_cache,
            streamer=streamer,
            pad_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0], skip_special_tokens=True)


def notebook_settings(scale) -> dict:
    """The benchmark's knobs in notebook 07: seconds at smoke and in a code-path test of a Hub scale
    (KALAVAI_SIZES=ci), a few minutes on 2 cores at tiny."""
    if scale.name == "smoke" or (scale.is_hub and settings().sizes == "ci"):
        return {
            "n_experts": (2, 3),
            "gen_lengths": (8, 16),
            "repeats": 1,
            "min_seconds": 0.0,
            "freeze_layers": (0,),
            "batch_sizes": (1,),
        }
    return {}


# ---------------------------------------------------------------- the notebook's run


def trained_fused(scale, runs: Path, seed: int):
    """Notebook 03's fused model for one seed, with its routers loaded: (fused, {fused name: router}, held-out)."""
    from ..protocol import cooperative, data, pipeline

    folder, _ = pipeline.prepare_corpus(scale, runs)
    base = pipeline.load_base(scale, runs)
    coop = cooperative.main_cooperative(scale, runs, seed, folder)
    fused = cooperative.assemble(coop, runs, base, router_hidden=scale.router_hidden, seed=seed).fused
    mixed = cooperative.mixed_train_chunks(coop)
    routers = cooperative.fit_routers(fused, coop.routers, mixed, coop, coop.folder(runs) / "routers")  # cached by 03
    heldout = data.load_splits(coop.data_dir, coop.domains, "heldout")
    return fused, {name: router for name, (router, _) in routers.items()}, heldout, coop


def inference_losses(scale, runs: Path, seed: int) -> dict:
    """Held-out losses of every dispatch for each of the cooperative's routers (cached on content).

    Written to runs/<scale>/inference/seed<seed>/losses.json. "dense" is notebook 03's fused
    model, evaluated again through the same protocol: it must give 03's numbers.
    """
    from ..protocol.cooperative import fused_name
    from ..protocol.models import fingerprint
    from ..storage import mark_step_done, start_step, step_is_done

    folder = runs / "inference" / f"seed{seed}"
    fused, routers, heldout, coop = trained_fused(scale, runs, seed)
    config = {
        "experts": [fingerprint(e) for e in fused.experts],
        "routers": {n: fingerprint(r) for n, r in routers.items()},
        "eval": [scale.eval_batch, scale.eval_max_batches],
        "dispatches": list(DISPATCHES),
    }
    if step_is_done(folder, config) and (folder / "losses.json").exists():
        return read_json(folder / "losses.json")
    clock, out = Clock(), {}
    for kind, granularity in coop.routers:
        name = fused_name(kind, granularity)
        fused.use_router(kind, granularity, hidden=scale.router_hidden, seed=seed)
        fused.router.load_state_dict(routers[name].state_dict())
        out[name] = dispatch_losses(fused, heldout, scale.eval_batch, scale.eval_max_batches)
    start_step(folder)
    atomic_write_json(folder / "losses.json", out)
    mark_step_done(folder, config, evaluation=clock.spent())
    return out
