"""Tables, verdicts and the reference summary of notebook 07 (inference), from its benchmark and loss files."""

from __future__ import annotations

from pathlib import Path

from ..errors import KalavaiError
from ..experiments.inference import DISPATCHES, FORWARD_VARIANTS, ideal_dense_ratio
from ..protocol.metrics import equal_weight
from ..scales import get_scale, pythia_410m_config
from ..storage import read_json
from ..verdicts import Verdict, summary, word

# ---------------------------------------------------------------- reading a benchmark


def forward_table(bench: dict):
    """The forward timings as a DataFrame, one row per (N, K, batch, variant)."""
    import pandas as pd

    return pd.DataFrame(bench["forward"])


# the variants the ideal and FLOPs ratios bound (dense fusion, however its experts are run or placed)
DENSE_VARIANTS = ("dense", "dense-batched", "dense-offloaded")


def _in_variant_order(names) -> list[str]:
    known = (*FORWARD_VARIANTS, "dense-offloaded")
    return sorted(names, key=lambda v: (known.index(v) if v in known else len(known), v))


def main_point_table(bench: dict, batch: int | None = None):
    """The forward timings at the main point (main_point), one row per variant.

    The ideal and FLOPs ratios are what dense fusion is judged against, so only the dense
    rows carry them; a column with nothing in it (peak memory on CPU) is left out.
    """
    import pandas as pd

    rows = main_point(bench, batch)
    columns = ["seconds", "tokens_per_s", "latency_x_single", "ideal_dense_ratio", "flops_ratio", "peak_memory_gib"]
    df = pd.DataFrame([rows[v] for v in _in_variant_order(rows)], columns=["variant", *columns]).set_index("variant")
    for c in ("ideal_dense_ratio", "flops_ratio"):
        df[c] = pd.to_numeric(df[c]).where(df.index.isin(DENSE_VARIANTS))
    return df.dropna(axis=1, how="all")


def latency_table(bench: dict):
    """Every forward setting on one row (N, K, batch): one model's latency in ms, each variant's
    latency x one model, and the ideal and FLOPs ratios of dense fusion at that N and K.

    Empty (NaN) where a variant was not timed at that setting. The "single" column (always 1)
    is left out: its latency is the first column.
    """
    import pandas as pd

    df = forward_table(bench)
    if df.empty:
        return df
    key = ["n_experts", "freeze_layers", "batch"]
    wide = df.pivot(index=key, columns="variant", values="latency_x_single").astype(float)
    wide = wide[[v for v in _in_variant_order(wide.columns) if v != "single"]]
    single = df[df["variant"] == "single"].set_index(key)["seconds"] * 1000
    ratios = df.groupby(key)[[c for c in ("ideal_dense_ratio", "flops_ratio") if c in df]].first()
    out = pd.concat(
        [
            single.rename("one model (ms)"),
            wide,
            ratios.rename(columns={"ideal_dense_ratio": "ideal dense ratio", "flops_ratio": "FLOPs ratio"}),
        ],
        axis=1,
    )
    out.index.names, out.columns.name = ["N", "K", "batch"], None
    return out.sort_index()


def main_point(bench: dict, batch: int | None = None) -> dict:
    """variant -> its row at the main point (N=main_n, the scale's K, and the eval batch or `batch`)."""
    s = bench["settings"]
    batch = s["main_batch"] if batch is None else batch
    return {
        r["variant"]: r
        for r in bench["forward"]
        if (r["n_experts"], r["freeze_layers"], r["batch"]) == (s["main_n"], s["main_freeze_layers"], batch)
    }


def generation_table(bench: dict):
    """Generation: tokens/s with and without the cache, the cache's speedup, fused vs one model."""
    import pandas as pd

    df = pd.DataFrame(bench["generation"])
    if df.empty:
        return df
    wide = df.pivot_table(index=["new_tokens", "model"], columns="cache", values="tokens_per_s").rename(
        columns={True: "tokens/s cached", False: "tokens/s cache-free"}
    )
    wide.columns.name = None  # the pivot's "cache" would show as a stray label above the index
    wide["cache speedup"] = wide["tokens/s cached"] / wide["tokens/s cache-free"]
    return wide.reset_index()


