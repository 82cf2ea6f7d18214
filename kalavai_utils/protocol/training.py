"""The one training loop: base pretraining, specialists, the monolithic baseline, ablations.

Written on `accelerate` in the manner of Hugging Face's `run_clm_no_trainer.py`, so
`accelerate launch` spreads one run over several processes (see accelerate_configs/). Full
fine-tuning with the input embedding and the first K blocks frozen; AdamW; linear warmup
then cosine to zero (the `transformers` scheduler); gradient clipping; gradient
accumulation; a seeded data order; bf16 autocast on GPU, fp32 on CPU.

The logged loss is the true mean over the micro-batches of each optimizer step (the
authors' log summed them, inflating it by the accumulation factor); the logged learning
rate is the one that step's update used.

Several processes keep the global batch: `micro_batch x grad_accum` sequences per optimizer
step whatever the number of processes P, each process accumulating `grad_accum / P`
micro-batches of one global stream (`micro_batch_order`). The stream is a function of
(seed, position) alone, which is also what lets a killed training resume exactly
(`checkpoint_dir`, `save_every`).
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, GradientAccumulationPlugin, parse_flag_from_env, set_seed
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..errors import KalavaiError
from . import prefix
from .evaluation import evaluate_domains
from .models import fingerprint, freeze_prefix, n_params, tensor_sha256
from .perf import prefix_forward_flops, training_flops_per_token
from ..scales import Scale

CHECKPOINT_FILE = "train_state.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    lr: float
    seed: int
    freeze_layers: int = 0
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    micro_batch: int = 2
    grad_accum: int = 4  # micro-batches per optimizer step over all processes together
    bf16: bool = False
    grad_checkpointing: bool = False
    curve_every: int = 0  # 0: no held-out curve
    curve_max_batches: int = 10
    eval_batch: int = 4

    @classmethod
    def specialist(cls, scale: Scale, seed: int, **overrides) -> "TrainConfig":
        """The paper's specialist recipe at this scale; overrides serve the ablations."""
        base = dict(
            steps=scale.spec_steps, lr=scale.spec_lr, seed=seed, freeze_layers=scale.freeze_layers,
            weight_decay=scale.weight_decay, warmup_frac=scale.warmup_frac, grad_clip=scale.grad_clip,
            micro_batch=scale.micro_batch, grad_accum=scale.grad_accum, bf16=scale.bf16,
            grad_checkpointing=scale.grad_checkpointing, curve_every=scale.curve_every,
            curve_max_batches=scale.curve_max_batches, eval_batch=scale.eval_batch,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def pretrain(cls, scale: Scale, seed: int = 0) -> "TrainConfig":
        """The offline base's pretraining: same loop, nothing frozen, a higher rate, bigger batches."""
        return cls(
            steps=scale.pretrain_steps, lr=scale.pretrain_lr, seed=seed, freeze_layers=0,
            weight_decay=scale.weight_decay, warmup_frac=scale.warmup_frac, grad_clip=scale.grad_clip,
            micro_batch=scale.pretrain_batch, grad_accum=1, bf16=scale.bf16,
            curve_every=max(1, scale.pretrain_steps // 10), curve_max_batches=scale.curve_max_batches,
            eval_batch=scale.eval_batch,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def local_grad_accum(cfg: TrainConfig, num_processes: int) -> int:
    """Micro-batches each process accumulates so that all of them together make one global batch."""
    if cfg.grad_accum % num_processes:
        raise KalavaiError(
            f"grad_accum {cfg.grad_accum} is not divisible by {num_processes} processes: the global batch of "
            f"{cfg.micro_batch} x {cfg.grad_accum} sequences cannot be split evenly; use a process count dividing {cfg.grad_accum}")
    return cfg.grad_accum // num_processes


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    # sync_with_dataloader=False: an epoch boundary must not cut an accumulation window short
    # The process count is needed before the Accelerator exists; PartialState must read the
    # launcher's CPU flag itself, as the Accelerator would, or a CPU launch looks like one process.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    plugin = GradientAccumulationPlugin(num_steps=local_grad_accum(cfg, state.num_processes), sync_with_dataloader=False)
    use_bf16 = cfg.bf16 and torch.cuda.is_available()
    return Accelerator(gradient_accumulation_plugin=plugin, mixed_precision="bf16" if use_bf16 else "no")


def compile_requested() -> bool:
    """KALAVAI_COMPILE=1: torch.compile the model before training (an execution choice, like the
    thread count, so it is not part of TrainConfig or any cache key). On an H100 at 410M it nearly
    doubles steady-state throughput after a one-time compile of about a minute."""
    return os.environ.get("KALAVAI_COMPILE", "0") == "1"


def check_data(n_chunks: int, cfg: TrainConfig) -> None:
    """Refuse what would make the loop wait forever for a batch that never comes."""
    if cfg.micro_batch < 1 or cfg.grad_accum < 1:
        raise KalavaiError(f"micro_batch ({cfg.micro_batch}) and grad_accum ({cfg.grad_accum}) must be at least 1")
    if n_chunks < cfg.micro_batch:
        raise KalavaiError(f"too little training data: {n_chunks} chunks, fewer than one micro-batch of {cfg.micro_batch}")


def micro_batch_order(n_chunks: int, micro_batch: int, seed: int, start: int = 0) -> Iterator[torch.Tensor]:
    """Row indices of the global micro-batches `start`, `start + 1`, ... (endless, epoch after epoch).

    Each epoch is a fresh permutation from one generator seeded with `seed`, cut into
    `n_chunks // micro_batch` micro-batches (the remainder is dropped). The generator makes
    exactly the draws of `DataLoader(shuffle=True, drop_last=True, generator=...)`, the loop's
    earlier data source (an int64 for worker seeds, the permutation, and a second permutation
    the sampler starts when the batch sampler reads past its end), so every result made with
    that loader is reproduced bit for bit. Reaching `start` replays permutations, never data.
    """
    per_epoch = n_chunks // micro_batch
    if per_epoch == 0:
        raise KalavaiError(f"too little training data: {n_chunks} chunks, fewer than one micro-batch of {micro_batch}")
    generator = torch.Generator().manual_seed(seed)

    def next_permutation() -> torch.Tensor:
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        perm = torch.randperm(n_chunks, generator=generator)
        torch.randperm(n_chunks, generator=generator)
        return perm

    epoch, position = divmod(start, per_epoch)
    for _ in range(epoch):
        next_permutation()
    while True:
        perm = next_permutation()
        for i in range(position, per_epoch):
            yield perm[i * micro_batch:(i + 1) * micro_batch]
        position = 0


# ---------------------------------------------------------------- checkpoints

def _checkpoint_identity(model, train_chunks: torch.Tensor, cfg: TrainConfig, eval_sets) -> dict:
    """What a saved state must match to be resumed: same start weights, data, recipe and curves."""
    return {"config": cfg.to_dict(), "start_weights": fingerprint(model), "data": tensor_sha256(train_chunks),
            "eval": sorted(eval_sets or {})}


def _save_checkpoint(path: Path, model, optimizer, scheduler, identity: dict, step: int, log: dict,
                     train_seconds: float) -> None:
    """One safetensors file: trained weights, optimizer tensors and RNG; the rest as JSON metadata."""
    tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    opt = optimizer.state_dict()
    for i, state in opt["state"].items():
        for key, value in state.items():
            if not torch.is_tensor(value):
                raise KalavaiError(f"cannot checkpoint optimizer state {key!r}: not a tensor")
            tensors[f"optim.{i}.{key}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    meta = {"identity": identity, "step": step, "log": log, "train_seconds": train_seconds,
            "param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(),
            "rng_python": random.getstate(), "rng_numpy": [np_state[0], *np_state[2:]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # written aside and renamed: a kill during the write leaves the previous state intact
    save_file(tensors, str(tmp), metadata={"kalavai_train_state": json.dumps(meta)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_checkpoint(path: Path, identity: dict) -> tuple[dict, dict] | None:
    """The saved state at `path` if it belongs to this very training, else None."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["kalavai_train_state"])
    except Exception:  # noqa: BLE001 - unreadable state is as good as none: start over
        return None
    if meta.get("identity") != json.loads(json.dumps(identity)):
        return None
    return meta, load_file(str(path))


def _restore_checkpoint(meta: dict, tensors: dict, model, optimizer, scheduler) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(tensors[f"model.{n}"])
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    version, state_py, gauss = meta["rng_python"]
    random.setstate((version, tuple(state_py), gauss))
    kind, pos, has_gauss, cached = meta["rng_numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------- the loop

def _gather_fsdp(accelerator: Accelerator, wrapped, shapes: dict[int, torch.Size]) -> torch.nn.Module:
    """The caller's model back as a plain module after FSDP training, full weights on the main process.

    FSDP wrapped the caller's model in place: the blocks became FSDP units and every parameter a
    view of this process's shard. accelerate gathers the full state dict (FULL_STATE_DICT,
    offloaded to the CPU, main process only: a whole 6.9B model per process would not fit); the
    units are then replaced by the blocks they wrap and every parameter by its full tensor. On
    the other processes the parameters are left on the meta device, shapes without weights
    (`shapes`: id of each parameter -> its shape before wrapping), so using that model fails
    loudly instead of computing with shards. The main process's model comes back on the CPU.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    full = accelerator.get_state_dict(wrapped)  # a collective: every process must call it
    model = accelerator.unwrap_model(wrapped)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FSDP):
                setattr(module, child_name, child.module)
    # set, not load_state_dict: the shard views have other shapes, which loading refuses
    main = accelerator.is_main_process
    names = {id(p): n for n, p in model.named_parameters()}
    if main and set(names.values()) - set(full):  # a bug, not bad input
        raise RuntimeError(f"FSDP's full state dict lacks {sorted(set(names.values()) - set(full))}")
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            value = full[names[id(p)]] if main else torch.empty(shapes[id(p)], dtype=p.dtype, device="meta")
            setattr(module, name, torch.nn.Parameter(value, requires_grad=False))
    if main:
        model.to("cpu")  # the weights are there already (offloaded); the buffers follow them
    return model


def train_causal_lm(
    model,
    train_chunks: torch.Tensor,
    cfg: TrainConfig,
    eval_sets: dict[str, torch.Tensor] | None = None,
    desc: str = "train",
    on_step: Callable[[int, torch.nn.Module], None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    save_every: int = 0,
) -> dict:
    """Train `model` in place on `train_chunks` ([n, seq_len] token ids) and return its log.

    The log holds the loss and learning rate of every optimizer step, held-out curves
    (every `cfg.curve_every` steps, including step 0) on `eval_sets`, and throughput.

    With `checkpoint_dir` and `save_every`, the whole training state is saved there every
    `save_every` optimizer steps and after the last one, and a call that finds a state of
    this same training (same start weights, data, config and curve sets) resumes from it:
    the final weights and log equal an uninterrupted run's (bit for bit on a CPU). Pass the
    model in the state it had when training first started. A state of another training is
    ignored and overwritten. `on_step(step, model)` runs on the main process only, before
    that step's state is saved.

    Under FSDP (accelerate_configs/fsdp.yaml) the trained weights come back on the main
    process only, in `model` on the CPU; elsewhere `model` is left without weights (meta
    device). Checkpoints and `on_step` are refused there.
    """
    if train_chunks.dim() != 2:
        raise KalavaiError(f"training chunks must be [n, seq_len], got shape {tuple(train_chunks.shape)}")
    check_data(len(train_chunks), cfg)
    if save_every < 0 or (save_every and checkpoint_dir is None):
        raise KalavaiError("save_every needs a checkpoint_dir (and must not be negative)")
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if (checkpoint_dir is not None and save_every) else None
    identity = _checkpoint_identity(model, train_chunks, cfg, eval_sets) if checkpoint else None

    set_seed(cfg.seed)
    accelerator = make_accelerator(cfg)
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    if parse_flag_from_env("ACCELERATE_USE_FSDP") and not fsdp:
        # accelerate builds FSDP only on an accelerator; on CPU processes it silently falls back to DDP
        raise KalavaiError(f"FSDP was asked for but accelerate runs {accelerator.distributed_type} here: "
                           "FSDP needs GPUs (see accelerate_configs/README.md)")
    if fsdp and (checkpoint or on_step is not None):
        # Each process holds a shard of the weights and of AdamW's moments; saving or showing them
        # would need the full state gathered every time, which is not written yet.
        raise KalavaiError("resumable checkpoints (save_every) and on_step are not supported under FSDP yet; "
                           "train without them or use accelerate_configs/multi_gpu.yaml")
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    accum = local_grad_accum(cfg, n_proc)
    frozen = freeze_prefix(model, cfg.freeze_layers)
    seq_len = train_chunks.shape[1]
    flops_per_token = training_flops_per_token(model, seq_len)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    if compile_requested():
        model.compile()  # in place: the module, its names and its state dict stay as they are
    # The frozen prefix's output, read back for chunks it has already seen (prefix.py: exact,
    # CPU and one process only; a compiled or checkpointed model runs its own forward).
    states = (prefix.for_model(model, cfg.freeze_layers) if accelerator.device.type == "cpu" and n_proc == 1
              and not compile_requested() and not cfg.grad_checkpointing else None)
    params = [p for p in model.parameters() if p.requires_grad]
    # On a GPU the per-tensor update loop is launch-bound (measured at 410M on an H100: see
    # results/410m/README.md); the fused kernel does the same arithmetic in one launch.
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=accelerator.device.type == "cuda")
    # Counted in optimizer steps; accelerate steps the scheduler once per process.
    scheduler = get_scheduler(
        "cosine", optimizer,
        num_warmup_steps=int(cfg.warmup_frac * cfg.steps) * n_proc,
        num_training_steps=cfg.steps * n_proc,
    )
    data = train_chunks.long()
    shapes = {id(p): p.shape for p in model.parameters()}  # FSDP reshapes them into shard views
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    # use_orig_params keeps the Parameter objects the optimizer holds (as views of each process's
    # shard). FSDP's own norm (over every shard) runs only when handed all the model's parameters;
    # frozen ones have no gradient and count for nothing, as in the plain clip.
    clip_params = list(model.parameters()) if fsdp else params

    log = {"config": cfg.to_dict(), "loss": [], "lr": [], "curve": [], "frozen_tensors": len(frozen)}
    step, done_seconds = 0, 0.0
    saved = _read_checkpoint(checkpoint, identity) if checkpoint else None
    if saved is not None:
        meta, tensors = saved
        _restore_checkpoint(meta, tensors, accelerator.unwrap_model(model), optimizer, scheduler)
        step, done_seconds, log = meta["step"], meta["train_seconds"], meta["log"]
        log.setdefault("resumed_at", []).append(step)
        del tensors

    def record_curve(step: int) -> None:
        if eval_sets and cfg.curve_every and (step % cfg.curve_every == 0 or step == cfg.steps):
            # under FSDP only the wrapped model can run a forward (all processes together gather each unit)
            unwrapped = model if fsdp else accelerator.unwrap_model(model)
            losses = evaluate_domains(unwrapped, eval_sets, cfg.eval_batch, cfg.curve_max_batches, states=states)
            log["curve"].append({"step": step, "losses": losses})

    if saved is None:
        record_curve(0)
    model.train()
    running, eval_seconds = torch.zeros((), device=accelerator.device), 0.0
    start = time.perf_counter()
    if states is not None and step < cfg.steps:  # the chunks this training will read, computed ahead in
        # large batches (counted in train_seconds)
        ahead = micro_batch_order(len(data), cfg.micro_batch, cfg.seed, start=step * cfg.grad_accum)
        states.prefill(data[torch.cat([next(ahead) for _ in range((cfg.steps - step) * cfg.grad_accum)]).unique()])
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=None if accelerator.is_local_main_process else True, leave=False)
    # one global stream of micro-batches; process r takes every P-th, so P processes together
    # see exactly the micro-batches one process would
    stream = micro_batch_order(len(data), cfg.micro_batch, cfg.seed, start=step * cfg.grad_accum)
    while step < cfg.steps:
        lr_used = None
        for j in range(cfg.grad_accum):
            rows = next(stream)
            if j % n_proc != rank:
                continue
            batch = data[rows].to(accelerator.device)
            with accelerator.accumulate(model):
                loss = prefix.lm_output(model, states, batch, labels=batch).loss
                accelerator.backward(loss)
                running += loss.detach().float() / accum
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(clip_params, cfg.grad_clip)
                    lr_used = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        if lr_used is None:
            raise RuntimeError("accumulation window ended without an optimizer step")  # a bug, not bad input
        step += 1
        log["loss"].append(accelerator.gather(running).mean().item())
        log["lr"].append(lr_used)
        running.zero_()
        bar.update(1)
        bar.set_postfix(loss=f"{log['loss'][-1]:.3f}")
        t = time.perf_counter()
        record_curve(step)
        if on_step is not None and accelerator.is_main_process:
            on_step(step, accelerator.unwrap_model(model))
        if checkpoint and (step % save_every == 0 or step == cfg.steps):
            if accelerator.is_main_process:
                so_far = done_seconds + (t - start) - eval_seconds
                _save_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler, identity,
                                 step, log, so_far)
            accelerator.wait_for_everyone()
        eval_seconds += time.perf_counter() - t
    bar.close()
    train_seconds = done_seconds + time.perf_counter() - start - eval_seconds
    model = _gather_fsdp(accelerator, model, shapes) if fsdp else accelerator.unwrap_model(model)
    model.eval()
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_disable()
    for p in model.parameters():
        p.requires_grad_(False)

    tokens = cfg.steps * cfg.micro_batch * cfg.grad_accum * seq_len
    log.update(
        tokens=tokens,
        train_seconds=train_seconds,
        tokens_per_s=tokens / train_seconds if train_seconds > 0 else float("nan"),
        n_params=n_params(model),
        flops_per_token=flops_per_token,
        # the FLOPs the steps ran: without the prefix's forward where it was read back
        prefix_read_back=states is not None,
        flops_per_token_run=flops_per_token - (prefix_forward_flops(model, cfg.freeze_layers, seq_len) if states else 0.0),
        device=str(accelerator.device),
        threads=torch.get_num_threads(),  # a worker beside another runs on fewer (protocol/workers.py)
        mixed_precision=accelerator.mixed_precision,
    )
    return log
