"""The router that mixes the specialists, and its training (PAPER.md §1).

The router reads one vector h per position (the specialists' final hidden states, after
the final layer norm, averaged over the N specialists) and outputs N gate logits.
How h is formed is the router's *granularity*:

- "sequence": the authors' code. h is mean-pooled over ALL positions of the chunk, so
  one gate vector serves the whole sequence, and the gate at position t has seen the
  tokens after t (a non-causal leak: it could not be used to generate text).
- "token": the paper's text, and causal. The gate at position t reads h_t only, which a
  causal model computes from positions <= t.

Router training (`train_router`) follows the authors' code: every specialist frozen,
AdamW without a schedule, batches drawn from the concatenated train chunks of all
domains (so the mix follows chunk counts). Unlike their code it is seeded.

Two options of the authors' later code, both off by default (then training is exactly as
above): `warm_start`, their remedy for router collapse in the cross-lingual run (the first
steps draw each batch from ONE domain, round-robin, before mixed training), and, for their
many-expert run, a load-balancing term (`balance`, weight 0.05 there: `balance_loss`) with a
cosine learning-rate schedule (`schedule="cosine"`).

Two more recipes of their later code (RouterRecipe): `reinit`, their fix for a collapsed router
(a router drawn from another init seed, retrained from that init while a domain collapses,
`collapsed_domains`), and `text="own"`, a router trained on text of the coordinator's own
rather than on the contributors' chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import KalavaiError
from ..runtime.prefix import for_fused

ROUTER_KINDS = ("linear", "mlp")
GRANULARITIES = ("sequence", "token")


class Router(nn.Module):
    """h [..., d] -> gate logits [..., N]. No biases (as in the paper and the code)."""

    def __init__(self, kind: str, d_model: int, n_experts: int, hidden: int = 256, seed: int = 0):
        super().__init__()
        if kind not in ROUTER_KINDS:
            raise KalavaiError(f"unknown router kind {kind!r}; choose one of: {', '.join(ROUTER_KINDS)}")
        self.kind, self.seed = kind, seed
        if kind == "linear":
            self.net = nn.Linear(d_model, n_experts, bias=False)
        else:
            self.net = nn.Sequential(
                nn.Linear(d_model, hidden, bias=False),
                nn.ReLU(),
                nn.Linear(hidden, n_experts, bias=False),
            )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """PyTorch's default Linear init, but drawn from a generator seeded with `self.seed`."""
        g = torch.Generator().manual_seed(self.seed)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                if layer.weight.is_meta:  # built for from_pretrained: the weights come from the file
                    continue
                w = torch.empty(layer.weight.shape, dtype=torch.float32, device="cpu")
                nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
                layer.weight.copy_(w)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def make_router(kind: str, d_model: int, n_experts: int, hidden: int = 256, seed: int = 0) -> Router:
    """kind "linear": Linear(d, N); "mlp": Linear(d, hidden) -> ReLU -> Linear(hidden, N); seeded init."""
    return Router(kind, d_model, n_experts, hidden=hidden, seed=seed)


