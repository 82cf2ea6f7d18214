"""One data path for every scale: sources -> documents -> packed chunks -> split.

The paper's protocol (PAPER.md §3): a domain's documents are joined with
"\\n\\n", tokenized as one stream and cut into non-overlapping `seq_len`-token chunks, the
remainder dropped; labels are the inputs. Chunks are split by index: the first 80% train,
the next 10% unused, the last 10% held-out. The held-out chunks are used by no training
step.

Chunks are stored as safetensors (`input_ids`, int32) with a manifest holding the
content hash of every file; a corrupted or stale file is detected by its hash and rebuilt.
"""

from __future__ import annotations

import gc
import importlib
from pathlib import Path

import torch
from safetensors.torch import load, save

from .. import corpora
from ..errors import KalavaiError
from ..scales import Scale
from ..storage import (
    STEP_FILE,
    atomic_write_bytes,
    atomic_write_json,
    config_hash,
    mark_step_done,
    plain_name,
    read_json,
    sha256_bytes,
    sha256_file,
    step_is_done,
)
from . import hub

SPLITS = ("train", "unused", "heldout")
MANIFEST_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
SOURCE_KEYS = {"schema", "domain", "dataset", "config", "split", "revision", "n_documents", "text", "filters"}
FILTER_KEYS = {"min_chars", "equals"}
DATA_SEED = 1234  # the corpora are the same for every training seed; seeds only change data order


# ---------------------------------------------------------------- sources -> documents


def load_source_manifest(domain: str, folder: Path | None = None) -> dict:
    """A Hub source description from data_manifests/<domain>.json, checked for its keys."""
    folder = MANIFEST_DIR if folder is None else folder  # looked up at call time, so tests can point it elsewhere
    path = Path(folder) / f"{domain}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in Path(folder).glob("*.json")))
        raise KalavaiError(f"no data manifest for domain {domain!r} at {path} (known: {known})")
    source = read_json(path)
    missing = SOURCE_KEYS - set(source) if isinstance(source, dict) else SOURCE_KEYS
    if missing:
        raise KalavaiError(f"malformed data manifest {path}: missing {', '.join(sorted(missing))}")
    filters = source["filters"]
    unknown = set(filters) - FILTER_KEYS if isinstance(filters, dict) else {"(not an object)"}
    if unknown or not isinstance(filters.get("equals", {}), dict):
        raise KalavaiError(
            f"malformed data manifest {path}: filters take {', '.join(sorted(FILTER_KEYS))} "
            f"(equals: an object of field -> value), got {', '.join(sorted(map(str, unknown or {'equals'})))}"
        )
    return source


def source_text(record: dict, recipe: dict) -> str:
    """Apply a manifest's text recipe (fields joined, then truncated) to one record."""
    missing = [f for f in recipe["fields"] if f not in record]
    if missing:
        raise KalavaiError(
            f"text recipe field {missing[0]!r} is not in the dataset's records (fields: {', '.join(map(str, record))}); "
            "fix the data manifest's text.fields"
        )
    text = recipe.get("join", "\n").join(str(record[f]) for f in recipe["fields"])
    return text[: recipe["max_chars"]] if "max_chars" in recipe else text


def record_matches(record: dict, equals: dict) -> bool:
    """A manifest's `filters.equals` ({field: value}): does this record hold those values?"""
    missing = [f for f in equals if f not in record]
    if missing:
        raise KalavaiError(
            f"filter field {missing[0]!r} is not in the dataset's records (fields: {', '.join(map(str, record))}); "
            "fix the data manifest's filters.equals"
        )
    return all(record[f] == value for f, value in equals.items())


