"""Throughput accounting: the machine's measured matmul peak and a model's training FLOPs.

How training FLOPs are counted (`training_flops_per_token`), per token of a sequence of T
tokens, for a model of hidden size d (GPT-NeoX's names below; every family, families.py, alike):

- Only matrix multiplications count. A weight matrix W (every `nn.Linear`: attention's
  query_key_value and dense, the MLP's two projections, the output head) costs 2|W| in the
  forward pass. The input embedding is a table lookup and costs nothing; biases, layer norms,
  softmax and rotary are elementwise and left out (well under 1% at every scale here).
- Attention's two products with the sequence, Q K^T and the weighted sum of V, cost
  2 T d each per layer in the forward pass, counted over the full T x T square (eager and
  SDPA attention compute it; a causal flash kernel skips about half). PaLM counts the same.
- Backward pass, per weight matrix W: 2|W| for its weight gradient, only when W is trained,
  and 2|W| for the gradient of its input, only when some trained parameter lies before it
  (the gradient has somewhere to go). Attention's two products cost 2 x their forward
  (gradients of both operands) in every layer whose query_key_value output needs a
  gradient (the family's `queries` linear: query_key_value, or Llama's q_proj). So a frozen
  prefix (the embedding and the first K blocks) costs forward FLOPs only, and frozen layers
  above a trained one would still cost their input gradients.
- "Before" is the order in which the model defines its modules, which for GPT-NeoX is the
  order data flows through them (in a parallel-residual block both branches read a layer
  norm defined before them, so a trained block passes gradients to all its matmuls); a
  Llama-family block defines its attention and MLP first, and so reads the same way.

With everything trained this is 6N + 12 L T d with N the matmul weights (not the embedding):
PaLM's count. The old count, 6 x all parameters, overstated the fraction of peak by counting
the embedding lookup and backward passes that frozen blocks never run.
"""

from __future__ import annotations

import time

import torch

from ..families import family_of


def measure_matmul_peak(
    device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 20
) -> float:
    """FLOP/s of a square matmul on this device: the denominator for 'fraction of peak'."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def linear_forward_flops(name: str, linear: torch.nn.Linear, seq_len: int, d: int, queries: str) -> float:
    """2|W| per token, and for attention's queries linear (`queries`) the two products with the sequence."""
    return 2 * linear.weight.numel() + (2 * 2 * seq_len * d if name.endswith(queries) else 0)


def training_flops(model: torch.nn.Module, seq_len: int) -> dict[str, float]:
    """Forward and backward FLOPs per token under the model's current `requires_grad` flags."""
    d = model.config.hidden_size
    queries = family_of(model.config).queries
    forward = backward = 0.0
    grad_flows = False  # does some trained parameter lie before the module being visited?
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, torch.nn.Linear):
            w = module.weight
            forward += linear_forward_flops(name, module, seq_len, d, queries)
            backward += 2 * w.numel() * (w.requires_grad + grad_flows)
            if name.endswith(queries) and (grad_flows or w.requires_grad):
                backward += 2 * 2 * 2 * seq_len * d
        grad_flows = grad_flows or any(p.requires_grad for p in own)
    return {"forward": forward, "backward": backward}


def training_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Forward + backward FLOPs per trained token (see the module docstring for what counts)."""
    f = training_flops(model, seq_len)
    return f["forward"] + f["backward"]


def prefix_forward_flops(model: torch.nn.Module, freeze_layers: int, seq_len: int) -> float:
    """Forward FLOPs per token of the first `freeze_layers` blocks, counted as above: what a step
    skips when the frozen prefix's output is read back (runtime/prefix.py) instead of computed."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    d = lm.config.hidden_size
    family = family_of(lm.config)
    return float(
        sum(
            linear_forward_flops(name, m, seq_len, d, family.queries)
            for layer in family.blocks_of(lm)[:freeze_layers]
            for name, m in layer.named_modules()
            if isinstance(m, torch.nn.Linear)
        )
    )


class Clock:
    """Wall seconds since it was made, recorded beside a step's output so that a finished run
    can say where its time went (benchmark.run_phases), with the threads they ran on (a worker
    beside another holds half the machine)."""

    def __init__(self):
        self.start = time.perf_counter()

    def spent(self) -> dict:
        return {"seconds": time.perf_counter() - self.start, "threads": torch.get_num_threads()}
