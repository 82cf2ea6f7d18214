"""A BTX-style joint fine-tune of a fused model: the experts' suffixes and the router trained together.

The authors' later head-to-head with Branch-Train-Mix (their w5 script) takes the fused
model, unfreezes the experts and trains them and the router together on the fused model's
own next-token loss (model level: the mixture of the experts' logits, not BTX's merged
feed-forward layers), on batches drawn from all domains' train chunks. Their settings:
500 sequences of one chunk each, gradients accumulated over 8 (their specialists' global
batch, 2 x 4), so 62 optimizer steps; AdamW at 1e-5 (half their specialists' 2e-5), default
weight decay, no schedule, gradient norm clipped at 1.0. `JointRecipe` states these relative to
a scale: the sequences are the scale's router steps (the authors' 500), the global batch is the
scale's specialist batch, the learning rate a fraction of the specialist's.

Here only what the protocol lets a coordinator train moves: every expert's suffix (its blocks
after the frozen depth, final norm and output head) and the router; the shared frozen prefix
and embedding stay the base's (a tied head, which is the shared embedding, stays too). The
fused model starts from router-only fusion (the experts as submitted, the router as fitted),
so the joint fine-tune is extra compute on top of it; the authors' joint run started its router
from a fresh init, which at their 1e-5 barely moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..errors import KalavaiError
from ..runtime.prefix import for_fused
from ..scales import Scale


@dataclass(frozen=True)
class JointRecipe:
    """How the joint fine-tune trains, relative to the scale (the authors' values by default)."""

    name: str = "joint"  # the fused model's name gets "+joint" (cooperative.fused_name)
    sequences_factor: float = 1.0  # sequences = router_steps x this (the authors: 500 = their router steps)
    lr_factor: float = 0.5  # x the scale's specialist learning rate (the authors: 1e-5 against 2e-5)
    weight_decay: float = 0.01  # AdamW's default, as theirs
    clip: float = 1.0

    def sequences(self, s: Scale) -> int:
        return round(s.router_steps * self.sequences_factor)

    def global_batch(self, s: Scale) -> int:
        return s.micro_batch * s.grad_accum

    def optimizer_steps(self, s: Scale) -> int:
        return self.sequences(s) // self.global_batch(s)

    def lr(self, s: Scale) -> float:
        return s.spec_lr * self.lr_factor

    def settings(self, s: Scale) -> dict:
        """What the fine-tune does at scale `s`, for a cache key and for the notebook to print."""
        return {
            "sequences": self.sequences(s),
            "global_batch": self.global_batch(s),
            "micro_batch": s.micro_batch,
            "optimizer_steps": self.optimizer_steps(s),
            "lr": self.lr(s),
            "weight_decay": self.weight_decay,
            "clip": self.clip,
        }


JOINT = JointRecipe()


def trainable_parameters(fused, router) -> list[torch.nn.Parameter]:
    """The experts' suffix parameters and the router's; nothing shared with the frozen prefix."""
    shared = {id(p) for m in (fused.embed_in, fused.shared_layers) for p in m.parameters()}
    experts = [p for p in fused.experts.parameters() if id(p) not in shared]  # a tied head is the embedding
    return experts + list(router.parameters())


def joint_finetune(
    fused, router, granularity: str, chunks: torch.Tensor, s: Scale, seed: int, recipe: JointRecipe = JOINT
) -> list[float]:
    """Train `fused`'s expert suffixes and `router` together, in place; returns the loss of each optimizer step.

    Batches of `s.micro_batch` chunks are drawn uniformly from `chunks` (all domains' train
    chunks concatenated) with a generator seeded by `seed`, and gradients are accumulated over
    `s.grad_accum` of them. The loss is the fused model's: the router's soft gates mix the
    experts' logits, as in router-only fusion, but gradients reach the experts too.
    """
    chunks = torch.as_tensor(chunks)
    steps = recipe.optimizer_steps(s)
    if chunks.ndim != 2 or len(chunks) == 0:
        raise KalavaiError(f"the joint fine-tune needs chunks shaped [n, T] with n > 0, got {tuple(chunks.shape)}")
    if steps < 1:
        raise KalavaiError(
            f"the joint fine-tune at {s.name} has {recipe.sequences(s)} sequences, fewer than one batch of "
            f"{recipe.global_batch(s)}"
        )
    params = trainable_parameters(fused, router)
    for p in fused.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    batched, fused.config.batched_experts = fused.config.batched_experts, False  # stacked copies get no gradient
    device = fused.embed_in.weight.device
    g = torch.Generator().manual_seed(seed)
    batches = [chunks[torch.randint(len(chunks), (s.micro_batch,), generator=g)] for _ in range(steps * s.grad_accum)]
    states = for_fused(fused)  # the frozen prefix's output, computed ahead for every batch
    if states is not None:
        states.prefill(torch.cat(batches).unique(dim=0))
    opt = torch.optim.AdamW(params, lr=recipe.lr(s), weight_decay=recipe.weight_decay)
    fused.train()
    router.train()
    losses = []
    try:
        for step in tqdm(range(steps), desc="joint fine-tune", disable=None):
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for x in batches[step * s.grad_accum : (step + 1) * s.grad_accum]:
                x = x.to(device)
                hidden = fused.expert_hidden(x, states=states)
                out = fused.fuse(hidden, labels=x, mode="soft", router=router, granularity=granularity)
                (out.loss / s.grad_accum).backward()
                total += out.loss.item() / s.grad_accum
            torch.nn.utils.clip_grad_norm_(params, recipe.clip)
            opt.step()
            losses.append(total)
    finally:
        fused.config.batched_experts = batched
        fused.eval()
        router.eval()
        for p in params:
            p.requires_grad_(False)
    return losses
