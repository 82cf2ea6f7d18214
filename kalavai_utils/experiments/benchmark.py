"""Speed, measured (never asserted in tests): writes one JSON file.

- specialist training: tokens/s and the fraction of this device's measured matmul peak, with
  every step running its frozen prefix, and (on a CPU) with the prefix's output read back as
  the notebooks do (runtime/prefix.py);
- fused evaluation: tokens/s of the fused model (shared prefix computed once) against
  running the N specialists one after another;
- router training: seconds per router and tokens/s, for the ablation's routers trained side by
  side (the experts run once per batch for all of them) against one router alone, both with
  the shared prefix's output read back (CPU), and against the straightforward way (the fused
  model's whole forward and backward at every step: `fit_through_fused_forward`);
- where a run of the notebooks exists (runs/<scale>/), where its time went (`run_phases`):
  the base's pretraining, the specialists (trained, and copied from another cooperative),
  the monolithic baselines and other trainings, each with seconds, tokens/s and fraction of
  peak; the held-out curves during training (and their share of it), router fitting and
  evaluation; and the rest of the notebooks' time (data, loading, figures);
- beside each figure, the committed reference's (results/<scale>/benchmark.json), so a
  slowdown shows in review.

    python -m kalavai_utils benchmark --scale tiny --out runs/tiny/benchmarks/speed.json

At `410m` it uses Pythia-410M's real config: the real weights if they are in the local
Hugging Face cache, random ones otherwise (the JSON says which), bf16 on a GPU.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from ..families import family_of
from ..protocol.cooperative import ABLATION_ROUTERS, paper_router
from ..protocol.fusion import FusedModel
from ..protocol.models import build_causal_lm, freeze_prefix, load_causal_lm, n_params, offline_config
from ..protocol.results import library_versions
from ..protocol.routers import make_router, train_routers
from ..protocol.training import TrainConfig, compile_requested, train_causal_lm
from ..runtime import prefix
from ..runtime.perf import measure_matmul_peak
from ..scales import get_scale
from ..storage import atomic_write_json, read_json
from .inference import benchmark_config

WARMUP_STEPS = 10  # optimizer steps left out of the steady-state throughput


def benchmark_model(scale):
    """The scale's architecture: real weights when available locally, else random (stated)."""
    if not scale.is_hub:
        return build_causal_lm(offline_config(scale)), "random init, the offline scale's architecture"
    try:
        return load_causal_lm(scale.hub_model, scale.hub_revision), "real weights from the local Hugging Face cache"
    except Exception:  # noqa: BLE001 - no cache or no Hub: the config alone is enough for speed
        config, source = benchmark_config(scale.name)  # the inference benchmark's: the cached config, else 410m's
        return build_causal_lm(config), source


