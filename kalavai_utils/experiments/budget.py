"""The GPU time a run of the notebooks needs at a Hub scale: an estimate, counted from the
experiments' own definitions and converted by what an H100 measured (results/410m/).

What each notebook trains and evaluates is listed by the very functions the notebooks call
(cooperative.main_cooperative, sweep.conditions, ablations.section_cooperatives,
phase2.cooperative_for), inside `pipeline.planning()`, where the data steps only name their
folders: nothing is trained, loaded or read from the Hub. Each step is counted once, as the
run's caches run it once, by the keys those caches use:
- a specialist by what `cooperative.copy_trained` compares: base revision, domain data, recipe
  (TrainConfig), contributor and LoRA; a specialist that an earlier cooperative of the run
  trained the same way is copied, not retrained (the crossover ladder's rung at K = 0 and the
  specialists' own steps is the freeze ladder's K = 0, copied);
- a monolithic baseline, a cooperative's baselines, routers and fused evaluation by its folder;
- the base's held-out loss by (revision, domain); the capacity control by seed.
The notebooks run in order (00 ... 07), so a step is charged to the first selected notebook
that runs it, and within notebook 05 to the first section that does (ablations.run_all's order).

Seconds: training tokens (steps x micro-batch x accumulation x sequence length) over the
throughput measured at the scale's batch shape (results/410m/training_shapes_h100.json). At
another model size nothing was measured: the 410m measurement at one GPU's shape (8 x 1, the
best-measured use of the GPU) is extrapolated at the same FLOP/s, by runtime/perf.py's training
FLOPs per token on Pythia's published shapes (scales.PYTHIA_SHAPES), the frozen depth K of each
training included, and gradient checkpointing's recomputation (one more forward pass of the
trained blocks) added. Evaluation passes and router training come from
results/410m/benchmark_h100.json's timings, scaled by forward FLOPs (experiments/inference.py's
count) to the number of experts, their shared depth and the model size; held-out curves during
training run at the one-model evaluation speed.

Not counted: data preparation and tokenization (notebook 00, on the CPU), loading and saving
checkpoints, the base's own evaluation tables (notebooks 01 and 06's base-weakness table),
notebook 07's inference benchmark and dispatch losses, compilation (KALAVAI_COMPILE is off by
default; `compile_note` says what it would change), and at 6.9b the sharding's communication
between GPUs. LoRA trainings are counted at full fine-tuning's FLOPs (an upper bound), and
every held-out set at its full `eval_max_batches` (an upper bound where a split is smaller).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import GPTNeoXForCausalLM

from .. import storage
from ..errors import KalavaiError
from ..protocol import data, pipeline
from ..protocol.cooperative import Cooperative, frozen_depth, fused_name, main_cooperative
from ..protocol.models import freeze_prefix
from ..protocol.training import TrainConfig
from ..runtime.perf import prefix_forward_flops, training_flops
from ..scales import ONE_GPU_BATCH, SCALES, Scale, pythia_config, pythia_size, trains_sharded
from . import ablations, phase2, sweep
from .inference import forward_flops

MEASURED_DIR = pipeline.ROOT / "results" / "410m"
SHAPES_FILE, BENCHMARK_FILE = "training_shapes_h100.json", "benchmark_h100.json"
MEASURED_SIZE = "410m"  # the model whose training, evaluation and routers were timed
SECONDS_PER_HOUR = 3600
WORK_KINDS = ("training", "curves", "evaluation", "routers")


# ---------------------------------------------------------------- what was measured


@dataclass(frozen=True)
class Measured:
    """The H100 timings the estimate converts by, read from results/410m/ (never typed)."""

    device: str
    date: str
    files: tuple[str, ...]
    shape: tuple[int, int]  # micro-batch x accumulation of the training measurement used
    train_tokens_per_s: float
    train_frozen: int  # K of that measurement
    seq_len: int
    compiled_tokens_per_s: float | None  # the same shape compiled (KALAVAI_COMPILE=1), where measured
    compile_seconds: float | None  # the compiled run's first step beyond the plain one's
    eval_single_tokens_per_s: float
    eval_fused_tokens_per_s: float
    eval_experts: int
    eval_frozen: int
    router_alone_seconds_per_step: float
    router_group_seconds_per_step: float  # `router_group` routers side by side, all of them
    router_group: int
    router_batch: int


def _shape_key(micro_batch: int, grad_accum: int, compiled: bool) -> str:
    return f"{MEASURED_SIZE} mb{micro_batch}x{grad_accum} fusedTrue compile{compiled}"  # the probe's key names


def measured_shape(scale: Scale) -> tuple[int, int]:
    """The batch shape whose measurement converts this scale's training: its own at 410m; elsewhere
    one GPU's 8 x 1 (the measured shape that uses the GPU best), extrapolated by FLOPs."""
    if pythia_size(scale.hub_model) == MEASURED_SIZE:
        return scale.micro_batch, scale.grad_accum
    return ONE_GPU_BATCH["micro_batch"], ONE_GPU_BATCH["grad_accum"]


