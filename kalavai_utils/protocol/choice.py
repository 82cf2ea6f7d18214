"""Multiple-choice accuracy: the answer ranked by log-likelihood among distractors.

Scored as EleutherAI's lm-evaluation-harness scores its `multiple_choice` tasks (SciQ, Belebele):
each choice is the continuation `delimiter + choice` of the item's context; its score is the sum of
the continuation tokens' log-probabilities given the context. `acc` takes the highest sum, `acc_norm`
the highest sum divided by the choice's length in characters (the harness's `completion_len`, the
choice without its delimiter). Tokens as the harness's `_encode_pair` makes them: whitespace at the
end of the context moves to the continuation, context + continuation is tokenized as one string
and the continuation's tokens are what follows the context's own tokens; the model reads
(context + continuation)[:-1], cut from the left to its context length. Several items are read in
one batch, right-padded, with an attention mask: padding changes no score (tests/test_choice.py).

Tasks:
- offline scales (`offline_task`): items built from a domain's held-out documents only, the
  documents whose every token lies in the held-out split of data.py (never a train document),
  with a content hash. Science: the document's own question and answer (SciQ-like documents end
  with both), the distractors answers of other held-out questions of the same kind. Any other
  domain (the languages, code, fiction): the true continuation of a held-out passage against the
  continuations cut the same way from other held-out documents of the domain.
- Hub scales (`hub_task`): SciQ and Belebele rows from the manifests in data_manifests/tasks/,
  formatted as the harness formats them (`sciq_items`, `belebele_items`). The first `N_ITEMS` rows
  are kept in the run folder (runs/<scale>/data/tasks/<name>.json, with the manifest, the commit
  read and the items' hash): `fetch` writes them, and a run reads them instead of the Hub whenever
  they match the manifest and the number of items; offline (HF_HUB_OFFLINE=1) only they are read.

`accuracy` gives acc and acc_norm with Wilson 95% intervals; `model_accuracies` scores every
model of a cooperative (base, specialists, weight average, monolithic, fused models), cached on
content.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import corpora
from ..errors import KalavaiError
from ..storage import atomic_write_json, config_hash, mark_step_done, read_json, start_step, step_is_done
from . import data, hub

N_CHOICES = 4  # SciQ's and Belebele's
N_ITEMS = 150  # items per task, the notebooks' and `fetch`'s
TASKS_FOLDER = "tasks"  # under runs/<scale>/data: the Hub tasks' prepared items
PREPARED_SCHEMA = "kalavai.choice-items/1"
CONFIDENCE = 0.95
TASK_MANIFEST_DIR = data.MANIFEST_DIR / "tasks"
TASK_KEYS = {"schema", "task", "dataset", "config", "split", "revision", "format"}
FORMATS = ("sciq", "belebele")


@dataclass(frozen=True)
class Item:
    """One question: the model reads `context`, then each `delimiter + choice`; `answer` indexes `choices`."""

    context: str
    choices: tuple[str, ...]
    answer: int
    delimiter: str = " "

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.context:
            raise KalavaiError("a multiple-choice item needs a context")
        if not 0 <= self.answer < len(self.choices) or len(set(self.choices)) != len(self.choices):
            raise KalavaiError(f"item with answer {self.answer} among {len(self.choices)} choices, or choices repeated")


def items_hash(items: list[Item]) -> str:
    """The content hash of a task's items, in order."""
    return hashlib.sha256(json.dumps([asdict(i) for i in items], ensure_ascii=False).encode()).hexdigest()


# ---------------------------------------------------------------- scoring


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness's `_encode_pair` makes them (causal models)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    context_ids = tokenizer(context)["input_ids"]
    return context_ids, whole[len(context_ids) :]


def model_inputs(context_ids: list[int], continuation_ids: list[int], max_length: int) -> tuple[list[int], int]:
    """What the model reads, (context + continuation)[:-1] cut from the left to `max_length`, and how many
    of its last positions predict the continuation (the harness's `inp` and `contlen`)."""
    if not continuation_ids or len(continuation_ids) > max_length:
        raise KalavaiError(f"a continuation of {len(continuation_ids)} tokens: it must have 1 to {max_length}")
    return (context_ids + continuation_ids)[-(max_length + 1) :][:-1], len(continuation_ids)


