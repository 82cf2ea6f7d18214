"""Reference results: the numbers each notebook shows, as small JSON files kept in the
repository (results/<scale>/NN_name.json), and a check of a rerun against them.

`summarize_run` reads a run folder (runs/<scale>/, layout in protocol/pipeline.py and
protocol/cooperative.py) with the same functions the notebooks use (report.claims, sweep_tables.point,
prediction.*, metrics.divergence_pct) and keeps only what their tables and verdicts show.
`export_reference` writes one file per notebook; `compare_results` summarizes a rerun the
same way and lists every number that moved.

Tolerances (absolute), from `tol_loss` (1e-4 nats by default):
- losses and everything else in nats (EW, oracle EW, base loss, loss spread): tol_loss;
- percentages derived from losses (gains, divergences, forgetting, the sweep's fit, its
  leave-one-out and held-out errors and the early prediction's divergence errors, which are in
  percentage points): 100 x tol_loss = 0.01 pp. A gain
  (L_b - L_a) / L_b x 100 moves by 100 (|dL_a| + |dL_b|) / L_b when both losses move, which
  for two moves of 1e-4 nats at losses near 2 nats is 0.01 pp. The fit's slope and R^2 are
  held to the same 0.01;
- router gates (probabilities, not derived from losses): 10 x tol_loss = 1e-3;
- perplexities and their folds (anything under a "perplexity" key), relative: exp(loss) moves
  by the fraction tol_loss when its loss moves by tol_loss nats, a fold base / fused by twice it;
- hashes, counts, names and verdict booleans: exactly (a claim's sentence is a label, not compared).
A number beyond its tolerance but within 10x it (20x for losses of hard routing and top-k
dispatch) is reported as equal within cross-machine noise (CROSS_MACHINE below); only a number
beyond that, a verdict that flipped or a key on one side only has moved.
Nothing under a "timings" or "provenance" key is compared: speeds depend on the machine,
and weight fingerprints change with the last bit of any weight even when every loss agrees;
nor under "headline", the means and standard deviations of numbers compared one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis import ablation_tables, accuracy, inference_tables, phase2_tables, report, sweep_tables
from ..analysis.report import language_gap, specialist_verdicts
from ..errors import KalavaiError, first_line
from ..experiments import phase2
from ..protocol import prediction
from ..protocol.cooperative import CAUSAL_FUSED, paper_fused
from ..protocol.metrics import divergence_pct
from ..protocol.pipeline import corpus_key
from ..protocol.results import load_results
from ..scales import get_scale
from ..storage import atomic_write_json, read_json
from ..verdicts import summary
from .readme import headline_figures

SCHEMA = "kalavai.reference/2"
# /1 keyed verdicts by their sentences ("claims" in 03); /2 by stable identifiers, the sentence a label
LEGACY_SCHEMAS = ("kalavai.reference/1",)
IGNORED_KEYS = {"timings", "provenance", "claim", "headline"}
# A rerun on another CPU kind or thread count sums in another order. Measured (results/tiny/reruns/,
# docs/reproducibility.md): soft losses moved up to 2.2e-4 nats, losses of hard (argmax) routing and top-k
# dispatch up to 7.1e-4 (an argmax flips on near-ties); no verdict moved. A difference beyond the
# same-machine tolerance but within CROSS_MACHINE x it (ROUTED_CROSS_MACHINE x for routed losses) is
# "within cross-machine noise", not "moved".
CROSS_MACHINE = 10
ROUTED_CROSS_MACHINE = 20
PCT_KEYS = {
    "gain_vs_best_pct",
    "divergence_pct",
    "mean_divergence_pct",
    "oracle_gain_pct",
    "worst_forgetting_pct",
    "gain",
    "oracle_gain",
    "mean_divergence",
    "max_divergence",
    "min_divergence",
    "fit",
    "leave_one_out",
    "holdout",
    "divergence_error",
    "gain_error",
    "gain_bias",
}
GATE_KEYS = {"gates"}
PPL_KEYS = {"perplexity"}
_MISSING = object()


# ---------------------------------------------------------------- reading a run


def _seed_folders(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.glob("seed*") if p.is_dir()), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 0
    )


def _source(record: dict) -> str | None:
    src = record.get("source")
    if isinstance(src, dict):
        return (
            f"{src['dataset']}@{src.get('resolved_revision', src.get('revision'))}"
            if "dataset" in src
            else src.get("generator")
        )
    return src


def _data_summary(manifest: dict) -> dict:
    """Chunk counts and content hashes of one data folder's manifest."""
    domains = {}
    for d, r in manifest["domains"].items():
        row = {"chunks": r["chunks"], "files": r["files"], "n_documents": r.get("n_documents"), "source": _source(r)}
        domains[d] = {k: v for k, v in row.items() if v is not None}
    out = {"tokenizer": manifest.get("tokenizer"), "seq_len": manifest.get("seq_len"), "domains": domains}
    return {k: v for k, v in out.items() if v is not None}


