"""Cooperatives side by side in worker processes (runtime/workers.py): same numbers as one at a time."""

import pytest
import torch

from kalavai_utils.errors import KalavaiError
from kalavai_utils.experiments import sweep
from kalavai_utils.protocol import cooperative, pipeline
from kalavai_utils.runtime import workers
from kalavai_utils.scales import get_scale

SMOKE = get_scale("smoke")


def test_worker_count(monkeypatch):
    monkeypatch.setenv(workers.WORKERS_ENV, "3")
    assert workers.worker_count() == 3
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(workers.WORKERS_ENV, bad)
        with pytest.raises(KalavaiError, match=workers.WORKERS_ENV):
            workers.worker_count()
    monkeypatch.delenv(workers.WORKERS_ENV)
    assert workers.worker_count() == (1 if torch.cuda.is_available() else min(2, torch.get_num_threads()))
    monkeypatch.setenv(workers.WORKERS_ENV, "1")
    assert workers.run_in_workers([(abs, (1,)), (abs, (2,))]) is None  # one worker: the caller's loop does the work


@pytest.mark.slow
def test_a_failing_job_raises_its_error(monkeypatch):
    monkeypatch.setenv(workers.WORKERS_ENV, "2")
    with pytest.raises(KalavaiError, match="no-such-scale"):
        workers.run_in_workers([(get_scale, ("smoke",)), (get_scale, ("no-such-scale",))])


def _conditions(scale):
    return [c for c in sweep.conditions(scale) if c.name in ("n2", "overlap0.20")]


def _losses(runs, coops):
    return [cooperative.load_results(c.folder(runs) / "results.json")["losses"] for c in coops]


@pytest.mark.slow
def test_cooperatives_run_in_workers_equal_serial_ones(tmp_path, monkeypatch):
    """Two cooperatives in two one-thread workers, then the serial loop (which finds them cached),
    against the same two run one after another in this process at one thread: equal bit for bit."""
    assert torch.get_num_threads() == 1  # conftest: the workers get one thread each too
    results = {}
    for mode in ("workers", "serial"):
        monkeypatch.setenv(workers.WORKERS_ENV, "2" if mode == "workers" else "1")
        runs = pipeline.run_dir(SMOKE, tmp_path / mode)
        pipeline.prepare_corpus(SMOKE, runs)
        base = pipeline.load_base(SMOKE, runs)
        base_fp = pipeline.prepare_base(SMOKE, runs)["fingerprint"]
        coops = [sweep.cooperative_for(SMOKE, runs, c, 42) for c in _conditions(SMOKE)]
        jobs = cooperative.cooperative_jobs([(c, None) for c in coops], runs)
        assert len(jobs) == 2
        seconds = workers.run_in_workers(jobs, "test")
        if mode == "workers":
            assert seconds is not None and len(seconds) == 2 and all(s > 0 for s in seconds)
            assert all(cooperative.finished(c, runs) for c in coops)  # done by the workers
            assert cooperative.cooperative_jobs([(c, None) for c in coops], runs) == []
        else:
            assert seconds is None and not any(cooperative.finished(c, runs) for c in coops)
        for c in coops:
            cooperative.run_cooperative(c, runs, base, base_fp)
        results[mode] = _losses(runs, coops)
    assert results["workers"] == results["serial"]


def test_jobs_longest_first_and_those_sharing_a_specialist_last(tmp_path):
    runs = pipeline.run_dir(SMOKE, tmp_path)
    folder, _ = pipeline.prepare_corpus(SMOKE, runs)
    main = cooperative.main_cooperative(SMOKE, runs, 42, folder)
    overlap, n2 = (sweep.cooperative_for(SMOKE, runs, c, 42) for c in _conditions(SMOKE))
    assert (n2.condition, len(n2.domains), len(overlap.domains)) == ("n2", 2, 3)
    # main needs n2's two specialists (the same data and recipe): after every other; listed twice, it runs once
    jobs = cooperative.cooperative_jobs([(n2, None), (main, None), (overlap, None), (main, None)], runs)
    assert [j[1][0].condition for j in jobs] == ["overlap0.20", "n2", "main"]
