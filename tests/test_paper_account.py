"""PAPER.md, the project's account of the paper, agrees with kalavai_utils/paper.py and is the only one cited."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from kalavai_utils import paper

ROOT = Path(__file__).resolve().parent.parent
PAPER_MD = ROOT / "PAPER.md"
NUMBER = re.compile(r"[-−+]?\d+(?:,\d{3})*(?:\.\d+)?")


def paper_numbers() -> set[float]:
    """Every number held by paper.py's constants (keys included: scales, steps, K)."""
    found = set()

    def walk(value):
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, (int, float)):
            found.add(float(value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, (list, tuple, set)):
            for v in value:
                walk(v)
        elif dataclasses.is_dataclass(value):
            walk(dataclasses.astuple(value))

    for name in dir(paper):
        if name.isupper():
            walk(getattr(paper, name))
    return found


def table_numbers(text: str) -> list[tuple[str, float]]:
    """(cell, number) for every number in a table cell of PAPER.md, row labels excepted."""
    out = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        for cell in cells:
            for m in NUMBER.finditer(cell):
                out.append((cell, float(m.group().replace("−", "-").replace(",", ""))))
    return out


def test_every_number_in_paper_md_tables_is_paper_py_s():
    text = PAPER_MD.read_text()
    numbers = table_numbers(text)
    assert len(numbers) > 20, "PAPER.md's tables were not parsed"
    known = paper_numbers()
    unknown = [(cell, n) for cell, n in numbers if n not in known]
    assert not unknown, f"numbers in PAPER.md's tables that paper.py does not hold: {unknown}"


def test_table_parser_sees_a_wrong_number():
    assert 2.652 not in paper_numbers()
    assert table_numbers("| a | b |\n|---|---|\n| 410M | 2.652 |") == [("2.652", 2.652)]


def test_constants_named_in_paper_md_exist():
    names = set(re.findall(r"`(?:paper\.)?([A-Z][A-Z0-9_]{3,})`", PAPER_MD.read_text()))
    assert names, "PAPER.md names no constants"
    assert not [n for n in names if not hasattr(paper, n)]
    assert paper.FACTS_PAGE == "PAPER.md"


# A clone holds everything it needs: no path into the machine it was written on, nor the
# environment variable that once pointed at the paper's notes outside the repository.
OUTSIDE = re.compile(r"\.\./shared|KALAVAI_FACTS|(?<![\w.~-])/(?:work|tmp)/")
SHIPPED = [
    "README.md",
    "PAPER.md",
    "docs",
    "kalavai_utils",
    "notebooks",
    "results",
    "accelerate_configs",
    "scripts",
    "run_all.sh",
    "environment.yml",
]
TEXT = {".md", ".json", ".py", ".ipynb", ".sh", ".yml", ".yaml"}


def shipped_text_files():
    for name in SHIPPED:
        path = ROOT / name
        yield from (
            sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )


def test_nothing_points_outside_the_repository():
    files = list(shipped_text_files())
    assert len(files) > 20 and ROOT / "results" / "tiny" / "timings.json" in files
    hits = [
        f"{f.relative_to(ROOT)}:{i}: {line.strip()[:120]}"
        for f in files
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize(
    "line", ["see ../shared/facts.md", "KALAVAI_FACTS=x", "open('/work/main/x')", '"/tmp/w1/.venv"']
)
def test_the_outside_guard_catches_each_kind_of_path(line):
    assert OUTSIDE.search(line)
    assert not OUTSIDE.search("runs/tmp/x and ./work/ and framework/ and $TMPDIR")


def test_citation_cff_names_the_artifact_and_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["authors"]
    (article,) = [r for r in cff["references"] if r["type"] == "article"]
    assert article["title"].startswith("KALAVAI: Predicting When Independent Specialist Fusion Works")
    assert article["authors"][0]["family-names"] == "Kumaresan" and article["year"] == 2026
