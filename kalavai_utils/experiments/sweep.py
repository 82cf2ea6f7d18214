"""Notebook 04's conditions: many cooperatives spanning low to high divergence. The table of
(divergence, gain, other predictors) the gain predictor is fitted on is analysis/sweep_tables.py.

Each condition is a cooperative run by cooperative.run_cooperative, with its own results
file in the common schema under runs/<scale>/sweep/<condition>/seed<seed>/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..protocol import pipeline
from ..protocol.cooperative import (
    CAUSAL_ROUTER,
    Cooperative,
    cooperative_jobs,
    main_cooperative,
    paper_router,
    run_cooperative,
)
from ..runtime import workers
from ..scales import Scale


@dataclass(frozen=True)
class Condition:
    name: str
    domains: tuple[str, ...]
    overlap: float | None = None  # offline corpora only; None: the scale's default
    overrides: dict = field(default_factory=dict)  # specialist TrainConfig overrides
    varies: str = ""  # which knob this condition turns, for the notebook's table


def conditions(scale: Scale) -> list[Condition]:
    """The sweep: turn one knob at a time away from the main cooperative."""
    main = tuple(scale.domains)
    if scale.is_hub:
        # Only the paper's conditions whose data our data_manifests describe.
        return [
            Condition("main", main, varies="main"),
            Condition("two-domain", main[:2], varies="specialists"),
            Condition("private-domains", tuple(scale.extra_domains), varies="domains"),
            Condition("cross-lingual", (*scale.languages, "code"), varies="languages"),
        ]
    extra, langs = tuple(scale.extra_domains), tuple(scale.languages)
    steps = scale.spec_steps
    every = [
        Condition("main", main, varies="main"),
        Condition("overlap0.20", main, overlap=0.2, varies="domain overlap"),
        Condition("overlap0.80", main, overlap=0.8, varies="domain overlap"),
        Condition("n2", main[:2], varies="specialists"),
        Condition("n4", (*main, extra[0]), varies="specialists"),
        Condition("n5", (*main, *extra[:2]), varies="specialists"),
        Condition(f"steps{steps // 4}", main, overrides={"steps": steps // 4}, varies="training steps"),
        Condition(f"steps{steps // 2}", main, overrides={"steps": steps // 2}, varies="training steps"),
        Condition("languages", langs, varies="languages"),
        Condition("code+languages", ("code", *langs[:2]), varies="languages"),
        # two frozen depths other than the scale's own (that one is the main cooperative)
        *(
            Condition(f"freeze{k}", main, overrides={"freeze_layers": k}, varies="frozen depth")
            for k in sorted({0, 1, scale.n_layers - 1} - {scale.freeze_layers})[:2]
        ),
        Condition("overlap0.20-n5", (*main, *extra[:2]), overlap=0.2, varies="domain overlap + specialists"),
    ]
    return every[: scale.sweep_max_conditions or None]


def cooperative_for(scale: Scale, runs: Path, cond: Condition, seed: int) -> Cooperative:
    if cond.name == "main":  # the main experiment's cooperative: its results are reused as they are
        folder, _ = pipeline.prepare_corpus(scale, runs)
        return main_cooperative(scale, runs, seed, folder, ablation=(seed == scale.seeds[0]))
    folder, _ = pipeline.prepare_corpus(scale, runs, domains=cond.domains, overlap=cond.overlap)
    return Cooperative(
        scale=scale,
        experiment="sweep",
        condition=cond.name,
        seed=seed,
        domains=cond.domains,
        data_dir=folder,
        train_overrides=dict(cond.overrides),
        routers=(paper_router(scale), CAUSAL_ROUTER),
        monolithic=False,
    )


def run_sweep(scale: Scale, runs: Path, base, base_fp: str, seeds=None, only=None) -> list[dict]:
    """Every condition x seed (cached); returns their results."""
    seeds = list(seeds or scale.sweep_seeds)
    todo = [(cond, seed) for cond in conditions(scale) if not only or cond.name in only for seed in seeds]
    coops = [cooperative_for(scale, runs, cond, seed) for cond, seed in todo]
    # several at a time where the machine has idle cores; the loop below then finds them cached
    workers.run_in_workers(cooperative_jobs([(coop, None) for coop in coops], runs), "sweep")
    out = []
    for (cond, _), coop in zip(todo, coops):
        res = run_cooperative(coop, runs, base, base_fp)
        out.append({**res, "sweep": {"condition": cond.name, "varies": cond.varies}})
    return out
