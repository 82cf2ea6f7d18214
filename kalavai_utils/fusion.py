"""The fused model: N frozen specialists mixed by a router in logit space.

Every specialist fine-tuned the same base with the embedding and the first K blocks
frozen, so that prefix is bit-identical in all of them. `FusedModel` stores it once and
runs it once per batch; each expert keeps only what it trained: blocks K..L-1, the final
layer norm and the output head. The fused logits are sum_i g_i * logits_i, and the fused
next-token distribution is their softmax (section 1 of the facts).

Modes (the router ablation, section 5): "soft" = softmax gates; "hard" = one-hot on the
router's argmax (all experts still run); "uniform" = 1/N, the router ignored.

The class is a regular transformers model: save_pretrained / from_pretrained in
safetensors, AutoModelForCausalLM (registered below, no remote code), generate().
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXLayer, GPTNeoXRotaryEmbedding

from .errors import KalavaiError
from .models import frozen_prefix_names
from .routers import GRANULARITIES, causal_lm_loss, make_router, mix_logits, pool_router_input

MODES = ("soft", "hard", "uniform")

# Config keys that say where or when a config was made, not what the model is.
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype")


class FusedConfig(PretrainedConfig):
    model_type = "kalavai_fused"

    neox: dict | None = None  # the specialists' GPTNeoXConfig, as a dict
    n_experts: int = 1
    expert_names: list[str] | None = None
    freeze_layers: int = 0
    router_kind: str = "linear"
    router_hidden: int = 256
    router_seed: int = 0
    granularity: str = "token"
    mode: str = "soft"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def specialist_config(self) -> GPTNeoXConfig:
        if not self.neox:
            raise KalavaiError("FusedConfig has no GPT-NeoX config (neox)")
        return GPTNeoXConfig.from_dict(self.neox)

    # Read-only views some generation utilities look for on a config.
    @property
    def vocab_size(self) -> int | None:
        return (self.neox or {}).get("vocab_size")

    @property
    def hidden_size(self) -> int | None:
        return (self.neox or {}).get("hidden_size")

    @property
    def num_hidden_layers(self) -> int | None:
        return (self.neox or {}).get("num_hidden_layers")


@dataclass
class FusedOutput(CausalLMOutputWithPast):
    """CausalLMOutputWithPast plus the gates used at every position, [B, T, N]."""

    gates: torch.FloatTensor | None = None


class ExpertSuffix(nn.Module):
    """What one specialist trained: blocks K..L-1, the final layer norm and the output head."""

    def __init__(self, config: GPTNeoXConfig, freeze_layers: int):
        super().__init__()
        # Keep each block's original layer index (the attention uses it as a cache slot).
        self.layers = nn.ModuleList(GPTNeoXLayer(config, i) for i in range(freeze_layers, config.num_hidden_layers))
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)


class FusedModel(PreTrainedModel, GenerationMixin):
    config_class = FusedConfig
    config: FusedConfig
    base_model_prefix = "fused"  # no such attribute: the model is its own base
    main_input_name = "input_ids"
    _no_split_modules = ["GPTNeoXLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _keep_in_fp32_modules_strict = ["router"]  # the authors' router ran in fp32 next to bf16 experts

    def __init__(self, config: FusedConfig):
        super().__init__(config)
        check_choice("granularity", config.granularity, GRANULARITIES)
        check_choice("mode", config.mode, MODES)
        self.neox_config = config.specialist_config()
        k = config.freeze_layers
        if not 0 <= k <= self.neox_config.num_hidden_layers:
            raise KalavaiError(f"freeze_layers={k} outside 0..{self.neox_config.num_hidden_layers}")

        # Shared, computed once per batch.
        self.embed_in = nn.Embedding(self.neox_config.vocab_size, self.neox_config.hidden_size)
        self.emb_dropout = nn.Dropout(self.neox_config.hidden_dropout)
        self.shared_layers = nn.ModuleList(GPTNeoXLayer(self.neox_config, i) for i in range(k))
        self.rotary_emb = GPTNeoXRotaryEmbedding(self.neox_config)
        # One suffix per specialist.
        self.experts = nn.ModuleList(ExpertSuffix(self.neox_config, k) for _ in range(config.n_experts))
        self.router = make_router(config.router_kind, self.neox_config.hidden_size, config.n_experts,
                                  hidden=config.router_hidden, seed=config.router_seed)
        self.post_init()
        self.router.reset_parameters()  # post_init re-drew it; the seeded init is the documented one
        # No KV cache: every generation step reruns the whole sequence.
        self.generation_config.use_cache = False
        self._hidden_memo = None  # see reuse_expert_hidden

    # ---- building -------------------------------------------------------------------

    @classmethod
    def from_specialists(cls, specialists: list[GPTNeoXForCausalLM], expert_names: list[str], freeze_layers: int,
                         router_kind: str = "linear", granularity: str = "token", router_hidden: int = 256,
                         seed: int = 0, mode: str = "soft") -> "FusedModel":
        """Fuse specialists that share the base's embedding and first `freeze_layers` blocks, bit for bit."""
        if not specialists:
            raise KalavaiError("no specialists to fuse")
        if len(expert_names) != len(specialists):
            raise KalavaiError(f"{len(specialists)} specialists but {len(expert_names)} names")
        check_same_config(specialists, expert_names)
        states = [s.state_dict() for s in specialists]
        check_same_prefix(states, expert_names, freeze_layers)

        neox = specialists[0].config
        config = FusedConfig(
            neox=neox.to_dict(), n_experts=len(specialists), expert_names=list(expert_names),
            freeze_layers=freeze_layers, router_kind=router_kind, router_hidden=router_hidden,
            router_seed=seed, granularity=granularity, mode=mode,
            bos_token_id=neox.bos_token_id, eos_token_id=neox.eos_token_id, pad_token_id=neox.pad_token_id,
        )
        config._attn_implementation = neox._attn_implementation
        # Build on the meta device and take the specialists' tensors (cloned) as they are:
        # no throwaway random init, one copy in memory, and their dtype kept.
        with torch.device("meta"):
            model = cls(config)
        router = make_router(router_kind, neox.hidden_size, len(specialists), hidden=router_hidden, seed=seed)
        state = fused_state_dict(states, freeze_layers)
        state.update({f"router.{k}": v for k, v in router.state_dict().items()})
        model.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True, assign=True)
        # Non-persistent buffers (rotary frequencies) are not in a state dict: take the specialist's.
        model.rotary_emb = copy.deepcopy(specialists[0].gpt_neox.rotary_emb)
        return model.eval()

    # ---- the forward pass -----------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        check_choice("mode", mode, MODES)
        self.config.mode = mode

    def use_router(self, kind: str, granularity: str, hidden: int = 256, seed: int = 0) -> None:
        """Swap in a freshly seeded router of this kind and granularity (the experts stay as they are)."""
        check_choice("granularity", granularity, GRANULARITIES)
        router = make_router(kind, self.neox_config.hidden_size, self.config.n_experts, hidden=hidden, seed=seed)
        self.router = router.to(self.embed_in.weight.device)  # stays fp32, as _keep_in_fp32_modules_strict says
        self.config.router_kind, self.config.router_hidden, self.config.router_seed = kind, hidden, seed
        self.config.granularity = granularity

    def expert_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Every expert's final hidden state (after its final layer norm), [N, B, T, d].

        The shared prefix runs once; the attention mask, positions and rotary embedding are
        built once, the way GPTNeoXModel.forward builds them, and reused by every expert.
        Inside `reuse_expert_hidden()` a batch seen before is not recomputed.
        """
        memo = self._hidden_memo
        if memo is not None:
            key = tuple(None if t is None else (t.dtype, tuple(t.shape), t.cpu().numpy().tobytes())
                        for t in (input_ids, attention_mask, position_ids))
            if key in memo:
                return memo[key]
        # The attention layers read the implementation from this config: keep it in step.
        self.neox_config._attn_implementation = self.config._attn_implementation
        x = self.emb_dropout(self.embed_in(input_ids))
        if position_ids is None:
            position_ids = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        # No cache, as GPTNeoXModel with use_cache=False. (Then, if attention_mask is None, transformers
        # reads jumps in explicit position_ids as packed-sequence boundaries, exactly as GPT-NeoX does.)
        mask = create_causal_mask(config=self.neox_config, inputs_embeds=x, attention_mask=attention_mask,
                                  past_key_values=None, position_ids=position_ids)
        rope = self.rotary_emb(x, position_ids=position_ids)

        x = run_layers(self.shared_layers, x, mask, position_ids, rope)
        hidden = torch.stack([expert.final_layer_norm(run_layers(expert.layers, x, mask, position_ids, rope))
                              for expert in self.experts])
        if memo is not None:
            memo[key] = hidden.detach()
        return hidden

    @contextmanager
    def reuse_expert_hidden(self):
        """Within this block, `expert_hidden` remembers its result for every batch it sees.

        The experts are frozen, so a batch's hidden states never change while only the router
        or the mode does: evaluating several routers on the same held-out batches then runs
        the experts' blocks once per batch, and each router pays only for the output heads and
        the mixture. Memory: N x B x T x d per remembered batch (the logits are not kept).
        """
        self._hidden_memo = {}
        try:
            yield self
        finally:
            self._hidden_memo = None

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every expert's logits from its own hidden states: [N, B, T, d] -> [N, B, T, V]."""
        return torch.stack([expert.lm_head(h) for expert, h in zip(self.experts, hidden)])

    def gates_from(self, router_input: torch.Tensor, mode: str | None = None, router: nn.Module | None = None) -> torch.Tensor:
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

    def fuse(self, hidden: torch.Tensor, logits: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
             labels: torch.Tensor | None = None, gates: torch.Tensor | None = None, mode: str | None = None,
             router: nn.Module | None = None, granularity: str | None = None) -> FusedOutput:
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

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, position_ids: torch.LongTensor | None = None,
                gates: torch.Tensor | None = None, **kwargs) -> FusedOutput:
        """Fused logits sum_i g_i * logits_i, their next-token loss if `labels`, and the gates.

        `gates` ([B, T, N] or [N]) replaces the router: oracle routing and tests.
        Other keyword arguments (use_cache, return_dict, ...) are accepted and ignored.
        """
        hidden = self.expert_hidden(input_ids, attention_mask, position_ids)
        return self.fuse(hidden, attention_mask=attention_mask, labels=labels, gates=gates)

    # ---- generation (no cache: each step sees the whole sequence) --------------------

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, gates=None, **kwargs):
        # The whole sequence every step, never the cached tail transformers would slice off.
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if gates is not None:  # fixed [N] gates (e.g. one expert alone) carry over to every step
            inputs["gates"] = gates
        if attention_mask is not None:
            # Left padding: positions count real tokens only, as transformers' generate does.
            position_ids = attention_mask.long().cumsum(-1) - 1
            inputs["position_ids"] = position_ids.masked_fill(attention_mask == 0, 0)
        return inputs

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_in

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_in = value


