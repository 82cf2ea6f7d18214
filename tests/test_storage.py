"""Atomic writes: content, no stray temporary files, and ordinary file permissions."""

import os
import stat

import pytest

from kalavai_utils.storage import atomic_write_bytes, atomic_write_json, read_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_gives_the_usual_permissions(tmp_path, umask_022):
    path = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"abc")
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # 0o666 & ~umask, as open() would give, not mkstemp's 0600
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644
    assert read_json(tmp_path / "b.json") == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "sub"]  # no temporary file left


def test_atomic_write_follows_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        path = atomic_write_bytes(tmp_path / "private.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8", b"[" * 100_000 + b"]" * 100_000, b"{not json"])
def test_read_json_refuses_malformed_bytes_in_one_line(tmp_path, raw):
    from kalavai_utils.errors import KalavaiError

    (tmp_path / "x.json").write_bytes(raw)
    with pytest.raises(KalavaiError, match="malformed JSON") as info:
        read_json(tmp_path / "x.json")
    assert "\n" not in str(info.value)


def test_a_cached_file_reads_back_in_the_order_it_was_written(tmp_path):
    """A cached step (baseline losses, results) must give tables and figures the order a fresh one gives."""
    fresh = {
        "base": {"code": 1, "science": 2, "fiction": 3},
        "spec:code": {"code": 1, "science": 2, "fiction": 3},
        "spec:science": {"code": 1, "science": 2, "fiction": 3},
        "spec:fiction": {"code": 1, "science": 2, "fiction": 3},
        "weight_avg": {"code": 1, "science": 2, "fiction": 3},
        "monolithic": {"code": 1, "science": 2, "fiction": 3},
    }
    back = read_json(atomic_write_json(tmp_path / "losses.json", fresh))
    assert back == fresh and list(back) == list(fresh)
    assert all(list(row) == ["code", "science", "fiction"] for row in back.values())
    # files meant for diffs (the committed reference summaries) ask for sorted keys
    assert list(read_json(atomic_write_json(tmp_path / "sorted.json", fresh, sort_keys=True))) == sorted(fresh)
