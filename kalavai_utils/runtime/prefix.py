"""The frozen prefix's output for each chunk, computed once and then read back (CPU runs).

Every specialist freezes the base's embedding and first K blocks, so a chunk's output after
them is the same in every specialist and in the fused model, at every step that reads the
chunk again. And chunks are read again and again: notebook 02's three seeds and most of
notebooks 04 and 05's cooperatives train on the same domains' chunks, and every router
step and evaluation runs the prefix over chunks already seen. At `tiny` the prefix is 3 of
4 blocks: about 30% of a training step and of a fused forward.

`PrefixStates` keeps each chunk's output the first time it is computed, keyed on the
prefix's own weights (so a different base, K or dtype never shares) and on the chunk's
tokens. Training (`lm_output`), router training and evaluation then start from block K.

Exact, not approximate: on a CPU a chunk's output does not depend on the other chunks in
its batch nor on the batch size (tests/test_prefix.py checks it), so every result is bit for
bit what running the prefix each time gives. Used only on a CPU, in one process, without
dropout, and within a memory budget: KALAVAI_PREFIX_CACHE_GB (default 4; 0 turns it off).
Beyond the budget, rows are computed as before and not kept.
"""

from __future__ import annotations

import copy
import hashlib
from contextlib import contextmanager

import torch
from torch import nn
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..families import family_of
from ..settings import PREFIX_CACHE_ENV, override, settings

BUDGET_ENV = PREFIX_CACHE_ENV  # the variable's name (settings.py reads it)
_STORES: dict[str, "PrefixStates"] = {}  # one per distinct prefix, shared by every model that has it
_kept_bytes = 0
# What, besides the tensors, decides a block's output in any family (bookkeeping keys left out,
# so a specialist's config and the fused model's copy of it share a store).
_ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "rotary_pct",
    "partial_rotary_factor",
    "rope_parameters",
    "rope_theta",
    "rotary_emb_base",
    "use_parallel_residual",
    "layer_norm_eps",
    "attention_bias",
    "max_position_embeddings",
    "num_key_value_heads",
    "head_dim",
    "rms_norm_eps",
    "mlp_bias",
    "sliding_window",
    "layer_types",
)

_MASK_BUILDERS = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}


def run_layers(family, layers, x, mask, position_ids, rope, cache=None):
    """Blocks of `family` in order, each called as its decoder calls it (families.Family.cache_kwarg);
    `mask` is one mask for every block, or {block index: mask} (layer_masks)."""
    for layer in layers:
        x = layer(
            x,
            attention_mask=mask[family.layer_index(layer)] if isinstance(mask, dict) else mask,
            position_ids=position_ids,
            position_embeddings=rope,
            use_cache=cache is not None,
            **{family.cache_kwarg: cache},
        )
    return x


def layer_masks(config, x, attention_mask=None, cache=None, position_ids=None):
    """The blocks' attention mask(s), as the family's decoder builds them: one mask when every block
    reads the same kind (causal, or sliding-window), else {block index: its kind's mask}."""
    kinds = family_of(config).layer_types(config)
    masks = {
        kind: _MASK_BUILDERS[kind](
            config=config,
            inputs_embeds=x,
            attention_mask=attention_mask,
            past_key_values=cache,
            position_ids=position_ids,
        )
        for kind in dict.fromkeys(kinds)
    }
    return next(iter(masks.values())) if len(masks) == 1 else {i: masks[kind] for i, kind in enumerate(kinds)}


def layer_inputs(config, rotary_emb, x, attention_mask=None, position_ids=None, cache=None, seen: int = 0):
    """What every block reads besides x, built as the family's decoder (GPTNeoXModel.forward,
    LlamaModel.forward...) builds it: (mask, position_ids, rope).

    (Without a cache and attention_mask, transformers reads jumps in explicit position_ids as
    packed-sequence boundaries, exactly as the decoders do.)
    """
    if position_ids is None:
        position_ids = torch.arange(seen, seen + x.shape[1], device=x.device).unsqueeze(0)
    mask = layer_masks(config, x, attention_mask, cache, position_ids)
    return mask, position_ids, rotary_emb(x, position_ids=position_ids)


class FrozenPrefix(nn.Module):
    """A copy of the embedding and blocks 0..K-1: input ids -> the input of block K."""

    def __init__(self, embed_in, emb_dropout, layers, rotary_emb, config):
        super().__init__()
        self.family = family_of(config)
        self.embed_in, self.emb_dropout = copy.deepcopy(embed_in), copy.deepcopy(emb_dropout)
        self.layers, self.rotary_emb = copy.deepcopy(nn.ModuleList(layers)), copy.deepcopy(rotary_emb)
        self.config = config
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.emb_dropout(self.embed_in(input_ids))
        return run_layers(self.family, self.layers, x, *layer_inputs(self.config, self.rotary_emb, x))


