"""The benchmark's account of a finished run: where its time went, from the run's own logs."""

import json

import pytest

from kalavai_utils.experiments.benchmark import run_phases, with_reference


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def log(seconds, tokens, **extra):
    return {"train_seconds": seconds, "tokens": tokens, "flops_per_token": 10.0, **extra}


def test_run_phases_splits_a_run_into_training_phases_and_the_rest(tmp_path):
    assert run_phases(tmp_path) is None  # no run there
    write(tmp_path / "timings.json", {"total_seconds": 100.0})
    write(tmp_path / "base" / "pretrain_log.json", log(20.0, 2000, matmul_peak_flops=2000.0))
    write(tmp_path / "main" / "main" / "seed42" / "specialists" / "code" / "train_log.json", log(10.0, 500))
    write(
        tmp_path / "sweep" / "n2" / "seed42" / "specialists" / "code" / "train_log.json",
        log(10.0, 500, copied_from="main/main/seed42/specialists/code"),
    )
    write(tmp_path / "sweep" / "n2" / "seed42" / "specialists" / "science" / "train_log.json", log(6.0, 700))
    write(tmp_path / "main" / "main" / "seed42" / "monolithic" / "train_log.json", log(15.0, 1500))
    write(tmp_path / "ablations" / "capacity" / "base" / "pretrain_log.json", log(5.0, 100))
    phases = run_phases(tmp_path)
    assert phases["pretraining"] == {
        "count": 1,
        "seconds": 20.0,
        "tokens": 2000,
        "tokens_per_s": 100.0,
        "fraction_of_peak": pytest.approx(0.5),
    }
    spec = phases["specialists"]
    assert (spec["count"], spec["copied"], spec["seconds"], spec["tokens"]) == (
        2,
        1,
        16.0,
        1200,
    )  # the copy costs nothing
    assert phases["monolithic"]["seconds"] == 15.0 and phases["other_training"]["seconds"] == 5.0
    assert phases["other"]["seconds"] == pytest.approx(100.0 - 20 - 16 - 15 - 5)
    assert phases["notebooks_seconds"] == 100.0


def test_curves_routers_and_evaluation_are_phases_of_their_own(tmp_path):
    """What the logs and step files timed (perf.Clock) leaves "other"; a copied specialist's curves cost nothing."""
    write(tmp_path / "timings.json", {"total_seconds": 100.0})
    write(
        tmp_path / "base" / "pretrain_log.json", log(20.0, 2000, matmul_peak_flops=2000.0, threads=2, curve_seconds=2.0)
    )
    coop = tmp_path / "main" / "main" / "seed42"
    write(coop / "specialists" / "code" / "train_log.json", log(10.0, 500, threads=2, curve_seconds=1.0))
    write(
        coop / "specialists" / "science" / "train_log.json",  # a one-thread worker's: half the machine
        log(20.0, 500, threads=1, curve_seconds=4.0),
    )
    write(
        tmp_path / "sweep" / "n2" / "seed42" / "specialists" / "code" / "train_log.json",
        log(10.0, 500, threads=2, curve_seconds=1.0, copied_from="main/main/seed42/specialists/code"),
    )
    for name in ("fused-linear-token", "fused-mlp-sequence"):  # fitted side by side: 6 s shared
        write(coop / "routers" / name / "router_log.json", {"loss": [], "fit": {"seconds": 3.0, "threads": 2}})
    write(coop / "routers" / "old" / "router_log.json", {"loss": []})  # an older run's log: not timed
    write(coop / "fusion" / "step.json", {"config_hash": "x", "evaluation": {"seconds": 7.0, "threads": 2}})
    write(coop / "baselines" / "step.json", {"config_hash": "y", "evaluation": {"seconds": 4.0, "threads": 1}})
    write(coop / "specialists" / "code" / "step.json", {"config_hash": "z"})  # a step that timed no evaluation
    phases = run_phases(tmp_path)
    assert phases["specialists"]["seconds"] == 20.0
    assert phases["curves"]["count"] == 3 and phases["curves"]["seconds"] == 2.0 + 1.0 + 2.0
    assert phases["curves"]["share_of_training"] == pytest.approx(5.0 / 40.0)
    assert phases["routers"] == {"count": 2, "seconds": 6.0}
    assert phases["evaluation"] == {"count": 2, "seconds": 7.0 + 2.0}
    assert phases["other"]["seconds"] == pytest.approx(100.0 - 20 - 20 - 5 - 6 - 9)


