"""FSDP (KALAVAI_FSDP=1: torch's FSDP2, kalavai_utils/runtime/sharding.py) through the one training loop,
on two CPU processes (gloo), as on GPUs.

Checked against one plain process at the same global batch: the loss curve, learning rates,
held-out curve, what `on_step` sees and the final weights agree up to the order of float sums
(with gradient checkpointing, and a clip that binds every step, so it must take the norm over
all shards); each process holds half the weights; the second process's own weights are replaced
by the main process's, or it starts without any (meta device), and it ends without them. A training killed midway resumes from its last saved
state to exactly the weights of an uninterrupted sharded run, and that state (one file, the
layout of one process's) resumes in one plain process too.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from test_distributed import _free_port

# The same model, data, recipe and on_step in the launched script and in this process.
SETUP = """
import torch
from transformers import GPTNeoXForCausalLM
from kalavai_utils.protocol.models import offline_config
from kalavai_utils.scales import get_scale
from kalavai_utils.protocol.training import TrainConfig, train_causal_lm

def train(out, main=True, weights=True, on_step_also=lambda step: None):
    scale = get_scale("smoke")
    torch.manual_seed(0 if main else 1)  # another process's own weights differ from the main one's
    with torch.device("cpu" if weights else "meta"):
        model = GPTNeoXForCausalLM(offline_config(scale))
    data = torch.Generator().manual_seed(1)
    chunks = torch.randint(0, scale.vocab_size, (13, scale.seq_len), generator=data)
    heldout = {"x": torch.randint(0, scale.vocab_size, (4, scale.seq_len), generator=data)}
    # clipped every step, so the norm must be taken over all shards
    cfg = TrainConfig.specialist(scale, 5, steps=6, grad_accum=4, warmup_frac=0.2, curve_every=3, curve_max_batches=1,
                                 grad_clip=1e-3, grad_checkpointing=True)
    norms = []

    def on_step(step, m):
        norms.append(sum(p.double().abs().sum().item() for p in m.parameters()))
        on_step_also(step)

    log = train_causal_lm(model, chunks, cfg, heldout, on_step=on_step, checkpoint_dir=out + "_state", save_every=2)
    return log, norms, model
"""

SCRIPT = (
    SETUP
    + """
import json, os, signal, sys
from safetensors.torch import save_file
from kalavai_utils.protocol.pipeline import end_processes

torch.set_num_threads(1)
out, kill_at, others = sys.argv[1], int(sys.argv[2]), sys.argv[3]
main = os.environ.get("RANK", "0") == "0"

def die(step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

# the other processes need no weights (the main process sends them), or have their own, to be replaced
log, norms, model = train(out, main, weights=main or others == "own", on_step_also=die)
if main:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out + ".safetensors")
    json.dump({"log": log, "norms": norms, "weights": [p.double().sum().item() for p in model.parameters()]},
              open(out + ".json", "w"))
else:
    json.dump({"meta": all(p.device.type == "meta" for p in model.parameters()), "resumed_at": log.get("resumed_at"),
               "shard_fraction": log.get("fsdp_shard_fraction"),
               "weights": None if model.device.type == "meta" else [p.double().sum().item() for p in model.parameters()]},
              open(out + "_rank1.json", "w"))
end_processes()
"""
)


def _launch(
    tmp_path, out: str, kill_at: int = 0, others: str = "meta", fsdp: bool = True
) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ACCELERATE_USE_CPU": "true",
        "KALAVAI_FSDP": "1" if fsdp else "0",
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(script),
        str(tmp_path / out),
        str(kill_at),
        others,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _one_process(tmp_path, out: str) -> tuple[dict, list, dict]:
    """The script's training in this process, without FSDP."""
    namespace: dict = {}
    exec(SETUP, namespace)  # noqa: S102 - our own constant
    log, norms, model = namespace["train"](str(tmp_path / out))
    return log, norms, model.state_dict()


