"""PAPER.md, the project's account of the paper, agrees with kalavai_utils/paper.py and is the only one cited."""
import dataclasses
import re
import subprocess
from pathlib import Path

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


def test_nothing_points_outside_the_repository():
    found = subprocess.run(["grep", "-rnF", "--", "../shared", "README.md", "kalavai_utils", "notebooks", "scripts"],
                           cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 1, found.stdout or found.stderr  # grep: 1 = no match, 2 = error


def test_citation_cff_names_the_artifact_and_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["authors"]
    (article,) = [r for r in cff["references"] if r["type"] == "article"]
    assert article["title"].startswith("KALAVAI: Predicting When Independent Specialist Fusion Works")
    assert article["authors"][0]["family-names"] == "Kumaresan" and article["year"] == 2026
