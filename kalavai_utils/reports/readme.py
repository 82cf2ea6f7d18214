"""The generated blocks of README.md and docs/*.md, rendered from results/<scale>/ and paper.py.

A block sits between `<!-- generated:NAME -->` and `<!-- /generated -->`; `render_docs`
rewrites every block from the committed summaries, and `python -m kalavai_utils render-docs`
runs it. Nothing here types a result: measured numbers come from `results/<scale>/*.json`,
the paper's from `paper.py`. `tests/test_docs_account.py` fails when a block is stale.
It needs only `paper.py` and `errors.py`, so a test can load it without running the package's
`__init__` (which imports torch); only the GPU budget's block (`render_budget`) imports the
experiments, and torch, when it renders.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from .. import paper
from ..errors import KalavaiError
from ..verdicts import word as verdict

BLOCK = re.compile(r"(<!-- generated:([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)
NOTEBOOKS = (
    "00_data",
    "01_base",
    "02_specialists",
    "03_fusion",
    "04_predict_gain",
    "05_ablations",
    "06_phase2",
    "07_inference",
)
AUTHORS_ROUTER, CAUSAL_ROUTER = "fused:mlp:sequence", "fused:linear:token"


def _holds(summary: dict, claim_id: str):
    """A summary's verdict on one claim, by its identifier (kalavai_utils.verdicts)."""
    return summary["verdicts"][claim_id]["holds"]


def load_summaries(results_dir) -> dict[str, dict]:
    """Each notebook's `summary` from results/<scale>/NN_name.json, keyed by notebook name."""
    folder = Path(results_dir)
    return {
        nb: json.loads((folder / f"{nb}.json").read_text())["summary"]
        for nb in NOTEBOOKS
        if (folder / f"{nb}.json").exists()
    }


def _seeds(by_seed: dict) -> list[str]:
    return sorted((k for k in by_seed if re.fullmatch(r"seed\d+", k)), key=lambda s: int(s[4:]))


def mean_std(by_seed: dict) -> dict:
    """Mean, sample standard deviation (ddof 1, as notebook 03's tables), count and the values, of {seed: value}."""
    values = list(by_seed.values())
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "by_seed": dict(by_seed),
    }


def headline_figures(summaries: dict) -> dict:
    """Mean ± std over seeds of the headline figures, from the per-seed values in the summaries.

    Plain floats in a JSON-ready tree, so that they can also be stored beside the summaries.
    """
    out: dict = {}
    fusion = summaries.get("03_fusion", {}).get("main", {})
    if fusion:
        seeds = _seeds(fusion)
        models = [m for m in fusion[seeds[0]]["ew"] if all(m in fusion[s]["ew"] for s in seeds)]  # every seed's
        out["main"] = {
            "gain_vs_best_pct": {m: mean_std({s: fusion[s]["gain_vs_best_pct"][m] for s in seeds}) for m in models},
            "ew": {m: mean_std({s: fusion[s]["ew"][m] for s in seeds}) for m in models},
            "oracle_gap_nats": {
                m: mean_std({s: fusion[s]["ew"][m] - fusion[s]["oracle_ew"] for s in seeds})
                for m in (AUTHORS_ROUTER, CAUSAL_ROUTER)
            },
            "minus_monolithic_nats": {
                m: mean_std({s: fusion[s]["ew"][m] - fusion[s]["ew"]["monolithic"] for s in seeds})
                for m in (AUTHORS_ROUTER, CAUSAL_ROUTER)
            },
            "fused_vs_base_pct": mean_std(
                {s: 100 * (1 - fusion[s]["ew"][AUTHORS_ROUTER] / fusion[s]["ew"]["base"]) for s in seeds}
            ),
        }
    specialists = summaries.get("02_specialists", {}).get("main", {})
    if specialists:
        seeds = _seeds(specialists)
        domains = specialists[seeds[0]]["specialists"]
        out["regime"] = {
            "divergence_pct": {
                d: mean_std({s: specialists[s]["specialists"][d]["divergence_pct"] for s in seeds}) for d in domains
            },
            "worst_forgetting_pct": {
                d: mean_std({s: specialists[s]["specialists"][d]["worst_forgetting_pct"] for s in seeds})
                for d in domains
            },
        }
    cross = summaries.get("06_phase2", {}).get("cross-lingual", {})
    if cross:
        seeds = _seeds(cross)
        out["cross_lingual"] = {
            "gain_vs_best_pct": mean_std({s: cross[s]["gain_vs_best_pct"][AUTHORS_ROUTER] for s in seeds}),
            "mean_divergence_pct": mean_std({s: cross[s]["mean_divergence_pct"] for s in seeds}),
        }
    return out