def read_measured(scale: Scale, folder: Path = MEASURED_DIR) -> Measured:
    """The measurements in `folder` (results/410m/ unless a test gives a copy) for this scale's conversion."""
    folder = Path(folder)
    try:
        shapes, bench = storage.read_json(folder / SHAPES_FILE), storage.read_json(folder / BENCHMARK_FILE)
    except (OSError, ValueError) as e:
        raise KalavaiError(
            f"the H100 measurements the budget reads are missing or unreadable in {folder}: {e}"
        ) from None
    mb, acc = measured_shape(scale)
    plain = shapes.get(_shape_key(mb, acc, False))
    if plain is None:
        raise KalavaiError(
            f"{folder / SHAPES_FILE} holds no measurement at {mb} x {acc} (scale {scale.name}'s shape); "
            "run scripts/speed_probe.py on a GPU at that shape"
        )
    try:
        return _measured(folder, shapes, bench, mb, acc, plain)
    except KeyError as e:
        raise KalavaiError(f"the H100 measurements in {folder} lack {e} (written by an older benchmark?)") from None


def _measured(folder: Path, shapes: dict, bench: dict, mb: int, acc: int, plain: dict) -> Measured:
    compiled = shapes.get(_shape_key(mb, acc, True))
    machine, ev, rt = shapes.get("machine", {}), bench["evaluation"], bench["router"]
    device = machine.get("device_name", bench["device_name"])
    if device != bench["device_name"]:
        raise KalavaiError(f"{SHAPES_FILE} ({device}) and {BENCHMARK_FILE} ({bench['device_name']}) name other devices")
    return Measured(
        device=device,
        date=machine.get("date", "date not recorded"),
        files=tuple(_shown(folder / f) for f in (SHAPES_FILE, BENCHMARK_FILE)),
        shape=(mb, acc),
        train_tokens_per_s=plain["tokens_per_s"],
        train_frozen=machine.get("frozen_blocks", bench["evaluation"]["freeze_layers"]),
        seq_len=SCALES[MEASURED_SIZE].seq_len,
        compiled_tokens_per_s=compiled["tokens_per_s"] if compiled else None,
        compile_seconds=compiled["first_step_s"] - plain["first_step_s"] if compiled else None,
        eval_single_tokens_per_s=ev["single_model_tokens_per_s"],
        eval_fused_tokens_per_s=ev["fused_tokens_per_s"],
        eval_experts=ev["n_experts"],
        eval_frozen=ev["freeze_layers"],
        router_alone_seconds_per_step=rt["alone_seconds_per_router"] / rt["steps"],
        router_group_seconds_per_step=rt["side_by_side_seconds_per_router"] * rt["n_side_by_side"] / rt["steps"],
        router_group=rt["n_side_by_side"],
        router_batch=SCALES[MEASURED_SIZE].router_batch,
    )


def _shown(path: Path) -> str:
    return str(path.relative_to(pipeline.ROOT)) if path.is_relative_to(pipeline.ROOT) else str(path)


# ---------------------------------------------------------------- FLOPs, from perf.py's count


