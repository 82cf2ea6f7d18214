"""The executed notebooks a reader opens on the repository page (executed/<scale>/NN_name.ipynb).

They are the run's own executed notebooks (runs/<scale>/notebooks/), written by the same
export step as the reference summaries (results/<scale>/), so the two always come from one run.
What changes on the way is what would make every rerun a diff without changing what a reader
sees: papermill's and Jupyter's timestamps and durations, the kernel's execution counts
(renumbered 1, 2, ... in cell order), and the machine's absolute paths, which the printed text
shows relative to the repository (the run folder as runs/<scale>). Tables, figures, printed
numbers and verdicts are kept as the run produced them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from ..errors import KalavaiError
from ..storage import atomic_write_text

# Cell and notebook metadata that only record when and where a run happened.
VOLATILE_CELL_METADATA = ("execution", "papermill")
KEPT_PAPERMILL_METADATA = ("parameters",)


TEXT_OUTPUTS = ("text/plain", "text/html", "text/markdown")


def _relative(text, paths: list[tuple[str, str]]):
    joined = "".join(text) if isinstance(text, list) else text
    for absolute, shown in paths:
        joined = joined.replace(absolute, shown)
    return joined


def clean(nb: nbformat.NotebookNode, paths: list[tuple[str, str]] = ()) -> nbformat.NotebookNode:
    """The notebook without run-specific metadata, each absolute path of `paths` ((absolute, shown)
    pairs, the longest first) shown as given; raises if any cell was not run or failed."""
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
            if out.output_type == "stream":
                out.text = _relative(out.text, paths)
            for mime in TEXT_OUTPUTS:
                if mime in out.get("data", {}):
                    out.data[mime] = _relative(out.data[mime], paths)
    return nb


def export_executed(runs_dir, out_dir, root=None) -> list[Path]:
    """Write out_dir/NN_name.ipynb for every executed notebook of the run (none for a run made without
    the notebooks, e.g. by `train-cooperative`); returns the paths written. Paths under the run
    folder, under the checkout that ran the notebook (papermill records its source) or under
    `root` are shown relative to the repository."""
    found = sorted((Path(runs_dir) / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    runs = Path(runs_dir).resolve()
    written = []
    for path in found:
        nb = nbformat.read(path, as_version=4)
        source = nb.metadata.get("papermill", {}).get("input_path")
        roots = {
            str(Path(r).resolve()) for r in ([Path(source).parent.parent] if source else []) + ([root] if root else [])
        }
        paths = [(str(runs), f"runs/{runs.name}")] + [(f"{r}/", "") for r in sorted(roots, key=len, reverse=True)]
        try:
            nb = clean(nb, paths)
        except KalavaiError as e:
            raise KalavaiError(f"{path}: {e}") from None
        written.append(atomic_write_text(Path(out_dir) / path.name, nbformat.writes(nb) + "\n"))
    return written
