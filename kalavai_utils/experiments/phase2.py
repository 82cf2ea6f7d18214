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

The cross-lingual cooperative also carries the baselines of the authors' later experiments:
a compute-matched monolithic model (the cooperative's `monolithic`: one model on the union of
the four contributors' train chunks for as many steps as the four specialists together, as
their w3 script: 4 x 2,000), a joint fine-tune of experts and router after router-only fusion
(`JOINT`, protocol/joint.py; their w5) and a router trained on text the contributors never saw
(`OWN_TEXT`; their w4, on FLORES-200): offline the documents of each domain's pretraining
stream (`own_text_folder`); these three on the first seed (`BASELINE_SEEDS`). On every seed, the
router re-initialised while it collapses (`REINIT`; their w6).

The Phase 2 data lives in runs/<scale>/data/phase2/, apart from notebook 00's corpus
folders: nothing notebooks 00-04 read or wrote changes. The tables, verdicts and `summarize`
are in analysis/phase2_tables.py, the figures in analysis/figures_phase2.py.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pandas as pd

from .. import corpora, paper
from ..errors import KalavaiError
from ..protocol import data, pipeline, prediction
from ..protocol.cooperative import (
    CAUSAL_ROUTER,
    Cooperative,
    base_losses,
    config_freeze,
    cooperative_jobs,
    frozen_depth,
    fused_name,
    paper_router,
    run_cooperative,
    submission_folders,
    train_contributors,
    worker_base,
)
from ..protocol.evaluation import evaluate_domains
from ..protocol.joint import JOINT
from ..protocol.metrics import divergence_pct
from ..protocol.models import for_inference
from ..protocol.results import load_results
from ..protocol.routers import RouterRecipe
from ..protocol.submission import iter_submissions
from ..runtime import prefix, workers
from ..scales import ENGLISH_DOMAINS, Scale
from ..storage import atomic_write_json, mark_step_done, read_json, sha256_file, start_step, step_is_done

EXPERIMENT = "phase2"
SECTIONS = ("cross-lingual", "private", "twenty")
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
    return [
        "tamil",
        "yoruba",
        "welsh",
        "spanish",
        "hindi",
        "swahili",
        "vietnamese",
        "arabic",
        "indonesian",
        "thai",
        "code",
        "pubmed",
        "eurlex",
        "patents",
        "math",
        "finance",
        "chemistry",
        "stories",
        "dialogue",
        "instructions",
    ]


def data_folder(scale: Scale, runs: Path, domains) -> Path:
    """Chunk files for `domains` under data/phase2/ (the base's tokenizer, the usual split); within
    pipeline.planning(), only the folder's name."""
    out = runs / "data" / "phase2"
    if pipeline.planning_only():
        return out
    tokenizer = pipeline.prepare_tokenizer(scale, runs)
    t_hash = pipeline.tokenizer_hash(scale, runs)
    records = {d: data.prepare_domain(scale, d, tokenizer, out, tokenizer_hash=t_hash) for d in domains}
    data.write_manifest(out, records, {"scale": scale.name, "tokenizer": t_hash, "seq_len": scale.seq_len})
    return out


def train_overrides(scale: Scale, section: str) -> dict:
    """How a section's contributors train unlike the scale's specialists.

    Every cross-lingual contributor trains every block, as the authors' Phase 2 scripts did
    (paper.PHASE2_FREEZE_LAYERS; the input embedding stays the shared base's, which the fused
    model's prefix needs); their other settings are the scale's own. At the Hub scales the
    private and twenty contributors do too. Offline those two keep the scale's frozen depth:
    notebook 04's fit, the twenty's out-of-sample test's first line, was measured at that depth,
    and twenty experts of every block would make the twenty's routers and evaluation about four
    times dearer at `tiny`.
    """
    if section not in SECTIONS:
        raise KalavaiError(f"unknown Phase 2 section {section!r}; choose one of: {', '.join(SECTIONS)}")
    every_block = scale.is_hub or section == "cross-lingual"
    return {"freeze_layers": paper.PHASE2_FREEZE_LAYERS} if every_block else {}


def section_freeze_layers(scale: Scale, section: str) -> int:
    """The frozen depth of a section's contributors at this scale."""
    return frozen_depth(scale, train_overrides(scale, section))