@torch.no_grad()
def score_heads(forward, tokenizer, items: list[Item], batch_size: int, max_length: int, device) -> dict[str, list]:
    """Every head's log-likelihood of every choice of every item: {head: [[ll per choice] per item]}.

    `forward(input_ids, attention_mask)` returns {head: logits [B, T, V]}: several models that share
    work on a batch (a fused model's experts and routers) are scored in one pass. The requests are
    read longest first (as the harness does, so a batch holds similar lengths), right-padded.
    """
    requests = []  # (item, choice, input ids, continuation ids)
    for i, item in enumerate(items):
        for j, choice in enumerate(item.choices):
            ctx, cont = encode_pair(tokenizer, item.context, item.delimiter + choice)
            inp, _ = model_inputs(ctx, cont, max_length)
            requests.append((i, j, inp, cont))
    order = sorted(range(len(requests)), key=lambda r: -len(requests[r][2]))
    out: dict[str, list] = {}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        batch = [requests[r] for r in order[start : start + batch_size]]
        width = max(len(inp) for _, _, inp, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, _, inp, _) in enumerate(batch):
            ids[row, : len(inp)] = torch.tensor(inp)
            mask[row, : len(inp)] = 1
        for head, logits in forward(ids.to(device), mask.to(device)).items():
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            scores = out.setdefault(head, [[None] * len(item.choices) for item in items])
            for row, (i, j, inp, cont) in enumerate(batch):
                at = logprobs[row, len(inp) - len(cont) : len(inp)]
                target = torch.tensor(cont, device=at.device).unsqueeze(-1)
                scores[i][j] = at.gather(-1, target).sum().item()
    return out


def context_length(model) -> int:
    config = model.config
    length = getattr(config, "max_position_embeddings", None)
    if not length:
        raise KalavaiError(f"{type(model).__name__}: its config states no context length (max_position_embeddings)")
    return int(length)


