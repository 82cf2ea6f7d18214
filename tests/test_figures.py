"""Committed figures: small palette PNGs that show the picture drawn, the same bytes every time."""

import io

import numpy as np
from PIL import Image


def test_saved_figures_are_small_and_show_the_picture_drawn(tmp_path):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from kalavai_utils.analysis import figures

    def draw():
        fig, ax = plt.subplots(figsize=(5, 4))
        sns.heatmap(np.linspace(0, 1, 64).reshape(8, 8), annot=True, fmt=".2f", ax=ax)  # a gradient: the hard case
        return fig

    fig = draw()
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=120, bbox_inches="tight")
    path = figures.save(fig, tmp_path, "heat")
    saved = path.read_bytes()
    assert len(saved) < 0.7 * len(raw.getvalue())
    assert Image.open(io.BytesIO(saved)).mode == "P"
    drawn = np.asarray(Image.open(raw).convert("RGB"), dtype=float)
    shown = np.asarray(Image.open(io.BytesIO(saved)).convert("RGB"), dtype=float)
    assert drawn.shape == shown.shape and np.abs(drawn - shown).mean() < 1.0  # colour levels out of 255
    assert figures.save(draw(), tmp_path, "again").read_bytes() == saved
