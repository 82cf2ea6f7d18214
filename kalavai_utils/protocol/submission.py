"""Handing in a specialist (contributor side) and accepting one (coordinator side).

A submission is a Hugging Face model folder, safetensors only, plus `kalavai_submission.json`,
a manifest written last: a folder without it is an unfinished submission. The manifest names
the base the contributor started from (its fingerprint), the frozen prefix, the hashes of
every file in the folder and of every frozen tensor, the training configuration, statistics
of the data (never the data) and the library versions.

The coordinator trusts nothing in the folder until it has checked it. Only the file kinds
`write_submission` produces are allowed (by name), every file must be hashed in the
manifest, no JSON file may carry `auto_map`, and the sizes are capped relative to the base
before any file is read. Each file is then read once: the bytes hashed are the bytes parsed
and loaded, and what is accepted is what was read (a later step never reads the folder
again). The safetensors headers (names, shapes, dtypes, offsets) are parsed and checked
against the base before any tensor is loaded. No pickle is ever opened, no code from the
folder is ever run, and the weights are read with `safetensors.torch.load` only. The whole
config and any tokenizer file must equal the base's; the base itself, or weights already
accepted under another name, are not a specialist. The frozen tensors (input embedding and
first K blocks) must be bit-identical to the coordinator's own base: that is the proof that every specialist
grew from the same initialisation, which fusion relies on.

The base may be of any family of families.py (GPT-NeoX, Llama, Mistral, Qwen2): the tensor
names, the on-disk names of the head, the config class, the expected `architectures` and
whether the head is tied to the embedding (then it is the embedding, verified as such and not
a tensor of its own) all come from the base's family.
"""

from __future__ import annotations

import copy
import json
import math
import os
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from transformers import PretrainedConfig, PreTrainedModel

from ..errors import KalavaiError
from ..families import family_of
from ..storage import atomic_write_json, json_has_key, parse_json, plain_name, printable, sha256_bytes, sha256_file
from .models import fingerprint, frozen_prefix_names, n_params, tensor_sha256
from .results import library_versions
from .tokenizer import CODE_SUFFIXES

FORMAT = "kalavai.submission/1"
MANIFEST = "kalavai_submission.json"
INDEX = "model.safetensors.index.json"

# Pickle-based checkpoints: loading one can run arbitrary code, so they are refused unopened.
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle"}

# A tokenizer's files in a submission must equal the base's by content (parsed), but for where it was saved.
TOKENIZER_SIDE_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
    }
)

# The only files a submission may hold, besides weights (*.safetensors): what save_pretrained and
# write_submission write, and a tokenizer's files if a contributor adds them. Anything else is
# refused by name, whatever it contains, so nothing unhashed or unexpected rides along.
SIDE_FILES = frozenset({"config.json", "generation_config.json", MANIFEST, INDEX}) | TOKENIZER_SIDE_FILES
ALLOWED_DESCRIPTION = "*.safetensors weights, " + ", ".join(sorted(SIDE_FILES))

# Size caps, checked from file sizes before anything is read: a specialist has the base's
# parameters in the base's dtype, so its weights cannot honestly be much larger than the base's.
WEIGHTS_FACTOR = 1.1
WEIGHTS_SLACK = 1 << 20  # safetensors headers (a few KB per shard) and index files
MAX_SIDE_FILE = 64 << 20  # a large tokenizer.json is ~20 MB; configs are KB
MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header

SAFETENSORS_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
TORCH_TO_SAFETENSORS = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}

# Every config field must equal the base's (rope theta, rotary fraction, tied embeddings, activation,
# layer-norm epsilon...); these are compared first, to name the likeliest difference. Only the fields
# that say nothing about the model (who saved it, with what, in which dtype; "_" private state) may differ.
ARCH_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "use_parallel_residual",
    "max_position_embeddings",
)
CONFIG_MAY_DIFFER = frozenset(
    {
        "_name_or_path",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "architectures",
        "use_cache",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
    }
)

TOKENIZER_MAY_DIFFER = frozenset({"name_or_path", "_name_or_path", "tokenizer_file"})

# What save_pretrained writes as a shard's metadata; anything else in a header is refused.
SAFETENSORS_METADATA = {"format": "pt"}

# Unicode categories no contributor name may hold: control, format (zero-width, bidi), surrogate,
# private use, unassigned, line and paragraph separators.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