@functools.lru_cache(maxsize=None)
def training_flops_per_token(size: str, freeze_layers: int, seq_len: int, grad_checkpointing: bool = False) -> float:
    """runtime/perf.py's training FLOPs per token of Pythia-<size> with K blocks frozen (a meta-device
    model: nothing allocated), plus one more forward pass of the trained blocks with gradient
    checkpointing (the recomputation)."""
    with torch.device("meta"):
        model = GPTNeoXForCausalLM(pythia_config(size))
    freeze_prefix(model, freeze_layers)
    f = training_flops(model, seq_len)
    layers = model.config.num_hidden_layers
    recompute = (
        prefix_forward_flops(model, layers, seq_len) - prefix_forward_flops(model, freeze_layers, seq_len)
        if grad_checkpointing
        else 0.0
    )
    return f["forward"] + f["backward"] + recompute


@functools.lru_cache(maxsize=None)
def _forward_flops(size: str, seq_len: int, n_experts: int = 1, freeze_layers: int | None = None) -> float:
    return forward_flops(pythia_config(size), seq_len, n_experts, freeze_layers)


class Rates:
    """Seconds for a training, an evaluation pass and a group of routers, from `Measured`."""

    def __init__(self, measured: Measured):
        self.m = measured

    def _reference_flops(self) -> float:
        return training_flops_per_token(MEASURED_SIZE, self.m.train_frozen, self.m.seq_len)

    def training(self, size: str, cfg: TrainConfig, seq_len: int, tokens: int) -> float:
        flops = training_flops_per_token(size, cfg.freeze_layers, seq_len, cfg.grad_checkpointing)
        return tokens * flops / (self.m.train_tokens_per_s * self._reference_flops())

    def compiled_training(self, size: str, cfg: TrainConfig, seq_len: int, tokens: int) -> float | None:
        """The same training compiled, its one-time compile included; None where nothing was measured."""
        if self.m.compiled_tokens_per_s is None or size != MEASURED_SIZE:
            return None
        flops = training_flops_per_token(size, cfg.freeze_layers, seq_len, cfg.grad_checkpointing)
        return self.m.compile_seconds + tokens * flops / (self.m.compiled_tokens_per_s * self._reference_flops())

    def _fused_ratio(self, size: str, seq_len: int, n_experts: int, freeze_layers: int) -> float:
        """Forward FLOPs of N experts sharing K blocks over those of the measured fused model."""
        return _forward_flops(size, seq_len, n_experts, freeze_layers) / _forward_flops(
            MEASURED_SIZE, self.m.seq_len, self.m.eval_experts, self.m.eval_frozen
        )

    def single(self, size: str, seq_len: int, tokens: int) -> float:
        ratio = _forward_flops(size, seq_len) / _forward_flops(MEASURED_SIZE, self.m.seq_len)
        return tokens * ratio / self.m.eval_single_tokens_per_s

    def fused(self, size: str, seq_len: int, n_experts: int, freeze_layers: int, tokens: int) -> float:
        return tokens * self._fused_ratio(size, seq_len, n_experts, freeze_layers) / self.m.eval_fused_tokens_per_s

    def routers(
        self, size: str, seq_len: int, n_experts: int, freeze_layers: int, batch: int, steps: list[int]
    ) -> float:
        """Routers trained side by side for `steps` each (one pass of the experts serves them all):
        per step, one router alone's measured time, and each further router's share of the measured
        group's extra time."""
        m = self.m
        extra = (m.router_group_seconds_per_step - m.router_alone_seconds_per_step) / max(1, m.router_group - 1)
        seconds, done = 0.0, 0
        for i, n in enumerate(sorted(steps)):  # the routers still training between two ends
            active = len(steps) - i
            seconds += (n - done) * (m.router_alone_seconds_per_step + (active - 1) * extra)
            done = n
        scale = self._fused_ratio(size, seq_len, n_experts, freeze_layers) * (batch * seq_len)
        return seconds * scale / (m.router_batch * m.seq_len)


# ---------------------------------------------------------------- what a run does