def score_items(model, tokenizer, items: list[Item], batch_size: int = 16) -> list[list[float]]:
    """One causal LM's log-likelihood of each choice of each item (any model returning `.logits`, the fused one included)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        forward = lambda ids, mask: {"model": model(input_ids=ids, attention_mask=mask).logits}  # noqa: E731
        return score_heads(forward, tokenizer, items, batch_size, context_length(model), device)["model"]
    finally:
        model.train(was_training)


# ---------------------------------------------------------------- accuracy


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion (statsmodels)."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return float(lo), float(hi)


def accuracy(items: list[Item], scores: list[list[float]]) -> dict:
    """acc and acc_norm (log-likelihood per character of the choice) with their Wilson 95% intervals.

    Ties go to the first choice with the highest score, as numpy's argmax gives the harness.
    """
    if not items or len(items) != len(scores):
        raise KalavaiError(f"{len(scores)} scores for {len(items)} items")
    hits = {"acc": 0, "acc_norm": 0}
    for item, ll in zip(items, scores):
        norm = [s / len(c) for s, c in zip(ll, item.choices)]
        hits["acc"] += max(range(len(ll)), key=lambda j: (ll[j], -j)) == item.answer
        hits["acc_norm"] += max(range(len(norm)), key=lambda j: (norm[j], -j)) == item.answer
    out = {"n": len(items)}
    for metric, k in hits.items():
        lo, hi = wilson(k, len(items))
        out.update({metric: k / len(items), f"{metric}_lo": lo, f"{metric}_hi": hi})
    return out


def accuracy_table(accuracies: dict[str, dict], metric: str = "acc"):
    """{model: accuracy(...)} as one row per model: the metric, its interval and n."""
    import pandas as pd

    rows = [
        {"model": m, metric: a[metric], "lo": a[f"{metric}_lo"], "hi": a[f"{metric}_hi"], "n": a["n"]}
        for m, a in accuracies.items()
    ]
    return pd.DataFrame(rows, columns=["model", metric, "lo", "hi", "n"]).set_index("model")


# ---------------------------------------------------------------- offline tasks


def heldout_documents(data_dir, domain: str, tokenizer) -> list[str]:
    """A domain's documents whose every token lies in its held-out split, in order.

    The documents are generated again from the provenance in the domain's chunks.json and packed as
    data.pack packs them; the held-out split's token range is checked against the stored held-out
    chunks, and a document is kept when its characters lie inside that range and its text occurs
    nowhere in the decoded train split.
    """
    folder = Path(data_dir) / domain
    record = read_json(folder / "chunks.json")
    source = record["source"]
    if "generator" not in source:
        raise KalavaiError(f"{domain}: held-out documents are rebuilt only for the offline corpora")
    if source["generator"] != corpora.corpus_version(domain):
        raise KalavaiError(f"{domain}: its chunks were made by {source['generator']}, not by this generator")
    docs = corpora.generate_documents(
        domain, source["n_documents"], source["seed"], source["overlap"], source["stream"]
    )
    sep = "\n\n"
    enc = tokenizer(sep.join(docs), add_special_tokens=False, return_offsets_mapping=True)
    counts = record["chunks"]
    seq_len = record["tokens"]["heldout"] // max(counts["heldout"], 1)
    heldout = data.load_split(data_dir, domain, "heldout")
    start = (counts["train"] + counts["unused"]) * seq_len
    end = start + counts["heldout"] * seq_len
    if enc["input_ids"][start:end] != heldout.reshape(-1).tolist():
        raise KalavaiError(f"{domain}: the documents packed again do not give the stored held-out chunks")
    first, last = enc["offset_mapping"][start][0], enc["offset_mapping"][end - 1][1]
    train_text = tokenizer.decode(data.load_split(data_dir, domain, "train").reshape(-1).tolist())
    kept, at = [], 0
    for doc in docs:
        if at >= first and at + len(doc) <= last and doc not in train_text:
            kept.append(doc)
        at += len(doc) + len(sep)
    return kept


# The science generator's question shapes (corpora/english.py, _science_facts): answers of one shape
# are of one kind (a process, a term, a unit, a scientist, a number...), so they make the distractors.
SCIENCE_KINDS = (
    ("process", r"What is the process by which "),
    ("term", r"What are .* called\?$"),
    ("dependence", r"The .* depends on what\?$"),
    ("unit", r"What unit is used to measure "),
    ("cause", r"What causes "),
    ("place", r"Where are .* found\?$"),
    ("discoverer", r"Who first described "),
    ("count", r"How many "),
)


def science_kind(question: str) -> str | None:
    return next((kind for kind, pattern in SCIENCE_KINDS if re.search(pattern, question)), None)


def _pick(rng, pool: list[str], exclude: str, k: int) -> list[str] | None:
    options = sorted(set(pool) - {exclude})
    return rng.sample(options, k) if len(options) >= k else None


def _shuffled(rng, context: str, answer: str, distractors: list[str], delimiter: str) -> Item:
    choices = [answer, *distractors]
    rng.shuffle(choices)
    return Item(context, tuple(choices), choices.index(answer), delimiter)


def science_items(docs: list[str], n_items: int, seed: int = 0, n_choices: int = N_CHOICES) -> list[Item]:
    """SciQ-like items: a document's support and question, its answer among answers of other questions of the same kind."""
    rng = corpora._rng("choice", "science", seed)
    parsed = []
    for doc in docs:
        support, question, answer = doc.rsplit("\n", 2)
        kind = science_kind(question)
        if kind is not None:
            parsed.append((f"{support}\n{question}", answer, kind))
    answers: dict[str, list[str]] = {}
    for _, answer, kind in parsed:
        answers.setdefault(kind, []).append(answer)
    items = []
    for context, answer, kind in parsed:
        distractors = _pick(rng, answers[kind], answer, n_choices - 1)
        if distractors is not None:
            items.append(_shuffled(rng, context, answer, distractors, "\n"))
    return items[:n_items]


CONTINUATION_CHARS = (24, 64)  # a continuation runs to the first space after 24 characters, at most 64