def _corpora(runs: Path) -> tuple[str | None, dict[str, dict]]:
    """(notebook 00's corpus key, every corpus manifest by key); the sweep adds other overlaps."""
    manifests = {p.parent.name: read_json(p) for p in sorted(runs.glob("data/corpus-*/manifest.json"))}
    if not manifests:
        return None, {}

    scale = next(iter(manifests.values())).get("scale")
    return corpus_key(get_scale(scale)), manifests


def summarize_data(runs: Path) -> dict:
    key, manifests = _corpora(runs)
    if key not in manifests:
        return {}
    return {"corpus": key, **_data_summary(manifests[key])}


def summarize_base(runs: Path) -> dict:
    out = {}
    path = runs / "base" / "base_eval.json"
    if path.exists():
        r = read_json(path)
        out["base"] = {
            "revision": r["revision"],
            "losses": r["losses"],
            "chars_per_token": r["chars_per_token"],
            "loss_per_char": r["loss_per_char"],
            "languages": ",".join(r["languages"]),
        }
        if r["languages"]:
            out["language_gap"] = language_gap(r)
        out["provenance"] = {"fingerprint": r["fingerprint"]}
    path = runs / "base" / "pretrain_log.json"
    if path.exists():
        log = read_json(path)
        out["pretraining"] = {
            "steps": len(log["loss"]),
            "tokens": log["tokens"],
            "n_params": log["n_params"],
            "final_train_loss": log["loss"][-1],
        }
        if log.get("curve"):
            out["pretraining"]["final_heldout"] = log["curve"][-1]["losses"]
        out["timings"] = {
            k: log[k] for k in ("train_seconds", "tokens_per_s", "matmul_peak_flops", "fraction_of_peak") if k in log
        }
    path = runs / "data" / "pretrain" / "manifest.json"
    if path.exists():
        out["pretrain_data"] = _data_summary(read_json(path))
    return out


def summarize_specialists(runs: Path) -> dict:
    """Notebook 02: specialist x domain losses, divergences and forgetting, per seed."""
    seeds = {}
    for folder in _seed_folders(runs / "main" / "main"):
        path = folder / "baselines" / "losses.json"
        if not path.exists():
            continue
        losses = read_json(path)
        base = losses["base"]
        domains = [m.split(":", 1)[1] for m in losses if m.startswith("spec:")]
        specs = {}
        for d in domains:
            spec = losses[f"spec:{d}"]
            specs[d] = {
                "divergence_pct": divergence_pct(base[d], spec[d]),
                "beats_base_on_own_domain": bool(spec[d] < base[d]),
                "worst_forgetting_pct": max(-divergence_pct(base[o], spec[o]) for o in domains if o != d),
            }
        training, timings = {}, {}
        for log_path in sorted(
            [*folder.glob("specialists/*/train_log.json"), folder / "monolithic" / "train_log.json"]
        ):
            if log_path.exists():
                log = read_json(log_path)
                training[log_path.parent.name] = {"steps": len(log["loss"]), "final_train_loss": log["loss"][-1]}
                timings[log_path.parent.name] = {k: log[k] for k in ("tokens_per_s", "train_seconds") if k in log}
        seeds[folder.name] = {"losses": losses, "specialists": specs, "training": training, "timings": timings}
    if not seeds:
        return {}
    # the same verdicts notebook 02 shows: the specialists' claims and the regime's three bars
    domains = list(next(iter(seeds.values()))["specialists"])
    verdicts = summary(specialist_verdicts({name: seed["losses"] for name, seed in seeds.items()}, domains))
    return {"main": seeds, "verdicts": verdicts}


