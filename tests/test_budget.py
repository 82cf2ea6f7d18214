"""The GPU budget (experiments/budget.py) counts what the experiments' definitions train, each step
once, and converts it by the H100 measurements it reads; notebook 05's long ladder is opt-in at the
Hub scales; `--ablation-sections` is checked before anything runs."""

import json
import shutil
import time

import pytest

from kalavai_utils import notebooks
from kalavai_utils.__main__ import main
from kalavai_utils.errors import KalavaiError
from kalavai_utils.experiments import ablations, budget, phase2
from kalavai_utils.protocol.pipeline import ROOT
from kalavai_utils.scales import SCALES

S410 = SCALES["410m"]
EVERY = [nb.name[:2] for nb in notebooks.select(None, "410m")]


def training_steps(work, **match):
    return sum(w.steps for w in work if w.kind == "training" and all(getattr(w, k) == v for k, v in match.items()))


def test_the_main_result_counts_each_seeds_specialists_and_monolithic_baseline():
    one = budget.plan(S410, ["02", "03"], seeds=[42])
    two = budget.plan(S410, ["02", "03"], seeds=[42, 137])
    per_seed = 2 * len(S410.domains) * S410.spec_steps  # N specialists, and a monolithic baseline as long as all
    assert one.total()["steps"] == per_seed
    assert two.total()["steps"] == 2 * per_seed
    assert one.total()["trainings"] == len(S410.domains) + 1
    assert one.total()["tokens"] == per_seed * S410.micro_batch * S410.grad_accum * S410.seq_len
    # notebook 03 trains nothing: it finds notebook 02's specialists, and fits routers and evaluates
    row03 = one.rows()[1]
    assert row03["steps"] == 0 and row03["routers_hours"] > 0 and row03["evaluation_hours"] > 0


def test_data_and_base_notebooks_cost_no_gpu_time():
    b = budget.plan(S410, ["00", "01"])
    assert b.work == [] and b.hours() == 0


def test_a_notebook_alone_counts_the_main_cooperative_it_needs():
    alone = budget.plan(S410, ["05"])
    after = budget.plan(S410, ["02", "03", "05"])
    assert set(S410.sweep_seeds) <= set(S410.seeds)
    assert training_steps(alone.work, notebook="05", section="main") == 2 * len(S410.domains) * S410.spec_steps
    assert training_steps(after.work, notebook="05", section="main") == 0  # notebook 02 trained them


def test_the_crossover_ladder_is_opt_in_at_the_hub_scales_and_counted_exactly():
    assert "crossover" not in ablations.default_sections(S410)
    default = budget.plan(S410, EVERY)
    assert "crossover" not in default.sections and "crossover" in default.opt_in
    opted = budget.plan(S410, EVERY, sections=(*default.sections, "crossover"))
    n, k = len(S410.domains), S410.freeze_layers
    ladder = ablations.crossover_ladder(S410)
    # every rung x (K = 0, K = scale's) x N specialists, less the rungs at the specialists' own steps:
    # K = scale's is the main cooperative itself, K = 0 the freeze ladder's K = 0 specialists, copied
    expected = n * (2 * sum(ladder) - 2 * S410.spec_steps)
    assert S410.spec_steps in ladder and {0, k} <= set(ablations.freeze_depths(S410))
    assert training_steps(opted.work, section="crossover") == expected
    assert sum(w.steps for w in default.opt_in["crossover"] if w.kind == "training") == expected
    # and a later section then copies one of its specialists: the heterogeneous arm's half-steps one
    half = ablations.heterogeneous_arms(S410)["half steps"][1]["steps"]
    assert half in ladder
    assert opted.total()["steps"] - default.total()["steps"] == expected - half
    # the K = 0 rung at the specialists' steps trains nothing, but is fused and evaluated as its own cooperative
    rung = f"steps{S410.spec_steps}-freeze0"
    assert not [w for w in opted.work if w.kind == "training" and w.what.startswith(rung)]
    assert [w for w in opted.work if w.kind == "routers" and w.what.startswith(rung)]
    assert not [w for w in opted.work if w.what.startswith(f"steps{S410.spec_steps}-freeze{k}")]


