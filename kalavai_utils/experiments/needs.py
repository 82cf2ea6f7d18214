"""What a run at a Hub scale reads from the Hub, notebook by notebook, and the two commands on it.

`fetch` prepares all of it while the Hub is reachable: every model revision into the Hub cache,
the base's fingerprint, every domain's chunks and every multiple-choice task's items into the run
folder (by the very functions the notebooks call, so they are the ones the notebooks look for). A
later run with HF_HUB_OFFLINE=1, on this machine or on one given a copy of the Hub cache and
`runs/<scale>/data`, asks the Hub nothing.

`preflight` checks the same list before any training and says in one line each what is missing
and why: a model revision without safetensors, a dataset the Hub cannot serve, a domain or task
not prepared for an offline run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import KalavaiError, first_line
from ..protocol import choice, data, hub, pipeline
from ..scales import Scale
from . import ablations, phase2, sweep

MAIN_FOLDER, PHASE2_FOLDER = "corpus", "phase2"


@dataclass(frozen=True)
class Needs:
    models: tuple[tuple[str, str], ...]  # (model id, revision), the shared base first
    domains: dict[str, tuple[str, ...]]  # data folder kind (MAIN_FOLDER, PHASE2_FOLDER) -> domains
    tasks: tuple[str, ...] = ()  # multiple-choice tasks (data_manifests/tasks/<name>.json), N_ITEMS items each


def hub_needs(scale: Scale, notebooks) -> Needs:
    """Every model revision, domain and multiple-choice task that the notebooks numbered `notebooks`
    ("00", "05"...) read. The tasks: notebook 03 scores the main cooperative, notebook 06 the
    cross-lingual one (choice.tasks_for)."""
    if not scale.is_hub:
        raise KalavaiError(f"scale {scale.name} reads nothing from the Hub (its data and base are made here)")
    notebooks = set(notebooks)
    models = [(scale.hub_model, scale.hub_revision)]
    main = list(scale.domains)
    phase2_domains: list[str] = []
    tasks = choice.hub_task_names(scale.domains) if "03" in notebooks else []
    if "04" in notebooks:
        main += [d for cond in sweep.conditions(scale) for d in cond.domains]
    if "05" in notebooks:
        models += [(scale.hub_model, r) for r in ablations.maturity_revisions(scale)]
        models += [(scale.hub_model, r) for arm in ablations.mismatch_arms(scale).values() for r in arm]
        models.append((ablations.CAPACITY_HUB_MODEL, scale.hub_revision))
    if "06" in notebooks:
        phase2_domains += list(scale.domains)  # the base-weakness table's reference domains
        phase2_domains += [d for section in phase2.SECTIONS for d in phase2.domains_for(scale, section)]
        tasks += choice.hub_task_names(phase2.domains_for(scale, "cross-lingual"))
    domains = {MAIN_FOLDER: tuple(dict.fromkeys(main))}
    if phase2_domains:
        domains[PHASE2_FOLDER] = tuple(dict.fromkeys(phase2_domains))
    return Needs(models=tuple(dict.fromkeys(models)), domains=domains, tasks=tuple(dict.fromkeys(tasks)))


def _folder(scale: Scale, runs: Path, kind: str) -> Path:
    return runs / "data" / (pipeline.corpus_key(scale) if kind == MAIN_FOLDER else PHASE2_FOLDER)


def prepared(scale: Scale, runs: Path, kind: str, domain: str) -> dict | None:
    """The record of a domain's chunks when the run folder holds them, intact, for this scale's settings."""
    config = data.domain_config(scale, domain, pipeline.tokenizer_hash(scale, runs))
    return data.cached_record(_folder(scale, runs, kind) / domain, config)


def fetch(scale: Scale, runs: Path, notebooks, say=print) -> Needs:
    """Download and prepare everything the notebooks read from the Hub (online only)."""
    if hub.offline():
        raise KalavaiError("fetch reads the Hub: unset HF_HUB_OFFLINE (preflight checks an offline run)")
    needs = hub_needs(scale, notebooks)
    for repo, revision in needs.models:
        say(f"model {repo}@{revision}: {hub.download_model(repo, revision)}")
    info = pipeline.prepare_base(scale, runs)
    say(f"base {info['path']}@{info['revision']}: fingerprint {info['fingerprint'][:12]}")
    for kind, domains in needs.domains.items():
        if kind == MAIN_FOLDER:
            folder, _ = pipeline.prepare_corpus(scale, runs, domains=list(domains))
        else:
            folder = phase2.data_folder(scale, runs, list(domains))
        for d in domains:
            record = data.read_json(folder / d / "chunks.json")
            source = record["source"]
            say(
                f"domain {d}: {record['n_documents']} documents of {source['dataset']}@{source['resolved_revision'][:12]}"
                f" -> {sum(record['chunks'].values())} chunks in {folder / d}"
            )
    for name in needs.tasks:
        task = choice.hub_task(name, choice.N_ITEMS, choice.tasks_folder(runs), scale.name)
        source = task.source
        say(
            f"task {name}: {len(task.items)} items of {source['dataset']}@{source['resolved_revision'][:12]}"
            f" -> {choice.tasks_folder(runs) / name}.json"
        )
    return needs


def preflight(scale: Scale, runs: Path, notebooks) -> list[tuple[str, str | None]]:
    """(what, problem or None) for every model revision, domain and task the notebooks read."""
    needs = hub_needs(scale, notebooks)
    rows = [
        (f"model {repo}@{revision}", hub.model_problem(repo, revision, scale.name)) for repo, revision in needs.models
    ]
    for kind, domains in needs.domains.items():
        for d in domains:
            rows.append((f"domain {d}", _domain_problem(scale, runs, kind, d)))
    rows += [(f"task {name}", _task_problem(scale, runs, name)) for name in needs.tasks]
    return rows


def _domain_problem(scale: Scale, runs: Path, kind: str, domain: str) -> str | None:
    if prepared(scale, runs, kind, domain) is not None:
        return None
    try:
        source = data.load_source_manifest(domain)
    except KalavaiError as e:
        return str(e)
    if hub.offline():
        return f"not prepared in {_folder(scale, runs, kind)} and HF_HUB_OFFLINE=1: {hub.fetch_hint(scale.name)}"
    try:  # the notebooks' own reader, stopped at the first document that passes the manifest's filters
        docs, _ = data.hub_documents({**source, "n_documents": 1})
    except KalavaiError as e:
        return first_line(e)
    return None if docs else f"{source['dataset']}: no record passes the manifest's filters"


def _task_problem(scale: Scale, runs: Path, name: str) -> str | None:
    folder = choice.tasks_folder(runs)
    try:
        if choice.prepared_task(name, choice.N_ITEMS, folder) is not None:
            return None
        manifest = choice.load_task_manifest(name)
    except KalavaiError as e:
        return first_line(e)
    if hub.offline():
        return f"not prepared in {folder} and HF_HUB_OFFLINE=1: {hub.fetch_hint(scale.name)}"
    try:  # the notebooks' own reader, stopped at the first row
        rows, _ = choice.hub_rows(manifest, 1)
    except KalavaiError as e:
        return first_line(e)
    return None if rows else f"{manifest['dataset']} ({manifest['split']}): no rows"