@dataclass(frozen=True)
class Work:
    notebook: str  # "02"
    section: str  # notebook 05's section ("main" for its main cooperative), notebook 06's, else ""
    kind: str  # WORK_KINDS
    what: str
    steps: int  # optimizer steps (trainings only)
    tokens: int  # tokens trained, or run forward
    seconds: float
    compiled_seconds: float | None = None  # trainings: with KALAVAI_COMPILE=1, where measured


class _Planner:
    """Lists the work of a run, each step once (the caches' keys; see the module docstring)."""

    def __init__(self, scale: Scale, runs: Path, rates: Rates):
        self.scale, self.runs, self.rates = scale, runs, rates
        self.size = pythia_size(scale.hub_model)
        self.tokenizer = pipeline.tokenizer_hash(scale, runs)
        self.done: set = set()
        self.work: list[Work] = []
        self.notebook = self.section = ""

    def _once(self, *key) -> bool:
        if key in self.done:
            return False
        self.done.add(key)
        return True

    def _add(self, kind: str, what: str, seconds: float, tokens: int, steps: int = 0, compiled=None) -> None:
        self.work.append(Work(self.notebook, self.section, kind, what, steps, tokens, seconds, compiled))

    def _eval_tokens(self, n_domains: int) -> int:
        s = self.scale
        return n_domains * s.eval_batch * s.eval_max_batches * s.seq_len

    def _training(self, what: str, cfg: TrainConfig, size: str, curve_domains: int) -> None:
        s = self.scale
        tokens = cfg.steps * cfg.micro_batch * cfg.grad_accum * s.seq_len
        self._add(
            "training",
            what,
            self.rates.training(size, cfg, s.seq_len, tokens),
            tokens,
            cfg.steps,
            self.rates.compiled_training(size, cfg, s.seq_len, tokens),
        )
        if cfg.curve_every and curve_domains:  # train_causal_lm's record_curve: step 0, every curve_every, the last
            points = 1 + cfg.steps // cfg.curve_every + (cfg.steps % cfg.curve_every > 0)
            curve = points * curve_domains * cfg.eval_batch * cfg.curve_max_batches * s.seq_len
            self._add("curves", what, self.rates.single(size, s.seq_len, curve), curve)

    def _base(self, revision: str | None, domains) -> None:
        revision = revision or pipeline.shared_revision(self.scale)
        todo = [d for d in domains if self._once("base", revision, d)]  # cooperative.base_losses' cache
        if todo:
            tokens = self._eval_tokens(len(todo))
            self._add(
                "evaluation", f"base {revision}", self.rates.single(self.size, self.scale.seq_len, tokens), tokens
            )

    def _fused_pass(self, what: str, n_experts: int, freeze: int, n_domains: int) -> None:
        tokens = self._eval_tokens(n_domains)
        self._add(
            "evaluation", what, self.rates.fused(self.size, self.scale.seq_len, n_experts, freeze, tokens), tokens
        )

    def _single_pass(self, what: str, n_domains: int, size: str | None = None) -> None:
        tokens = self._eval_tokens(n_domains)
        self._add("evaluation", what, self.rates.single(size or self.size, self.scale.seq_len, tokens), tokens)

    # one per step of cooperative.py

    def train(self, coop: Cooperative, revision: str | None = None) -> None:
        """cooperative.train_contributors."""
        s, folder = self.scale, coop.folder(self.runs)
        base = revision or pipeline.shared_revision(s)
        for domain in coop.domains:
            cfg = coop.train_config(domain)
            domain_data = data.domain_config(s, domain, self.tokenizer)
            key = ("specialist", base, _json(domain_data), _json(cfg.to_dict()), domain, _json(coop.lora))
            if self._once(*key):
                self._training(
                    f"{coop.condition} {domain}", cfg, self.size, len(coop.domains) if coop.all_curves else 1
                )
        if coop.monolithic and self._once("monolithic", folder):
            cfg = coop.train_config()
            cfg = replace(cfg, steps=cfg.steps * len(coop.domains))  # equal compute, as train_contributors
            self._training(f"{coop.condition} monolithic", cfg, self.size, len(coop.domains))

    def baselines(self, coop: Cooperative, revision: str | None = None, specialists: bool = True) -> None:
        """cooperative.evaluate_baselines."""
        if not self._once("baselines", coop.folder(self.runs)):
            return
        n, k = len(coop.domains), frozen_depth(self.scale, coop.train_overrides)
        self._base(revision, coop.domains)
        if specialists:
            self._fused_pass(f"{coop.condition} specialists", n, k, n)
        self._single_pass(f"{coop.condition} weight average", n)
        if coop.monolithic:
            self._single_pass(f"{coop.condition} monolithic", n)

    def routers(self, what: str, coop: Cooperative, n_experts: int, freeze: int, key) -> None:
        """cooperative.fit_routers: the routers not fitted yet, side by side by warm start."""
        s = self.scale
        todo = [
            (fused_name(kind, g, recipe=recipe), recipe)
            for kind, g, recipe in coop.all_routers()
            if self._once("router", key, fused_name(kind, g, recipe=recipe))
        ]
        for text in sorted({r.text for _, r in todo}):  # one pass per text, and one over warm-start batches
            group = [r for _, r in todo if r.text == text]
            steps = [r.steps(s.router_steps) for r in group]
            seconds = self.rates.routers(self.size, s.seq_len, n_experts, freeze, s.router_batch, steps)
            self._add("routers", f"{what}: {len(steps)} router(s)", seconds, sum(steps) * s.router_batch * s.seq_len)
            warm = [r.warm_steps(s.router_steps) for r in group if r.warm_steps(s.router_steps)]
            if warm:
                seconds = self.rates.routers(self.size, s.seq_len, n_experts, freeze, s.router_batch, [max(warm)])
                self._add("routers", f"{what}: warm start", seconds, max(warm) * s.router_batch * s.seq_len)

    def fusion(self, coop: Cooperative, revision: str | None = None) -> None:
        """cooperative.evaluate_cooperative: baselines (if not yet), routers, one fused pass."""
        folder = coop.folder(self.runs)
        self.baselines(coop, revision, specialists=False)
        n, k = len(coop.domains), frozen_depth(self.scale, coop.train_overrides)
        self.routers(coop.condition, coop, n, k, folder)
        if self._once("fusion", folder, _json([coop.routers, coop.variant_config()])):
            self._fused_pass(f"{coop.condition} fused", n, k, n)

    def run(self, coop: Cooperative, revision: str | None = None) -> None:
        """cooperative.run_cooperative."""
        self.train(coop, revision)
        self.fusion(coop, revision)


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# ---------------------------------------------------------------- the notebooks