def test_offline_scales_keep_every_section_by_default():
    for name in ("smoke", "tiny", "synthetic-25m"):
        assert ablations.default_sections(SCALES[name]) == ablations.SECTIONS
    assert ablations.check_sections(None) is None and ablations.check_sections("") is None
    assert ablations.check_sections("lora, freeze,lora") == ("lora", "freeze")
    assert ablations.check_sections(["count"]) == ("count",)
    with pytest.raises(KalavaiError, match="unknown ablation section.*'ladder'.*choose from: freeze"):
        ablations.check_sections("freeze,ladder")


def test_phase2_shares_the_specialists_other_cooperatives_trained():
    b = budget.plan(S410, EVERY)
    # cross-lingual x seeds (its compute-matched monolithic on the first BASELINE_SEEDS), private and
    # twenty x one seed, every one at K = 0; the twenty's languages, code and private domains at the
    # first seed are the other two sections' (and code the freeze ladder's)
    cross, private, twenty = (phase2.domains_for(S410, section) for section in phase2.SECTIONS)
    six = [w for w in b.work if w.notebook == "06" and w.kind == "training"]
    assert {w.section for w in six} == set(phase2.SECTIONS)
    n_cross = len(S410.seeds) * len(cross) + phase2.BASELINE_SEEDS - 1
    shared = n_cross + len(private) + len(set(twenty) - set(cross) - set(private))
    assert len(six) == shared
    assert sum(w.what == "cross-lingual monolithic" for w in six) == phase2.BASELINE_SEEDS < len(S410.seeds)


def test_the_estimate_reads_the_measurements(tmp_path):
    folder = tmp_path / "410m"
    shutil.copytree(ROOT / "results" / "410m", folder)
    before = budget.plan(S410, ["02"], measured_dir=folder)
    shapes = json.loads((folder / budget.SHAPES_FILE).read_text())
    key = budget._shape_key(S410.micro_batch, S410.grad_accum, False)
    shapes[key]["tokens_per_s"] *= 2
    (folder / budget.SHAPES_FILE).write_text(json.dumps(shapes))
    after = budget.plan(S410, ["02"], measured_dir=folder)
    assert after.hours(kinds=("training",)) == pytest.approx(before.hours(kinds=("training",)) / 2)
    assert after.hours(kinds=("evaluation",)) == pytest.approx(before.hours(kinds=("evaluation",)))
    del shapes[key]
    (folder / budget.SHAPES_FILE).write_text(json.dumps(shapes))
    with pytest.raises(KalavaiError, match="no measurement at 8 x 1"):
        budget.plan(S410, ["02"], measured_dir=folder)


def test_the_flop_count_is_the_benchmarks():
    bench = json.loads((ROOT / "results" / "410m" / budget.BENCHMARK_FILE).read_text())
    assert budget.training_flops_per_token("410m", S410.freeze_layers, S410.seq_len) == bench["flops_per_token"]
    # a bigger model, more frozen blocks, checkpointing: each moves the count the way it should
    assert budget.training_flops_per_token("1b", 4, 512) > budget.training_flops_per_token("410m", 4, 512)
    assert budget.training_flops_per_token("410m", 0, 512) > budget.training_flops_per_token("410m", 4, 512)
    assert budget.training_flops_per_token("6.9b", 6, 512, True) > budget.training_flops_per_token("6.9b", 6, 512)


def test_other_scales_are_extrapolated_and_say_so():
    b1, b69 = budget.plan(SCALES["1b"], ["02"]), budget.plan(SCALES["6.9b"], ["02"])
    assert b1.extrapolated and b69.extrapolated and not budget.plan(S410, ["02"]).extrapolated
    assert "extrapolated to 1b" in budget.source_line(b1)
    assert b1.hours() > budget.plan(S410, ["02"]).hours()
    assert "not measured" in budget.compile_note(b1)
    assert budget.plan(S410, ["02"]).compiled_hours() < budget.plan(S410, ["02"]).hours()


