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
                             as the authors; offline the specialists' held-out curves
3. base maturity            one cooperative per saved base revision (`maturity_revisions`)
4. shared initialisation    specialists of section 3 from different revisions, fused
                             through `UnsharedFusion` (explicit switch; no shared prefix)
5. heterogeneous contributors  one specialist with another batch / lr / half the steps
6. LoRA                     cooperatives of LoRA specialists, merged before submission
7. number of specialists    notebook 04's n2 / main / n4 / n5, re-evaluated on n5's domains
8. capacity control         one bigger model, pretrained like the base, trained on the mix

Tables, verdicts and `summarize` read results files only.
"""
from __future__ import annotations

import dataclasses
import math
import os
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import paper
from ..protocol import data, pipeline, workers
from ..protocol.pipeline import Bases, shared_revision
from . import sweep
from ..protocol.cooperative import (CAUSAL_FUSED, CAUSAL_ROUTER, Cooperative, assemble, base_losses, cooperative_jobs,
                          evaluate_fused, fit_routers, paper_fused, paper_router, run_cooperative, specialists_first,
                          train_specialist)
from ..errors import KalavaiError
from ..protocol.evaluation import evaluate_domains
from ..protocol.fusion import FusedModel, MODES, check_choice, check_same_config, weight_average
from ..protocol.lora import lora_spec
from ..protocol.metrics import divergence_pct
from ..protocol.perf import Clock
from ..protocol.models import (fingerprint, for_inference, load_causal_lm, n_params, offline_config, state_dict_hashes,
                               tensor_sha256)
from ..protocol.results import gate_matrix, load_results, make_results, specialist_names, write_results
from ..protocol.routers import GRANULARITIES, make_router, stack_logits
from ..scales import PYTHIA_SHAPES, Scale, get_scale
from ..storage import atomic_write_json, mark_step_done, read_json, step_is_done
from ..protocol.submission import collect_submissions
from ..protocol.training import TrainConfig

EXPERIMENT = "ablations"
RESULTS = "results.json"


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
        if cond.domains == domains and cond.overlap is None and _recipe_changes(scale, seed, cond.overrides) == overrides:
            return sweep.cooperative_for(scale, runs, cond, seed)
    return None


def ablation_cooperative(scale: Scale, runs: Path, condition: str, seed: int, *, domains=None, overrides=None,
                         domain_overrides=None, lora=None, shared_base: bool = True) -> Cooperative:
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
    return Cooperative(scale=scale, experiment=EXPERIMENT, condition=condition, seed=seed, domains=domains,
                       data_dir=folder, train_overrides=overrides, routers=(paper_router(scale), CAUSAL_ROUTER),
                       monolithic=False, domain_overrides=dict(domain_overrides or {}), lora=lora)


# ================================================================ 1. freeze depth

def freeze_depths(scale: Scale) -> list[int]:
    """Every K from 0 to L-1 offline; the paper's ladder at the Hub scales."""
    if scale.is_hub:
        return sorted(paper.FREEZE_SWEEP_410M)
    return list(range(scale.n_layers))


def freeze_cooperatives(scale: Scale, runs: Path, seed: int) -> dict[int, Cooperative]:
    return {k: ablation_cooperative(scale, runs, f"freeze{k}", seed, overrides={"freeze_layers": k})
            for k in freeze_depths(scale)}


# ================================================================ 2. training-duration crossover

LADDER_QUANTITY = "fused model's equal-weight improvement over the base, one cooperative per step count"  # the paper's crossover numbers (the authors' script)


def crossover_ladder(scale: Scale) -> tuple[int, ...]:
    """Step counts trained separately for the crossover, each its own cooperative (own schedule,
    own fused model), as the authors did: the paper's ladder at the Hub scales. Offline none: the
    K=0 and K=scale specialists' held-out curves stand in (`improvement_curve`), since a ladder
    would cost more than the rest of notebook 05 together."""
    return tuple(paper.CROSSOVER_STEPS) if scale.is_hub else ()


def crossover_cooperatives(scale: Scale, runs: Path, seed: int) -> dict[str, Cooperative]:
    """{"<steps>/<K>": cooperative} for K = 0 and the scale's K at every step count of the ladder
    (the ones equal to the main or the freeze-0 cooperative are those very cooperatives)."""
    return {f"{n}/{k}": ablation_cooperative(scale, runs, f"steps{n}-freeze{k}", seed,
                                             overrides={"steps": n, "freeze_layers": k})
            for k in (0, scale.freeze_layers) for n in crossover_ladder(scale)}


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
        self.neox_config = specialists[0].config
        self.config = SimpleNamespace(n_experts=len(specialists), expert_names=list(expert_names), freeze_layers=0,
                                      router_kind=router_kind, router_hidden=router_hidden, router_seed=seed,
                                      granularity=granularity, mode="soft")
        self.router = make_router(router_kind, self.neox_config.hidden_size, len(specialists), hidden=router_hidden, seed=seed)
        self.eval()

    @classmethod
    def from_specialists(cls, specialists, expert_names, *, allow_unshared_init: bool = False, **kwargs) -> "UnsharedFusion":
        if not allow_unshared_init:
            raise KalavaiError("fusing specialists without a shared prefix is the shared-initialisation ablation only; "
                               "pass allow_unshared_init=True (the protocol's fusion is fusion.FusedModel)")
        if len(specialists) != len(expert_names) or not specialists:
            raise KalavaiError(f"{len(specialists)} specialists but {len(expert_names)} names")
        return cls(specialists, expert_names, **kwargs)

    @property
    def embed_in(self):  # where the router and the batches live (FusedModel's shared embedding)
        return self.experts[0].gpt_neox.embed_in

    def expert_hidden(self, input_ids, attention_mask=None, position_ids=None, states=None) -> torch.Tensor:
        """Every expert's final hidden state (after its final layer norm), [N, B, T, d]; each runs alone.

        Nothing is shared, so there are no prefix states to read back (prefix.for_fused gives None at K=0).
        """
        if states is not None:
            raise KalavaiError("experts of mismatched inits share no prefix: no prefix states to read back")
        return torch.stack([e.gpt_neox(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                         use_cache=False).last_hidden_state for e in self.experts])

    def unembed(self, hidden):
        return stack_logits((e.lm_head(h) for e, h in zip(self.experts, hidden)), len(self.experts))

    def set_mode(self, mode: str) -> None:
        check_choice("mode", mode, MODES)
        self.config.mode = mode

    def use_router(self, kind: str, granularity: str, hidden: int = 256, seed: int = 0) -> None:
        check_choice("granularity", granularity, GRANULARITIES)
        self.router = make_router(kind, self.neox_config.hidden_size, self.config.n_experts, hidden=hidden,
                                  seed=seed).to(self.embed_in.weight.device)
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
        return {"5k/10k/20k": ("step5000", "step10000", "step20000"), "8k/10k/12k": ("step8000", "step10000", "step12000")}
    revs = maturity_revisions(scale)
    pick = [revs[max(0, len(revs) - 3)], revs[-1], revs[max(0, len(revs) - 2)]]  # tiny: 250 / 1000 / 500
    return {"/".join(r.removeprefix("step") for r in pick[: len(scale.domains)]): tuple(pick[: len(scale.domains)])}


