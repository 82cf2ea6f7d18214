"""The run's folders, and the steps of notebooks 00 (data) and 01 (shared base).

Layout of one scale's run (everything under `runs/<scale>/`, figures under `figures/<scale>/`):

    data/tokenizer/           offline: the BPE tokenizer trained here
    data/pretrain/            offline: the base's pretraining mixture (its own document stream)
    data/corpus-<key>/        contributors' domains: chunk files + manifest.json
    base/stepN/               offline: pretraining revisions, like Pythia's `stepN`
    base/checkpoint/          offline, while pretraining: the resumable training state
    base/base.json            which checkpoint is the shared base, and its fingerprint
    <experiment>/...          later notebooks' specialists, routers and results

Each step records its configuration; a rerun skips finished steps whose configuration
still matches and redoes the others (see storage.step_is_done). A step that trains keeps
its `checkpoint/` folder across a rerun (`restart_step`), so a killed training resumes
from its last saved state (training.train_causal_lm) instead of starting over; the folder
is deleted once the step is marked done.

Under `accelerate launch` (the command `train-cooperative`) every process runs these steps:
the data are prepared by the main process first and then found ready by the others
(`main_first`), the base is read and checked by the main process (`on_main`), the offline base
is pretrained by all processes together, and only the main process writes what they train.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import os
import random
import shutil
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env

from ..errors import KalavaiError
from ..families import DEFAULT_FAMILY, family_of
from ..runtime.perf import Clock, measure_matmul_peak
from ..scales import Scale
from ..settings import settings
from ..storage import atomic_write_json, mark_step_done, read_json, sha256_file, start_step, step_is_done
from . import data
from . import tokenizer as tok
from .evaluation import evaluate_domains
from .models import (
    build_causal_lm,
    fingerprint,
    for_inference,
    inference_precision,
    load_causal_lm,
    offline_config,
)
from .training import TrainConfig, train_causal_lm

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_DIR = "checkpoint"  # a training step's resumable state, inside its step folder


def process_state() -> PartialState:
    """This process's place in an `accelerate launch` (one process otherwise).

    Reads the launcher's CPU flag as training.make_accelerator does: a CPU launch would
    otherwise look like one process.
    """
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def main_first(step):
    """A step that prepares files: under `accelerate launch` the main process runs it first, then
    the others, who find it done (its cache check) instead of writing the same files at once."""

    @functools.wraps(step)
    def run(*args, **kwargs):
        with process_state().main_process_first():
            return step(*args, **kwargs)

    return run


def on_main(fn, *args):
    """`fn(*args)` run by the main process only, its result sent to every process (picklable).

    If the main process fails, the launcher ends the others (they would wait here otherwise).
    """
    state = process_state()
    if state.num_processes == 1:
        return fn(*args)
    box = [fn(*args) if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def end_processes(wait: bool = True) -> None:
    """Close the process group that `accelerate launch` opened, if any, before the interpreter exits.

    Left open, gloo's worker threads outlive the interpreter and a process can end in
    "terminate called without an active exception" (SIGABRT) after its work is done; NCCL warns.
    With `wait`, every process first waits for the others, so none closes while another still
    works; a process that is failing passes wait=False, since the others may never arrive.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if wait:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def restart_step(folder: str | os.PathLike, keep=(CHECKPOINT_DIR,)) -> Path:
    """storage.start_step for a training step: clear the folder but the entries named in `keep`.

    The kept training state belongs to the training only if its identity (start weights,
    data, config) matches, which train_causal_lm checks; anything else is started over.
    Clears on the main process only, then waits for the others.
    """
    folder = Path(folder)
    state = process_state()
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    state.wait_for_everyone()
    return folder


def drop_checkpoint(folder: str | os.PathLike) -> None:
    """Delete a finished step's saved training state (main process only)."""
    if process_state().is_main_process:
        shutil.rmtree(Path(folder) / CHECKPOINT_DIR, ignore_errors=True)


_PLANNING = contextvars.ContextVar("kalavai_planning", default=False)