def _time(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(scale_name: str, steps: int = 20, n_experts: int = 3, eval_batches: int = 10) -> dict:
    scale = get_scale(scale_name)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, source = benchmark_model(scale)
    dtype = torch.bfloat16 if (device.type == "cuda" and scale.bf16) else torch.float32
    vocab, T = model.config.vocab_size, scale.seq_len
    chunks = torch.randint(0, vocab, (max(64, scale.micro_batch * scale.grad_accum * 4), T))
    peak = measure_matmul_peak(str(device), dtype, n=4096 if device.type == "cuda" else 1024)

    # 1. specialist training (the one loop), memory included on GPU
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cfg = TrainConfig.specialist(scale, 0, steps=steps, curve_every=0)
    stamps = []

    def on_step(step, _model):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    def steady_tokens_per_s():
        # steady state: the first steps pay one-time costs (kernel loading, torch.compile, allocator warm-up)
        steady_s = (stamps[-1] - stamps[warm - 1]) / (steps - warm) if steps - warm > 0 and warm > 0 else float("nan")
        return cfg.micro_batch * cfg.grad_accum * T / steady_s

    # the model's own compute: every step runs its frozen prefix (the prefix cache off)
    warm = min(WARMUP_STEPS, steps // 2)
    with prefix.budget(0):
        log = train_causal_lm(copy.deepcopy(model), chunks, cfg, desc="benchmark train", on_step=on_step)
    steady_tps = steady_tokens_per_s()
    train = {
        "steps": steps,
        "warmup_steps": warm,
        "tokens_per_s": steady_tps,
        "tokens_per_s_with_warmup": log["tokens_per_s"],
        "micro_batch": cfg.micro_batch,
        "grad_accum": cfg.grad_accum,
        "compiled": compile_requested(),
        "mixed_precision": log["mixed_precision"],
        "fraction_of_peak": steady_tps * log["flops_per_token"] / peak,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }

    # as the notebooks train on CPU: the frozen prefix's output read back for chunks seen before
    # (prefix.py; the first training on these chunks computes it, the second reads it back). The
    # model is still on the CPU here, so the device decides: a GPU's training never reads back.
    if device.type == "cpu" and prefix.for_model(model, cfg.freeze_layers) is not None:
        train_causal_lm(copy.deepcopy(model), chunks, cfg, desc="benchmark train")
        stamps.clear()
        train_causal_lm(copy.deepcopy(model), chunks, cfg, desc="benchmark train", on_step=on_step)
        train["prefix_read_back_tokens_per_s"] = steady_tokens_per_s()
    train["step_breakdown"] = step_breakdown(model, chunks, cfg, device, dtype)
    train["notes"] = training_notes(train, peak)

    # 2. fused evaluation vs the N specialists one after another
    experts = [copy.deepcopy(model).to(device, dtype).eval() for _ in range(n_experts)]
    fused = (
        FusedModel.from_specialists(
            experts, [f"e{i}" for i in range(n_experts)], scale.freeze_layers, router_hidden=scale.router_hidden
        )
        .to(device)
        .eval()
    )
    batches = [chunks[i * scale.eval_batch : (i + 1) * scale.eval_batch].to(device) for i in range(eval_batches)]
    tokens = sum(b.numel() for b in batches)
    with torch.no_grad():
        fused(input_ids=batches[0], labels=batches[0])  # warm-up
        t_fused = _time(lambda: [fused(input_ids=b, labels=b) for b in batches], device)
        t_each = _time(lambda: [e(input_ids=b, labels=b, use_cache=False) for b in batches for e in experts], device)
        t_one = _time(lambda: [experts[0](input_ids=b, labels=b, use_cache=False) for b in batches], device)
    evaluation = {
        "fused_tokens_per_s": tokens / t_fused,
        "sequential_tokens_per_s": tokens / t_each,
        "single_model_tokens_per_s": tokens / t_one,
        "fused_latency_x_single": t_fused / t_one,
        "sequential_latency_x_single": t_each / t_one,
        "n_experts": n_experts,
        "freeze_layers": scale.freeze_layers,
    }

    # 3. router training: the ablation's routers side by side (as a cooperative fits them), and one alone
    router_steps = min(scale.router_steps, 20)

    def fit(variants):
        routers = [
            (
                make_router(kind, fused.specialist_config.hidden_size, n_experts, hidden=scale.router_hidden).to(
                    device
                ),
                g,
            )
            for kind, g in variants
        ]
        return _time(
            lambda: train_routers(
                fused,
                routers,
                chunks,
                router_steps,
                scale.router_batch,
                scale.router_lr,
                scale.router_wd,
                seed=0,
                progress=False,
            ),
            device,
        ) / len(variants)

    router_tokens = router_steps * scale.router_batch * T
    with prefix.budget(0):  # the experts' whole forward at every step, as the reference measured
        per_router = {"side_by_side": fit(ABLATION_ROUTERS), "alone": fit(ABLATION_ROUTERS[1:2])}
    if prefix.for_fused(fused) is not None:  # as in the run: the chunks' prefix output read back
        fit(ABLATION_ROUTERS)
        per_router["side_by_side_prefix_read_back"] = fit(ABLATION_ROUTERS)
        per_router["alone_prefix_read_back"] = fit(ABLATION_ROUTERS[1:2])
    per_router["through_fused_forward"] = _time(
        lambda: fit_through_fused_forward(fused, chunks, router_steps, scale), device
    )
    fastest = min(v for k, v in per_router.items() if k != "through_fused_forward")
    return {
        "scale": scale.name,
        "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "weights": source,
        "dtype": str(dtype),
        "n_params": n_params(model),
        "matmul_peak_flops": peak,
        "flops_per_token": log["flops_per_token"],
        "training": train,
        "evaluation": evaluation,
        "router": {
            "steps": router_steps,
            "n_side_by_side": len(ABLATION_ROUTERS),
            **{f"{k}_seconds_per_router": v for k, v in per_router.items()},
            **{f"{k}_tokens_per_s": router_tokens / v for k, v in per_router.items()},
            "speedup_side_by_side": per_router["alone"] / per_router["side_by_side"],
            # against the straightforward way (the fused model's whole forward and backward at every step)
            "speedup_vs_fused_forward": per_router["through_fused_forward"] / fastest,
            "projected_seconds_full_per_router": per_router["side_by_side"] / router_steps * scale.router_steps,
        },
        "versions": library_versions(),
    }


def fit_through_fused_forward(fused: FusedModel, chunks: torch.Tensor, steps: int, scale) -> None:
    """The straightforward router training the benchmark compares with (the authors' code does this):
    the authors' router, and at every step the fused model's whole forward, every expert's
    suffix and the shared prefix included, with the loss's backward to the router."""
    fused.use_router(*paper_router(scale), hidden=scale.router_hidden, seed=0)
    for p in fused.parameters():
        p.requires_grad_(False)
    for p in fused.router.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(fused.router.parameters(), lr=scale.router_lr, weight_decay=scale.router_wd)
    g = torch.Generator().manual_seed(0)
    device = fused.embed_in.weight.device
    for _ in range(steps):
        batch = chunks[torch.randint(len(chunks), (scale.router_batch,), generator=g)].to(device)
        loss = fused(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def step_breakdown(model, chunks: torch.Tensor, cfg: TrainConfig, device, dtype, repeats: int = 10) -> dict:
    """Where one training micro-batch's time goes, measured on a copy of the model as the loop trains it.

    Milliseconds per micro-batch (cfg.micro_batch sequences): the forward pass and, inside it,
    the frozen prefix (entering block 0 to leaving block K-1, timed by hooks), the backward
    pass, and the optimizer (gradient clipping, AdamW's step, zero_grad: once per optimizer
    step, so divided by grad_accum). `matmul_share` is the share of operator time that
    matrix multiplications take (torch.profiler's self time of mm/addmm/bmm): what is left is
    elementwise work, softmax, attention and Python.
    """
    model = copy.deepcopy(model).to(device).train()
    freeze_prefix(model, cfg.freeze_layers)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    batch = chunks[: cfg.micro_batch].to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    prefix_stamps = []  # -entered, left, -entered, left, ...: pairs summing to the prefix's durations

    def stamp(sign):
        def hook(*_):  # returns None: the module's input and output stay as they are
            sync()
            prefix_stamps.append(sign * time.perf_counter())

        return hook

    if cfg.freeze_layers:
        blocks = family_of(model).blocks_of(model)
        blocks[0].register_forward_pre_hook(stamp(-1))
        blocks[cfg.freeze_layers - 1].register_forward_hook(stamp(1))
    times = {"forward": [], "backward": [], "optimizer": []}

    def micro_batch():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            t0 = time.perf_counter()
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            sync()
            t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        sync()
        for k, v in zip(times, (t1 - t0, t2 - t1, time.perf_counter() - t2)):
            times[k].append(v)

    for _ in range(3):  # warm-up
        micro_batch()
    for v in (*times.values(), prefix_stamps):
        v.clear()
    for _ in range(repeats):
        micro_batch()
    with torch.profiler.profile() as prof:
        micro_batch()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or float("nan")
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    ms = {k: 1000 * sum(v[-repeats:]) / repeats for k, v in times.items()}
    ms["optimizer"] /= cfg.grad_accum
    return {
        "micro_batch_tokens": batch.numel(),
        **{f"{k}_ms": v for k, v in ms.items()},
        "frozen_prefix_forward_ms": 1000 * sum(prefix_stamps[-2 * repeats - 2 : -2]) / repeats
        if prefix_stamps
        else 0.0,
        "matmul_share": matmul / total,
    }


def training_notes(train: dict, peak: float) -> list[str]:
    """What limits training, in words, from the measured numbers (benchmark JSON's notes)."""
    b = train["step_breakdown"]
    step = b["forward_ms"] + b["backward_ms"] + b["optimizer_ms"]
    return [
        f"one micro-batch of {b['micro_batch_tokens']} tokens takes {step:.1f} ms: forward {b['forward_ms'] / step:.0%}, "
        f"backward {b['backward_ms'] / step:.0%}, optimizer {b['optimizer_ms'] / step:.0%}",
        f"the frozen prefix's forward (no gradient, the same for every contributor) is {b['frozen_prefix_forward_ms'] / step:.0%} "
        "of the step; it depends only on the base and the chunk, so on a CPU the notebooks read it back for chunks seen "
        "before (runtime/prefix.py, exact)"
        + (
            f": {train['prefix_read_back_tokens_per_s']:,.0f} tokens/s instead of {train['tokens_per_s']:,.0f}"
            if "prefix_read_back_tokens_per_s" in train
            else ""
        ),
        f"matrix multiplications take {b['matmul_share']:.0%} of operator time; the rest is elementwise work, "
        "softmax, attention and Python",
        f"training runs at {train['fraction_of_peak']:.0%} of the measured matmul peak ({peak / 1e9:.0f} GFLOP/s) "
        "by the corrected FLOP count (perf.training_flops_per_token)",
    ]


def _share(threads: int | None, peak_threads: int | None) -> float:
    # Work on fewer threads than the peak was measured with (a worker beside another,
    # runtime/workers.py) held that share of the machine: its seconds count in that share, so
    # that phases add up to wall time and their fraction of peak is the machine's.
    return (threads or peak_threads) / peak_threads if peak_threads else 1.0


def _training_phase(logs: list[dict], peak: float | None, peak_threads: int | None = None) -> dict:
    seconds = sum(log["train_seconds"] * _share(log.get("threads"), peak_threads) for log in logs)
    tokens = sum(log["tokens"] for log in logs)
    # the FLOPs the steps ran (a prefix read back is not computed; prefix.py), the model's count in older logs
    flops = sum(
        log["tokens"] * log.get("flops_per_token_run", log["flops_per_token"])
        for log in logs
        if log.get("flops_per_token")
    )
    return {
        "count": len(logs),
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds if seconds else None,
        "fraction_of_peak": flops / seconds / peak if (seconds and peak and flops) else None,
    }


def _timed_phase(spent: list[dict], peak_threads: int | None) -> dict:
    """Seconds of steps that recorded their time (perf.Clock), each in its share of the machine."""
    return {"count": len(spent), "seconds": sum(e["seconds"] * _share(e.get("threads"), peak_threads) for e in spent)}


def run_phases(runs: Path) -> dict | None:
    """Where a finished run of the notebooks spent its time, from its own logs (None: no run).

    Training phases sum their logs' train_seconds, each in the share of the machine's threads
    it ran on (a one-thread worker beside another: half), and count the FLOPs their steps ran
    (perf.py; without the frozen prefix's forward where it was read back). Beside them: the
    held-out curves recorded during those trainings (kept out of train_seconds; their share of
    the training time beside them), router fitting (router_log.json) and evaluation (every
    step.json that timed one); "other" is the notebooks' total (timings.json) less all of
    these: data, loading, the inference benchmark, figures and the notebooks themselves.
    """
    runs = Path(runs)
    if not (runs / "timings.json").exists():
        return None
    base_log = runs / "base" / "pretrain_log.json"
    pretrain = [read_json(base_log)] if base_log.exists() else []
    peak = pretrain[0].get("matmul_peak_flops") if pretrain else None
    threads = pretrain[0].get("threads") if pretrain else None  # the peak's (older logs: unknown, shares not applied)
    logs = {path: read_json(path) for path in sorted(runs.glob("**/train_log.json"))}
    specialists = {p: log for p, log in logs.items() if p.parent.parent.name == "specialists"}
    trained = [log for log in specialists.values() if "copied_from" not in log]
    monolithic = [log for p, log in logs.items() if p.parent.name == "monolithic"]
    other = [log for p, log in logs.items() if p not in specialists and p.parent.name != "monolithic"]
    other += [read_json(p) for p in sorted(runs.glob("**/pretrain_log.json")) if p != base_log]
    other = [log for log in other if "train_seconds" in log]
    total = read_json(runs / "timings.json")["total_seconds"]
    phases = {
        "pretraining": _training_phase(pretrain, peak, threads),
        "specialists": {
            **_training_phase(trained, peak, threads),
            "copied": sum("copied_from" in log for log in specialists.values()),
        },
        "monolithic": _training_phase(monolithic, peak, threads),
        "other_training": _training_phase(other, peak, threads),
    }  # e.g. notebook 05's capacity model
    training_seconds = sum(p["seconds"] for p in phases.values())
    curves = _timed_phase(
        [
            {"seconds": log["curve_seconds"], "threads": log.get("threads")}
            for log in [*pretrain, *trained, *monolithic, *other]
            if "curve_seconds" in log
        ],
        threads,
    )
    phases["curves"] = {
        **curves,
        "share_of_training": curves["seconds"] / training_seconds if training_seconds else None,
    }
    phases["routers"] = _timed_phase(
        [log["fit"] for log in map(read_json, sorted(runs.glob("**/router_log.json"))) if "fit" in log], threads
    )
    phases["evaluation"] = _timed_phase(
        [step["evaluation"] for step in map(read_json, sorted(runs.glob("**/step.json"))) if "evaluation" in step],
        threads,
    )
    phases["other"] = {"seconds": total - sum(p["seconds"] for p in phases.values())}
    return {"notebooks_seconds": total, **phases}


def with_reference(result: dict, reference: dict | None) -> dict:
    """`result` with each number of the reference's beside it: {"reference": {...}} at the top level."""
    return (
        {
            **result,
            "reference": {
                k: reference[k] for k in ("training", "evaluation", "router", "phases", "device_name") if k in reference
            },
        }
        if reference
        else result
    )


def main(scale_name: str, out: str, steps: int = 20, runs: Path | None = None, reference: Path | None = None) -> dict:
    result = run(scale_name, steps)
    if runs is not None:
        result["phases"] = run_phases(runs)
    if reference is not None and Path(reference).exists():
        result = with_reference(result, read_json(reference))
    atomic_write_json(out, result)
    return result