def _arm_condition(name: str) -> str:
    return "init-" + name.replace("/", "-")


def run_mismatched(scale: Scale, runs: Path, arm: str, revisions: tuple[str, ...], seed: int, bases: Bases) -> dict:
    """Fuse specialists from different base revisions (section 3's cooperatives) through UnsharedFusion; cached."""
    domains = tuple(scale.domains)
    shared, shared_fp = bases.get(shared_revision(scale))
    coop = ablation_cooperative(scale, runs, _arm_condition(arm), seed, shared_base=False)
    folder = coop.folder(runs)
    subs = []
    for domain, rev in zip(domains, revisions):
        source = maturity_cooperative(scale, runs, rev, seed)
        run_cooperative(source, runs, *bases.get(rev))  # cached: section 3 ran it
        # each submission verified in full against the base it names (its own revision)
        subs.append(collect_submissions([source.folder(runs) / "specialists" / domain / "submission"],
                                        bases.get(rev)[0], scale.freeze_layers)[0])
    s = scale
    specialists = [for_inference(sub.model, s.bf16) for sub in subs]
    config = {"arm": arm, "revisions": list(revisions), "experts": [fingerprint(m) for m in specialists],
              "base": shared_fp, "routers": coop.routers, "seed": seed,
              "router": [s.router_steps, s.router_batch, s.router_lr, s.router_wd, s.router_hidden],
              "eval": [s.eval_batch, s.eval_max_batches]}
    heldout = data.load_splits(coop.data_dir, domains, "heldout")  # before the cache check: it is keyed on them
    config["heldout"] = state_dict_hashes(heldout)
    if step_is_done(folder / "fusion", config) and (folder / RESULTS).exists():
        return load_results(folder / RESULTS)
    mixed_train = torch.cat([data.load_split(coop.data_dir, d, "train") for d in domains])

    def evaluate(model):
        return evaluate_domains(model, heldout, s.eval_batch, s.eval_max_batches)

    fused = UnsharedFusion.from_specialists(specialists, list(domains), allow_unshared_init=True,
                                            router_kind=coop.routers[0][0], granularity=coop.routers[0][1],
                                            router_hidden=s.router_hidden, seed=seed)
    routers = fit_routers(fused, coop.routers, mixed_train, coop, folder / "routers")
    clock = Clock()
    fused_losses, gates = evaluate_fused(fused, routers, coop, heldout, experts=True)  # the specialists too, one pass
    losses = {"base": base_losses(shared, shared_fp, heldout, s, runs), **specialists_first(fused_losses)}
    losses["weight_avg"] = evaluate(weight_average(specialists))
    losses.update(fused_losses)
    results = make_results(experiment=EXPERIMENT, condition=coop.condition, scale=s.name, seed=seed,
                           config={"scale": s.to_dict(), **config}, base_fingerprint=shared_fp, domains=domains,
                           losses=losses, specialists={d: f"spec:{d}" for d in domains}, gates=gates,
                           extra={"revisions": dict(zip(domains, revisions)), "shared_prefix": False})
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
    return {r: ablation_cooperative(scale, runs, f"lora-r{r}", seed, lora=lora_spec(r)) for r in lora_ranks(scale)}


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
    config = {"cooperative": str(coop.folder(runs).relative_to(runs)), "experts": assembly.fingerprints,
              "base": base_fp, "domains": list(domains), "routers": routed.routers,
              "router": [s.router_steps, s.router_batch, s.router_lr, s.router_wd, s.router_hidden],
              "eval": [s.eval_batch, s.eval_max_batches]}
    heldout = data.load_splits(coop.data_dir, domains, "heldout")  # before the cache check: it is keyed on them
    config["heldout"] = state_dict_hashes(heldout)
    if step_is_done(folder / "fusion", config) and (folder / RESULTS).exists():
        return load_results(folder / RESULTS)
    fused = assembly.fused
    # the cooperative's own routers, fitted on its own domains' train chunks (cached: nothing is refitted)
    mixed_train = torch.cat([data.load_split(coop.data_dir, d, "train") for d in coop.domains])
    routers = fit_routers(fused, routed.routers, mixed_train, coop, coop.folder(runs) / "routers")
    clock = Clock()
    fused_losses, gates = evaluate_fused(fused, routers, routed, heldout, experts=True)  # the specialists too, one pass
    losses = {"base": base_losses(base, base_fp, heldout, s, runs), **specialists_first(fused_losses)}
    results = make_results(experiment=EXPERIMENT, condition=condition, scale=s.name, seed=coop.seed,
                           config={"scale": s.to_dict(), **config}, base_fingerprint=base_fp, domains=domains,
                           losses=losses, specialists={d: f"spec:{d}" for d in coop.domains}, gates=gates,
                           extra={"n_specialists": len(coop.domains), "trained_on": list(coop.domains)})
    write_results(folder / RESULTS, results)
    mark_step_done(folder / "fusion", config, evaluation=clock.spent())
    return results