def _pm(stat: dict, digits: int = 2, sign: str = "+", unit: str = " %") -> str:
    return f"{stat['mean']:{sign}.{digits}f} ± {stat['std']:.{digits}f}{unit}"


def _line(slope: float, intercept: float) -> str:
    return f"{slope:.2f} × div {'−' if intercept < 0 else '+'} {abs(intercept):.2f}"


def _one(value: dict) -> float:
    """The single seed's value of a one-seed ablation entry ({"seed42": x})."""
    (only,) = value.values()
    return only


def glance_rows(summaries: dict, capacity_like_for_like: dict | None = None) -> list[tuple[str, str, str, str, str]]:
    """(claim, paper at 410M, here, verdict, notebook) for each headline claim of the paper."""
    h = headline_figures(summaries)
    rows = []
    s02, s03, s04 = summaries["02_specialists"], summaries["03_fusion"], summaries["04_predict_gain"]
    s05, s06, s07 = summaries["05_ablations"], summaries["06_phase2"], summaries["07_inference"]

    div = {d: h["regime"]["divergence_pct"][d] for d in paper.DIVERGENCE_410M if d in h["regime"]["divergence_pct"]}
    regime = all(v["holds"] for k, v in s02["verdicts"].items() if k.startswith("regime."))
    rows.append(
        (
            "Specialists move like Pythia-410M's (divergence 8-30 %, forgetting ≤ 6 %)",
            " / ".join(f"{paper.DIVERGENCE_410M[d]:.2f}" for d in div) + " %",
            " / ".join(f"{div[d]['mean']:.2f}" for d in div) + " %",
            verdict(regime),
            "02_specialists",
        )
    )

    gain, ew = h["main"]["gain_vs_best_pct"], h["main"]["ew"]
    rows.append(
        (
            "Fusion beats the best specialist (equal-weight loss, every seed)",
            f"+{paper.HEADLINE_410M_SEEDS['gain_mean']:.2f} ± {paper.HEADLINE_410M_SEEDS['gain_spread']:.2f} %",
            f"{_pm(gain[AUTHORS_ROUTER])} (causal router {_pm(gain[CAUSAL_ROUTER])})",
            verdict(_holds(s03, f"fusion.beats_best_specialist.{AUTHORS_ROUTER}")),
            "03_fusion",
        )
    )
    rows.append(
        (
            "Fused beats the equal-compute monolithic model",
            f"{paper.HEADLINE['410m']['fused']:.3f} vs {paper.HEADLINE['410m']['monolithic']:.3f} nats",
            f"{ew[AUTHORS_ROUTER]['mean']:.4f} vs {ew['monolithic']['mean']:.4f} nats",
            verdict(_holds(s03, f"fusion.beats_monolithic.{AUTHORS_ROUTER}")),
            "03_fusion",
        )
    )
    rows.append(
        (
            "Weight averaging is worse than the best specialist",
            f"{paper.WEIGHT_AVG_VS_BEST_410M:+.1f} %",
            _pm(gain["weight_avg"]),
            verdict(_holds(s03, "fusion.weight_average_below_best")),
            "03_fusion",
        )
    )

    fit, pfit = s04["fit"], paper.REGRESSION_FIT
    rows.append(
        (
            "Gain rises linearly with divergence",
            _line(pfit["slope"], pfit["intercept"]) + f", R² {pfit['r2']:.2f}",
            _line(fit["slope"], fit["intercept"]) + f", R² {fit['r2']:.2f}, "
            f"slope CI [{fit['slope_ci'][0]:.2f}, {fit['slope_ci'][1]:.2f}]",
            verdict(_holds(s04, "law.gain_rises_with_divergence")),
            "04_predict_gain",
        )
    )

    mat = s05["maturity"]
    rows.append(
        (
            "Gain shrinks as the base matures",
            f"+{paper.MATURITY_410M[5000]:.2f} → +{paper.MATURITY_410M[143000]:.2f} %",
            f"+{_one(mat['step125']['gain']):.2f} → +{_one(mat['step1000']['gain']):.2f} % (step125 → step1000)",
            verdict(_holds(s05, "ablations.maturity")),
            "05_ablations",
        )
    )
    fr, pfr = s05["freeze"], paper.FREEZE_SWEEP_410M
    kmax = max(fr, key=int)
    rows.append(
        (
            "Gain falls slowly as blocks are frozen",
            f"K=0 → 12 of 24: +{pfr[0]:.2f} → +{pfr[12]:.2f} %",
            f"K=0 → {kmax} of 4: +{_one(fr['0']['gain']):.2f} → +{_one(fr[kmax]['gain']):.2f} %",
            verdict(_holds(s05, "ablations.freeze")),
            "05_ablations",
        )
    )
    cnt, pc = s05["count"], paper.SPECIALIST_COUNT
    lo, hi = min(cnt, key=int), max(cnt, key=int)
    rows.append(
        (
            "More specialists, more gain",
            f"{min(pc)} → {max(pc)}: +{pc[min(pc)]:.2f} → +{pc[max(pc)]:.2f} %",
            f"{lo} → {hi}: +{_one(cnt[lo]['gain']):.2f} → +{_one(cnt[hi]['gain']):.2f} %",
            verdict(_holds(s05, "ablations.count")),
            "05_ablations",
        )
    )
    lora = s05["lora"]
    r_lo, r_hi = min(lora, key=int), max(lora, key=int)
    rows.append(
        (
            "LoRA specialists diverge less and fuse worse",
            f"r=8 → 64: {paper.LORA_GAIN_RANGE[0]:+.2f} → {paper.LORA_GAIN_RANGE[1]:+.2f} %",
            f"r={r_lo} → {r_hi}: {_one(lora[r_lo]['gain']):+.2f} → {_one(lora[r_hi]['gain']):+.2f} %",
            verdict(_holds(s05, "ablations.lora")),
            "05_ablations",
        )
    )
    cap = s05["capacity"]
    here = f"{_one(cap['gain'])['capacity']:+.2f} % (pretrained {cap['pretrain_fraction']:.2f} of the base's steps)"
    word = verdict(_holds(s05, "ablations.capacity"))
    if capacity_like_for_like:
        like = capacity_like_for_like["capacity"]
        here += f"; like for like {_one(like['gain'])['capacity']:+.2f} %"
        word += f"; like for like: {verdict(_holds(capacity_like_for_like, 'ablations.capacity'))}"
    rows.append(
        (
            "Fusion beats a capacity-matched single model",
            f"no: 1.4B control {paper.CAPACITY_CONTROL_1_4B_GAIN:+.2f} %",
            here,
            word,
            "05_ablations",
        )
    )

    cross = h["cross_lingual"]
    rows.append(
        (
            "Cross-lingual fusion gains most",
            f"+{paper.CROSS_LINGUAL['gain']:.2f} % at divergence {paper.CROSS_LINGUAL['divergence']:.2f} %",
            f"{_pm(cross['gain_vs_best_pct'])} at {cross['mean_divergence_pct']['mean']:.2f} %",
            verdict(_holds(s06, "cross_lingual.largest_gain")),
            "06_phase2",
        )
    )
    private = s06["private"]["seed42"]
    rows.append(
        (
            "Private domains the base never saw gain",
            f"+{paper.PRIVATE_DOMAINS['gain']:.2f} % at {paper.PRIVATE_DOMAINS['divergence']:.2f} %",
            f"{private['gain_vs_best_pct'][AUTHORS_ROUTER]:+.2f} % at {private['mean_divergence_pct']:.2f} %",
            verdict(_holds(s06, "private.gain_positive_every_seed")),
            "06_phase2",
        )
    )
    pred = s06["twenty"]["prediction"]
    own, line = pred["notebook04_fit"]["gain"], pred["paper_line"]["gain"]
    measured = s06["twenty"]["seed42"]["gain_vs_best_pct"][AUTHORS_ROUTER]
    rows.append(
        (
            "The law predicts twenty contributors' gain",
            f"+{paper.OUT_OF_SAMPLE_20_CONTRIBUTOR.gain:.2f} %",
            f"{measured:+.2f} %; predicted +{own['predicted_gain']:.2f} [{own['lo']:.1f}, {own['hi']:.1f}], "
            f"paper's line +{line['predicted_gain']:.2f} [{line['lo']:.1f}, {line['hi']:.1f}]",
            f"{verdict(_holds(s06, 'twenty.inside_band.notebook04_fit'))} (notebook 04's band); "
            f"{verdict(_holds(s06, 'twenty.inside_band.paper_line'))} (paper's)",
            "06_phase2",
        )
    )

    rows += later_rows(s03, s04, s06)

    inf = paper.INFERENCE_410M_X3
    loss = s07["losses"]["seed42"][AUTHORS_ROUTER]
    rows.append(
        (
            "Top-1 dispatch is far worse in loss than dense",
            f"{inf['top1_loss']:.3f} vs {inf['dense_loss']:.3f} nats",
            f"{loss['top1-sequence']['ew']:.4f} vs {loss['dense']['ew']:.4f} nats",
            verdict(all(v["holds"] for v in s07["verdicts"].values())),
            "07_inference",
        )
    )
    main = s07["timings"]["main_point"]
    best = min(main["dense"], main["dense-batched"])
    rows.append(
        (
            "Dense fusion costs at most the ideal ratio (x one model)",
            f"{inf['dense_latency_x']:.2f}x ({paper.INFERENCE_DEVICE})",
            f"{best:.2f}x against {s07['ideal_dense_ratio']:.2f}x (CPU)",
            verdict(best <= s07["ideal_dense_ratio"]),
            "07_inference",
        )
    )
    return rows


