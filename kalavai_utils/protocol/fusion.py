"""The fused model: N frozen specialists mixed by a router in logit space.

Every specialist fine-tuned the same base with the embedding and the first K blocks
frozen, so that prefix is bit-identical in all of them. `FusedModel` stores it once and
runs it once per batch; each expert keeps only what it trained: blocks K..L-1, the final
layer norm and the output head. The fused logits are sum_i g_i * logits_i, and the fused
next-token distribution is their softmax (PAPER.md §1).

The specialists may be of any family of families.py (GPT-NeoX, Llama, Mistral, Qwen2): the
blocks, norms and rotary embedding are the family's own, built and called as its decoder
does. The fused model's own tensor names are the same in every family (`embed_in`,
`shared_layers.i`, `experts.e.layers.j`, `experts.e.final_layer_norm`, `experts.e.lm_head`).
A head tied to the embedding (Qwen2's small models) is the frozen, shared embedding itself:
every expert's `lm_head` is then a `TiedHead`, which reads the one `embed_in` and holds no
tensor of its own (nothing is saved twice; the experts did not, and could not, train it).

Modes (the router ablation, section 5): "soft" = softmax gates; "hard" = one-hot on the
router's argmax (all experts still run); "uniform" = 1/N, the router ignored.

Dispatch (the paper's inference section): "dense" runs every expert; `top_k` = 1 or 2 runs
only the chosen experts, picked by the router from the shared prefix's output (the only
thing computed before any expert runs), either once per sequence (`sparse_by="sequence"`,
from the prompt, as the authors' benchmark did) or per token (`sparse_by="token"`, causal:
each expert then attends only to the tokens routed to it).

The class is a regular transformers model: save_pretrained / from_pretrained in
safetensors, AutoModelForCausalLM (registered below, no remote code), generate() with a
KV cache (`FusedCache`: the shared prefix's once, one per expert suffix).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    DynamicCache,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..errors import KalavaiError
from ..families import FAMILIES, family_of
from ..runtime.prefix import layer_inputs, layer_masks, run_layers
from .models import frozen_prefix_names
from .routers import GRANULARITIES, causal_lm_loss, make_router, mix_logits, pool_router_input, stack_logits

MODES = ("soft", "hard", "uniform")
SPARSE_BY = ("sequence", "token")

# Config keys that say where or when a config was made, not what the model is.
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype")


class FusedConfig(PretrainedConfig):
    model_type = "kalavai_fused"

    specialist: dict | None = None  # the specialists' config (any family of families.py), as a dict
    n_experts: int = 1
    expert_names: list[str] | None = None
    freeze_layers: int = 0
    router_kind: str = "linear"
    router_hidden: int = 256
    router_seed: int = 0
    granularity: str = "token"
    mode: str = "soft"
    expert_top_k: int = 0  # 0: dense (every expert runs); 1 or 2: only the chosen experts run
    sparse_by: str = "sequence"  # how top_k chooses: once per sequence from the prompt, or per token
    batched_experts: bool = False  # the N suffixes as one vmapped computation (no cache) instead of a loop
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def _specialist(self) -> dict:
        # folders fused before families were data named it `neox` (always GPT-NeoX then)
        return self.specialist or getattr(self, "neox", None) or {}

    def specialist_config(self) -> PretrainedConfig:
        """The specialists' config, in its family's config class (an unsupported family is refused)."""
        raw = self._specialist()
        if not raw:
            raise KalavaiError("FusedConfig has no specialist config (specialist)")
        return family_of(raw).config_cls.from_dict(raw)

    # Read-only views some generation utilities look for on a config.
    @property
    def vocab_size(self) -> int | None:
        return self._specialist().get("vocab_size")

    @property
    def hidden_size(self) -> int | None:
        return self._specialist().get("hidden_size")

    @property
    def num_hidden_layers(self) -> int | None:
        return self._specialist().get("num_hidden_layers")

    @property
    def max_position_embeddings(self) -> int | None:
        """The specialists' context: what clients (lm-evaluation-harness) read as the window length."""
        return self._specialist().get("max_position_embeddings")


@dataclass
class FusedOutput(CausalLMOutputWithPast):
    """CausalLMOutputWithPast plus the gates used at every position, [B, T, N]."""

    gates: torch.FloatTensor | None = None


