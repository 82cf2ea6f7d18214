"""Notebook 07's figures, drawn from an inference benchmark JSON (inference.run_benchmark) only."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import figures  # noqa: F401  (the project's theme and headless backend)

LABELS = {
    "separate": "N separate forwards",
    "dense": "dense fused (loop)",
    "dense-batched": "dense fused (batched)",
    "top1-sequence": "top-1 per sequence",
    "top2-sequence": "top-2 per sequence",
    "top1-token": "top-1 per token",
    "top2-token": "top-2 per token",
}


def ratio_vs_ideal(bench: dict):
    """Latency x one model, measured, against the ideal dense ratio 1 + (N-1)(L-K)/L: across N, and across K."""
    s = bench["settings"]
    df = pd.DataFrame(bench["forward"])
    df = df[df["variant"].isin(LABELS)].assign(what=lambda d: d["variant"].map(LABELS))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (axis, fixed) in zip(
        axes, (("n_experts", {"freeze_layers": s["main_freeze_layers"]}), ("freeze_layers", {"n_experts": s["main_n"]}))
    ):
        part = df[(df["batch"] == s["main_batch"]) & (df[list(fixed)] == pd.Series(fixed)).all(axis=1)]
        sns.lineplot(data=part, x=axis, y="latency_x_single", hue="what", marker="o", ax=ax, seed=0)
        ideal = part.drop_duplicates(axis).sort_values(axis)
        ax.plot(ideal[axis], ideal["ideal_dense_ratio"], "k--", label="ideal 1 + (N-1)(L-K)/L")
        ax.plot(ideal[axis], ideal["flops_ratio"], "k:", label="ideal, output heads counted")
        where = ", ".join(f"{'K' if k == 'freeze_layers' else 'N'}={v}" for k, v in fixed.items())
        ax.set(
            xlabel="experts N" if axis == "n_experts" else "frozen blocks K",
            ylabel="latency / one model",
            title=f"{where}, batch {s['main_batch']}",
            yscale="log" if axis == "n_experts" else "linear",
        )
        ax.legend(fontsize=7)
    fig.suptitle(f"Fused forward cost vs the ideal ({bench['device_name']}, {bench['dtype']}, scale {bench['scale']})")
    fig.tight_layout()
    return fig


def generation_speed(bench: dict):
    """Tokens/s of generation with and without the KV cache, one model and the dense fused model."""
    df = pd.DataFrame(bench["generation"])
    df["how"] = df["model"].map({"single": "one model", "dense": "dense fused"}) + df["cache"].map(
        {True: ", cached", False: ", cache-free"}
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.barplot(data=df, x="new_tokens", y="tokens_per_s", hue="how", ax=ax, seed=0)
    ax.set(
        xlabel="new tokens",
        ylabel="tokens / s",
        yscale="log",
        title=f"Generation, batch 1 (N={bench['settings']['main_n']}, {bench['device_name']})",
    )
    fig.tight_layout()
    return fig