def _verdicts_word(summary: dict, prefix: str) -> tuple[str, int, int]:
    """One word for every verdict whose id starts with `prefix`: holds if all hold, does not hold
    if any does not, else inconclusive; with (holding, total)."""
    found = [v["holds"] for k, v in summary["verdicts"].items() if k.startswith(prefix)]
    holds = None if not found else True if all(h is True for h in found) else False if False in found else None
    return verdict(holds), sum(h is True for h in found), len(found)


def later_rows(s03: dict, s04: dict, s06: dict) -> list[tuple[str, str, str, str, str]]:
    """The authors' later findings (paper.AUTHORS_LATER_*), each checked here, as glance rows."""
    rows = []
    acc = [s03.get("accuracy"), s06["cross-lingual"].get("accuracy")]
    words = [_verdicts_word(s, "accuracy.") for s in (s03, s06)]
    w7 = paper.AUTHORS_LATER_W7_QWEN7B
    rows.append(
        (
            "Later: loss gain carries over to accuracy",
            f"no: 7B Belebele {w7['belebele']['base']['yoruba']:.2f} → {w7['belebele']['moe']['yoruba']:.2f} (Yoruba)",
            "; ".join(
                f"{name}: holds on {k}/{n}" for name, (_, k, n), a in zip(("main", "cross-lingual"), words, acc) if a
            ),
            "; ".join(w for w, _, _ in words),
            "03_fusion",
        )
    )
    cov = s04.get("band_coverage", {})
    if cov:
        theirs, ours = cov["authors_w2:paper"], cov["authors_w2:ours"]
        rows.append(
            (
                "Later: the law holds out of sample",
                f"{paper.AUTHORS_LATER_CHECK['in_band']} of {paper.AUTHORS_LATER_CHECK['n']} in the band",
                f"their points: paper's band {theirs['n_inside']}/{theirs['n']}, ours {ours['n_inside']}/{ours['n']}",
                _verdicts_word(s04, "law.band_holds.")[0],
                "04_predict_gain",
            )
        )
    cross = s06["cross-lingual"]
    seeds = _seeds(cross)
    w3, w5 = paper.AUTHORS_LATER_W3W4, paper.AUTHORS_LATER_W5_BTX

    def ran(model):  # the seeds a baseline ran on (phase2.BASELINE_SEEDS)
        return [s for s in seeds if model in cross[s]["ew"]]

    mono = mean_std({s: cross[s]["ew"]["monolithic"] for s in ran("monolithic")})
    fused = mean_std({s: cross[s]["ew"][AUTHORS_ROUTER] for s in ran("monolithic")})
    rows.append(
        (
            "Later: compute-matched monolithic beats fusion",
            f"{w3['monolithic_ew']:.3f} vs {w3['fused_ew']:.3f} nats",
            f"{mono['mean']:.4f} vs {fused['mean']:.4f} nats",
            verdict(_holds(s06, "cross_lingual.monolithic_below_fused")),
            "06_phase2",
        )
    )
    joint = f"{AUTHORS_ROUTER}+joint"

    def over_base(model):
        return mean_std({s: 100 * (1 - cross[s]["ew"][model] / cross[s]["ew"]["base"]) for s in ran(joint)})

    rows.append(
        (
            "Later: joint fine-tune beats router-only",
            " vs ".join(
                f"+{statistics.mean(v[k] for v in w5.values()):.1f} %"
                for k in ("btx_vs_base_pct", "kalavai_vs_base_pct")
            ),
            f"{over_base(joint)['mean']:+.2f} vs {over_base(AUTHORS_ROUTER)['mean']:+.2f} %",
            verdict(_holds(s06, "cross_lingual.joint_beats_router_only")),
            "06_phase2",
        )
    )
    w6 = paper.AUTHORS_LATER_W6_REINIT
    reinit = f"{AUTHORS_ROUTER}+reinit"
    collapsed = {m: sum(bool(cross[s]["collapsed"][m]) for s in seeds) for m in (AUTHORS_ROUTER, reinit)}
    rows.append(
        (
            "Later: a re-initialised router does not collapse",
            f"seed {w6['seed']}: {w6['router_tries']} try of up to {w6['max_tries']}",
            f"collapsed: plain {collapsed[AUTHORS_ROUTER]}/{len(seeds)}, re-init {collapsed[reinit]}/{len(seeds)}",
            verdict(_holds(s06, "cross_lingual.reinit_no_collapse")),
            "06_phase2",
        )
    )
    own = f"{AUTHORS_ROUTER}+own"
    gains = {m: mean_std({s: cross[s]["gain_vs_best_pct"][m] for s in ran(own)}) for m in (own, AUTHORS_ROUTER)}
    rows.append(
        (
            "Later: a router on public text matches",
            f"+{w3['gain_proxy_router_pct']:.2f} vs +{w3['gain_in_domain_router_pct']:.2f} %",
            f"{gains[own]['mean']:+.2f} vs {gains[AUTHORS_ROUTER]['mean']:+.2f} %",
            verdict(_holds(s06, "cross_lingual.own_text_router_matches")),
            "06_phase2",
        )
    )
    return rows