REQUIRED_KEYS = {
    "format": str,
    "contributor": str,
    "base_fingerprint": str,
    "freeze_layers": int,
    "frozen_tensors": dict,
    "files": dict,
    "training": dict,
    "data": dict,
    "versions": dict,
}

MAX_DATA_STRING = 256  # a longer string in the data statistics is probably text, not a statistic


# ---------------------------------------------------------------------------------------------
# Contributor side


def write_submission(
    model: PreTrainedModel,
    out_dir,
    *,
    base_fingerprint: str,
    base_state: dict[str, torch.Tensor] | None,
    freeze_layers: int,
    training: dict,
    data: dict,
    contributor: str,
    max_shard_size: int | str | None = None,
) -> Path:
    """Save a trained specialist as a submission folder; returns the folder.

    With `base_state`, first checks that it is the base named by `base_fingerprint` and that
    the frozen tensors did not move, so a contributor learns of a broken freeze here rather
    than from the coordinator's refusal.
    """
    out_dir = Path(out_dir)
    if not contributor or not isinstance(contributor, str):
        raise KalavaiError("a submission needs a contributor name")
    _check_data_stats(data)
    state = model.state_dict()
    frozen = frozen_prefix_names(state, freeze_layers, family=family_of(model))
    if base_state is not None:
        _check_frozen_unchanged(state, base_state, base_fingerprint, frozen)

    # An old manifest must never vouch for the new files, even if the save below is interrupted.
    (out_dir / MANIFEST).unlink(missing_ok=True)
    save_kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(out_dir, safe_serialization=True, **save_kwargs)
    _check_folder_contents(out_dir)  # e.g. a stale pickle left in the folder would be refused later

    manifest = {
        "format": FORMAT,
        "contributor": contributor,
        "base_fingerprint": base_fingerprint,
        "freeze_layers": freeze_layers,
        "frozen_tensors": {name: tensor_sha256(state[name]) for name in frozen},
        "files": {p.name: sha256_file(p) for p in _plain_files(out_dir) if p.name != MANIFEST},
        "training": training,
        "data": data,
        "versions": library_versions(),
    }
    atomic_write_json(out_dir / MANIFEST, manifest)  # last: its presence marks the folder finished
    return out_dir


def _check_frozen_unchanged(state, base_state, base_fingerprint, frozen) -> None:
    if fingerprint(base_state) != base_fingerprint:
        raise KalavaiError("base_state is not the base named by base_fingerprint")
    for name in frozen:
        if tensor_sha256(state[name]) != tensor_sha256(base_state[name]):
            raise KalavaiError(f"frozen tensor {name} changed during training; the coordinator would refuse it")


def _check_data_stats(data, where: str = "data") -> None:
    """The manifest carries statistics and hashes of the data, never the data itself."""
    if isinstance(data, dict):
        for key, value in data.items():
            _check_data_stats(value, f"{where}.{key}")
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            _check_data_stats(value, f"{where}[{i}]")
    elif isinstance(data, str) and len(data) > MAX_DATA_STRING:
        raise KalavaiError(f"{where} is a {len(data)}-character string; the manifest holds statistics, not data")


# ---------------------------------------------------------------------------------------------
# Coordinator side


@dataclass
class Submission:
    name: str
    folder: Path
    model: PreTrainedModel  # the submitted weights in the base's architecture, eval mode, frozen
    manifest: dict
    # fingerprint(model): the weights verified, read once from the bytes whose hashes the manifest
    # lists; every later step uses `model` and never reads the folder again
    fingerprint: str = ""


@dataclass
class _Base:
    """What every check needs from the coordinator's base, computed once per collection."""

    model: PreTrainedModel
    state: dict[str, torch.Tensor]
    fingerprint: str
    tokenizer: dict[str, object]  # the base folder's tokenizer files, parsed (empty: no base folder given)


def _base_ref(base: PreTrainedModel, freeze_layers: int, base_dir=None) -> _Base:
    """The base, and the coordinator's K checked against it: bad input, refused before any submission is read."""
    family_of(base)  # a base of an unsupported family is refused here
    n_layers = base.config.num_hidden_layers
    if isinstance(freeze_layers, bool) or not isinstance(freeze_layers, int) or not 0 <= freeze_layers <= n_layers:
        raise KalavaiError(
            f"--freeze-layers must be an integer from 0 to the base's {n_layers} layers, got {freeze_layers!r}"
        )
    state = base.state_dict()
    tokenizer = {}
    if base_dir is not None:
        for name in sorted(TOKENIZER_SIDE_FILES):
            path = Path(base_dir) / name
            if path.is_file():
                tokenizer[name] = _parse_side_file(name, path.read_bytes(), where=path)
    return _Base(model=base, state=state, fingerprint=fingerprint(state), tokenizer=tokenizer)