def test_the_reference_numbers_sit_beside_the_new_ones():
    new = {"training": {"tokens_per_s": 2.0}, "router": {}, "versions": {}}
    assert with_reference(new, None) is new
    ref = {"training": {"tokens_per_s": 1.0}, "phases": {"other": {"seconds": 3.0}}, "versions": {"torch": "x"}}
    out = with_reference(new, ref)
    assert out["reference"] == {"training": {"tokens_per_s": 1.0}, "phases": {"other": {"seconds": 3.0}}}
    assert out["training"] == {"tokens_per_s": 2.0}


def test_step_breakdown_times_the_parts_of_a_training_step_and_leaves_the_model_alone():
    import torch
    from transformers import GPTNeoXForCausalLM

    from kalavai_utils.experiments.benchmark import step_breakdown, training_notes
    from kalavai_utils.protocol.models import offline_config
    from kalavai_utils.protocol.training import TrainConfig
    from kalavai_utils.scales import get_scale

    scale = get_scale("smoke")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(offline_config(scale))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    chunks = torch.randint(0, model.config.vocab_size, (8, scale.seq_len))
    cfg = TrainConfig.specialist(scale, 0, freeze_layers=1)
    b = step_breakdown(model, chunks, cfg, torch.device("cpu"), torch.float32, repeats=2)
    assert b["micro_batch_tokens"] == cfg.micro_batch * scale.seq_len
    assert 0 < b["frozen_prefix_forward_ms"] < b["forward_ms"]  # the prefix is timed inside the forward
    assert b["backward_ms"] > 0 and b["optimizer_ms"] > 0 and 0 < b["matmul_share"] < 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # trained a copy
    notes = training_notes({"step_breakdown": b, "fraction_of_peak": 0.5}, 1e11)
    assert len(notes) == 4 and "50%" in notes[-1]
    # nothing frozen: no prefix to time
    assert (
        step_breakdown(
            model,
            chunks,
            TrainConfig.specialist(scale, 0, freeze_layers=0),
            torch.device("cpu"),
            torch.float32,
            repeats=1,
        )["frozen_prefix_forward_ms"]
        == 0.0
    )


def test_a_training_on_a_share_of_the_threads_counts_that_share_of_the_machine(tmp_path):
    """Two one-thread workers side by side (runtime/workers.py) each hold half of a 2-thread machine."""
    write(tmp_path / "timings.json", {"total_seconds": 100.0})
    write(tmp_path / "base" / "pretrain_log.json", log(20.0, 2000, matmul_peak_flops=2000.0, threads=2))
    for domain in ("code", "science"):
        write(
            tmp_path / "sweep" / "n2" / "seed42" / "specialists" / domain / "train_log.json", log(10.0, 500, threads=1)
        )
    spec = run_phases(tmp_path)["specialists"]
    # 20 s of one-thread training = 10 s of the machine, at 1000 tokens in 10 s: 100 tokens/s, half its peak
    assert spec["seconds"] == 10.0 and spec["tokens_per_s"] == 100.0 and spec["fraction_of_peak"] == pytest.approx(0.5)
    assert run_phases(tmp_path)["other"]["seconds"] == pytest.approx(100.0 - 20 - 10)


def test_the_benchmark_times_router_training_against_the_straightforward_way():
    from kalavai_utils.experiments.benchmark import run

    r = run("smoke", steps=4)["router"]
    ways = ("side_by_side", "alone", "through_fused_forward")
    assert all(r[f"{w}_seconds_per_router"] > 0 and r[f"{w}_tokens_per_s"] > 0 for w in ways)
    fastest = min(v for k, v in r.items() if k.endswith("_seconds_per_router") and not k.startswith("through"))
    assert r["speedup_vs_fused_forward"] == pytest.approx(r["through_fused_forward_seconds_per_router"] / fastest)