@pytest.mark.slow
def test_two_sharded_processes_match_one_and_resume_after_a_kill(tmp_path, monkeypatch):
    monkeypatch.delenv("KALAVAI_FSDP", raising=False)
    done = _launch(tmp_path, "sharded", others="own")  # the second process starts with weights of its own
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "sharded.json").read_text())
    rank1 = json.loads((tmp_path / "sharded_rank1.json").read_text())
    assert rank1["meta"]  # and ends without them
    for fraction in (two["log"]["fsdp_shard_fraction"], rank1["shard_fraction"]):
        assert fraction == pytest.approx(0.5, abs=0.01)  # half the weights each

    log, norms, weights = _one_process(tmp_path, "one")
    # Same micro-batches per optimizer step, fp32; the processes reduce-scatter two half-sums,
    # so only the order of float sums differs: the DDP test's tolerances.
    assert two["log"]["tokens"] == log["tokens"]
    assert two["log"]["lr"] == pytest.approx(log["lr"], rel=1e-12, abs=0)
    assert two["log"]["loss"] == pytest.approx(log["loss"], rel=1e-5)
    assert [c["step"] for c in two["log"]["curve"]] == [c["step"] for c in log["curve"]] == [0, 3, 6]
    for mine, ref in zip(two["log"]["curve"], log["curve"]):
        assert mine["losses"]["x"] == pytest.approx(ref["losses"]["x"], rel=1e-5)
    assert two["norms"] == pytest.approx(norms, rel=1e-6)  # on_step sees the gathered weights
    sharded = load_file(tmp_path / "sharded.safetensors")
    assert sharded.keys() == weights.keys()
    for name, w in weights.items():
        torch.testing.assert_close(sharded[name], w, rtol=1e-5, atol=1e-6, msg=name)

    # killed by the main process itself after step 5's on_step, before step 5's state: the last is step 4's
    killed = _launch(tmp_path, "again", kill_at=5)
    assert killed.returncode != 0 and not (tmp_path / "again.json").exists()
    step4 = (tmp_path / "again_state" / "train_state.safetensors").read_bytes()
    done = _launch(tmp_path, "again")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((tmp_path / "again.json").read_text())
    assert resumed["log"]["resumed_at"] == [4]
    assert resumed["log"]["loss"] == two["log"]["loss"] and resumed["log"]["curve"] == two["log"]["curve"]
    again = load_file(tmp_path / "again.safetensors")
    for name, w in sharded.items():
        assert torch.equal(again[name], w), name

    # the sharded state is one process's file: a plain process resumes it from step 4 as well
    (tmp_path / "one_state" / "train_state.safetensors").write_bytes(step4)
    log, _, weights = _one_process(tmp_path, "one")
    assert log["resumed_at"] == [4]
    assert log["loss"] == pytest.approx(two["log"]["loss"], rel=1e-5)
    for name, w in weights.items():
        torch.testing.assert_close(sharded[name], w, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_data_parallel_processes_resume_after_a_kill_as_well(tmp_path, monkeypatch):
    # Plain DDP: every process holds the whole model. The second one starts from weights of its
    # own (DDP replaces them by the main one's), so only the main process can tell which saved
    # state is this training's; both must resume from it.
    monkeypatch.delenv("KALAVAI_FSDP", raising=False)
    done = _launch(tmp_path, "ddp", others="own", fsdp=False)
    assert done.returncode == 0, done.stderr[-3000:]
    whole = json.loads((tmp_path / "ddp.json").read_text())
    assert "fsdp_shard_fraction" not in whole["log"] and "resumed_at" not in whole["log"]
    weights = load_file(tmp_path / "ddp.safetensors")

    killed = _launch(tmp_path, "again", kill_at=5, others="own", fsdp=False)
    assert killed.returncode != 0 and not (tmp_path / "again.json").exists()
    done = _launch(tmp_path, "again", others="own", fsdp=False)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((tmp_path / "again.json").read_text())
    rank1 = json.loads((tmp_path / "again_rank1.json").read_text())
    assert resumed["log"]["resumed_at"] == rank1["resumed_at"] == [4]
    assert resumed["log"]["loss"] == whole["log"]["loss"] and resumed["log"]["curve"] == whole["log"]["curve"]
    again = load_file(tmp_path / "again.safetensors")
    for name, w in weights.items():
        assert torch.equal(again[name], w), name
    # the second process ends with the main one's weights, not its own
    assert rank1["weights"] == resumed["weights"]


def test_fsdp_is_refused_in_one_process_and_through_accelerates_plugin(monkeypatch):
    from transformers import GPTNeoXForCausalLM

    from kalavai_utils.errors import KalavaiError
    from kalavai_utils.protocol.models import offline_config
    from kalavai_utils.protocol.training import TrainConfig, train_causal_lm
    from kalavai_utils.scales import get_scale

    scale = get_scale("smoke")
    model = GPTNeoXForCausalLM(offline_config(scale))
    chunks = torch.randint(0, scale.vocab_size, (4, scale.seq_len))
    cfg = TrainConfig.specialist(scale, 5, steps=1, curve_every=0)
    monkeypatch.setenv("KALAVAI_FSDP", "1")
    with pytest.raises(KalavaiError, match="needs 2 or more processes"):
        train_causal_lm(model, chunks, cfg)
    monkeypatch.delenv("KALAVAI_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # an accelerate FSDP config on CPU processes runs DDP
    with pytest.raises(KalavaiError, match="FSDP plugin is not used here"):
        train_causal_lm(model, chunks, cfg)
