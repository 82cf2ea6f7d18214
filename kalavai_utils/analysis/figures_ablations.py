"""Figures of notebook 05 (the ablations): figures/<scale>/05_*.png, drawn from its tables."""

from __future__ import annotations

import textwrap

import pandas as pd

from .. import paper

# ================================================================ figures (figures/<scale>/05_*.png)


def _two_panels(title: str, width: float = 11):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(width, 4))
    fig.suptitle(title)
    return fig, axes


def plot_freeze(table: pd.DataFrame):
    import seaborn as sns

    fig, (ax, axp) = _two_panels("Gain vs number of frozen blocks")
    long = table.melt(
        id_vars="frozen blocks K",
        value_vars=["gain (%)", "gain, causal router (%)"],
        var_name="router",
        value_name="gain",
    )
    sns.lineplot(long, x="frozen blocks K", y="gain", hue="router", marker="o", ax=ax, seed=0)
    ax.set(title="this run", ylabel="gain vs best specialist (%)")
    sns.lineplot(
        x=list(paper.FREEZE_SWEEP_410M), y=list(paper.FREEZE_SWEEP_410M.values()), marker="o", color="gray", ax=axp
    )
    axp.set(title="the paper (Pythia-410M, 2k steps)", xlabel="frozen blocks K", ylabel="gain vs best specialist (%)")
    return fig


def plot_crossover(table: pd.DataFrame, paper_table: pd.DataFrame):
    import seaborn as sns

    fig, (ax, axp) = _two_panels("Improvement over the base vs training steps")
    fig.subplots_adjust(top=0.78)  # room for the panels' two-line titles under the figure's
    sns.lineplot(
        table.melt(id_vars="step", var_name="frozen", value_name="improvement"),
        x="step",
        y="improvement",
        hue="frozen",
        marker="o",
        ax=ax,
        seed=0,
    )
    ax.set_title(textwrap.fill("this run: " + table.attrs.get("what", ""), 48), fontsize=9)
    ax.set(ylabel="improvement vs base (%)")
    sns.lineplot(
        paper_table.melt(id_vars="step", var_name="frozen", value_name="improvement"),
        x="step",
        y="improvement",
        hue="frozen",
        marker="o",
        ax=axp,
        palette="Greys",
    )
    axp.set_title(
        "the paper (410M): the fused model's equal-weight\nimprovement over the base, one cooperative per step count",
        fontsize=9,
    )
    axp.set(xscale="log", ylabel="improvement vs base (%)")
    return fig


def plot_maturity(table: pd.DataFrame):
    import seaborn as sns

    fig, (ax, axp) = _two_panels("Gain vs the shared base's pretraining revision")
    sns.lineplot(table, x="step", y="gain (%)", marker="o", ax=ax, seed=0)
    ax.set(title="this run", xlabel="base revision (pretraining step)", ylabel="gain vs best specialist (%)")
    sns.lineplot(
        x=list(paper.MATURITY_410M),
        y=list(paper.MATURITY_410M.values()),
        marker="o",
        color="gray",
        ax=axp,
        label="410M",
    )
    sns.lineplot(
        x=list(paper.MATURITY_1B_ENDPOINTS),
        y=list(paper.MATURITY_1B_ENDPOINTS.values()),
        marker="s",
        color="black",
        ax=axp,
        label="1B (ends only)",
    )
    axp.set(xscale="log", title="the paper", xlabel="Pythia revision (step)", ylabel="gain vs best specialist (%)")
    return fig


def plot_gates(matrices: dict[str, pd.DataFrame]):
    """Gate matrices side by side: rows = held-out domain, columns = expert."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(matrices), figsize=(4.5 * len(matrices), 3.8), squeeze=False)
    for ax, (title, m) in zip(axes[0], matrices.items()):
        sns.heatmap(m, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="Blues", cbar=False, ax=ax)
        ax.set(title=title, xlabel="expert", ylabel="held-out domain")
    fig.suptitle("Mean gate weights (authors' router)")
    return fig


def plot_bars(
    table: pd.DataFrame, x: str, ys: list[str], title: str, paper_line: float | None = None, paper_label: str = ""
):
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = _two_panels(title, width=5.5 * len(ys))
    for ax, y in zip(list(axes)[: len(ys)], ys):
        sns.barplot(table, x=x, y=y, ax=ax, color="C0", seed=0)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")  # long labels, readable
        if paper_line is not None and y.startswith("gain"):
            ax.axhline(paper_line, color="gray", ls="--", label=paper_label)
            ax.set_ylim(top=max(ax.get_ylim()[1], paper_line) * 1.25)  # room for the legend above the line
            ax.legend(loc="upper left", fontsize=9)
    for ax in list(axes)[len(ys) :]:
        ax.set_visible(False)
    return fig


def plot_count(table: pd.DataFrame):
    import seaborn as sns

    fig, (ax, axp) = _two_panels("Gain vs number of specialists (every count on the same held-out domains)")
    sns.lineplot(table, x="specialists", y="gain (%)", marker="o", ax=ax, seed=0)
    ax.set(title="this run", ylabel="gain vs best specialist (%)")
    sns.lineplot(
        x=list(paper.SPECIALIST_COUNT), y=list(paper.SPECIALIST_COUNT.values()), marker="o", color="gray", ax=axp
    )
    axp.set(title="the paper (5-domain eval)", xlabel="specialists", ylabel="gain vs best specialist (%)")
    return fig
