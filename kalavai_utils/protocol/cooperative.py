"""One cooperative, end to end: the four steps of the protocol and every baseline.

1. the shared base (pipeline.load_base), 2. each contributor fine-tunes a copy on its own
domain and hands in a submission (`train_specialist`), 3. the coordinator collects the
submissions through verification and fuses them one at a time (`assemble`), 4. the coordinator
trains routers on the mixed train chunks and evaluates every model by the one protocol
(`evaluate_cooperative`), writing one results file.

Every step is cached in its folder with its configuration, so notebooks 02, 03 and 04
share work: 03 reuses 02's specialists, and a rerun only redoes what changed.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..errors import KalavaiError
from ..runtime import prefix
from ..runtime.perf import Clock
from ..runtime.sharding import fsdp_requested, refuse_unsharded
from ..scales import Scale, trains_sharded
from ..storage import (
    STEP_FILE,
    atomic_write_bytes,
    atomic_write_json,
    config_hash,
    mark_step_done,
    read_json,
    start_step,
    step_is_done,
)
from . import data, pipeline
from .evaluation import domain_losses, evaluate_domains, heldout_batches
from .fusion import FusedModel, WeightAverage
from .joint import JointRecipe, joint_finetune
from .models import fingerprint, for_inference, state_dict_hashes, tensor_sha256
from .pipeline import CHECKPOINT_DIR, drop_checkpoint, on_main, process_state, restart_step
from .results import load_results, make_results, write_results
from .routers import (
    PLAIN,
    RouterRecipe,
    collapsed_domains,
    make_router,
    mean_gates,
    pool_router_input,
    token_losses,
    train_routers,
)
from .submission import collect_submissions, iter_submissions, write_submission
from .training import TrainConfig, train_causal_lm

# The two routers every cooperative reports: the authors' (reproduces the paper; which one
# depends on the scale, see `paper_router`) and ours (causal, the same at every scale).
CAUSAL_ROUTER = ("linear", "token")
ABLATION_ROUTERS = (("linear", "sequence"), ("mlp", "sequence"), ("linear", "token"), ("mlp", "token"))
TRAINING_LOG = "train_log.json"


def fused_name(kind: str, granularity: str, mode: str = "soft", recipe: RouterRecipe | JointRecipe = PLAIN) -> str:
    """The results name of a fused model: its router, how it was trained if not plainly (a router
    recipe, or the joint fine-tune of experts and router), its mode."""
    return (
        f"fused:{kind}:{granularity}"
        + ("" if recipe == PLAIN else f"+{recipe.name}")
        + ("" if mode == "soft" else f":{mode}")
    )


def paper_router(scale: Scale) -> tuple[str, str]:
    """The authors' router at this scale: its kind (MLP at 410M, Linear at 1B and 6.9B), always pooled."""
    return (scale.paper_router, "sequence")


def paper_fused(scale: Scale) -> str:
    """The results name of the fused model with the authors' router at this scale."""
    return fused_name(*paper_router(scale))


CAUSAL_FUSED = fused_name(*CAUSAL_ROUTER)


@dataclass
class Cooperative:
    """What defines one cooperative: who contributes what, trained how."""

    scale: Scale
    experiment: str  # e.g. "main", "sweep"
    condition: str  # e.g. "main", "overlap0.20-n3"
    seed: int
    domains: tuple[str, ...]
    data_dir: Path
    train_overrides: dict = field(default_factory=dict)  # e.g. {"steps": 50} or {"freeze_layers": 0}
    routers: tuple[tuple[str, str], ...] | None = None  # None: the authors' router at this scale and the causal one
    monolithic: bool = True
    # one contributor trained unlike the others (notebook 05's heterogeneous cooperative): {domain: overrides}
    domain_overrides: dict = field(default_factory=dict)
    lora: dict | None = None  # LoRA specialists (lora.lora_spec), merged into full checkpoints before submission
    # held-out curves on every domain (notebook 02's forgetting figure); otherwise on the
    # specialist's own domain only, which is all that notebooks 04 and 05 read of them
    all_curves: bool = False
    # routers trained by another recipe, beside `routers` on the same experts: (kind, granularity, RouterRecipe)
    recipes: tuple = ()
    # the coordinator's own text (chunk folders of the cooperative's domain names), for recipes with text "own"
    own_text_dir: Path | None = None
    # after router-only fusion, the experts' suffixes and the authors' router fine-tuned together (protocol/joint.py)
    joint: JointRecipe | None = None

    def __post_init__(self):
        if self.routers is None:
            self.routers = (paper_router(self.scale), CAUSAL_ROUTER)

    def folder(self, runs: Path) -> Path:
        return runs / self.experiment / self.condition / f"seed{self.seed}"

    def train_config(self, domain: str | None = None) -> TrainConfig:
        """The recipe of `domain`'s specialist (None: the common one, e.g. for the monolithic model)."""
        return TrainConfig.specialist(
            self.scale, self.seed, **{**self.train_overrides, **self.domain_overrides.get(domain, {})}
        )

    def variant_config(self) -> dict:
        """What sets this cooperative apart beyond the recipe, only when set (older cache keys stay as they were)."""
        recipes = [[kind, granularity, asdict(recipe)] for kind, granularity, recipe in self.recipes]
        joint = asdict(self.joint) if self.joint else None
        return {
            k: v
            for k, v in (
                ("domain_overrides", self.domain_overrides),
                ("lora", self.lora),
                ("recipes", recipes),
                ("joint", joint),
            )
            if v
        }

    def all_routers(self) -> list[tuple[str, str, RouterRecipe]]:
        """Every router the coordinator fits: (kind, granularity, recipe), the plain ones first."""
        return [(kind, granularity, PLAIN) for kind, granularity in self.routers] + list(self.recipes)


