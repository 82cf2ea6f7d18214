"""The GPT-NeoX models every step shares: building, loading, freezing, fingerprinting.

Pythia is GPT-NeoX, so the offline base is a small `GPTNeoXForCausalLM` and every
code path below serves both. Weights are only ever read from safetensors, and no
remote code is run.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.utils import logging as hf_logging

from ..errors import KalavaiError, first_line
from ..scales import Scale
from . import hub

EMBED_PREFIX = "gpt_neox.embed_in."

# Checkpoints are loaded dozens of times per notebook; a progress bar each time buries the narrative.
hf_logging.disable_progress_bar()


def offline_config(scale: Scale, vocab_size: int | None = None) -> GPTNeoXConfig:
    """A Pythia-shaped config, scaled down (Pythia: rotary on 25% of each head, parallel residual, untied head)."""
    return GPTNeoXConfig(
        vocab_size=vocab_size or scale.vocab_size,
        hidden_size=scale.d_model,
        num_hidden_layers=scale.n_layers,
        num_attention_heads=scale.n_heads,
        intermediate_size=4 * scale.d_model,
        max_position_embeddings=scale.seq_len,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )


def load_causal_lm(
    path_or_id: str | os.PathLike, revision: str | None = None, dtype: torch.dtype | None = None, weights: bool = True
) -> GPTNeoXForCausalLM:
    """Load a GPT-NeoX causal LM from a local folder or the Hub, safetensors only.

    `weights=False`: its configuration only, the model built on the meta device (shapes without
    weights), for the processes of a sharded training that receive their shard from the main one.
    """
    local = Path(path_or_id).exists() or str(path_or_id).startswith(("/", ".", "~"))
    if local and not Path(path_or_id).is_dir():
        raise KalavaiError(f"no such checkpoint folder: {path_or_id}")
    # offline, a Hub model comes from the Hub cache only (the flag is read now, not at import)
    cache_only = not local and hub.offline()
    try:
        if not weights:
            config = GPTNeoXConfig.from_pretrained(
                str(path_or_id), revision=revision, trust_remote_code=False, local_files_only=cache_only
            )
            with torch.device("meta"):
                return GPTNeoXForCausalLM(config).to(dtype or torch.float32)
        model = GPTNeoXForCausalLM.from_pretrained(
            str(path_or_id),
            revision=revision,
            dtype=dtype or torch.float32,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=cache_only,
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:  # missing, or a malformed config / weights
        if local:
            raise KalavaiError(f"cannot load folder {path_or_id}: {first_line(e)}") from None
        # name the cause: a revision without safetensors, a model missing from the offline cache, no connection
        problem = hub.model_problem(str(path_or_id), revision) if isinstance(e, OSError) else None
        raise KalavaiError(f"cannot load Hub model {path_or_id}@{revision}: {problem or first_line(e)}") from None
    return model


def frozen_prefix_names(names, freeze_layers: int, embedding: bool = True) -> list[str]:
    """Parameter names of the input embedding (unless `embedding` is False) and the first `freeze_layers` blocks."""
    prefixes = ((EMBED_PREFIX,) if embedding else ()) + tuple(f"gpt_neox.layers.{i}." for i in range(freeze_layers))
    return sorted(n for n in names if n.startswith(prefixes))


def freeze_prefix(model: GPTNeoXForCausalLM, freeze_layers: int, embedding: bool = True) -> list[str]:
    """Freeze the embedding and the first K blocks (the paper's K); returns the frozen names.

    `embedding=False` leaves the embedding trainable: the offline base's pretraining only.

    A LoRA model (kalavai_utils.protocol.lora) is left as peft set it: only its adapters, which sit
    in blocks K..L-1, train.
    """
    peft = sys.modules.get("peft")  # a LoRA model exists only if peft was imported
    if peft is not None and isinstance(model, peft.PeftModel):
        return sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    frozen = set(frozen_prefix_names([n for n, _ in model.named_parameters()], freeze_layers, embedding))
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    return sorted(frozen)


def tensor_sha256(t: torch.Tensor) -> str:
    """Hash of a tensor's dtype, shape and exact bytes."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def state_dict_hashes(state_dict: dict[str, torch.Tensor], names=None) -> dict[str, str]:
    """name -> tensor_sha256 of each tensor (all, or `names`): weights, or any named tensors such as held-out chunks."""
    keys = sorted(state_dict) if names is None else sorted(names)
    return {k: tensor_sha256(state_dict[k]) for k in keys}


def fingerprint(model_or_state: GPTNeoXForCausalLM | dict[str, torch.Tensor]) -> str:
    """The identity of a set of weights: one hash over every tensor's name and hash."""
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    h = hashlib.sha256()
    for name, digest in state_dict_hashes(state).items():
        h.update(f"{name}={digest}\n".encode())
    return h.hexdigest()


def for_inference(model: torch.nn.Module, bf16: bool = False) -> torch.nn.Module:
    """Move a model to the GPU when there is one (in bf16 if the scale trains in bf16), frozen, eval mode.

    Submissions are verified and loaded on the CPU; evaluation and router fitting run here.
    """
    if torch.cuda.is_available():
        model = model.to("cuda", torch.bfloat16 if bf16 else None)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def inference_precision(bf16: bool) -> str:
    """Where and in what precision `for_inference` puts a model: every number of a report, the base's
    included, is computed there, so that one base gives one loss."""
    if torch.cuda.is_available():
        return "cuda-bf16" if bf16 else "cuda-fp32"
    return "cpu-fp32"


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