@contextlib.contextmanager
def planning():
    """Within it, the data steps only name their folders: `prepare_corpus` (and Phase 2's data
    folder) return where the chunks would be without reading or writing anything, so that the
    experiments' own functions can list a run's cooperatives without running it
    (experiments/budget.py counts their work that way)."""
    token = _PLANNING.set(True)
    try:
        yield
    finally:
        _PLANNING.reset(token)


def planning_only() -> bool:
    return _PLANNING.get()


def run_dir(scale: Scale, root: str | os.PathLike | None = None) -> Path:
    return Path(root or settings().runs) / scale.name


def figures_dir(scale: Scale, root: str | os.PathLike | None = None) -> Path:
    """figures/<scale>/, where a run's figures are kept for readers; a code-path test's (KALAVAI_SIZES=ci)
    stay in its run folder, as they are no result."""
    if root is None and settings().sizes == "ci":
        folder = run_dir(scale) / "figures"
    else:
        folder = Path(root or ROOT / "figures") / scale.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def corpus_key(scale: Scale, overlap: float | None = None) -> str:
    if scale.is_hub:
        return "corpus-hub"
    return f"corpus-overlap{scale.corpus_overlap if overlap is None else overlap:.2f}"


def all_offline_domains(scale: Scale) -> list[str]:
    return list(dict.fromkeys([*scale.domains, *scale.extra_domains, *scale.languages]))


# ---------------------------------------------------------------- tokenizer


def tokenizer_language_weight(scale: Scale) -> float:
    return (
        scale.pretrain_language_weight if scale.tokenizer_language_weight is None else scale.tokenizer_language_weight
    )


def pretrain_documents(scale: Scale, language_weight: float | None = None) -> list[str]:
    """The base's general mixture: every English-like domain, the languages rare (`language_weight`
    of all documents, default the scale's `pretrain_language_weight`), shuffled."""
    weight = scale.pretrain_language_weight if language_weight is None else language_weight
    english = [d for d in all_offline_domains(scale) if d not in scale.languages]
    n = scale.pretrain_docs_per_domain
    docs = []
    for d in english:
        share = scale.pretrain_code_share if d == "code" else 1.0
        docs += data.domain_documents(scale, d, stream="pretrain", n_docs=round(n * share))[0]
    # languages get `weight` of all documents, shared among them
    n_lang = max(
        1,
        round(len(docs) * weight / (1 - weight) / len(scale.languages)),
    )
    for d in scale.languages:
        docs += data.domain_documents(scale, d, stream="pretrain", n_docs=n_lang)[0]
    random.Random(data.DATA_SEED).shuffle(docs)
    return docs


@main_first
def prepare_tokenizer(scale: Scale, runs: Path):
    """Offline: train a byte-level BPE on the pretraining mixture; hub: Pythia's tokenizer."""
    if scale.is_hub:
        return tok.load_hub_tokenizer(scale.hub_model, scale.hub_revision)
    folder = runs / "data" / "tokenizer"
    config = {
        "vocab_size": scale.vocab_size,
        "docs": scale.pretrain_docs_per_domain,
        "language_weight": tokenizer_language_weight(scale),
        "generator": data.corpora.corpus_version(),
        "code_share": scale.pretrain_code_share,
    }
    if not step_is_done(folder, config):
        start_step(folder)
        docs = pretrain_documents(scale, tokenizer_language_weight(scale))
        tok.train_tokenizer(docs, scale.vocab_size).save_pretrained(folder)
        mark_step_done(folder, config)
    return tok.load_tokenizer(folder)


def tokenizer_hash(scale: Scale, runs: Path) -> str:
    if scale.is_hub:
        return f"{scale.hub_model}@{scale.hub_revision}"
    return sha256_file(runs / "data" / "tokenizer" / "tokenizer.json")


# ---------------------------------------------------------------- corpora


def prepare_corpus(scale: Scale, runs: Path, domains=None, overlap: float | None = None) -> tuple[Path, dict]:
    """Chunk files + manifest for contributors' domains; returns (data folder, manifest).
    Within `planning()`: the folder and an empty manifest, nothing prepared."""
    if planning_only():
        return runs / "data" / corpus_key(scale, overlap), {}
    return _prepare_corpus(scale, runs, domains, overlap)