def verdicts(bench: dict):
    """The inference targets, computed from a benchmark: each row says what was measured and whether it holds.

    Dense fusion at or under the ideal ratio at the main point (and, reported beside it, under
    the FLOPs ratio, which counts the N output heads the block ideal leaves out); cached fused generation at least
    0.8 / ideal of one model's cached tokens/s at 256 new tokens; the cache's speedup at each length.
    """
    import pandas as pd

    s, rows = bench["settings"], []
    main = main_point(bench)
    if "dense" in main:
        ideal = main["dense"]["ideal_dense_ratio"]
        best = min((main[v] for v in ("dense", "dense-batched") if v in main), key=lambda r: r["seconds"])
        rows.append(
            {
                "target": f"dense fused at or under the ideal ratio (N={s['main_n']}, K={s['main_freeze_layers']}, batch {s['main_batch']})",
                "measured": f"{best['latency_x_single']:.2f}x ({best['variant']})",
                "ideal": f"{ideal:.2f}x",
                "verdict": word(best["latency_x_single"] <= ideal),
            }
        )
        if best.get("flops_ratio") is not None:  # the heads are not shared: N of them cost N times one
            rows.append(
                {
                    "target": "dense fused at or under the FLOPs ratio (each expert's output head counted; reported)",
                    "measured": f"{best['latency_x_single']:.2f}x ({best['variant']})",
                    "ideal": f"{best['flops_ratio']:.2f}x",
                    "verdict": word(best["latency_x_single"] <= best["flops_ratio"]),
                }
            )
    gen = {(r["model"], r["new_tokens"], r["cache"]): r["tokens_per_s"] for r in bench["generation"]}
    if ("dense", 256, True) in gen and ("single", 256, True) in gen:
        ideal = ideal_dense_ratio(s["main_n"], bench["config"]["n_layers"], s["main_freeze_layers"])
        need = 0.8 / ideal * gen[("single", 256, True)]
        rows.append(
            {
                "target": "cached fused generation >= 0.8/ideal x one model's tokens/s at 256 tokens",
                "measured": f"{gen[('dense', 256, True)]:.0f} tokens/s",
                "ideal": f">= {need:.0f} tokens/s",
                "verdict": word(gen[("dense", 256, True)] >= need),
            }
        )
    for new in s["gen_lengths"]:
        if ("dense", new, True) in gen and ("dense", new, False) in gen:
            rows.append(
                {
                    "target": f"cache speedup of fused generation at {new} tokens (reported, no target)",
                    "measured": f"{gen[('dense', new, True)] / gen[('dense', new, False)]:.2f}x",
                    "ideal": "—",
                    "verdict": "reported",
                }
            )
    return pd.DataFrame(rows)


def paper_comparison(bench: dict):
    """Our latencies x one model at N=3 beside the paper's RTX 5090 numbers (410M, N=3, K=4, batch 1, seq 512).

    Ours are taken at batch 1 when the benchmark measured it (the authors' setting), else at the main batch.
    """
    import pandas as pd

    from .. import paper

    s = bench["settings"]
    batch = 1 if 1 in s["batch_sizes"] else s["main_batch"]
    ours = {
        r["variant"]: r["latency_x_single"]
        for r in bench["forward"]
        if (r["n_experts"], r["freeze_layers"], r["batch"]) == (3, s["main_freeze_layers"], batch)
    }
    p, top2 = paper.INFERENCE_410M_X3, paper.INFERENCE_410M_X3_TOP2
    paper_ideal = ideal_dense_ratio(3, pythia_410m_config().num_hidden_layers, get_scale("410m").freeze_layers)
    rows = [
        (
            "ideal dense ratio 1 + (N-1)(L-K)/L",
            ideal_dense_ratio(3, bench["config"]["n_layers"], s["main_freeze_layers"]),
            paper_ideal,
        ),
        ("N separate forwards", ours.get("separate"), None),
        ("dense fused (loop)", ours.get("dense"), p["dense_latency_x"]),
        ("dense fused (batched)", ours.get("dense-batched"), None),
        ("top-1 per sequence", ours.get("top1-sequence"), p["top1_latency_x"]),
        ("top-2 per sequence", ours.get("top2-sequence"), top2["latency_x"]),
        ("top-1 per token", ours.get("top1-token"), None),
        ("top-2 per token", ours.get("top2-token"), None),
    ]
    col = f"ours: {bench['device_name']}, scale {bench['scale']}, batch {batch} (x one model)"
    return pd.DataFrame(
        rows, columns=["", col, f"paper: {paper.INFERENCE_DEVICE}, 410M, batch 1 (x one model)"]
    ).set_index("")


