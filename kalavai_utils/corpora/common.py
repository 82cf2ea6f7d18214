"""What every generator shares: the domain lists and versions, seeded random streams, Zipf word lists."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import sys

DEFAULT_OVERLAP = 0.5
STREAMS = ("specialist", "pretrain")
DOC_CHARS = (300, 1400)  # target length range of a generated document, in characters

# Bump when any generator changes: it goes into every data manifest.
_GENERATOR_VERSION = "corpora-v3"
# Phase 2's domains (never in the base's mixture) have their own version: changing them
# must not move the tokenizer, the base or any earlier domain's cache.
_PHASE2_VERSION = "phase2-v2"
PRIVATE_DOMAINS = ("patents", "abstracts", "regulations")
PHASE2_LANGUAGES = (
    "lang_fusional",
    "lang_vso",
    "lang_postpos",
    "lang_root",
    "lang_particle",
    "lang_polypersonal",
    "lang_isolating",
)


def corpus_version(domain: str | None = None) -> str:
    """The generator's version; for a Phase 2 domain, with that domain's own version appended."""
    # Code documents come from the standard library's source, which changes with the interpreter.
    v = sys.version_info
    version = f"{_GENERATOR_VERSION}+py{v.major}.{v.minor}.{v.micro}"
    return f"{version}+{_PHASE2_VERSION}" if domain in PRIVATE_DOMAINS + PHASE2_LANGUAGES else version


def _rng(*parts) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class _Words:
    """A word list sampled with Zipf-like weights (the list order is the frequency rank)."""

    def __init__(self, words, s: float = 1.0, sep: str | None = None):
        if isinstance(words, str):
            words = [w.strip() for w in words.split(sep) if w.strip()]
        self.words = list(dict.fromkeys(words))
        self.cum = list(itertools.accumulate(1.0 / (r + 1) ** s for r in range(len(self.words))))

    def pick(self, rng: random.Random) -> str:
        return self.words[bisect.bisect(self.cum, rng.random() * self.cum[-1])]

    def __len__(self):
        return len(self.words)


def _terms(text: str, s: float = 0.8) -> _Words:
    """Multi-word terms, separated by '|'."""
    return _Words(text, s=s, sep="|")
