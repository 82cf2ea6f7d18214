"""The one configuration surface (kalavai_utils/settings.py), the `env` command, and the capacity
control's pretraining fraction as notebook 05's parameter."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kalavai_utils import settings as S
from kalavai_utils.__main__ import main
from kalavai_utils.analysis import ablation_tables
from kalavai_utils.errors import KalavaiError
from kalavai_utils.experiments import ablations
from kalavai_utils.protocol import pipeline, training
from kalavai_utils.runtime import prefix, sharding, workers
from kalavai_utils.scales import get_scale

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (*S.NAMES, *S.RETIRED):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_todays():
    s = S.settings()
    assert s == S.Settings()
    assert (s.fsdp, s.compile, s.workers, s.prefix_cache_gb, s.venv, s.python) == (
        False,
        False,
        None,
        4.0,
        ".venv",
        None,
    )
    assert s.runs == ROOT / "runs"
    assert not sharding.fsdp_requested() and not training.compile_requested()
    assert prefix.budget_bytes() == 4 * 2**30
    assert pipeline.run_dir(get_scale("smoke")) == ROOT / "runs" / "smoke"


def test_values_reach_their_readers(monkeypatch, tmp_path):
    monkeypatch.setenv("KALAVAI_FSDP", "1")
    monkeypatch.setenv("KALAVAI_COMPILE", "1")
    monkeypatch.setenv("KALAVAI_WORKERS", "3")
    monkeypatch.setenv("KALAVAI_PREFIX_CACHE_GB", "0.5")
    monkeypatch.setenv("KALAVAI_RUNS", str(tmp_path))
    assert sharding.fsdp_requested() and training.compile_requested()
    assert workers.worker_count() == 3 and prefix.budget_bytes() == 2**29
    assert pipeline.run_dir(get_scale("smoke")) == tmp_path / "smoke"
    monkeypatch.setenv("KALAVAI_RUNS", "elsewhere")  # relative: from the repository root, as run_all.sh reads it
    assert pipeline.run_dir(get_scale("smoke")) == ROOT / "elsewhere" / "smoke"
    monkeypatch.setenv("KALAVAI_WORKERS", "")  # empty: unset
    assert S.settings().workers is None


@pytest.mark.parametrize(
    "name, bad, accepted",
    [
        ("KALAVAI_FSDP", "true", "must be 0 or 1"),
        ("KALAVAI_FSDP", "2", "must be 0 or 1"),
        ("KALAVAI_COMPILE", "yes", "must be 0 or 1"),
        ("KALAVAI_WORKERS", "abc", "must be a positive integer"),
        ("KALAVAI_WORKERS", "0", "must be a positive integer"),
        ("KALAVAI_WORKERS", "-2", "must be a positive integer"),
        ("KALAVAI_PREFIX_CACHE_GB", "lots", "must be a number >= 0"),
        ("KALAVAI_PREFIX_CACHE_GB", "-1", "must be a number >= 0"),
        ("KALAVAI_PREFIX_CACHE_GB", "inf", "must be a number >= 0"),
        ("KALAVAI_CAPACITY_PRETRAIN_FRACTION", "1", "no longer read: .*--capacity-pretrain-fraction"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, capsys, name, bad, accepted):
    monkeypatch.setenv(name, bad)
    with pytest.raises(KalavaiError) as e:
        S.settings()
    message = str(e.value)
    assert "\n" not in message and message.startswith(name) and re.search(accepted, message)
    if name != "KALAVAI_CAPACITY_PRETRAIN_FRACTION":
        assert f"got {bad!r}" in message
    assert main(["env"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"


def test_env_prints_every_setting_with_its_source(monkeypatch, capsys):
    monkeypatch.setenv("KALAVAI_WORKERS", "3")
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(S.NAMES)
    workers_line = next(line for line in lines if line.startswith("KALAVAI_WORKERS"))
    assert workers_line.split()[1:3] == ["3", "environment"]
    assert next(line for line in lines if line.startswith("KALAVAI_FSDP")).split()[1:3] == ["0", "default"]
    assert main(["env", "--check"]) == 0 and capsys.readouterr().out == ""


def test_override_sets_and_restores(monkeypatch):
    monkeypatch.setenv("KALAVAI_PREFIX_CACHE_GB", "2")
    with prefix.budget(0):
        assert prefix.budget_bytes() == 0
    assert prefix.budget_bytes() == 2 * 2**30
    with pytest.raises(KalavaiError, match="KALAVAI_WORKERS"):
        with S.override(workers=0):
            pass
    with pytest.raises(KalavaiError, match="no such setting"):
        with S.override(threads=2):
            pass


def _environ_reads(tree: ast.AST) -> list[str]:
    """KALAVAI_* names read from the environment: os.environ.get(...), os.getenv(...), os.environ[...]."""
    consts = {
        t.id: n.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        for t in n.targets
        if isinstance(t, ast.Name)
    }

    def name_of(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return consts.get(node.id, "") if isinstance(node, ast.Name) else ""

    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and node.args
            and ast.unparse(node.func) in ("os.environ.get", "os.getenv", "environ.get", "getenv")
        ):
            found.append(name_of(node.args[0]))
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ"):
            found.append(name_of(node.slice))
    return [n for n in found if n.startswith("KALAVAI_")]


def test_no_kalavai_variable_is_read_outside_settings():
    offenders = {}
    for path in sorted((ROOT / "kalavai_utils").rglob("*.py")):
        if path.name == "settings.py":
            continue
        tree = ast.parse(path.read_text())
        reads = _environ_reads(tree)
        text = path.read_text()
        literal = re.findall(r"""environ(?:\.get)?\s*[(\[]\s*["'](KALAVAI_\w+)""", text)
        if reads or literal:
            offenders[str(path.relative_to(ROOT))] = reads + literal
    assert not offenders, f"read KALAVAI_* through kalavai_utils.settings, not os.environ: {offenders}"
    assert _environ_reads(ast.parse('import os\nX = "KALAVAI_X"\nos.environ.get(X); os.environ["KALAVAI_Y"]')) == [
        "KALAVAI_X",
        "KALAVAI_Y",
    ]


def _table_rows() -> dict[str, str]:
    """docs/configuration.md's table: first cell (without backticks) -> the row."""
    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            first = line.split("|")[1].strip().strip("`")
            rows[first] = line
    return rows


def test_the_docs_table_lists_every_setting_and_nothing_else():
    rows = _table_rows()
    documented = {name for name in rows if name.startswith("KALAVAI_")}
    assert documented == set(S.NAMES) | set(S.RETIRED)
    for v in S.VARIABLES:
        assert rows[v.name].count("|") == 7, f"{v.name}: one cell each for default, accepted, what, number, read by"
    for name in (
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "PIP_EXTRA_INDEX_URL",
        "scale",
        "seeds",
        "runs_root",
        "capacity_pretrain_fraction",
    ):
        assert name in rows, name


def test_the_capacity_fraction_is_a_checked_parameter_of_notebook_05():
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "05_ablations.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert re.search(r"^capacity_pretrain_fraction = None\b", params.source, re.M)
    assert "capacity_fraction=capacity_pretrain_fraction" in "".join(c.source for c in nb.cells)
    assert "KALAVAI_CAPACITY_PRETRAIN_FRACTION" not in json.dumps(nb)
    tiny = get_scale("tiny")
    for bad in ("0", "1.5", "a quarter", -1):
        with pytest.raises(KalavaiError, match="capacity_pretrain_fraction must be a fraction"):
            ablations.run_all(tiny, ROOT / "no-such-runs", [42], {"capacity"}, capacity_fraction=bad)
    assert main(["check-scale", "tiny", "--capacity-pretrain-fraction", "2"]) == 2
    assert main(["check-scale", "tiny", "--capacity-pretrain-fraction", "1"]) == 0


def test_the_default_fraction_keeps_the_committed_reference_and_its_cache_keys():
    # The reference run used the scale's default (and a like-for-like run, when committed, fraction 1).
    # A default run must compute the very same capacity scale (its pretraining config is the cached base's key).
    tiny = get_scale("tiny")
    runs = [("results/tiny", None), ("results/tiny/capacity_like_for_like", 1)]
    for folder, fraction in [(f, x) for f, x in runs if (ROOT / f / "05_ablations.json").exists()]:
        ref = json.loads((ROOT / folder / "05_ablations.json").read_text())["summary"]["capacity"]
        assert ablations.capacity_pretrain_fraction(tiny, fraction) == ref["pretrain_fraction"]
        big = ablations.capacity_scale(tiny, fraction)
        assert (big.pretrain_steps, big.d_model) == (ref["pretrain_steps"], ref["capacity_d_model"])
    assert ablations.capacity_scale(tiny) == ablations.capacity_scale(tiny, None)


def test_the_fraction_travels_into_the_capacity_job(tmp_path):
    smoke = get_scale("smoke")
    jobs, labels = ablations.worker_jobs(smoke, tmp_path, [42], {"capacity"}, 0.5)
    assert labels == ["capacity"] and jobs[0][1] == (smoke, tmp_path, 42, 0.5)


@pytest.mark.slow
def test_the_fraction_is_recorded_in_the_capacity_results(tmp_path):
    smoke = get_scale("smoke")
    runs = pipeline.run_dir(smoke, tmp_path)
    shared = pipeline.Bases(smoke, runs).get(None)
    main_result = ablations.run_cooperative(ablations.ablation_cooperative(smoke, runs, "main", 42), runs, *shared)
    r = ablations.run_capacity(smoke, runs, 42, main_result, 0.5)
    assert r["config"]["pretrain_fraction"] == 0.5
    assert r["config"]["pretrain_steps"] == max(1, round(0.5 * smoke.pretrain_steps))
    ablations.write_index(runs, {"capacity": {"capacity": [r]}})
    assert ablation_tables.summarize(runs)["capacity"]["pretrain_fraction"] == 0.5


@pytest.mark.slow
def test_run_all_sh_refuses_a_bad_setting_before_anything_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALAVAI_")}
    env.update(
        {
            "KALAVAI_PYTHON": sys.executable,
            "KALAVAI_RUNS": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            "KALAVAI_WORKERS": "abc",
        }
    )
    done = subprocess.run(["./run_all.sh", "--scale", "smoke"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: KALAVAI_WORKERS must be a positive integer (1 runs everything in one process), got 'abc'"
    ]
    env["KALAVAI_WORKERS"] = "1"
    done = subprocess.run(
        ["./run_all.sh", "--scale", "smoke", "--only", "05", "--capacity-pretrain-fraction", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "capacity_pretrain_fraction must be a fraction" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing ran