def render_glance(results_dir, link_prefix: str = "") -> str:
    """The results-at-a-glance table: one row per headline claim, each linking its executed notebook."""
    results_dir = Path(results_dir)
    like_path = results_dir / "capacity_like_for_like" / "05_ablations.json"
    like = json.loads(like_path.read_text())["summary"] if like_path.exists() else None
    scale = results_dir.name
    lines = [f"| claim | paper (410M) | here (`{scale}`) | verdict | notebook |", "|---|---|---|---|---|"]
    for claim, theirs, ours, word, nb in glance_rows(load_summaries(results_dir), like):
        lines.append(f"| {claim} | {theirs} | {ours} | {word} | [{nb[:2]}]({link_prefix}executed/{scale}/{nb}.ipynb) |")
    return "\n".join(lines) + "\n"


def render_verdicts(results_dir, link_prefix: str = "") -> str:
    """Every verdict the summaries hold, notebook by notebook, in the one vocabulary."""
    summaries = load_summaries(results_dir)
    lines = ["| notebook | claim | verdict | claim id |", "|---|---|---|---|"]
    for nb, summary in summaries.items():
        for claim_id, v in summary.get("verdicts", {}).items():
            lines.append(f"| {nb} | {v['claim']} | {verdict(v['holds'])} | `{claim_id}` |")
    return "\n".join(lines) + "\n"


