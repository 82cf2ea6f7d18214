"""The contributor's side as one command: own text in, a verified-format submission out.

    python -m kalavai_utils train-specialist --base DIR --data FILES... --out DIR

Text files are documents (a `.jsonl` file holds one {"text": ...} document per line). They
go through the same packing and split as every other corpus; only the train split is used
and only counts and hashes leave the machine, inside the submission's manifest.

With `--heldout-out DIR` the contributor also writes its held-out split (never trained on)
as DIR/<name>/heldout.safetensors with its chunks.json: the evaluation data it agrees to
hand the coordinator, who measures its divergence there (`predict-gain --data DIR`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import KalavaiError
from ..runtime.sharding import fsdp_requested
from ..scales import get_scale
from ..storage import plain_name, printable, sha256_bytes
from . import data
from .models import fingerprint, load_causal_lm
from .pipeline import process_state
from .submission import write_submission
from .tokenizer import load_local_tokenizer
from .training import TrainConfig, train_causal_lm


def read_documents(paths, digests: dict | None = None) -> list[str]:
    """The documents of text files (each one document) and .jsonl files (one {"text": ...} a line).

    With `digests`, each file's sha256 goes into it (by path as given): of the bytes read and parsed.
    """
    docs = []
    for p in map(Path, paths):
        if not p.is_file():
            raise KalavaiError(f"no such data file: {printable(p)}")
        try:
            raw = p.read_bytes()
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise KalavaiError(f"{printable(p)}: not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise KalavaiError(f"cannot read {printable(p)}: {e.strerror or type(e).__name__}") from None
        if digests is not None:
            digests[str(p)] = sha256_bytes(raw)
        if p.suffix == ".jsonl":
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        doc = json.loads(line)["text"]
                    except (json.JSONDecodeError, KeyError, TypeError, IndexError, RecursionError):
                        raise KalavaiError(f"{printable(p)}:{i}: expected a JSON object with a 'text' field") from None
                    if not isinstance(doc, str):
                        raise KalavaiError(f"{printable(p)}:{i}: 'text' is a {type(doc).__name__}, expected a string")
                    docs.append(doc)
        else:
            docs.append(text)
    if not docs:
        raise KalavaiError("no documents in the given data files")
    return docs


MAX_SEED = 2**32 - 1  # numpy's and every worker's seed range


def check_arguments(base_dir, out_dir, name: str, seed: int, steps: int | None, heldout_dir) -> None:
    """Everything about the command's own input that can be judged before any work: one line, nothing written."""
    plain_name(name, "contributor name")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise KalavaiError(f"--steps must be at least 1, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise KalavaiError(f"--seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    check_output_folder(out_dir, "--out", base_dir)
    if heldout_dir is not None:
        check_output_folder(Path(heldout_dir) / name, "--heldout-out", base_dir)


def check_output_folder(folder, flag: str, base_dir, keep=()) -> None:
    """A folder about to be written: not the base's (nor inside it, nor holding it), empty or new, writable.

    `keep`: further (what, folder) pairs never to be written over either, e.g. ("submission", path).
    """
    out = Path(folder).resolve()  # symbolic links followed
    for what, other in (("base", base_dir), *keep):
        other_path = Path(other).resolve()
        if out == other_path or other_path in out.parents or out in other_path.parents:
            raise KalavaiError(
                f"{flag} {printable(folder)} is the {what}'s folder {printable(other)}, inside it or holds it: "
                f"the {what} would be overwritten"
            )
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise KalavaiError(f"{flag} {printable(folder)} exists and is not an empty folder")
        parent = out
        while not parent.exists():
            parent = parent.parent
    except OSError as e:
        raise KalavaiError(f"{flag} {printable(folder)}: {e.strerror or type(e).__name__}") from None
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise KalavaiError(f"{flag} {printable(folder)}: {printable(parent)} is not a writable folder")


def train_specialist_from_files(
    base_dir: str,
    files,
    out_dir: str,
    name: str,
    scale_name: str = "tiny",
    seed: int = 42,
    steps: int | None = None,
    heldout_dir: str | None = None,
) -> Path:
    scale = get_scale(scale_name)
    check_arguments(base_dir, out_dir, name, seed, steps, heldout_dir)  # before anything is read or written
    docs = read_documents(files)
    tokenizer = load_local_tokenizer(base_dir)
    state = process_state()
    # Sharded (KALAVAI_FSDP=1), only the main process reads the weights: it sends each process its shard.
    base = load_causal_lm(base_dir, weights=state.is_main_process or not fsdp_requested())
    seq_len = min(scale.seq_len, base.config.max_position_embeddings)
    splits = data.split_by_index(data.pack(docs, tokenizer, seq_len), scale.split_fractions)
    chunks = splits["train"]
    if len(chunks) < scale.micro_batch:
        raise KalavaiError(f"too little text: {len(chunks)} training chunks of {seq_len} tokens")
    if heldout_dir is not None and len(splits["heldout"]) == 0:
        raise KalavaiError(
            f"too little text for a held-out split: {len(docs)} documents give no held-out chunk of {seq_len} tokens"
        )
    overrides = {"steps": steps} if steps is not None else {}
    cfg = TrainConfig.specialist(scale, seed, curve_every=0, **overrides)
    base_fp = fingerprint(base) if state.is_main_process else None  # only the main process writes
    base_state = {k: v.clone() for k, v in base.state_dict().items()} if state.is_main_process else None
    train_causal_lm(base, chunks, cfg, desc=name)
    stats = {
        "domain": name,
        "documents": len(docs),
        "train_chunks": len(chunks),
        "train_tokens": int(chunks.numel()),
        "train_chunks_sha256": sha256_bytes(chunks.int().numpy().tobytes()),
    }
    if heldout_dir is not None:  # ties the handed-over held-out split to this submission
        stats.update(
            heldout_chunks=len(splits["heldout"]),
            heldout_chunks_sha256=sha256_bytes(splits["heldout"].int().numpy().tobytes()),
        )
    # Under `accelerate launch` the main process holds the trained weights (all do, unsharded): it writes them.
    # The held-out split first: the submission's manifest, written last, marks the whole hand-in finished.
    if state.is_main_process:
        if heldout_dir is not None:
            folder = Path(heldout_dir) / name
            folder.mkdir(parents=True, exist_ok=True)
            data.save_splits(
                folder,
                {"heldout": splits["heldout"]},
                seq_len,
                {"domain": name, "source": {"contributor": name}, "n_documents": len(docs)},
            )
        write_submission(
            base,
            out_dir,
            base_fingerprint=base_fp,
            base_state=base_state,
            freeze_layers=cfg.freeze_layers,
            training=cfg.to_dict(),
            data=stats,
            contributor=name,
        )
    state.wait_for_everyone()
    return Path(out_dir)
