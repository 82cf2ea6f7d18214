"""The executed notebooks a reader opens on the repository page (executed/<scale>/NN_name.ipynb).

They are the run's own executed notebooks (runs/<scale>/notebooks/), written by the same
export step as the reference summaries (results/<scale>/), so the two always come from one run.
What changes on the way is what would make every rerun a diff without changing what a reader
sees: papermill's and Jupyter's timestamps and durations, the machine's absolute paths, and the
kernel's execution counts (renumbered 1, 2, ... in cell order). Tables, figures, printed text and
verdicts are kept as the run produced them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from ..errors import KalavaiError
from ..storage import atomic_write_text

# Cell and notebook metadata that only record when and where a run happened.
VOLATILE_CELL_METADATA = ("execution", "papermill")
KEPT_PAPERMILL_METADATA = ("parameters",)


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without run-specific metadata; raises if any cell was not run or failed."""
    papermill = nb.metadata.get("papermill", {})
    if papermill.get("exception"):
        raise KalavaiError("the notebook stopped on an exception; export a finished run")
    nb.metadata["papermill"] = {k: papermill[k] for k in KEPT_PAPERMILL_METADATA if k in papermill}
    count = 0
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is None:
            raise KalavaiError(f"cell {cell.get('id', '?')} was never run")
        count += 1
        cell.execution_count = count
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                raise KalavaiError(f"cell {cell.get('id', '?')} failed: {out.get('ename')}")
            if "execution_count" in out:
                out.execution_count = count
    return nb


def export_executed(runs_dir, out_dir) -> list[Path]:
    """Write out_dir/NN_name.ipynb for every executed notebook of the run (none for a run made without
    the notebooks, e.g. by `train-cooperative`); returns the paths written."""
    found = sorted((Path(runs_dir) / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    written = []
    for path in found:
        try:
            nb = clean(nbformat.read(path, as_version=4))
        except KalavaiError as e:
            raise KalavaiError(f"{path}: {e}") from None
        written.append(atomic_write_text(Path(out_dir) / path.name, nbformat.writes(nb) + "\n"))
    return written
