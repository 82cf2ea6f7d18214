"""Notebook 05's experiments: the paper's eight ablations, through the one protocol.

Each ablation is a set of cooperatives run by cooperative.run_cooperative (or, for the
two that cannot be one ordinary cooperative, by the same pieces: verification, fit_routers,
evaluate_fused, results.make_results), with one results file each under
runs/<scale>/ablations/<condition>/seed<seed>/. A cooperative that notebooks 02-04 already
ran is not run again: `ablation_cooperative` returns that very cooperative (same folder,
same configuration), so its cached steps serve it; a specialist whose recipe equals one
already trained is copied into the new cooperative's folder and found done there (the
cache checks its configuration, so a wrong copy would only be retrained, never used).

1. freeze depth K           `freeze_depths`, cooperatives freeze<K> (K = scale's: main)
2. training-duration crossover  K=0 vs K=scale over a ladder of step counts: at the Hub
                             scales one cooperative per step count and K (`crossover_ladder`),
                             as the authors, and only when asked for (OPT_IN_SECTIONS);
                             offline, or left out, the specialists' held-out curves
3. base maturity            one cooperative per saved base revision (`maturity_revisions`)
4. shared initialisation    specialists of section 3 from different revisions, fused
                             through `UnsharedFusion` (explicit switch; no shared prefix)
5. heterogeneous contributors  one specialist with another batch / lr / half the steps
6. LoRA                     cooperatives of LoRA specialists, merged before submission
7. number of specialists    notebook 04's n2 / main / n4 / n5, re-evaluated on n5's domains
8. capacity control         one bigger model, pretrained like the base, trained on the mix

The tables, verdicts and `summarize` (results files only) are in analysis/ablation_tables.py,
the figures in analysis/figures_ablations.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from .. import paper
from ..errors import KalavaiError
from ..families import family_of
from ..protocol import data, pipeline
from ..protocol.cooperative import (
    CAUSAL_FUSED,
    CAUSAL_ROUTER,
    Cooperative,
    assemble,
    base_losses,
    cooperative_jobs,
    evaluate_fused,
    fit_routers,
    mixed_train_chunks,
    paper_fused,
    paper_router,
    run_cooperative,
    specialists_first,
    train_specialist,
)
from ..protocol.evaluation import evaluate_domains
from ..protocol.fusion import MODES, FusedModel, check_choice, check_same_config, weight_average
from ..protocol.lora import lora_spec
from ..protocol.models import (
    build_causal_lm,
    fingerprint,
    for_inference,
    load_causal_lm,
    n_params,
    offline_config,
    state_dict_hashes,
    tensor_sha256,
)
from ..protocol.pipeline import Bases, shared_revision
from ..protocol.results import load_results, make_results, specialist_names, write_results
from ..protocol.routers import GRANULARITIES, make_router, stack_logits
from ..protocol.submission import collect_submissions
from ..protocol.training import TrainConfig
from ..runtime import workers
from ..runtime.perf import Clock
from ..scales import Scale, step_count
from ..storage import atomic_write_json, mark_step_done, read_json, step_is_done
from . import sweep

EXPERIMENT = "ablations"
RESULTS = "results.json"

# Notebook 05's sections, in the order run_all runs them (its `sections` parameter picks some).
SECTIONS = ("freeze", "crossover", "maturity", "init", "heterogeneous", "lora", "count", "capacity")
# At the Hub scales these run only when asked for (`./run_all.sh --ablation-sections ...`): the
# training-duration ladder is 16 cooperatives of up to 20,000 steps, about twice the GPU time of
# every other section together (`python -m kalavai_utils budget` states each one's cost).
OPT_IN_SECTIONS = ("crossover",)
SECTIONS_PARAMETER = "sections"


def default_sections(scale: Scale) -> tuple[str, ...]:
    """The sections notebook 05 runs when its `sections` parameter is None: every one offline (the
    crossover ladder is empty there), at the Hub scales all but OPT_IN_SECTIONS."""
    return tuple(s for s in SECTIONS if not (scale.is_hub and s in OPT_IN_SECTIONS))


def check_sections(value) -> tuple[str, ...] | None:
    """Notebook 05's `sections` (names, or their comma-separated text; None or "" for the default), checked."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else [str(n) for n in value]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise KalavaiError(
            f"unknown ablation section(s) {', '.join(map(repr, unknown)) or repr(value)}; choose from: {', '.join(SECTIONS)}"
        )
    return tuple(dict.fromkeys(names))


# ================================================================ building cooperatives


def _recipe_changes(scale: Scale, seed: int, overrides: dict) -> dict:
    """Overrides that actually change the scale's specialist recipe (K = the scale's K is no change)."""
    default = TrainConfig.specialist(scale, seed).to_dict()
    return {k: v for k, v in (overrides or {}).items() if default.get(k) != v}


