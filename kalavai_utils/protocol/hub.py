"""The Hugging Face Hub route of the paper's scales: online or offline, and what a run needs from it.

Online, models and tokenizers load by revision through `transformers` (the Hub cache keeps them)
and datasets stream through `datasets`; each dataset's branch is resolved to the commit it read.
Offline (`HF_HUB_OFFLINE=1`) nothing asks the Hub anything: models and tokenizers come from the
Hub cache, datasets only from the run's own prepared chunks (`runs/<scale>/data`), which record the
commit they were read at. `python -m kalavai_utils fetch --scale S` fills both while online, so a
later run, here or on a machine whose Hub cache and run folder were copied, needs no Hub.

Weights are read from safetensors only. A revision that holds its weights only as pickles
(`pytorch_model.bin`) is refused by name, before any work: loading one could run its code.
"""

from __future__ import annotations

import os

from ..errors import KalavaiError, first_line

# What a model repository's revision must hold for `models.load_causal_lm` and the tokenizer.
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")  # one file, or sharded with an index
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# What `fetch` downloads of a model revision (safetensors shards included, pickles never).
MODEL_PATTERNS = (CONFIG_FILE, "*.safetensors", "model.safetensors.index.json", "tokenizer*", "special_tokens_map.json")


def offline() -> bool:
    """HF_HUB_OFFLINE as it is now (huggingface_hub reads it once, when first imported)."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in constants.ENV_VARS_TRUE_VALUES


def fetch_hint(scale_name: str | None = None) -> str:
    command = f"python -m kalavai_utils fetch --scale {scale_name or '<scale>'}"
    return f"run `{command}` where the Hub is reachable (docs/gpu-and-hub-scales.md, 'Offline')"


def is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def resolve_dataset_revision(dataset: str, revision: str) -> str:
    """The commit a dataset's branch or tag points to, so a run records exactly what it read (online only)."""
    if is_commit(revision):
        return revision
    if offline():
        raise KalavaiError(f"dataset {dataset}@{revision}: HF_HUB_OFFLINE=1, so its commit cannot be resolved")
    from huggingface_hub import HfApi

    return HfApi().dataset_info(dataset, revision=revision).sha


def model_files(repo: str, revision: str | None) -> set[str]:
    """The files of a model repository's revision (online), or of its snapshot in the Hub cache (offline)."""
    if offline():
        from huggingface_hub import try_to_load_from_cache

        wanted = (CONFIG_FILE, *WEIGHT_FILES, *PICKLED_WEIGHTS, *TOKENIZER_FILES)
        return {f for f in wanted if isinstance(try_to_load_from_cache(repo, f, revision=revision), str)}
    from huggingface_hub import HfApi

    return set(HfApi().list_repo_files(repo, revision=revision))


def model_problem(repo: str, revision: str | None, scale_name: str | None = None) -> str | None:
    """What keeps `repo@revision` from loading, in one line, or None when it has what is needed."""
    where = "in the local Hugging Face cache (HF_HUB_OFFLINE=1)" if offline() else "on the Hub"
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        files = model_files(repo, revision)
    except RevisionNotFoundError:
        return f"{repo} has no revision {revision} {where}"
    except RepositoryNotFoundError:
        return f"no model repository {repo} {where} (or it is private)"
    except Exception as e:  # noqa: BLE001 - any failure to list is the answer: the model cannot be reached
        return f"cannot list {repo}@{revision} {where}: {first_line(e)}"
    if offline() and not files:
        return f"{repo}@{revision} is not {where}: {fetch_hint(scale_name)}"
    missing = []
    if CONFIG_FILE not in files:
        missing.append(CONFIG_FILE)
    if not files & set(WEIGHT_FILES):
        pickled = sorted(files & set(PICKLED_WEIGHTS))
        if pickled:
            return (
                f"{repo}@{revision} has no model.safetensors, only {pickled[0]} (a pickle, which this project never "
                "loads: it can run code); convert it to safetensors with a tool you trust and load that folder, "
                "or pick a revision that has model.safetensors"
            )
        missing.append("model.safetensors")
    if not files & {"tokenizer.json"}:
        missing.append("tokenizer.json")
    if missing:
        return f"{repo}@{revision} lacks {', '.join(missing)} {where}" + (
            f": {fetch_hint(scale_name)}" if offline() else ""
        )
    return None


def download_model(repo: str, revision: str | None) -> str:
    """Put a model revision's config, safetensors weights and tokenizer in the Hub cache; its folder there."""
    problem = model_problem(repo, revision)
    if problem:
        raise KalavaiError(problem)
    from huggingface_hub import snapshot_download

    return snapshot_download(repo, revision=revision, allow_patterns=list(MODEL_PATTERNS))