def verify_submission(folder, base: PreTrainedModel, freeze_layers: int, base_dir=None) -> Submission:
    """Accept a submission folder or raise KalavaiError with a one-line reason.

    `base_dir`, the base's folder: its tokenizer files, which a submission's must equal (without
    it, a submission holding tokenizer files is refused: there is nothing to compare them with).
    """
    return _verify(Path(folder), _base_ref(base, freeze_layers, base_dir), freeze_layers)


def verify_all(folders, base: PreTrainedModel, freeze_layers: int, base_dir=None) -> list[dict]:
    """Every folder's verdict, in order; a refusal does not stop the others being checked.

    Each verdict is JSON-able: {"path", "accepted", "reason"} (reason None when accepted),
    and for an accepted one its contributor and describe()'s summary. A contributor name or
    a set of weights already accepted earlier in the list is refused. However hostile one
    folder is, it gets a refusal and every other folder its own verdict. The accepted models
    are not kept.
    """
    ref = _base_ref(base, freeze_layers, base_dir)
    verdicts: list[dict] = []
    ledger = _Ledger()
    for folder in folders:
        verdict = {"path": str(folder), "accepted": False, "reason": None}
        try:
            sub = _judge(Path(folder), ref, freeze_layers)
            ledger.admit(sub)
        except KalavaiError as e:
            verdicts.append({**verdict, "reason": str(e)})
            continue
        info = {k: v for k, v in describe(sub).items() if k not in ("name", "folder")}
        verdicts.append({**verdict, "accepted": True, "contributor": sub.name, **info})
        del sub  # one model in memory at a time, however many submissions
    return verdicts


def iter_submissions(folders, base: PreTrainedModel, freeze_layers: int, base_dir=None) -> Iterator[Submission]:
    """Verify the folders in order and yield each accepted submission; the first refusal stops.

    One submission is loaded at a time: the caller takes what it needs from each (a fused
    model takes its suffix) and lets it go before the next folder is read. What is yielded is
    what was verified: the weights read once, from the bytes that were hashed.
    """
    ref = _base_ref(base, freeze_layers, base_dir)
    ledger = _Ledger()
    for folder in folders:
        sub = _verify(Path(folder), ref, freeze_layers)
        try:
            ledger.admit(sub)
        except KalavaiError as e:
            raise KalavaiError(f"submission {printable(folder)}: {e}") from None
        yield sub
        del sub


def collect_submissions(folders, base: PreTrainedModel, freeze_layers: int, base_dir=None) -> list[Submission]:
    """Verify every folder and keep every submission (all loaded); the first refusal stops."""
    return list(iter_submissions(folders, base, freeze_layers, base_dir))


class _Ledger:
    """The submissions accepted so far: a contributor (by its name's normal form) and a set of weights once each."""

    def __init__(self):
        self.names: dict[str, Path] = {}
        self.weights: dict[str, Path] = {}

    def admit(self, sub: Submission) -> None:
        key = name_key(sub.name)
        if key in self.names:
            raise KalavaiError(
                f"contributor {printable(repr(sub.name))} already handed in {printable(self.names[key])}"
            )
        if sub.fingerprint in self.weights:
            raise KalavaiError(
                f"the same weights as {printable(self.weights[sub.fingerprint])} (fingerprint "
                f"{sub.fingerprint[:12]}...), handed in again under another name"
            )
        self.names[key], self.weights[sub.fingerprint] = sub.folder, sub.folder


