"""The causal LMs every step shares: building, loading, freezing, fingerprinting.

Pythia is GPT-NeoX, and so is the offline base unless its scale names another family
(families.py: GPT-NeoX, Llama, Mistral, Qwen2); every code path below serves them all, looking
the family up from the model's config. Weights are only ever read from safetensors, and no
remote code is run.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from ..errors import KalavaiError, first_line
from ..families import family_by_names, family_of, get_family
from ..scales import Scale
from . import hub

# Checkpoints are loaded dozens of times per notebook; a progress bar each time buries the narrative.
hf_logging.disable_progress_bar()


def offline_config(scale: Scale, vocab_size: int | None = None) -> PretrainedConfig:
    """The offline base's config, in the scale's family (families.py), scaled down.

    GPT-NeoX (the default) is Pythia-shaped: rotary on 25% of each head, parallel residual,
    untied head. The others take their family's defaults but for the shape, no dropout and the
    head tied or not as the family's small models have it (Qwen2 ties it).
    """
    family = get_family(scale.family)
    return family.config_cls(
        vocab_size=vocab_size or scale.vocab_size,
        hidden_size=scale.d_model,
        num_hidden_layers=scale.n_layers,
        num_attention_heads=scale.n_heads,
        intermediate_size=family.mlp_ratio * scale.d_model,
        max_position_embeddings=scale.seq_len,
        tie_word_embeddings=family.tie_default,
        bos_token_id=0,
        eos_token_id=0,
        **family.offline,
    )


def build_causal_lm(config: PretrainedConfig) -> PreTrainedModel:
    """A freshly initialised causal LM of the config's family (the torch RNG draws its weights)."""
    return family_of(config).causal_lm_cls(config)


def load_causal_lm(
    path_or_id: str | os.PathLike, revision: str | None = None, dtype: torch.dtype | None = None, weights: bool = True
) -> PreTrainedModel:
    """Load a causal LM of a supported family (families.py) from a local folder or the Hub, safetensors only.

    The family is read from the config's model_type; an unsupported one is refused.
    `weights=False`: its configuration only, the model built on the meta device (shapes without
    weights), for the processes of a sharded training that receive their shard from the main one.
    """
    local = Path(path_or_id).exists() or str(path_or_id).startswith(("/", ".", "~"))
    if local and not Path(path_or_id).is_dir():
        raise KalavaiError(f"no such checkpoint folder: {path_or_id}")
    # offline, a Hub model comes from the Hub cache only (the flag is read now, not at import)
    cache_only = not local and hub.offline()
    try:
        raw, _ = PretrainedConfig.get_config_dict(str(path_or_id), revision=revision, local_files_only=cache_only)
        family = family_of(raw)  # plain JSON read: nothing of the folder is imported or run
        if not weights:
            config = family.config_cls.from_pretrained(
                str(path_or_id), revision=revision, trust_remote_code=False, local_files_only=cache_only
            )
            with torch.device("meta"):
                return family.causal_lm_cls(config).to(dtype or torch.float32)
        model = family.causal_lm_cls.from_pretrained(
            str(path_or_id),
            revision=revision,
            dtype=dtype or torch.float32,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=cache_only,
        )
    except KalavaiError as e:  # an unsupported family
        raise KalavaiError(f"cannot load {'folder' if local else 'Hub model'} {path_or_id}: {e}") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:  # missing, or a malformed config / weights
        if local:
            raise KalavaiError(f"cannot load folder {path_or_id}: {first_line(e)}") from None
        # name the cause: a revision without safetensors, a model missing from the offline cache, no connection
        problem = hub.model_problem(str(path_or_id), revision) if isinstance(e, OSError) else None
        raise KalavaiError(f"cannot load Hub model {path_or_id}@{revision}: {problem or first_line(e)}") from None
    return model


def frozen_prefix_names(names, freeze_layers: int, embedding: bool = True, family=None) -> list[str]:
    """Parameter names of the input embedding (unless `embedding` is False) and the first `freeze_layers` blocks.

    `family` (a families.Family, config or model_type): whose names; by default the family whose
    input embedding is among `names`. A tied head is not listed: it is the embedding.
    """
    names = list(names)
    family = family_by_names(names) if family is None else family_of(family)
    return family.frozen_names(names, freeze_layers, embedding)


def freeze_prefix(model: PreTrainedModel, freeze_layers: int, embedding: bool = True) -> list[str]:
    """Freeze the embedding and the first K blocks (the paper's K); returns the frozen names.

    `embedding=False` leaves the embedding trainable: the offline base's pretraining only. A
    tied head is the embedding's own tensor, so it is frozen with it.

    A LoRA model (kalavai_utils.protocol.lora) is left as peft set it: only its adapters, which sit
    in blocks K..L-1, train.
    """
    peft = sys.modules.get("peft")  # a LoRA model exists only if peft was imported
    if peft is not None and isinstance(model, peft.PeftModel):
        return sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    names = [n for n, _ in model.named_parameters()]
    frozen = set(frozen_prefix_names(names, freeze_layers, embedding, family=family_of(model)))
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


def fingerprint(model_or_state: PreTrainedModel | dict[str, torch.Tensor]) -> str:
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
