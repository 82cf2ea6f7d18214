"""The callers of the training loop resume a killed training: a specialist (cooperative.train_specialist)
hands in the very weights of an uninterrupted run, and the base's pretraining (pipeline.prepare_base)
ends at the very base, its revisions saved before the kill kept."""

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kalavai_utils.protocol import cooperative, pipeline
from kalavai_utils.protocol.models import fingerprint
from kalavai_utils.protocol.submission import collect_submissions
from kalavai_utils.protocol.training import CHECKPOINT_FILE, train_causal_lm
from kalavai_utils.scales import get_scale

# The same base, data and recipe in the test and in the killed subprocess.
SETUP = """
import torch
from transformers import GPTNeoXForCausalLM
from kalavai_utils.protocol.models import fingerprint, offline_config
from kalavai_utils.scales import get_scale
from kalavai_utils.protocol.training import TrainConfig

def setup():
    scale = get_scale("smoke")
    torch.manual_seed(0)
    base = GPTNeoXForCausalLM(offline_config(scale))
    chunks = torch.randint(0, scale.vocab_size, (13, scale.seq_len))
    cfg = TrainConfig.specialist(scale, 7, steps=10, curve_every=3)  # saved every 2 steps
    kwargs = dict(contributor="code", data={"domain": "code", "train_chunks": 13}, eval_sets={"code": chunks[:4]})
    return base, fingerprint(base), chunks, cfg, kwargs
"""

# Trains through cooperative.train_specialist, killed (SIGKILL: no cleanup at all) after step `kill_at`.
SCRIPT = (
    SETUP
    + """
import os, signal, sys
from kalavai_utils.protocol import cooperative

torch.set_num_threads(1)
folder, kill_at = sys.argv[1], int(sys.argv[2])
real = cooperative.train_causal_lm

def killed_at(*args, **kwargs):
    def die(step, model):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, on_step=die, **kwargs)

cooperative.train_causal_lm = killed_at
base, base_fp, chunks, cfg, kwargs = setup()
cooperative.train_specialist(base, base_fp, chunks, cfg, folder, **kwargs)
"""
)


def _setup():
    namespace = {}
    exec(SETUP, namespace)  # noqa: S102 - our own constant
    return namespace["setup"]()


