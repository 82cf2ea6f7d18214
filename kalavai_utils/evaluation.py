"""The one evaluation protocol (facts page, section 3); the definitions live in metrics.py.

Each domain's held-out chunks are evaluated separately, in order, in batches of 4, at most
50 batches; a domain's loss is the mean of the batch mean losses; the equal-weight (EW)
loss is the plain mean over domains. Every model (base, specialist, weight average,
monolithic, fused) goes through `evaluate_domains`, so they are compared the same way.
"""
from __future__ import annotations

import torch

from .errors import KalavaiError


@torch.no_grad()
def domain_loss(model, chunks: torch.Tensor, batch_size: int = 4, max_batches: int = 50, on_output=None) -> float:
    """Mean of per-batch mean next-token losses over a domain's chunks, in order.

    `on_output(output)` sees every batch's model output (the fused model's gates, say),
    so nothing needs a second pass over the data.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for i in range(0, len(chunks), batch_size):
        if len(losses) == max_batches:
            break
        batch = chunks[i : i + batch_size].to(device)
        out = model(input_ids=batch, labels=batch, use_cache=False)
        losses.append(out.loss.float().item())
        if on_output is not None:
            on_output(out)
    model.train(was_training)
    if not losses:
        raise KalavaiError("cannot evaluate on an empty set of chunks")
    return sum(losses) / len(losses)


def evaluate_domains(model, heldout: dict[str, torch.Tensor], batch_size: int = 4, max_batches: int = 50,
                     on_output=None) -> dict[str, float]:
    """Every domain's loss; `on_output(domain, output)` sees each batch's output."""
    hook = (lambda d: (lambda out: on_output(d, out))) if on_output else (lambda d: None)
    return {d: domain_loss(model, chunks, batch_size, max_batches, hook(d)) for d, chunks in heldout.items()}