@main_first
def _prepare_corpus(scale: Scale, runs: Path, domains, overlap: float | None) -> tuple[Path, dict]:
    tokenizer = prepare_tokenizer(scale, runs)
    domains = list(domains or (all_offline_domains(scale) if not scale.is_hub else scale.domains))
    out = runs / "data" / corpus_key(scale, overlap)
    t_hash = tokenizer_hash(scale, runs)
    records = {
        d: data.prepare_domain(scale, d, tokenizer, out, overlap=overlap, tokenizer_hash=t_hash) for d in domains
    }
    manifest = data.write_manifest(out, records, {"scale": scale.name, "tokenizer": t_hash, "seq_len": scale.seq_len})
    return out, manifest


def mixture_config(scale: Scale) -> dict:
    """What makes the base's pretraining mixture (pretrain_documents): a key of every cache built on it."""
    return {
        "docs": scale.pretrain_docs_per_domain,
        "language_weight": scale.pretrain_language_weight,
        "generator": data.corpora.corpus_version(),
        "code_share": scale.pretrain_code_share,
    }


@main_first
def prepare_pretrain_corpus(scale: Scale, runs: Path) -> Path:
    """The pretraining mixture as one 'domain' (train / held-out split as any other)."""
    tokenizer = prepare_tokenizer(scale, runs)
    out = runs / "data" / "pretrain"
    folder = out / "mixture"
    t_hash = tokenizer_hash(scale, runs)
    config = {"scale": scale.name, "tokenizer": t_hash, "seq_len": scale.seq_len, **mixture_config(scale)}
    if data.cached_record(folder, config) is not None:
        return out
    start_step(folder)
    splits = data.split_by_index(data.pack(pretrain_documents(scale), tokenizer, scale.seq_len), (0.95, 0.0, 0.05))
    record = data.save_splits(folder, splits, scale.seq_len, {"domain": "mixture", "source": "pretrain stream"})
    data.write_manifest(out, {"mixture": record}, {"scale": scale.name, "tokenizer": t_hash})
    mark_step_done(folder, config)
    return out


# ---------------------------------------------------------------- the shared base


def revision_dir(runs: Path, revision: str) -> Path:
    return runs / "base" / revision


def pretrain_save_every(scale: Scale) -> int:
    """How often the base's pretraining state is saved: eight times a run."""
    return max(1, scale.pretrain_steps // 8)


def pretrain_base(scale: Scale, runs: Path, seed: int = 0) -> dict:
    """Pretrain the offline base from scratch, saving revisions `stepN` as Pythia does."""
    tokenizer = prepare_tokenizer(scale, runs)
    mixture = prepare_pretrain_corpus(scale, runs)
    train = data.load_split(mixture, "mixture", "train")
    heldout = {"mixture": data.load_split(mixture, "mixture", "heldout")}
    cfg = TrainConfig.pretrain(scale, seed)
    torch.manual_seed(seed)
    model = build_causal_lm(offline_config(scale, vocab_size=len(tokenizer)))

    def save_revision(step: int, m) -> None:
        if step == 1:
            # a fresh start (a resumed training never calls back at step 1): revisions left by
            # another training must not be taken for this one's
            for old in (runs / "base").glob("step*"):
                shutil.rmtree(old, ignore_errors=True)
        if step in scale.pretrain_revisions:
            folder = revision_dir(runs, f"step{step}")
            m.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)

    # Resumable: a killed pretraining resumes from base/checkpoint; the revisions it saved
    # before the kill stay (prepare_base keeps them) and later ones are saved as it passes them.
    checkpoint = runs / "base" / CHECKPOINT_DIR
    log = train_causal_lm(
        copy.deepcopy(model),
        train,
        cfg,
        heldout,
        desc="pretrain base",
        on_step=save_revision,
        checkpoint_dir=checkpoint,
        save_every=pretrain_save_every(scale),
    )
    missing = [s for s in scale.pretrain_revisions if s <= cfg.steps and not revision_dir(runs, f"step{s}").exists()]
    if missing and log.get("resumed_at"):
        # revisions asked for now that the killed training passed before they were asked for
        drop_checkpoint(runs / "base")
        process_state().wait_for_everyone()
        log = train_causal_lm(
            model,
            train,
            cfg,
            heldout,
            desc="pretrain base",
            on_step=save_revision,
            checkpoint_dir=checkpoint,
            save_every=pretrain_save_every(scale),
        )
    log["matmul_peak_flops"] = measure_matmul_peak()
    log["fraction_of_peak"] = log["tokens_per_s"] * log["flops_per_token"] / log["matmul_peak_flops"]
    return log


