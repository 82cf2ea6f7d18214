"""Model families as data: where each decoder keeps its parts, and how its blocks are called.

In the manner of mergekit's architecture definitions, one table (`FAMILIES`) says, for every
decoder family the protocol supports, what the rest of the package needs to know about it:
the module path and tensor-name prefix of the decoder, input embedding, block list, final
norm, output head and rotary embedding; the classes of its config, causal LM, block, final
norm and rotary embedding (transformers' own, named by their import path, never a
checkpoint's code); how a block is called (the keyword of its KV cache, which attention
mask each block reads); the names its head has on disk; the linear layers LoRA adapts. A
model's family is chosen by its config's `model_type`; anything else is refused in one line.

Building (models.py), freezing and verification (submission.py), fusion (fusion.py), the
frozen-prefix cache (runtime/prefix.py), FLOP counting (runtime/perf.py) and LoRA (lora.py)
all look the family up here; none of them asks which family it is.

Tied output heads (`tie_word_embeddings`, as Qwen2's small models have): the head IS the
input embedding, so it is frozen with it, verified with it (it is not a tensor of its own on
disk), and shared by every expert of a fused model (fusion.TiedHead). docs/model-families.md
says what is checked per family.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import KalavaiError

DEFAULT_FAMILY = "gpt_neox"  # Pythia's: every scale's base unless it names another

# How each block's attention mask is built (runtime/prefix.layer_masks):
# "causal": one causal mask for every block; "sliding": a sliding-window causal mask for every
# block when the config sets `sliding_window` (Mistral), else a causal one; "layer_types": each
# block the mask its `config.layer_types` entry names (Qwen2: full or sliding attention).
MASK_CONVENTIONS = ("causal", "sliding", "layer_types")


@lru_cache(maxsize=None)
def _resolve(path: str):
    """A class of transformers or torch from its import path (the table's data, never a checkpoint's)."""
    module, _, name = path.rpartition(".")
    if not module.startswith(("transformers.", "torch.")) and module not in ("transformers", "torch"):
        raise KalavaiError(f"internal: family classes come from transformers or torch only, not {path}")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Family:
    model_type: str  # config.model_type
    # classes, by import path
    config_class: str
    causal_lm_class: str
    layer_class: str  # one decoder block, built as layer_class(config, layer_idx)
    norm_class: str  # the final norm, built as norm_class(hidden_size, eps=config.<norm_eps>)
    rotary_class: str  # built as rotary_class(config); called as rotary(x, position_ids=...)
    norm_eps: str  # the config key of the norms' epsilon
    # where the parts are: module attributes, and so state-dict prefixes
    decoder: str  # the causal LM's decoder ("gpt_neox" / "model")
    embed: str  # the decoder's input embedding
    layers: str  # the decoder's block list
    final_norm: str  # the decoder's final norm
    rotary: str  # the decoder's rotary embedding (non-persistent buffers only)
    head: str  # the causal LM's output head
    attention: str  # a block's attention module (its `layer_idx` is the block's index)
    # how a block is called: layer(x, attention_mask=, position_ids=, position_embeddings=, use_cache=, <cache_kwarg>=)
    cache_kwarg: str
    masks: str  # one of MASK_CONVENTIONS
    # the embedding's dropout: the decoder's module of that name, its rate the config key (None: there is none)
    embed_dropout: str | None = None
    embed_dropout_rate: str | None = None
    # tensor names save_pretrained writes that differ from the in-memory ones: {on disk: in memory}
    disk_names: dict[str, str] = field(default_factory=dict)
    queries: str = "q_proj"  # the linear whose output meets the sequence in attention (FLOP counting)
    lora_targets: tuple[str, ...] = ()  # a block's linear layers, for LoRA
    # an offline base of this family (models.offline_config): MLP width / d_model, whether the head is
    # tied to the embedding as the family's small models have it, and fixed config values
    mlp_ratio: int = 4
    tie_default: bool = False
    offline: dict = field(default_factory=dict)

    # ---- classes

    @property
    def config_cls(self):
        return _resolve(self.config_class)

    @property
    def causal_lm_cls(self):
        return _resolve(self.causal_lm_class)

    @property
    def layer_cls(self):
        return _resolve(self.layer_class)

    @property
    def class_name(self) -> str:
        """The causal LM's class name, as a saved config's `architectures` lists it."""
        return self.causal_lm_class.rpartition(".")[2]

    # ---- tensor names

    @property
    def embed_prefix(self) -> str:
        return f"{self.decoder}.{self.embed}."

    @property
    def layers_prefix(self) -> str:
        return f"{self.decoder}.{self.layers}."

    def layer_prefix(self, i: int) -> str:
        return f"{self.layers_prefix}{i}."

    @property
    def final_norm_prefix(self) -> str:
        return f"{self.decoder}.{self.final_norm}."

    @property
    def head_prefix(self) -> str:
        return f"{self.head}."

    def layer_of(self, name: str) -> int | None:
        """The block index of a tensor name, None outside the blocks."""
        if not name.startswith(self.layers_prefix):
            return None
        index = name[len(self.layers_prefix) :].split(".", 1)[0]
        return int(index) if index.isdigit() else None

    def frozen_names(self, names, freeze_layers: int, embedding: bool = True) -> list[str]:
        """The input embedding's tensors (unless `embedding` is False) and those of the first `freeze_layers`
        blocks. A tied head is not listed: it is the embedding, not a tensor of its own."""
        return sorted(
            n
            for n in names
            if (embedding and n.startswith(self.embed_prefix))
            or (self.layer_of(n) is not None and self.layer_of(n) < freeze_layers)
        )

    @staticmethod
    def tied(config) -> bool:
        return bool(getattr(config, "tie_word_embeddings", False))

    def tied_keys(self, config) -> dict[str, str]:
        """{head tensor: embedding tensor} when the config ties them, else {}."""
        return {f"{self.head_prefix}weight": f"{self.embed_prefix}weight"} if self.tied(config) else {}

    # ---- a causal LM's parts

    def decoder_of(self, lm):
        return getattr(lm, self.decoder)

    def embedding_of(self, lm):
        return getattr(self.decoder_of(lm), self.embed)

    def blocks_of(self, lm):
        return getattr(self.decoder_of(lm), self.layers)

    def final_norm_of(self, lm):
        return getattr(self.decoder_of(lm), self.final_norm)

    def rotary_of(self, lm):
        return getattr(self.decoder_of(lm), self.rotary)

    def head_of(self, lm):
        return getattr(lm, self.head)

    def embed_dropout_of(self, lm):
        """The decoder's embedding dropout, or an identity where the family has none."""
        import torch

        return getattr(self.decoder_of(lm), self.embed_dropout) if self.embed_dropout else torch.nn.Identity()

    # ---- building the parts (the fused model's shared prefix and expert suffixes)

    def make_layer(self, config, layer_idx: int):
        return self.layer_cls(config, layer_idx)

    def make_final_norm(self, config):
        return _resolve(self.norm_class)(config.hidden_size, eps=getattr(config, self.norm_eps))

    def make_rotary(self, config):
        return _resolve(self.rotary_class)(config)

    def make_embed_dropout(self, config):
        import torch

        if not self.embed_dropout:
            return torch.nn.Identity()
        return torch.nn.Dropout(getattr(config, self.embed_dropout_rate))

    # ---- calling the blocks

    def layer_index(self, layer) -> int:
        return getattr(layer, self.attention).layer_idx

    def layer_types(self, config) -> list[str]:
        """Each block's attention: "full_attention" or "sliding_attention" (see MASK_CONVENTIONS)."""
        n = config.num_hidden_layers
        if self.masks == "layer_types":
            return list(config.layer_types)
        if self.masks == "sliding" and getattr(config, "sliding_window", None) is not None:
            return ["sliding_attention"] * n
        return ["full_attention"] * n


