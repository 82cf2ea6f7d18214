"""The code domain: real Python functions from this interpreter's standard library."""

from __future__ import annotations

import ast
import hashlib
import itertools
import os
import sysconfig
import textwrap
from functools import lru_cache

from ..errors import KalavaiError
from .common import STREAMS, _rng

# Per stream: a contributor's code comes from a few repositories, the base's from a broad crawl.
CODE_REPOSITORY_SHARE = {"specialist": 0.2, "pretrain": 0.4}
CODE_CHARS = (200, 1500)  # code keeps functions longer than 200 chars (the paper's filter), short enough for a doc

# ---------------------------------------------------------------------------------------
# Code: real Python from this interpreter's standard library.

_SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idle_test",
    "lib2to3",
    "__pycache__",
    "ensurepip",
    "turtledemo",
}


def _function_blocks(lines: list[str]):
    """Yield the source of each def that is not nested in another def, found by indentation."""
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if not stripped.startswith(("def ", "async def ")):
            i += 1
            continue
        indent = len(lines[i]) - len(stripped)
        j = i
        while j < len(lines) and not lines[j].split("#")[0].rstrip().endswith(":"):  # multi-line signature
            j += 1
        j += 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        block = "".join(lines[i:j]).rstrip()
        yield textwrap.dedent(block)
        i = j  # nested defs are part of this one, never a document of their own


@lru_cache(maxsize=1)
def _stdlib_functions() -> tuple[dict[str, str], dict[str, str]]:
    """Candidate functions of the standard library, {source: module}, split into the (specialist, pretrain) pools."""
    root = sysconfig.get_paths()["stdlib"]
    pools: tuple[dict[str, str], dict[str, str]] = ({}, {})  # dicts: ordered and without duplicates
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for fname in sorted(f for f in filenames if f.endswith(".py")):
            path = os.path.join(dirpath, fname)
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.readlines()
            except (OSError, UnicodeDecodeError):
                continue
            # Split by module: a contributor's code comes from modules the base never read, so
            # their identifiers and idioms are new to it, as a real fine-tuning set's repositories
            # are. A function text already in the other pool (the library holds some copies) is skipped.
            side = hashlib.sha256(os.path.relpath(path, root).encode()).digest()[0] & 1
            for src in _function_blocks(lines):
                if CODE_CHARS[0] < len(src) <= CODE_CHARS[1] and src not in pools[1 - side]:
                    pools[side].setdefault(src, os.path.relpath(path, root))
    if not pools[0]:
        raise KalavaiError(f"no Python standard library source found under {root}: the code domain needs it")
    return pools


@lru_cache(maxsize=None)
def _parses(src: str, documented: bool = False) -> bool:
    """Whether `src` is valid Python (and, if `documented`, a function with a docstring)."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return False
    return not documented or ast.get_docstring(tree.body[0]) is not None


def _code_documents(n_docs: int, seed: int, stream: str) -> list[str]:
    # A code data set is a set of repositories: the documents come first from a seeded set of
    # whole modules (CODE_REPOSITORY_SHARE of the stream's functions), so a contributor's
    # functions share their modules' names and idioms, which fine-tuning learns from the train
    # split and finds again in the held-out split; then from the other modules. Each block is
    # shuffled on its own, so a longer list still extends a shorter one.
    pool = _stdlib_functions()[STREAMS.index(stream)]
    modules: dict[str, list[str]] = {}
    for src, module in pool.items():
        modules.setdefault(module, []).append(src)
    rng = _rng("code", seed, stream)
    order = sorted(modules)
    rng.shuffle(order)
    blocks: tuple[list[str], list[str]] = ([], [])
    for module in order:
        blocks[len(blocks[0]) >= CODE_REPOSITORY_SHARE[stream] * len(pool)].extend(modules[module])
    docs = []
    for block in blocks:
        rng.shuffle(block)
        docs += [
            src
            for src in itertools.islice(
                (b for b in block if _parses(b, documented=stream == "specialist")), n_docs - len(docs)
            )
        ]
    if len(docs) < n_docs:
        raise KalavaiError(
            f"the code domain has only {len(docs)} {stream} functions in this Python's standard library; asked for {n_docs}"
        )
    return docs