def paper_loss_comparison(losses: dict, router: str):
    """EW loss by dispatch for one router beside the paper's 410M numbers (their mixed eval set, not ours)."""
    import pandas as pd

    from .. import paper

    p, top2 = paper.INFERENCE_410M_X3, paper.INFERENCE_410M_X3_TOP2
    theirs = {"dense": p["dense_loss"], "top1-sequence": p["top1_loss"], "top2-sequence": top2["loss"]}
    return pd.DataFrame(
        {
            f"ours ({router}), EW held-out loss": {d: v["ew"] for d, v in losses[router].items()},
            "paper 410M (their eval set)": theirs,
        }
    )


# "Far worse in loss": top-1 dispatch above dense by at least this share of dense's EW loss
# (the paper's top-1 was several times further above its dense loss: paper.INFERENCE_410M_X3).
FAR_WORSE = 0.05


def loss_verdicts(losses: dict, seed: str) -> list[Verdict]:
    """The loss side of the paper's trade-off, per router: is top-1 per sequence far worse than dense?"""
    from .. import paper

    p = paper.INFERENCE_410M_X3
    out = []
    for name, per in losses.items():
        if "top1-sequence" not in per:
            continue
        dense, top1 = per["dense"]["ew"], per["top1-sequence"]["ew"]
        out.append(
            Verdict(
                f"inference.{seed}.top1_far_worse.{name}",
                f"{seed}: top-1 per sequence far worse in loss than dense (at least {FAR_WORSE:.0%} above; {name})",
                top1 >= (1 + FAR_WORSE) * dense,
                f"top-1 {top1:.4f} vs dense {dense:.4f} nats ({(top1 - dense) / dense:+.1%}); paper 410M: "
                f"{p['top1_loss']:.3f} vs {p['dense_loss']:.3f} ({(p['top1_loss'] - p['dense_loss']) / p['dense_loss']:+.1%})",
            )
        )
    return out


def loss_table(losses: dict, results: dict):
    """EW held-out loss of each dispatch per router, and notebook 03's dense number beside it."""
    import pandas as pd

    rows = []
    for name, per in losses.items():
        for d, v in per.items():
            rows.append({"router": name, "dispatch": d, "EW loss": v["ew"]})
    df = pd.DataFrame(rows).pivot(index="dispatch", columns="router", values="EW loss").loc[list(DISPATCHES)]
    for name in losses:
        df.loc["notebook 03 (dense)", name] = equal_weight({d: results["losses"][name][d] for d in results["domains"]})
    return df


# ---------------------------------------------------------------- reference summary


def summarize(runs: Path) -> dict:
    """Notebook 07's reference numbers: dispatch losses (deterministic) and, apart, timings.

    Everything under "timings" is the machine's (reference.IGNORED_KEYS skips it).
    """
    runs = Path(runs)
    out = {"losses": {}, "timings": {}}
    for folder in sorted((runs / "inference").glob("seed*")):
        path = folder / "losses.json"
        if path.exists():
            out["losses"][folder.name] = read_json(path)
    bench = runs / "benchmarks" / "inference.json"
    if bench.exists():
        b = read_json(bench)
        batches = sorted({r["batch"] for r in b["forward"]})
        by_batch = {f"batch{n}": {v: r["latency_x_single"] for v, r in main_point(b, n).items()} for n in batches}
        out["timings"] = {
            "device_name": b["device_name"],
            "main_point": {v: r["latency_x_single"] for v, r in main_point(b).items()},
            "by_batch": {k: v for k, v in by_batch.items() if v},
            "generation": b["generation"],
        }
        out["ideal_dense_ratio"] = next(iter(main_point(b).values()))["ideal_dense_ratio"] if main_point(b) else None
        if (
            "dense" in main_point(b) and "flops_ratio" in main_point(b)["dense"]
        ):  # the ideal with the output heads counted
            out["flops_dense_ratio"] = main_point(b)["dense"]["flops_ratio"]
    if not out["losses"]:
        raise KalavaiError(f"no inference losses under {runs / 'inference'}: run notebook 07 first")
    out["verdicts"] = summary([v for seed, losses in out["losses"].items() for v in loss_verdicts(losses, seed)])
    return out
