"""./run_all.sh killed between notebooks resumes with only what was left, and keeps its timings and report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ONLY = "00,01,02"


def snapshot(*folders: Path) -> dict[str, tuple[bool, int, bytes]]:
    """Every file: (inside a step's folder, mtime, content)."""
    steps = [s.parent for f in folders for s in f.rglob("step.json")]
    return {
        str(p): (any(p.is_relative_to(s) for s in steps), p.stat().st_mtime_ns, p.read_bytes())
        for f in folders
        for p in sorted(f.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.notebooks
def test_killed_run_resumes_without_redoing_finished_notebooks(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "KALAVAI_RUNS": str(runs), "KALAVAI_PYTHON": sys.executable}
    cmd = ["./run_all.sh", "--scale", "smoke", "--only", ONLY]
    folder = runs / "smoke"
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        # its own process group, so the kill reaches the runner, not only the shell
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 150
        try:
            while not (folder / "notebooks" / "01_base.ipynb").exists():
                assert proc.poll() is None, f"run ended before 01 finished:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"01 not finished in time:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert not (folder / "notebooks" / "02_specialists.ipynb").exists(), "killed too late: 02 had finished"
    first = json.loads((folder / "timings.json").read_text())
    assert set(first["notebooks"]) == {"00_data", "01_base"}

    # What 00 and 01 made: the data, the tokenizer, the base and its revisions.
    finished = snapshot(folder / "data", folder / "base")
    assert any(p.endswith("step.json") for p in finished) and any(p.endswith(".safetensors") for p in finished)

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "02_specialists" in rerun.stdout and "last run" in rerun.stdout  # expectation from the first run's timings

    # The finished notebooks ran again, but every step they had finished came from its folder:
    # no file of a finished step was rewritten (an index beside the steps, such as a corpus's
    # manifest.json, may be rewritten, with the same content).
    after = snapshot(folder / "data", folder / "base")
    redone = [p for p, (in_step, mtime, _) in finished.items() if in_step and after.get(p, (0, 0))[1] != mtime]
    assert not redone, f"the rerun redid finished steps: {redone[:5]}"
    changed = [p for p, (_, _, content) in finished.items() if after.get(p, (0, 0, None))[2] != content]
    assert not changed, f"the rerun changed finished outputs: {changed[:5]}"

    timings = json.loads((folder / "timings.json").read_text())
    assert set(timings["notebooks"]) == {"00_data", "01_base", "02_specialists"}
    assert timings["scale"] == "smoke" and timings["cpu_count"] == os.cpu_count() and timings["torch_threads"] >= 1
    assert timings["total_seconds"] == pytest.approx(sum(t["seconds"] for t in timings["notebooks"].values()), abs=0.05)
    index = (folder / "report" / "index.html").read_text()
    for stem in timings["notebooks"]:
        page = folder / "report" / f"{stem}.html"
        assert f'href="{stem}.html"' in index and page.stat().st_size > 0
        assert "<html" in page.read_text()[:2000].lower()
