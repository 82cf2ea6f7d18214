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
import re
from pathlib import Path

from transformers import AutoTokenizer

from . import data
from ..errors import KalavaiError
from .models import fingerprint, load_causal_lm
from .pipeline import process_state
from ..runtime.sharding import fsdp_requested
from ..scales import get_scale
from ..storage import sha256_bytes
from .submission import write_submission
from .training import TrainConfig, train_causal_lm


def read_documents(paths) -> list[str]:
    docs = []
    for p in map(Path, paths):
        if not p.is_file():
            raise KalavaiError(f"no such data file: {p}")
        if p.suffix == ".jsonl":
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        docs.append(json.loads(line)["text"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise KalavaiError(f"{p}:{i}: expected a JSON object with a 'text' field") from None
        else:
            docs.append(p.read_text(encoding="utf-8"))
    if not docs:
        raise KalavaiError("no documents in the given data files")
    return docs


def train_specialist_from_files(base_dir: str, files, out_dir: str, name: str, scale_name: str = "tiny",
                                seed: int = 42, steps: int | None = None, heldout_dir: str | None = None) -> Path:
    scale = get_scale(scale_name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name:
        raise KalavaiError(f"contributor name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    state = process_state()
    # Sharded (KALAVAI_FSDP=1), only the main process reads the weights: it sends each process its shard.
    base = load_causal_lm(base_dir, weights=state.is_main_process or not fsdp_requested())
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
    except (OSError, ValueError) as e:
        raise KalavaiError(f"no tokenizer in {base_dir}: {str(e).splitlines()[0]}") from None
    docs = read_documents(files)
    seq_len = min(scale.seq_len, base.config.max_position_embeddings)
    splits = data.split_by_index(data.pack(docs, tokenizer, seq_len), scale.split_fractions)
    chunks = splits["train"]
    if len(chunks) < scale.micro_batch:
        raise KalavaiError(f"too little text: {len(chunks)} training chunks of {seq_len} tokens")
    if heldout_dir is not None and len(splits["heldout"]) == 0:
        raise KalavaiError(f"too little text for a held-out split: {len(docs)} documents give no held-out chunk of {seq_len} tokens")
    overrides = {"steps": steps} if steps else {}
    cfg = TrainConfig.specialist(scale, seed, curve_every=0, **overrides)
    base_fp = fingerprint(base) if state.is_main_process else None  # only the main process writes
    base_state = {k: v.clone() for k, v in base.state_dict().items()} if state.is_main_process else None
    train_causal_lm(base, chunks, cfg, desc=name)
    stats = {"domain": name, "documents": len(docs), "train_chunks": len(chunks), "train_tokens": int(chunks.numel()),
             "train_chunks_sha256": sha256_bytes(chunks.int().numpy().tobytes())}
    if heldout_dir is not None:  # ties the handed-over held-out split to this submission
        stats.update(heldout_chunks=len(splits["heldout"]),
                     heldout_chunks_sha256=sha256_bytes(splits["heldout"].int().numpy().tobytes()))
    # Under `accelerate launch` the main process holds the trained weights (all do, unsharded): it writes them.
    if state.is_main_process:
        write_submission(base, out_dir, base_fingerprint=base_fp, base_state=base_state,
                         freeze_layers=cfg.freeze_layers, training=cfg.to_dict(), data=stats, contributor=name)
        if heldout_dir is not None:
            folder = Path(heldout_dir) / name
            folder.mkdir(parents=True, exist_ok=True)
            data.save_splits(folder, {"heldout": splits["heldout"]}, seq_len,
                             {"domain": name, "source": {"contributor": name}, "n_documents": len(docs)})
    state.wait_for_everyone()
    return Path(out_dir)
