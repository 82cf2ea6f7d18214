"""The executed notebooks committed for readers (executed/tiny/) are the current notebooks, run to
the end by the reference run, and show the verdicts its summaries (results/tiny/) hold."""

import json
import re

import nbformat
import pytest
from test_notebooks import assert_readable

from kalavai_utils import notebooks, verdicts
from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.pipeline import ROOT
from kalavai_utils.reports import executed

EXECUTED = ROOT / "executed" / "tiny"
RESULTS = ROOT / "results" / "tiny"
# GitHub stops rendering a notebook well before 10 MB; a reader's browser wants far less.
MAX_EXECUTED_BYTES = 1_500_000


def _code(nb):
    return [
        c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]


def _executed():
    return {p.name: p for p in sorted(EXECUTED.glob("[0-9][0-9]_*.ipynb"))}


def test_every_notebook_has_its_executed_copy_of_the_current_source():
    found = _executed()
    assert list(found) == [p.name for p in notebooks.available().values()]
    for name, path in found.items():
        run = nbformat.read(path, as_version=4)
        source = nbformat.read(notebooks.NOTEBOOK_DIR / name, as_version=4)
        assert _code(run) == _code(source), f"{name}: its code differs from notebooks/{name}: rerun and export"
        assert [c.source for c in run.cells if c.cell_type == "markdown"] == [
            c.source for c in source.cells if c.cell_type == "markdown"
        ], f"{name}: its text differs from notebooks/{name}"


@pytest.mark.parametrize("name", sorted(_executed()))
def test_executed_copy_ran_every_cell_and_reads_like_the_paper(name):
    path = EXECUTED / name
    assert path.stat().st_size < MAX_EXECUTED_BYTES, f"{name}: {path.stat().st_size} bytes"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    injected = [c for c in code if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'scale = "tiny"' in injected[0].source
    text = path.read_text()
    assert not re.search(r'"(start_time|end_time|duration|iopub\.[a-z_.]+)"', text), f"{name}: run timestamps left in"
    assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text, f"{name}: a machine's path left in"
    assert_readable(path)


def _table_rows(nb) -> dict[str, list[str]]:
    """Every row of every HTML table the notebook shows, keyed by its first cell (a verdict table's claim id)."""
    rows = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html", "")
            for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
                cells = [c.strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
                if cells:
                    rows.setdefault(cells[0], cells)
    return rows


@pytest.mark.parametrize("name", sorted(_executed()))
def test_executed_copy_shows_the_verdicts_its_summary_holds(name):
    summary = json.loads((RESULTS / name.replace(".ipynb", ".json")).read_text())["summary"]
    held = summary.get("verdicts", {})
    rows = _table_rows(nbformat.read(EXECUTED / name, as_version=4))
    for claim_id, v in held.items():
        assert claim_id in rows, f"{name} shows no verdict {claim_id}"
        assert verdicts.word(v["holds"]) in rows[claim_id][1:], (
            f"{name}: {claim_id} is not shown as {verdicts.word(v['holds'])}"
        )


def test_clean_refuses_an_unfinished_notebook_and_drops_run_metadata():
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"input_path": "/work/x.ipynb", "start_time": "t", "parameters": {"scale": "tiny"}}
    done = nbformat.v4.new_code_cell("1 + 1", execution_count=7, metadata={"execution": {"iopub.status.idle": "t"}})
    done.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=7)]
    nb.cells = [nbformat.v4.new_markdown_cell("# x"), done]
    shown = nbformat.v4.new_code_cell("print(runs)", execution_count=8)
    shown.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="runs in /data/x/runs/tiny, figures in /repo/figures\n")
    ]
    nb.cells.append(shown)
    cleaned = executed.clean(nb, [("/data/x/runs/tiny", "runs/tiny"), ("/repo/", "")])
    assert cleaned.cells[2].outputs[0].text == "runs in runs/tiny, figures in figures\n"
    assert cleaned.cells[2].source == "print(runs)"
    assert cleaned.metadata["papermill"] == {"parameters": {"scale": "tiny"}}
    assert cleaned.cells[1].execution_count == 1 and cleaned.cells[1].outputs[0].execution_count == 1
    assert "execution" not in cleaned.cells[1].metadata
    nb.cells.append(nbformat.v4.new_code_cell("never run"))
    with pytest.raises(KalavaiError, match="never run"):
        executed.clean(nb)
    nb.cells[-1].execution_count = 3
    nb.cells[-1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    with pytest.raises(KalavaiError, match="failed: ValueError"):
        executed.clean(nb)
