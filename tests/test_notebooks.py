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


@pytest.mark.notebooks
def test_all_notebooks_run_at_smoke(tmp_path):
    written = notebooks.run_notebooks("smoke", runs_root=str(tmp_path))
    assert [p.name for p in written] == [p.name for p in notebooks.available().values()]
    results = sorted((tmp_path / "smoke").rglob("results.json"))
    assert results, "no results files written"
    record = json.loads(results[0].read_text())
    for per_domain in record["gates"].values():  # gates averaged during evaluation: a distribution per domain
        assert all(abs(sum(g) - 1) < 1e-4 for g in per_domain.values())
    verdict = nbformat.read(tmp_path / "smoke" / "notebooks" / "03_fusion.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in verdict.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "claims hold at scale smoke" in text