def _main_results(runs: Path) -> list[dict]:
    return [
        load_results(f / "results.json") for f in _seed_folders(runs / "main" / "main") if (f / "results.json").exists()
    ]


def summarize_fusion(runs: Path) -> dict:
    """Notebook 03: every main cooperative's losses, gains and gates, and the claims' verdicts."""
    results = _main_results(runs)
    if not results:
        return {}
    seeds = {}
    for r in results:
        m = r["metrics"]
        seeds[f"seed{r['seed']}"] = {
            "losses": r["losses"],
            "ew": m["ew"],
            "gain_vs_best_pct": m["gain_vs_best_pct"],
            "best_specialist": m["best_specialist"],
            "divergence_pct": m["divergence_pct"],
            "mean_divergence_pct": m["mean_divergence_pct"],
            "oracle_ew": m["oracle_ew"],
            "oracle_gain_pct": m["oracle_gain_pct"],
            "non_improving_specialists": ",".join(m["non_improving_specialists"]),
            "gates": r["gates"],
        }
    claims = report.claims(results)
    out = {"main": seeds}
    if (acc := accuracy.main_accuracy(runs, results)) is not None:
        claims = [*claims, *acc.pop("claims")]
        out["accuracy"] = acc
    return {**out, "verdicts": summary(claims)}


def _sweep_results(runs: Path, meta: dict) -> list[dict]:
    """The cooperatives notebook 04 fitted: the main one per sweep seed, then every condition."""
    found = sorted((runs / "sweep").glob("*/seed*/results.json"))
    seeds = meta.get("seeds") or sorted({int(p.parent.name[4:]) for p in found})
    wanted = meta.get("conditions")
    out = []
    for seed in seeds:
        path = runs / "main" / "main" / f"seed{seed}" / "results.json"
        if path.exists():
            out.append({**load_results(path), "sweep": {"condition": "main"}})
    for path in found:
        condition = path.parent.parent.name
        if (wanted and condition not in wanted) or int(path.parent.name[4:]) not in seeds:
            continue
        out.append({**load_results(path), "sweep": {"condition": condition}})
    return out


