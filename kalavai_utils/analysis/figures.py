"""Figures of notebooks 01-03, drawn from training logs and results files only.

Each function draws on axes it is given (or makes a figure) and returns the figure; no
number is typed in. `save` writes PNGs atomically to figures/<scale>/.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: papermill and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..protocol.results import gate_matrix, specialist_names  # noqa: E402
from ..storage import atomic_write_bytes  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def save(fig, folder: str | Path, name: str) -> Path:
    """Write the figure to folder/name.png and, inside a notebook, show that same PNG in the cell's output.

    The backend is headless (Agg), so without this an executed notebook and its HTML report would
    hold no figures at all; the PNG shown is byte for byte the one in figures/<scale>/.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    png = small_png(buf.getvalue())
    path = atomic_write_bytes(Path(folder) / f"{name}.png", png)
    _show_in_notebook(png)
    plt.close(fig)
    return path


def small_png(png: bytes) -> bytes:
    """The same picture in 256 colours at most, about a third of the bytes: plots use few colours
    and a heatmap's gradient keeps 256 levels, so the committed figures stay small (Pillow,
    which matplotlib already needs; deterministic, so a rerun writes the same bytes)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _show_in_notebook(png: bytes) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":  # a Jupyter kernel (papermill's too)
        display(Image(data=png, format="png"))


def pretrain_curve(log: dict):
    """Training loss per step and held-out loss at the curve points, from pretrain_log.json."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(1, len(log["loss"]) + 1), log["loss"], lw=0.8, alpha=0.6, label="train (mean per optimizer step)")
    steps = [p["step"] for p in log["curve"]]
    for name in log["curve"][0]["losses"]:
        ax.plot(steps, [p["losses"][name] for p in log["curve"]], marker="o", label=f"held-out ({name})")
    ax.set(xlabel="optimizer step", ylabel="loss (nats/token)", title="Pretraining the shared base")
    ax.legend()
    return fig


def domain_losses(
    losses: dict[str, float],
    highlight: set[str],
    title: str,
    hue_names=("English-like", "language"),
    unit: str = "nats/token",
):
    """One bar per domain; domains in `highlight` (e.g. the languages) coloured apart."""
    df = pd.DataFrame({"domain": list(losses), "loss": list(losses.values())})
    df["kind"] = [hue_names[1] if d in highlight else hue_names[0] for d in df["domain"]]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(df, x="domain", y="loss", hue="kind", ax=ax, dodge=False, seed=0)
    ax.set(ylabel=f"held-out loss ({unit})", title=title)
    ax.tick_params(axis="x", rotation=30)
    return fig


def loss_heatmap(result: dict, models: list[str] | None = None, title: str = ""):
    """Model x domain held-out loss from one results record (or a baselines losses dict)."""
    losses = result["losses"] if "losses" in result else result
    models = models or list(losses)
    df = pd.DataFrame(losses).T.loc[models]
    fig, ax = plt.subplots(figsize=(1.6 * df.shape[1] + 2, 0.5 * len(models) + 1.5))
    sns.heatmap(df, annot=True, fmt=".3f", cmap="viridis_r", ax=ax, cbar_kws={"label": "loss"})
    ax.set(title=title or "held-out loss: model x domain")
    return fig


def domain_bars(results: list[dict], models: list[str], title: str = ""):
    """Per-domain held-out loss for several models, mean over seeds with the seeds' spread."""
    rows = [
        {"model": m, "domain": d, "loss": r["losses"][m][d], "seed": r["seed"]}
        for r in results
        for m in models
        if m in r["losses"]
        for d in r["domains"]
    ]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(df, x="domain", y="loss", hue="model", errorbar="sd", ax=ax, seed=0)
    lo = df["loss"].min()
    ax.set_ylim(lo * 0.9, df["loss"].max() * 1.03)
    ax.set(ylabel="held-out loss (nats/token)", title=title or "per-domain loss (mean ± sd over seeds)")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def gate_distribution(result: dict, model: str):
    """Average gate per expert on each domain's held-out chunks (rows: domain, columns: expert)."""
    experts = specialist_names(result)
    df = gate_matrix(result, model, experts)
    fig, ax = plt.subplots(figsize=(1.4 * len(experts) + 2, 0.5 * len(df) + 1.5))
    sns.heatmap(df, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="Blues", ax=ax)
    ax.set(xlabel="expert", ylabel="held-out domain", title=f"router gates ({model}, seed {result['seed']})")
    return fig


def specialist_curves(logs: dict[str, dict], base_losses: dict[str, float] | None = None):
    """Each specialist's held-out loss on every domain over training (own domain bold)."""
    names = list(logs)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        curve = logs[name]["curve"]
        steps = [p["step"] for p in curve]
        # the specialists' own domains in their order first, whatever order the log's dict has
        for domain in [
            *(d for d in names if d in curve[0]["losses"]),
            *(d for d in curve[0]["losses"] if d not in names),
        ]:
            own = domain == name
            ax.plot(
                steps,
                [p["losses"][domain] for p in curve],
                lw=2.5 if own else 1,
                label=domain + (" (own)" if own else ""),
            )
        ax.set(title=name, xlabel="optimizer step")
    axes[0][0].set_ylabel("held-out loss")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("own- and cross-domain held-out loss during training")
    return fig