def _plan_notebook(p: _Planner, notebook: str, seeds, sections) -> None:
    """The work of one notebook, as its cells call the experiments (notebooks/NN_*.ipynb)."""
    s, runs = p.scale, p.runs
    run_seeds = list(seeds or s.seeds)  # notebooks 02, 03, 06, 07
    sweep_seeds = list(seeds or s.sweep_seeds)  # notebooks 04, 05
    folder, _ = pipeline.prepare_corpus(s, runs)
    p.notebook, p.section = notebook, ""
    if notebook == "02":
        for seed in run_seeds:
            coop = main_cooperative(s, runs, seed, folder, ablation=(seed == run_seeds[0]))
            p.train(coop)
            p.baselines(coop)
    elif notebook == "03":
        for seed in run_seeds:
            p.run(main_cooperative(s, runs, seed, folder, ablation=(seed == run_seeds[0])))
    elif notebook == "04":
        for cond in sweep.conditions(s):
            for seed in sweep_seeds:
                p.run(sweep.cooperative_for(s, runs, cond, seed))
    elif notebook == "05":
        _plan_ablations(p, sweep_seeds, sections)
    elif notebook == "06":
        for section, section_seeds, recipes in phase2.sections(s, run_seeds):
            p.section = section
            for coop in phase2.section_cooperatives(s, runs, section, section_seeds, recipes):
                if section == "twenty":  # phase2.predict_before_routing: each specialist on its own domain
                    p.train(coop)
                    if p._once("prediction", coop.folder(runs)):
                        p._base(None, coop.domains)
                        p._single_pass("twenty: each specialist's own domain", len(coop.domains))
                p.run(coop)
    elif notebook == "07":
        p.run(main_cooperative(s, runs, run_seeds[0], folder, ablation=True))


