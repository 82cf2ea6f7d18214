"""Tokenizers: a byte-level BPE trained here for the offline scales, Pythia's from the Hub otherwise.

The offline tokenizer copies the layout of Pythia's (GPT-NeoX) tokenizer: byte-level BPE, no
prefix space, "<|endoftext|>" at id 0 serving as end-of-text (and bos/unk), "<|padding|>"
at id 1, no pad token set. Byte-level means every string round-trips exactly, including
the non-Latin scripts of the language domains. BPE training in `tokenizers` is
deterministic for the same texts and settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from ..errors import KalavaiError, first_line
from ..storage import json_has_key, read_json
from . import hub

EOS = "<|endoftext|>"
PAD = "<|padding|>"
SPECIAL_TOKENS = (EOS, PAD)  # ids 0 and 1, as in Pythia


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it for `transformers`."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise KalavaiError(
            f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (every byte plus the special tokens), got {vocab_size}"
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return wrap(bpe)


def wrap(bpe: Tokenizer) -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    tok.add_special_tokens({"additional_special_tokens": [PAD]})
    assert tok.eos_token_id == 0 and tok.convert_tokens_to_ids(PAD) == 1
    return tok


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with `save_pretrained` (no network)."""
    if not os.path.isdir(path):
        raise KalavaiError(f"no tokenizer folder at {path}")
    return PreTrainedTokenizerFast.from_pretrained(str(path), trust_remote_code=False)


# The files a tokenizer is read from; a folder with none of them has no tokenizer (AutoTokenizer
# would otherwise build an empty one from the config alone, and every text would be "too little").
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
CODE_SUFFIXES = {".py", ".pyc", ".so", ".dylib", ".dll", ".sh", ".exe", ".bat", ".js"}


def refuse_remote_code(folder: str | os.PathLike) -> None:
    """A folder about to be read by from_pretrained names no code to import: no `auto_map` in any
    JSON file and no code file in it, so nothing from it can be run or even asked about."""
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in CODE_SUFFIXES:
            raise KalavaiError(f"{path}: a code file; no code from a model folder is run")
        if path.suffix == ".json" and path.is_file() and json_has_key(read_json(path), "auto_map"):
            raise KalavaiError(f"{path}: auto_map present; no code from a model folder is run")


def load_local_tokenizer(folder: str | os.PathLike):
    """The tokenizer saved in a model folder (a base, a fused model), never running code from it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KalavaiError(f"no such folder: {folder}")
    refuse_remote_code(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise KalavaiError(f"no tokenizer in {folder} (none of {', '.join(TOKENIZER_FILES)})")
    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise KalavaiError(f"cannot load the tokenizer in {folder}: {first_line(e)}") from None


def load_hub_tokenizer(model_id: str, revision: str | None = None):
    """Pythia's tokenizer from the Hub, or from the Hub cache when HF_HUB_OFFLINE=1."""
    try:
        return AutoTokenizer.from_pretrained(
            model_id, revision=revision, trust_remote_code=False, local_files_only=hub.offline()
        )
    except OSError as e:
        problem = hub.model_problem(model_id, revision)
        raise KalavaiError(f"cannot load the tokenizer of {model_id}@{revision}: {problem or first_line(e)}") from None