def name_key(name: str) -> str:
    """What makes two contributor names the same: compatibility (NFKC) normal form, case folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def describe(sub: Submission) -> dict:
    """A JSON-able summary for notebooks and logs."""
    m = sub.manifest
    return {
        "name": sub.name,
        "folder": str(sub.folder),
        "fingerprint": sub.fingerprint or fingerprint(sub.model),
        "n_params": n_params(sub.model),
        "base_fingerprint": m["base_fingerprint"],
        "freeze_layers": m["freeze_layers"],
        "n_frozen_tensors": len(m["frozen_tensors"]),
        "files": sorted(m["files"]),
        "training": m["training"],
        "data": m["data"],
        "versions": m["versions"],
    }


def _verify(folder: Path, base: _Base, freeze_layers: int) -> Submission:
    try:
        return _judge(folder, base, freeze_layers)
    except KalavaiError as e:
        raise KalavaiError(f"submission {printable(folder)} refused: {e}") from None


def _judge(folder: Path, base: _Base, freeze_layers: int) -> Submission:
    """_check_submission, with whatever else a hostile folder provokes turned into its refusal."""
    try:
        return _check_submission(folder, base, freeze_layers)
    except KalavaiError:
        raise
    except OSError as e:  # unreadable, vanished, a name too long for the system...
        where = f" ({printable(Path(e.filename).name)})" if getattr(e, "filename", None) else ""
        raise KalavaiError(f"unreadable{where}: {e.strerror or type(e).__name__}") from None
    except Exception as e:  # noqa: BLE001 - RecursionError, a wrong type...: this folder is refused, the others still judged
        raise KalavaiError(f"could not be checked ({type(e).__name__}); refused") from None


def _check_submission(folder: Path, base: _Base, freeze_layers: int) -> Submission:
    """The checks in order, cheapest and least trusting first; raises KalavaiError with the bare reason.

    Every file is read once (after the size caps): the bytes hashed are the bytes parsed and
    loaded, so a file swapped on disk meanwhile changes nothing that is checked or used.
    """
    _check_folder_contents(folder)  # names only
    sizes = _check_sizes(folder, base)  # sizes only: nothing is read or hashed before the caps hold
    files = _read_files(folder, sizes)
    _check_no_remote_code(files)
    manifest = _read_manifest(files)
    _check_file_hashes(files, manifest)
    _check_base_identity(manifest, base, freeze_layers)
    _check_config(files, base.model.config)
    _check_side_files(files, base)
    _check_headers(files, base)  # names, shapes, dtypes, offsets: before any tensor is loaded
    tensors, source = _load_tensors(files, family_of(base.model).disk_names)
    _check_tensors(tensors, source, base)
    _check_frozen(tensors, source, manifest, base, freeze_layers)
    model = _build_model(base.model, tensors)
    weights = fingerprint(model)
    if weights == base.fingerprint:
        raise KalavaiError("the weights are the base's own, untouched: not a specialist")
    return Submission(name=manifest["contributor"], folder=folder, model=model, manifest=manifest, fingerprint=weights)


# 1. What the folder holds


def _plain_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def _is_weight_file(name: str) -> bool:
    return name.endswith(".safetensors")


def _check_folder_contents(folder: Path) -> None:
    if not folder.is_dir():
        raise KalavaiError(f"no such folder: {printable(folder)}")
    # Only names are looked at here: a pickle or a script is refused without being opened. Nothing
    # below the folder is walked: a subfolder is refused as it is, however deep it goes.
    for path in sorted(folder.iterdir()):
        rel = printable(path.name)
        if path.is_symlink():
            raise KalavaiError(f"{rel}: symbolic links are not accepted")
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise KalavaiError(f"{rel}: pickle-format weights are never loaded; hand in safetensors only")
        if path.suffix.lower() in CODE_SUFFIXES:
            raise KalavaiError(f"{rel}: code files are not accepted; no code from a submission is run")
        if path.is_dir():
            raise KalavaiError(f"{rel}: subfolders are not accepted in a submission")
        if not path.is_file():
            raise KalavaiError(f"{rel}: not a regular file")
        if not (_is_weight_file(path.name) or path.name in SIDE_FILES):
            raise KalavaiError(f"{rel}: not a file a submission may hold (allowed: {ALLOWED_DESCRIPTION})")
        if _is_weight_file(path.name):  # hidden (".safetensors"), odd or invisible characters: refused
            plain_name(path.name, "weight file name")
    if not any(_is_weight_file(p.name) for p in _plain_files(folder)):
        raise KalavaiError("no *.safetensors weight file")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _base_weight_bytes(base: _Base) -> int:
    return sum(base.state[n].numel() * base.state[n].element_size() for n in _expected_names(base))


def _check_sizes(folder: Path, base: _Base) -> dict[str, int]:
    """Caps from file sizes alone, so an oversized folder costs the coordinator no reading or hashing; the sizes."""
    base_bytes = _base_weight_bytes(base)
    cap = int(WEIGHTS_FACTOR * base_bytes) + WEIGHTS_SLACK
    total = 0
    sizes = {}
    for path in _plain_files(folder):
        size = sizes[path.name] = path.stat().st_size
        if _is_weight_file(path.name):
            total += size
            if total > cap:
                raise KalavaiError(
                    f"{path.name}: the weight files reach {_mib(total)}, over the cap of {_mib(cap)} "
                    f"({WEIGHTS_FACTOR} x the base's {_mib(base_bytes)} of parameters + {_mib(WEIGHTS_SLACK)})"
                )
        elif size > MAX_SIDE_FILE:
            raise KalavaiError(
                f"{path.name}: {_mib(size)}, over the cap of {_mib(MAX_SIDE_FILE)} for a non-weight file"
            )
    return sizes


def _open_plain(path, flags: int) -> int:
    # a file swapped for a symbolic link or a pipe since its name was checked: refused, never followed or waited on
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))


def _read_files(folder: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    """Every file's bytes, each read once, none longer than the size the caps were checked on."""
    files = {}
    for name, size in sizes.items():
        with open(folder / name, "rb", opener=_open_plain) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise KalavaiError(f"{name}: not a regular file")
            raw = f.read(size + 1)
        if len(raw) != size:
            raise KalavaiError(f"{name}: changed size while being read")
        files[name] = raw
    return files


