"""Every numbered notebook executes headless under papermill at the smoke scale."""

import json

import nbformat
import pytest

from kalavai_utils import notebooks


def test_every_notebook_has_a_parameters_cell():
    found = notebooks.available()
    assert list(found) == sorted(found) and len(found) >= 5
    for path in found.values():
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path
        assert "scale" in tagged[0].source and "seeds" in tagged[0].source and "runs_root" in tagged[0].source
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path} has committed outputs"


# At smoke a notebook's outputs are a few tables and figures; progress-bar refreshes stored
# as outputs made them grow to hundreds of KB at tiny.
MAX_NOTEBOOK_BYTES = 400_000


def assert_readable(path):
    """No progress-bar refreshes, no warnings, and the figures it saves shown: it reads like the paper."""
    nb = nbformat.read(path, as_version=4)
    outputs = [out for cell in nb.cells for out in cell.get("outputs", [])]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    text_bytes = sum(len(json.dumps(out)) for out in outputs if out not in images)
    assert text_bytes < MAX_NOTEBOOK_BYTES, f"{path.name}: {text_bytes} bytes of text outputs"
    saves = sum("figures.save(" in cell.source for cell in nb.cells if cell.cell_type == "code")
    assert len(images) >= min(saves, 1), f"{path.name} saves figures but shows none"
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type != "stream":
                continue
            where = f"{path.name} cell {i} ({out.name})"
            assert "\r" not in out.text, f"{where}: progress-bar output {out.text[:120]!r}"
            assert "IProgress" not in out.text, where
            assert "Warning" not in out.text, f"{where}: {out.text[:300]!r}"


@pytest.mark.slow
@pytest.mark.notebooks
def test_all_notebooks_run_at_smoke(tmp_path):
    written = notebooks.run_notebooks("smoke", runs_root=str(tmp_path))
    assert [p.name for p in written] == [p.name for p in notebooks.available().values()]
    for path in written:
        assert_readable(path)
    results = sorted((tmp_path / "smoke").rglob("results.json"))
    assert results, "no results files written"
    record = json.loads(results[0].read_text())
    for per_domain in record["gates"].values():  # gates averaged during evaluation: a distribution per domain
        assert all(abs(sum(g) - 1) < 1e-4 for g in per_domain.values())
    verdict = nbformat.read(tmp_path / "smoke" / "notebooks" / "03_fusion.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in verdict.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "claims hold at scale smoke" in text
