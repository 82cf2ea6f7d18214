"""Throughput accounting: the machine's measured matmul peak and a model's training FLOPs."""
from __future__ import annotations

import time

import torch


def measure_matmul_peak(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 20) -> float:
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


def training_flops_per_token(n_params: int, n_layers: int, seq_len: int, d_model: int) -> float:
    """Forward + backward FLOPs per token: 6N for the weights plus the attention scores (PaLM's count)."""
    return 6 * n_params + 12 * n_layers * seq_len * d_model