def _paper_freeze_drop() -> str:
    """The paper's freeze sweep in one phrase: first and last K, and the share of the K=0 gain lost."""
    f = paper.FREEZE_SWEEP_410M
    k0, kn = min(f), max(f)
    return f"K={k0} {f[k0]:+.2f} -> K={kn} {f[kn]:+.2f}, {(f[k0] - f[kn]) / f[k0]:.0%} of the K=0 gain lost"


def _paper_init() -> str:
    """The paper's shared-initialisation ablation in one phrase (mixed evaluation, vs base)."""
    g = paper.SHARED_INIT_VS_BASE_MIXED_EVAL
    others = "/".join(f"{v:+.1f}%" for k, v in g.items() if k != "same_init")
    return (f"same init {g['same_init']:+.1f}% vs mismatched {others}; "
            f"{paper.MISMATCHED_INIT_FICTION_TO_CODE}% of fiction's weight to code")


# ================================================================ 8. capacity control

# Where the full cost is too high for the scale's machine, the capacity control's pretraining
# runs a fraction of the base's steps (stated in the notebook beside the result). At tiny the
# full pretraining of a 3.2x model would cost about 3.2 x the base's 170 s on 2 cores, which
# would take the whole run past its 45 minutes; notebook 05's parameter capacity_pretrain_fraction=1
# (`./run_all.sh --only 05 --capacity-pretrain-fraction 1`) runs it. An experimental parameter, so
# the results record it (config "pretrain_fraction"); None keeps the scale's default below.
CAPACITY_PRETRAIN_FRACTION = {"tiny": 0.25}
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
        raise KalavaiError(f"{CAPACITY_FRACTION_PARAMETER} must be a fraction of the base's pretraining steps "
                           f"in (0, 1] (1 = like for like), got {value!r}")
    return fraction


def capacity_pretrain_fraction(scale: Scale, fraction: float | str | None = None) -> float:
    """The share of the base's pretraining steps the offline capacity control gets: `fraction`
    (notebook 05's parameter; 1 = like for like), or by default the scale's (0.25 at tiny, else 1).
    At the Hub scales the control is Pythia-1.4B, pretrained in full: always 1."""
    fraction = check_capacity_fraction(fraction)
    if scale.is_hub:
        if fraction not in (None, 1.0):
            raise KalavaiError(f"{CAPACITY_FRACTION_PARAMETER}={fraction:g}: at scale {scale.name} the capacity "
                               "control is Pythia-1.4B, pretrained in full (only 1 applies)")
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
    return scale.with_overrides(d_model=d, pretrain_steps=steps, pretrain_revisions=(steps,), base_revision=f"step{steps}")


def _offline_params(scale: Scale, d_model: int) -> int:
    with torch.device("meta"):
        model = __import__("transformers").GPTNeoXForCausalLM(offline_config(scale.with_overrides(d_model=d_model)))
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
        big = load_causal_lm("EleutherAI/pythia-1.4b", scale.hub_revision)
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
    stats = {"domains": list(scale.domains), "train_chunks": len(train), "train_tokens": int(train.numel()),
             "train_sha256": tensor_sha256(train)}
    log = train_specialist(big, big_fp, train, cfg, folder / "model", contributor="capacity", data=stats)
    config = {"model": big_fp, "trained": fingerprint(load_causal_lm(folder / "model" / "submission")),
              "main": main_result["config"]["experts"], "eval": [scale.eval_batch, scale.eval_max_batches],
              "heldout": state_dict_hashes(heldout)}
    if step_is_done(folder / "eval", config) and (folder / RESULTS).exists():
        return load_results(folder / RESULTS)
    clock = Clock()
    model = for_inference(load_causal_lm(folder / "model" / "submission"), scale.bf16)
    keep = ["base", *specialist_names(main_result), paper_fused(scale), CAUSAL_FUSED, "monolithic"]
    losses = {m: main_result["losses"][m] for m in keep if m in main_result["losses"]}
    losses["capacity"] = evaluate_domains(model, heldout, scale.eval_batch, scale.eval_max_batches)
    results = make_results(
        experiment=EXPERIMENT, condition="capacity", scale=scale.name, seed=seed,
        config={"scale": scale.to_dict(), "capacity_d_model": big_scale.d_model, "steps": steps,
                "pretrain_steps": None if scale.is_hub else big_scale.pretrain_steps, "pretrain_fraction": fraction, **config},
        base_fingerprint=main_result["base_fingerprint"], domains=scale.domains, losses=losses,
        specialists=main_result["specialists"],
        extra={"params": {"capacity": n_params(model), "specialist": None if scale.is_hub else _offline_params(scale, scale.d_model)},
               "timings": {"pretrain_seconds": pretrain_seconds, "train_seconds": log.get("train_seconds")}})
    write_results(folder / RESULTS, results)
    mark_step_done(folder / "eval", config, evaluation=clock.spent())
    return results


# ================================================================ running everything

def _capacity_job(scale: Scale, runs: Path, seed: int, fraction: float | None = None) -> None:
    shared = Bases(scale, runs).get(None)
    run_capacity(scale, runs, seed, run_cooperative(ablation_cooperative(scale, runs, "main", seed), runs, *shared), fraction)


