"""The prepared GPU check (scripts/gpu_check.sh, kalavai_utils/gpu_check.py) without a GPU: the wheels'
bookkeeping and travel check, the data step's cache, a part stopped at its cap with its children, the
plan's estimates, and (slow) the whole `run --dry` at scale smoke, JSON and $OUT copies included."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kalavai_utils import gpu_check
from kalavai_utils.errors import KalavaiError

ROOT = Path(__file__).resolve().parent.parent


def _fake_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in gpu_check.wheel_specs():
        (folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"x")


def test_every_wheel_is_pinned_by_the_constraints():
    specs = gpu_check.wheel_specs()
    assert [n for n, _ in specs] == list(gpu_check.WHEELS) and all(v for _, v in specs)
    pins = {gpu_check._norm(n): v for n, v in specs if n != "papermill"}
    with pytest.raises(KalavaiError, match=r"no version in constraints-cpu.txt for papermill \("):
        gpu_check.wheel_specs(pins)


def test_wheel_files_are_found_by_their_escaped_names(tmp_path):
    (tmp_path / "jupyter_client-8.10.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "rpds_py-2026.9.1-cp312-cp312-manylinux_2_17_x86_64.whl").write_bytes(b"")
    assert gpu_check.wheel_file(tmp_path, "jupyter-client", "8.10.0").name.startswith("jupyter_client")
    assert gpu_check.wheel_file(tmp_path, "rpds-py", "2026.9.1") is not None
    assert gpu_check.wheel_file(tmp_path, "jupyter_client", "8.9.0") is None


def test_prepare_finds_its_wheels_drops_other_versions_and_checks_the_travel_size(tmp_path, monkeypatch):
    wheels = tmp_path / "whl"
    _fake_wheels(wheels)
    stale = wheels / "papermill-2.0.0-py3-none-any.whl"  # two versions of one package would stop the install
    stale.write_bytes(b"x")
    record = gpu_check.prepare(wheels, download=False)
    assert record["cache_hit"] and record["downloaded"] == 0 and not stale.exists()
    assert 0 < record["travel_mib"] <= gpu_check.TRAVEL_LIMIT_MIB
    monkeypatch.setattr(gpu_check, "TRAVEL_LIMIT_MIB", 0)
    with pytest.raises(KalavaiError, match="over the device tool's 0 MiB"):
        gpu_check.prepare(wheels, download=False)
    next(wheels.glob("papermill-*.whl")).unlink()
    with pytest.raises(KalavaiError, match="1 wheels missing"):
        gpu_check.prepare(wheels, download=False)


def test_install_refuses_another_python_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "stack_importable", lambda env=None: False)
    monkeypatch.setattr(gpu_check, "target_python", lambda: "2.7.18")
    with pytest.raises(KalavaiError, match="the wheels are for Python 2.7"):
        gpu_check.install(tmp_path, tmp_path / "site")


def test_data_step_is_cached_on_its_second_call(tmp_path):
    first = gpu_check.prepare_data("smoke", tmp_path)
    assert not first["cache_hit"] and first["mib"] > 0 and "+py" in first["generator"]
    assert (tmp_path / "smoke" / "data" / "tokenizer" / "tokenizer.json").exists()
    second = gpu_check.prepare_data("smoke", tmp_path)
    assert second["cache_hit"] and second["mib"] == first["mib"]
    assert json.loads(gpu_check.data_record_path(tmp_path, "smoke").read_text())["cache_hit"]
    with pytest.raises(KalavaiError, match="fetch"):
        gpu_check.prepare_data("410m", tmp_path)


def test_a_stopped_training_reports_its_steps_and_rate_from_its_saved_state(tmp_path):
    import torch
    from transformers import GPTNeoXForCausalLM

    from kalavai_utils.protocol.models import offline_config
    from kalavai_utils.protocol.training import TrainConfig, train_causal_lm
    from kalavai_utils.scales import get_scale

    scale = get_scale("smoke")
    runs = tmp_path / "smoke"
    model = GPTNeoXForCausalLM(offline_config(scale))
    chunks = torch.randint(0, scale.vocab_size, (16, scale.seq_len))
    cfg = TrainConfig.specialist(scale, 0, steps=4, curve_every=0)
    train_causal_lm(model, chunks, cfg, checkpoint_dir=runs / "base" / "checkpoint", save_every=2)
    (stopped,) = gpu_check.training_progress(runs)  # the state saved at its last step, as a killed run leaves it
    assert stopped["training"] == "base" and not stopped["finished"]
    assert stopped["steps"] == stopped["of_steps"] == 4 and stopped["tokens_per_s"] > 0


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_a_part_past_its_cap_is_stopped_with_its_children(tmp_path):
    child = "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    child += "; print('grandchild', p.pid, flush=True); time.sleep(60)"
    began = time.monotonic()
    with open(tmp_path / "log", "wb") as log:
        status, code, seconds, tail = gpu_check.run_part([sys.executable, "-c", child], 2, dict(os.environ), log)
    assert status == "timed out" and code is None and seconds < 2 + gpu_check.KILL_GRACE_S
    assert time.monotonic() - began < 30
    pid = int(tail.split("grandchild", 1)[1].split()[0])
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert "grandchild" in (tmp_path / "log").read_text()


def test_a_failed_part_reports_its_error_line():
    assert (
        gpu_check._error_line("[kalavai] working\nerror: notebook 01 failed (X)\n") == "error: notebook 01 failed (X)"
    )
    trace = "Traceback (most recent call last):\n  File 'x', line 1\nKeyError: 'min_seconds'\n"
    assert gpu_check._error_line(trace) == "KeyError: 'min_seconds'"


def test_plan_names_every_part_and_takes_its_estimates_from_the_committed_files():
    rows = gpu_check.parts(False, Path("runs/gpu-check"), Path(".whl"), Path("/tmp/site"))
    assert [p.name for p in rows] == ["install", "benchmark", "inference", "data", "notebooks"]
    assert rows[-1].cap_s is None and "--seeds 42" in " ".join(rows[-1].args)
    est = gpu_check.estimates()
    assert 0 < est["benchmark"]["seconds"] < gpu_check.CAPS["benchmark"]
    assert 0 < est["inference"]["seconds"] < gpu_check.CAPS["inference"]
    assert 0 < est["notebooks"]["seconds"] < est["notebooks"]["seconds_high"]
    text = gpu_check.describe_plan(rows, gpu_check.BUDGET_S)
    assert "results/410m/training_shapes_h100.json" in text and "results/synthetic-25m/benchmark_h100.json" in text
    for p in rows:
        assert " ".join(p.args) in text


def test_the_script_refuses_an_unknown_stage_in_one_line():
    done = subprocess.run(["scripts/gpu_check.sh", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: unknown stage")


@pytest.mark.slow
@pytest.mark.notebooks
def test_dry_run_end_to_end_then_every_part_cached(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "KALAVAI_PYTHON": sys.executable, "OUT": str(out)}
    cmd = ["scripts/gpu_check.sh", "run", "--dry", "--runs-root", str(tmp_path / "runs"), "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check-cpu.json").read_text())
    assert report["schema"] == gpu_check.SCHEMA and report["dry"] and report["device_name"] == "cpu"
    assert report["versions"]["torch"] and report["seconds"] < gpu_check.BUDGET_S
    status = {p["name"]: p["status"] for p in report["parts"]}
    assert status == {"install": "skipped", "benchmark": "ok", "inference": "ok", "data": "ok", "notebooks": "ok"}
    assert report["benchmark"]["scale"] == "smoke" and report["benchmark"]["training"]["tokens_per_s"] > 0
    assert report["inference"]["forward_x_single"]["batch1 dense"]["latency_x_single"] > 0
    assert report["data"]["scale"] == "smoke" and not report["data"]["cache_hit"]
    notebooks = report["notebooks"]
    assert set(notebooks["timings"]) == {"00_data", "01_base", "02_specialists", "03_fusion"}
    assert "03_fusion" in notebooks["summaries"] and all(t["finished"] for t in notebooks["trainings"])
    assert {Path(p).name for p in report["copied_to_out"]} == {
        "gpu-check-cpu.json",
        "benchmark.json",
        "inference.json",
        "gpu-check.log",
    }
    assert json.loads((out / "gpu-check-cpu.json").read_text())["parts"] == report["parts"]

    # a second run in the same folder: every finished part is reused, nothing runs again
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    parts = json.loads((tmp_path / "gpu-check-cpu.json").read_text())["parts"]
    assert all(p.get("cached") for p in parts if p["name"] != "install")
    assert "[gpu-check] benchmark:" not in again.stdout
