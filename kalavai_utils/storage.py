"""Atomic file writes, content hashes and resumable steps.

Every file a later step trusts is written to a temporary name in the same folder and
renamed into place, so a killed process never leaves a half-written file behind.
A step folder is finished when its `step.json` exists and records the same configuration
as the one asked for now; otherwise the step is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

from .errors import KalavaiError

STEP_FILE = "step.json"


def _default_mode() -> int:
    """The mode open() would give a new file (0o666 less the umask); os.umask can only be read by setting it."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; results are meant to be read by others like any file written with open()
        os.fchmod(fd, _default_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = False) -> Path:
    """Keys keep the order they were built in, so a file read back (a cached step) gives tables and
    figures the order a fresh computation gives them; `sort_keys` for files meant for diffs."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise KalavaiError(f"missing file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise KalavaiError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    return parse_json(raw, path)


def parse_json(raw: bytes, where: Any) -> Any:
    """JSON from bytes already read; `where` (a file) names it in the one-line error."""
    try:
        return json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as e:
        raise KalavaiError(f"malformed JSON in {where}: {e.msg} at line {e.lineno}") from None
    except (ValueError, RecursionError) as e:  # bytes that are not UTF-8, absurd nesting or numbers: untrusted input
        raise KalavaiError(f"malformed JSON in {where}: {type(e).__name__}") from None


def json_has_key(obj: Any, key: str) -> bool:
    """Whether `key` is a key of any object nested anywhere in parsed JSON."""
    stack = [obj]  # iterative: a hostile file may nest deeply
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def plain_name(name: Any, what: str) -> str:
    """`name` if it can name a file or folder inside another: letters, digits, '.', '_', '-', no '..'.

    No separator, no leading dot, nothing absolute, no control or invisible character: a name
    that someone else chose can then never lead outside the folder it is joined to.
    """
    if not (isinstance(name, str) and PLAIN_NAME.fullmatch(name) and ".." not in name and len(name) <= 255):
        raise KalavaiError(
            f"{what} {printable(repr(name))}: use letters, digits, '.', '_' and '-' (it names a file or folder)"
        )
    return name


def printable(text: Any) -> str:
    """`text` safe to print on one line: control, format (invisible) and separator characters escaped.

    A name someone else chose can then forge no line (a newline), drive no terminal (an ANSI
    escape) and hide no character (a zero-width space) in what the coordinator reads.
    """
    return "".join(
        c if c.isprintable() and unicodedata.category(c) != "Cf" else c.encode("unicode_escape").decode("ascii")
        for c in str(text)
    )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_hash(config: Any) -> str:
    """A short, order-independent hash of a JSON-able configuration."""
    return sha256_bytes(json.dumps(config, sort_keys=True, default=_json_default).encode())[:16]


def step_is_done(folder: str | os.PathLike, config: Any) -> bool:
    """True when `folder` holds a finished step made with exactly this configuration."""
    marker = Path(folder) / STEP_FILE
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text()).get("config_hash") == config_hash(config)
    except json.JSONDecodeError:
        return False


def mark_step_done(folder: str | os.PathLike, config: Any, **extra: Any) -> None:
    atomic_write_json(Path(folder) / STEP_FILE, {"config_hash": config_hash(config), "config": config, **extra})


def start_step(folder: str | os.PathLike) -> Path:
    """Clear a stale or half-finished step folder before redoing it."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder
