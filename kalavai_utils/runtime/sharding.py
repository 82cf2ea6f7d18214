"""FSDP for the one training loop: each process holds a shard of every weight, gradient and AdamW moment.

Switched on with KALAVAI_FSDP=1 under `accelerate launch` with 2 or more processes (see
accelerate_configs/README.md): an execution choice, like KALAVAI_COMPILE, that changes no result
beyond the order of float sums, so it is no part of TrainConfig or any cache key.

Sharding uses torch's own FSDP2 (`fully_shard`, one unit per transformer block plus the root)
and its distributed state-dict API, which run on GPUs (NCCL) and on CPU processes (gloo) alike;
accelerate's FSDP plugin builds FSDP only on an accelerator, so a loop built on it could never
be checked on a CPU machine or in CI. accelerate still launches the processes, accumulates, clips
and steps the optimizer.

The caller's model is never sharded. A model of the same class is built on the meta device,
sharded, and given the caller's weights from the main process alone (`broadcast_from_rank0`):
the other processes may pass a model whose weights are on the meta device, so a 6.9B base sits
in CPU memory once per machine, not once per process. At the end (and for `on_step` or a
checkpoint) the full weights are gathered back into the caller's model on the main process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import PreTrainedModel

from ..errors import KalavaiError
from ..settings import settings

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered on the main process, in CPU memory
FROM_MAIN = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)


def set_activation_checkpointing(model, on: bool) -> None:
    """Activation (gradient) checkpointing on or off.

    Later transformers 5.x releases renamed gradient_checkpointing_* to activation_checkpointing_*
    and warn that the old names go in v6; pyproject allows every 5.x, so the old names are kept
    for the releases that lack the new ones.
    """
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable()
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()


def fsdp_requested() -> bool:
    return settings().fsdp


def refuse_unsharded(scale_name: str, processes: int | None = None) -> None:
    """A scale whose specialists do not fit one device: one line unless this training is sharded."""
    if not fsdp_requested() or (processes is not None and processes < 2):
        raise KalavaiError(
            f"at scale {scale_name} the specialists train only sharded over several GPUs: run "
            f"`KALAVAI_FSDP=1 ./run_all.sh --scale {scale_name} --processes 4` (accelerate_configs/README.md)"
        )


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks, one FSDP unit each: the classes transformers marks as never split."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise KalavaiError(f"FSDP: {type(model).__name__} names no transformer block class (_no_split_modules)")
    return blocks


def shard(
    model: torch.nn.Module, device: torch.device, num_processes: int, is_main: bool, checkpointing: bool = False
) -> torch.nn.Module:
    """A sharded copy of `model`, holding the main process's weights and frozen where `model` is.

    A collective: every process calls it. Only the main process's `model` needs weights.
    """
    if num_processes < 2:
        raise KalavaiError("KALAVAI_FSDP=1 needs 2 or more processes (accelerate launch --num_processes N)")
    if not isinstance(model, PreTrainedModel):  # a LoRA (peft) model, say
        raise KalavaiError(f"FSDP shards full fine-tuning of Hugging Face models; got {type(model).__name__}")
    with torch.device("meta"):
        sharded = type(model)(model.config).to(next(model.parameters()).dtype)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for n, p in sharded.named_parameters():
        p.requires_grad_(n in trainable)
    if checkpointing:
        set_activation_checkpointing(sharded, True)
    mesh = init_device_mesh(device.type, (num_processes,))
    # Weights gathered and gradients reduced in fp32; bf16 comes from the caller's autocast, as
    # for an unsharded model, so sharding changes the arithmetic in nothing but the order of sums.
    for block in _blocks(sharded):
        fully_shard(block, mesh=mesh)
    fully_shard(sharded, mesh=mesh)
    sharded.to_empty(device=device)
    set_model_state_dict(sharded, model.state_dict() if is_main else {}, options=FROM_MAIN)
    # Buffers outside the state dict (the rotary frequencies) were left empty by to_empty: the
    # main process's copies, sent to all.
    persistent = set(sharded.state_dict())
    own = dict(model.named_buffers()) if is_main else {}
    for name, buf in sharded.named_buffers():
        if name not in persistent:
            if is_main:
                buf.copy_(own[name])
            dist.broadcast(buf, src=0)
    return sharded


def local_fraction(sharded: torch.nn.Module) -> float:
    """The share of the model's parameters this process holds (1/P, up to uneven splits)."""
    local = sum(p.to_local().numel() for p in sharded.parameters())
    return local / sum(p.numel() for p in sharded.parameters())


def gather_into(sharded: torch.nn.Module, model: torch.nn.Module, is_main: bool) -> None:
    """The full trained weights into the caller's `model` on the main process (a collective)."""
    full = get_model_state_dict(sharded, options=FULL)
    if is_main:
        model.load_state_dict(full)


def leave_without_weights(model: torch.nn.Module) -> None:
    """Every parameter of `model` on the meta device: shapes without weights, so using it fails loudly."""
    for module in model.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            setattr(module, name, torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False))


def full_train_state(sharded: torch.nn.Module, optimizer) -> tuple[dict, dict]:
    """Trained weights and AdamW state, gathered on the main process (a collective; empty elsewhere).

    In the layout of a one-process optimizer's `state_dict()` (parameters numbered in the order of
    the trainable parameters), so a checkpoint is the same file whatever the number of processes.
    """
    weights = get_model_state_dict(sharded, options=FULL)
    optim = get_optimizer_state_dict(sharded, optimizer, options=FULL)
    if not optim:  # not the main process
        return {}, {}
    names = [n for n, p in sharded.named_parameters() if p.requires_grad]
    weights = {n: weights[n] for n in names}
    index = {n: i for i, n in enumerate(names)}
    return weights, {
        "state": {index[n]: s for n, s in optim["state"].items()},
        "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in optim["param_groups"]],
    }


def load_train_state(sharded: torch.nn.Module, optimizer, weights: dict, optim: dict) -> None:
    """The inverse of `full_train_state`, sent from the main process (the others pass empty dicts)."""
    names = [n for n, p in sharded.named_parameters() if p.requires_grad]
    if weights.keys() != set(names) and (weights or optim):  # a bug, not bad input: the identity matched
        raise RuntimeError(
            f"saved weights do not match the trainable parameters: {sorted(set(names) ^ weights.keys())[:5]}"
        )
    if optim:
        optim = {
            "state": {names[i]: s for i, s in optim["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optim["param_groups"]],
        }
    # strict=False: the weights are the trainable ones only; the frozen ones are in place already
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    set_model_state_dict(sharded, weights, options=options)
    set_optimizer_state_dict(sharded, optimizer, optim, options=options)
