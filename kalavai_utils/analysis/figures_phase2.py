"""Figures of notebook 06 (Phase 2): the routers' gate grids and the base's weakness per domain."""

from __future__ import annotations

import pandas as pd

from ..protocol.results import gate_matrix

# ---------------------------------------------------------------- figures


def gate_grid(results: list[dict], models: list[str]):
    """Gate matrices (held-out domain x expert), one row per seed, one column per router."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    n = len(results[0]["domains"])
    size = 0.45 * n + 1.5
    fig, axes = plt.subplots(
        len(results), len(models), figsize=(size * len(models), size * len(results)), squeeze=False
    )
    for row, r in zip(axes, results):
        for ax, model in zip(row, models):
            df = gate_matrix(r, model)
            sns.heatmap(df, annot=n <= 6, fmt=".2f", vmin=0, vmax=1, cmap="Blues", cbar=False, ax=ax)
            ax.set(title=f"{model}, seed {r['seed']}", xlabel="expert", ylabel="held-out domain")
    fig.tight_layout()
    return fig


def weakness_plot(table: pd.DataFrame):
    """The base's loss per character on each domain, reference domains against the new ones."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.5))
    sns.barplot(data=table.reset_index(), y="domain", x="loss_per_char", hue="kind", dodge=False, ax=ax, seed=0)
    ax.set(xlabel="base loss per character (nats)", ylabel="", title="the shared base on each domain")
    return fig