def _sweep_conditions(scale: Scale) -> list[sweep.Condition]:
    """Every condition notebook 04 can run at this scale (smoke runs only the first few)."""
    return sweep.conditions(scale.with_overrides(sweep_max_conditions=0))


def existing_cooperative(scale: Scale, runs: Path, seed: int, domains, overrides: dict) -> Cooperative | None:
    """The cooperative of notebooks 02-04 with exactly these domains and recipe, if there is one."""
    domains, overrides = tuple(domains), _recipe_changes(scale, seed, overrides)
    for cond in _sweep_conditions(scale):  # "main" comes first: the main experiment's cooperative
        if (
            cond.domains == domains
            and cond.overlap is None
            and _recipe_changes(scale, seed, cond.overrides) == overrides
        ):
            return sweep.cooperative_for(scale, runs, cond, seed)
    return None


def ablation_cooperative(
    scale: Scale,
    runs: Path,
    condition: str,
    seed: int,
    *,
    domains=None,
    overrides=None,
    domain_overrides=None,
    lora=None,
    shared_base: bool = True,
) -> Cooperative:
    """One ablation's cooperative, or the identical one notebooks 02-04 already ran.

    `shared_base=False` says the contributors start from another base revision (section 3):
    such a cooperative is never taken for one grown from the shared base.
    """
    domains = tuple(domains or scale.domains)
    overrides = _recipe_changes(scale, seed, overrides or {})
    if shared_base and not domain_overrides and not lora:
        found = existing_cooperative(scale, runs, seed, domains, overrides)
        if found is not None:
            return found
    folder, _ = pipeline.prepare_corpus(scale, runs, domains=domains)
    return Cooperative(
        scale=scale,
        experiment=EXPERIMENT,
        condition=condition,
        seed=seed,
        domains=domains,
        data_dir=folder,
        train_overrides=overrides,
        routers=(paper_router(scale), CAUSAL_ROUTER),
        monolithic=False,
        domain_overrides=dict(domain_overrides or {}),
        lora=lora,
    )


# ================================================================ 1. freeze depth


def freeze_depths(scale: Scale) -> list[int]:
    """Every K from 0 to L-1 offline; the paper's ladder at the Hub scales."""
    if scale.is_hub:
        return sorted(paper.FREEZE_SWEEP_410M)
    return list(range(scale.n_layers))


def freeze_cooperatives(scale: Scale, runs: Path, seed: int) -> dict[int, Cooperative]:
    return {
        k: ablation_cooperative(scale, runs, f"freeze{k}", seed, overrides={"freeze_layers": k})
        for k in freeze_depths(scale)
    }


# ================================================================ 2. training-duration crossover

LADDER_QUANTITY = "fused model's equal-weight improvement over the base, one cooperative per step count"  # the paper's crossover numbers (the authors' script)


def crossover_ladder(scale: Scale) -> tuple[int, ...]:
    """Step counts trained separately for the crossover, each its own cooperative (own schedule,
    own fused model), as the authors did: the paper's ladder at the Hub scales. Offline none: the
    K=0 and K=scale specialists' held-out curves stand in (`improvement_curve`), since a ladder
    would cost more than the rest of notebook 05 together."""
    return tuple(dict.fromkeys(step_count(scale, n) for n in paper.CROSSOVER_STEPS)) if scale.is_hub else ()


def crossover_cooperatives(scale: Scale, runs: Path, seed: int) -> dict[str, Cooperative]:
    """{"<steps>/<K>": cooperative} for K = 0 and the scale's K at every step count of the ladder
    (at the specialists' own steps, the scale's K is the main cooperative itself, and K = 0 a
    cooperative of its own whose specialists are the freeze section's K = 0 ones, copied)."""
    return {
        f"{n}/{k}": ablation_cooperative(
            scale, runs, f"steps{n}-freeze{k}", seed, overrides={"steps": n, "freeze_layers": k}
        )
        for k in (0, scale.freeze_layers)
        for n in crossover_ladder(scale)
    }


# ================================================================ 3. base maturity


def maturity_revisions(scale: Scale) -> list[str]:
    """Base revisions of the maturity ladder: every saved one offline, the paper's at the Hub scales."""
    steps = paper.MATURITY_410M if scale.is_hub else scale.pretrain_revisions
    return [f"step{s}" for s in sorted(steps)]


def maturity_cooperative(scale: Scale, runs: Path, revision: str, seed: int) -> Cooperative:
    if revision == shared_revision(scale):
        return ablation_cooperative(scale, runs, "main", seed)  # the main experiment
    return ablation_cooperative(scale, runs, f"base-{revision}", seed, shared_base=False)


# ================================================================ 4. shared initialisation