def run_layers(layers, x, mask, position_ids, rope):
    for layer in layers:
        x = layer(x, attention_mask=mask, position_ids=position_ids, position_embeddings=rope)
    return x


def check_choice(what: str, value: str, choices) -> None:
    if value not in choices:
        raise KalavaiError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


def check_same_config(specialists, names) -> None:
    def essential(model):
        d = model.config.to_dict()
        return {k: v for k, v in d.items() if k not in _VOLATILE_CONFIG_KEYS}

    ref = essential(specialists[0])
    for model, name in zip(specialists[1:], names[1:]):
        diff = sorted(k for k in ref.keys() | essential(model).keys() if ref.get(k) != essential(model).get(k))
        if diff:
            raise KalavaiError(f"specialist {name!r} has a different config from {names[0]!r}: {', '.join(diff)}")


def check_same_prefix(states: list[dict], names: list[str], freeze_layers: int) -> None:
    """The frozen prefix must be bit-identical in every specialist, or it cannot be shared."""
    for key in frozen_prefix_names(states[0].keys(), freeze_layers):
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


def fused_state_dict(states: list[dict], freeze_layers: int) -> dict:
    """Map the specialists' GPT-NeoX names onto the fused model's (router excluded)."""
    out = {}
    for key, value in states[0].items():
        if key.startswith("gpt_neox.embed_in."):
            out[key.replace("gpt_neox.", "", 1)] = value
        elif key.startswith("gpt_neox.layers."):
            i = int(key.split(".")[2])
            if i < freeze_layers:
                out[key.replace(f"gpt_neox.layers.{i}.", f"shared_layers.{i}.", 1)] = value
    for e, state in enumerate(states):
        for key, value in state.items():
            if key.startswith("gpt_neox.layers."):
                i = int(key.split(".")[2])
                if i >= freeze_layers:
                    out[key.replace(f"gpt_neox.layers.{i}.", f"experts.{e}.layers.{i - freeze_layers}.", 1)] = value
            elif key.startswith("gpt_neox.final_layer_norm."):
                out[key.replace("gpt_neox.", f"experts.{e}.", 1)] = value
            elif key.startswith("lm_head."):
                out[f"experts.{e}.{key}"] = value
    return out


@torch.no_grad()
def weight_average(specialists: list[GPTNeoXForCausalLM]) -> GPTNeoXForCausalLM:
    """The paper's weight-averaging baseline: the element-wise mean of all parameters."""
    if not specialists:
        raise KalavaiError("no specialists to average")
    check_same_config(specialists, [f"#{i}" for i in range(len(specialists))])
    avg = copy.deepcopy(specialists[0])
    states = [s.state_dict() for s in specialists]
    for key, value in avg.state_dict().items():
        if value.is_floating_point():
            # Sum in float64: exact for fp32/bf16 inputs, so averaging N copies of x gives x back.
            total = sum(s[key].double() for s in states)
            value.copy_((total / len(states)).to(value.dtype))
    return avg


AutoConfig.register(FusedConfig.model_type, FusedConfig)
AutoModelForCausalLM.register(FusedConfig, FusedModel)
