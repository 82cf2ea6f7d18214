"""README.md and docs/*.md type no result: each number is rendered from results/ or found there.

Generated blocks must equal what `render-docs` makes now from results/<scale>/ and paper.py.
Outside them (and outside code), every decimal number must be one that results/**/*.json,
paper.py, PAPER.md or a scale's configuration holds, rounded as written.
It catches drift and made-up figures, but it is a tripwire, not a proof: among the ~2,400 held
numbers, a one-decimal number below 30 matches one by chance about two times in three, a
two-decimal one about one time in four. Derived figures belong in a generated block.
The checks of prose run without torch; rendering the blocks imports it for one of them, the GPU
budget, which counts from the experiments' code (reports/readme.py, render_budget).
"""

import dataclasses
import importlib
import json
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_LIMIT = 10_240  # bytes: the README is a front page


def _import_light(*names):
    """Import kalavai_utils submodules without running the package's __init__ (which imports torch)."""
    if "kalavai_utils" in sys.modules:
        return [importlib.import_module(n) for n in names]
    stub = types.ModuleType("kalavai_utils")
    stub.__path__ = [str(ROOT / "kalavai_utils")]
    sys.modules["kalavai_utils"] = stub
    try:
        return [importlib.import_module(n) for n in names]
    finally:  # leave no stub behind for tests that import the real package later
        for key in [k for k in sys.modules if k == "kalavai_utils" or k.startswith("kalavai_utils.")]:
            del sys.modules[key]


readme, paper, scales = _import_light("kalavai_utils.reports.readme", "kalavai_utils.paper", "kalavai_utils.scales")

# Numbers in prose that are not results: versions are skipped by shape (two dots); these remain.
ALLOWED = {  # as written -> why it is not a result
    "1.4B": "Pythia-1.4B, the paper's capacity control model (a model's name)",
    "6.9": "the 6.9b scale's name",
    "6.9B": "Pythia-6.9B, a model's name",
    "12.6": "CUDA 12.6, the PyTorch wheel index environment.yml names",
}

# Numbers measured outside results/ (the calibration runs of settings no longer in the code) sit in
# `<!-- unchecked: REASON -->` ... `<!-- /unchecked -->`, in docs/ only, with the reason stated.
UNCHECKED = re.compile(r"<!-- unchecked:(.*?)-->\n.*?<!-- /unchecked -->", re.S)
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
# A decimal: digits, one point, digits; optional thousands commas; optional SI suffix. Not part of a version.
DECIMAL = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})*|\d+)\.(\d+)(?![\d.]*\d)([kMB](?![a-z]))?")
SUFFIX = {"k": 1e3, "M": 1e6, "B": 1e9, None: 1.0}


PERCENT_OF = ("fraction", "share", "mfu")  # keys whose values a page may write as percentages


def _numbers(value, out: set, percent: bool = False):
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        out.add(abs(float(value)))
        if percent:
            out.add(abs(100 * float(value)))
    elif isinstance(value, str):
        for m in re.finditer(r"\d+(?:\.\d+)?", value):  # keys such as "0.5" or "step125"
            out.add(float(m.group()))
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "gates":  # thousands of gate weights, never written in prose, would match nearly anything
                continue
            _numbers(k, out)
            _numbers(v, out, percent or any(w in str(k) for w in PERCENT_OF))
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            _numbers(v, out, percent)
    elif dataclasses.is_dataclass(value):
        _numbers(dataclasses.asdict(value), out)


def known_numbers() -> set[float]:
    """Every number that results/**/*.json, paper.py, PAPER.md and the scales hold (fractions and shares also as %)."""
    found: set[float] = set()
    for path in sorted((ROOT / "results").rglob("*.json")):
        _numbers(json.loads(path.read_text()), found)
    _numbers(readme.headline_figures(readme.load_summaries(ROOT / "results" / "tiny")), found)
    for name in dir(paper):
        if name.isupper():
            _numbers(getattr(paper, name), found)
    for m in re.finditer(r"\d+(?:,\d{3})*(?:\.\d+)?", (ROOT / "PAPER.md").read_text()):
        found.add(float(m.group().replace(",", "")))
    _numbers({name: scales.get_scale(name) for name in scales.SCALES}, found)
    return found


def prose_lines(text: str):
    """(line number, text) outside generated blocks and fenced code, with inline code and link targets blanked."""

    def blank(m):
        return re.sub(r"[^\n]", " ", m.group())

    text = readme.BLOCK.sub(blank, text)
    text = UNCHECKED.sub(blank, text)
    text = CODE_BLOCK.sub(blank, text)
    for i, line in enumerate(text.splitlines(), 1):
        yield i, LINK_TARGET.sub("]()", INLINE_CODE.sub("``", line))