def test_planning_is_fast_and_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("KALAVAI_RUNS", str(tmp_path))
    budget.plan(S410, EVERY)  # FLOP counts cached
    start = time.perf_counter()
    budget.plan(S410, EVERY)
    assert time.perf_counter() - start < 2
    assert not any(tmp_path.iterdir())
    with pytest.raises(KalavaiError, match="scale tiny runs offline"):
        budget.plan(SCALES["tiny"], ["02"])


def test_the_command_prints_the_table_with_its_device_and_date(capsys):
    assert main(["budget", "--scale", "410m", "--only", "02,03", "--seeds", "42"]) == 0
    out = capsys.readouterr().out
    shapes = json.loads((ROOT / "results" / "410m" / budget.SHAPES_FILE).read_text())
    assert shapes["machine"]["device_name"] in out and shapes["machine"]["date"] in out
    assert "an estimate" in out and "GPU-hours" in out and "KALAVAI_COMPILE=1" in out
    assert [line.split()[0] for line in out.splitlines() if line[:2] in ("02", "03", "to")] == ["02", "03", "total"]
    assert main(["budget", "--scale", "410m", "--only", "05"]) == 0
    assert "crossover ladder is opt-in" in capsys.readouterr().out
    assert main(["budget", "--scale", "tiny", "--skip-offline"]) == 0 and capsys.readouterr().out == ""


def test_a_code_path_test_at_a_hub_scale_gets_no_budget(capsys, monkeypatch):
    monkeypatch.setenv("KALAVAI_SIZES", "ci")  # run_all.sh under the local-Hub tests: cut sizes, no H100 shape
    assert main(["budget", "--skip-offline", "--scale", "410m", "--only", "02"]) == 0
    assert "no GPU budget" in capsys.readouterr().out


def one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert all(w in err for w in words), err


def test_an_unknown_ablation_section_is_one_line_before_anything_runs(capsys, tmp_path, monkeypatch):
    one_line_error(capsys, ["check-scale", "410m", "--ablation-sections", "freeze,ladder"], "'ladder'", "choose from")
    one_line_error(capsys, ["budget", "--scale", "410m", "--ablation-sections", "ladder"], "'ladder'")
    assert main(["check-scale", "tiny", "--ablation-sections", "freeze,crossover"]) == 0
    import papermill

    def never(*args, **kwargs):
        raise AssertionError("a notebook started")

    monkeypatch.setattr(papermill, "execute_notebook", never)
    with pytest.raises(KalavaiError, match="unknown ablation section"):
        notebooks.run_notebooks("smoke", only="05", runs_root=str(tmp_path), ablation_sections="ladder")
    assert not any(tmp_path.iterdir())


def test_the_sections_reach_notebook_05_only(tmp_path, monkeypatch):
    import papermill

    seen = {}

    def record(source, out, parameters, **kwargs):
        seen[source.rsplit("/", 1)[-1][:2]] = parameters
        shutil.copy(source, out)

    monkeypatch.setattr(papermill, "execute_notebook", record)
    monkeypatch.setattr(notebooks, "write_report", lambda folder: None)
    notebooks.run_notebooks("smoke", only="04,05", runs_root=str(tmp_path), ablation_sections="lora,freeze")
    assert seen["05"]["sections"] == ["lora", "freeze"] and "sections" not in seen["04"]
    notebooks.run_notebooks("smoke", only="05", runs_root=str(tmp_path))
    assert "sections" not in seen["05"]  # a default run's parameters stay as they were


@pytest.mark.slow
def test_run_all_sh_refuses_an_unknown_section_before_anything_runs(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KALAVAI_")}
    env.update({"KALAVAI_PYTHON": sys.executable, "KALAVAI_RUNS": str(tmp_path), "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        ["./run_all.sh", "--scale", "smoke", "--only", "05", "--ablation-sections", "freeze,ladder"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "unknown ablation section(s) 'ladder'" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing ran