def filter_documents(texts, n_documents: int, min_chars: int = 0) -> list[str]:
    """The first `n_documents` texts that pass the length filter, in source order."""
    kept = []
    for text in texts:
        if len(text) >= min_chars:
            kept.append(text)
            if len(kept) == n_documents:
                break
    return kept


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the Hub or the local cache cannot serve this", and nothing else.

    Hub and connection errors are OSErrors (huggingface_hub's HTTP, offline and cache-miss
    errors, requests' errors, ConnectionError, TimeoutError); `datasets` adds its own for a
    dataset or data files it cannot find; the HTTP clients under streaming have their own
    bases. A bug or a wrong manifest field (KeyError, TypeError...) is not among them, so it
    is reported as itself instead of as missing Hub access.
    """
    import datasets.exceptions
    from huggingface_hub.errors import HFValidationError

    kinds: list[type[BaseException]] = [OSError, datasets.exceptions.DatasetsError, HFValidationError]
    for module, attr in (("httpx", "HTTPError"), ("aiohttp", "ClientError"), ("requests", "RequestException")):
        try:
            kinds.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            pass
    return tuple(kinds)


def hub_documents(source: dict) -> tuple[list[str], dict]:
    """Load a Hub source's documents; one clear error when the Hub or cache cannot serve it."""
    import datasets

    name = f"{source['dataset']}" + (f" ({source['config']})" if source["config"] else "")
    try:
        commit = hub.resolve_dataset_revision(source["dataset"], source["revision"])
        stream = datasets.load_dataset(
            source["dataset"], source["config"], split=source["split"], revision=commit, streaming=True
        )
        equals = source["filters"].get("equals", {})
        records = iter(stream)
        try:
            texts = (source_text(r, source["text"]) for r in records if record_matches(r, equals))
            docs = filter_documents(texts, source["n_documents"], source["filters"].get("min_chars", 0))
        finally:
            # A Parquet stream left half-read keeps pyarrow's scanner threads; collected at interpreter
            # exit they abort the process after its work is done ("terminate called without an active
            # exception", huggingface/datasets#7566). Closed and collected now, while Arrow is alive.
            getattr(records, "close", lambda: None)()
            del records, stream
            gc.collect()
    except KalavaiError as e:
        raise KalavaiError(f"dataset {name}: {e}") from None
    except RuntimeError as e:
        if "Dataset scripts are no longer supported" not in str(e):
            raise
        raise KalavaiError(
            f"dataset {name} needs a loading script, which the datasets library no longer runs: point its data "
            "manifest at a copy in Parquet, CSV or JSON (data_manifests/README.md)"
        ) from None
    except _unreachable_errors() as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise KalavaiError(
            f"cannot load dataset {name} at revision {source['revision']}: {first}. "
            "It is read from the Hugging Face Hub: check the connection (HF_ENDPOINT), or prepare it where the Hub is "
            "reachable with `python -m kalavai_utils fetch` and run with HF_HUB_OFFLINE=1 (docs/gpu-and-hub-scales.md)"
        ) from None
    return docs, {**source, "resolved_revision": commit}


def domain_documents(
    scale: Scale, domain: str, overlap: float | None = None, stream: str = "specialist", n_docs: int | None = None
) -> tuple[list[str], dict]:
    """A domain's documents and where they came from (offline generator or Hub manifest)."""
    n_docs = n_docs or scale.docs_per_domain
    if scale.is_hub:
        source = load_source_manifest(domain)
        if hub.offline():  # offline, a Hub domain is read only from the run's prepared chunks
            raise KalavaiError(
                f"domain {domain} ({source['dataset']}) is not among this run's prepared chunks, and HF_HUB_OFFLINE=1 "
                f"forbids reading it from the Hub: {hub.fetch_hint(scale.name)}"
            )
        return hub_documents({**source, "n_documents": n_docs})
    overlap = scale.corpus_overlap if overlap is None else overlap
    docs = corpora.generate_documents(domain, n_docs, seed=DATA_SEED, overlap=overlap, stream=stream)
    provenance = {
        "generator": corpora.corpus_version(domain),
        "domain": domain,
        "seed": DATA_SEED,
        "overlap": overlap,
        "stream": stream,
        "n_documents": n_docs,
        "description": corpora.describe_domain(domain),
    }
    return docs, provenance


# ---------------------------------------------------------------- documents -> chunks


def pack(texts: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Join with a blank line, tokenize as one stream, cut into full chunks (remainder dropped)."""
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len], dtype=torch.int32).view(n, seq_len)


def split_by_index(chunks: torch.Tensor, fractions=(0.8, 0.1, 0.1)) -> dict[str, torch.Tensor]:
    """Contiguous split by chunk index: train, then unused, then held-out (the paper's 80/10/10)."""
    n = len(chunks)
    train_end = int(n * fractions[0])
    unused_end = int(n * (fractions[0] + fractions[1]))
    return {"train": chunks[:train_end], "unused": chunks[train_end:unused_end], "heldout": chunks[unused_end:]}


# ---------------------------------------------------------------- chunk files + manifest


def tokenizer_id(tokenizer) -> str:
    """A stable identity for a tokenizer: its name or path plus vocabulary size."""
    return f"{tokenizer.name_or_path}:{len(tokenizer)}"


def cached_record(folder: Path, config: dict) -> dict | None:
    """A finished step's chunk record, if made with this configuration and its files are intact."""
    folder = Path(folder)
    if not (step_is_done(folder, config) and (folder / "chunks.json").exists()):
        return None
    record = read_json(folder / "chunks.json")
    intact = all((folder / f).exists() and sha256_file(folder / f) == h for f, h in record.get("files", {}).items())
    return record if intact else None


def domain_config(
    scale: Scale,
    domain: str,
    tokenizer_hash: str,
    overlap: float | None = None,
    stream: str = "specialist",
    n_docs: int | None = None,
) -> dict:
    """What a domain's chunks are made from: a cache hit needs all of it equal."""
    config = {
        "domain": domain,
        "scale_source": scale.source,
        "seq_len": scale.seq_len,
        "fractions": list(scale.split_fractions),
        "overlap": overlap if not scale.is_hub else None,
        "stream": stream,
        "n_docs": n_docs or scale.docs_per_domain,
        "tokenizer": tokenizer_hash,
        "generator": None if scale.is_hub else corpora.corpus_version(domain),
    }
    if scale.is_hub:
        # A Hub domain's chunks depend on everything its data manifest says (dataset, config,
        # revision, text recipe, filters): editing any of it must rebuild them. (Offline keys are
        # left as they were, so existing offline caches stay valid.)
        config["source_manifest"] = config_hash(load_source_manifest(domain))
    return config


def prepare_domain(
    scale: Scale,
    domain: str,
    tokenizer,
    out_dir: Path,
    overlap: float | None = None,
    stream: str = "specialist",
    n_docs: int | None = None,
    tokenizer_hash: str = "",
) -> dict:
    """Build (or reuse, if finished and intact) one domain's chunk files; returns its record."""
    folder = Path(out_dir) / domain
    config = domain_config(scale, domain, tokenizer_hash or tokenizer_id(tokenizer), overlap, stream, n_docs)
    record = cached_record(folder, config)
    if record is not None:
        return record
    docs, provenance = domain_documents(scale, domain, overlap, stream, n_docs)
    if not docs:
        raise KalavaiError(f"domain {domain!r} produced no documents")
    splits = split_by_index(pack(docs, tokenizer, scale.seq_len), scale.split_fractions)
    record = save_splits(
        folder, splits, scale.seq_len, {"domain": domain, "source": provenance, "n_documents": len(docs)}
    )
    mark_step_done(folder, config)
    return record


def save_splits(folder: Path, splits: dict[str, torch.Tensor], seq_len: int, meta: dict) -> dict:
    """Write each split's chunk file atomically, then the record holding their hashes."""
    files, counts = {}, {}
    for split, chunks in splits.items():
        name = f"{split}.safetensors"
        atomic_write_bytes(Path(folder) / name, save({"input_ids": chunks.contiguous()}))
        files[name] = sha256_file(Path(folder) / name)
        counts[split] = len(chunks)
    record = {**meta, "chunks": counts, "tokens": {s: c * seq_len for s, c in counts.items()}, "files": files}
    atomic_write_json(Path(folder) / "chunks.json", record)
    return record


def write_manifest(out_dir: Path, records: dict[str, dict], extra: dict | None = None) -> dict:
    """The folder's manifest: `records` merged with every other finished domain already in the folder.

    Sweep conditions share a corpus folder and each prepares only its own domains, so the
    manifest is rebuilt from what is on disk rather than from the caller's domains alone.
    """
    out_dir = Path(out_dir)
    domains = {}
    for chunks in sorted(out_dir.glob("*/chunks.json")):
        if chunks.parent.name in records or not (chunks.parent / STEP_FILE).exists():
            continue  # unfinished domains are rebuilt by their next prepare_domain, and recorded then
        try:
            domains[chunks.parent.name] = read_json(chunks)
        except KalavaiError:
            continue  # a damaged record describes nothing usable; its step rebuilds it
    domains.update(records)
    manifest = {"schema": "kalavai.data/1", "domains": dict(sorted(domains.items())), **(extra or {})}
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def load_split(data_dir: str | Path, domain: str, split: str) -> torch.Tensor:
    """One domain's chunks for one split, checked against the hash in its record.

    The file is read once: the bytes hashed are the bytes loaded. `domain` must be a plain name
    (it may come from a contributor's manifest): it can name no folder outside `data_dir`.
    """
    if split not in SPLITS:
        raise KalavaiError(f"unknown split {split!r}; choose one of {SPLITS}")
    folder = Path(data_dir) / plain_name(domain, "domain")
    record = read_json(folder / "chunks.json")
    path = folder / f"{split}.safetensors"
    if not path.exists():
        raise KalavaiError(f"missing chunk file {path}; rerun data preparation (notebook 00)")
    files = record.get("files") if isinstance(record, dict) else None
    if not (isinstance(files, dict) and isinstance(files.get(path.name), str)):
        raise KalavaiError(f"malformed chunk record {folder / 'chunks.json'}: no hash for {path.name}")
    raw = path.read_bytes()
    if sha256_bytes(raw) != files[path.name]:
        raise KalavaiError(
            f"corrupted chunk file {path}: content hash differs from its manifest; rerun data preparation"
        )
    try:
        ids = load(raw)["input_ids"]
    except Exception as e:  # noqa: BLE001 - whatever is wrong with the bytes, the file is named
        raise KalavaiError(
            f"malformed chunk file {path}: not safetensors with input_ids ({type(e).__name__})"
        ) from None
    if ids.ndim != 2 or ids.dtype not in (torch.int32, torch.int64):
        raise KalavaiError(
            f"malformed chunk file {path}: input_ids is {ids.dtype} of shape {tuple(ids.shape)}, "
            "expected integer chunks (2-D)"
        )
    return ids.long()


def load_splits(data_dir: str | Path, domains, split: str) -> dict[str, torch.Tensor]:
    return {d: load_split(data_dir, d, split) for d in domains}


def chunk_count_table(manifest: dict) -> list[dict]:
    """Rows of (domain, train, unused, held-out) for the notebook's table."""
    return [{"domain": d, **r["chunks"]} for d, r in manifest["domains"].items()]