def summarize_sweep(runs: Path) -> dict:
    """Notebook 04: the sweep's points for both routers, its fit, and leave-one-out validation."""
    fit_path = runs / "sweep" / "fit.json"
    fit, meta = prediction.load_fit(fit_path) if fit_path.exists() else (None, {})
    results = _sweep_results(runs, meta) if (runs / "sweep").is_dir() else []
    if not results and fit is None:
        return {}
    # the authors' router depends on the scale (MLP at 410M and offline, linear at 1B and 6.9B)
    paper = paper_fused(get_scale(results[0]["scale"] if results else meta.get("scale", runs.name)))
    out = {"points": {}}
    for model in (paper, CAUSAL_FUSED):
        by_condition = out["points"][model] = {}
        for r in results:
            if model in r["losses"]:
                row = sweep_tables.point(r, model)
                condition, seed = row.pop("condition"), row.pop("seed")
                row.pop("varies")  # a label of the condition, not a result
                by_condition.setdefault(condition, {})[f"seed{seed}"] = row
    points = sweep_tables.points_table(results, paper)
    n_conditions = points["condition"].nunique() if len(points) else 0
    if n_conditions >= 3:
        out["best_predictor"] = str(prediction.compare_predictors(points, target="gain").iloc[0]["predictor"])
        _, lo, hi = prediction.paper_fit().predict(points["mean_divergence"].to_numpy())
        out["paper_line_inside"] = int(((points["gain"] >= lo) & (points["gain"] <= hi)).sum())
        out["paper_line_n"] = len(points)
    loo = None
    if n_conditions >= 4:
        # as notebook 04: by whole conditions (all of a condition's seeds on one side)
        loo, hold = sweep_tables.validation(points)
        out["leave_one_out"] = {k: loo[k] for k in ("rmse", "mae", "n_inside", "n")}
        out["holdout"] = {k: hold[k] for k in ("rmse", "n_inside", "n")}
        causal = sweep_tables.points_table(results, CAUSAL_FUSED)
        if (
            len(causal) and causal["condition"].nunique() >= 4
        ):  # notebook 04's line and validation for the causal router
            d = prediction.fit_line(causal["mean_divergence"], causal["gain"], groups=causal["condition"]).to_dict()
            c_loo, c_hold = sweep_tables.validation(causal)  # the authors' router's `loo` stays for the bands below
            out["causal"] = {
                "fit": {k: d[k] for k in ("slope", "intercept", "slope_ci", "r2", "n")},
                "leave_one_out": {k: c_loo[k] for k in ("rmse", "mae", "n_inside", "n")},
                "holdout": {k: c_hold[k] for k in ("rmse", "n_inside", "n")},
            }
    early = sweep_tables.early_errors(results, paper)
    if len(early):
        # notebook 04's early prediction: mean absolute errors over specialists, per fraction of training seen
        means = early.groupby("fraction")[["abs_divergence_error", "abs_loss_error"]].mean()
        out["early_prediction"] = {
            f"{f:g}": {
                "divergence_error": float(row["abs_divergence_error"]),
                "loss_error": float(row["abs_loss_error"]),
            }
            for f, row in means.iterrows()
        }
        gains = sweep_tables.early_gain_errors(results, paper)
        # the gain itself, predicted before fusion: mean absolute and mean signed error over cooperatives
        for f, row in gains.groupby("fraction")[["abs_gain_error", "gain_error"]].mean().iterrows():
            out["early_prediction"].setdefault(f"{f:g}", {}).update(
                gain_error=float(row["abs_gain_error"]), gain_bias=float(row["gain_error"])
            )
    if fit is not None:
        d = fit.to_dict()
        out["fit"] = {
            k: d[k] for k in ("transform", "slope", "intercept", "slope_ci", "intercept_ci", "r2", "n", "resid_std")
        }
        # notebook 04's band coverage: three lines' bands against the authors' later points and ours
        coverage = sweep_tables.band_coverage(sweep_tables.three_lines(fit), sweep_tables.held_out_points(fit), loo)
        out["band_coverage"] = {
            f"{pk}:{lk}": {"n_inside": c["n_inside"], "n": c["n"], "rmse": c["rmse"]}
            for (pk, lk), c in coverage.items()
        }
        out["verdicts"] = summary(sweep_tables.law_verdicts(fit, loo))
    key, manifests = _corpora(runs)
    others = {k: _data_summary(m) for k, m in manifests.items() if k != key}
    if others:
        out["data"] = others
    return out


def summarize_ablations(runs: Path) -> dict:
    """Notebook 05: the eight ablations' tables and verdicts (kalavai_utils.analysis.ablation_tables)."""
    return ablation_tables.summarize(runs)


def summarize_phase2(runs: Path) -> dict:
    """Notebook 06: cross-lingual, private-domain and twenty-contributor cooperatives (kalavai_utils.analysis.phase2_tables)."""
    return phase2_tables.summarize(runs) if (runs / phase2.EXPERIMENT).is_dir() else {}