def _plan_ablations(p: _Planner, seeds, sections) -> None:
    """ablations.run_all's steps, in its order (on a GPU it runs them in the notebook's process)."""
    s, runs = p.scale, p.runs
    chosen = set(ablations.check_sections(sections) or ablations.default_sections(s))
    for seed in seeds:
        p.section = "main"
        p.run(ablations.ablation_cooperative(s, runs, "main", seed))
        for section in (x for x in ablations.SECTIONS if x in chosen):
            p.section = section
            coops = ablations.section_cooperatives(s, runs, seed, section)
            if section == "init":
                _plan_init(p, seed, coops)
            elif section == "count":
                _plan_count(p, seed, coops)
            elif section == "capacity":
                _plan_capacity(p, seed, coops)
            else:
                for coop, revision in coops.values():
                    p.run(coop, revision)


def _plan_init(p: _Planner, seed: int, coops: dict) -> None:
    """The maturity cooperatives the arms draw from, then ablations.run_mismatched for each arm:
    the specialists fused without a shared prefix (every expert a whole model)."""
    s = p.scale
    for coop, revision in coops.values():
        p.run(coop, revision)
    for arm in ablations.mismatch_arms(s):
        coop = ablations.ablation_cooperative(s, p.runs, ablations.arm_condition(arm), seed, shared_base=False)
        if p._once("init", arm, seed):
            n = len(s.domains)
            p._base(None, s.domains)
            p.routers(f"init {arm}", coop, n, 0, coop.folder(p.runs))
            p._fused_pass(f"init {arm} fused", n, 0, n)
            p._single_pass(f"init {arm} weight average", n)


def _plan_count(p: _Planner, seed: int, coops: dict) -> None:
    """Notebook 04's cooperatives, then ablations.evaluate_on_domains on the largest one's domains."""
    by_n = {int(n): coop for n, (coop, _) in coops.items()}
    domains = ablations.count_eval_domains(by_n)
    for n, coop in by_n.items():
        p.run(coop)
        if p._once("count", n, seed):
            p._base(None, domains)
            p._fused_pass(f"count n{n}", len(coop.domains), frozen_depth(p.scale, coop.train_overrides), len(domains))


def _plan_capacity(p: _Planner, seed: int, coops: dict) -> None:
    """The main cooperative, then ablations.run_capacity: Pythia-1.4B trained on the mix, evaluated."""
    for coop, revision in coops.values():
        p.run(coop, revision)
    if p._once("capacity", seed):
        size = pythia_size(ablations.CAPACITY_HUB_MODEL)
        p._training(f"capacity {ablations.CAPACITY_HUB_MODEL}", ablations.capacity_train_config(p.scale, seed), size, 0)
        p._single_pass(f"capacity {ablations.CAPACITY_HUB_MODEL}", len(p.scale.domains), size)


# ---------------------------------------------------------------- the estimate