def render_reruns(results_dir, link_prefix: str = "") -> str:
    """Measured reruns against the reference (results/<scale>/reruns/*.json, written from
    `compare-results --json`): how many numbers stayed within each tolerance, on which machine."""
    lines = [
        "| rerun | machine | torch threads | numbers | equal | within cross-machine noise | moved "
        "| largest move, soft / routed (nats) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted((Path(results_dir) / "reruns").glob("*.json")):
        r = json.loads(path.read_text())
        n, diffs = sum(r["compared"].values()), r["differences"]
        noise = sum(d["noise"] for d in diffs)
        m, largest = r["rerun_machine"], r["largest_move"]  # as Comparison.to_dict wrote them
        lines.append(
            f"| [{path.stem}]({link_prefix}{path.relative_to(Path(results_dir).parent.parent).as_posix()}) | {m['cpu']} ({m['cpu_capability']}) | {m['torch_threads']} "
            f"| {n} | {n - len(diffs)} | {noise} | {len(diffs) - noise} | {largest['soft']:.5f} / {largest['routed']:.5f} |"
        )
    return "\n".join(lines) + "\n"


def render_main_table(results_dir, link_prefix: str = "") -> str:
    """Notebook 03's main table: equal-weight loss and gain over the best specialist, mean ± std over seeds."""
    h = headline_figures(load_summaries(results_dir))["main"]
    lines = ["| model | equal-weight loss (nats) | gain vs best specialist | seeds |", "|---|---|---|---|"]
    for model, ew in h["ew"].items():
        gain = h["gain_vs_best_pct"][model]
        lines.append(f"| `{model}` | {_pm(ew, 4, '', '')} | {_pm(gain)} | {ew['n']} |")
    return "\n".join(lines) + "\n"


def render_timings(results_dir, link_prefix: str = "") -> str:
    """Seconds per notebook of the reference run (results/<scale>/timings.json)."""
    t = json.loads((Path(results_dir) / "timings.json").read_text())
    lines = ["| notebook | seconds |", "|---|---|"]
    lines += [f"| `{nb}` | {row['seconds']:.0f} |" for nb, row in t["notebooks"].items()]
    lines.append(
        f"| total | {t['total_seconds']:,.0f} ({t['total_seconds'] / 60:.0f} min, {t['cpu_count']} CPU cores) |"
    )
    return "\n".join(lines) + "\n"


def render_run_times(results_dir, link_prefix: str = "") -> str:
    """One line: how long the reference run of every notebook took, from results/<scale>/timings.json."""
    t = json.loads((Path(results_dir) / "timings.json").read_text())
    return (
        f"The reference `./run_all.sh` took {t['total_seconds']:,.0f} s ({t['total_seconds'] / 60:.0f} min) "
        f"on {t['cpu_count']} CPU cores, install excluded (`results/{t['scale']}/timings.json`).\n"
    )


def render_dispatch(results_dir, link_prefix: str = "") -> str:
    """Notebook 07's EW loss by dispatch for each router, with the difference from dense (nats)."""
    losses = load_summaries(results_dir)["07_inference"]["losses"]
    lines = ["| seed | router | dispatch | EW loss (nats) | minus dense |", "|---|---|---|---|---|"]
    for seed, by_router in losses.items():
        for router, by_dispatch in by_router.items():
            dense = by_dispatch["dense"]["ew"]
            lines += [
                f"| {seed[4:]} | `{router}` | {d} | {v['ew']:.4f} | {v['ew'] - dense:+.3f} |"
                for d, v in by_dispatch.items()
            ]
    return "\n".join(lines) + "\n"


def render_phases(results_dir, link_prefix: str = "") -> str:
    """Where the reference run's time went (`phases` of results/<scale>/benchmark.json)."""
    phases = json.loads((Path(results_dir) / "benchmark.json").read_text())["phases"]
    lines = ["| phase | count | seconds | share of the matmul peak |", "|---|---|---|---|"]
    for name, p in phases.items():
        if isinstance(p, dict):
            peak = f"{100 * p['fraction_of_peak']:.0f} %" if "fraction_of_peak" in p else "—"
            lines.append(f"| {name.replace('_', ' ')} | {p.get('count', '—')} | {p['seconds']:.0f} | {peak} |")
    lines.append(f"| all notebooks | | {phases['notebooks_seconds']:,.0f} | |")
    return "\n".join(lines) + "\n"


def render_generation(results_dir, link_prefix: str = "") -> str:
    """Notebook 07's generation timings: tokens/s cached and cache-free, the target, the cache's speedup."""
    summary = load_summaries(results_dir)["07_inference"]
    gen = {(r["model"], r["new_tokens"], r["cache"]): r["tokens_per_s"] for r in summary["timings"]["generation"]}
    ideal = summary["ideal_dense_ratio"]
    lines = [
        "| new tokens | one model, cached | fused, cached | target (0.8 / ideal of one model) | met | "
        "fused / one model | fused, cache-free | cache speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for new in sorted({n for _, n, _ in gen}):
        one, fused, free = gen[("single", new, True)], gen[("dense", new, True)], gen[("dense", new, False)]
        need = 0.8 / ideal * one
        lines.append(
            f"| {new:,} | {one:.0f} | {fused:.0f} | {need:.0f} | {'yes' if fused >= need else 'no'} | "
            f"{fused / one:.2f} | {free:.0f} | {fused / free:.1f}x |"
        )
    return "\n".join(lines) + "\n"


BUDGET_SCALES = ("410m", "1b", "6.9b")


def render_budget(results_dir, link_prefix: str = "") -> str:
    """The expected GPU-hours per notebook at the Hub scales (experiments/budget.py: an estimate from the
    H100 timings in results/410m/, which it reads), each scale's default run, its main result and opt-ins.
    Unlike the other blocks it counts from the code (the experiments' definitions), so it imports torch."""
    from ..experiments import budget
    from ..notebooks import MAIN_RESULT, select
    from ..scales import SCALES, trains_sharded

    measured_dir = Path(results_dir).parent / budget.MEASURED_SIZE
    plans = {}
    for name in BUDGET_SCALES:
        scale = SCALES[name]  # the full sizes, whatever KALAVAI_SIZES says
        notebooks = [nb.name[:2] for nb in select(None, name)]
        plans[name] = (
            budget.plan(scale, notebooks, measured_dir=measured_dir),
            budget.plan(scale, MAIN_RESULT, seeds=scale.seeds[:1], measured_dir=measured_dir),
        )
    first = plans[BUDGET_SCALES[0]][0]
    # one steps column for the scales whose specialists train as long, then each scale's GPU-hours
    groups: dict[int, list[str]] = {}
    for n in BUDGET_SCALES:
        groups.setdefault(SCALES[n].spec_steps, []).append(n)
    columns = [
        c
        for g in groups.values()
        for c in [(f"steps ({', '.join(g)})", g[0], "steps")] + [(f"{n} GPU-h", n, "hours") for n in g]
    ]
    lines = ["| | " + " | ".join(c[0] for c in columns) + " |", "|---" * (1 + len(columns)) + "|"]

    def cells(get) -> str:
        out = []
        for _, n, key in columns:
            row = get(*plans[n])
            out.append("—" if row is None else f"{row['steps']:,}" if key == "steps" else f"{row['hours']:.2f}")
        return " | ".join(out)

    def notebook(nb):
        return lambda full, one: next((r for r in full.rows() if r["name"] == nb), None)

    def main_result(full, one):
        rows = [r for r in full.rows() if r["name"] in MAIN_RESULT]
        return {"steps": sum(r["steps"] for r in rows), "hours": sum(r["hours"] for r in rows)}

    for nb in NOTEBOOKS:
        lines.append(f"| {nb} | {cells(notebook(nb[:2]))} |")
    lines.append(f"| **total, every notebook the scale runs** | {cells(lambda full, one: full.total())} |")
    lines.append(f"| main result (00-03), {len(SCALES[BUDGET_SCALES[0]].seeds)} seeds | {cells(main_result)} |")
    lines.append(
        f"| main result, one seed (`--seeds {SCALES[BUDGET_SCALES[0]].seeds[0]}`) | {cells(lambda full, one: one.total())} |"
    )
    for section in budget.ablations.OPT_IN_SECTIONS:
        lines.append(
            f"| 05's {section} ladder, opt-in (`--ablation-sections`), not in the total | "
            + cells(lambda full, one: next((r for r in full.section_rows() if r["name"] == section), None))
            + " |"
        )
    lines += [
        "",
        "Notebook 05 by section (its main cooperative is notebook 03's; each row counts what the sections before it have not trained):",
        "",
    ]
    hub = [n for n in BUDGET_SCALES if "05" in plans[n][0].notebooks]
    lines += [
        "| section | " + " | ".join(f"{n} steps | {n} GPU-h" for n in hub) + " | at the Hub scales |",
        "|---" * (2 + 2 * len(hub)) + "|",
    ]
    for r in first.section_rows():
        if r["name"] == "main":
            continue
        by = {n: next(x for x in plans[n][0].section_rows() if x["name"] == r["name"]) for n in hub}
        lines.append(
            f"| {r['name']} | "
            + " | ".join(f"{by[n]['steps']:,} | {by[n]['hours']:.2f}" for n in hub)
            + f" | {'opt-in' if r['opt_in'] else 'default'} |"
        )
    lines += [
        "",
        f"Source: {budget.source_line(first)}. "
        + " ".join(f"{n}: {budget.conversion(plans[n][0])}." for n in BUDGET_SCALES[1:])
        + " ".join(
            f" {n} trains sharded: its GPU-hours are summed over its GPUs."
            for n in BUDGET_SCALES
            if trains_sharded(SCALES[n])
        ),
        "",
    ]
    lines.append(budget.compile_note(first))
    for section in budget.ablations.OPT_IN_SECTIONS:  # where compiling pays most: the ladder's long rungs
        name = BUDGET_SCALES[0]
        with_it = budget.plan(
            SCALES[name], first.notebooks, sections=(*first.sections, section), measured_dir=measured_dir
        )
        lines.append(
            f"With the {section} ladder, every notebook at {name} takes {budget.hm(with_it.hours())}, "
            f"{budget.hm(with_it.compiled_hours())} compiled."
        )
    return "\n".join(lines) + "\n"


BLOCKS = {
    "gpu-budget": render_budget,
    "reruns": render_reruns,
    "generation": render_generation,
    "phases": render_phases,
    "dispatch-losses": render_dispatch,
    "run-times": render_run_times,
    "results-at-a-glance": render_glance,
    "every-verdict": render_verdicts,
    "main-table": render_main_table,
    "notebook-times": render_timings,
}


def render_text(text: str, results_dir, link_prefix: str = "") -> str:
    """The text with each generated block rewritten; an unknown block name is an error (KalavaiError)."""

    def one(m: re.Match) -> str:
        name = m.group(2)
        if name not in BLOCKS:
            raise KalavaiError(f"unknown generated block {name!r}; known: {', '.join(BLOCKS)}")
        return m.group(1) + BLOCKS[name](results_dir, link_prefix) + m.group(4)

    return BLOCK.sub(one, text)


def doc_files(root) -> list[Path]:
    """README.md and docs/*.md: the files whose blocks are generated."""
    root = Path(root)
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render_docs(root=".", scale: str = "tiny", write: bool = True) -> list[Path]:
    """Rewrite the generated blocks of README.md and docs/*.md from results/<scale>/; returns the files changed."""
    root = Path(root)
    if not (root / "README.md").exists() or not (root / "results" / scale).is_dir():
        raise KalavaiError(
            f"run render-docs from the repository root: no README.md or results/{scale}/ in {root.resolve()}"
        )
    changed = []
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        new = render_text(text, root / "results" / scale, "" if path.parent == root else "../")
        if new != text:
            changed.append(path)
            if write:
                path.write_text(new, encoding="utf-8")
    return changed