class TiedHead(nn.Module):
    """The output head of a specialist whose head is tied to its input embedding: the fused model's
    shared `embed_in`, read at every call. It holds no tensor (the embedding is saved, loaded and
    verified once, as the frozen prefix) and is the same for every expert."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.__dict__["embedding"] = embedding  # not a submodule: the fused model owns it, once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight
        return nn.functional.linear(x.to(weight.device), weight)


class ExpertSuffix(nn.Module):
    """What one specialist trained: blocks K..L-1, the final norm and the output head (`head`: the
    shared TiedHead when the family ties it to the embedding, else a head of its own)."""

    def __init__(self, config: PretrainedConfig, freeze_layers: int, head: nn.Module | None = None):
        super().__init__()
        self.family = family_of(config)
        # Keep each block's original layer index (the attention uses it as a cache slot).
        self.layers = nn.ModuleList(
            self.family.make_layer(config, i) for i in range(freeze_layers, config.num_hidden_layers)
        )
        self.final_layer_norm = self.family.make_final_norm(config)
        self.lm_head = head if head is not None else nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, x, mask, position_ids, rope, cache=None):
        """The expert's final hidden state (after its final norm) from the prefix's output."""
        return self.final_layer_norm(run_layers(self.family, self.layers, x, mask, position_ids, rope, cache))


class FusedCache(DynamicCache):
    """The fused model's KV cache: the shared prefix's once, and one DynamicCache per expert suffix.

    This cache's own layers are the prefix's (blocks 0..K-1); `experts[i]` holds expert i's
    blocks K..L-1. One clock, `seen` (tokens already processed), sizes every mask and
    position. Dense generation fills every expert's cache at every position; sparse dispatch
    per sequence fills only the chosen experts' caches, with the batch rows that chose them
    (`routes`, fixed from the prompt, keeps rows and caches in step).
    """

    def __init__(self, n_experts: int):
        super().__init__()
        self.experts = [DynamicCache() for _ in range(n_experts)]
        self.seen = 0
        self.routes = None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen  # also right when K = 0 and the prefix has no layer to ask

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.seen + query_length, 0

    def _each(self, method: str, *args) -> None:
        if self.routes is not None and method != "reset":
            raise KalavaiError(f"{method} is not supported with sparse dispatch (expert caches hold different rows)")
        getattr(super(), method)(*args)
        for cache in self.experts:
            getattr(cache, method)(*args)

    def reorder_cache(self, beam_idx):
        self._each("reorder_cache", beam_idx)

    def batch_repeat_interleave(self, repeats: int):
        self._each("batch_repeat_interleave", repeats)

    def batch_select_indices(self, indices):
        self._each("batch_select_indices", indices)

    def reset(self):
        self._each("reset")
        self.seen, self.routes = 0, None

    def crop(self, tokens_to_remove: int) -> None:
        raise KalavaiError("FusedCache cannot be cropped (assisted decoding is not supported)")


class FusedModel(PreTrainedModel, GenerationMixin):
    config_class = FusedConfig
    config: FusedConfig
    base_model_prefix = "fused"  # no such attribute: the model is its own base
    main_input_name = "input_ids"
    _no_split_modules = [f.layer_class.rpartition(".")[2] for f in FAMILIES.values()]
    _supports_sdpa = True
    _supports_flash_attn = True
    _keep_in_fp32_modules_strict = ["router"]  # the authors' router ran in fp32 next to bf16 experts

    def __init__(self, config: FusedConfig):
        super().__init__(config)
        check_choice("granularity", config.granularity, GRANULARITIES)
        check_choice("mode", config.mode, MODES)
        check_choice("sparse_by", config.sparse_by, SPARSE_BY)
        if config.expert_top_k not in (0, 1, 2) or config.expert_top_k > config.n_experts:
            raise KalavaiError(
                f"top_k={config.expert_top_k}: choose 0 (dense), 1 or 2, at most n_experts={config.n_experts}"
            )
        self.specialist_config = spec = config.specialist_config()
        self.family = family = family_of(spec)
        k = config.freeze_layers
        if not 0 <= k <= spec.num_hidden_layers:
            raise KalavaiError(f"freeze_layers={k} outside 0..{spec.num_hidden_layers}")

        # Shared, computed once per batch.
        self.embed_in = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.emb_dropout = family.make_embed_dropout(spec)
        self.shared_layers = nn.ModuleList(family.make_layer(spec, i) for i in range(k))
        self.rotary_emb = family.make_rotary(spec)
        # One suffix per specialist; a tied head is the shared embedding (TiedHead).
        tied = family.tied(spec)
        self.experts = nn.ModuleList(
            ExpertSuffix(spec, k, TiedHead(self.embed_in) if tied else None) for _ in range(config.n_experts)
        )
        self.router = make_router(
            config.router_kind,
            spec.hidden_size,
            config.n_experts,
            hidden=config.router_hidden,
            seed=config.router_seed,
        )
        self.post_init()
        self.router.reset_parameters()  # post_init re-drew it; the seeded init is the documented one
        # generate() decides about the cache itself (see generate): never transformers' default cache.
        self.generation_config.use_cache = False
        self._stacked = None  # the experts' weights stacked for batched_experts, built on first use

    # ---- building -------------------------------------------------------------------

    @classmethod
    def from_specialists(
        cls,
        specialists: Iterable[PreTrainedModel],
        expert_names: list[str],
        freeze_layers: int,
        router_kind: str = "linear",
        granularity: str = "token",
        router_hidden: int = 256,
        seed: int = 0,
        mode: str = "soft",
    ) -> "FusedModel":
        """Fuse specialists that share the base's embedding and first `freeze_layers` blocks, bit for bit.

        They are causal LMs of one family (families.py), read from their configs.

        `specialists` is read once, one at a time: each one's suffix is moved into the fused
        model before the next is read, and the shared prefix is kept once (the first one's).
        So a generator that loads each specialist from disk (cooperative.assemble) keeps at
        most one specialist in memory beside the fused model, however many there are.
        """
        names = list(expert_names)
        if not names:
            raise KalavaiError("no specialists to fuse")
        model, first_config, family, prefix, e = None, None, None, {}, 0
        for specialist in specialists:  # not enumerate: its reused result tuple would keep the last one alive
            if e >= len(names):
                raise KalavaiError(f"more specialists than the {len(names)} names")
            state = specialist.state_dict()
            if model is None:
                spec = first_config = specialist.config
                family = family_of(spec)
                config = FusedConfig(
                    specialist=spec.to_dict(),
                    n_experts=len(names),
                    expert_names=names,
                    freeze_layers=freeze_layers,
                    router_kind=router_kind,
                    router_hidden=router_hidden,
                    router_seed=seed,
                    granularity=granularity,
                    mode=mode,
                    bos_token_id=spec.bos_token_id,
                    eos_token_id=spec.eos_token_id,
                    pad_token_id=spec.pad_token_id,
                )
                config._attn_implementation = spec._attn_implementation
                # Built on the meta device, then given the specialists' tensors (cloned) as they
                # are: no throwaway random init, and their dtype kept.
                with torch.device("meta"):
                    model = cls(config)
                frozen = frozen_prefix_names(state.keys(), freeze_layers, family=family)
                prefix = {k: state[k].detach().clone() for k in frozen}
                router = make_router(router_kind, spec.hidden_size, len(names), hidden=router_hidden, seed=seed)
                shared = shared_state_dict(prefix, freeze_layers, family)
                shared.update({f"router.{k}": v for k, v in router.state_dict().items()})
                _take(model, shared)
                # Non-persistent buffers (rotary frequencies) are not in a state dict: take the specialist's.
                model.rotary_emb = copy.deepcopy(family.rotary_of(specialist))
            else:
                check_same_config([first_config, specialist.config], [names[0], names[e]])
                check_same_prefix([prefix, state], [names[0], names[e]], freeze_layers, family)
            check_tied_head(state, first_config, names[e])
            tied = family.tied(first_config)
            suffix = {
                k: v.detach().clone() for k, v in expert_state_dict(state, e, freeze_layers, family, tied).items()
            }
            _take(model, suffix)
            e += 1
            del specialist, state  # before the next is read: one specialist in flight at a time
        if e != len(names):
            raise KalavaiError(f"{e} specialists but {len(names)} names")
        missing = [k for k, v in model.state_dict().items() if v.is_meta]
        if missing:  # a specialist without some tensor the fused model needs
            raise KalavaiError(
                f"the specialists do not provide {len(missing)} of the fused model's tensors, e.g. {missing[0]}"
            )
        return model.eval()

    # ---- the forward pass -----------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        check_choice("mode", mode, MODES)
        self.config.mode = mode

    def set_dispatch(self, top_k: int = 0, sparse_by: str = "sequence") -> None:
        """top_k=0: dense (every expert runs); 1 or 2: only the router's chosen experts run (see the module docstring)."""
        check_choice("sparse_by", sparse_by, SPARSE_BY)
        if top_k not in (0, 1, 2) or top_k > self.config.n_experts:
            raise KalavaiError(f"top_k={top_k}: choose 0 (dense), 1 or 2, at most n_experts={self.config.n_experts}")
        self.config.expert_top_k, self.config.sparse_by = top_k, sparse_by

    def use_router(self, kind: str, granularity: str, hidden: int = 256, seed: int = 0) -> None:
        """Swap in a freshly seeded router of this kind and granularity (the experts stay as they are)."""
        check_choice("granularity", granularity, GRANULARITIES)
        router = make_router(kind, self.specialist_config.hidden_size, self.config.n_experts, hidden=hidden, seed=seed)
        self.router = router.to(self.embed_in.weight.device)  # stays fp32, as _keep_in_fp32_modules_strict says
        self.config.router_kind, self.config.router_hidden, self.config.router_seed = kind, hidden, seed
        self.config.granularity = granularity

    def expert_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        states=None,
    ) -> torch.Tensor:
        """Every expert's final hidden state (after its final layer norm), [N, B, T, d].

        The shared prefix runs once (or is read from `states`, see `prefix`); the attention
        mask, positions and rotary embedding are built once, the way the family's decoder
        builds them, and reused by every expert.
        """
        x, mask, position_ids, rope = self.prefix(input_ids, attention_mask, position_ids, states=states)
        return self.suffixes(x, mask, position_ids, rope)

    def prefix(self, input_ids, attention_mask=None, position_ids=None, cache: FusedCache | None = None, states=None):
        """The shared part, run once: embedding, mask, positions and rotary (built once, the way
        the family's decoder builds them, and reused by every expert), then blocks 0..K-1.

        `states` (prefix.for_fused(self)) hands back the blocks' output for chunks already seen
        instead of running them again: only for whole chunks (no mask, positions or cache).
        Returns (x, mask, position_ids, rope) for the experts' blocks.
        """
        # The attention layers read the implementation from this config: keep it in step.
        self.specialist_config._attn_implementation = self.config._attn_implementation
        if states is not None:
            if attention_mask is not None or position_ids is not None or cache is not None:
                raise KalavaiError("prefix states hold whole chunks: no attention_mask, position_ids or cache")
            x = states(input_ids)
            return (x, *layer_inputs(self.specialist_config, self.rotary_emb, x))
        x = self.emb_dropout(self.embed_in(input_ids))
        mask, position_ids, rope = layer_inputs(
            self.specialist_config,
            self.rotary_emb,
            x,
            attention_mask,
            position_ids,
            cache,
            seen=0 if cache is None else cache.seen,
        )
        layers = run_layers(self.family, self.shared_layers, x, mask, position_ids, rope, cache)
        return layers, mask, position_ids, rope

    def suffixes(self, x, mask, position_ids, rope, cache: FusedCache | None = None) -> torch.Tensor:
        """Every expert's final hidden state [N, B, T, d] from the prefix's output.

        A loop over the experts, or with `config.batched_experts` (and no cache: the cache is
        updated in place, which vmap cannot do) one vmapped computation over their stacked weights.
        """
        if self.config.batched_experts and cache is None:
            params = self.stacked_expert_weights()
            run = lambda p: torch.func.functional_call(self.experts[0], p, (x, mask, position_ids, rope))  # noqa: E731
            with warnings.catch_warnings():  # attention has no vmap rule on some backends: a loop inside, still right
                warnings.filterwarnings(
                    "ignore", message="There is a performance drop because we have not yet implemented"
                )
                return torch.vmap(run)(params)
        caches = cache.experts if cache is not None else [None] * len(self.experts)
        # .to(x.device): experts placed on other devices (inference.place_experts) hand their output back
        return torch.stack(
            [expert(x, mask, position_ids, rope, c).to(x.device) for expert, c in zip(self.experts, caches)]
        )

    def stacked_expert_weights(self) -> dict:
        """The experts' parameters stacked along a new first axis (built once, rebuilt if they move).

        Costs one more copy of the experts' suffix weights in memory: the price of batching.
        """
        key = tuple((p.data_ptr(), p.dtype, p.device) for p in self.experts.parameters())
        if self._stacked is None or self._stacked[0] != key:
            params, buffers = torch.func.stack_module_state(list(self.experts))
            self._stacked = (key, {**params, **buffers})
        return self._stacked[1]

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every expert's logits from its own hidden states: [N, B, T, d] -> [N, B, T, V]."""
        return stack_logits(
            (on_module(expert.lm_head, h).to(hidden.device) for expert, h in zip(self.experts, hidden)),
            len(self.experts),
        )

    def gates_from(
        self, router_input: torch.Tensor, mode: str | None = None, router: nn.Module | None = None
    ) -> torch.Tensor:
        """Gates [B, T, N] from the router input, for `mode` (default: the model's mode).

        `router` (default: the model's own) lets several routers share one set of expert outputs.
        """
        mode = mode or self.config.mode
        check_choice("mode", mode, MODES)
        n = self.config.n_experts
        if mode == "uniform":
            return torch.full((*router_input.shape[:-1], n), 1.0 / n, device=router_input.device)
        router = self.router if router is None else router
        scores = router(router_input.to(next(router.parameters()).dtype))
        if mode == "hard":
            return nn.functional.one_hot(scores.argmax(dim=-1), n).to(scores.dtype)
        return scores.softmax(dim=-1)

    def fuse(
        self,
        hidden: torch.Tensor,
        logits: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        gates: torch.Tensor | None = None,
        mode: str | None = None,
        router: nn.Module | None = None,
        granularity: str | None = None,
    ) -> FusedOutput:
        """Everything after the experts' blocks: gates, the mixture and its loss (forward's second half).

        `hidden` is `expert_hidden(...)`; `logits` (= `unembed(hidden)`) may be passed when
        several routers are trained on one batch, so the output heads run once for all of them.
        `router`, `granularity` and `mode` default to the model's own.
        """
        if logits is None:
            logits = self.unembed(hidden)
        if gates is None:
            router_input = pool_router_input(hidden.mean(dim=0), granularity or self.config.granularity, attention_mask)
            gates = self.gates_from(router_input, mode, router)
        else:
            gates = torch.as_tensor(gates, device=logits.device).expand(*logits.shape[1:3], self.config.n_experts)
        gates = gates.to(torch.promote_types(gates.dtype, logits.dtype))
        fused = mix_logits(logits.to(gates.dtype), gates)
        loss = causal_lm_loss(fused, labels) if labels is not None else None
        return FusedOutput(loss=loss, logits=fused, gates=gates)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        gates: torch.Tensor | None = None,
        past_key_values: FusedCache | None = None,
        routes: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> FusedOutput:
        """Fused logits sum_i g_i * logits_i, their next-token loss if `labels`, and the gates.

        `gates` ([B, T, N] or [N]) replaces the router: oracle routing and tests (under sparse
        dispatch they are the scores the top-k is taken from). `past_key_values` (a FusedCache)
        holds what earlier calls computed; `input_ids` are then only the new tokens. `routes`
        fixes sparse per-sequence choices (generate() takes them from the prompt).
        Other keyword arguments (use_cache, return_dict, ...) are accepted and ignored.
        """
        cache = past_key_values
        if cache is not None and not isinstance(cache, FusedCache):
            raise KalavaiError(f"FusedModel needs a FusedCache, got {type(cache).__name__}")
        if cache is not None:
            self.check_cacheable()
        if self.config.expert_top_k:
            out = self.sparse_forward(input_ids, attention_mask, position_ids, labels, gates, cache, routes)
        elif cache is None:
            hidden = self.expert_hidden(input_ids, attention_mask, position_ids)
            out = self.fuse(hidden, attention_mask=attention_mask, labels=labels, gates=gates)
        else:
            x, mask, position_ids, rope = self.prefix(input_ids, attention_mask, position_ids, cache)
            out = self.fuse(self.suffixes(x, mask, position_ids, rope, cache), labels=labels, gates=gates)
        if cache is not None:
            cache.seen += input_ids.shape[1]
            out.past_key_values = cache
        return out

    # ---- sparse dispatch: only the chosen experts run -----------------------------------

    def prefix_scores(self, x: torch.Tensor, attention_mask=None, gates=None, pool: bool = False) -> torch.Tensor:
        """Router probabilities [B, T or 1, N] read from the shared prefix's output `x`.

        The dense router reads the mean of the experts' final hidden states, which needs every
        expert to have run; before choosing, only the prefix's output exists. It is put through
        every expert's final layer norm and averaged (N layer norms, cheap), the closest thing to
        the dense router's input (the authors took specialist 0's final layer norm of it). The
        router was trained on the dense input: this mismatch is part of what sparse dispatch costs.
        """
        if gates is not None:
            return torch.as_tensor(gates, device=x.device).float().expand(x.shape[0], 1 if pool else x.shape[1], -1)
        h = torch.stack([on_module(e.final_layer_norm, x).to(x.device) for e in self.experts]).mean(dim=0)
        h = pool_router_input(h, "sequence", attention_mask)[:, :1] if pool else h
        return self.router(h.to(next(self.router.parameters()).dtype)).float().softmax(dim=-1)

    def sequence_routes(self, input_ids, attention_mask=None, gates=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sequence top-k from the prompt: (expert indices [B, k], weights [B, k] summing to 1)."""
        x = self.prefix(input_ids, attention_mask)[0]
        return top_k_routes(self.prefix_scores(x, attention_mask, gates, pool=True)[:, 0], self.config.expert_top_k)

    def sparse_forward(self, input_ids, attention_mask, position_ids, labels, gates, cache, routes) -> FusedOutput:
        """Only the chosen experts run; fused logits = sum over chosen of w_i * logits_i (w renormalized)."""
        by = self.config.sparse_by
        if by == "token" and cache is not None:
            raise KalavaiError(
                "sparse per-token dispatch has no cached generation (each expert's cache would hold "
                "only the tokens routed to it); generate with use_cache=False"
            )
        x, mask, position_ids, rope = self.prefix(input_ids, attention_mask, position_ids, cache)
        B, T, n = x.shape[0], x.shape[1], self.config.n_experts
        if by == "sequence":
            routes = routes if routes is not None else (cache.routes if cache is not None else None)
            if routes is None:  # no prompt given apart: the whole input is the prompt (as the authors' benchmark)
                routes = top_k_routes(
                    self.prefix_scores(x, attention_mask, gates, pool=True)[:, 0], self.config.expert_top_k
                )
            if cache is not None:
                cache.routes = routes
            logits = self._run_sequence_routes(x, mask, position_ids, rope, routes, cache)
            idx, w = routes
            gates_used = torch.zeros(B, n, device=x.device).scatter(1, idx, w.float())[:, None].expand(B, T, n)
        else:
            idx, w = top_k_routes(self.prefix_scores(x, attention_mask, gates), self.config.expert_top_k)
            logits = self._run_token_routes(x, attention_mask, position_ids, idx, w)
            gates_used = torch.zeros(B, T, n, device=x.device).scatter(2, idx, w.float())
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return FusedOutput(loss=loss, logits=logits, gates=gates_used)

    def _run_sequence_routes(self, x, mask, position_ids, rope, routes, cache):
        idx, w = routes
        B = x.shape[0]
        out = None
        for e in idx.unique().tolist():
            chosen = idx == e  # [B, k]
            rows = chosen.any(dim=-1).nonzero().squeeze(-1)
            weight = (w * chosen).sum(dim=-1)[rows]

            def pick(t):  # rows of a per-row tensor; broadcast ones (batch dim 1) stay as they are
                if isinstance(t, dict):  # one mask per block (families with mixed attention)
                    return {i: pick(m) for i, m in t.items()}
                return t if t is None or t.shape[0] != B or B == 1 else t[rows]

            expert = self.experts[e]
            h = expert(
                x[rows],
                pick(mask),
                pick(position_ids),
                tuple(pick(t) for t in rope),
                cache.experts[e] if cache is not None else None,
            )
            part = on_module(expert.lm_head, h).to(x.device).float() * weight.float()[:, None, None]
            if out is None:
                out = torch.zeros(B, *part.shape[1:], dtype=part.dtype, device=part.device)
            out[rows] += part
        return out

    def _run_token_routes(self, x, attention_mask, position_ids, idx, w):
        """Each expert runs on the tokens routed to it, gathered per row in order and keeping their
        positions: it attends only to those tokens (its own causal history), as a cache would hold."""
        B, T, d = x.shape
        position_ids = position_ids.expand(B, T)
        attention_mask = (
            torch.ones(B, T, dtype=torch.bool, device=x.device) if attention_mask is None else attention_mask.bool()
        )
        out = torch.zeros(B, T, self.specialist_config.vocab_size, device=x.device)
        for e in range(self.config.n_experts):
            chosen = (idx == e).any(dim=-1)  # [B, T]
            rows = chosen.any(dim=-1).nonzero().squeeze(-1)
            if len(rows) == 0:
                continue
            sel = chosen[rows]
            counts = sel.sum(dim=-1)
            m = int(counts.max())
            # the chosen positions first, in order (stable sort), then padding up to m
            order = torch.sort((~sel).to(torch.int8), dim=-1, stable=True).indices[:, :m]
            valid = torch.arange(m, device=x.device)[None] < counts[:, None]
            xe = x[rows].gather(1, order[..., None].expand(-1, -1, d))
            pos = position_ids[rows].gather(1, order)
            mask = layer_masks(
                self.specialist_config,
                xe,
                attention_mask=attention_mask[rows].gather(1, order) & valid,
                cache=None,
                position_ids=pos,
            )
            h = self.experts[e](xe, mask, pos, self.rotary_emb(xe, position_ids=pos))
            weight = ((w * (idx == e)).sum(dim=-1)[rows].gather(1, order) * valid).float()
            part = on_module(self.experts[e].lm_head, h).to(x.device).float() * weight[..., None]
            out[rows] = out[rows].scatter_add(1, order[..., None].expand(-1, -1, out.shape[-1]), part)
        return out

    # ---- generation -------------------------------------------------------------------

    def check_cacheable(self) -> None:
        """Cached generation needs causal gates: refuse the sequence-pooled router (see generate)."""
        if not self.config.expert_top_k and self.config.granularity == "sequence":
            raise KalavaiError(
                "cached generation needs a causal router: the sequence-pooled router's gate reads the "
                "whole chunk, so it cannot run token by token; use a token router, sparse dispatch "
                "per sequence, or generate(use_cache=False)"
            )

    def generate(self, inputs=None, generation_config=None, use_cache: bool | None = None, **kwargs):
        """GenerationMixin.generate with the fused model's own cache (a FusedCache).

        With a cache (the default when the router is causal) each step runs only the new token
        through the prefix once and through every expert's suffix, reading the cached keys and
        values: n new tokens cost n single-token steps, not n passes over the whole sequence.
        It produces the tokens of the cache-free path (greedy, and sampling with a fixed seed),
        up to floating-point rounding of the logits.

        The sequence-pooled router (the authors') cannot run causally: its gate is a mean over
        the whole chunk, so in evaluation every position's gate has seen the chunk's future, and
        in generation it changes with every new token. Cached generation with it is refused with
        a KalavaiError; use_cache=False re-reads the sequence so far at every step (O(n^2)),
        which is what the default does for such a model. Sparse dispatch per sequence chooses
        its experts once from the prompt and keeps them; per token it runs without a cache.
        """
        causal = (
            self.config.granularity == "token" if not self.config.expert_top_k else self.config.sparse_by == "sequence"
        )
        if use_cache is None:
            use_cache = causal
        if use_cache:
            if self.config.expert_top_k and self.config.sparse_by == "token":
                raise KalavaiError("sparse per-token dispatch has no cached generation; generate with use_cache=False")
            self.check_cacheable()
            if kwargs.get("past_key_values") is None:
                kwargs["past_key_values"] = FusedCache(self.config.n_experts)
        if self.config.expert_top_k and self.config.sparse_by == "sequence" and kwargs.get("routes") is None:
            prompt = inputs if inputs is not None else kwargs.get("input_ids")
            with torch.no_grad():
                kwargs["routes"] = self.sequence_routes(
                    prompt.to(self.device), kwargs.get("attention_mask"), kwargs.get("gates")
                )
        return super().generate(inputs, generation_config, use_cache=use_cache, **kwargs)

    def prepare_inputs_for_generation(
        self, input_ids, attention_mask=None, gates=None, past_key_values=None, routes=None, **kwargs
    ):
        # Without a cache, the whole sequence every step; with one, only what it has not seen.
        start = past_key_values.seen if past_key_values is not None else 0
        inputs = {"input_ids": input_ids[:, start:], "attention_mask": attention_mask}
        if past_key_values is not None:
            inputs["past_key_values"] = past_key_values
        if gates is not None:  # fixed [N] gates (e.g. one expert alone) carry over to every step
            inputs["gates"] = gates
        if routes is not None:
            inputs["routes"] = routes
        if attention_mask is not None:
            # Left padding: positions count real tokens only, as transformers' generate does.
            position_ids = attention_mask.long().cumsum(-1) - 1
            inputs["position_ids"] = position_ids.masked_fill(attention_mask == 0, 0)[:, start:]
        return inputs

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_in

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_in = value
        for expert in self.experts:  # a tied head reads the embedding it was given
            if isinstance(expert.lm_head, TiedHead):
                expert.lm_head.__dict__["embedding"] = value


def on_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) with x on the module's device: experts may live on other devices (inference.place_experts).
    Offloaded weights sit on the meta device until accelerate's hook brings them, and it moves x itself.
    A TiedHead, which holds no tensor, moves x to the shared embedding itself."""
    param = next(module.parameters(), None)
    return module(x if param is None or param.device.type == "meta" else x.to(param.device))


def top_k_routes(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k experts of router probabilities [..., N]: (indices [..., k], weights renormalized to sum to 1)."""
    top, idx = scores.topk(k, dim=-1)
    return idx, top / top.sum(dim=-1, keepdim=True)


def check_choice(what: str, value: str, choices) -> None:
    if value not in choices:
        raise KalavaiError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


def check_same_config(configs, names) -> None:
    """The specialists' configs (of one family, model_type included) must agree on everything but bookkeeping keys."""

    def essential(config):
        return {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}

    ref = essential(configs[0])
    for config, name in zip(configs[1:], names[1:]):
        diff = sorted(k for k in ref.keys() | essential(config).keys() if ref.get(k) != essential(config).get(k))
        if diff:
            raise KalavaiError(f"specialist {name!r} has a different config from {names[0]!r}: {', '.join(diff)}")


def check_same_prefix(states: list[dict], names: list[str], freeze_layers: int, family=None) -> None:
    """The frozen prefix must be bit-identical in every specialist, or it cannot be shared.
    (`family`: whose tensor names; by default read from the names, as frozen_prefix_names does.)"""
    for key in frozen_prefix_names(states[0].keys(), freeze_layers, family=family):
        ref = states[0][key]
        for state, name in zip(states[1:], names[1:]):
            t = state.get(key)
            if t is None or t.dtype != ref.dtype or t.shape != ref.shape or not bits_equal(t, ref):
                raise KalavaiError(
                    f"frozen tensor {key} of specialist {name!r} differs from {names[0]!r}: "
                    f"the specialists do not share the base's first {freeze_layers} blocks and embedding"
                )


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    # Compare bytes, not values: -0.0 == 0.0 and NaN != NaN would both mislead.
    return torch.equal(a.detach().contiguous().view(torch.uint8), b.detach().contiguous().view(torch.uint8))


def check_tied_head(state: dict, config, name: str) -> None:
    """A specialist whose config ties its head to its embedding holds the embedding as its head."""
    for head, embedding in family_of(config).tied_keys(config).items():
        if head in state and not bits_equal(state[head], state[embedding]):
            raise KalavaiError(f"specialist {name!r} ties its head to its embedding, but its {head} differs from it")


def shared_state_dict(state: dict, freeze_layers: int, family) -> dict:
    """A specialist's embedding and first `freeze_layers` blocks (of its `family`) under the fused model's names."""
    out = {}
    for key, value in state.items():
        i = family.layer_of(key)
        if key.startswith(family.embed_prefix):
            out["embed_in." + key[len(family.embed_prefix) :]] = value
        elif i is not None and i < freeze_layers:
            out[key.replace(family.layer_prefix(i), f"shared_layers.{i}.", 1)] = value
    return out


def _take(model: nn.Module, tensors: dict) -> None:
    """Give `model` (built on the meta device) these tensors as its own; any name it lacks is refused."""
    unexpected = model.load_state_dict(tensors, strict=False, assign=True).unexpected_keys
    if unexpected:
        raise KalavaiError(f"the specialists hold tensors the fused model has no place for, e.g. {unexpected[0]}")


def expert_state_dict(state: dict, e: int, freeze_layers: int, family, tied: bool = False) -> dict:
    """One specialist's suffix (blocks from `freeze_layers` on, final norm, head) under expert `e`'s names.

    A `tied` head is left out: it is the shared embedding (TiedHead), not a tensor of the expert's.
    """
    out = {}
    for key, value in state.items():
        i = family.layer_of(key)
        if i is not None:
            if i >= freeze_layers:
                out[key.replace(family.layer_prefix(i), f"experts.{e}.layers.{i - freeze_layers}.", 1)] = value
        elif key.startswith(family.final_norm_prefix):
            out[f"experts.{e}.final_layer_norm." + key[len(family.final_norm_prefix) :]] = value
        elif key.startswith(family.head_prefix) and not tied:
            out[f"experts.{e}.lm_head." + key[len(family.head_prefix) :]] = value
    return out


class WeightAverage:
    """The paper's weight-averaging baseline, built one specialist at a time.

    Sums are kept in float64: exact for fp32/bf16 inputs, so averaging N copies of x gives x
    back. Memory: one float64 copy of the weights and the first specialist (the average's
    template), beside the specialist being added.
    """

    def __init__(self):
        self.first, self.sums, self.n = None, {}, 0

    @torch.no_grad()
    def add(self, specialist: PreTrainedModel) -> None:
        if self.first is None:
            self.first = specialist
        else:
            check_same_config([self.first.config, specialist.config], ["#0", f"#{self.n}"])
        for key, value in specialist.state_dict().items():
            if value.is_floating_point():
                total = self.sums.setdefault(key, torch.zeros_like(value, dtype=torch.float64))
                total += value.double()
        self.n += 1

    @torch.no_grad()
    def result(self) -> PreTrainedModel:
        if not self.n:
            raise KalavaiError("no specialists to average")
        avg = copy.deepcopy(self.first)
        for key, value in avg.state_dict().items():
            if key in self.sums:
                value.copy_((self.sums[key] / self.n).to(value.dtype))
        return avg


def weight_average(specialists: Iterable[PreTrainedModel]) -> PreTrainedModel:
    """The element-wise mean of all parameters of `specialists` (read once, one at a time)."""
    avg = WeightAverage()
    for specialist in specialists:
        avg.add(specialist)
    return avg.result()


AutoConfig.register(FusedConfig.model_type, FusedConfig)
AutoModelForCausalLM.register(FusedConfig, FusedModel)