def summarize_inference(runs: Path) -> dict:
    """Notebook 07: dispatch losses; its timings are the machine's and never compared (kalavai_utils.analysis.inference_tables)."""
    return inference_tables.summarize(runs) if (runs / "inference").is_dir() else {}


SUMMARIES = {
    "00_data": summarize_data,
    "01_base": summarize_base,
    "02_specialists": summarize_specialists,
    "03_fusion": summarize_fusion,
    "04_predict_gain": summarize_sweep,
    "05_ablations": summarize_ablations,
    "06_phase2": summarize_phase2,
    "07_inference": summarize_inference,
}


def _run_folder(runs_dir) -> Path:
    runs = Path(runs_dir)
    if not runs.is_dir():
        raise KalavaiError(f"no run folder at {runs}")
    return runs


# Where each headline figure (mean ± std over seeds, readme.headline_figures) is stored
HEADLINES = {"02_specialists": "regime", "03_fusion": "main", "06_phase2": "cross_lingual"}


def summarize_run(runs_dir) -> dict:
    """Notebook name -> the numbers its tables and verdicts show; notebooks without files are left out.
    The headline figures derived from them (means and standard deviations over seeds) are stored too,
    under "headline", so that the numbers the README shows exist in a file."""
    runs = _run_folder(runs_dir)
    summaries = {}
    for name, fn in SUMMARIES.items():
        try:
            summary = fn(runs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as e:
            # a run file of the wrong shape: one line naming what was being read, not a traceback
            raise KalavaiError(
                f"{runs}: a file behind notebook {name}'s summary is malformed ({type(e).__name__}: {first_line(e)})"
            ) from None
        if summary:
            summaries[name] = summary
    headline = headline_figures(summaries)
    for name, key in HEADLINES.items():
        if name in summaries and key in headline:
            summaries[name]["headline"] = headline[key]
    return summaries


def run_header(runs_dir) -> dict:
    """Scale, corpus generator and library versions of a run, as far as its files record them."""
    runs = _run_folder(runs_dir)
    header = {"schema": SCHEMA, "scale": runs.name}
    _, manifests = _corpora(runs)
    if manifests:
        first = next(iter(manifests.values()))
        header["scale"] = first.get("scale", header["scale"])
        generators = {
            r["source"]["generator"]
            for r in first["domains"].values()
            if isinstance(r.get("source"), dict) and "generator" in r["source"]
        }
        if generators:
            header["generator"] = ",".join(sorted(generators))
    results = [
        *sorted((runs / "main" / "main").glob("seed*/results.json")),
        *sorted((runs / "sweep").glob("*/seed*/results.json")),
    ]
    if results:
        r = load_results(results[0])
        header.update(scale=r["scale"], versions=r["versions"])
    return header


def export_reference(runs_dir, out_dir) -> list[Path]:
    """Write out_dir/<notebook>.json for every notebook the run has; returns the paths written."""
    summaries = summarize_run(runs_dir)
    if not summaries:
        raise KalavaiError(f"nothing to summarize in {runs_dir}: no data manifest, base evaluation or results files")
    header = run_header(runs_dir)
    # sorted: a committed reference diffs against the next by its numbers, not by the order a run built them in
    return [
        atomic_write_json(Path(out_dir) / f"{name}.json", {**header, "notebook": name, "summary": s}, sort_keys=True)
        for name, s in summaries.items()
    ]


def load_reference(ref_dir) -> tuple[dict, dict]:
    """(header of the first file, notebook -> summary) from a folder written by export_reference."""
    folder = Path(ref_dir)
    if not folder.is_dir():
        raise KalavaiError(f"no reference folder at {folder}")
    header, summaries = {}, {}
    # one file per notebook (00_data.json, ...); timings.json and benchmark files sit beside them
    for path in sorted(folder.glob("[0-9][0-9]_*.json")):
        d = read_json(path)
        if (
            not isinstance(d, dict)
            or d.get("schema") not in (SCHEMA, *LEGACY_SCHEMAS)
            or not isinstance(d.get("summary"), dict)
            or not isinstance(d.get("notebook", path.stem), str)
        ):
            raise KalavaiError(f"{path} is not a {SCHEMA} reference file")
        header = header or {k: v for k, v in d.items() if k != "summary"}
        summaries[d.get("notebook", path.stem)] = d["summary"]
    if not summaries:
        raise KalavaiError(f"no reference summaries (NN_*.json) in {folder}")
    return header, summaries


# ---------------------------------------------------------------- comparing


def flatten(tree, prefix: str = "") -> dict:
    """{"a/b/0": leaf} for every leaf of nested dicts and lists, skipping IGNORED_KEYS."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if k not in IGNORED_KEYS:
                out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    if isinstance(tree, list):
        out = {}
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}/{i}"))
        return out
    return {prefix: tree}


def tolerance(key: str, ref, run, tol_loss: float) -> float | None:
    """The absolute tolerance of one flattened number; None: must match exactly."""
    values = [v for v in (ref, run) if v is not _MISSING]
    if not any(isinstance(v, float) for v in values) or any(isinstance(v, (bool, str)) or v is None for v in values):
        return None
    parts = set(key.split("/"))
    if parts & PPL_KEYS:
        return (2 if "fold" in parts else 1) * tol_loss * max(abs(v) for v in values)
    if parts & GATE_KEYS:
        return 10 * tol_loss
    if parts & PCT_KEYS:
        return 100 * tol_loss
    return tol_loss


def _routed(key: str) -> bool:
    """A loss of hard (argmax) routing or top-k dispatch: discontinuous in the router's logits."""
    return any(p.endswith(":hard") or p.startswith(("top1", "top2")) for p in key.split("/"))


def _legacy_verdicts(ref_summary: dict, run_summary: dict) -> dict:
    """A /1 reference's verdicts (sentence -> holds; notebook 03's under "claims") keyed as a /2 run keys
    them, matched by their sentences: the one-time mapping that lets a rerun be compared with an old reference."""
    old = {**ref_summary.get("claims", {}), **ref_summary.get("verdicts", {})}
    if not old or all(isinstance(v, dict) for v in old.values()):
        return ref_summary
    by_label = {v["claim"]: k for k, v in run_summary.get("verdicts", {}).items()}
    out = {k: v for k, v in ref_summary.items() if k != "claims"}
    out["verdicts"] = {by_label.get(label, label): {"holds": holds} for label, holds in old.items()}
    return out


def _moved(ref, run, tol: float | None) -> bool:
    if tol is None:
        return ref != run
    if math.isnan(ref) or math.isnan(run):
        return math.isnan(ref) != math.isnan(run)
    return abs(run - ref) > tol * (1 + 1e-9)  # a move of exactly tol passes despite float rounding


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _fmt_tol(tol: float) -> str:
    mantissa, exp = f"{tol:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


@dataclass
class Difference:
    notebook: str
    key: str
    reference: object
    run: object
    tol: float | None
    noise: bool = False  # beyond the same-machine tolerance, within the cross-machine one

    def __str__(self) -> str:
        where = f"{self.notebook}: {self.key}"
        if self.reference is _MISSING:
            return f"{where} not in the reference (run: {_fmt(self.run)})"
        if self.run is _MISSING:
            return f"{where} missing from this run (reference: {_fmt(self.reference)})"
        tol = "exact" if self.tol is None else f"tol {_fmt_tol(self.tol)}"
        return f"{where} {_fmt(self.reference)} -> {_fmt(self.run)} ({tol}{'; within cross-machine noise' if self.noise else ''})"

    def to_dict(self) -> dict:
        missing = lambda v: None if v is _MISSING else v  # noqa: E731
        return {
            "notebook": self.notebook,
            "key": self.key,
            "reference": missing(self.reference),
            "run": missing(self.run),
            "tol": self.tol,
            "noise": self.noise,
            "routed": _routed(self.key),
        }


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    compared: dict[str, int] = field(default_factory=dict)  # notebook -> numbers compared
    skipped: dict[str, str] = field(default_factory=dict)  # notebook -> why

    def to_dict(self, runs_dir=None) -> dict:
        """The comparison as results/<scale>/reruns/ keeps a measured rerun: every difference, each marked
        noise or moved, the largest moves, and the rerun's machine as its timings.json records it."""
        moves = {
            kind: [
                abs(d.run - d.reference) for d in self.differences if d.noise and _routed(d.key) == (kind == "routed")
            ]
            for kind in ("routed", "soft")
        }
        timings = (
            read_json(Path(runs_dir) / "timings.json")
            if runs_dir and (Path(runs_dir) / "timings.json").exists()
            else {}
        )
        return {
            "summary": self.summary(),
            "compared": self.compared,
            "differences": [d.to_dict() for d in self.differences],
            "largest_move": {kind: max(v, default=0.0) for kind, v in moves.items()},
            "rerun_machine": {k: timings.get(k) for k in ("cpu", "cpu_capability", "cpu_count", "torch_threads")},
        }

    @property
    def moved(self) -> list[Difference]:
        """The differences beyond cross-machine noise: what makes a rerun disagree with its reference."""
        return [d for d in self.differences if not d.noise]

    def summary(self) -> str:
        n, noise = sum(self.compared.values()), len(self.differences) - len(self.moved)
        if not self.differences:
            line = f"all {n} numbers match"
        else:
            line = f"{n - len(self.differences)} of {n} numbers match, {noise} equal within cross-machine noise, {len(self.moved)} moved"
        line += f" ({', '.join(self.compared)})"
        if self.skipped:
            line += "; skipped: " + ", ".join(f"{nb} ({why})" for nb, why in self.skipped.items())
        return line


def compare_results(runs_dir, ref_dir, tol: float = 1e-4) -> Comparison:
    """Summarize the run and list every number that differs from the reference beyond its
    tolerance (see the module docstring; `tol` is the loss tolerance in nats), and every key
    present on one side only. Notebooks present on one side only are skipped, and said so.
    """
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise KalavaiError(f"tolerance must be a non-negative number, got {tol!r}")
    header, reference = load_reference(ref_dir)
    run_scale = run_header(runs_dir)["scale"]
    if header.get("scale") and header["scale"] != run_scale:
        raise KalavaiError(f"the run is at scale {run_scale} but the reference at scale {header['scale']}")
    summaries = summarize_run(runs_dir)
    out = Comparison()
    for nb in sorted(set(reference) | set(summaries)):
        if nb not in summaries:
            out.skipped[nb] = "not in this run"
            continue
        if nb not in reference:
            out.skipped[nb] = "no reference"
            continue
        ref, run = flatten(_legacy_verdicts(reference[nb], summaries[nb])), flatten(summaries[nb])
        out.compared[nb] = len(ref.keys() | run.keys())
        for key in sorted(ref.keys() | run.keys()):
            a, b = ref.get(key, _MISSING), run.get(key, _MISSING)
            tol_key = tolerance(key, a, b, tol)
            if a is _MISSING or b is _MISSING or _moved(a, b, tol_key):
                wider = None if tol_key is None else tol_key * (ROUTED_CROSS_MACHINE if _routed(key) else CROSS_MACHINE)
                noise = a is not _MISSING and b is not _MISSING and wider is not None and not _moved(a, b, wider)
                out.differences.append(Difference(nb, key, a, b, tol_key, noise))
    if not out.compared:
        raise KalavaiError(
            f"no notebook summarized in both {runs_dir} and {ref_dir}: "
            + ", ".join(f"{nb} {why}" for nb, why in out.skipped.items())
        )
    return out
