"""Stock sentences: each data set's own recurring phrasings, swapped into its prose."""

from __future__ import annotations

import random
import re

from .common import _Words

# A real data set repeats itself: SciQ's support texts reuse stock phrasings, a book its
# characters' turns of phrase, a corpus of contracts its boilerplate. Each (domain, stream)
# has its own pool of such sentences, so a contributor's data holds material its base never
# saw, learnable from its train split and present in its held-out split: fine-tuning then
# adds to the base rather than only trading one domain's capacity for another's.
STOCK_SENTENCES = 300
# Share of prose sentences replaced by a recurring one, per stream: one data set repeats itself
# more than a broad pretraining mixture does.
STOCK_RATE = {"specialist": 0.5, "pretrain": 0.35}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"])")
_LIST_ITEM = re.compile(r"(- |\d+\. )")
_CLAUSE_NUMBER = re.compile(r"\d+(\.\d+)+ ")  # law's "3.2 " clause numbers


def _prose(line: str) -> tuple[str, list[str]]:
    """(prefix, sentences) of a prose line; no sentences for layout lines (headers, lists, scores)."""
    if _LIST_ITEM.match(line):  # a recipe's method steps name the recipe's own ingredients
        return "", []
    number = _CLAUSE_NUMBER.match(line)
    prefix, rest = (number.group(0), line[number.end() :]) if number else ("", line)
    parts = _SENTENCE_END.split(rest)
    is_prose = len(parts) > 1 or (number is not None and rest.endswith("."))
    return prefix, parts if is_prose else []


def _replaceable(sentence: str) -> bool:
    # Numbers carry a document's own structure (a score line's goals, a dose, a clause
    # reference): those sentences stay, so every layout's invariants hold.
    return not any(c.isdigit() for c in sentence)


def _recur(doc: str, stock: _Words, rng: random.Random, rate: float) -> str:
    lines = []
    for line in doc.split("\n"):
        prefix, parts = _prose(line)
        if parts:
            line = prefix + " ".join(stock.pick(rng) if _replaceable(p) and rng.random() < rate else p for p in parts)
        lines.append(line)
    return "\n".join(lines)