def _check_no_remote_code(files: dict[str, bytes]) -> None:
    """auto_map names code for from_pretrained to import: refused in any JSON file, listed in the manifest or not."""
    for name, raw in files.items():
        if name.endswith(".json") and json_has_key(parse_json(raw, name), "auto_map"):
            raise KalavaiError(f"{name}: auto_map present; no code from a submission is run")


# 2. The manifest and the file hashes


def _read_manifest(files: dict[str, bytes]) -> dict:
    if MANIFEST not in files:
        raise KalavaiError(f"{MANIFEST} missing (an unfinished submission?)")
    manifest = parse_json(files[MANIFEST], MANIFEST)
    if not isinstance(manifest, dict):
        raise KalavaiError(f"{MANIFEST}: not a JSON object")
    if manifest.get("format") != FORMAT:
        raise KalavaiError(f"{MANIFEST}: format {printable(repr(manifest.get('format')))}, expected {FORMAT!r}")
    for key, kind in REQUIRED_KEYS.items():
        if key not in manifest:
            raise KalavaiError(f"{MANIFEST}: missing key {key!r}")
        value = manifest[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise KalavaiError(f"{MANIFEST}: {key!r} should be a {kind.__name__}")
    contributor = manifest["contributor"]
    if not contributor:
        raise KalavaiError(f"{MANIFEST}: empty contributor name")
    if any(unicodedata.category(c) in INVISIBLE_CATEGORIES for c in contributor) or len(contributor) > MAX_DATA_STRING:
        raise KalavaiError(
            f"{MANIFEST}: contributor name {printable(repr(contributor))} holds control or invisible "
            f"characters (or is over {MAX_DATA_STRING} characters)"
        )
    for key in ("files", "frozen_tensors"):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest[key].items()):
            raise KalavaiError(f"{MANIFEST}: {key!r} should map names to sha256 strings")
    return manifest


def _check_file_hashes(files: dict[str, bytes], manifest: dict) -> None:
    listed = manifest["files"]
    for name, digest in sorted(listed.items()):
        if Path(name).name != name or name in ("", ".", ".."):
            raise KalavaiError(f"{MANIFEST}: file entry {printable(repr(name))} is not a plain file name")
        if name not in files:
            raise KalavaiError(f"{printable(name)}: listed in {MANIFEST} but missing")
        if sha256_bytes(files[name]) != digest:
            raise KalavaiError(f"{name}: sha256 differs from {MANIFEST} (edited after the manifest was written?)")
    # Every file in the folder must be vouched for by the manifest, whether the coordinator reads it or not.
    for name in sorted(files):
        if name != MANIFEST and name not in listed:
            raise KalavaiError(f"{name}: not listed in {MANIFEST}")


# 3. Same base, same freeze


def _check_base_identity(manifest: dict, base: _Base, freeze_layers: int) -> None:
    if manifest["base_fingerprint"] != base.fingerprint:
        raise KalavaiError(
            f"{MANIFEST}: base_fingerprint {printable(manifest['base_fingerprint'][:12])}... is not the "
            f"coordinator's base {base.fingerprint[:12]}... (trained from another base)"
        )
    if manifest["freeze_layers"] != freeze_layers:
        raise KalavaiError(
            f"{MANIFEST}: freeze_layers {manifest['freeze_layers']}, the coordinator uses {freeze_layers}"
        )


