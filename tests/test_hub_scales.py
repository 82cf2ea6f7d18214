"""The paper's scales end to end against the stand-in Hub (tests/local_hub.py), by the commands a user
types: every notebook at 410m, the main result at 1b and, sharded over two CPU processes, at 6.9b;
`fetch` and an offline rerun on "another machine"; the preflight, and a revision without safetensors.

Every run sets KALAVAI_SIZES=ci (scales.CI_SIZES: steps, documents, batches and seeds cut, never a
code path) and talks to the Hub through the unmodified huggingface_hub, transformers and datasets.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kalavai_utils.experiments import ablations
from kalavai_utils.notebooks import available

ROOT = Path(__file__).resolve().parents[1]
PYTHIA, REVISION = "EleutherAI/pythia-410m", "step10000"
pytestmark = [pytest.mark.slow, pytest.mark.notebooks]


def _env(hub, hf_home: Path, runs: Path, offline: bool = False, **extra) -> dict:
    env = hub.env(hf_home)
    env |= {
        "KALAVAI_SIZES": "ci",
        "KALAVAI_RUNS": str(runs),
        "KALAVAI_PYTHON": sys.executable,
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run(cmd: list[str], env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def kalavai(*args) -> list[str]:
    return [sys.executable, "-m", "kalavai_utils", *args]


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (done.stdout[-4000:] + done.stderr[-4000:]).strip()
    return done.stdout


def executed(runs: Path, scale: str) -> list[str]:
    return sorted(p.stem for p in (runs / scale / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _recorded_commits(runs: Path, scale: str) -> dict[str, tuple[str, str]]:
    """domain -> (dataset, the commit its chunks record having read), over every chunk folder of the run."""
    out = {}
    for record in (runs / scale / "data").glob("*/*/chunks.json"):
        source = json.loads(record.read_text())["source"]
        out[record.parent.name] = (source["dataset"], source["resolved_revision"])
    return out


def test_every_notebook_at_410m(local_hub, local_hub_mirror, tmp_path):
    runs, figures = tmp_path / "runs", ROOT / "figures" / "410m"
    had_figures = figures.exists()
    start = len(local_hub.requests)
    every_section = ",".join(ablations.SECTIONS)  # the opt-in crossover ladder too
    out = ok(
        run(
            ["./run_all.sh", "--scale", "410m", "--ablation-sections", every_section],
            _env(local_hub, tmp_path / "hf", runs),
        )
    )
    assert "preflight: all" in out
    assert executed(runs, "410m") == [nb.stem for nb in available().values()]  # all eight
    assert not local_hub.unexpected(start), local_hub.unexpected(start)[:5]
    # what each domain records is the commit the Hub served for the manifest's branch
    commits = _recorded_commits(runs, "410m")
    assert len(commits) >= 20
    for domain, (dataset, commit) in commits.items():
        manifest = json.loads((ROOT / "data_manifests" / f"{domain}.json").read_text())
        assert commit == local_hub_mirror.commit("dataset", dataset, manifest["revision"]), domain
    # a code-path test writes no figure where readers look for results
    assert had_figures or not figures.exists()
    assert list((runs / "410m" / "figures").glob("*.png"))


def test_main_result_at_1b(local_hub, tmp_path):
    runs = tmp_path / "runs"
    env = _env(local_hub, tmp_path / "hf", runs)
    ok(run(["./run_all.sh", "--scale", "1b", "--only", "00,01,02,03", "--seeds", "42"], env))
    assert executed(runs, "1b") == ["00_data", "01_base", "02_specialists", "03_fusion"]


def test_main_result_at_6_9b_sharded_over_two_processes(local_hub, tmp_path):
    runs = tmp_path / "runs"
    env = _env(local_hub, tmp_path / "hf", runs, KALAVAI_FSDP="1", OMP_NUM_THREADS="1")
    out = ok(run(["./run_all.sh", "--scale", "6.9b", "--processes", "2", "--seeds", "42"], env))
    assert "over 2 processes" in out
    assert executed(runs, "6.9b") == ["00_data", "01_base", "02_specialists", "03_fusion"]
    timings = json.loads((runs / "6.9b" / "timings.json").read_text())
    assert "train-cooperative" in timings["notebooks"]


def test_fetch_then_offline_on_another_machine(local_hub, local_hub_mirror, tmp_path):
    only = "00,01,02,03"
    here, there = tmp_path / "here", tmp_path / "there"
    # offline before anything was fetched: the preflight names every missing piece and the command that fetches it
    missing = run(
        kalavai("preflight", "--scale", "410m", "--only", only), _env(local_hub, here / "hf", here / "runs", True)
    )
    # one model, three domains and notebook 03's multiple-choice task
    assert missing.returncode == 2 and "preflight: 5 of 5 needs missing" in missing.stderr
    lines = missing.stdout.splitlines()
    assert len(lines) == 5 and all(
        line.startswith("MISSING") and "kalavai_utils fetch --scale 410m" in line for line in lines
    )

    out = ok(run(kalavai("fetch", "--scale", "410m", "--only", only), _env(local_hub, here / "hf", here / "runs")))
    assert f"model {PYTHIA}@{REVISION}" in out and out.count("\ndomain ") + out.startswith("domain ") == 3
    assert "\ntask sciq: 150 items of allenai/sciq@" in out

    # another machine: a copy of the Hub cache and of the run's data folder, nothing else
    shutil.copytree(here / "hf", there / "hf", symlinks=True)
    shutil.copytree(here / "runs" / "410m" / "data", there / "runs" / "410m" / "data")
    before = len(local_hub.requests)
    env = _env(local_hub, there / "hf", there / "runs", offline=True)
    assert "preflight: all 5" in ok(run(kalavai("preflight", "--scale", "410m", "--only", only), env))
    ok(run(["./run_all.sh", "--scale", "410m", "--only", only, "--seeds", "42"], env))
    assert executed(there / "runs", "410m") == ["00_data", "01_base", "02_specialists", "03_fusion"]
    assert local_hub.requests[before:] == [], "the offline run asked the Hub"
    # it read what `fetch` read, and says so: the commit the Hub served
    for domain, (dataset, commit) in _recorded_commits(there / "runs", "410m").items():
        assert commit == local_hub_mirror.commit("dataset", dataset, "main"), domain
    sciq = json.loads((there / "runs" / "410m" / "data" / "tasks" / "sciq.json").read_text())
    assert sciq["resolved_revision"] == local_hub_mirror.commit("dataset", "allenai/sciq", "main")


def test_a_revision_without_safetensors_is_named_before_any_work(local_hub, local_hub_mirror, tmp_path):
    local_hub.use(local_hub_mirror.without_safetensors({(PYTHIA, REVISION)}))
    try:
        env = _env(local_hub, tmp_path / "hf", tmp_path / "runs")
        done = run(kalavai("preflight", "--scale", "410m", "--only", "00"), env)
        assert done.returncode == 2, done.stdout + done.stderr
        line = next(line for line in done.stdout.splitlines() if line.startswith("MISSING"))
        assert f"{PYTHIA}@{REVISION} has no model.safetensors, only pytorch_model.bin" in line
        assert done.stdout.count("MISSING") == 1  # the datasets are fine
        # the same cause when a notebook loads it anyway, as one line and exit 2
        code = "from kalavai_utils.protocol.models import load_causal_lm\nload_causal_lm(%r, %r)" % (PYTHIA, REVISION)
        loaded = run([sys.executable, "-c", code], env)
        assert loaded.returncode != 0 and "has no model.safetensors, only pytorch_model.bin" in loaded.stderr
        assert not (tmp_path / "runs").exists()  # nothing was prepared
        files = os.listdir(tmp_path / "hf") if (tmp_path / "hf").exists() else []
        assert not any("pytorch_model" in str(p) for p in (tmp_path / "hf").rglob("*")), files
    finally:
        local_hub.use(local_hub_mirror)
