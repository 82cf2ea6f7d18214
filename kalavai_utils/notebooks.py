"""Run the numbered notebooks headless with papermill, each with its parameters cell filled in."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import KalavaiError
from .pipeline import ROOT, run_dir
from .scales import get_scale

NOTEBOOK_DIR = ROOT / "notebooks"


def available() -> dict[str, Path]:
    """Notebook number ("00", "01", ...) -> path."""
    return {p.name[:2]: p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))}


def select(only: str | None) -> list[Path]:
    notebooks = available()
    if not only:
        return list(notebooks.values())
    wanted = [n.strip().zfill(2) for n in only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in notebooks]
    if unknown:
        raise KalavaiError(f"unknown notebook number(s) {', '.join(unknown)}; available: {', '.join(notebooks)}")
    return [notebooks[n] for n in sorted(wanted)]


def parse_seeds(seeds: str | None) -> list[int] | None:
    if not seeds:
        return None
    try:
        return [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise KalavaiError(f"--seeds takes comma-separated integers, got {seeds!r}") from None


def run_notebooks(scale_name: str, only: str | None = None, seeds: str | None = None,
                  runs_root: str | None = None, kernel: str | None = None) -> list[Path]:
    import papermill as pm

    # Headless runs keep their progress bars but update them rarely: every refresh is stored
    # in the executed notebook, and a 500-step loop would otherwise add thousands of outputs.
    os.environ.setdefault("TQDM_MININTERVAL", "30")
    scale = get_scale(scale_name)
    selected = select(only)
    parsed_seeds = parse_seeds(seeds)
    out_dir = run_dir(scale, runs_root) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"scale": scale.name, "seeds": parsed_seeds, "runs_root": str(Path(runs_root).resolve()) if runs_root else None}
    written = []
    for nb in selected:
        out = out_dir / nb.name
        tmp = out.with_name(f".{nb.stem}.running.ipynb")
        print(f"[kalavai] {nb.name} at scale {scale.name} -> {out}", flush=True)
        try:
            pm.execute_notebook(str(nb), str(tmp), parameters=params, kernel_name=kernel or "python3",
                                cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=False)
        except pm.PapermillExecutionError as e:
            failed = out.with_name(f"{nb.stem}.failed.ipynb")
            os.replace(tmp, failed)
            raise KalavaiError(f"notebook {nb.name} failed ({e.ename}: {e.evalue}); see {failed}") from None
        os.replace(tmp, out)  # a finished notebook appears whole or not at all
        written.append(out)
    return written
