"""The one training loop: base pretraining, specialists, the monolithic baseline, ablations.

Written on `accelerate` in the manner of Hugging Face's `run_clm_no_trainer.py`, so
`accelerate launch` spreads one run over several GPUs unchanged. Full fine-tuning with the
input embedding and the first K blocks frozen; AdamW; linear warmup then cosine to zero
(the `transformers` scheduler); gradient clipping; gradient accumulation; a seeded data
order; bf16 autocast on GPU, fp32 on CPU.

The logged loss is the true mean over the micro-batches of each optimizer step (the
authors' log summed them, inflating it by the accumulation factor).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin, set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm
from transformers import get_scheduler

from .evaluation import evaluate_domains
from .models import freeze_prefix, n_params
from .perf import training_flops_per_token
from .scales import Scale


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
    grad_accum: int = 4
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


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    # sync_with_dataloader=False: an epoch boundary must not cut an accumulation window short
    plugin = GradientAccumulationPlugin(num_steps=cfg.grad_accum, sync_with_dataloader=False)
    use_bf16 = cfg.bf16 and torch.cuda.is_available()
    return Accelerator(gradient_accumulation_plugin=plugin, mixed_precision="bf16" if use_bf16 else "no")


def train_causal_lm(
    model,
    train_chunks: torch.Tensor,
    cfg: TrainConfig,
    eval_sets: dict[str, torch.Tensor] | None = None,
    desc: str = "train",
    on_step: Callable[[int, torch.nn.Module], None] | None = None,
) -> dict:
    """Train `model` in place on `train_chunks` ([n, seq_len] token ids) and return its log.

    The log holds the loss and learning rate of every optimizer step, held-out curves
    (every `cfg.curve_every` steps, including step 0) on `eval_sets`, and throughput.
    """
    set_seed(cfg.seed)
    accelerator = make_accelerator(cfg)
    frozen = freeze_prefix(model, cfg.freeze_layers)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Counted in optimizer steps; accelerate steps the scheduler once per process.
    scheduler = get_scheduler(
        "cosine", optimizer,
        num_warmup_steps=int(cfg.warmup_frac * cfg.steps) * accelerator.num_processes,
        num_training_steps=cfg.steps * accelerator.num_processes,
    )
    order = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(TensorDataset(train_chunks.long()), batch_size=cfg.micro_batch, shuffle=True,
                        generator=order, drop_last=True)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    log = {"config": cfg.to_dict(), "loss": [], "lr": [], "curve": [], "frozen_tensors": len(frozen)}

    def record_curve(step: int) -> None:
        if eval_sets and cfg.curve_every and (step % cfg.curve_every == 0 or step == cfg.steps):
            unwrapped = accelerator.unwrap_model(model)
            losses = evaluate_domains(unwrapped, eval_sets, cfg.eval_batch, cfg.curve_max_batches)
            log["curve"].append({"step": step, "losses": losses})

    record_curve(0)
    model.train()
    step, running, eval_seconds = 0, torch.zeros((), device=accelerator.device), 0.0
    start = time.perf_counter()
    bar = tqdm(total=cfg.steps, desc=desc, disable=not accelerator.is_local_main_process, leave=False)
    while step < cfg.steps:
        for (batch,) in loader:
            with accelerator.accumulate(model):
                loss = model(input_ids=batch, labels=batch, use_cache=False).loss
                accelerator.backward(loss)
                running += loss.detach().float() / cfg.grad_accum
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            log["loss"].append(accelerator.gather(running).mean().item())
            log["lr"].append(scheduler.get_last_lr()[0])
            running.zero_()
            bar.update(1)
            bar.set_postfix(loss=f"{log['loss'][-1]:.3f}")
            t = time.perf_counter()
            record_curve(step)
            if on_step is not None:
                on_step(step, accelerator.unwrap_model(model))
            eval_seconds += time.perf_counter() - t
            if step >= cfg.steps:
                break
    bar.close()
    train_seconds = time.perf_counter() - start - eval_seconds
    model = accelerator.unwrap_model(model)
    model.eval()
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_disable()
    for p in model.parameters():
        p.requires_grad_(False)

    seq_len = train_chunks.shape[1]
    tokens = cfg.steps * cfg.micro_batch * cfg.grad_accum * seq_len * accelerator.num_processes
    conf = model.config
    log.update(
        tokens=tokens,
        train_seconds=train_seconds,
        tokens_per_s=tokens / train_seconds if train_seconds > 0 else float("nan"),
        n_params=n_params(model),
        flops_per_token=training_flops_per_token(n_params(model), conf.num_hidden_layers, seq_len, conf.hidden_size),
        device=str(accelerator.device),
        mixed_precision=accelerator.mixed_precision,
    )
    return log
