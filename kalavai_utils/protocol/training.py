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
(`checkpoint_dir`, `save_every`). With KALAVAI_FSDP=1 the processes shard the weights, gradients
and AdamW state instead of each holding all of them (sharding.py).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, replace
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
from ..runtime import prefix, sharding
from ..runtime.perf import prefix_forward_flops, training_flops_per_token
from ..runtime.sharding import set_activation_checkpointing
from ..scales import Scale
from ..settings import settings
from .evaluation import evaluate_domains
from .models import fingerprint, freeze_prefix, n_params, tensor_sha256

CHECKPOINT_FILE = "train_state.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    lr: float
    seed: int
    freeze_layers: int = 0
    # The protocol freezes the input embedding at every K (the authors' code does, K = 0 too);
    # only the base's own pretraining trains it.
    freeze_embedding: bool = True
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
            steps=scale.spec_steps,
            lr=scale.spec_lr,
            seed=seed,
            freeze_layers=scale.freeze_layers,
            weight_decay=scale.weight_decay,
            warmup_frac=scale.warmup_frac,
            grad_clip=scale.grad_clip,
            micro_batch=scale.micro_batch,
            grad_accum=scale.grad_accum,
            bf16=scale.bf16,
            grad_checkpointing=scale.grad_checkpointing,
            curve_every=scale.curve_every,
            curve_max_batches=scale.curve_max_batches,
            eval_batch=scale.eval_batch,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def pretrain(cls, scale: Scale, seed: int = 0) -> "TrainConfig":
        """The offline base's pretraining: same loop, nothing frozen, a higher rate, bigger batches."""
        return cls(
            steps=scale.pretrain_steps,
            lr=scale.pretrain_lr,
            seed=seed,
            freeze_layers=0,
            freeze_embedding=False,
            weight_decay=scale.weight_decay,
            warmup_frac=scale.warmup_frac,
            grad_clip=scale.grad_clip,
            micro_batch=scale.pretrain_batch,
            grad_accum=1,
            bf16=scale.bf16,
            curve_every=max(1, scale.pretrain_steps // 10),
            curve_max_batches=scale.curve_max_batches,
            eval_batch=scale.eval_batch,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def process_shape(cfg: TrainConfig, num_processes: int) -> TrainConfig:
    """The recipe as `num_processes` processes run it: the same global batch of
    `micro_batch x grad_accum` sequences, cut so that each process accumulates as many micro-batches
    as the others. A one-GPU shape such as 8 x 1 becomes 4 x 2 over two processes (each 4 x 1)."""
    if cfg.grad_accum % num_processes == 0:
        return cfg
    total = cfg.micro_batch * cfg.grad_accum
    if total % num_processes:
        raise KalavaiError(
            f"the global batch of {cfg.micro_batch} x {cfg.grad_accum} = {total} sequences cannot be split evenly over "
            f"{num_processes} processes; use a process count dividing {total}"
        )
    return replace(cfg, micro_batch=total // num_processes, grad_accum=num_processes)


def local_grad_accum(cfg: TrainConfig, num_processes: int) -> int:
    """Micro-batches each process accumulates so that all of them together make one global batch."""
    return process_shape(cfg, num_processes).grad_accum // num_processes


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    # sync_with_dataloader=False: an epoch boundary must not cut an accumulation window short
    # The process count is needed before the Accelerator exists; PartialState must read the
    # launcher's CPU flag itself, as the Accelerator would, or a CPU launch looks like one process.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    plugin = GradientAccumulationPlugin(
        num_steps=local_grad_accum(cfg, state.num_processes), sync_with_dataloader=False
    )
    use_bf16 = cfg.bf16 and torch.cuda.is_available()
    return Accelerator(gradient_accumulation_plugin=plugin, mixed_precision="bf16" if use_bf16 else "no")


def compile_requested() -> bool:
    """KALAVAI_COMPILE=1: torch.compile the model before training (an execution choice, like the
    thread count, so it is not part of TrainConfig or any cache key). On an H100 at 410M it nearly
    doubles steady-state throughput after a one-time compile of about a minute."""
    return settings().compile


def check_data(n_chunks: int, cfg: TrainConfig) -> None:
    """Refuse what would make the loop wait forever for a batch that never comes."""
    if cfg.micro_batch < 1 or cfg.grad_accum < 1:
        raise KalavaiError(f"micro_batch ({cfg.micro_batch}) and grad_accum ({cfg.grad_accum}) must be at least 1")
    if n_chunks < cfg.micro_batch:
        raise KalavaiError(
            f"too little training data: {n_chunks} chunks, fewer than one micro-batch of {cfg.micro_batch}"
        )


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
            yield perm[i * micro_batch : (i + 1) * micro_batch]
        position = 0


# ---------------------------------------------------------------- checkpoints


def _checkpoint_identity(model, train_chunks: torch.Tensor, cfg: TrainConfig, eval_sets) -> dict:
    """What a saved state must match to be resumed: same start weights, data, recipe and curves."""
    return {
        "config": cfg.to_dict(),
        "start_weights": fingerprint(model),
        "data": tensor_sha256(train_chunks),
        "eval": sorted(eval_sets or {}),
    }


def _save_checkpoint(
    path: Path, weights: dict, optim: dict, scheduler, identity: dict, step: int, log: dict, train_seconds: float
) -> None:
    """One safetensors file: trained weights, optimizer tensors and RNG; the rest as JSON metadata.

    `weights`: the trainable parameters by name; `optim`: a one-process AdamW `state_dict()`
    (under FSDP gathered into that layout, so the file is the same whatever the process count).
    """
    tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in weights.items()}
    for i, state in optim["state"].items():
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
    meta = {
        "identity": identity,
        "step": step,
        "log": log,
        "train_seconds": train_seconds,
        "param_groups": optim["param_groups"],
        "scheduler": scheduler.state_dict(),
        "rng_python": random.getstate(),
        "rng_numpy": [np_state[0], *np_state[2:]],
    }
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
    if meta["scheduler"]["last_epoch"] != meta["step"]:  # saved before the schedule counted optimizer
        return None  # steps (several processes stepped it once each): its learning rate would be wrong
    return meta, load_file(str(path))


def _checkpoint_weights_and_optim(meta: dict, tensors: dict) -> tuple[dict, dict]:
    """The saved trainable weights by name and the one-process AdamW `state_dict()`."""
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return weights, {"state": state, "param_groups": groups}


def _restore_rng_and_schedule(meta: dict, rng: dict, scheduler) -> None:
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(rng["rng.torch"])
    if torch.cuda.is_available():
        cuda = [
            rng[k]
            for k in sorted((k for k in rng if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
        ]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    version, state_py, gauss = meta["rng_python"]
    random.setstate((version, tuple(state_py), gauss))
    kind, pos, has_gauss, cached = meta["rng_numpy"]
    np.random.set_state((kind, rng["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------- the loop


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
    that step's state is saved. Under `accelerate launch` every process must make the same call
    (same `on_step` presence, curve sets and checkpointing), as these steps involve them all.

    Under FSDP (KALAVAI_FSDP=1, `sharding.py`) the weights are trained in shards and gathered
    back into `model` on the main process, on the CPU, for `on_step`, checkpoints and at the end;
    elsewhere `model` is left without weights (meta device) and may be passed without them.
    """
    if train_chunks.dim() != 2:
        raise KalavaiError(f"training chunks must be [n, seq_len], got shape {tuple(train_chunks.shape)}")
    check_data(len(train_chunks), cfg)
    if save_every < 0 or (save_every and checkpoint_dir is None):
        raise KalavaiError("save_every needs a checkpoint_dir (and must not be negative)")
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if (checkpoint_dir is not None and save_every) else None

    set_seed(cfg.seed)
    accelerator = make_accelerator(cfg)
    if accelerator.distributed_type == DistributedType.FSDP or parse_flag_from_env("ACCELERATE_USE_FSDP"):
        # (on CPU processes accelerate would even fall back to DDP without a word)
        raise KalavaiError(
            "accelerate's FSDP plugin is not used here: launch with accelerate_configs/multi_gpu.yaml "
            "and KALAVAI_FSDP=1, which shards with torch's FSDP2 (see accelerate_configs/README.md)"
        )
    fsdp = sharding.fsdp_requested()
    n_proc, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    accum = local_grad_accum(cfg, n_proc)
    # With several processes the main one decides which saved state is this training's (under
    # FSDP the others may hold no weights; under DDP theirs are replaced by the main one's).
    identity = _checkpoint_identity(model, train_chunks, cfg, eval_sets) if checkpoint and main else None
    shape = process_shape(cfg, n_proc)  # the stream's micro-batches (the same global batches)
    frozen = freeze_prefix(model, cfg.freeze_layers, embedding=cfg.freeze_embedding)
    seq_len = train_chunks.shape[1]
    flops_per_token = training_flops_per_token(model, seq_len)
    if cfg.grad_checkpointing:
        set_activation_checkpointing(model, True)
    trained = sharding.shard(model, accelerator.device, n_proc, main, cfg.grad_checkpointing) if fsdp else model
    if compile_requested():
        trained.compile()  # in place: the module, its names and its state dict stay as they are
    # The frozen prefix's output, read back for chunks it has already seen (prefix.py: exact,
    # CPU and one process only; a compiled or checkpointed model runs its own forward).
    states = (
        prefix.for_model(model, cfg.freeze_layers)
        if accelerator.device.type == "cpu" and n_proc == 1 and not compile_requested() and not cfg.grad_checkpointing
        else None
    )
    params = [p for p in trained.parameters() if p.requires_grad]
    # On a GPU the per-tensor update loop is launch-bound (measured at 410M on an H100: see
    # results/410m/README.md); the fused kernel does the same arithmetic in one launch.
    raw_optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=accelerator.device.type == "cuda"
    )
    # Stepped here once per optimizer step (accelerate's wrapper would step it once per process),
    # so its saved state is the same whatever the number of processes.
    scheduler = get_scheduler(
        "cosine", raw_optimizer, num_warmup_steps=int(cfg.warmup_frac * cfg.steps), num_training_steps=cfg.steps
    )
    data = train_chunks.long()
    if fsdp:  # sharded already: accelerate handles the optimizer, not the model
        optimizer = accelerator.prepare(raw_optimizer)
    else:
        trained, optimizer = accelerator.prepare(trained, raw_optimizer)

    log = {"config": cfg.to_dict(), "loss": [], "lr": [], "curve": [], "frozen_tensors": len(frozen)}
    step, done_seconds = 0, 0.0
    saved = _read_checkpoint(checkpoint, identity) if identity is not None else None
    found = saved is not None
    if checkpoint and n_proc > 1:  # the main process found a state or not; every process resumes from what it sends
        sent = [None if saved is None else (saved[0], {k: v for k, v in saved[1].items() if k.startswith("rng.")})]
        torch.distributed.broadcast_object_list(sent, src=0)
        found = sent[0] is not None
        if found and not main and not fsdp:  # the file the main process chose (one machine: the same disk)
            saved = sent[0][0], load_file(str(checkpoint))
    if fsdp and checkpoint:  # the main process sends the weights and optimizer state to the others' shards
        weights, optim = _checkpoint_weights_and_optim(*saved) if saved is not None else ({}, {})
        if found:
            sharding.load_train_state(trained, raw_optimizer, weights, optim)
        saved = sent[0]  # (meta, RNG) on every process
    elif saved is not None:
        weights, optim = _checkpoint_weights_and_optim(*saved)
        with torch.no_grad():
            for n, p in accelerator.unwrap_model(trained).named_parameters():
                if p.requires_grad:
                    p.copy_(weights[n])
        optimizer.load_state_dict(optim)
    weights = optim = None  # the file's tensors, freed
    if saved is not None:
        meta, rng = saved
        _restore_rng_and_schedule(meta, rng, scheduler)
        step, done_seconds, log = meta["step"], meta["train_seconds"], meta["log"]
        log.setdefault("resumed_at", []).append(step)
        saved = rng = None
    log.pop("fsdp_shard_fraction", None)  # a resumed state may come from another process count
    if fsdp:
        log["fsdp_shard_fraction"] = sharding.local_fraction(trained)

    def plain_model() -> torch.nn.Module:
        """The caller's model with the weights trained so far (on the main process under FSDP)."""
        if fsdp:
            sharding.gather_into(trained, model, main)
            return model
        return accelerator.unwrap_model(trained)

    def record_curve(step: int) -> None:
        if eval_sets and cfg.curve_every and (step % cfg.curve_every == 0 or step == cfg.steps):
            t = time.perf_counter()
            # under FSDP the sharded model runs it on every process (they gather each unit together)
            unwrapped = trained if fsdp else accelerator.unwrap_model(trained)
            with accelerator.autocast():  # bf16 on GPU, as the unwrapped plain model's own forward
                losses = evaluate_domains(unwrapped, eval_sets, cfg.eval_batch, cfg.curve_max_batches, states=states)
            log["curve"].append({"step": step, "losses": losses})
            # kept apart from train_seconds, so that what the curves cost is seen (benchmark.run_phases)
            log["curve_seconds"] = log.get("curve_seconds", 0.0) + time.perf_counter() - t

    if step == 0:
        record_curve(0)
    trained.train()
    running, eval_seconds = torch.zeros((), device=accelerator.device), 0.0
    start = time.perf_counter()
    if states is not None and step < cfg.steps:  # the chunks this training will read, computed ahead in
        # large batches (counted in train_seconds)
        ahead = micro_batch_order(len(data), shape.micro_batch, cfg.seed, start=step * shape.grad_accum)
        states.prefill(data[torch.cat([next(ahead) for _ in range((cfg.steps - step) * shape.grad_accum)]).unique()])
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=desc,
        disable=None if accelerator.is_local_main_process else True,
        leave=False,
    )
    # one global stream of micro-batches; process r takes every P-th, so P processes together
    # see exactly the micro-batches one process would
    stream = micro_batch_order(len(data), shape.micro_batch, cfg.seed, start=step * shape.grad_accum)
    while step < cfg.steps:
        lr_used = None
        for j in range(shape.grad_accum):
            rows = next(stream)
            if j % n_proc != rank:
                continue
            batch = data[rows].to(accelerator.device)
            with accelerator.accumulate(trained), accelerator.autocast():
                # (accelerate's prepare() puts autocast in a plain model's forward; a sharded one it never saw)
                loss = prefix.lm_output(trained, states, batch, labels=batch).loss
                accelerator.backward(loss)
                running += loss.detach().float() / accum
                if accelerator.sync_gradients:
                    # FSDP's gradients are DTensors: accelerate's clip takes the norm over all shards
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                    lr_used = optimizer.param_groups[0]["lr"]
                optimizer.step()  # accelerate's optimizer steps only at the end of the window
                if accelerator.sync_gradients:
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
        if on_step is not None:
            shown = plain_model()  # under FSDP a gather, which every process joins
            if main:
                on_step(step, shown)
        if checkpoint and (step % save_every == 0 or step == cfg.steps):
            if fsdp:
                weights, optim = sharding.full_train_state(trained, raw_optimizer)
            else:
                weights = {n: p for n, p in accelerator.unwrap_model(trained).named_parameters() if p.requires_grad}
                optim = optimizer.state_dict()
            if main:
                so_far = done_seconds + (t - start) - eval_seconds
                _save_checkpoint(checkpoint, weights, optim, scheduler, identity, step, log, so_far)
            weights = optim = None  # under FSDP a full copy on the main process: not kept between saves
            accelerator.wait_for_everyone()
        eval_seconds += time.perf_counter() - t
    bar.close()
    train_seconds = done_seconds + time.perf_counter() - start - eval_seconds
    model = plain_model()
    if fsdp and not main:
        sharding.leave_without_weights(model)
    model.eval()
    if cfg.grad_checkpointing:
        set_activation_checkpointing(model, False)
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
        flops_per_token_run=flops_per_token
        - (prefix_forward_flops(model, cfg.freeze_layers, seq_len) if states else 0.0),
        device=str(accelerator.device),
        threads=torch.get_num_threads(),  # a worker beside another runs on fewer (runtime/workers.py)
        mixed_precision=accelerator.mixed_precision,
    )
    return log