# 4. Same architecture, same tokenizer


def _check_config(files: dict[str, bytes], base_config: PretrainedConfig) -> None:
    """The whole config equals the base's, field by field, but for the few fields that say nothing about the model."""
    if "config.json" not in files:
        raise KalavaiError("config.json missing")
    raw = parse_json(files["config.json"], "config.json")
    if not isinstance(raw, dict):
        raise KalavaiError("config.json: not a JSON object")
    if raw.get("model_type") != base_config.model_type:
        raise KalavaiError(
            f"config.json: model_type {printable(repr(raw.get('model_type')))}, base is {base_config.model_type!r}"
        )
    family = family_of(base_config)
    if raw.get("architectures") != [family.class_name]:
        raise KalavaiError(
            f"config.json: architectures {printable(repr(raw.get('architectures')))}, expected [{family.class_name!r}]"
        )
    try:
        # from_dict only parses JSON, and maps older key names (rotary_pct) onto current ones.
        config = family.config_cls.from_dict(raw)
    except Exception as e:  # noqa: BLE001 - any parse failure is a refusal
        raise KalavaiError(
            f"config.json: not a valid {family.model_type} config ({type(e).__name__}: {printable(e)})"
        ) from None
    got, want = config.to_dict(), base_config.to_dict()
    fields = [f for f in ARCH_FIELDS if f in got or f in want] + sorted((got.keys() | want.keys()) - set(ARCH_FIELDS))
    for field in fields:
        if field not in CONFIG_MAY_DIFFER and not field.startswith("_") and got.get(field) != want.get(field):
            raise KalavaiError(
                f"config.json: {printable(field)} {printable(repr(got.get(field)))}, "
                f"base has {printable(repr(want.get(field)))}"
            )


def _parse_side_file(name: str, raw: bytes, where) -> object:
    """A side file as what its name says it is: JSON files a JSON object, merges.txt lines of text."""
    if name.endswith(".json"):
        obj = parse_json(raw, where)
        if not isinstance(obj, dict):
            raise KalavaiError(f"{where}: not a JSON object")
        return {k: v for k, v in obj.items() if k not in TOKENIZER_MAY_DIFFER}
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise KalavaiError(f"{where}: not UTF-8 text") from None
    for i, line in enumerate(lines, 1):  # merges.txt: a "#version" line, then one merge "a b" a line
        if not line.startswith("#") and line and (len(line.split(" ")) != 2 or not line.isprintable()):
            raise KalavaiError(f"{where}:{i}: not a merge (two tokens separated by a space)")
    return [line for line in lines if line]


def _check_side_files(files: dict[str, bytes], base: _Base) -> None:
    """Every JSON and text file parses as what it claims; tokenizer files equal the base's, by content."""
    for name in sorted(files):
        if name in SIDE_FILES:
            parsed = _parse_side_file(name, files[name], name)
            if name not in TOKENIZER_SIDE_FILES:
                continue
            if name not in base.tokenizer:
                raise KalavaiError(
                    f"{name}: the coordinator's base has no {name} to compare it with; hand in "
                    "no tokenizer files (the base's tokenizer is used)"
                )
            if parsed != base.tokenizer[name]:
                raise KalavaiError(f"{name}: differs from the base's tokenizer (vocabulary, merges or special tokens)")


# 5. Reading the tensors, safetensors only