# ---------------------------------------------------------------- contributors


def data_stats(data_dir: Path, domain: str, chunks: torch.Tensor) -> dict:
    """What a contributor reports of its data: counts and hashes, never text."""
    record = read_json(Path(data_dir) / domain / "chunks.json")
    return {
        "domain": domain,
        "train_chunks": len(chunks),
        "train_tokens": int(chunks.numel()),
        "train_file_sha256": record["files"]["train.safetensors"],
    }


def specialist_save_every(steps: int) -> int:
    """How often a specialist's training state is saved: four times a run, at most 200 steps apart.

    Saving is cheap beside the steps it protects: milliseconds for an offline model, and at
    the Hub scales 200 steps take far longer than writing the trained weights and AdamW's
    two moments once.
    """
    return max(1, min(200, steps // 4))


def train_specialist(
    base,
    base_fp: str,
    train_chunks: torch.Tensor,
    cfg: TrainConfig,
    folder: Path,
    *,
    contributor: str,
    data: dict,
    eval_sets: dict | None = None,
    lora_spec: dict | None = None,
    trained: Path | None = None,
    sharded: str | None = None,
) -> dict:
    """Fine-tune a copy of the base and hand it in as `folder/submission`; returns the training log.

    Cached: a finished folder made with the same configuration is reused as it is, and with
    `trained` (a runs folder), the same training finished for another cooperative under it is
    copied instead of redone (`copy_trained`).
    Resumable: the training state is saved in `folder/checkpoint` every
    `specialist_save_every(cfg.steps)` steps, and a rerun after a kill resumes from it to
    the very weights an uninterrupted run reaches (train_causal_lm checks that the state is
    this training's; the save interval is not part of the configuration, so changing it
    redoes nothing). The checkpoint is deleted once the step is done. Under `accelerate
    launch`, only the main process writes.

    With `lora_spec`, only LoRA adapters on blocks K..L-1 train; they are merged into the
    weights before the submission is written, so it is an ordinary full checkpoint.
    With `sharded` (the name of a scale whose models do not fit one device), training is refused
    unless it is sharded.
    """
    folder = Path(folder)
    # the curves' held-out sets by content: the same names with other chunks are other curves
    config = {
        "train": cfg.to_dict(),
        "base": base_fp,
        "data": data,
        "contributor": contributor,
        "eval": state_dict_hashes(eval_sets or {}),
    }
    if lora_spec:
        config["lora"] = lora_spec
    if step_is_done(folder, config) and (folder / "submission" / "kalavai_submission.json").exists():
        drop_checkpoint(folder)  # left behind only by a kill between marking done and deleting it
        return read_json(folder / TRAINING_LOG)
    restart_step(folder)  # everything but a killed training's checkpoint
    if trained is not None and on_main(copy_trained, Path(trained), folder, config):
        return read_json(folder / TRAINING_LOG)
    if sharded:
        refuse_unsharded(sharded)
    model = copy.deepcopy(base)
    if lora_spec:
        from . import lora  # peft only where LoRA is asked for

        model = lora.add_adapters(model, lora_spec, cfg.freeze_layers, cfg.seed)
    log = train_causal_lm(
        model,
        train_chunks,
        cfg,
        eval_sets,
        desc=f"{contributor}",
        checkpoint_dir=folder / CHECKPOINT_DIR,
        save_every=specialist_save_every(cfg.steps),
    )
    if lora_spec:
        model = lora.merge(model)
    state = process_state()
    if state.is_main_process:
        write_submission(
            model,
            folder / "submission",
            base_fingerprint=base_fp,
            base_state=base.state_dict(),
            freeze_layers=cfg.freeze_layers,
            training=cfg.to_dict(),
            data=data,
            contributor=contributor,
        )
        atomic_write_json(folder / TRAINING_LOG, log)
        mark_step_done(folder, config)
    drop_checkpoint(folder)
    state.wait_for_everyone()
    return log


def copy_trained(runs: Path, folder: Path, config: dict) -> bool:
    """Copy into `folder` a specialist finished elsewhere under `runs` by the very same training.

    The same training: equal recipe, base, data, contributor and LoRA. Nothing else reaches
    the weights (held-out curves neither draw random numbers nor move the batches), so the
    copy is bit for bit what training here would make. Its curves must cover this
    configuration's held-out sets (same content); the copied log keeps only those, as
    training here would have written them, and names the folder it came from. Files are
    hard-linked where possible (they are only ever replaced, never written in place).
    Returns whether one was found.
    """

    def same_training(c: dict) -> bool:
        return {k: v for k, v in c.items() if k != "eval"} == {k: v for k, v in config.items() if k != "eval"}

    want = config["eval"]
    for marker in sorted(runs.glob("**/specialists/*/" + STEP_FILE)):
        src = marker.parent
        if src == folder or not (src / "submission" / "kalavai_submission.json").exists():
            continue
        found = read_json(marker).get("config")
        if (
            not isinstance(found, dict)
            or not step_is_done(src, found)
            or not same_training(found)
            or not isinstance(found.get("eval"), dict)
            or any(found["eval"].get(d) != h for d, h in want.items())
        ):
            continue
        shutil.copytree(src / "submission", folder / "submission", copy_function=_link_or_copy, dirs_exist_ok=True)
        log = read_json(src / TRAINING_LOG)
        log["curve"] = [{**p, "losses": {d: p["losses"][d] for d in want}} for p in log["curve"]]
        atomic_write_json(folder / TRAINING_LOG, {**log, "copied_from": str(src.relative_to(runs))})
        mark_step_done(folder, config)
        return True
    return False


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def train_contributors(coop: Cooperative, runs: Path, base, base_fp: str) -> dict[str, dict]:
    """Every contributor's specialist (and the monolithic baseline); returns their training logs.

    A specialist another cooperative under `runs` already trained the same way is copied, not
    retrained (`copy_trained`): the sweep, the ablations and Phase 2 share many.
    """
    heldout = data.load_splits(coop.data_dir, coop.domains, "heldout")
    curve_sets = {d: c for d, c in heldout.items()}
    sharded = coop.scale.name if trains_sharded(coop.scale) else None
    logs = {}
    for domain in coop.domains:
        train = data.load_split(coop.data_dir, domain, "train")
        logs[domain] = train_specialist(
            base,
            base_fp,
            train,
            coop.train_config(domain),
            coop.folder(runs) / "specialists" / domain,
            contributor=domain,
            data=data_stats(coop.data_dir, domain, train),
            eval_sets=curve_sets if coop.all_curves else {domain: heldout[domain]},
            lora_spec=coop.lora,
            trained=runs,
            sharded=sharded,
        )
    if coop.monolithic:
        train = mixed_train_chunks(coop)
        cfg = coop.train_config()
        # Equal compute: as many steps as all specialists together, on the union of their data.
        cfg = TrainConfig(**{**cfg.to_dict(), "steps": cfg.steps * len(coop.domains)})
        stats = {
            "domains": list(coop.domains),
            "train_chunks": len(train),
            "train_tokens": int(train.numel()),
            "train_sha256": tensor_sha256(train),
        }  # counts alone would not see edited data
        logs["monolithic"] = train_specialist(
            base,
            base_fp,
            train,
            cfg,
            coop.folder(runs) / "monolithic",
            contributor="monolithic",
            data=stats,
            eval_sets=curve_sets,
            lora_spec=coop.lora,
            sharded=sharded,
        )
    return logs


def train_main_cooperatives(scale: Scale, runs: Path, seeds) -> dict[int, dict[str, dict]]:
    """Notebook 02's training, for several processes (`kalavai train-cooperative` under `accelerate launch`).

    Every process calls it: the data are prepared (the main process first), the offline base
    is pretrained by all together, then each seed's contributors and monolithic baseline are
    trained data-parallel, or sharded with KALAVAI_FSDP=1, into the very folders that notebook 02
    then finds done. When sharded, only the main process holds the base's weights.
    Returns the training logs by seed and contributor.
    """
    if trains_sharded(scale):  # before every process loads a base too large for it
        refuse_unsharded(scale.name)
    folder, _ = pipeline.prepare_corpus(scale, runs)
    base_fp = pipeline.prepare_base(scale, runs)["fingerprint"]
    base = pipeline.load_base(scale, runs, weights=process_state().is_main_process or not fsdp_requested())
    return {
        seed: train_contributors(main_cooperative(scale, runs, seed, folder), runs, base, base_fp) for seed in seeds
    }


def submission_folders(coop: Cooperative, runs: Path) -> list[Path]:
    return [coop.folder(runs) / "specialists" / d / "submission" for d in coop.domains]


def collect(coop: Cooperative, runs: Path, base) -> list:
    """The coordinator's view: every specialist accepted only through verification (all kept in memory)."""
    return collect_submissions(submission_folders(coop, runs), base, config_freeze(coop))


@dataclass
class Assembly:
    """What the coordinator builds from the submissions in one pass."""

    fused: FusedModel
    fingerprints: list[str]  # each specialist's, as verified and cast for inference
    weight_avg: torch.nn.Module | None = None


def assemble(coop: Cooperative, runs: Path, base, average: bool = False, **fused_options) -> Assembly:
    """Verify the submissions one at a time and fuse them as they come (and average them, if asked).

    Each specialist is loaded, verified, cast for inference, fingerprinted, moved into the
    fused model (its suffix; the prefix once) and dropped before the next is read: beside the
    fused model, at most one specialist is in memory (plus, if `average`, the weight average's
    float64 sums and its first specialist). `fused_options` are FusedModel.from_specialists'.
    """
    fingerprints, avg = [], WeightAverage() if average else None

    def specialists():
        for sub in iter_submissions(submission_folders(coop, runs), base, config_freeze(coop)):
            model = for_inference(sub.model, coop.scale.bf16)
            fingerprints.append(fingerprint(model))
            if avg is not None:
                avg.add(model)
            yield model
            del sub, model

    fused = FusedModel.from_specialists(specialists(), list(coop.domains), config_freeze(coop), **fused_options)
    return Assembly(fused, fingerprints, avg.result() if avg is not None else None)


# ---------------------------------------------------------------- coordinator


def fit_routers(
    fused: FusedModel, routers, train_chunks: torch.Tensor, coop: Cooperative, folder: Path
) -> dict[str, tuple[torch.nn.Module, list[float]]]:
    """Fit a freshly seeded router of each (kind, granularity[, recipe]) for `fused`'s experts.

    Returns {fused name: (router, loss per step)}. Each router is cached in its own folder
    (router.safetensors), keyed on the experts and the content of the training chunks. The
    routers not cached are trained together (`train_routers`): one pass of the frozen experts
    over the batches serves every router of the same text (a warm start's own batches cost
    their own pass of the experts), and each ends as if trained alone. A recipe's warm
    start reads the cooperative's per-domain train chunks, whose concatenation `train_chunks`
    must be; a recipe with text "own" trains on `coop.own_text_dir`'s train chunks instead.
    A recipe with `reinit` is checked for collapse on its training text once trained, and drawn
    again from its next init seed and retrained while a domain collapses (`settle_reinit`);
    its log lists every attempt.
    """
    s = coop.scale
    device = fused.embed_in.weight.device
    experts = [fingerprint(e) for e in fused.experts]
    texts = {"train": torch.as_tensor(train_chunks)}
    out, todo = {}, []
    for kind, granularity, *rest in routers:
        recipe = rest[0] if rest else PLAIN
        if recipe.text not in texts:
            texts[recipe.text] = torch.cat(list(router_text(coop, recipe.text).values()))
        name = fused_name(kind, granularity, recipe=recipe)
        sub = Path(folder) / name.replace(":", "-")
        config = {
            "kind": kind,
            "granularity": granularity,
            "steps": recipe.steps(s.router_steps),
            "batch": s.router_batch,
            "lr": s.router_lr,
            "wd": s.router_wd,
            "hidden": s.router_hidden,
            "seed": coop.seed,
            "experts": experts,
            "data": tensor_sha256(texts[recipe.text]),
        }
        if recipe != PLAIN:
            config["recipe"] = asdict(recipe)
        router = make_router(
            kind,
            fused.specialist_config.hidden_size,
            fused.config.n_experts,
            hidden=s.router_hidden,
            seed=recipe.init_seed(coop.seed),
        ).to(device)
        if step_is_done(sub, config) and (sub / "router.safetensors").exists():
            router.load_state_dict(load_file(sub / "router.safetensors"))
            out[name] = (router, read_json(sub / "router_log.json")["loss"])
        else:
            todo.append((name, sub, config, router, granularity, recipe))
    for text in sorted({recipe.text for *_, recipe in todo}):
        group = [t for t in todo if t[-1].text == text]
        warm_starts = any(t[-1].warm_steps(s.router_steps) for t in group)
        warm = list(router_text(coop, text).values()) if warm_starts else None
        if warm is not None and not torch.equal(torch.cat(warm), texts[text]):
            raise KalavaiError("a warm-started router needs train_chunks to be the cooperative's domains' train chunks")

        def train(pairs, recipes):
            return train_routers(
                fused,
                pairs,
                texts[text],
                [r.steps(s.router_steps) for r in recipes],
                s.router_batch,
                s.router_lr,
                s.router_wd,
                seed=coop.seed,
                warm_start=warm,
                warm_steps=[r.warm_steps(s.router_steps) for r in recipes],
                balance=[r.balance for r in recipes],
                schedule=[r.schedule for r in recipes],
            )

        clock = Clock()
        losses = train([(router, granularity) for *_, router, granularity, _ in group], [t[-1] for t in group])
        spent = clock.spent()  # the group's time, shared equally by the routers fitted side by side
        fit = {**spent, "seconds": spent["seconds"] / len(group), "side_by_side": len(group)}
        for (name, sub, config, router, granularity, recipe), loss in zip(group, losses):
            log = {"loss": loss, "config": config, "fit": fit}
            if recipe.reinit:
                router, log["loss"], log["attempts"] = settle_reinit(
                    fused, router, granularity, recipe, coop, lambda r: train([(r, granularity)], [recipe])[0], loss
                )
            start_step(sub)
            atomic_write_bytes(
                sub / "router.safetensors", save({k: v.contiguous() for k, v in router.state_dict().items()})
            )
            atomic_write_json(sub / "router_log.json", log)
            mark_step_done(sub, config)
            out[name] = (router, log["loss"])
    return out


# How many batches (of the scale's eval batch) of each domain's router text a re-initialised
# router's collapse is checked on: the text it was trained on, never the held-out chunks.
REINIT_CHECK_BATCHES = 10


def settle_reinit(fused, router, granularity: str, recipe: RouterRecipe, coop: Cooperative, train, loss):
    """The authors' fix for router collapse: while a domain collapses, a router from the next init seed, retrained.

    `router` is the first attempt, trained (its losses `loss`); `train(router)` trains another
    the same way and returns its losses. Collapse (routers.collapsed_domains) is judged on the
    first REINIT_CHECK_BATCHES batches of each domain's training text: the authors judged it on
    the held-out sets, which here are kept for the evaluation alone. At most `recipe.reinit`
    attempts; the last is kept even if it still collapses. Returns (router, losses, attempts).
    """
    s = coop.scale
    check = {d: c[: s.eval_batch * REINIT_CHECK_BATCHES] for d, c in router_text(coop, recipe.text).items()}
    attempts = []
    for attempt in range(1, recipe.reinit + 1):
        seed = recipe.init_seed(coop.seed, attempt)
        if attempt > 1:
            router = make_router(
                router.kind, fused.specialist_config.hidden_size, fused.config.n_experts, s.router_hidden, seed
            ).to(fused.embed_in.weight.device)
            loss = train(router)
        collapsed = collapsed_domains(mean_gates(fused, router, granularity, check, s.eval_batch), list(coop.domains))
        attempts.append({"init_seed": seed, "collapsed": collapsed})
        if not collapsed:
            break
    return router, loss, attempts


def router_text(coop: Cooperative, text: str) -> dict[str, torch.Tensor]:
    """The per-domain chunks a router recipe trains on: the contributors' train chunks, or ("own")
    the train chunks of the coordinator's own text in `coop.own_text_dir`."""
    if text == "train":
        return data.load_splits(coop.data_dir, coop.domains, "train")
    if coop.own_text_dir is None:
        raise KalavaiError("a router on the coordinator's own text needs the cooperative's own_text_dir")
    return data.load_splits(coop.own_text_dir, coop.domains, "train")


def evaluate_baselines(
    coop: Cooperative, runs: Path, base, base_fp: str, assembly: Assembly | None = None, specialists: bool = True
) -> dict:
    """Held-out losses of base, each specialist, weight averaging and monolithic (cached).

    `assembly`: the cooperative's, built with `average=True` (assembled here when not given).
    With `specialists` False the specialists' own losses may be left out, for a caller that
    runs the experts over the held-out batches anyway (evaluate_cooperative: the fused models'
    pass gives them at no cost); a cached result that has them serves either way.
    """
    folder = coop.folder(runs)
    s = coop.scale
    if assembly is None:
        assembly = assemble(coop, runs, base, average=True)
    mono = (
        collect_submissions([folder / "monolithic" / "submission"], base, config_freeze(coop))[0].model
        if coop.monolithic
        else None
    )
    heldout = data.load_splits(coop.data_dir, coop.domains, "heldout")  # before the cache check: it is keyed on them
    config = {
        "experts": assembly.fingerprints,
        "base": base_fp,
        "monolithic": fingerprint(mono) if mono is not None else None,
        "eval": [s.eval_batch, s.eval_max_batches],
        "domains": coop.domains,
        "heldout": state_dict_hashes(heldout),
    }  # counts alone would not see edited data
    for with_specialists in (True, False) if not specialists else (True,):
        cached = {**config, "specialists": with_specialists}
        if step_is_done(folder / "baselines", cached) and (folder / "baselines" / "losses.json").exists():
            return read_json(folder / "baselines" / "losses.json")
    clock = Clock()

    losses = {"base": base_losses(base, base_fp, heldout, s, runs)}
    if specialists:  # in one pass that runs their shared frozen prefix once per batch
        losses.update(evaluate_pass(assembly.fused, heldout, s, [], experts=True)[0])
    # the average of specialists whose frozen prefix is the base's has that very prefix (float64
    # sums: exact), so it is read back where the fused pass computed it (the store is keyed on it)
    losses["weight_avg"] = evaluate_domains(
        assembly.weight_avg,
        heldout,
        s.eval_batch,
        s.eval_max_batches,
        states=prefix.for_model(assembly.weight_avg, config_freeze(coop)),
    )
    if mono is not None:  # its frozen prefix is the base's, read back where the fused pass computed it
        mono = for_inference(mono, s.bf16)
        losses["monolithic"] = evaluate_domains(
            mono, heldout, s.eval_batch, s.eval_max_batches, states=prefix.for_model(mono, config_freeze(coop))
        )
    start_step(folder / "baselines")
    atomic_write_json(folder / "baselines" / "losses.json", losses)
    mark_step_done(folder / "baselines", {**config, "specialists": specialists}, evaluation=clock.spent())
    return losses


def base_losses(base, base_fp: str, heldout: dict, s: Scale, runs: Path) -> dict[str, float]:
    """The base's loss on each held-out set (evaluation.evaluate_domains), cached by content.

    Keyed on the base, the set's chunks and the protocol, in runs/<scale>/heldout_losses/:
    every cooperative whose domain has the same held-out chunks shares the base's loss on it.
    """
    out, model = {}, None
    for domain, chunks in heldout.items():
        config = {
            "base": base_fp,
            "chunks": tensor_sha256(chunks),
            "eval": [s.eval_batch, s.eval_max_batches],
            "bf16": s.bf16,
        }
        path = Path(runs) / "heldout_losses" / f"base-{config_hash(config)}.json"
        saved = read_json(path) if path.exists() else {}
        if saved.get("config") == config:
            out[domain] = saved["loss"]
            continue
        model = model or for_inference(copy.deepcopy(base), s.bf16)
        out[domain] = evaluate_domains(model, {domain: chunks}, s.eval_batch, s.eval_max_batches)[domain]
        atomic_write_json(path, {"loss": out[domain], "config": config})
    return out


def fusion_assembly(coop: Cooperative, runs: Path, base) -> Assembly:
    """The cooperative's fused model (its first router's shape) and weight average, built once."""
    s = coop.scale
    return assemble(
        coop,
        runs,
        base,
        average=True,
        router_kind=coop.routers[0][0],
        granularity=coop.routers[0][1],
        router_hidden=s.router_hidden,
        seed=coop.seed,
    )


def mixed_train_chunks(coop: Cooperative) -> torch.Tensor:
    """Every contributor's train chunks, in domain order: what the routers (and the monolithic) train on."""
    return torch.cat([data.load_split(coop.data_dir, d, "train") for d in coop.domains])


def evaluate_cooperative(coop: Cooperative, runs: Path, base, base_fp: str, extra: dict | None = None) -> dict:
    """Collect, fuse, fit routers and evaluate every model; writes and returns the results."""
    folder = coop.folder(runs)
    out_path = folder / "results.json"
    s = coop.scale
    assembly = fusion_assembly(coop, runs, base)
    losses = dict(evaluate_baselines(coop, runs, base, base_fp, assembly, specialists=False))
    heldout = data.load_splits(coop.data_dir, coop.domains, "heldout")
    config = {
        "coop": {
            "domains": coop.domains,
            "overrides": coop.train_overrides,
            "routers": coop.routers,
            "monolithic": coop.monolithic,
            "seed": coop.seed,
            **coop.variant_config(),
        },
        "experts": assembly.fingerprints,
        "base": base_fp,
        "router": [s.router_steps, s.router_batch, s.router_lr, s.router_wd, s.router_hidden],
        "eval": [s.eval_batch, s.eval_max_batches],
        "heldout": state_dict_hashes(heldout),
    }
    if any(recipe.text == "own" for *_, recipe in coop.recipes):  # by content, as every other router text
        config["own_text"] = state_dict_hashes(router_text(coop, "own"))
    if step_is_done(folder / "fusion", config) and out_path.exists():
        return load_results(out_path)

    mixed_train = mixed_train_chunks(coop)
    fused = assembly.fused
    routers = fit_routers(fused, coop.all_routers(), mixed_train, coop, folder / "routers")
    router_logs = {name: loss for name, (_, loss) in routers.items()}
    clock = Clock()  # the evaluation's own time (the routers' is in their logs)
    names = {d: f"spec:{d}" for d in coop.domains}
    scored = all(name in losses for name in names.values())  # by notebook 02's baselines
    fused_losses, gates = evaluate_fused(fused, routers, coop, heldout, experts=not scored)
    losses.update(fused_losses)
    if coop.joint is not None:  # last: it trains the fused model's experts in place
        joint_losses, joint_gates, router_logs[joint_name(coop)] = evaluate_joint(
            fused, routers, coop, mixed_train, heldout, folder / "joint"
        )
        losses.update(joint_losses)
        gates.update(joint_gates)
    losses = {"base": losses["base"], **specialists_first(losses)}  # the baselines' order, whichever pass scored them
    results = make_results(
        experiment=coop.experiment,
        condition=coop.condition,
        scale=s.name,
        seed=coop.seed,
        config={"scale": s.to_dict(), **config},
        base_fingerprint=base_fp,
        domains=coop.domains,
        losses=losses,
        specialists=names,
        gates=gates,
        extra={
            "router_loss": {k: v[-50:] for k, v in router_logs.items()},
            "specialist_fingerprints": dict(zip(coop.domains, config["experts"])),
            **(extra or {}),
        },
    )
    write_results(out_path, results)
    mark_step_done(folder / "fusion", config, evaluation=clock.spent())
    return results


def joint_name(coop: Cooperative) -> str:
    """The results name of the jointly fine-tuned fused model: the first router's name, "+joint"."""
    return fused_name(*coop.routers[0], recipe=coop.joint)


def evaluate_joint(
    fused: FusedModel, routers: dict, coop: Cooperative, train_chunks: torch.Tensor, heldout: dict, folder: Path
) -> tuple[dict, dict, list[float]]:
    """The joint fine-tune (`coop.joint`, protocol/joint.py) from router-only fusion with the cooperative's
    first router, evaluated by the one protocol; cached. Returns ({name: {domain: loss}}, {name: {domain:
    mean gates}}, the fine-tune's loss per optimizer step).

    It trains `fused`'s expert suffixes in place: call it once everything else is evaluated.
    Keyed on the experts, the fitted router's weights, the train chunks and the recipe at this scale.
    """
    s = coop.scale
    kind, granularity = coop.routers[0]
    name = joint_name(coop)
    router = routers[fused_name(kind, granularity)][0]
    config = {
        "experts": [fingerprint(e) for e in fused.experts],
        "router": state_dict_hashes(router.state_dict()),
        "data": tensor_sha256(train_chunks),
        "joint": {**asdict(coop.joint), **coop.joint.settings(s)},
        "seed": coop.seed,
        "eval": [s.eval_batch, s.eval_max_batches],
        "heldout": state_dict_hashes(heldout),
    }
    if step_is_done(folder, config) and (folder / "joint.json").exists():
        saved = read_json(folder / "joint.json")
        return saved["losses"], saved["gates"], saved["loss"]
    router = copy.deepcopy(router)  # the router-only one stays as fitted
    clock = Clock()
    loss = joint_finetune(fused, router, granularity, train_chunks, s, coop.seed, coop.joint)
    fit = clock.spent()
    losses, gates = evaluate_pass(fused, heldout, s, [(name, "soft", router, granularity)])
    start_step(folder)
    atomic_write_json(folder / "joint.json", {"losses": losses, "gates": gates, "loss": loss, "fit": fit})
    mark_step_done(folder, config)
    return losses, gates, loss


def specialists_first(losses: dict) -> dict:
    """`losses` with the specialists' ("spec:...") entries first: the results files' order of models."""
    return {**{k: v for k, v in losses.items() if k.startswith("spec:")}, **losses}


def evaluate_fused(fused, routers: dict, coop: Cooperative, heldout: dict, experts: bool = False) -> tuple[dict, dict]:
    """Held-out losses of `fused` with uniform gates and each fitted router (soft and hard), and its gates.

    `routers` is fit_routers' {fused name: (router, losses)}; with `experts`, each specialist's
    loss too (evaluate_pass). Returns ({model name: {domain: loss}}, {fused name: {domain:
    mean gate vector}}).
    """
    variants = [("uniform", "uniform", None, None)]
    for kind, granularity, recipe in coop.all_routers():
        router = routers[fused_name(kind, granularity, recipe=recipe)][0]
        variants += [
            (fused_name(kind, granularity, mode, recipe), mode, router, granularity) for mode in ("soft", "hard")
        ]
    return evaluate_pass(fused, heldout, coop.scale, variants, experts=experts)


def evaluate_pass(fused, heldout: dict, s: Scale, variants, experts: bool = False) -> tuple[dict, dict]:
    """Every variant of `fused` (and with `experts`, every specialist) from one pass over the held-out batches.

    `variants` are (model name, mode, router, granularity). The experts are frozen and the
    router only gates their logits, so per batch the experts' blocks and output heads run
    once and every variant pays only for its gates, the mixture and the loss. With `experts`,
    "spec:<name>" is each expert's own loss: the specialist itself, its frozen prefix shared
    (fused with one-hot gates equals the specialist; tests/test_fusion.py).
    Returns ({model name: {domain: loss}}, {soft variant: {domain: mean gate vector}}); a
    domain's mean gate is the mean of its batch means.
    """
    fused.eval()
    for _, _, router, _ in variants:
        if router is not None:
            router.eval()
    device = fused.embed_in.weight.device
    states = prefix.for_fused(fused)  # the shared prefix's output, read back for chunks already seen
    losses, gates = {}, {}
    for domain, chunks in heldout.items():
        batch_gates = []
        if states is not None:  # the prefix's output for every batch of this domain, ahead, in large batches
            states.prefill(torch.cat(heldout_batches(chunks, s.eval_batch, s.eval_max_batches)))

        def batch_losses(batch):
            batch = batch.to(device)
            hidden = fused.expert_hidden(batch, states=states)
            logits = fused.unembed(hidden)
            # each expert's loss at every position, once: a hard gate picks one expert per
            # position, so a hard variant's loss is the picked experts' losses, no mixture needed
            per_token = token_losses(logits, batch) if experts or any(v[1] == "hard" for v in variants) else None
            out, means = {}, {}
            for name, mode, router, granularity in variants:
                if mode == "hard":
                    gates = fused.gates_from(pool_router_input(hidden.mean(dim=0), granularity), "hard", router)
                    out[name] = per_token.gather(0, gates[:, :-1].argmax(dim=-1).unsqueeze(0)).mean()
                    continue
                o = fused.fuse(hidden, logits, labels=batch, mode=mode, router=router, granularity=granularity)
                out[name] = o.loss
                if mode == "soft":
                    means[name] = o.gates.float().mean(dim=(0, 1))
            batch_gates.append(means)
            if experts:
                out.update({f"spec:{n}": t.mean() for n, t in zip(fused.config.expert_names, per_token)})
            return out

        for name, loss in domain_losses(batch_losses, chunks, s.eval_batch, s.eval_max_batches).items():
            losses.setdefault(name, {})[domain] = loss
        for name in batch_gates[0]:
            gates.setdefault(name, {})[domain] = torch.stack([g[name] for g in batch_gates]).mean(dim=0).tolist()
    return losses, gates


def frozen_depth(scale: Scale, train_overrides: dict) -> int:
    """The frozen depth K of specialists trained with these overrides at this scale."""
    return train_overrides.get("freeze_layers", scale.freeze_layers)


def config_freeze(coop: Cooperative) -> int:
    return frozen_depth(coop.scale, coop.train_overrides)


def run_cooperative(coop: Cooperative, runs: Path, base, base_fp: str) -> dict:
    """All four steps for one cooperative; returns its results (cached steps are reused)."""
    logs = train_contributors(coop, runs, base, base_fp)
    curves = {d: log["curve"] for d, log in logs.items()}
    # the specialists' learning-rate schedule: the clock for early gain prediction (notebook 04)
    lr_schedule = logs[coop.domains[0]]["lr"]
    return evaluate_cooperative(coop, runs, base, base_fp, extra={"curves": curves, "lr_schedule": lr_schedule})


# ---------------------------------------------------------------- several at a time

_BASES: dict[tuple[str, str], pipeline.Bases] = {}  # in a worker process: each base revision loaded once


def worker_base(scale: Scale, runs: Path, revision: str | None = None) -> tuple:
    """(base, fingerprint) in a worker process, each revision loaded once: the shared base, or with
    `revision` another saved revision of it (notebook 05's maturity ladder)."""
    return _BASES.setdefault((scale.name, str(runs)), pipeline.Bases(scale, runs)).get(revision)


def run_cooperative_job(coop: Cooperative, runs: Path, revision: str | None = None) -> None:
    """`run_cooperative` in a worker process (workers.run_in_workers), which loads the base itself."""
    run_cooperative(coop, runs, *worker_base(coop.scale, runs, revision))


def finished(coop: Cooperative, runs: Path) -> bool:
    return (coop.folder(runs) / "results.json").exists()


def cooperative_jobs(coops, runs: Path, job=None) -> list[tuple]:
    """workers.run_in_workers's jobs for the (cooperative, base revision or None) pairs not finished yet:
    `job(coop, runs, revision)` each (default run_cooperative_job).

    The longest first (by a rough count of the blocks trained and routed), so that no long
    one is left running alone at the end. A cooperative that needs a specialist an earlier
    one in the list trains goes after all the others, so that by the time it starts the
    specialist is likely finished and copied, not trained twice (trained twice, it comes
    out the same).
    """

    def cost(coop: Cooperative) -> float:
        recipes = [coop.train_config(d) for d in coop.domains]
        trained_blocks = sum(c.steps * max(1, coop.scale.n_layers - c.freeze_layers + 1) for c in recipes)
        return trained_blocks + len(coop.domains) * coop.scale.router_steps

    first, later, trained, folders = [], [], set(), set()
    for coop, revision in coops:
        if finished(coop, runs) or coop.folder(runs) in folders:  # one process per folder
            continue
        folders.add(coop.folder(runs))
        keys = {(str(coop.data_dir), d, revision, repr(coop.train_config(d)), repr(coop.lora)) for d in coop.domains}
        (later if keys & trained else first).append((coop, revision))
        trained |= keys
    return [
        (job or run_cooperative_job, (coop, runs, revision))
        for group in (first, later)
        for coop, revision in sorted(group, key=lambda c: -cost(c[0]))
    ]


def main_cooperative(scale: Scale, runs: Path, seed: int, data_dir: Path, ablation: bool = False) -> Cooperative:
    """The paper's main experiment: one contributor per main domain, every baseline.

    With `ablation`, all four router kinds x granularities are fitted (the router ablation
    table); otherwise the authors' router and the causal one.
    """
    return Cooperative(
        scale=scale,
        experiment="main",
        condition="main",
        seed=seed,
        domains=tuple(scale.domains),
        data_dir=Path(data_dir),
        routers=ABLATION_ROUTERS if ablation else None,
        all_curves=True,
    )