_LLAMA_LORA = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _llama_like(model_type: str, prefix: str, masks: str, **changes) -> Family:
    """Llama and its descendants (Mistral, Qwen2) share one layout: `model.embed_tokens`, `model.layers`,
    `model.norm`, `lm_head`; pre-norm blocks called with `past_key_values`; RMSNorm; no embedding dropout."""
    modeling = f"transformers.models.{model_type}.modeling_{model_type}"
    return Family(
        model_type=model_type,
        config_class=f"transformers.{prefix}Config",
        causal_lm_class=f"transformers.{prefix}ForCausalLM",
        layer_class=f"{modeling}.{prefix}DecoderLayer",
        norm_class=f"{modeling}.{prefix}RMSNorm",
        rotary_class=f"{modeling}.{prefix}RotaryEmbedding",
        norm_eps="rms_norm_eps",
        decoder="model",
        embed="embed_tokens",
        layers="layers",
        final_norm="norm",
        rotary="rotary_emb",
        head="lm_head",
        attention="self_attn",
        cache_kwarg="past_key_values",
        masks=masks,
        queries="q_proj",
        lora_targets=_LLAMA_LORA,
        mlp_ratio=3,  # SwiGLU's three matrices at 3d hold about what GPT-NeoX's two hold at 4d
        offline={"attention_dropout": 0.0},
        **changes,
    )


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family(
            model_type="gpt_neox",
            config_class="transformers.GPTNeoXConfig",
            causal_lm_class="transformers.GPTNeoXForCausalLM",
            layer_class="transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXLayer",
            norm_class="torch.nn.LayerNorm",
            rotary_class="transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXRotaryEmbedding",
            norm_eps="layer_norm_eps",
            decoder="gpt_neox",
            embed="embed_in",
            layers="layers",
            final_norm="final_layer_norm",
            rotary="rotary_emb",
            head="lm_head",
            attention="attention",
            cache_kwarg="layer_past",
            masks="causal",
            embed_dropout="emb_dropout",
            embed_dropout_rate="hidden_dropout",
            # Pythia's checkpoints (and save_pretrained) name the head embed_out; in memory it is lm_head
            disk_names={"embed_out.weight": "lm_head.weight"},
            queries="query_key_value",
            lora_targets=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
            mlp_ratio=4,
            tie_default=False,  # Pythia unties its head
            # Pythia's shape, scaled down: rotary on 25% of each head, parallel residual, no dropout
            offline={
                "rotary_pct": 0.25,
                "use_parallel_residual": True,
                "hidden_dropout": 0.0,
                "attention_dropout": 0.0,
            },
        ),
        _llama_like("llama", "Llama", "causal"),
        _llama_like("mistral", "Mistral", "sliding"),
        # Qwen2.5's small models (0.5B-3B) tie their head to the embedding
        _llama_like("qwen2", "Qwen2", "layer_types", tie_default=True),
    )
}


def get_family(model_type) -> Family:
    """The family of this `model_type`; an unsupported one is refused in one line."""
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise KalavaiError(f"unsupported model family {model_type!r}; supported: {', '.join(FAMILIES)}")
    return family


def family_of(obj) -> Family:
    """The family of a model (its config), a config, a config dict, a model_type or a Family."""
    if isinstance(obj, Family):
        return obj
    if isinstance(obj, str):
        return get_family(obj)
    if isinstance(obj, dict):
        return get_family(obj.get("model_type"))
    config = getattr(obj, "config", obj)
    return get_family(getattr(config, "model_type", None))


def family_by_names(names) -> Family:
    """The family whose input embedding is among these tensor names (families that share their names
    name their tensors alike, so whichever is found frames them the same)."""
    names = set(names)
    for family in FAMILIES.values():
        if f"{family.embed_prefix}weight" in names:
            return family
    raise KalavaiError(f"no input embedding of a supported family among the tensors; supported: {', '.join(FAMILIES)}")
