"""Kill a training anywhere and lose nothing: a rerun resumes from its last saved state to the
very weights and log of an uninterrupted run (bit for bit on a CPU)."""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kalavai_utils.protocol.models import fingerprint
from kalavai_utils.protocol.training import CHECKPOINT_FILE, TrainConfig, train_causal_lm

# The same model, data and recipe in the test and in the killed subprocess.
SETUP = """
import torch
from transformers import GPTNeoXForCausalLM
from kalavai_utils.protocol.models import offline_config
from kalavai_utils.scales import get_scale
from kalavai_utils.protocol.training import TrainConfig

def setup():
    scale = get_scale("smoke")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(offline_config(scale))
    chunks = torch.randint(0, scale.vocab_size, (13, scale.seq_len))
    cfg = TrainConfig.specialist(scale, 7, steps=9, grad_accum=3, curve_every=2, warmup_frac=0.2)
    return model, chunks, cfg, {"h": chunks[:4]}
"""

SCRIPT = (
    SETUP
    + """
import json, os, signal, sys
from kalavai_utils.protocol.models import fingerprint
from kalavai_utils.protocol.training import train_causal_lm

torch.set_num_threads(1)
ckpt, kill_at, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def die(step, model):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no atexit: as hard as a kill gets

model, chunks, cfg, heldout = setup()
log = train_causal_lm(model, chunks, cfg, heldout, on_step=die, checkpoint_dir=ckpt, save_every=3)
json.dump({"fingerprint": fingerprint(model), "log": log}, open(out, "w"))
"""
)


def _setup():
    namespace = {}
    exec(SETUP, namespace)  # noqa: S102 - our own constant
    return namespace["setup"]()


def _run(script, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.json"

    killed = _run(script, ckpt, 5, out)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (ckpt / CHECKPOINT_FILE).exists() and not out.exists()

    resumed = _run(script, ckpt, -1, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(out.read_text())

    model, chunks, cfg, heldout = _setup()
    log = train_causal_lm(model, chunks, cfg, heldout)
    assert result["fingerprint"] == fingerprint(model)
    assert result["log"]["resumed_at"] == [3]  # the kill after step 5 lost steps 4-5 only, redone
    for key in ("loss", "lr", "curve"):
        assert result["log"][key] == log[key], key


def test_a_finished_state_resumes_at_the_end_and_another_trainings_state_is_ignored(tmp_path):
    model, chunks, cfg, heldout = _setup()
    reference = copy.deepcopy(model)
    log_ref = train_causal_lm(reference, chunks, cfg, heldout)

    first = copy.deepcopy(model)
    train_causal_lm(first, chunks, cfg, heldout, checkpoint_dir=tmp_path, save_every=4)
    again = copy.deepcopy(model)
    log = train_causal_lm(again, chunks, cfg, heldout, checkpoint_dir=tmp_path, save_every=4)
    assert log["resumed_at"] == [cfg.steps] and log["loss"] == log_ref["loss"]
    assert fingerprint(again) == fingerprint(first) == fingerprint(reference)

    # another seed: the saved state is not this training's, so it starts over (and replaces it)
    other_cfg = TrainConfig(**{**cfg.to_dict(), "seed": 8})
    other = copy.deepcopy(model)
    log = train_causal_lm(other, chunks, other_cfg, heldout, checkpoint_dir=tmp_path, save_every=4)
    fresh = copy.deepcopy(model)
    train_causal_lm(fresh, chunks, other_cfg, heldout)
    assert "resumed_at" not in log and fingerprint(other) == fingerprint(fresh)


def test_a_state_whose_schedule_counted_process_steps_is_not_resumed(tmp_path):
    # Before the loop stepped the schedule itself, P processes stepped it P times per optimizer
    # step: such a state would resume with the wrong learning rate, so it is started over.
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model, chunks, cfg, heldout = _setup()
    train_causal_lm(copy.deepcopy(model), chunks, cfg, heldout, checkpoint_dir=tmp_path, save_every=4)
    path = tmp_path / CHECKPOINT_FILE
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["kalavai_train_state"])
    assert meta["scheduler"]["last_epoch"] == meta["step"] == cfg.steps
    meta["scheduler"]["last_epoch"] = 2 * meta["step"]  # as two processes left it
    save_file(load_file(str(path)), str(path), metadata={"kalavai_train_state": json.dumps(meta)})
    log = train_causal_lm(copy.deepcopy(model), chunks, cfg, heldout, checkpoint_dir=tmp_path, save_every=4)
    assert "resumed_at" not in log
