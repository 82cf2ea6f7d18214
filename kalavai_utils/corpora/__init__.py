"""Offline, deterministic text corpora: the `tiny` cooperative's stand-in for the Hub data sets.

Every document is generated from a seed (no network, no downloaded data): English-like prose
domains on one shared grammar (english.py; `overlap` sets how much they share), real Python from
the standard library (code.py), ten made-up languages unlike English and each other (languages.py)
and Phase 2's private domains (private.py). Each data set repeats its own stock sentences
(recurrence.py), so a specialist learns what is new in its data, as with real data sets. Output is
a pure function of its arguments and the Python version; docs/calibration.md has the design.
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import KalavaiError
from ..scales import ENGLISH_DOMAINS, LANGUAGES
from . import english, languages, private
from .code import CODE_CHARS, CODE_REPOSITORY_SHARE, _code_documents
from .common import DEFAULT_OVERLAP, DOC_CHARS, PHASE2_LANGUAGES, PRIVATE_DOMAINS, STREAMS, _rng, _Words, corpus_version
from .english import _Writer
from .recurrence import STOCK_RATE, STOCK_SENTENCES, _prose, _recur, _replaceable

__all__ = [
    "ALL_DOMAINS",
    "CODE_CHARS",
    "CODE_REPOSITORY_SHARE",
    "DEFAULT_OVERLAP",
    "DOC_CHARS",
    "ENGLISH_DOMAINS",
    "LANGUAGES",
    "PHASE2_LANGUAGES",
    "PRIVATE_DOMAINS",
    "STOCK_RATE",
    "STOCK_SENTENCES",
    "STREAMS",
    "corpus_version",
    "describe_domain",
    "generate_documents",
]

# domain -> (lexicon, tense, document writer), and language -> document writer
_ENGLISH = {**english.DOMAINS, **private.DOMAINS}
_LANGUAGE_DOCS = languages.DOCS

_DESCRIPTIONS = {
    "code": "Python functions from the standard library's own source (stands in for CodeSearchNet Python)",
    "science": "SciQ-like: a support paragraph, a question line and an answer line (stands in for SciQ)",
    "fiction": "narrative prose with named characters and quoted dialogue (stands in for PG-19)",
    "law": "contract clauses with numbered sections, defined terms and 'shall'",
    "medicine": "clinical case notes: complaint, history, vital signs, assessment, plan",
    "news": "news reports with a dateline and attributed quotes",
    "recipes": "recipes: title, ingredient list, numbered method steps",
    "sports": "football match reports whose goals add up to the score line",
    "finance": "quarterly earnings reports with revenues, percentages and share prices",
    "travel": "travel guides in sections: getting there, where to stay, what to see",
    "lang_script": "a made-up agglutinative SOV language in Tamil script (stands in for Tamil)",
    "lang_tonal": "a made-up Yoruba-like language: Latin letters with tone marks, SVO with aspect particles (stands in for Yoruba)",
    "lang_mutation": "a made-up Welsh-like verb-first language with initial-consonant mutations (stands in for Welsh)",
    "lang_fusional": "a made-up Russian-like language in Cyrillic: fusional case-gender endings, SVO",
    "lang_vso": "a made-up language in Greek letters: verb-subject-object, articles agreeing in gender and case",
    "lang_postpos": "a made-up Hindi-like language in Devanagari: SOV, separate postpositions, auxiliary verbs",
    "lang_root": "a made-up Arabic-like language in Arabic script: triconsonantal roots in vowel patterns, VSO",
    "lang_particle": "a made-up Korean-like language in Hangul blocks: role particles glued to nouns, SOV",
    "lang_polypersonal": "a made-up Georgian-like language in Mkhedruli: verbs agree with subject and object, ergative, SOV",
    "lang_isolating": "a made-up Chinese-like isolating language in CJK ideographs: no inflection, classifiers, no spaces",
    "patents": "patent documents: a title, an abstract, numbered claims with 'comprising' and 'wherein' (never in the base's mixture)",
    "abstracts": "PubMed-like structured abstracts: background, methods, results with odds ratios, conclusions (never in the base's mixture)",
    "regulations": "EUR-Lex-like regulations: recitals, numbered articles and paragraphs (never in the base's mixture)",
}
ALL_DOMAINS = ENGLISH_DOMAINS + LANGUAGES + PRIVATE_DOMAINS + PHASE2_LANGUAGES
assert set(_DESCRIPTIONS) == set(ALL_DOMAINS) and set(_ENGLISH) == set(ENGLISH_DOMAINS + PRIVATE_DOMAINS) - {"code"}
assert set(_LANGUAGE_DOCS) == set(LANGUAGES + PHASE2_LANGUAGES)


def _check_domain(domain: str) -> None:
    if domain not in ALL_DOMAINS:
        raise KalavaiError(f"unknown domain {domain!r}; choose one of: {', '.join(ALL_DOMAINS)}")


def describe_domain(domain: str) -> str:
    _check_domain(domain)
    return _DESCRIPTIONS[domain]


def generate_documents(
    domain: str, n_docs: int, seed: int, overlap: float = DEFAULT_OVERLAP, stream: str = "specialist"
) -> list[str]:
    """`n_docs` documents of `domain`, a pure function of the arguments (see the module docstring)."""
    _check_domain(domain)
    if not 0.0 <= overlap <= 1.0:
        raise KalavaiError(f"overlap must be in [0, 1], got {overlap}")
    if stream not in STREAMS:
        raise KalavaiError(f"unknown stream {stream!r}; choose one of: {', '.join(STREAMS)}")
    if n_docs < 0:
        raise KalavaiError(f"n_docs must be >= 0, got {n_docs}")
    if domain == "code":
        return _code_documents(n_docs, seed, stream)
    if domain in _LANGUAGE_DOCS:
        rng = _rng(domain, seed, stream)
        return [_LANGUAGE_DOCS[domain](rng) for _ in range(n_docs)]
    lex, tense, write = _ENGLISH[domain]
    # The overlap is part of the seed: two overlaps give unrelated samples, not nested ones.
    rng = _rng(domain, seed, stream, f"{overlap:.6f}")
    stock = _stock_sentences(domain, stream, overlap)
    return [_recur(write(_Writer(rng, lex, overlap, tense)), stock, rng, STOCK_RATE[stream]) for _ in range(n_docs)]


@lru_cache(maxsize=None)
def _stock_sentences(domain: str, stream: str, overlap: float) -> _Words:
    lex, tense, write = _ENGLISH[domain]
    rng = _rng(domain, "stock", stream, f"{overlap:.6f}")
    pool: dict[str, None] = {}
    for _ in range(20 * STOCK_SENTENCES):  # bounded: some layouts (law's clauses) have little prose
        if len(pool) >= STOCK_SENTENCES:
            break
        for line in write(_Writer(rng, lex, overlap, tense)).split("\n"):
            pool.update((p, None) for p in _prose(line)[1] if len(p) > 25 and _replaceable(p))
    return _Words(list(pool)[:STOCK_SENTENCES], s=0.8)