class UnsharedFusion(nn.Module):
    """Specialists fused WITHOUT a shared prefix: every expert runs as its own full model.

    The ablation of shared initialisation fuses specialists grown from DIFFERENT base
    revisions, whose embeddings and frozen blocks differ, so nothing can be stored or run
    once for all of them, and verification against one base refuses them (by design). This
    class is the explicit, documented switch for that ablation only: it must be asked for
    with `allow_unshared_init=True`, each submission is verified against its own base, and
    the default fusion (fusion.FusedModel) still refuses such specialists.

    It offers what routers.train_routers, cooperative.fit_routers and evaluate_fused use of
    a FusedModel (expert_hidden, unembed, fuse, gates, modes, use_router); the mixture, gates and loss are FusedModel's own code.
    """

    def __init__(self, specialists, expert_names, router_kind="linear", granularity="token", router_hidden=256, seed=0):
        super().__init__()
        check_same_config([m.config for m in specialists], list(expert_names))
        self.experts = nn.ModuleList(specialists)  # whole models: embedding, every block, head
        self.specialist_config = specialists[0].config
        self.config = SimpleNamespace(
            n_experts=len(specialists),
            expert_names=list(expert_names),
            freeze_layers=0,
            router_kind=router_kind,
            router_hidden=router_hidden,
            router_seed=seed,
            granularity=granularity,
            mode="soft",
        )
        self.router = make_router(
            router_kind, self.specialist_config.hidden_size, len(specialists), hidden=router_hidden, seed=seed
        )
        self.eval()

    @classmethod
    def from_specialists(
        cls, specialists, expert_names, *, allow_unshared_init: bool = False, **kwargs
    ) -> "UnsharedFusion":
        if not allow_unshared_init:
            raise KalavaiError(
                "fusing specialists without a shared prefix is the shared-initialisation ablation only; "
                "pass allow_unshared_init=True (the protocol's fusion is fusion.FusedModel)"
            )
        if len(specialists) != len(expert_names) or not specialists:
            raise KalavaiError(f"{len(specialists)} specialists but {len(expert_names)} names")
        return cls(specialists, expert_names, **kwargs)

    @property
    def embed_in(self):  # where the router and the batches live (FusedModel's shared embedding)
        return family_of(self.specialist_config).embedding_of(self.experts[0])

    def expert_hidden(self, input_ids, attention_mask=None, position_ids=None, states=None) -> torch.Tensor:
        """Every expert's final hidden state (after its final layer norm), [N, B, T, d]; each runs alone.

        Nothing is shared, so there are no prefix states to read back (prefix.for_fused gives None at K=0).
        """
        if states is not None:
            raise KalavaiError("experts of mismatched inits share no prefix: no prefix states to read back")
        return torch.stack(
            [
                family_of(e.config)
                .decoder_of(e)(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
                )
                .last_hidden_state
                for e in self.experts
            ]
        )

    def unembed(self, hidden):
        return stack_logits((e.lm_head(h) for e, h in zip(self.experts, hidden)), len(self.experts))

    def set_mode(self, mode: str) -> None:
        check_choice("mode", mode, MODES)
        self.config.mode = mode

    def use_router(self, kind: str, granularity: str, hidden: int = 256, seed: int = 0) -> None:
        check_choice("granularity", granularity, GRANULARITIES)
        self.router = make_router(
            kind, self.specialist_config.hidden_size, self.config.n_experts, hidden=hidden, seed=seed
        ).to(self.embed_in.weight.device)
        self.config.router_kind, self.config.router_hidden, self.config.router_seed = kind, hidden, seed
        self.config.granularity = granularity

    # the fused model's own gates, mixture and loss
    gates_from = FusedModel.gates_from
    fuse = FusedModel.fuse

    def forward(self, input_ids, attention_mask=None, labels=None, position_ids=None, gates=None, **kwargs):
        """Fused logits, their loss if `labels`, and the gates (as FusedModel's dense forward, without a cache)."""
        hidden = self.expert_hidden(input_ids, attention_mask, position_ids)
        return self.fuse(hidden, attention_mask=attention_mask, labels=labels, gates=gates)


def mismatch_arms(scale: Scale) -> dict[str, tuple[str, ...]]:
    """Arm name -> the base revision each main-domain contributor starts from (not all the same)."""
    if scale.is_hub:  # the paper's two arms
        return {
            "5k/10k/20k": ("step5000", "step10000", "step20000"),
            "8k/10k/12k": ("step8000", "step10000", "step12000"),
        }
    revs = maturity_revisions(scale)
    pick = [revs[max(0, len(revs) - 3)], revs[-1], revs[max(0, len(revs) - 2)]]  # tiny: 250 / 1000 / 500
    return {"/".join(r.removeprefix("step") for r in pick[: len(scale.domains)]): tuple(pick[: len(scale.domains)])}