def prepare_base(scale: Scale, runs: Path) -> dict:
    """Make (offline) or locate (hub) the shared base; returns base.json's record."""
    info_path = runs / "base" / "base.json"
    if scale.is_hub:
        config = {"model": scale.hub_model, "revision": scale.hub_revision}
    else:
        config = {
            "arch": [scale.d_model, scale.n_layers, scale.n_heads, scale.vocab_size, scale.seq_len],
            "steps": scale.pretrain_steps,
            "batch": scale.pretrain_batch,
            "lr": scale.pretrain_lr,
            "revisions": list(scale.pretrain_revisions),
            "base": scale.base_revision,
            "tokenizer": tokenizer_hash(scale, runs)
            if (runs / "data" / "tokenizer" / "tokenizer.json").exists()
            else None,
            "mixture": mixture_config(scale),
        }
        if scale.family != DEFAULT_FAMILY:  # named only when not GPT-NeoX, so bases built before stay valid
            config["family"] = scale.family
    if step_is_done(runs / "base", config) and info_path.exists():
        info = _absolute(read_json(info_path), runs, scale)
        if scale.is_hub or on_main(lambda: fingerprint(load_causal_lm(info["path"])) == info["fingerprint"]):
            drop_checkpoint(runs / "base")  # left behind only by a kill between marking done and deleting it
            return info
    if scale.is_hub:  # read and hashed once, not once per process (6.9B: 28 GB in fp32)
        info = on_main(
            lambda: {
                "path": scale.hub_model,
                "revision": scale.hub_revision,
                "fingerprint": fingerprint(load_causal_lm(scale.hub_model, scale.hub_revision)),
            }
        )
    else:
        prepare_tokenizer(scale, runs)
        config["tokenizer"] = tokenizer_hash(scale, runs)
        # keep a killed pretraining's state and the revisions it saved (a fresh start rewrites them all)
        restart_step(runs / "base", keep=(CHECKPOINT_DIR, *(f"step{s}" for s in scale.pretrain_revisions)))
        log = pretrain_base(scale, runs)
        if process_state().is_main_process:
            atomic_write_json(runs / "base" / "pretrain_log.json", log)
        path = revision_dir(runs, scale.base_revision)
        if not path.exists():
            raise KalavaiError(f"base revision {scale.base_revision} was not saved; check pretrain_revisions")
        # stored relative to the run folder, so runs/ can be moved or copied whole
        info = {
            "path": str(path.relative_to(runs)),
            "revision": scale.base_revision,
            "fingerprint": fingerprint(load_causal_lm(path)),
            "revisions": [f"step{s}" for s in scale.pretrain_revisions],
        }
    if process_state().is_main_process:
        atomic_write_json(info_path, info)
        mark_step_done(runs / "base", config)
    drop_checkpoint(runs / "base")
    process_state().wait_for_everyone()
    return _absolute(info, runs, scale)


def _absolute(info: dict, runs: Path, scale: Scale) -> dict:
    return info if scale.is_hub else {**info, "path": str(runs / info["path"])}


def load_base(scale: Scale, runs: Path, revision: str | None = None, weights: bool = True):
    """The shared base (or another saved revision of it), checked against its fingerprint.

    `weights=False`: on the meta device, for the processes of a sharded training (sharding.py).
    """
    info = prepare_base(scale, runs)
    if scale.is_hub:
        return check_family(load_causal_lm(scale.hub_model, revision or scale.hub_revision, weights=weights), scale)
    path = revision_dir(runs, revision) if revision else Path(info["path"])
    model = check_family(load_causal_lm(path, weights=weights), scale)
    if weights and revision is None and fingerprint(model) != info["fingerprint"]:
        raise KalavaiError(
            f"base checkpoint {path} does not match its recorded fingerprint; delete runs/{scale.name}/base and rerun notebook 01"
        )
    return model