@dataclass
class Budget:
    scale: str
    notebooks: tuple[str, ...]
    seeds: tuple[int, ...] | None
    sections: tuple[str, ...]  # notebook 05's, as it would run them
    measured: Measured
    extrapolated: bool  # the scale's model or shape was not measured: converted by FLOPs
    work: list[Work]
    opt_in: dict[str, list[Work]] = field(default_factory=dict)  # notebook 05's sections left out: their work if added

    def hours(self, notebook: str | None = None, kinds=WORK_KINDS) -> float:
        return _hours(w for w in self.work if (notebook is None or w.notebook == notebook) and w.kind in kinds)

    def rows(self) -> list[dict]:
        """One row per notebook: trainings, optimizer steps, tokens trained, GPU-hours by kind and in all."""
        return [_row(nb, [w for w in self.work if w.notebook == nb]) for nb in self.notebooks]

    def section_rows(self) -> list[dict]:
        """Notebook 05 by section (its main cooperative as "main"), then each opt-in section left out."""
        out = []
        if "05" in self.notebooks:
            ran = [w for w in self.work if w.notebook == "05"]
            for section in ("main", *ablations.SECTIONS):
                if section == "main" or section in self.sections:
                    out.append({**_row(section, [w for w in ran if w.section == section]), "opt_in": False})
        for section, work in self.opt_in.items():
            out.append({**_row(section, work), "opt_in": True})
        return out

    def total(self) -> dict:
        return _row("total", self.work)

    def compiled_hours(self) -> float | None:
        """GPU-hours with KALAVAI_COMPILE=1, each training paying the measured compile once (a training
        of another model, where nothing compiled was measured, at its plain speed); None without any."""
        if not any(w.compiled_seconds is not None for w in self.work):
            return None
        return (
            sum(w.seconds if w.compiled_seconds is None else w.compiled_seconds for w in self.work) / SECONDS_PER_HOUR
        )


def _hours(work) -> float:
    return sum(w.seconds for w in work) / SECONDS_PER_HOUR


def _row(name: str, work: list[Work]) -> dict:
    trainings = [w for w in work if w.kind == "training"]
    return {
        "name": name,
        "trainings": len(trainings),
        "steps": sum(w.steps for w in trainings),
        "tokens": sum(w.tokens for w in trainings),
        **{f"{kind}_hours": _hours(w for w in work if w.kind == kind) for kind in WORK_KINDS},
        "hours": _hours(work),
    }


def plan(scale: Scale, notebooks, seeds=None, sections=None, measured_dir: Path = MEASURED_DIR) -> Budget:
    """The expected GPU time of `notebooks` ("00".."07", as run_all.sh selects them) at a Hub scale:
    every step counted once (module docstring), in GPU-seconds of the measured device."""
    if not scale.is_hub:
        raise KalavaiError(
            f"scale {scale.name} runs offline: its expected time comes from results/{scale.name}/timings.json "
            "(run-notebooks prints it), not from a GPU budget"
        )
    notebooks = tuple(sorted(notebooks))
    chosen = ablations.check_sections(sections)
    run_sections = chosen or ablations.default_sections(scale)
    measured = read_measured(scale, measured_dir)
    rates = Rates(measured)
    runs = pipeline.run_dir(scale)

    def work_of(section_choice) -> list[Work]:
        planner = _Planner(scale, runs, rates)
        with pipeline.planning():
            for nb in notebooks:
                _plan_notebook(planner, nb, seeds, section_choice)
        return planner.work

    work = work_of(run_sections)
    opt_in = {}
    if "05" in notebooks:
        for section in ablations.OPT_IN_SECTIONS:
            if section not in run_sections:
                opt_in[section] = [w for w in work_of((*run_sections, section)) if w.section == section]
    extrapolated = pythia_size(scale.hub_model) != MEASURED_SIZE or measured.shape != (
        scale.micro_batch,
        scale.grad_accum,
    )
    return Budget(
        scale=scale.name,
        notebooks=notebooks,
        seeds=tuple(seeds) if seeds else None,
        sections=tuple(run_sections),
        measured=measured,
        extrapolated=extrapolated,
        work=work,
        opt_in=opt_in,
    )


# ---------------------------------------------------------------- in words


def hm(hours: float) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"


def conversion(b: Budget) -> str:
    """How the scale's training time is had: measured at its model and shape, or extrapolated."""
    shape = f"{b.measured.shape[0]} x {b.measured.shape[1]}"
    if b.extrapolated:
        return f"extrapolated to {b.scale} by training FLOPs per token from {MEASURED_SIZE}'s {shape} measurement"
    return f"measured at {b.scale}'s {shape} batch shape"