def arm_condition(name: str) -> str:
    return "init-" + name.replace("/", "-")


def run_mismatched(scale: Scale, runs: Path, arm: str, revisions: tuple[str, ...], seed: int, bases: Bases) -> dict:
    """Fuse specialists from different base revisions (section 3's cooperatives) through UnsharedFusion; cached."""
    domains = tuple(scale.domains)
    shared, shared_fp = bases.get(shared_revision(scale))
    coop = ablation_cooperative(scale, runs, arm_condition(arm), seed, shared_base=False)
    folder = coop.folder(runs)
    subs = []
    for domain, rev in zip(domains, revisions):
        source = maturity_cooperative(scale, runs, rev, seed)
        run_cooperative(source, runs, *bases.get(rev))  # cached: section 3 ran it
        # each submission verified in full against the base it names (its own revision)
        subs.append(
            collect_submissions(
                [source.folder(runs) / "specialists" / domain / "submission"], bases.get(rev)[0], scale.freeze_layers
            )[0]
        )
    s = scale
    specialists = [for_inference(sub.model, s.bf16) for sub in subs]
    config = {
        "arm": arm,
        "revisions": list(revisions),
        "experts": [fingerprint(m) for m in specialists],
        "base": shared_fp,
        "routers": coop.routers,
        "seed": seed,
        "router": [s.router_steps, s.router_batch, s.router_lr, s.router_wd, s.router_hidden],
        "eval": [s.eval_batch, s.eval_max_batches],
    }
    heldout = data.load_splits(coop.data_dir, domains, "heldout")  # before the cache check: it is keyed on them
    config["heldout"] = state_dict_hashes(heldout)
    if step_is_done(folder / "fusion", config) and (folder / RESULTS).exists():
        return load_results(folder / RESULTS)
    mixed_train = torch.cat([data.load_split(coop.data_dir, d, "train") for d in domains])

    def evaluate(model):
        return evaluate_domains(model, heldout, s.eval_batch, s.eval_max_batches)

    fused = UnsharedFusion.from_specialists(
        specialists,
        list(domains),
        allow_unshared_init=True,
        router_kind=coop.routers[0][0],
        granularity=coop.routers[0][1],
        router_hidden=s.router_hidden,
        seed=seed,
    )
    routers = fit_routers(fused, coop.routers, mixed_train, coop, folder / "routers")
    clock = Clock()
    fused_losses, gates = evaluate_fused(fused, routers, coop, heldout, experts=True)  # the specialists too, one pass
    losses = {"base": base_losses(shared, shared_fp, heldout, s, runs), **specialists_first(fused_losses)}
    losses["weight_avg"] = evaluate(weight_average(specialists))
    losses.update(fused_losses)
    results = make_results(
        experiment=EXPERIMENT,
        condition=coop.condition,
        scale=s.name,
        seed=seed,
        config={"scale": s.to_dict(), **config},
        base_fingerprint=shared_fp,
        domains=domains,
        losses=losses,
        specialists={d: f"spec:{d}" for d in domains},
        gates=gates,
        extra={"revisions": dict(zip(domains, revisions)), "shared_prefix": False},
    )
    write_results(folder / RESULTS, results)
    mark_step_done(folder / "fusion", config, evaluation=clock.spent())
    return results


# ================================================================ 5. heterogeneous contributors