def check_family(model, scale: Scale):
    """`model`, if it is of the family its scale names (families.py); else a one-line refusal."""
    got = family_of(model).model_type
    if got != scale.family:
        where = scale.hub_model if scale.is_hub else "its offline base"
        raise KalavaiError(f"scale {scale.name} names the {scale.family} family, but {where} is {got}")
    return model


def shared_revision(scale: Scale) -> str:
    """The revision every contributor starts from: the Hub checkpoint's, or the offline base's."""
    return scale.hub_revision if scale.is_hub else scale.base_revision


class Bases:
    """The shared base and other saved revisions of it, each loaded once: get(revision) -> (model, fingerprint).

    None or the shared revision is the shared base, checked against its recorded fingerprint.
    """

    def __init__(self, scale: Scale, runs: Path):
        self.scale, self.runs, self._cache = scale, runs, {}

    def get(self, revision: str | None):
        if revision is None:
            revision = shared_revision(self.scale)
        if revision not in self._cache:
            if revision == shared_revision(self.scale):
                model = load_base(self.scale, self.runs)
                fp = prepare_base(self.scale, self.runs)["fingerprint"]
            else:
                model = load_base(self.scale, self.runs, revision=revision)
                fp = fingerprint(model)
            self._cache[revision] = (model, fp)
        return self._cache[revision]


def base_domain_losses(scale: Scale, runs: Path, model, domains=None) -> dict[str, float]:
    """The base's held-out loss on each domain, by the one evaluation protocol."""
    folder, manifest = prepare_corpus(scale, runs)
    domains = list(domains or manifest["domains"])
    return evaluate_domains(
        model, data.load_splits(folder, domains, "heldout"), scale.eval_batch, scale.eval_max_batches
    )


def domain_samples(scale: Scale, runs: Path, folder: Path, domains, n_chars: int = 400) -> dict[str, str]:
    """The start of each domain's first train chunk, decoded: what the models actually see."""
    tokenizer = prepare_tokenizer(scale, runs)
    return {d: tokenizer.decode(data.load_split(folder, d, "train")[0])[:n_chars] for d in domains}


def base_report(scale: Scale, runs: Path) -> dict:
    """Notebook 01's numbers, computed once and kept in base/base_eval.json."""
    info = prepare_base(scale, runs)
    path = runs / "base" / "base_eval.json"
    config = {
        "fingerprint": info["fingerprint"],
        "eval": [scale.eval_batch, scale.eval_max_batches],
        "per_char": True,
        "precision": inference_precision(scale.bf16),  # as every other number of the report
    }
    if step_is_done(runs / "base" / "eval", config) and path.exists():
        return read_json(path)
    clock = Clock()
    losses = base_domain_losses(scale, runs, for_inference(load_base(scale, runs), scale.bf16))
    chars = chars_per_token(scale, runs, losses)
    report = {
        "fingerprint": info["fingerprint"],
        "revision": info["revision"],
        "losses": losses,
        "chars_per_token": chars,
        "loss_per_char": {d: losses[d] / chars[d] for d in losses},
        "languages": [d for d in scale.languages if d in losses],
    }
    atomic_write_json(path, report)
    mark_step_done(runs / "base" / "eval", config, evaluation=clock.spent())
    return report


def chars_per_token(scale: Scale, runs: Path, domains) -> dict[str, float]:
    """Characters per token on each domain's evaluated held-out chunks.

    Per-token losses are not comparable across domains that the tokenizer splits
    differently (a rare language falls apart into short pieces, each easy to guess);
    loss per character is.
    """
    tokenizer = prepare_tokenizer(scale, runs)
    folder, _ = prepare_corpus(scale, runs)
    out = {}
    for d in domains:
        chunks = data.load_split(folder, d, "heldout")[: scale.eval_batch * scale.eval_max_batches]
        text = "".join(tokenizer.decode(c) for c in chunks)
        out[d] = len(text) / chunks.numel()
    return out