def written_decimals(line: str):
    """(as written, value, decimals) for every decimal number in a line of prose."""
    for m in DECIMAL.finditer(line):
        whole, frac, suffix = m.group(1).replace(",", ""), m.group(2), m.group(3)
        yield m.group(), float(f"{whole}.{frac}") * SUFFIX[suffix], len(frac) - (len(str(int(SUFFIX[suffix]))) - 1)


def matches(value: float, decimals: int, known: set[float], sorted_known: list[float]) -> bool:
    """Whether some known number rounds, at the written precision, to the written value."""
    import bisect

    half = 0.5 * 10**-decimals + 1e-9
    i = bisect.bisect_left(sorted_known, value - half)
    return i < len(sorted_known) and sorted_known[i] <= value + half


def unknown_numbers(files, known: set[float]) -> list[str]:
    ordered = sorted(known)
    bad = []
    for path in files:
        for i, line in prose_lines(path.read_text(encoding="utf-8")):
            for written, value, decimals in written_decimals(line):
                if written in ALLOWED or matches(value, decimals, known, ordered):
                    continue
                bad.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{i}: {written}")
    return bad


DOC_FILES = readme.doc_files(ROOT)


def test_generated_blocks_equal_what_render_docs_makes_now():
    stale = readme.render_docs(ROOT, "tiny", write=False)
    assert not stale, f"run `python -m kalavai_utils render-docs`: stale blocks in {[str(p) for p in stale]}"
    assert "<!-- generated:results-at-a-glance -->" in (ROOT / "README.md").read_text()


def test_every_decimal_outside_generated_blocks_is_a_known_number():
    assert len(DOC_FILES) > 1, "docs/*.md not found"
    bad = unknown_numbers(DOC_FILES, known_numbers())
    assert not bad, "numbers found in no results file, paper.py or PAPER.md:\n" + "\n".join(bad)


def test_unchecked_blocks_are_few_and_say_why():
    for path in DOC_FILES:
        blocks = UNCHECKED.findall(path.read_text(encoding="utf-8"))
        assert path.parent.name == "docs" or not blocks, f"{path.name}: no unchecked numbers on the front page"
        assert all(len(reason.strip()) > 20 for reason in blocks), f"{path.name}: an unchecked block without a reason"


def test_a_made_up_number_is_flagged(tmp_path):
    page = tmp_path / "made_up.md"
    page.write_text(
        "The fused model gains +6.55 % (true) and +6.83 % (made up).\n"
        "```\nignored 6.83\n```\n`ignored 6.83` and Python 3.11.7 and 1.3M parameters.\n"
    )
    assert unknown_numbers([page], known_numbers()) == [f"{page}:1: 6.83"]


def test_a_stale_block_is_rewritten():
    text = "a\n<!-- generated:run-times -->\nold 12.34 s\n<!-- /generated -->\nb\n"
    new = readme.render_text(text, ROOT / "results" / "tiny")
    assert "old 12.34" not in new and new.startswith("a\n<!-- generated:run-times -->\nThe reference")
    assert readme.render_text(new, ROOT / "results" / "tiny") == new
    with pytest.raises(readme.KalavaiError):
        readme.render_text("<!-- generated:nope -->\n<!-- /generated -->", ROOT / "results" / "tiny")


def test_verdicts_use_one_vocabulary():
    assert [readme.verdict(v) for v in (True, False, None)] == ["holds", "does not hold", "inconclusive"]
    table = readme.render_glance(ROOT / "results" / "tiny")
    words = {w for row in table.splitlines()[2:] for w in re.split(r"[;(]", row.split(" | ")[3])}
    assert {w.strip().removeprefix("like for like: ") for w in words} - {
        "holds",
        "does not hold",
        "inconclusive",
        "notebook 04's band)",
        "paper's)",
        "",
    } == set()


def test_headline_figures_are_mean_and_sample_std_over_seeds():
    main = json.loads((ROOT / "results" / "tiny" / "03_fusion.json").read_text())["summary"]["main"]
    gains = [main[s]["gain_vs_best_pct"]["fused:mlp:sequence"] for s in main]
    fig = readme.headline_figures(readme.load_summaries(ROOT / "results" / "tiny"))["main"]["gain_vs_best_pct"]
    mean = sum(gains) / len(gains)
    std = (sum((g - mean) ** 2 for g in gains) / (len(gains) - 1)) ** 0.5
    stat = fig["fused:mlp:sequence"]
    assert (stat["mean"], stat["std"], stat["n"]) == pytest.approx((mean, std, len(gains)))
    assert stat["by_seed"] == {s: main[s]["gain_vs_best_pct"]["fused:mlp:sequence"] for s in main}
    json.dumps(fig)  # storable beside the summaries


def test_readme_is_a_front_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move reference material to docs/"