class PrefixStates:
    """The prefix's output per chunk: `states(input_ids [B, T])` -> [B, T, d], computed only for chunks not seen yet."""

    def __init__(self, prefix: FrozenPrefix, k: int):
        self.prefix, self.k = prefix, k
        self.rows: dict[bytes, torch.Tensor] = {}

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        keys, fresh = self._compute_missing(input_ids)
        return torch.stack([self.rows[key] if key in self.rows else fresh[key] for key in keys])

    def prefill(self, chunks: torch.Tensor, batch: int = 64) -> None:
        """Compute the chunks not seen yet ahead of use, `batch` at a time (cheaper per chunk than
        a training micro-batch; the values are the same). Stops when the budget is spent."""
        for i in range(0, len(chunks), batch):
            if _kept_bytes >= budget_bytes():
                return
            self._compute_missing(chunks[i : i + batch])

    def _compute_missing(self, input_ids: torch.Tensor) -> tuple[list[bytes], dict]:
        global _kept_bytes
        keys = [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in input_ids.long()]
        missing = [i for i, key in enumerate(keys) if key not in self.rows]
        fresh = {}
        if missing:
            for i, row in zip(missing, self.prefix(input_ids[missing])):
                fresh[keys[i]] = row
                if _kept_bytes + row.nbytes <= budget_bytes():
                    self.rows[keys[i]] = row.clone()
                    _kept_bytes += row.nbytes
        return keys, fresh


def budget_bytes() -> int:
    return int(settings().prefix_cache_gb * 2**30)


@contextmanager
def budget(gb: float):
    """Run with this budget (0: every prefix computed, as without the cache); the benchmark measures both ways."""
    with override(prefix_cache_gb=gb):
        yield


def prefix_key(embed_in, layers, rotary_emb, config) -> str:
    """Hash of everything the prefix's output depends on: its tensors (bytes, dtypes) and architecture."""
    shape = {k: repr(getattr(config, k, None)) for k in _ARCHITECTURE_KEYS}
    h = hashlib.sha256(f"{config._attn_implementation}:{len(layers)}:{sorted(shape.items())}".encode())
    named = [
        *embed_in.state_dict(prefix="embed_in.").items(),
        *nn.ModuleList(layers).state_dict(prefix="layers.").items(),
        *rotary_emb.named_buffers(),
    ]
    for name, t in named:
        t = t.detach().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _shared(embed_in, emb_dropout, layers, rotary_emb, config) -> PrefixStates:
    """The store of this prefix, made (with its own copy of the modules) the first time it is asked for."""
    key = prefix_key(embed_in, layers, rotary_emb, config)
    if key not in _STORES:
        _STORES[key] = PrefixStates(FrozenPrefix(embed_in, emb_dropout, layers, rotary_emb, config), len(layers))
    return _STORES[key]


def usable(config, device, k: int) -> bool:
    """The cache applies: K > 0, on a CPU, no dropout (which would make outputs random), a budget."""
    return (
        k > 0
        and torch.device(device).type == "cpu"
        and budget_bytes() > 0
        and not getattr(config, "hidden_dropout", 0.0)
        and not getattr(config, "attention_dropout", 0.0)
    )


def causal_lm(model):
    """The causal LM inside `model` (a LoRA model wraps it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def for_model(model, k: int) -> PrefixStates | None:
    """The shared store for a causal LM's first `k` blocks, or None where it does not apply."""
    lm = causal_lm(model)
    family = family_of(lm.config)
    embed, decoder = family.embedding_of(lm), family.decoder_of(lm)
    if not usable(lm.config, embed.weight.device, k):
        return None
    return _shared(embed, family.embed_dropout_of(lm), family.blocks_of(lm)[:k], family.rotary_of(lm), decoder.config)


def for_fused(fused) -> PrefixStates | None:
    """The shared store for a FusedModel's shared prefix (the same as its specialists'), or None."""
    k = fused.config.freeze_layers
    if not usable(fused.specialist_config, fused.embed_in.weight.device, k):
        return None
    fused.specialist_config._attn_implementation = fused.config._attn_implementation
    return _shared(fused.embed_in, fused.emb_dropout, fused.shared_layers, fused.rotary_emb, fused.specialist_config)


def lm_output(model, states: PrefixStates | None, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
    """`model(input_ids=..., labels=..., use_cache=False)`, from block K on when `states` is given.

    With `states`, the prefix's output is read from them and the rest is the same computation as
    the causal LM's forward after block K-1 (its mask, positions, rotary, blocks, final norm, head
    and loss function), so the loss and its gradient are bit for bit the plain forward's.
    """
    if states is None:
        return model(input_ids=input_ids, labels=labels, use_cache=False)
    lm = causal_lm(model)
    family = family_of(lm.config)
    config = family.decoder_of(lm).config
    x = states(input_ids)
    hidden = run_layers(family, family.blocks_of(lm)[states.k :], x, *layer_inputs(config, family.rotary_of(lm), x))
    logits = family.head_of(lm)(family.final_norm_of(lm)(hidden))
    loss = None if labels is None else lm.loss_function(logits=logits, labels=labels, vocab_size=lm.config.vocab_size)
    return CausalLMOutputWithPast(loss=loss, logits=logits)