def continuation_split(doc: str, rng) -> tuple[str, str] | None:
    """A document cut at a space in its middle third: (the text before, the next 24-64 characters)."""
    lo, hi = CONTINUATION_CHARS
    spaces = [i for i in range(len(doc) // 3, 2 * len(doc) // 3) if doc[i] == " " and i + 1 + hi <= len(doc)]
    if not spaces:
        return None
    cut = rng.choice(spaces)
    rest = doc[cut + 1 : cut + 1 + hi]
    end = rest.find(" ", lo)
    rest = rest[:end] if end > 0 else rest
    return (doc[:cut], rest) if doc[:cut].strip() and rest.strip() else None


def continuation_items(
    docs: list[str], domain: str, n_items: int, seed: int = 0, n_choices: int = N_CHOICES
) -> list[Item]:
    """The true continuation of a held-out passage among continuations of other held-out documents."""
    rng = corpora._rng("choice", domain, seed)
    cuts = [c for c in (continuation_split(doc, rng) for doc in docs) if c is not None]
    endings = [rest for _, rest in cuts]
    items = []
    for context, answer in cuts:
        distractors = _pick(rng, endings, answer, n_choices - 1)
        if distractors is not None:
            items.append(_shuffled(rng, context, answer, distractors, " "))
    return items[:n_items]


@dataclass(frozen=True)
class Task:
    name: str
    items: list[Item]
    hash: str
    source: dict


def offline_task(data_dir, domain: str, tokenizer, n_items: int = N_ITEMS, seed: int = 0) -> Task:
    """A domain's multiple-choice task from its held-out documents (science: questions; else: continuations)."""
    docs = heldout_documents(data_dir, domain, tokenizer)
    if domain == "science":
        items = science_items(docs, n_items, seed)
    else:
        items = continuation_items(docs, domain, n_items, seed)
    if not items:
        raise KalavaiError(f"{domain}: its {len(docs)} held-out documents make no multiple-choice item")
    source = {"domain": domain, "heldout_documents": len(docs), "seed": seed, "n_items": n_items}
    return Task(f"{domain}-choice", items, items_hash(items), source)


# ---------------------------------------------------------------- Hub tasks


def load_task_manifest(name: str, folder: Path | None = None) -> dict:
    """A Hub multiple-choice task from data_manifests/tasks/<name>.json, checked for its keys."""
    path = Path(TASK_MANIFEST_DIR if folder is None else folder) / f"{name}.json"
    if not path.exists():
        raise KalavaiError(f"no task manifest {path}")
    manifest = read_json(path)
    missing = TASK_KEYS - set(manifest) if isinstance(manifest, dict) else TASK_KEYS
    if missing or manifest.get("format") not in FORMATS:
        raise KalavaiError(f"malformed task manifest {path}: missing {sorted(missing)} or format not in {FORMATS}")
    return manifest


def sciq_items(rows) -> list[Item]:
    """SciQ rows as lm-evaluation-harness's `sciq` task: support and question, the correct answer last of four."""
    return [
        Item(
            f"{r['support'].lstrip()}\nQuestion: {r['question']}\nAnswer:",
            (r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]),
            3,
        )
        for r in rows
    ]


def belebele_items(rows) -> list[Item]:
    """Belebele rows as the harness's `belebele_<language>` tasks: passage, question, four options, a letter."""
    return [
        Item(
            f"P: {r['flores_passage']}\nQ: {r['question'].strip()}\n"
            + "".join(f"{letter}: {r[f'mc_answer{k}']}\n" for k, letter in enumerate("ABCD", 1))
            + "Answer:",
            ("A", "B", "C", "D"),
            ["1", "2", "3", "4"].index(str(r["correct_answer_num"])),
        )
        for r in rows
    ]


def tasks_folder(runs: Path) -> Path:
    """Where a run keeps its Hub tasks' items (beside its chunk folders)."""
    return Path(runs) / "data" / TASKS_FOLDER


def prepared_task(name: str, n_items: int, folder: Path) -> Task | None:
    """A Hub task's items as `fetch` kept them in `folder`, when they are of this manifest, this many and intact."""
    path = Path(folder) / f"{name}.json"
    if not path.exists():
        return None
    manifest = load_task_manifest(name)
    try:
        record = read_json(path)
        items = [Item(i["context"], tuple(i["choices"]), i["answer"], i["delimiter"]) for i in record["items"]]
        same = record["schema"] == PREPARED_SCHEMA and record["manifest"] == manifest and record["n_items"] == n_items
    except (KalavaiError, KeyError, TypeError):
        return None  # a damaged file describes nothing usable: read again online, refused offline
    if not same or items_hash(items) != record["hash"]:
        return None
    source = {**manifest, "resolved_revision": record["resolved_revision"], "n_items": n_items}
    return Task(name, items, record["hash"], source)


def hub_rows(manifest: dict, n_rows: int) -> tuple[list[dict], str]:
    """The first `n_rows` rows of a task's split, streamed from the Hub, and the commit they were read at."""
    import gc

    import datasets

    try:
        commit = hub.resolve_dataset_revision(manifest["dataset"], manifest["revision"])
        stream = datasets.load_dataset(
            manifest["dataset"], manifest["config"], split=manifest["split"], revision=commit, streaming=True
        )
        records = iter(stream)
        try:
            rows = [r for _, r in zip(range(n_rows), records)]
        finally:  # a half-read Parquet stream is closed while Arrow is alive (data.hub_documents)
            getattr(records, "close", lambda: None)()
            del records, stream
            gc.collect()
    except data._unreachable_errors() as e:
        raise KalavaiError(
            f"cannot load task {manifest['task']} ({manifest['dataset']}): {str(e).strip()[:200]}"
        ) from None
    return rows, commit


def hub_task(name: str, n_items: int = N_ITEMS, folder: Path | None = None, scale_name: str | None = None) -> Task:
    """The first `n_items` rows of a Hub task's split, its branch resolved to the commit read.

    With `folder` (tasks_folder(runs)): the items kept there when they match the manifest and
    `n_items`; otherwise read from the Hub and kept there. Offline, only the kept items are read."""
    if folder is not None:
        task = prepared_task(name, n_items, folder)
        if task is not None:
            return task
    manifest = load_task_manifest(name)
    if hub.offline():
        where = f"not prepared in {folder}" if folder is not None else "no run folder to read it from"
        raise KalavaiError(f"task {name} ({n_items} items): {where} and HF_HUB_OFFLINE=1: {hub.fetch_hint(scale_name)}")
    rows, commit = hub_rows(manifest, n_items)
    items = {"sciq": sciq_items, "belebele": belebele_items}[manifest["format"]](rows)
    if not items:
        raise KalavaiError(f"task {name}: {manifest['dataset']} ({manifest['split']}) has no rows")
    task = Task(name, items, items_hash(items), {**manifest, "resolved_revision": commit, "n_items": n_items})
    if folder is not None:
        record = {
            "schema": PREPARED_SCHEMA,
            "task": name,
            "manifest": manifest,
            "resolved_revision": commit,
            "n_items": n_items,
            "hash": task.hash,
            "items": [asdict(i) for i in items],
        }
        atomic_write_json(Path(folder) / f"{name}.json", record)
    return task


# A Hub scale's task for a contributor's domain, where there is one (Belebele has no Welsh).
HUB_TASKS = {"science": "sciq", "tamil": "belebele_tam_Taml", "yoruba": "belebele_yor_Latn"}


def hub_task_names(domains) -> list[str]:
    """The Hub tasks of a cooperative of `domains`, in their order."""
    return [HUB_TASKS[d] for d in domains if d in HUB_TASKS]


def tasks_for(coop, tokenizer, n_items: int = N_ITEMS, seed: int = 0) -> list[Task]:
    """A cooperative's tasks: offline, one per domain from its held-out documents; at the Hub scales, SciQ and Belebele.

    Offline, a domain whose held-out documents make no item (too few at `smoke`) has no task. At the
    Hub scales the items kept in the run folder are read (every data folder is runs/<scale>/data/<name>).
    """
    if coop.scale.is_hub:
        data_root = Path(coop.data_dir).parent
        if data_root.name != "data":
            raise KalavaiError(f"{coop.data_dir}: a cooperative's data folder must lie in runs/<scale>/data/")
        folder = tasks_folder(data_root.parent)
        return [hub_task(name, n_items, folder, coop.scale.name) for name in hub_task_names(coop.domains)]
    tasks = []
    for d in coop.domains:
        try:
            tasks.append(offline_task(coop.data_dir, d, tokenizer, n_items, seed))
        except KalavaiError:
            continue
    return tasks


# ---------------------------------------------------------------- a cooperative's models


def cooperative_scores(coop, runs: Path, base, tokenizer, tasks: list[Task], batch_size: int = 16) -> dict:
    """{task name: {model: [[ll per choice] per item]}} for base, specialists, weight average, monolithic and fused models.

    The fused models are the cooperative's routers, its recipes' included (fit_routers, cached by its
    notebook), in soft mode;
    the specialists are the fused model's experts alone (one expert's logits: the specialist itself),
    scored in the same pass as the fused models.
    """
    from . import cooperative as co
    from .models import for_inference
    from .submission import collect_submissions

    s = coop.scale
    assembly = co.fusion_assembly(coop, runs, base)
    fused = assembly.fused.eval()
    routers = co.fit_routers(
        fused, coop.all_routers(), co.mixed_train_chunks(coop), coop, coop.folder(runs) / "routers"
    )
    granularity = {co.fused_name(kind, g, recipe=recipe): g for kind, g, recipe in coop.all_routers()}
    names = list(granularity)
    device = fused.embed_in.weight.device
    max_length = context_length(fused)

    def fused_heads(ids, mask):
        hidden = fused.expert_hidden(ids, mask)
        logits = fused.unembed(hidden)
        heads = {f"spec:{d}": logits[i] for i, d in enumerate(fused.config.expert_names)}
        for name in names:
            router = routers[name][0].eval()
            heads[name] = fused.fuse(
                hidden, logits, attention_mask=mask, mode="soft", router=router, granularity=granularity[name]
            ).logits
        return heads

    def plain(model):
        model = model.eval()
        dev = next(model.parameters()).device
        return dev, lambda ids, mask: {"model": model(input_ids=ids, attention_mask=mask).logits}

    singles = {
        "base": for_inference(copy.deepcopy(base), s.bf16),
        "weight_avg": for_inference(assembly.weight_avg, s.bf16),
    }
    if coop.monolithic:
        mono = collect_submissions([coop.folder(runs) / "monolithic" / "submission"], base, co.config_freeze(coop))
        singles["monolithic"] = for_inference(mono[0].model, s.bf16)
    out = {}
    for task in tasks:
        scores = {}
        for name, model in singles.items():
            dev, forward = plain(model)
            scores[name] = score_heads(forward, tokenizer, task.items, batch_size, max_length, dev)["model"]
        scores.update(score_heads(fused_heads, tokenizer, task.items, batch_size, max_length, device))
        out[task.name] = scores
    return out


def model_accuracies(coop, runs: Path, base, base_fp: str, tokenizer, tasks: list[Task], batch_size: int = 16) -> dict:
    """{task: {model: accuracy(...)}} for every model of a cooperative, cached on content.

    Kept in <cooperative>/choice/accuracy.json, keyed on the base, the experts (by their results
    file's record of them), the routers' recipe and every task's content hash.
    """
    folder = coop.folder(runs) / "choice"
    results = read_json(coop.folder(runs) / "results.json")  # the cooperative is evaluated first (its notebook)
    config = {
        "base": base_fp,
        "experts": results["config"]["experts"],
        "router": results["config"]["router"],
        "routers": [list(r) for r in coop.routers],
        "recipes": coop.variant_config().get("recipes", []),
        "monolithic": coop.monolithic,
        "tasks": {t.name: t.hash for t in tasks},
        "batch_size": batch_size,
    }
    if step_is_done(folder, config) and (folder / "accuracy.json").exists():
        return read_json(folder / "accuracy.json")
    scores = cooperative_scores(coop, runs, base, tokenizer, tasks, batch_size) if tasks else {}
    by_name = {t.name: t for t in tasks}
    out = {
        name: {model: accuracy(by_name[name].items, s) for model, s in per_model.items()}
        for name, per_model in scores.items()
    }
    start_step(folder)
    atomic_write_json(folder / "accuracy.json", out)
    mark_step_done(folder, config, hash=config_hash(config))
    return out