def source_line(b: Budget) -> str:
    m = b.measured
    return (
        f"an estimate in GPU-hours of one {m.device}, {conversion(b)}: {m.train_tokens_per_s:,.0f} training "
        f"tokens/s at K = {m.train_frozen}, uncompiled (measured {m.date}; {', '.join(m.files)})"
    )


def compile_note(b: Budget) -> str:
    """Compilation's break-even and what it would change for this selection, from the measurement."""
    m = b.measured
    if m.compiled_tokens_per_s is None or b.extrapolated:
        return "KALAVAI_COMPILE=1: not measured at this scale's model and shape; off by default."
    saved_per_token = 1 / m.train_tokens_per_s - 1 / m.compiled_tokens_per_s
    tokens = m.compile_seconds / saved_per_token
    steps = tokens / (m.shape[0] * m.shape[1] * m.seq_len)
    compiled = b.compiled_hours()
    hours = b.hours()
    return (
        f"KALAVAI_COMPILE=1 (off by default): {m.compiled_tokens_per_s:,.0f} tokens/s after a one-time compile of "
        f"{m.compile_seconds:.0f} s per training, which pays for itself after {steps:,.0f} steps at K = {m.train_frozen}; "
        + (
            f"these notebooks would take {hm(compiled)} instead of {hm(hours)} if every training compiled once "
            "(a compile cache could make later compiles cheaper: not measured)."
            if compiled is not None
            else "no training of this model in this selection."
            if any(w.kind == "training" for w in b.work)
            else "no training in this selection."
        )
    )


def _default_seeds(b: Budget) -> str:
    s = SCALES[b.scale]
    sweep = f"; notebooks 04-05: {', '.join(map(str, s.sweep_seeds))}" if {"04", "05"} & set(b.notebooks) else ""
    return f", the scale's seeds ({', '.join(map(str, s.seeds))}{sweep})"


def describe(b: Budget) -> str:
    """The budget as the command line prints it."""
    head = (
        f"Expected GPU time at scale {b.scale}, notebooks {', '.join(b.notebooks)}"
        + (f", seeds {', '.join(map(str, b.seeds))}" if b.seeds else _default_seeds(b))
        + f": {source_line(b)}."
        + (" Sharded over several GPUs: GPU-hours summed over them." if trains_sharded(SCALES[b.scale]) else "")
    )
    cols = ("notebook", "trainings", "steps", "tokens", "training h", "curves+eval+routers h", "GPU-hours")

    def cells(r: dict) -> list[str]:
        other = r["hours"] - r["training_hours"]
        return [
            r["name"],
            f"{r['trainings']:,}",
            f"{r['steps']:,}",
            f"{r['tokens'] / 1e6:,.0f}M",
            f"{r['training_hours']:.2f}",
            f"{other:.2f}",
            f"{r['hours']:.2f}",
        ]

    table = [list(cols), *[cells(r) for r in b.rows()], cells(b.total())]
    sections = [
        cells({**r, "name": f"  05 {r['name']}" + (" (opt-in, NOT in the total)" if r["opt_in"] else "")})
        for r in b.section_rows()
    ]
    if sections:
        table[1 + b.notebooks.index("05") + 1 : 1 + b.notebooks.index("05") + 1] = sections
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = [head, ""]
    lines += [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in table
    ]
    lines.append("")
    total = b.hours()
    lines.append(f"Total: {total:.2f} GPU-hours ({hm(total)}).")
    for section, work in b.opt_in.items():
        h = _hours(work)
        lines.append(
            f"Notebook 05's {section} ladder is opt-in at this scale: {h:.2f} GPU-hours more ({hm(h)}) with "
            f"--ablation-sections {','.join((*b.sections, section))}, or alone: --only 05 --ablation-sections {section}"
        )
    lines.append(compile_note(b))
    lines.append(
        "Not counted: data preparation (CPU), checkpoint loading and saving, the base's own tables (notebooks 01 and 06), "
        "notebook 07's inference benchmark"
        + (", the communication between GPUs of sharded training" if trains_sharded(SCALES[b.scale]) else "")
        + "; LoRA counted at full fine-tuning's FLOPs."
    )
    return "\n".join(lines)