def _weight_files(files: dict[str, bytes]) -> list[str]:
    on_disk = sorted(name for name in files if _is_weight_file(name))
    if INDEX not in files:
        return on_disk
    index = parse_json(files[INDEX], INDEX)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise KalavaiError(f"{INDEX}: no weight_map")
    if not all(isinstance(v, str) for v in weight_map.values()):
        raise KalavaiError(f"{INDEX}: weight_map should map tensor names to shard file names")
    listed = sorted(set(weight_map.values()))
    if listed != on_disk:
        raise KalavaiError(f"{INDEX}: lists shards {printable(listed)}, the folder holds {on_disk}")
    return listed


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise KalavaiError(f"key {printable(repr(key))} appears twice")
        out[key] = value
    return out


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_safetensors_header(raw: bytes, name: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's bytes, parsing its header only.

    The format: 8 bytes (little-endian header length N), N bytes of JSON, then the data. The
    header's offsets must tile the data exactly: no gaps, no overlaps, nothing after the last tensor.
    A file holds at least one tensor, and no metadata beyond what save_pretrained writes.
    """
    size = len(raw)
    if size < 8:
        raise KalavaiError(f"{name}: too short to be a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n > min(MAX_HEADER, size - 8):
        raise KalavaiError(f"{name}: header length {n} exceeds the file or the {MAX_HEADER}-byte limit")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"), object_pairs_hook=_unique_keys)
    except KalavaiError as e:
        raise KalavaiError(f"{name}: safetensors header: {e}") from None
    except (ValueError, RecursionError) as e:
        raise KalavaiError(f"{name}: safetensors header is not valid JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise KalavaiError(f"{name}: safetensors header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if meta not in ({}, SAFETENSORS_METADATA):
        raise KalavaiError(
            f"{name}: safetensors __metadata__ {printable(meta)[:80]}; only {SAFETENSORS_METADATA} is accepted"
        )
    if not header:
        raise KalavaiError(f"{name}: holds no tensors")
    spans, out = [], {}
    for tensor, info in header.items():
        ok = isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}
        dtype, shape, offsets = (info.get("dtype"), info.get("shape"), info.get("data_offsets")) if ok else (None,) * 3
        if not (
            ok
            and dtype in SAFETENSORS_ITEMSIZE
            and isinstance(shape, list)
            and all(map(_is_count, shape))
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(map(_is_count, offsets))
        ):
            raise KalavaiError(f"{name}: malformed safetensors header entry for tensor {printable(tensor)}")
        nbytes = math.prod(shape) * SAFETENSORS_ITEMSIZE[dtype]
        if offsets[1] - offsets[0] != nbytes:
            raise KalavaiError(
                f"{name}: tensor {printable(tensor)} spans {offsets[1] - offsets[0]} bytes, "
                f"its shape and dtype need {nbytes}"
            )
        spans.append((offsets[0], offsets[1], tensor))
        out[tensor] = (dtype, tuple(shape))
    end = 0
    for begin, stop, tensor in sorted(spans):
        if begin != end:
            raise KalavaiError(f"{name}: data of tensor {printable(tensor)} overlaps another or leaves a gap")
        end = stop
    if end != size - 8 - n:
        raise KalavaiError(f"{name}: {size - 8 - n - end} bytes of data beyond (or missing from) the declared tensors")
    return out


def _check_headers(files: dict[str, bytes], base: _Base) -> None:
    """Names, shapes and dtypes against the base, from the headers alone (nothing loaded yet)."""
    declared: dict[str, tuple[str, tuple[int, ...]]] = {}
    source: dict[str, str] = {}
    disk_names = family_of(base.model).disk_names
    for file in _weight_files(files):
        for disk_name, entry in read_safetensors_header(files[file], file).items():
            name = disk_names.get(disk_name, disk_name)
            if name in declared:
                raise KalavaiError(f"{file}: tensor {printable(name)} also in {source[name]}")
            declared[name], source[name] = entry, file
    for name in _check_names_and_shapes({n: shape for n, (_, shape) in declared.items()}, source, base):
        dtype, ref = declared[name][0], base.state[name]
        want = TORCH_TO_SAFETENSORS.get(ref.dtype)
        if dtype != want:
            raise KalavaiError(f"{source[name]}: tensor {name} is {dtype}, base is {want or ref.dtype}")


def _check_names_and_shapes(shapes: dict[str, tuple[int, ...]], source: dict[str, str], base: _Base) -> list[str]:
    """Exactly the base's tensors, each of the base's shape; returns their names, sorted."""
    expected = _expected_names(base)
    missing, extra = sorted(expected - set(shapes)), sorted(set(shapes) - expected)
    if missing:
        files = ", ".join(sorted(set(source.values())))
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise KalavaiError(f"{files}: tensor {missing[0]} missing{more}")
    if extra:
        raise KalavaiError(f"{source.get(extra[0], 'weights')}: unexpected tensor {printable(extra[0])}")
    for name in sorted(expected):
        if shapes[name] != tuple(base.state[name].shape):
            raise KalavaiError(
                f"{source.get(name, 'weights')}: tensor {name} has shape {shapes[name]}, base has {tuple(base.state[name].shape)}"
            )
    return sorted(expected)


def _load_tensors(
    files: dict[str, bytes], disk_names: dict[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors under their in-memory names (`disk_names`: the family's renames), and the file each
    one came from: from the bytes already hashed.

    Each shard's bytes are let go once its tensors are loaded: at most one shard is held twice.
    """
    tensors: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for file in _weight_files(files):
        try:
            loaded = safetensors.torch.load(files.pop(file))
        except Exception as e:  # noqa: BLE001 - a corrupt file is a refusal
            raise KalavaiError(f"{file}: unreadable safetensors ({type(e).__name__}: {printable(e)})") from None
        for disk_name, tensor in loaded.items():
            name = disk_names.get(disk_name, disk_name)
            if name in tensors:
                raise KalavaiError(f"{file}: tensor {printable(name)} also in {source[name]}")
            tensors[name], source[name] = tensor, file
    return tensors, source


def _expected_names(base: _Base) -> set[str]:
    # A tied head is not saved (it is the embedding; Qwen2's small models tie it, Pythia does not).
    return set(base.state) - set(_tied_keys(base.model.config))


def _tied_keys(config) -> dict[str, str]:
    return family_of(config).tied_keys(config)


def _check_tensors(tensors: dict, source: dict, base: _Base) -> None:
    # The header checks ran already; these check what was loaded from the same bytes.
    def file_of(name: str) -> str:
        return source.get(name, "weights")

    for name in _check_names_and_shapes({n: tuple(t.shape) for n, t in tensors.items()}, source, base):
        t, ref = tensors[name], base.state[name]
        if not t.dtype.is_floating_point:
            raise KalavaiError(f"{file_of(name)}: tensor {name} has non-floating dtype {t.dtype}")
        # One dtype per model: a mixed model would not run, and frozen tensors must match bit for bit anyway.
        if t.dtype != ref.dtype:
            raise KalavaiError(f"{file_of(name)}: tensor {name} is {t.dtype}, base is {ref.dtype}")
        # 6. A single NaN would poison every fused prediction.
        if not torch.isfinite(t).all():
            raise KalavaiError(f"{file_of(name)}: tensor {name} has NaN or inf values")


# 7. The proof of shared initialisation


def _check_frozen(tensors: dict, source: dict, manifest: dict, base: _Base, freeze_layers: int) -> None:
    frozen = frozen_prefix_names(base.state, freeze_layers, family=family_of(base.model))
    claimed = manifest["frozen_tensors"]
    if sorted(claimed) != frozen:
        raise KalavaiError(
            f"{MANIFEST}: frozen_tensors does not list exactly the embedding and first {freeze_layers} blocks"
        )
    for name in frozen:
        digest = tensor_sha256(tensors[name])
        if digest != tensor_sha256(base.state[name]):
            raise KalavaiError(
                f"{source[name]}: frozen tensor {name} differs from the base (not trained from this base, or the freeze failed)"
            )
        if digest != claimed[name]:
            raise KalavaiError(f"{MANIFEST}: hash of frozen tensor {name} does not match the weights")


# Building the accepted model


def _build_model(base: PreTrainedModel, tensors: dict[str, torch.Tensor]) -> PreTrainedModel:
    """The base's architecture with the submitted weights; nothing of the submission's config is used."""
    state = dict(tensors)
    for tied, src in _tied_keys(base.config).items():
        state[tied] = state[src]
    # Built on the meta device so no random init is spent on weights about to be replaced.
    with torch.device("meta"):
        model = family_of(base).causal_lm_cls(copy.deepcopy(base.config))  # its own copy: notebooks may edit it
    model.load_state_dict(state, strict=True, assign=True)
    if _tied_keys(base.config):
        model.tie_weights()
    _copy_non_persistent_buffers(base, model)
    model.eval()
    model.requires_grad_(False)
    return model


def _copy_non_persistent_buffers(base: torch.nn.Module, model: torch.nn.Module) -> None:
    """Buffers outside the state dict (rotary frequencies) are derived from the config: take the base's."""
    base_buffers = dict(base.named_buffers())
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            module_name, _, leaf = name.rpartition(".")
            module = model.get_submodule(module_name)
            module._buffers[leaf] = base_buffers[name].detach().to("cpu").clone()
    for name, p in model.named_parameters():
        if p.is_meta:  # load_state_dict(strict=True) makes this impossible; kept as a guard
            raise KalavaiError(f"internal: parameter {name} was not loaded")