def own_text_folder(scale: Scale, runs: Path, domains) -> Path:
    """Chunk files of the coordinator's own text for `domains`, under data/phase2-own/ (train split used).

    Offline: each domain's pretraining stream (corpora's stream "pretrain", the base's public
    text, generated apart from the contributors' "specialist" stream; tests/test_phase2.py checks
    that no document or chunk is shared). At the Hub scales the authors used FLORES-200's dev
    sentences (and a fresh code sample); no data manifest here declares such a set, so it is
    refused rather than invented.
    """
    if scale.is_hub:
        raise KalavaiError(OWN_TEXT_REFUSAL)
    out = runs / "data" / "phase2-own"
    if pipeline.planning_only():
        return out
    tokenizer = pipeline.prepare_tokenizer(scale, runs)
    t_hash = pipeline.tokenizer_hash(scale, runs)
    records = {
        d: data.prepare_domain(scale, d, tokenizer, out, stream="pretrain", tokenizer_hash=t_hash) for d in domains
    }
    data.write_manifest(out, records, {"scale": scale.name, "tokenizer": t_hash, "seq_len": scale.seq_len})
    return out


OWN_TEXT_REFUSAL = (
    "no router text of the coordinator's own at the Hub scales: the authors used FLORES-200, and no data "
    "manifest here declares it"
)


# The authors' later baselines that cost a cooperative's worth of compute (the compute-matched
# monolithic model, the joint fine-tune, the router on the coordinator's own text) run on the
# section's first seed only: the authors ran them on one seed (W3, W4) or two (W5), and at `tiny`
# they would double each seed's time. The warm start and re-initialisation run on every seed.
BASELINE_SEEDS = 1
# Offline, the twenty's evaluation reads this many batches of each domain (not the scale's 50): its
# fused model runs twenty experts on every batch, and at `tiny` 20 domains x 50 batches took 3.5
# minutes, a tenth of the whole run. 20 batches of 4 x 128 tokens: about 10k tokens per domain.
TWENTY_EVAL_BATCHES = 20


def cooperative_for(
    scale: Scale, runs: Path, section: str, seed: int, recipes=(), baselines: bool = True
) -> Cooperative:
    """One section's cooperative; `recipes` add the authors' router trained by each recipe.

    With `baselines`, the cross-lingual one also trains the compute-matched monolithic model, the
    joint fine-tune and the own-text router (a recipe with text "own"); without, none of them.
    """
    domains = domains_for(scale, section)
    if section == "twenty" and not scale.is_hub:
        scale = replace(scale, eval_max_batches=min(scale.eval_max_batches, TWENTY_EVAL_BATCHES))
    cross = section == "cross-lingual" and baselines
    recipes = [r for r in recipes if baselines or r.text != "own"]
    own = any(r.text == "own" for r in recipes)
    return Cooperative(
        scale=scale,
        experiment=EXPERIMENT,
        condition=section,
        seed=seed,
        domains=domains,
        data_dir=data_folder(scale, runs, domains),
        train_overrides=train_overrides(scale, section),
        routers=(paper_router(scale), CAUSAL_ROUTER),
        monolithic=cross,
        recipes=tuple((*paper_router(scale), r) for r in recipes),
        own_text_dir=own_text_folder(scale, runs, domains) if own else None,
        joint=JOINT if cross else None,
    )


# ---------------------------------------------------------------- router recipes

# The authors' remedy for collapse: 100 single-language steps, then 400 mixed (500 in all).
WARM = RouterRecipe("warm", warm_fraction=0.2)
# The authors' later many-expert router: 1,000 steps, load balancing 0.05, cosine schedule.
MANY = RouterRecipe("lb", steps_factor=2.0, balance=0.05, schedule="cosine")
# The authors' fix for the seed-42 collapse: a router from another init, retrained while a
# language collapses, at most 5 attempts (their --max-router-tries).
REINIT = RouterRecipe("reinit", reinit=5)
# A router trained on the coordinator's own text, not the contributors' (their W4).
OWN_TEXT = RouterRecipe("own", text="own")


def cross_lingual_recipes(scale: Scale) -> list[RouterRecipe]:
    """The router recipes the cross-lingual cooperative fits at this scale (the own-text router
    only where there is such text: offline)."""
    return [WARM, REINIT] + ([] if scale.is_hub else [OWN_TEXT])


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
    config = {
        "submissions": [sha256_file(f / "kalavai_submission.json") for f in submission_folders(coop, runs)],
        "base": base_fp,
        "eval": [s.eval_batch, s.eval_max_batches],
        "fit": sha256_file(fit_path) if fit_path.exists() else None,
    }
    if step_is_done(folder / "prediction", config) and (folder / "prediction.json").exists():
        return read_json(folder / "prediction.json")
    heldout = data.load_splits(coop.data_dir, coop.domains, "heldout")
    base_loss = base_losses(base, base_fp, heldout, s, runs)
    divs = {}
    for domain, sub in zip(coop.domains, iter_submissions(submission_folders(coop, runs), base, config_freeze(coop))):
        model = for_inference(sub.model, s.bf16)
        own = evaluate_domains(
            model,
            {domain: heldout[domain]},
            s.eval_batch,
            s.eval_max_batches,
            states=prefix.for_model(model, config_freeze(coop)),
        )  # kept for the fused pass
        divs[domain] = divergence_pct(base_loss[domain], own[domain])
    out = {
        "paper_line": {
            **prediction.predict_gain(divs, prediction.paper_fit()),
            "fit": prediction.paper_fit().equation(),
        }
    }
    if fit_path.exists():
        fit, _ = prediction.load_fit(fit_path)
        out["notebook04_fit"] = {**prediction.predict_gain(divs, fit), "fit": fit.equation()}
    start_step(folder / "prediction")
    atomic_write_json(folder / "prediction.json", out)
    mark_step_done(folder / "prediction", config)
    return out