def prefetch_jobs(scale: Scale, runs: Path, seeds, sections, capacity_fraction: float | None = None) -> tuple[list, list[str]]:
    """workers.prefetch's jobs for the sections' unfinished cooperatives, and each one's section.

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
        if "freeze" in sections:
            coops += [("freeze", c, None) for c in freeze_cooperatives(scale, runs, seed).values()]
        if "crossover" in sections:
            coops += [("crossover", c, None) for c in crossover_cooperatives(scale, runs, seed).values()]
        if sections & {"maturity", "init"}:
            coops += [("maturity", maturity_cooperative(scale, runs, rev, seed), None if rev == shared_revision(scale) else rev)
                      for rev in maturity_revisions(scale)]  # None: the shared base, as for every other section
        if "heterogeneous" in sections:
            coops += [("heterogeneous", c, None) for c in heterogeneous_cooperatives(scale, runs, seed).values()]
        if "lora" in sections:
            coops += [("lora", c, None) for c in lora_cooperatives(scale, runs, seed).values()]
    section_of = {id(c): section for section, c, _ in coops}
    for job in cooperative_jobs([(c, rev) for _, c, rev in coops], runs):
        jobs.append(job)
        labels.append(section_of[id(job[1][0])])
    return jobs, labels


def run_all(scale: Scale, runs: Path, seeds=None, sections=None, capacity_fraction=None) -> dict:
    """Every section's results (cached steps reused): {section: {label (str): [results per seed]}}.
    `capacity_fraction`: notebook 05's capacity_pretrain_fraction (None: the scale's default), checked first."""
    fraction = check_capacity_fraction(capacity_fraction)
    capacity_pretrain_fraction(scale, fraction)  # a bad one is refused before anything runs
    seeds = list(seeds or scale.sweep_seeds)
    sections = set(sections or ("freeze", "crossover", "maturity", "init", "heterogeneous", "lora", "count", "capacity"))
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
    jobs, job_sections = prefetch_jobs(scale, runs, seeds, sections, fraction)
    for section, took in zip(job_sections, workers.prefetch(jobs, "ablations") or []):
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
                add("maturity", rev, run_cooperative(maturity_cooperative(scale, runs, rev, seed), runs, *bases.get(rev)))
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
    paths.update({section: {str(label): [rel(r) for r in rs] for label, rs in by.items()} for section, by in out.items()})
    return atomic_write_json(path, paths)


def load(runs: Path) -> dict:
    """{section: {label: [results per seed]}} from the index (labels as strings); {} before any run."""
    path = runs / EXPERIMENT / INDEX
    if not path.exists():
        return {}
    return {section: {label: [load_results(runs / p) for p in ps] for label, ps in by.items()}
            for section, by in read_json(path).items()}


# ================================================================ tables and verdicts

def _mean(results: list[dict], f) -> float:
    return float(np.mean([f(r) for r in results]))


def _gain(model: str):
    return lambda r: r["metrics"]["gain_vs_best_pct"][model]


def _paper_model(results: dict) -> str:
    first = next(iter(next(iter(results.values()))))
    return paper_fused(get_scale(first["scale"]))


def _verdict(claim: str, holds: bool | None, numbers: str) -> dict:
    """holds None: the experiment cannot answer the claim (its numbers say why)."""
    return {"claim": claim, "holds": None if holds is None else bool(holds), "numbers": numbers}


def holds_word(holds: bool | None) -> str:
    return {True: "yes", False: "no"}.get(holds, "inconclusive")


def verdict_table(res: dict) -> pd.DataFrame:
    """The notebook's closing table: every section's verdict, yes / no / inconclusive."""
    t = pd.DataFrame(verdicts(res))
    return t.assign(holds=t["holds"].map(holds_word)) if len(t) else t


def paper_freeze_gain(k: int, n_layers: int) -> float:
    """The paper's 410M gain at the same share of blocks frozen (k of n_layers), NaN where it has none."""
    if not n_layers:
        return math.nan  # depth unknown
    k_410m = k * PYTHIA_SHAPES["410m"][1] / n_layers
    return paper.FREEZE_SWEEP_410M.get(int(k_410m), math.nan) if k_410m == int(k_410m) else math.nan


def result_layers(result: dict) -> int:
    """The number of blocks of a result's models: the offline scale's, or the Pythia model's at a Hub scale (0 if unknown)."""
    scale = result["config"]["scale"]
    return int(scale.get("n_layers") or PYTHIA_SHAPES.get(scale.get("name"), (0, 0))[1])


def freeze_table(res: dict) -> tuple[pd.DataFrame, dict]:
    model = _paper_model(res)
    n_layers = result_layers(next(iter(res.values()))[0])
    paper_col = f"paper 410M gain (%), same share of its {PYTHIA_SHAPES['410m'][1]} blocks frozen"
    rows = [{"frozen blocks K": int(k), "gain (%)": _mean(rs, _gain(model)), "gain, causal router (%)": _mean(rs, _gain(CAUSAL_FUSED)),
             "mean divergence (%)": _mean(rs, lambda r: r["metrics"]["mean_divergence_pct"]),
             paper_col: paper_freeze_gain(int(k), n_layers)}
            for k, rs in res.items()]
    t = pd.DataFrame(rows).sort_values("frozen blocks K").reset_index(drop=True)
    g = t["gain (%)"].to_numpy()
    slope = float(np.polyfit(t["frozen blocks K"], g, 1)[0]) if len(t) > 1 else math.nan
    drop = float(g[0] - g[-1])
    # "slowly": the paper loses a quarter of its K=0 gain by its deepest K (paper.FREEZE_SWEEP_410M);
    # here the whole ladder to L-1 blocks must fall, and by less than half
    holds = slope < 0 and g[-1] > 0 and drop < 0.5 * g[0]
    nums = (f"K={t['frozen blocks K'].iloc[0]}: {g[0]:+.2f}% -> K={t['frozen blocks K'].iloc[-1]}: {g[-1]:+.2f}% "
            f"(drop {drop:.2f} pp = {drop / g[0]:.0%} of the K=0 gain; slope {slope:+.2f} pp per block; "
            f"paper 410M: {_paper_freeze_drop()})")
    # beside it, the share of the K=0 gain lost at each depth the paper also measured (same share of blocks)
    ref0 = t[paper_col].iloc[0]
    matched = [(int(k), 1 - gk / g[0], 1 - pk / ref0) for k, gk, pk in zip(t["frozen blocks K"], g, t[paper_col])
               if k > 0 and not math.isnan(pk) and not math.isnan(ref0)]
    if matched:
        nums += ("; at the depths the paper also measured, share of the K=0 gain lost here vs the paper: "
                 + ", ".join(f"K={k} of {n_layers}: {ours:.0%} vs {theirs:.0%}" for k, ours, theirs in matched))
    return t, _verdict("gain falls slowly as more blocks are frozen", holds, nums)


