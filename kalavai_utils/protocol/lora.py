"""LoRA specialists (the paper's ablation "LoRA instead of full fine-tuning"), with peft.

A LoRA specialist trains low-rank adapters on the blocks a full specialist would train
(K..L-1; the embedding and the first K blocks stay frozen, and so does everything else of
the base), then merges them into its weights (`merge_and_unload`) BEFORE it is handed in:
the submission is an ordinary full checkpoint, so verification, fusion and evaluation stay
the one path every specialist takes.
"""

from __future__ import annotations

import warnings

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ..errors import KalavaiError
from ..families import DEFAULT_FAMILY, family_of, get_family


def lora_spec(rank: int, alpha: float | None = None, dropout: float = 0.0, family: str = DEFAULT_FAMILY) -> dict:
    """A JSON-able LoRA recipe (it goes into the cached configuration); alpha defaults to 2 x rank.

    Its targets are every linear layer of a block of the `family` (families.py; GPT-NeoX's:
    attention in/out, MLP in/out)."""
    if rank < 1:
        raise KalavaiError(f"LoRA rank must be at least 1, got {rank}")
    return {
        "rank": int(rank),
        "alpha": float(2 * rank if alpha is None else alpha),
        "dropout": float(dropout),
        "targets": list(get_family(family).lora_targets),
    }


def add_adapters(model, spec: dict, freeze_layers: int, seed: int) -> PeftModel:
    """Wrap `model` (in place) with adapters on blocks freeze_layers..L-1 only; seeded adapter init."""
    n_layers = model.config.num_hidden_layers
    if not 0 <= freeze_layers < n_layers:
        raise KalavaiError(f"LoRA needs at least one unfrozen block: freeze_layers={freeze_layers} of {n_layers}")
    config = LoraConfig(
        r=spec["rank"],
        lora_alpha=spec["alpha"],
        lora_dropout=spec["dropout"],
        target_modules=list(spec["targets"]),
        layers_to_transform=list(range(freeze_layers, n_layers)),
        layers_pattern=family_of(model).layers,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)  # the adapters' random init, without moving the caller's RNG
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`; nothing to act on here
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def is_lora(model) -> bool:
    return isinstance(model, PeftModel)


def merge(model: PeftModel):
    """The plain model with the adapters folded into its weights (what a LoRA contributor hands in)."""
    return model.merge_and_unload()