@pytest.mark.slow
def test_killed_specialist_resumes_to_the_uninterrupted_submission(tmp_path):
    base, base_fp, chunks, cfg, kwargs = _setup()
    assert cooperative.specialist_save_every(cfg.steps) == 2
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    folder = tmp_path / "spec"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    killed = subprocess.run(
        [sys.executable, str(script), str(folder), "7"], capture_output=True, text=True, env=env, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (folder / "checkpoint" / CHECKPOINT_FILE).exists()
    assert not (folder / "submission").exists() and not (folder / "step.json").exists()
    (folder / "stale.txt").write_text("left by the killed run")  # cleared by the rerun, unlike the checkpoint

    log = cooperative.train_specialist(copy.deepcopy(base), base_fp, chunks, cfg, folder, **kwargs)
    assert log["resumed_at"] == [6]  # the kill after step 7 lost step 7 only
    assert not (folder / "checkpoint").exists() and not (folder / "stale.txt").exists()

    # the same specialist trained without interruption, and by the loop alone as before checkpoints existed
    whole = cooperative.train_specialist(copy.deepcopy(base), base_fp, chunks, cfg, tmp_path / "whole", **kwargs)
    plain = copy.deepcopy(base)
    plain_log = train_causal_lm(plain, chunks, cfg, kwargs["eval_sets"])
    assert "resumed_at" not in whole and not (tmp_path / "whole" / "checkpoint").exists()
    for key in ("loss", "lr", "curve"):
        assert log[key] == whole[key] == plain_log[key], key

    (resumed,), (uninterrupted,) = (
        collect_submissions([f / "submission"], base, cfg.freeze_layers) for f in (folder, tmp_path / "whole")
    )
    assert fingerprint(resumed.model) == fingerprint(uninterrupted.model) == fingerprint(plain)
    assert json.loads((folder / "train_log.json").read_text())["resumed_at"] == [6]

    # finished: a rerun reuses it (and sweeps away a checkpoint a kill after marking it done would leave)
    (folder / "checkpoint").mkdir()
    stamp = (folder / "submission" / "kalavai_submission.json").stat().st_mtime_ns
    again = cooperative.train_specialist(copy.deepcopy(base), base_fp, chunks, cfg, folder, **kwargs)
    assert again["loss"] == log["loss"] and not (folder / "checkpoint").exists()
    assert (folder / "submission" / "kalavai_submission.json").stat().st_mtime_ns == stamp


class Killed(Exception):
    pass


@pytest.mark.slow
def test_killed_pretraining_resumes_to_the_same_base_keeping_its_revisions(tmp_path, monkeypatch):
    scale = get_scale("smoke")
    assert pipeline.pretrain_save_every(scale) == 2 and scale.pretrain_revisions == (10, 20)
    runs = pipeline.run_dir(scale, tmp_path / "runs")
    real = pipeline.train_causal_lm

    def killed_after_13(*args, on_step=None, **kwargs):
        def step(s, model):
            on_step(s, model)
            if s == 13:
                raise Killed

        return real(*args, on_step=step, **kwargs)

    monkeypatch.setattr(pipeline, "train_causal_lm", killed_after_13)
    with pytest.raises(Killed):
        pipeline.prepare_base(scale, runs)
    monkeypatch.setattr(pipeline, "train_causal_lm", real)
    base = runs / "base"
    assert (
        (base / "checkpoint" / CHECKPOINT_FILE).exists()
        and (base / "step10").is_dir()
        and not (base / "step20").exists()
    )
    step10 = (base / "step10" / "model.safetensors").stat().st_mtime_ns

    info = pipeline.prepare_base(scale, runs)
    assert json.loads((base / "pretrain_log.json").read_text())["resumed_at"] == [12]
    assert (base / "step10" / "model.safetensors").stat().st_mtime_ns == step10  # kept, not redone
    assert not (base / "checkpoint").exists()

    # the uninterrupted base, from the same (cached) data
    for entry in base.iterdir():
        if entry.is_dir():
            pipeline.shutil.rmtree(entry)
        else:
            entry.unlink()
    whole = pipeline.prepare_base(scale, runs)
    assert "resumed_at" not in json.loads((base / "pretrain_log.json").read_text())
    assert whole["fingerprint"] == info["fingerprint"]


def test_a_specialist_trained_elsewhere_is_copied_bit_for_bit_only_when_its_training_is_the_same(tmp_path):
    base, base_fp, chunks, cfg, kwargs = _setup()
    runs = tmp_path / "runs"
    sets = {"code": chunks[:4], "science": chunks[4:8]}
    first = cooperative.train_specialist(
        copy.deepcopy(base),
        base_fp,
        chunks,
        cfg,
        runs / "a" / "specialists" / "code",
        **{**kwargs, "eval_sets": sets},
        trained=runs,
    )
    # the same training elsewhere, curves on its own domain only: copied, log cut to that curve
    folder = runs / "b" / "specialists" / "code"
    log = cooperative.train_specialist(
        copy.deepcopy(base),
        base_fp,
        chunks,
        cfg,
        folder,
        **{**kwargs, "eval_sets": {"code": sets["code"]}},
        trained=runs,
    )
    assert log["copied_from"] == "a/specialists/code" and log["loss"] == first["loss"]
    assert [p["losses"] for p in log["curve"]] == [{"code": p["losses"]["code"]} for p in first["curve"]]
    fresh = cooperative.train_specialist(
        copy.deepcopy(base), base_fp, chunks, cfg, tmp_path / "fresh", **{**kwargs, "eval_sets": {"code": sets["code"]}}
    )
    assert "copied_from" not in fresh and fresh["curve"] == log["curve"]
    (copied,), (trained,) = (
        collect_submissions([f / "submission"], base, cfg.freeze_layers) for f in (folder, tmp_path / "fresh")
    )
    assert fingerprint(copied.model) == fingerprint(trained.model)
    # not the same training: another seed, or curves on held-out chunks the other never saw
    other = cooperative.train_specialist(
        copy.deepcopy(base),
        base_fp,
        chunks,
        dataclasses.replace(cfg, seed=8),
        runs / "c" / "specialists" / "code",
        **kwargs,
        trained=runs,
    )
    assert "copied_from" not in other and other["loss"] != first["loss"]
    unseen = cooperative.train_specialist(
        copy.deepcopy(base),
        base_fp,
        chunks,
        cfg,
        runs / "d" / "specialists" / "code",
        **{**kwargs, "eval_sets": {"code": chunks[8:12]}},
        trained=runs,
    )
    assert "copied_from" not in unseen