def improvement_curve(result: dict) -> tuple[list[int], list[float]]:
    """Mean over the specialists of their improvement over the base on their own domain, at each curve step."""
    curves, base, _ = sweep.own_domain_curves(result)
    steps = curves[next(iter(curves))]["steps"]
    imp = [float(np.mean([divergence_pct(base[d], c["losses"][i]) for d, c in curves.items()])) for i in range(len(steps))]
    return steps, imp


def crossover_step(steps, early, late) -> int | None:
    """The first step from which `late` (more frozen) stays ahead of `early` (K=0), having been behind; None if never."""
    ahead = [b > a for a, b in zip(early, late)]
    for i in range(1, len(steps)):
        behind_before = any(not ahead[j] for j in range(i) if steps[j] > 0)  # step 0 is the base for both
        if all(ahead[i:]) and behind_before:
            return int(steps[i])
    return None


def crossover_table(freeze: dict, ladder: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Improvement vs base at each step count for K=0 and the scale's K (first seed), and the paper's ladder.

    With `ladder` (the crossover section's results, Hub scales) each point is a cooperative of
    its own, trained for that many steps: the fused model's equal-weight improvement over the
    base, the paper's quantity. Without it (offline) the points come from the `freeze`
    section's K=0 and K=scale specialists' held-out curves: their own-domain improvement over
    the base, part-way through one schedule, which stands in for the ladder.
    """
    kk = int(next(iter(freeze.values()))[0]["config"]["scale"]["freeze_layers"])  # the scale's own K
    if ladder:
        model = _paper_model(ladder)
        by = {tuple(map(int, label.split("/"))): rs for label, rs in ladder.items()}
        k0 = min(k for _, k in by)
        steps = sorted({n for n, _ in by})
        a, b = ([_mean(by[n, k], lambda r: r["metrics"]["gain_vs_base_pct"][model]) for n in steps] for k in (k0, kk))
        what = LADDER_QUANTITY
    else:
        k0 = min(int(k) for k in freeze)
        steps, a = improvement_curve(freeze[str(k0)][0])
        steps_k, b = improvement_curve(freeze[str(kk)][0])
        if steps != steps_k:
            raise KalavaiError("the two cooperatives' curves were recorded at different steps")
        what = "specialists' own-domain improvement over the base, from their held-out curves"
    t = pd.DataFrame({"step": steps, f"K={k0} improvement vs base (%)": a, f"K={kk} improvement vs base (%)": b})
    t.attrs["what"] = what
    ours = crossover_step(steps, a, b)
    p0, p4 = paper.CROSSOVER_410M[0], paper.CROSSOVER_410M[4]
    paper_t = pd.DataFrame({"step": paper.CROSSOVER_STEPS, "paper 410M K=0 (%)": p0, "paper 410M K=4 (%)": p4})
    theirs = crossover_step(paper.CROSSOVER_STEPS, p0, p4)
    last = f"at step {steps[-1]}: K={k0} {a[-1]:+.2f}%, K={kk} {b[-1]:+.2f}%"
    nums = (f"crossover at step {ours} ({last})" if ours else f"no crossover within {steps[-1]} steps: K={k0} stays ahead or level ({last})")
    ahead = [s for s, x, y in zip(paper.CROSSOVER_STEPS, p0, p4) if x > y]
    nums += (f" [{what}]; paper 410M: K=4 ahead from step {theirs} (K=0 ahead up to {max(ahead)}) "
             f"[the {LADDER_QUANTITY}]")
    return t, paper_t, _verdict(f"a crossover exists (K={kk} overtakes K={k0} with longer training)", ours is not None, nums)


def maturity_table(res: dict) -> tuple[pd.DataFrame, dict]:
    model = _paper_model(res)
    rows = [{"base revision": rev, "step": int(rev.removeprefix("step")), "gain (%)": _mean(rs, _gain(model)),
             "base EW loss": _mean(rs, lambda r: r["metrics"]["ew"]["base"]),
             "mean divergence (%)": _mean(rs, lambda r: r["metrics"]["mean_divergence_pct"]),
             "paper 410M gain (%)": paper.MATURITY_410M.get(int(rev.removeprefix("step")), math.nan)}
            for rev, rs in res.items()]
    t = pd.DataFrame(rows).sort_values("step").reset_index(drop=True)
    if t["paper 410M gain (%)"].isna().all():  # offline revisions: the paper's ladder is shown apart
        t = t.drop(columns="paper 410M gain (%)")
    g = t["gain (%)"]
    nums = ", ".join(f"{r}: {v:+.2f}%" for r, v in zip(t["base revision"], g))
    m4, m1 = paper.MATURITY_410M, paper.MATURITY_1B_ENDPOINTS
    first, last = min(m4), max(m4)
    nums += (f" (paper 410M: step{first} {m4[first]:+.2f} -> step{last} {m4[last]:+.2f}; "
             f"1B: {m1[min(m1)]:+.2f} -> {m1[max(m1)]:+.2f})")
    return t, _verdict("gain shrinks as the base matures (earliest revision's gain above the latest's)", g.iloc[0] > g.iloc[-1], nums)


def paper_maturity_table() -> pd.DataFrame:
    """The paper's base-maturity ladder (Pythia revisions), 410M in full and 1B's two ends."""
    steps = sorted({*paper.MATURITY_410M, *paper.MATURITY_1B_ENDPOINTS})
    return pd.DataFrame({"Pythia revision step": steps,
                         "paper 410M gain (%)": [paper.MATURITY_410M.get(s, math.nan) for s in steps],
                         "paper 1B gain (%)": [paper.MATURITY_1B_ENDPOINTS.get(s, math.nan) for s in steps]})


def off_own_weight(result: dict, model: str) -> float:
    """Mean gate weight a domain sends to experts other than its own: how blurred the routing is."""
    g = gate_matrix(result, model)
    return float(np.mean([1 - g.loc[d, d] for d in g.index if d in g.columns]))


def init_table(res: dict, main_results: list[dict]) -> tuple[pd.DataFrame, dict]:
    model = _paper_model(res)
    rows = [{"specialists from": "the same base (main)", "gain vs base (%)": _mean(main_results, lambda r: r["metrics"]["gain_vs_base_pct"][model]),
             "gain vs best specialist (%)": _mean(main_results, _gain(model)),
             "gate weight off own expert": _mean(main_results, lambda r: off_own_weight(r, model)),
             "paper (mixed eval, vs base, %)": paper.SHARED_INIT_VS_BASE_MIXED_EVAL["same_init"]}]
    for arm, rs in res.items():
        rows.append({"specialists from": f"revisions {arm}", "gain vs base (%)": _mean(rs, lambda r: r["metrics"]["gain_vs_base_pct"][model]),
                     "gain vs best specialist (%)": _mean(rs, _gain(model)),
                     "gate weight off own expert": _mean(rs, lambda r: off_own_weight(r, model)),
                     # the paper's mismatched arms are other revisions than ours: both shown on each row
                     "paper (mixed eval, vs base, %)": paper.SHARED_INIT_VS_BASE_MIXED_EVAL.get(arm) or "mismatched: " + "; ".join(
                         f"{k} {v:+.1f}" for k, v in paper.SHARED_INIT_VS_BASE_MIXED_EVAL.items() if k != "same_init")})
    t = pd.DataFrame(rows)
    same, mism = t.iloc[0], t.iloc[1:]
    lower = bool((mism["gain vs base (%)"] < same["gain vs base (%)"]).all())
    blur = bool((mism["gate weight off own expert"] > same["gate weight off own expert"]).all())
    nums = (f"gain vs base: same init {same['gain vs base (%)']:+.2f}%, mismatched "
            + ", ".join(f"{v:+.2f}%" for v in mism["gain vs base (%)"])
            + f"; gate weight off the own expert: same {same['gate weight off own expert']:.4f}, mismatched "
            + ", ".join(f"{v:.4f}" for v in mism["gate weight off own expert"])
            + f" (paper: {_paper_init()})")
    return t, _verdict("mismatched inits lower the gain and blur the gates", lower and blur, nums)


def heterogeneous_table(res: dict) -> tuple[pd.DataFrame, dict]:
    model = _paper_model(res)
    arms = heterogeneous_arms(get_scale(next(iter(res.values()))[0]["scale"]))
    # the paper reports only the spread over its cooperatives, not each one's gain: one number for the table
    t = pd.DataFrame([{"cooperative": arm, "changed contributor": arms[arm][0] if arm in arms else "none",
                       "gain (%)": _mean(rs, _gain(model)),
                       "mean divergence (%)": _mean(rs, lambda r: r["metrics"]["mean_divergence_pct"]),
                       "paper 410M spread of gains, whole table (pp)": paper.HETEROGENEOUS_SPREAD_PP} for arm, rs in res.items()])
    spread = float(t["gain (%)"].max() - t["gain (%)"].min())
    nums = f"spread of gains {spread:.2f} pp over {len(t)} cooperatives (paper: {paper.HETEROGENEOUS_SPREAD_PP} pp)"
    return t, _verdict("the gain is robust to contributors training differently (spread under 1 pp)", spread < 1.0, nums), spread


def lora_table(res: dict, main_results: list[dict]) -> tuple[pd.DataFrame, dict]:
    model = _paper_model(res)

    def row(label, rs):
        return {"specialists": label, "mean divergence (%)": _mean(rs, lambda r: r["metrics"]["mean_divergence_pct"]),
                "gain (%)": _mean(rs, _gain(model))}
    ranks = sorted(res, key=int)
    t = pd.DataFrame([row("full fine-tuning (main)", main_results), *(row(f"LoRA r={r}", res[r]) for r in ranks)])
    # the paper gives its LoRA gains as one range over r=8..64, not per rank: each LoRA row shows that range
    top, bottom = paper.LORA_GAIN_RANGE
    t["paper 410M gain (%): main; LoRA r=8..64 as a range"] = [paper.HEADLINE["410m"]["gain"], *[f"{top:+.2f} .. {bottom:+.2f}"] * len(ranks)]
    full, lo = t.iloc[0], t.iloc[1:]
    holds = bool((lo["mean divergence (%)"] < full["mean divergence (%)"]).all() and (lo["gain (%)"] < full["gain (%)"]).all())
    nums = (f"full: divergence {full['mean divergence (%)']:.2f}%, gain {full['gain (%)']:+.2f}%; "
            + "; ".join(f"{s}: divergence {d:.2f}%, gain {g:+.2f}%" for s, d, g in lo[["specialists", "mean divergence (%)", "gain (%)"]].itertuples(index=False))
            + f" (paper, r=8..64: gain {paper.LORA_GAIN_RANGE[0]:+.2f} down to {paper.LORA_GAIN_RANGE[1]:+.2f}%, divergence negative)")
    # The paper's stronger finding, that LoRA specialists do not work at all, said apart
    negative_div, losing = bool((lo["mean divergence (%)"] < 0).any()), bool((lo["gain (%)"] <= 0).any())
    trend = np.diff(lo["gain (%)"].to_numpy())
    nums += ("; the paper's stronger finding (divergence negative, fusion losing) "
             + ("holds here too" if negative_div and losing else
                f"does NOT hold here: divergence {'turns negative' if negative_div else 'stays positive'}, "
                f"fusion {'loses' if losing else 'still gains'}"
                + (", and the gain rises with rank" if len(trend) and (trend > 0).all() else
                   ", and the gain falls with rank" if len(trend) and (trend < 0).all() else "")))
    return t, _verdict("LoRA specialists diverge less and fuse worse than full fine-tuning", holds, nums)


def count_table(res: dict) -> tuple[pd.DataFrame, dict]:
    model = _paper_model(res)
    first = {n: rs[0] for n, rs in res.items()}
    domains = {tuple(r["domains"]) for rs in res.values() for r in rs}
    if len(domains) != 1:
        raise KalavaiError("the specialist counts were not evaluated on the same domains")
    t = pd.DataFrame([{"specialists": int(n), "trained on": ", ".join(first[n]["extra"]["trained_on"]),
                       "gain (%)": _mean(rs, _gain(model)), "paper gain (%)": paper.SPECIALIST_COUNT.get(int(n), math.nan)}
                      for n, rs in res.items()]).sort_values("specialists").reset_index(drop=True)
    g = t["gain (%)"].to_numpy()
    holds = bool(np.all(np.diff(g) > 0))
    nums = ", ".join(f"{n}: {v:+.2f}%" for n, v in zip(t["specialists"], g)) + \
        f" on the same {len(next(iter(domains)))} domains (paper: " + ", ".join(f"{n} {g:+.2f}" for n, g in paper.SPECIALIST_COUNT.items()) + ")"
    return t, _verdict("gain rises with the number of specialists", holds, nums)


def capacity_table(res: dict) -> tuple[pd.DataFrame, dict]:
    r = res["capacity"][0] if "capacity" in res else next(iter(res.values()))[0]
    model = paper_fused(get_scale(r["scale"]))
    m = r["metrics"]
    names = [("capacity control (one bigger model)", "capacity"), ("fused (authors' router)", model),
             ("fused (causal router)", CAUSAL_FUSED), ("monolithic (specialist size)", "monolithic"),
             ("best specialist", m["best_specialist"]), ("base", "base")]
    # the paper's control is Pythia-1.4B beside its fused 410M cooperative; it reports no other row's gain
    theirs = {"capacity": paper.CAPACITY_CONTROL_1_4B_GAIN, model: paper.HEADLINE["410m"]["gain"]}
    t = pd.DataFrame([{"model": label, "EW loss": m["ew"][k], "gain vs best specialist (%)": m["gain_vs_best_pct"][k],
                       "paper gain vs best specialist (%): 1.4B control, fused 410M": theirs.get(k, math.nan)}
                      for label, k in names if k in m["ew"]])
    c = r["config"]
    params = r["extra"]["params"]
    ratio = params["capacity"] / params["specialist"] if params.get("specialist") else math.nan
    fraction = c.get("pretrain_fraction", 1.0)
    tm = r["extra"].get("timings", {})
    paper_bigger_ahead = paper.CAPACITY_CONTROL_1_4B_GAIN > paper.HEADLINE["410m"]["gain"]
    nums = (f"capacity control {m['gain_vs_best_pct']['capacity']:+.2f}% vs fused {m['gain_vs_best_pct'][model]:+.2f}% "
            f"(vs best specialist); {params['capacity']:,} parameters = {ratio:.2f} x a specialist; "
            f"{c['steps']} steps on the mix"
            + (f", pretrained {c['pretrain_steps']} steps" if c.get("pretrain_steps") else "")
            + (f" (only {fraction:g} of the base's {round(c['pretrain_steps'] / fraction)} pretraining steps, to fit the machine: "
               "it read fewer tokens than the base, so this is not the paper's like-for-like control; "
               f"notebook 05's parameter {CAPACITY_FRACTION_PARAMETER}=1 runs that one)" if fraction != 1 else "")
            + (f"; cost: pretraining {tm['pretrain_seconds']:.0f} s + training {tm['train_seconds']:.0f} s" if tm.get("pretrain_seconds") else "")
            + f" (paper: Pythia-1.4B, {paper.CAPACITY_CONTROL_1_4B_GAIN:+.2f}% vs the best specialist, "
            f"{'above' if paper_bigger_ahead else 'below'} its fused 410M cooperative's {paper.HEADLINE['410m']['gain']:+.2f}%)")
    # A control that ends worse than the untouched (smaller) base measures its own short
    # pretraining, not what capacity buys: beating it answers nothing.
    answers = m["ew"]["capacity"] < m["ew"]["base"]
    if not answers:
        nums = (f"inconclusive: the control ends worse than the base itself (EW {m['ew']['capacity']:.4f} vs "
                f"{m['ew']['base']:.4f}), so it is no measure of what capacity buys; " + nums)
    # The paper reports the control without claiming that fusion wins it: the question checked is
    # the practitioner's (would one bigger model do as well?), and the label says how the paper's numbers answer it.
    return t, _verdict("fusion beats a capacity-matched single model (the control's question; the paper's own numbers "
                       f"answer {'no' if paper_bigger_ahead else 'yes'})",
                       m["ew"][model] < m["ew"]["capacity"] if answers else None, nums)


def verdicts(res: dict) -> list[dict]:
    """Every section's verdict that the results allow, in the notebook's order."""
    main = main_results_of(res)
    steps = [
        ("freeze", lambda: freeze_table(res["freeze"])[-1]),
        ("crossover", lambda: crossover_table(res["freeze"], res.get("crossover"))[-1]),
        ("maturity", lambda: maturity_table(res["maturity"])[-1]),
        ("init", lambda: init_table(res["init"], main)[-1]),
        ("heterogeneous", lambda: heterogeneous_table(res["heterogeneous"])[1]),
        ("lora", lambda: lora_table(res["lora"], main)[-1]),
        ("count", lambda: count_table(res["count"])[-1]),
        ("capacity", lambda: capacity_table(res["capacity"])[-1]),
    ]
    needs = {"crossover": "freeze", "init": "init", "lora": "lora"}
    out = []
    for section, verdict_of in steps:
        if needs.get(section, section) in res and (section not in ("init", "lora") or main):
            out.append({"section": section, **verdict_of()})
    return out


def main_results_of(res: dict) -> list[dict]:
    """The main cooperative's results (one per seed), as run_all recorded them."""
    return res.get("main", {}).get("main", [])


# ================================================================ figures (figures/<scale>/05_*.png)

def _two_panels(title: str, width: float = 11):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(width, 4))
    fig.suptitle(title)
    return fig, axes


def plot_freeze(table: pd.DataFrame):
    import seaborn as sns
    fig, (ax, axp) = _two_panels("Gain vs number of frozen blocks")
    long = table.melt(id_vars="frozen blocks K", value_vars=["gain (%)", "gain, causal router (%)"], var_name="router", value_name="gain")
    sns.lineplot(long, x="frozen blocks K", y="gain", hue="router", marker="o", ax=ax, seed=0)
    ax.set(title="this run", ylabel="gain vs best specialist (%)")
    sns.lineplot(x=list(paper.FREEZE_SWEEP_410M), y=list(paper.FREEZE_SWEEP_410M.values()), marker="o", color="gray", ax=axp)
    axp.set(title="the paper (Pythia-410M, 2k steps)", xlabel="frozen blocks K", ylabel="gain vs best specialist (%)")
    return fig


def plot_crossover(table: pd.DataFrame, paper_table: pd.DataFrame):
    import seaborn as sns
    fig, (ax, axp) = _two_panels("Improvement over the base vs training steps")
    fig.subplots_adjust(top=0.78)  # room for the panels' two-line titles under the figure's
    sns.lineplot(table.melt(id_vars="step", var_name="frozen", value_name="improvement"), x="step", y="improvement",
                 hue="frozen", marker="o", ax=ax, seed=0)
    ax.set_title(textwrap.fill("this run: " + table.attrs.get("what", ""), 48), fontsize=9)
    ax.set(ylabel="improvement vs base (%)")
    sns.lineplot(paper_table.melt(id_vars="step", var_name="frozen", value_name="improvement"), x="step", y="improvement",
                 hue="frozen", marker="o", ax=axp, palette="Greys")
    axp.set_title("the paper (410M): the fused model's equal-weight\nimprovement over the base, one cooperative per step count",
                  fontsize=9)
    axp.set(xscale="log", ylabel="improvement vs base (%)")
    return fig


def plot_maturity(table: pd.DataFrame):
    import seaborn as sns
    fig, (ax, axp) = _two_panels("Gain vs the shared base's pretraining revision")
    sns.lineplot(table, x="step", y="gain (%)", marker="o", ax=ax, seed=0)
    ax.set(title="this run", xlabel="base revision (pretraining step)", ylabel="gain vs best specialist (%)")
    sns.lineplot(x=list(paper.MATURITY_410M), y=list(paper.MATURITY_410M.values()), marker="o", color="gray", ax=axp, label="410M")
    sns.lineplot(x=list(paper.MATURITY_1B_ENDPOINTS), y=list(paper.MATURITY_1B_ENDPOINTS.values()), marker="s", color="black",
                 ax=axp, label="1B (ends only)")
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


def plot_bars(table: pd.DataFrame, x: str, ys: list[str], title: str, paper_line: float | None = None, paper_label: str = ""):
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
    for ax in list(axes)[len(ys):]:
        ax.set_visible(False)
    return fig


def plot_count(table: pd.DataFrame):
    import seaborn as sns
    fig, (ax, axp) = _two_panels("Gain vs number of specialists (every count on the same held-out domains)")
    sns.lineplot(table, x="specialists", y="gain (%)", marker="o", ax=ax, seed=0)
    ax.set(title="this run", ylabel="gain vs best specialist (%)")
    sns.lineplot(x=list(paper.SPECIALIST_COUNT), y=list(paper.SPECIALIST_COUNT.values()), marker="o", color="gray", ax=axp)
    axp.set(title="the paper (5-domain eval)", xlabel="specialists", ylabel="gain vs best specialist (%)")
    return fig


# ================================================================ the reference summary

def summarize(runs: Path) -> dict:
    """Notebook 05's numbers for results/<scale>/05_ablations.json ({} before the notebook ran).

    Keys follow analysis/reference.py's tolerances: percentages under a "gain" / "mean_divergence"
    key (0.01 pp), gate weights under "gates", verdicts as booleans (exact).
    """
    res = load(Path(runs))
    if not res:
        return {}
    out: dict = {}

    def seeds(rs, f):
        return {f"seed{r['seed']}": f(r) for r in rs}

    for section in ("freeze", "maturity", "heterogeneous", "lora", "count"):
        if section in res:
            model = _paper_model(res[section])
            out[section] = {label: {"gain": seeds(rs, _gain(model)), "mean_divergence": seeds(rs, lambda r: r["metrics"]["mean_divergence_pct"])}
                            for label, rs in res[section].items()}
    if "freeze" in res:
        t, _, _ = crossover_table(res["freeze"], res.get("crossover"))
        out["crossover"] = {"gain": {c: [float(v) for v in t[c]] for c in t.columns if c != "step"},
                            "steps": [int(s) for s in t["step"]]}
    if "init" in res:
        model = _paper_model(res["init"])
        out["init"] = {arm: {"gain": seeds(rs, lambda r: r["metrics"]["gain_vs_base_pct"][model]),
                             "gates": seeds(rs, lambda r: r["gates"][model])} for arm, rs in res["init"].items()}
    if "heterogeneous" in res:
        out["heterogeneous_spread"] = {"gain": heterogeneous_table(res["heterogeneous"])[2]}
    if "capacity" in res:
        rs = res["capacity"]["capacity"]
        out["capacity"] = {"gain": seeds(rs, lambda r: r["metrics"]["gain_vs_best_pct"]),
                           "ew": seeds(rs, lambda r: r["metrics"]["ew"]),
                           "steps": rs[0]["config"]["steps"], "capacity_d_model": rs[0]["config"]["capacity_d_model"],
                           "pretrain_steps": rs[0]["config"].get("pretrain_steps"),
                           "pretrain_fraction": rs[0]["config"].get("pretrain_fraction", 1.0)}
        params = rs[0]["extra"]["params"]
        if params.get("specialist"):  # offline: the bigger model's parameters in specialists
            out["capacity"]["params_ratio"] = params["capacity"] / params["specialist"]
    out["verdicts"] = {f"{v['section']}: {v['claim']}": v["holds"] for v in verdicts(res)}
    return out
