"""Notebook 06's experiments: the paper's Phase 2, where the base is weak and the data is the point.

Three cooperatives, each run by the one protocol (cooperative.run_cooperative: specialists
through submission and verification, routers, evaluation, results in the common schema)
under runs/<scale>/phase2/<section>/seed<seed>/:

- "cross-lingual": three languages the base is weak on, plus code (paper: Tamil, Yoruba,
  Welsh + code on Pythia-410M, `paper.CROSS_LINGUAL`). Offline: the three generated languages.
- "private": three domains the base never saw in pretraining (paper: PubMed, EUR-Lex,
  BigPatent, `paper.PRIVATE_DOMAINS`). Offline: corpora.PRIVATE_DOMAINS. The scale's `extra_domains` will
  not do: pipeline.pretrain_documents puts every one of them in the base's mixture.
- "twenty": ten languages, nine English-like domains and code, one contributor each (paper:
  Pythia-1B, `paper.TWENTY_CONTRIBUTOR_GAIN`, the out-of-sample test of its divergence-gain line).

Beside the routers every cooperative reports, router *recipes* from the authors' later code
are fitted on the same frozen experts (routers.RouterRecipe, `Cooperative.recipes`): the warm
start on single-language batches (their remedy for the cross-lingual run's router collapse)
and, for many experts, 1,000 steps with a load-balancing term (0.05) and a cosine schedule.
They are trained beside the plain routers (side by side where they draw the same batches) and
evaluated in the same pass, and their losses and gates are in the cooperative's results.json.

The Phase 2 data lives in runs/<scale>/data/phase2/, apart from notebook 00's corpus
folders: nothing notebooks 00-04 read or wrote changes.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ..protocol import prediction
from .. import corpora
from ..protocol import data, pipeline
from ..runtime import prefix
from ..protocol.cooperative import (
    CAUSAL_ROUTER, Cooperative, base_losses, config_freeze, frozen_depth, fused_name, paper_fused, paper_router, run_cooperative,
    submission_folders, train_contributors,
)
from ..errors import KalavaiError
from ..protocol.evaluation import evaluate_domains
from ..protocol.metrics import divergence_pct
from ..protocol.models import for_inference
from ..protocol.results import gate_matrix, load_results
from ..protocol.routers import RouterRecipe
from ..protocol.submission import iter_submissions
from ..scales import ENGLISH_DOMAINS, PYTHIA_SHAPES, Scale, domain_kind, get_scale
from ..storage import atomic_write_json, mark_step_done, read_json, sha256_file, start_step, step_is_done

EXPERIMENT = "phase2"
SECTIONS = ("cross-lingual", "private", "twenty")
COLLAPSE_SHARE = 0.5  # a domain whose own expert gets less than this share of its gate weight has collapsed
NO_COLLAPSE = "none"  # how the notebook's tables write "no domain collapsed"
RESULTS_FILE = "results.json"  # the cooperative's own, recipes' routers included


# ---------------------------------------------------------------- who contributes what

def domains_for(scale: Scale, section: str) -> tuple[str, ...]:
    if section == "cross-lingual":
        return (*scale.languages, "code")
    if section == "private":
        return tuple(scale.extra_domains) if scale.is_hub else corpora.PRIVATE_DOMAINS
    if section == "twenty":
        if scale.is_hub:
            for d in twenty_hub_sources():  # a missing or malformed manifest fails here, before any download
                data.load_source_manifest(d)
            return tuple(twenty_hub_sources())
        return (*scale.languages, *corpora.PHASE2_LANGUAGES, *ENGLISH_DOMAINS)
    raise KalavaiError(f"unknown Phase 2 section {section!r}; choose one of: {', '.join(SECTIONS)}")


def twenty_hub_sources() -> list[str]:
    """The authors' 20 contributors at 1B (kalavai_20contributor_experiment.py), each a data manifest.

    Their ten CC-100 languages, in their order, then their ten domains under this project's names
    where the data is the same: their medical, legal and patent are pubmed, eurlex and patents;
    their twenty-contributor "fiction" (TinyStories) is "stories", as "fiction" here is PG-19.
    Which Hub data stands in for theirs, and why: data_manifests/README.md.
    """
    return ["tamil", "yoruba", "welsh", "spanish", "hindi", "swahili", "vietnamese", "arabic", "indonesian", "thai",
            "code", "pubmed", "eurlex", "patents", "math", "finance", "chemistry", "stories", "dialogue", "instructions"]


def data_folder(scale: Scale, runs: Path, domains) -> Path:
    """Chunk files for `domains` under data/phase2/ (the base's tokenizer, the usual split)."""
    tokenizer = pipeline.prepare_tokenizer(scale, runs)
    out = runs / "data" / "phase2"
    t_hash = pipeline.tokenizer_hash(scale, runs)
    records = {d: data.prepare_domain(scale, d, tokenizer, out, tokenizer_hash=t_hash) for d in domains}
    data.write_manifest(out, records, {"scale": scale.name, "tokenizer": t_hash, "seq_len": scale.seq_len})
    return out


def train_overrides(scale: Scale, section: str) -> dict:
    """How a section's contributors train unlike the scale's specialists.

    At the Hub scales every Phase 2 contributor trains every block, as the authors' Phase 2
    scripts did (paper.PHASE2_FREEZE_LAYERS; the input embedding stays the shared base's, which
    the fused model's prefix needs); their other settings are the scale's own. Offline the
    sections keep the scale's frozen depth: notebook 04's fit, the twenty's out-of-sample test's
    first line, was measured at that depth, and experts of 4 blocks instead of 1 would make
    Phase 2's routers and evaluation about four times dearer at `tiny`.
    """
    if section not in SECTIONS:
        raise KalavaiError(f"unknown Phase 2 section {section!r}; choose one of: {', '.join(SECTIONS)}")
    return {"freeze_layers": paper.PHASE2_FREEZE_LAYERS} if scale.is_hub else {}


def section_freeze_layers(scale: Scale, section: str) -> int:
    """The frozen depth of a section's contributors at this scale."""
    return frozen_depth(scale, train_overrides(scale, section))


def cooperative_for(scale: Scale, runs: Path, section: str, seed: int, recipes=()) -> Cooperative:
    """One section's cooperative; `recipes` add the authors' router trained by each recipe."""
    domains = domains_for(scale, section)
    return Cooperative(scale=scale, experiment=EXPERIMENT, condition=section, seed=seed, domains=domains,
                       data_dir=data_folder(scale, runs, domains), train_overrides=train_overrides(scale, section),
                       routers=(paper_router(scale), CAUSAL_ROUTER), monolithic=False,
                       recipes=tuple((*paper_router(scale), r) for r in recipes))


# ---------------------------------------------------------------- router recipes

# The authors' remedy for collapse: 100 single-language steps, then 400 mixed (500 in all).
WARM = RouterRecipe("warm", warm_fraction=0.2)
# The authors' later many-expert router: 1,000 steps, load balancing 0.05, cosine schedule.
MANY = RouterRecipe("lb", steps_factor=2.0, balance=0.05, schedule="cosine")


def recipe_model(kind: str, granularity: str, recipe: RouterRecipe, mode: str = "soft") -> str:
    """The results name of the fused model whose router `recipe` trained."""
    return fused_name(kind, granularity, mode, recipe)


# ---------------------------------------------------------------- running a section

def predict_before_routing(coop: Cooperative, runs: Path, base, base_fp: str) -> dict:
    """The gain predicted from the specialists' divergences, before any router is trained.

    Divergence needs each specialist's loss on its own domain only (and the base's), so only
    those are evaluated here; the cooperative's one evaluation pass scores the rest later.
    Written to the cooperative's folder (prediction.json) with the lines it used: notebook
    04's fit (runs/<scale>/sweep/fit.json) when it exists, and the paper's line; kept while
    the submissions, base and fit are the same.
    """
    s = coop.scale
    train_contributors(coop, runs, base, base_fp)
    folder, fit_path = coop.folder(runs), runs / "sweep" / "fit.json"
    config = {"submissions": [sha256_file(f / "kalavai_submission.json") for f in submission_folders(coop, runs)],
              "base": base_fp, "eval": [s.eval_batch, s.eval_max_batches],
              "fit": sha256_file(fit_path) if fit_path.exists() else None}
    if step_is_done(folder / "prediction", config) and (folder / "prediction.json").exists():
        return read_json(folder / "prediction.json")
    heldout = data.load_splits(coop.data_dir, coop.domains, "heldout")
    base_loss = base_losses(base, base_fp, heldout, s, runs)
    divs = {}
    for domain, sub in zip(coop.domains, iter_submissions(submission_folders(coop, runs), base, config_freeze(coop))):
        model = for_inference(sub.model, s.bf16)
        own = evaluate_domains(model, {domain: heldout[domain]}, s.eval_batch, s.eval_max_batches,
                               states=prefix.for_model(model, config_freeze(coop)))  # kept for the fused pass
        divs[domain] = divergence_pct(base_loss[domain], own[domain])
    out = {"paper_line": {**prediction.predict_gain(divs, prediction.paper_fit()), "fit": prediction.paper_fit().equation()}}
    if fit_path.exists():
        fit, _ = prediction.load_fit(fit_path)
        out["notebook04_fit"] = {**prediction.predict_gain(divs, fit), "fit": fit.equation()}
    start_step(folder / "prediction")
    atomic_write_json(folder / "prediction.json", out)
    mark_step_done(folder / "prediction", config)
    return out


def run_section(scale: Scale, runs: Path, base, base_fp: str, section: str, seeds, recipes=()) -> list[dict]:
    """Every seed of one section (cached): the cooperative's results, `recipes`' routers among them."""
    out = []
    for seed in seeds:
        coop = cooperative_for(scale, runs, section, seed, recipes)
        if section == "twenty":
            predict_before_routing(coop, runs, base, base_fp)
        out.append(run_cooperative(coop, runs, base, base_fp))
    return out


def load_section(runs: Path, section: str) -> list[dict]:
    folder = runs / EXPERIMENT / section
    return [load_results(p) for p in sorted(folder.glob(f"seed*/{RESULTS_FILE}"))]


# ---------------------------------------------------------------- what the notebook shows

def base_weakness(scale: Scale, runs: Path, base, section_domains, reference=("code", "science", "fiction")) -> pd.DataFrame:
    """The base's held-out loss, characters per token and loss per character on each domain.

    A script the tokenizer never saw falls apart into bytes (few characters per token); per
    character, the base's loss there is far above its loss on the English-like domains. Only
    the loss per character compares domains: the loss per token (and so a perplexity, left out
    for that reason) depends on how many characters a token carries, which differs by domain.
    """
    domains = list(dict.fromkeys([*reference, *section_domains]))
    folder = data_folder(scale, runs, domains)
    heldout = {d: data.load_split(folder, d, "heldout")[: scale.eval_batch * scale.eval_max_batches] for d in domains}
    losses = evaluate_domains(base, heldout, scale.eval_batch, scale.eval_max_batches)
    tokenizer = pipeline.prepare_tokenizer(scale, runs)
    rows = []
    for d in domains:
        chars = len("".join(tokenizer.decode(c) for c in heldout[d])) / heldout[d].numel()
        rows.append({"domain": d, "kind": "reference" if d in reference else "new", "base_loss": losses[d],
                     "chars_per_token": chars, "loss_per_char": losses[d] / chars})
    atomic_write_json(runs / EXPERIMENT / "base_weakness.json", {r["domain"]: r for r in rows})  # for summarize
    return pd.DataFrame(rows).set_index("domain")


def weak_languages(weakness: pd.DataFrame, languages) -> dict[str, list[str]]:
    """The new languages whose loss per character is above every reference domain's, and above
    every prose reference domain's (code apart: scales.domain_kind)."""

    ref, new = weakness[weakness.kind == "reference"], weakness[weakness.kind == "new"]
    prose = ref[[domain_kind(d, languages) == "English-like prose" for d in ref.index]]
    return {"every reference": list(new.index[new["loss_per_char"] > ref["loss_per_char"].max()]),
            "prose references": list(prose.index),
            "every prose reference": list(new.index[new["loss_per_char"] > prose["loss_per_char"].max()])}


def law_at_divergence(result: dict, model: str, runs: Path) -> dict:
    """What the divergence law says of one cooperative: notebook 04's line at its mean divergence
    (when notebook 04 has run), and the paper's line at the paper's own cross-lingual divergence."""
    out = {"measured": result["metrics"]["gain_vs_best_pct"][model],
           "paper_line_at_paper_divergence": float(prediction.paper_fit().predict([paper.CROSS_LINGUAL["divergence"]])[0][0])}
    fit_path = Path(runs) / "sweep" / "fit.json"
    if fit_path.exists():
        out["notebook04_fit"] = prediction.predict_gain(result["metrics"]["divergence_pct"], prediction.load_fit(fit_path)[0])
    return out


def collapse(result: dict, model: str, share: float = COLLAPSE_SHARE) -> dict:
    """Per domain: its own expert's share of the gate weight; collapsed where below `share`."""
    gates = result["gates"].get(model)
    if gates is None:
        raise KalavaiError(f"no gates for {model!r} in results of seed {result.get('seed')}")
    return collapse_from_gates(gates, list(result["domains"]), share)


def collapse_from_gates(gates: dict[str, list[float]], experts: list[str], share: float = COLLAPSE_SHARE) -> dict:
    """The rule on a gate matrix {domain: mean gates over the experts in `experts` order}."""
    own = {d: float(gates[d][experts.index(d)]) for d in gates if d in experts}
    top = {d: experts[int(np.argmax(gates[d]))] for d in gates}
    collapsed = sorted(d for d, w in own.items() if w < share)
    return {"own_share": own, "top_expert": top, "collapsed": collapsed, "rule": f"own expert < {share:.0%} of gate weight"}


def collapsed_text(collapsed: list[str]) -> str:
    """A `collapse(...)["collapsed"]` list as the notebook's tables write it (NO_COLLAPSE when empty)."""
    return ", ".join(collapsed) or NO_COLLAPSE


def inside_band(prediction: dict, measured: float) -> bool:
    """Whether a measured gain lies inside a prediction's 95% band (a predict_gain dict)."""
    return bool(prediction["lo"] <= measured <= prediction["hi"])


def band_verdict(prediction: dict, measured: float) -> str:
    """`inside_band` in words, saying when the prediction is an extrapolation (its mean
    divergence outside the fitted points)."""
    out = "inside the 95% band" if inside_band(prediction, measured) else "OUTSIDE the 95% band"
    if prediction.get("outside_fit_range"):
        out += (", but the prediction is an extrapolation: the mean divergence lies outside the divergences "
                "the line was fitted on")
    return out + "."


FOLD = "fold (base / fused)"


def perplexity_table(results: list[dict], model: str) -> pd.DataFrame:
    """Per language/domain: base, own specialist and fused perplexity (mean over seeds), and how
    many times the perplexity falls from base to fused (the fold the paper's claim speaks of)."""
    rows = []
    for d in results[0]["domains"]:
        def ppl(m):
            return float(np.mean([math.exp(r["losses"][m][d]) for r in results]))
        row = {"domain": d, "base": ppl("base"), "own specialist": ppl(f"spec:{d}"), "fused": ppl(model)}
        row["fused vs base %"] = 100 * (row["base"] - row["fused"]) / row["base"]
        row[FOLD] = row["base"] / row["fused"]
        rows.append(row)
    table = pd.DataFrame(rows).set_index("domain")
    return table


def paper_cross_lingual_rows() -> pd.DataFrame:
    """The paper's Yoruba and Welsh perplexities (Pythia-410M: base, fused), labelled as the paper's."""
    rows = []
    for lang in ("yoruba", "welsh"):
        b, f = paper.CROSS_LINGUAL[f"{lang}_ppl"]
        rows.append({"domain": f"paper: {lang} (410M)", "base": b, "own specialist": math.nan, "fused": f,
                     "fused vs base %": 100 * (b - f) / b, FOLD: b / f})
    return pd.DataFrame(rows).set_index("domain")


# "Several-fold": the bar is 2x; the paper's Yoruba and Welsh fell well beyond it (paper.CROSS_LINGUAL).
SEVERAL_FOLD = 2.0


def main_gains(runs: Path, model: str) -> list[float]:
    """The main cooperative's gain vs the best specialist (notebooks 02-03), one per seed that has run."""
    return [load_results(p)["metrics"]["gain_vs_best_pct"][model]
            for p in sorted((Path(runs) / "main" / "main").glob(f"seed*/{RESULTS_FILE}"))]


def cross_lingual_claims(runs: Path, cross: list[dict], model: str) -> list[dict]:
    """The paper's two claims about its cross-lingual cooperative beyond a positive gain, checked:
    it is the largest gain (above the main cooperative's), and the languages' perplexity falls
    several-fold from base to fused. Each: {claim, holds, numbers}."""
    out = []
    gains, main = [r["metrics"]["gain_vs_best_pct"][model] for r in cross], main_gains(runs, model)
    if main:
        out.append({"claim": "cross-lingual: gain above the main cooperative's",
                    "holds": bool(np.mean(gains) > np.mean(main)),
                    "numbers": f"cross-lingual {np.mean(gains):+.2f}% vs main {np.mean(main):+.2f}% (means over seeds; paper 410M: "
                               f"{paper.CROSS_LINGUAL['gain']:+.2f}% vs {paper.HEADLINE['410m']['gain']:+.2f}%)"})
    ppl = perplexity_table(cross, model)
    folds = {d: ppl.loc[d, FOLD] for d in ppl.index if d not in ENGLISH_DOMAINS}
    theirs = {lang: b / f for lang, (b, f) in ((k, paper.CROSS_LINGUAL[f"{k}_ppl"]) for k in ("yoruba", "welsh"))}
    out.append({"claim": f"cross-lingual: every language's perplexity falls several-fold (at least {SEVERAL_FOLD:g}x) from base to fused",
                "holds": bool(folds) and all(f >= SEVERAL_FOLD for f in folds.values()),
                "numbers": ", ".join(f"{d} {f:.2f}x" for d, f in folds.items())
                           + " (paper 410M: " + ", ".join(f"{k} {f:.1f}x" for k, f in theirs.items()) + ")"})
    return out


def section_table(results: list[dict], models: list[str]) -> pd.DataFrame:
    """Per seed: gain vs best specialist and vs base for each model, mean divergence, collapse."""
    rows = []
    for r in results:
        m = r["metrics"]
        for model in models:
            if model not in r["losses"]:
                continue
            row = {"seed": r["seed"], "model": model, "gain_vs_best_%": m["gain_vs_best_pct"][model],
                   "gain_vs_base_%": m["gain_vs_base_pct"][model], "mean_divergence_%": m["mean_divergence_pct"]}
            if model in r["gates"]:
                row["collapsed"] = collapsed_text(collapse(r, model)["collapsed"])
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- memory of the fused model
# (Pythia's shapes: scales.PYTHIA_SHAPES; the twenty's frozen depth at each Hub scale: train_overrides)


def param_counts(d: int, n_layers: int, ffn: int, vocab: int, freeze: int) -> dict:
    """Parameters of the shared prefix (embedding + first `freeze` blocks) and of one expert's suffix."""
    block = 4 * d * d + 4 * d + 2 * d * ffn + ffn + d + 4 * d  # attention (qkv + dense), MLP, two layer norms
    return {"prefix": vocab * d + freeze * block, "suffix": (n_layers - freeze) * block + 2 * d + vocab * d}


def fused_memory(n_experts: int, counts: dict, bytes_per_param: int) -> dict:
    """Bytes of the fused model (prefix once, N suffixes) and the coordinator's peak while building it.

    cooperative.assemble loads the submissions one at a time: the fused model plus one
    specialist in flight; with the weight-averaging baseline, also its float64 sums and the
    first specialist (kept as the average's template). Beside them, the peak of collecting
    every specialist before fusing, as the coordinator did before assemble.
    """
    full = counts["prefix"] + counts["suffix"]
    fused = counts["prefix"] + n_experts * counts["suffix"]
    return {"fused_gb": fused * bytes_per_param / 1e9,
            "peak_assembly_gb": (fused + full) * bytes_per_param / 1e9,
            "peak_with_weight_average_gb": ((fused + 2 * full) * bytes_per_param + 8 * full) / 1e9,
            "peak_if_all_loaded_gb": (fused + n_experts * full) * bytes_per_param / 1e9,
            "n_copies_of_prefix_in_fused": 1}


def memory_table(scale: Scale, n_experts: int = 20) -> pd.DataFrame:
    rows = []
    s = scale
    if not s.is_hub:
        from ..protocol.models import offline_config
        c = offline_config(s)
        freeze = section_freeze_layers(s, "twenty")
        counts = param_counts(c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size, freeze)
        rows.append({"scale": s.name, "bytes/param": 2 if s.bf16 else 4, "frozen blocks": freeze,
                     **fused_memory(n_experts, counts, 2 if s.bf16 else 4)})
    for name, (d, layers, ffn, vocab) in PYTHIA_SHAPES.items():
        hub = get_scale(name)
        freeze = section_freeze_layers(hub, "twenty")
        counts = param_counts(d, layers, ffn, vocab, freeze)
        rows.append({"scale": name, "bytes/param": 2, "frozen blocks": freeze, **fused_memory(n_experts, counts, 2)})
    return pd.DataFrame(rows).set_index("scale")


# ---------------------------------------------------------------- reference summary

def summarize(runs: Path) -> dict:
    """Notebook 06's numbers for results/<scale>/06_phase2.json (keys as analysis/reference.py's)."""
    runs = Path(runs)
    out = {}
    for section in SECTIONS:
        results = load_section(runs, section)
        if not results:
            continue
        seeds = {}
        for r in results:
            models = [m for m in r["losses"] if m.startswith("fused:") or m == "uniform"]
            seeds[f"seed{r['seed']}"] = {
                "ew": {m: r["metrics"]["ew"][m] for m in ["base", *r["specialists"].values(), *models]},
                # per domain, where a collapsed router's cost shows (the twenty: the fused model vs the base on law)
                "losses": {m: r["losses"][m] for m in ["base", *models]},
                "gain_vs_best_pct": {m: r["metrics"]["gain_vs_best_pct"][m] for m in models},
                "divergence_pct": r["metrics"]["divergence_pct"],
                "mean_divergence_pct": r["metrics"]["mean_divergence_pct"],
                "gates": {m: g for m, g in r["gates"].items()},
                "collapsed": {m: collapse(r, m)["collapsed"] for m in r["gates"]},
            }
        out[section] = seeds
        if section == "cross-lingual":  # notebook 06's perplexity table (the authors' router), each seed and over seeds
            model = paper_model(results)
            out[section]["perplexity"] = {"router": model, "mean_over_seeds": perplexity_summary(perplexity_table(results, model)),
                                          **{f"seed{r['seed']}": perplexity_summary(perplexity_table([r], model)) for r in results}}
        if section == "twenty":  # notebook 06's memory table: computed from parameter counts, not measured
            out[section]["memory"] = {name: {"bytes_per_param": int(row["bytes/param"]), "frozen_blocks": int(row["frozen blocks"]),
                                             **{k: float(row[k]) for k in row.index if k.endswith("_gb")}}
                                      for name, row in memory_table(get_scale(results[0]["scale"])).iterrows()}
        pred = runs / EXPERIMENT / section / f"seed{results[0]['seed']}" / "prediction.json"
        if pred.exists():  # "gain" in the key path: compared to 0.01 pp, as every percentage
            out[section]["prediction"] = {line: {"gain": {k: p[k] for k in ("predicted_gain", "lo", "hi")},
                                                 "mean_divergence": p["mean_divergence"]}
                                          for line, p in read_json(pred).items()}
    weakness = runs / EXPERIMENT / "base_weakness.json"
    if weakness.exists():
        out["base_weakness"] = {d: {k: r[k] for k in ("base_loss", "chars_per_token", "loss_per_char")}
                                for d, r in read_json(weakness).items()}
    out["verdicts"] = verdicts(runs)
    return out


def paper_model(results: list[dict]) -> str:
    """The authors' router at the results' scale (the fused model the notebook's verdicts judge)."""
    return paper_fused(get_scale(results[0]["scale"]))


def perplexity_summary(table: pd.DataFrame) -> dict:
    """perplexity_table's rows as the reference summary keeps them (keys under "perplexity": compared relatively)."""
    return {d: {"base": float(row["base"]), "own_specialist": float(row["own specialist"]), "fused": float(row["fused"]),
                "fold": float(row[FOLD])} for d, row in table.iterrows()}


def verdicts(runs: Path) -> dict[str, bool]:
    """The notebook's computed verdicts that the results files decide (the authors' router at the scale)."""
    out = {}
    for section in SECTIONS:
        results = load_section(runs, section)
        if not results:
            continue
        model = paper_model(results)
        out[f"{section}: gain vs best specialist positive on every seed"] = all(
            r["metrics"]["gain_vs_best_pct"][model] > 0 for r in results)
        out[f"{section}: fused below base on every domain"] = all(
            r["losses"][model][d] < r["losses"]["base"][d] for r in results for d in r["domains"])
        out[f"{section}: router collapse found (plain router)"] = any(collapse(r, model)["collapsed"] for r in results)
        for recipe in (WARM, MANY):
            name = recipe_model(*paper_router(get_scale(results[0]["scale"])), recipe)
            if name in results[0]["gates"]:
                out[f"{section}: router collapse found ({recipe.name} router)"] = any(collapse(r, name)["collapsed"] for r in results)
        if section == "cross-lingual":
            out.update({c["claim"]: c["holds"] for c in cross_lingual_claims(runs, results, model)})
        pred = runs / EXPERIMENT / section / f"seed{results[0]['seed']}" / "prediction.json"
        if pred.exists():
            gain = results[0]["metrics"]["gain_vs_best_pct"][model]
            for line, p in read_json(pred).items():
                out[f"{section}: measured gain inside the {line} 95% band"] = inside_band(p, gain)
    return out


# ---------------------------------------------------------------- figures

def gate_grid(results: list[dict], models: list[str]):
    """Gate matrices (held-out domain x expert), one row per seed, one column per router."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    n = len(results[0]["domains"])
    size = 0.45 * n + 1.5
    fig, axes = plt.subplots(len(results), len(models), figsize=(size * len(models), size * len(results)), squeeze=False)
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