def pool_router_input(h: torch.Tensor, granularity: str, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """h [B, T, d] (already averaged over experts) -> router input [B, T, d] for this granularity."""
    if granularity == "token":
        return h
    if granularity != "sequence":
        raise KalavaiError(f"unknown granularity {granularity!r}; choose one of: {', '.join(GRANULARITIES)}")
    if attention_mask is None:
        pooled = h.mean(dim=1, keepdim=True)
    else:
        m = attention_mask.to(h.dtype).unsqueeze(-1)  # padding must not dilute the mean
        pooled = (h * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp_min(1.0)
    return pooled.expand_as(h)


def stack_logits(per_expert, n: int) -> torch.Tensor:
    """N experts' logits, each [B, T, V], as one [N, B, T, V] tensor stored position by position.

    In memory it is [B, T, N, V] (the result is a permuted view): the mixture and the
    per-token losses read all N experts' logits at each position, which then lie side by side,
    so `mix_logits` is one small batched matmul instead of N passes over [B, T, V] blocks
    (several times faster at tiny; the values are the same).
    """
    out = None
    for i, logits in enumerate(per_expert):
        if out is None:
            out = logits.new_empty(*logits.shape[:-1], n, logits.shape[-1])
        out[..., i, :] = logits
    if out is None:
        raise KalavaiError("no experts to stack")
    return out.permute(2, 0, 1, 3)


def mix_logits(expert_logits: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """sum_i g_i * logits_i: [N, B, T, V] x [B, T, N] -> [B, T, V] (a mixture in logit space).

    With one-hot gates it returns the chosen expert's logits bit for bit (x*1 + y*0 == x in
    any order of summation), which the tests rely on. Fastest on `stack_logits`' layout.
    """
    n, b, t, v = expert_logits.shape
    per_position = expert_logits.permute(1, 2, 0, 3).reshape(b * t, n, v)  # a view when position-major
    return torch.bmm(gates.reshape(b * t, 1, n), per_position).view(b, t, v)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy: position t predicts labels[t+1] (as GPT-NeoX does)."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
    )


def token_losses(expert_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each expert's next-token loss at every position: [N, B, T, V] logits -> [N, B, T-1].

    Position t predicts labels[t+1], as in `causal_lm_loss`, whose value is the mean of one
    expert's row (labels are the evaluation's token ids, never ignored positions).
    """
    n, b, t, v = expert_logits.shape
    # Every position, the last one against a dummy target and then dropped: cutting it off
    # first would copy all the logits. A view when the logits are position-major (stack_logits).
    targets = labels.roll(-1, dims=1).unsqueeze(-1).expand(b, t, n).reshape(-1)
    losses = F.cross_entropy(expert_logits.permute(1, 2, 0, 3).reshape(-1, v).float(), targets, reduction="none")
    return losses.view(b, t, n)[:, :-1].permute(2, 0, 1)


SCHEDULES = ("constant", "cosine")
ROUTER_TEXTS = ("train", "own")
REINIT_SEED_OFFSET = 1000
COLLAPSE_SHARE = 0.5  # a domain whose own expert gets less than this share of its gate weight has collapsed


def balance_loss(gates: torch.Tensor) -> torch.Tensor:
    """The authors' load-balancing term: ||mean gate - 1/N||^2, the mean over every position.

    gates [..., N]. Zero when the experts share the batch equally on average, whatever each
    position's own gates are; largest (1 - 1/N) when one expert takes everything.
    """
    mean = gates.reshape(-1, gates.shape[-1]).float().mean(dim=0)
    return (mean - 1.0 / gates.shape[-1]).pow(2).sum()


# A warm start's single-domain batches are drawn apart from the mixed ones (seed + this), so that
# after its warm start a router takes the same mixed batches as every other router of its text.
WARM_SEED_OFFSET = 7919


def warm_start_batches(domain_chunks, steps: int, batch: int, generator: torch.Generator):
    """`steps` single-domain batches, the domains in turn (the authors' warm start): step i
    draws `batch` chunks of domain i mod D, uniformly, with `generator`."""
    for i in range(steps):
        chunks = domain_chunks[i % len(domain_chunks)]
        yield chunks[torch.randint(len(chunks), (batch,), generator=generator)]


def train_router(
    fused,
    chunks: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: bool = True,
    **options,
) -> list[float]:
    """Train only `fused.router` on next-token loss over `chunks` [n, T]; returns the loss of each step.

    `options` are train_routers' (warm_start, warm_steps, balance, schedule)."""
    return train_routers(
        fused,
        [(fused.router, fused.config.granularity)],
        chunks,
        steps,
        batch,
        lr,
        weight_decay,
        seed,
        progress,
        **options,
    )[0]


@dataclass(frozen=True)
class RouterRecipe:
    """How a router is trained, beyond the scale's plain recipe (AdamW, constant lr, mixed batches).

    A router with a recipe other than PLAIN is named after it (cooperative.fused_name).
    """

    name: str = "plain"
    steps_factor: float = 1.0  # x the scale's router_steps
    warm_fraction: float = 0.0  # share of the steps on single-domain batches, domains in turn
    balance: float = 0.0  # weight of balance_loss
    schedule: str = "constant"
    # > 0: the router's init is drawn from `init_seed(seed, attempt)` (never the plain router's), and
    # while a domain collapses on the training text (`collapsed_domains`) it is drawn again and
    # retrained, at most this many attempts in all
    reinit: int = 0
    text: str = "train"  # "train": the contributors' train chunks; "own": the coordinator's own text

    def __post_init__(self):
        if self.text not in ROUTER_TEXTS:
            raise KalavaiError(f"unknown router text {self.text!r}; choose one of: {', '.join(ROUTER_TEXTS)}")
        if self.reinit < 0:
            raise KalavaiError(f"reinit={self.reinit}: the number of attempts is 0 (off) or more")

    def init_seed(self, seed: int, attempt: int = 1) -> int:
        """The seed of the router's init at `attempt` (1, 2, ...): the cooperative's seed unless
        `reinit`, then seed + REINIT_SEED_OFFSET + attempt (the authors drew 1000 + attempt)."""
        return seed + REINIT_SEED_OFFSET + attempt if self.reinit else seed

    def steps(self, router_steps: int) -> int:
        return round(router_steps * self.steps_factor)

    def warm_steps(self, router_steps: int) -> int:
        return round(self.steps(router_steps) * self.warm_fraction)


PLAIN = RouterRecipe()


def collapsed_domains(gates: dict, experts: list[str], share: float = COLLAPSE_SHARE) -> list[str]:
    """The domains whose router collapsed: their own expert gets less than `share` of their gate weight.

    `gates` {domain: mean gate vector over `experts`, in that order}; domains that are no expert are skipped.
    """
    return sorted(d for d, g in gates.items() if d in experts and float(g[experts.index(d)]) < share)


@torch.no_grad()
def mean_gates(fused, router: nn.Module, granularity: str, domain_chunks: dict, batch: int) -> dict[str, list[float]]:
    """Each domain's mean soft gate vector over its chunks (`domain_chunks` {domain: [n, T]}), in batches."""
    device = fused.embed_in.weight.device
    states = for_fused(fused)
    out = {}
    for domain, chunks in domain_chunks.items():
        sums, n = 0.0, 0
        for i in range(0, len(chunks), batch):
            x = torch.as_tensor(chunks[i : i + batch]).to(device)
            hidden = fused.expert_hidden(x, states=states)
            g = fused.gates_from(pool_router_input(hidden.mean(dim=0), granularity), "soft", router)
            sums, n = sums + g.float().mean(dim=1).sum(dim=0), n + len(x)
        out[domain] = (sums / max(n, 1)).tolist()
    return out


def train_routers(
    fused,
    routers: list[tuple[nn.Module, str]],
    chunks: torch.Tensor,
    steps,
    batch: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: bool = True,
    *,
    warm_start=None,
    warm_steps: int = 0,
    balance=0.0,
    schedule="constant",
) -> list[list[float]]:
    """Train several (router, granularity) pairs for the frozen experts of `fused`, side by side.

    Each router ends exactly as if trained alone with `train_router`: the same seeded batches
    in the same order, its own AdamW. The experts are frozen, so their hidden states and
    logits for a batch are the same for every router: they are computed once per step and
    shared, and each router pays only for its gates, the mixture and the loss.

    `steps`, `balance`, `schedule` and `warm_steps` are one value for every router or a list,
    one per router: routers that differ only in those share the batches too (a router with
    fewer steps sees the first batches of the longer run, which are the batches it draws
    alone; a warm-started router sees the mixed batch of every step after its warm start).

    `chunks` are all domains' train chunks concatenated. Batches are drawn uniformly with a
    seeded generator, so the domain mix follows the chunk counts as in the authors' code.
    Gates are always soft here (hard gates have no gradient); the model's mode is for use.
    Options (the defaults train as described above):
    - warm_start: a list of per-domain chunk tensors; a router's first `warm_steps` steps take
      single-domain batches from them in turn (`warm_start_batches`, drawn with a generator of
      their own, seed + WARM_SEED_OFFSET), the rest the mixed batches of those steps;
    - balance: weight of `balance_loss` added to the next-token loss (the logged loss is
      the next-token loss alone, comparable across settings);
    - schedule: "constant" (AdamW at `lr`) or "cosine" (annealed from `lr` to 0 over the router's steps).
    Returns each router's loss at every one of its steps.
    """
    chunks = torch.as_tensor(chunks)
    n = len(routers)
    steps, balance, schedule, warm_steps = (
        list(v) if isinstance(v, (list, tuple)) else [v] * n for v in (steps, balance, schedule, warm_steps)
    )
    if not len(steps) == len(balance) == len(schedule) == len(warm_steps) == n:
        raise KalavaiError(f"steps, balance, schedule and warm_steps need one value or one per router ({n})")
    if chunks.ndim != 2 or len(chunks) == 0:
        raise KalavaiError(f"router training needs chunks shaped [n, T] with n > 0, got {tuple(chunks.shape)}")
    for sched in schedule:
        if sched not in SCHEDULES:
            raise KalavaiError(f"unknown router schedule {sched!r}; choose one of: {', '.join(SCHEDULES)}")
    for w, n_steps in zip(warm_steps, steps):
        if not 0 <= w <= n_steps or (w and not warm_start):
            raise KalavaiError(f"warm_steps={w} needs 0 <= warm_steps <= steps={n_steps} and per-domain chunks")
    for p in fused.parameters():
        p.requires_grad_(False)
    for router, _ in routers:
        for p in router.parameters():
            p.requires_grad_(True)
    fused.eval()  # the specialists are frozen; nothing in them should behave as in training
    device = fused.embed_in.weight.device
    opts = [torch.optim.AdamW(router.parameters(), lr=lr, weight_decay=weight_decay) for router, _ in routers]
    scheds = [
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps) if sched == "cosine" else None
        for opt, n_steps, sched in zip(opts, steps, schedule)
    ]
    g = torch.Generator().manual_seed(seed)
    g_warm = torch.Generator().manual_seed(seed + WARM_SEED_OFFSET)
    warm = list(warm_start_batches([torch.as_tensor(c) for c in warm_start or []], max(warm_steps), batch, g_warm))
    states = for_fused(fused)  # the shared prefix's output, read back for chunks already seen
    # every batch drawn first (the draws do not depend on training), so that the shared prefix's
    # output for all of them is computed ahead in large batches and read back at each step
    mixed = [chunks[torch.randint(len(chunks), (batch,), generator=g)] for _ in range(max(steps))]
    if states is not None:
        states.prefill(torch.cat(mixed + warm).unique(dim=0))

    losses = [[] for _ in routers]
    bar = tqdm(
        range(max(steps)), desc="router" if n == 1 else f"{n} routers", disable=None if progress else True
    )  # None: off when not a terminal (a kernel), and TQDM_DISABLE works
    for step in bar:
        experts = {}  # the frozen experts' output on each batch this step needs: mixed, warm or both
        for (router, granularity), opt, sched, n_steps, weight, w, log in zip(
            routers, opts, scheds, steps, balance, warm_steps, losses
        ):
            if step >= n_steps:
                continue
            kind = "warm" if step < w else "mixed"
            if kind not in experts:
                x = (warm if kind == "warm" else mixed)[step].to(device)
                with torch.no_grad():  # gradient flows through the gates only
                    hidden = fused.expert_hidden(x, states=states)
                    experts[kind] = (x, hidden, fused.unembed(hidden).float())
            x, hidden, logits = experts[kind]
            out = fused.fuse(hidden, logits, labels=x, mode="soft", router=router, granularity=granularity)
            loss = out.loss + weight * balance_loss(out.gates) if weight else out.loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            log.append(out.loss.item())
        bar.set_postfix(loss=" ".join(f"{log[-1]:.4f}" for log in losses))
    return losses
