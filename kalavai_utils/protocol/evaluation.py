"""The one evaluation protocol (PAPER.md, evaluation); the definitions live in metrics.py.

Each domain's held-out chunks are evaluated separately, in order, in batches of 4, at most
50 batches; a domain's loss is the mean of the batch mean losses; the equal-weight (EW)
loss is the plain mean over domains. Every model (base, specialist, weight average,
monolithic, fused) goes through `domain_losses`, alone (`evaluate_domains`) or with the
models that share its work on a batch (cooperative.evaluate_pass: every expert, router
and mode of one fused model), so they are compared the same way.
"""

from __future__ import annotations

import torch

from ..errors import KalavaiError
from ..runtime.prefix import lm_output


def heldout_batches(chunks: torch.Tensor, batch_size: int = 4, max_batches: int = 50) -> list[torch.Tensor]:
    """A domain's evaluation batches: its chunks in order, `batch_size` at a time, at most `max_batches`."""
    n = min(len(chunks), batch_size * max_batches)
    return [chunks[i : i + batch_size] for i in range(0, n, batch_size)]


@torch.no_grad()
def domain_losses(batch_losses, chunks: torch.Tensor, batch_size: int = 4, max_batches: int = 50) -> dict[str, float]:
    """Several models' losses on one domain from a single pass over its batches.

    `batch_losses(batch)` returns {model name: that batch's mean loss}. Each model's domain
    loss is the mean of its batch means, exactly as `domain_loss`. Models that share work on
    a batch (the fused model's experts, its routers and modes) then pay for it once.
    """
    losses: dict[str, list[float]] = {}
    for batch in heldout_batches(chunks, batch_size, max_batches):
        for name, loss in batch_losses(batch).items():
            losses.setdefault(name, []).append(loss.float().item())
    if not losses:
        raise KalavaiError("cannot evaluate on an empty set of chunks")
    return {name: sum(v) / len(v) for name, v in losses.items()}


@torch.no_grad()
def domain_loss(
    model, chunks: torch.Tensor, batch_size: int = 4, max_batches: int = 50, on_output=None, states=None
) -> float:
    """Mean of per-batch mean next-token losses over a domain's chunks, in order.

    `on_output(output)` sees every batch's model output (the fused model's gates, say),
    so nothing needs a second pass over the data. `states` (prefix.for_model(model, K)):
    the frozen prefix's output is read back for chunks already seen (the same losses).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device

    def batch_loss(batch):
        batch = batch.to(device)
        out = lm_output(model, states, batch, labels=batch)
        if on_output is not None:
            on_output(out)
        return {"model": out.loss}

    try:
        return domain_losses(batch_loss, chunks, batch_size, max_batches)["model"]
    finally:
        model.train(was_training)


def evaluate_domains(
    model, heldout: dict[str, torch.Tensor], batch_size: int = 4, max_batches: int = 50, on_output=None, states=None
) -> dict[str, float]:
    """Every domain's loss; `on_output(domain, output)` sees each batch's output; `states` as in `domain_loss`."""
    hook = (lambda d: lambda out: on_output(d, out)) if on_output else (lambda d: None)
    return {d: domain_loss(model, chunks, batch_size, max_batches, hook(d), states) for d, chunks in heldout.items()}