def sections(scale: Scale, seeds) -> list[tuple[str, list[int], list[RouterRecipe]]]:
    """Notebook 06's sections as it runs them: (section, seeds, recipes). The cross-lingual
    cooperative on every seed; the private and twenty ones, a seed's work each, on the first."""
    seeds = list(seeds)
    return [
        ("cross-lingual", seeds, cross_lingual_recipes(scale)),
        ("private", seeds[:1], []),
        ("twenty", seeds[:1], [MANY]),
    ]


def section_cooperatives(scale: Scale, runs: Path, section: str, seeds, recipes=()) -> list[Cooperative]:
    """One section's cooperative per seed, the baselines on the first BASELINE_SEEDS seeds."""
    return [
        cooperative_for(scale, runs, section, seed, recipes, baselines=i < BASELINE_SEEDS)
        for i, seed in enumerate(seeds)
    ]


def run_section(scale: Scale, runs: Path, base, base_fp: str, section: str, seeds, recipes=()) -> list[dict]:
    """Every seed of one section (cached): the cooperative's results, `recipes`' routers among them
    (the baselines on the first BASELINE_SEEDS seeds)."""
    return [_run(coop, runs, base, base_fp) for coop in section_cooperatives(scale, runs, section, seeds, recipes)]


def _run(coop: Cooperative, runs: Path, base, base_fp: str) -> dict:
    if coop.condition == "twenty":
        predict_before_routing(coop, runs, base, base_fp)
    return run_cooperative(coop, runs, base, base_fp)


def _job(coop: Cooperative, runs: Path, revision: str | None = None) -> None:
    """One cooperative in a worker process (workers.run_in_workers), which loads the base itself."""
    _run(coop, runs, *worker_base(coop.scale, runs, revision))


def run_in_workers(scale: Scale, runs: Path, seeds) -> list[float] | None:
    """Every section's unfinished cooperatives, several at a time where the machine has idle cores
    (runtime/workers.py; the sections' own loops then find them cached); each one's seconds, or
    None where there is one worker and the loops do the work."""
    coops = [
        c
        for section, s, recipes in sections(scale, seeds)
        for c in section_cooperatives(scale, runs, section, s, recipes)
    ]
    return workers.run_in_workers(cooperative_jobs([(c, None) for c in coops], runs, _job), "phase 2")


def load_section(runs: Path, section: str) -> list[dict]:
    folder = runs / EXPERIMENT / section
    return [load_results(p) for p in sorted(folder.glob(f"seed*/{RESULTS_FILE}"))]


# ---------------------------------------------------------------- what the notebook shows


def base_weakness(
    scale: Scale, runs: Path, base, section_domains, reference=("code", "science", "fiction")
) -> pd.DataFrame:
    """The base's held-out loss, characters per token and loss per character on each domain.

    A script the tokenizer never saw falls apart into bytes (few characters per token); per
    character, the base's loss there is far above its loss on the English-like domains. Only
    the loss per character compares domains: the loss per token (and so a perplexity, left out
    for that reason) depends on how many characters a token carries, which differs by domain.
    """
    domains = list(dict.fromkeys([*reference, *section_domains]))
    folder = data_folder(scale, runs, domains)
    heldout = {d: data.load_split(folder, d, "heldout")[: scale.eval_batch * scale.eval_max_batches] for d in domains}
    # on the device and in the precision of every other number of the report (a copy: the caller's base stays put)
    model = for_inference(copy.deepcopy(base), scale.bf16)
    losses = evaluate_domains(model, heldout, scale.eval_batch, scale.eval_max_batches)
    tokenizer = pipeline.prepare_tokenizer(scale, runs)
    rows = []
    for d in domains:
        chars = len("".join(tokenizer.decode(c) for c in heldout[d])) / heldout[d].numel()
        rows.append(
            {
                "domain": d,
                "kind": "reference" if d in reference else "new",
                "base_loss": losses[d],
                "chars_per_token": chars,
                "loss_per_char": losses[d] / chars,
            }
        )
    atomic_write_json(runs / EXPERIMENT / "base_weakness.json", {r["domain"]: r for r in rows})  # for summarize
    return pd.DataFrame(rows).set_index("domain")