def heterogeneous_arms(scale: Scale) -> dict[str, tuple[str, dict]]:
    """Arm -> (the one contributor trained differently, its recipe changes)."""
    code, science, fiction = (list(scale.domains) * 3)[:3]
    return {
        "batch x2": (fiction, {"grad_accum": scale.grad_accum * 2}),
        "lr x2": (science, {"lr": scale.spec_lr * 2}),
        "half steps": (code, {"steps": scale.spec_steps // 2}),
    }


def heterogeneous_cooperatives(scale: Scale, runs: Path, seed: int) -> dict[str, Cooperative]:
    """The main cooperative and one per arm; the unchanged specialists (and any changed one
    trained before, e.g. notebook 04's half-steps specialists) are copied, not retrained
    (cooperative.copy_trained)."""
    out = {"as the main cooperative": ablation_cooperative(scale, runs, "main", seed)}
    for arm, (domain, changes) in heterogeneous_arms(scale).items():
        name = "hetero-" + arm.replace(" ", "")
        out[arm] = ablation_cooperative(scale, runs, name, seed, domain_overrides={domain: changes})
    return out


# ================================================================ 6. LoRA


def lora_ranks(scale: Scale) -> tuple[int, ...]:
    if scale.is_hub:
        return (8, 64)  # the paper's range
    return (max(1, scale.d_model // 16), scale.d_model // 2)  # tiny: 8 and 64


def lora_cooperatives(scale: Scale, runs: Path, seed: int) -> dict[int, Cooperative]:
    """Same recipe as the full specialists (learning rate, steps, K); only the parametrisation differs."""
    return {
        r: ablation_cooperative(scale, runs, f"lora-r{r}", seed, lora=lora_spec(r, family=scale.family))
        for r in lora_ranks(scale)
    }


# ================================================================ 7. number of specialists


def count_cooperatives(scale: Scale, runs: Path, seed: int) -> dict[int, Cooperative]:
    """Number of specialists -> notebook 04's cooperative (main and the conditions varying the count)."""
    out = {}
    for cond in _sweep_conditions(scale):
        if cond.name == "main" or (cond.varies == "specialists" and cond.overlap is None and not cond.overrides):
            out.setdefault(len(cond.domains), sweep.cooperative_for(scale, runs, cond, seed))
    return dict(sorted(out.items()))


def count_eval_domains(coops: dict[int, Cooperative]) -> tuple[str, ...]:
    """The one held-out set every count is evaluated on: the largest cooperative's domains."""
    largest = coops[max(coops)].domains
    for n, c in coops.items():
        if not set(c.domains) <= set(largest):
            raise KalavaiError(f"the {n}-specialist cooperative has domains outside {', '.join(largest)}")
    return tuple(largest)


def evaluate_on_domains(coop: Cooperative, runs: Path, base, base_fp: str, domains, condition: str) -> dict:
    """A finished cooperative's base, specialists and fused models evaluated on `domains` (its routers reused)."""
    s = coop.scale
    routed = dataclasses.replace(coop, routers=(paper_router(s), CAUSAL_ROUTER))
    folder = runs / EXPERIMENT / condition / f"seed{coop.seed}"
    assembly = assemble(coop, runs, base, router_hidden=s.router_hidden, seed=coop.seed)
    config = {
        "cooperative": str(coop.folder(runs).relative_to(runs)),
        "experts": assembly.fingerprints,
        "base": base_fp,
        "domains": list(domains),
        "routers": routed.routers,
        "router": [s.router_steps, s.router_batch, s.router_lr, s.router_wd, s.router_hidden],
        "eval": [s.eval_batch, s.eval_max_batches],
    }
    heldout = data.load_splits(coop.data_dir, domains, "heldout")  # before the cache check: it is keyed on them
    config["heldout"] = state_dict_hashes(heldout)
    if step_is_done(folder / "fusion", config) and (folder / RESULTS).exists():
        return load_results(folder / RESULTS)
    fused = assembly.fused
    # the cooperative's own routers, fitted on its own domains' train chunks (cached: nothing is refitted)
    mixed_train = mixed_train_chunks(coop)
    routers = fit_routers(fused, routed.routers, mixed_train, coop, coop.folder(runs) / "routers")
    clock = Clock()
    fused_losses, gates = evaluate_fused(fused, routers, routed, heldout, experts=True)  # the specialists too, one pass
    losses = {"base": base_losses(base, base_fp, heldout, s, runs), **specialists_first(fused_losses)}
    results = make_results(
        experiment=EXPERIMENT,
        condition=condition,
        scale=s.name,
        seed=coop.seed,
        config={"scale": s.to_dict(), **config},
        base_fingerprint=base_fp,
        domains=domains,
        losses=losses,
        specialists={d: f"spec:{d}" for d in coop.domains},
        gates=gates,
        extra={"n_specialists": len(coop.domains), "trained_on": list(coop.domains)},
    )
    write_results(folder / RESULTS, results)
    mark_step_done(folder / "fusion", config, evaluation=clock.spent())
    return results


# ================================================================ 8. capacity control

# Where the full cost is too high for the scale's machine, the capacity control's pretraining
# runs a fraction of the base's steps (stated in the notebook beside the result). At tiny the
# full pretraining of a 3.2x model would cost about 3.2 x the base's 170 s on 2 cores, which
# would take the whole run past its 45 minutes; notebook 05's parameter capacity_pretrain_fraction=1
# (`./run_all.sh --only 05 --capacity-pretrain-fraction 1`) runs it. An experimental parameter, so
# the results record it (config "pretrain_fraction"); None keeps the scale's default below.
CAPACITY_PRETRAIN_FRACTION = {"tiny": 0.25}
CAPACITY_HUB_MODEL = "EleutherAI/pythia-1.4b"  # the paper's capacity control at the Hub scales
CAPACITY_FRACTION_PARAMETER = "capacity_pretrain_fraction"


def check_capacity_fraction(value) -> float | None:
    """A requested pretraining fraction (a number or its text; None or "" for the scale's default), checked."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = math.nan
    if not 0 < fraction <= 1:
        raise KalavaiError(
            f"{CAPACITY_FRACTION_PARAMETER} must be a fraction of the base's pretraining steps "
            f"in (0, 1] (1 = like for like), got {value!r}"
        )
    return fraction


def capacity_pretrain_fraction(scale: Scale, fraction: float | str | None = None) -> float:
    """The share of the base's pretraining steps the offline capacity control gets: `fraction`
    (notebook 05's parameter; 1 = like for like), or by default the scale's (0.25 at tiny, else 1).
    At the Hub scales the control is Pythia-1.4B, pretrained in full: always 1."""
    fraction = check_capacity_fraction(fraction)
    if scale.is_hub:
        if fraction not in (None, 1.0):
            raise KalavaiError(
                f"{CAPACITY_FRACTION_PARAMETER}={fraction:g}: at scale {scale.name} the capacity "
                "control is Pythia-1.4B, pretrained in full (only 1 applies)"
            )
        return 1.0
    return CAPACITY_PRETRAIN_FRACTION.get(scale.name, 1.0) if fraction is None else fraction


def capacity_scale(scale: Scale, fraction: float | str | None = None) -> Scale:
    """The offline base's architecture widened to about N x its parameters (N = contributors)."""
    target = len(scale.domains) * _offline_params(scale, scale.d_model)
    step = 8 * scale.n_heads  # head size a multiple of 8 (the rotary quarter stays even)
    widths = range(scale.d_model, 8 * scale.d_model + 1, step)
    d = min(widths, key=lambda w: abs(_offline_params(scale, w) - target))
    f = capacity_pretrain_fraction(scale, fraction)
    steps = max(1, round(scale.pretrain_steps * f))
    return scale.with_overrides(
        d_model=d, pretrain_steps=steps, pretrain_revisions=(steps,), base_revision=f"step{steps}"
    )


def _offline_params(scale: Scale, d_model: int) -> int:
    with torch.device("meta"):
        model = build_causal_lm(offline_config(scale.with_overrides(d_model=d_model)))
    return n_params(model)


def capacity_train_config(scale: Scale, seed: int) -> TrainConfig:
    """The monolithic baseline's recipe (K frozen) with the cooperative's total specialist steps:
    the bigger model reads as many batches as all N specialists together."""
    return TrainConfig.specialist(scale, seed, steps=len(scale.domains) * scale.spec_steps)


def run_capacity(scale: Scale, runs: Path, seed: int, main_result: dict, fraction: float | None = None) -> dict:
    """Pretrain the bigger model like the base, train it on the mix, evaluate; one results file (cached).
    `fraction`: of the base's pretraining steps (None: the scale's default; see capacity_pretrain_fraction)."""
    folder = runs / EXPERIMENT / "capacity" / f"seed{seed}"
    fraction = capacity_pretrain_fraction(scale, fraction)
    if scale.is_hub:  # the paper's control: Pythia-1.4B, pretrained by EleutherAI on the same data and steps
        big = load_causal_lm(CAPACITY_HUB_MODEL, scale.hub_revision)
        big_fp, pretrain_seconds, big_scale = fingerprint(big), None, scale
    else:
        big_scale = capacity_scale(scale, fraction)
        home = runs / EXPERIMENT / "capacity"
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "data").exists():  # the base's tokenizer and pretraining mixture, read in place
            os.symlink(os.path.relpath(runs / "data", home), home / "data")
        info = pipeline.prepare_base(big_scale, home)
        big, big_fp = pipeline.load_base(big_scale, home), info["fingerprint"]
        pretrain_seconds = read_json(home / "base" / "pretrain_log.json")["train_seconds"]
    data_dir, _ = pipeline.prepare_corpus(scale, runs)
    train = torch.cat([data.load_split(data_dir, d, "train") for d in scale.domains])
    heldout = data.load_splits(data_dir, scale.domains, "heldout")
    cfg = capacity_train_config(scale, seed)
    steps = cfg.steps
    stats = {
        "domains": list(scale.domains),
        "train_chunks": len(train),
        "train_tokens": int(train.numel()),
        "train_sha256": tensor_sha256(train),
    }
    log = train_specialist(big, big_fp, train, cfg, folder / "model", contributor="capacity", data=stats)
    config = {
        "model": big_fp,
        "trained": fingerprint(load_causal_lm(folder / "model" / "submission")),
        "main": main_result["config"]["experts"],
        "eval": [scale.eval_batch, scale.eval_max_batches],
        "heldout": state_dict_hashes(heldout),
    }
    if step_is_done(folder / "eval", config) and (folder / RESULTS).exists():
        return load_results(folder / RESULTS)
    clock = Clock()
    model = for_inference(load_causal_lm(folder / "model" / "submission"), scale.bf16)
    keep = ["base", *specialist_names(main_result), paper_fused(scale), CAUSAL_FUSED, "monolithic"]
    losses = {m: main_result["losses"][m] for m in keep if m in main_result["losses"]}
    losses["capacity"] = evaluate_domains(model, heldout, scale.eval_batch, scale.eval_max_batches)
    results = make_results(
        experiment=EXPERIMENT,
        condition="capacity",
        scale=scale.name,
        seed=seed,
        config={
            "scale": scale.to_dict(),
            "capacity_d_model": big_scale.d_model,
            "steps": steps,
            "pretrain_steps": None if scale.is_hub else big_scale.pretrain_steps,
            "pretrain_fraction": fraction,
            **config,
        },
        base_fingerprint=main_result["base_fingerprint"],
        domains=scale.domains,
        losses=losses,
        specialists=main_result["specialists"],
        extra={
            "params": {
                "capacity": n_params(model),
                "specialist": None if scale.is_hub else _offline_params(scale, scale.d_model),
            },
            "timings": {"pretrain_seconds": pretrain_seconds, "train_seconds": log.get("train_seconds")},
        },
    )
    write_results(folder / RESULTS, results)
    mark_step_done(folder / "eval", config, evaluation=clock.spent())
    return results


# ================================================================ running everything


def _capacity_job(scale: Scale, runs: Path, seed: int, fraction: float | None = None) -> None:
    shared = Bases(scale, runs).get(None)
    run_capacity(
        scale, runs, seed, run_cooperative(ablation_cooperative(scale, runs, "main", seed), runs, *shared), fraction
    )


def section_cooperatives(
    scale: Scale, runs: Path, seed: int, section: str
) -> dict[str, tuple[Cooperative, str | None]]:
    """The cooperatives one section runs for one seed, by label, each with the base revision its
    contributors start from (None: the shared base). Only the cooperatives: "init" lists the
    maturity cooperatives its arms draw their specialists from (run_mismatched fuses them),
    "count" notebook 04's (re-evaluated on one set of domains), "capacity" the main one (beside
    its own bigger model, `capacity_train_config`)."""
    if section == "freeze":
        return {str(k): (c, None) for k, c in freeze_cooperatives(scale, runs, seed).items()}
    if section == "crossover":
        return {label: (c, None) for label, c in crossover_cooperatives(scale, runs, seed).items()}
    if section in ("maturity", "init"):
        revisions = maturity_revisions(scale)
        if section == "init":  # run_all runs the maturity ladder with this section, and the arms' revisions
            revisions = list(dict.fromkeys([*revisions, *(r for revs in mismatch_arms(scale).values() for r in revs)]))
        return {
            rev: (maturity_cooperative(scale, runs, rev, seed), None if rev == shared_revision(scale) else rev)
            for rev in revisions
        }
    if section == "heterogeneous":
        return {arm: (c, None) for arm, c in heterogeneous_cooperatives(scale, runs, seed).items()}
    if section == "lora":
        return {str(r): (c, None) for r, c in lora_cooperatives(scale, runs, seed).items()}
    if section == "count":
        return {str(n): (c, None) for n, c in count_cooperatives(scale, runs, seed).items()}
    if section == "capacity":
        return {"main": (ablation_cooperative(scale, runs, "main", seed), None)}
    raise KalavaiError(f"unknown ablation section {section!r}; choose from: {', '.join(SECTIONS)}")


def worker_jobs(
    scale: Scale, runs: Path, seeds, sections, capacity_fraction: float | None = None
) -> tuple[list, list[str]]:
    """workers.run_in_workers's jobs for the sections' unfinished cooperatives, and each one's section.

    The capacity model (the longest) first, then the cooperatives of sections 1, 3, 5 and 6.
    Sections 4 and 7 (count) build on those and run in the notebook's process afterwards.
    """
    jobs, labels = [], []
    for seed in seeds:
        if "capacity" in sections and not (runs / EXPERIMENT / "capacity" / f"seed{seed}" / RESULTS).exists():
            jobs.append((_capacity_job, (scale, runs, seed, capacity_fraction)))
            labels.append("capacity")
    coops = []
    for seed in seeds:
        for section in ("freeze", "crossover", "maturity", "heterogeneous", "lora"):
            if section in sections or (section == "maturity" and "init" in sections):
                coops += [(section, c, rev) for c, rev in section_cooperatives(scale, runs, seed, section).values()]
    section_of = {id(c): section for section, c, _ in coops}
    for job in cooperative_jobs([(c, rev) for _, c, rev in coops], runs):
        jobs.append(job)
        labels.append(section_of[id(job[1][0])])
    return jobs, labels


def run_all(scale: Scale, runs: Path, seeds=None, sections=None, capacity_fraction=None) -> dict:
    """Every section's results (cached steps reused): {section: {label (str): [results per seed]}}.
    `sections`: notebook 05's parameter (None: `default_sections`); `capacity_fraction`: its
    capacity_pretrain_fraction (None: the scale's default); both checked before anything runs."""
    fraction = check_capacity_fraction(capacity_fraction)
    capacity_pretrain_fraction(scale, fraction)  # a bad one is refused before anything runs
    seeds = list(seeds or scale.sweep_seeds)
    chosen = check_sections(sections)
    if chosen is None and default_sections(scale) != SECTIONS:
        left_out = [s for s in SECTIONS if s not in default_sections(scale)]
        print(
            f"sections at scale {scale.name}: {', '.join(default_sections(scale))}; left out unless asked for "
            f"(./run_all.sh --ablation-sections): {', '.join(left_out)} (python -m kalavai_utils budget states the cost)"
        )
    sections = set(chosen or default_sections(scale))
    bases = Bases(scale, runs)
    shared = bases.get(None)
    out: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def add(section, label, result):
        out.setdefault(section, {}).setdefault(label, []).append(result)
        now = time.perf_counter()  # what this result cost (nothing when cached), summed per section
        seconds[section] = seconds.get(section, 0.0) + now - clock[0]
        clock[0] = now

    # The sections' cooperatives several at a time where the machine has idle cores (the loop
    # below then finds them cached); each one's seconds are counted in its section.
    jobs, job_sections = worker_jobs(scale, runs, seeds, sections, fraction)
    for section, took in zip(job_sections, workers.run_in_workers(jobs, "ablations") or []):
        seconds[section] = seconds.get(section, 0.0) + took
    clock[0] = time.perf_counter()
    for seed in seeds:
        # the main cooperative (notebooks 02-03): the reference of sections 4 and 6
        add("main", "main", run_cooperative(ablation_cooperative(scale, runs, "main", seed), runs, *shared))
        if "freeze" in sections:
            for k, coop in freeze_cooperatives(scale, runs, seed).items():
                add("freeze", k, run_cooperative(coop, runs, *shared))
        if "crossover" in sections:  # (offline the ladder is empty: the freeze section's curves serve)
            for label, coop in crossover_cooperatives(scale, runs, seed).items():
                add("crossover", label, run_cooperative(coop, runs, *shared))
        if sections & {"maturity", "init"}:
            for rev in maturity_revisions(scale):
                add(
                    "maturity",
                    rev,
                    run_cooperative(maturity_cooperative(scale, runs, rev, seed), runs, *bases.get(rev)),
                )
        if "init" in sections:
            for arm, revs in mismatch_arms(scale).items():
                add("init", arm, run_mismatched(scale, runs, arm, revs, seed, bases))
        if "heterogeneous" in sections:
            for arm, coop in heterogeneous_cooperatives(scale, runs, seed).items():
                add("heterogeneous", arm, run_cooperative(coop, runs, *shared))
        if "lora" in sections:
            for r, coop in lora_cooperatives(scale, runs, seed).items():
                add("lora", r, run_cooperative(coop, runs, *shared))
        if "count" in sections:
            coops = count_cooperatives(scale, runs, seed)
            domains = count_eval_domains(coops)
            for n, coop in coops.items():
                run_cooperative(coop, runs, *shared)
                add("count", n, evaluate_on_domains(coop, runs, *shared, domains, f"count-n{n}"))
        if "capacity" in sections:
            main = run_cooperative(ablation_cooperative(scale, runs, "main", seed), runs, *shared)
            add("capacity", "capacity", run_capacity(scale, runs, seed, main, fraction))
    write_index(runs, out)
    atomic_write_json(runs / EXPERIMENT / "timings.json", {"seconds": seconds, "seeds": seeds})
    return {section: by for section, by in load(runs).items() if section in out}


# ================================================================ the index of results files

INDEX = "index.json"


def write_index(runs: Path, out: dict) -> Path:
    """Which results file serves which section and label (what `load` and `summarize` read); merged
    with the sections an earlier run recorded."""

    def rel(r):
        return str(Path(r["experiment"]) / r["condition"] / f"seed{r['seed']}" / RESULTS)

    path = runs / EXPERIMENT / INDEX
    paths = read_json(path) if path.exists() else {}
    paths.update(
        {section: {str(label): [rel(r) for r in rs] for label, rs in by.items()} for section, by in out.items()}
    )
    return atomic_write_json(path, paths)


def load(runs: Path) -> dict:
    """{section: {label: [results per seed]}} from the index (labels as strings); {} before any run."""
    path = runs / EXPERIMENT / INDEX
    if not path.exists():
        return {}
    return {
        section: {label: [load_results(runs / p) for p in ps] for label, ps in by.items()}
        for section, by in read_json(path).items()
    }
