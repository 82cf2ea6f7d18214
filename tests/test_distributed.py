"""`accelerate launch` over two CPU processes (gloo) keeps the global batch: the same micro-batches
per optimizer step as one process, so the same loss curve and weights up to float reduction order."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import GPTNeoXForCausalLM

from kalavai_utils.protocol.models import offline_config
from kalavai_utils.protocol.training import TrainConfig, train_causal_lm
from kalavai_utils.scales import get_scale

SCRIPT = """
import copy
import json, sys
import torch
from accelerate import PartialState
from safetensors.torch import save_file
from transformers import GPTNeoXForCausalLM
from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.pipeline import end_processes
from kalavai_utils.protocol.models import offline_config
from kalavai_utils.scales import get_scale
from kalavai_utils.protocol.training import TrainConfig, train_causal_lm

torch.set_num_threads(1)
out = sys.argv[1]
scale = get_scale("smoke")
torch.manual_seed(0)
model = GPTNeoXForCausalLM(offline_config(scale))
chunks = torch.randint(0, scale.vocab_size, (13, scale.seq_len))
cfg = TrainConfig.specialist(scale, 5, steps=6, grad_accum=4, warmup_frac=0.2, curve_every=0)
start = copy.deepcopy(model)
log = train_causal_lm(model, chunks, cfg)
# a one-GPU shape (the Hub scales' 8 x 1, here 4 x 1): two processes take 2 x 1 each
one_gpu = copy.deepcopy(start)
one_log = train_causal_lm(one_gpu, chunks, TrainConfig(**{**cfg.to_dict(), "micro_batch": 4, "grad_accum": 1}))
try:
    train_causal_lm(model, chunks, TrainConfig(**{**cfg.to_dict(), "micro_batch": 1, "grad_accum": 3}))
    refused = None
except KalavaiError as e:
    refused = str(e)
state = PartialState()
if state.is_main_process:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out + ".safetensors")
    save_file({k: v.contiguous() for k, v in one_gpu.state_dict().items()}, out + ".one_gpu.safetensors")
    json.dump({"log": log, "one_gpu_log": one_log, "refused": refused, "processes": state.num_processes,
               "backend": state.backend}, open(out + ".json", "w"))
end_processes()  # what the CLI does at exit; without it gloo can abort a process after its work is done
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_at_the_same_global_batch(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # `--cpu` alone starts one process unless MPI is set up; torchrun (`--multi_gpu`) with
    # ACCELERATE_USE_CPU starts two CPU processes on gloo, on machines with or without GPUs.
    env["ACCELERATE_USE_CPU"] = "true"
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
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["processes"] == 2 and two["backend"] == "gloo"
    assert "3 sequences cannot be split evenly over 2 processes" in two["refused"]

    scale = get_scale("smoke")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(offline_config(scale))
    chunks = torch.randint(0, scale.vocab_size, (13, scale.seq_len))
    log = train_causal_lm(
        model, chunks, TrainConfig.specialist(scale, 5, steps=6, grad_accum=4, warmup_frac=0.2, curve_every=0)
    )

    # Same micro-batches, so only the order of float sums differs (DDP averages two half-sums).
    assert two["log"]["tokens"] == log["tokens"]
    assert two["log"]["lr"] == pytest.approx(log["lr"], rel=1e-12, abs=0)
    assert two["log"]["loss"] == pytest.approx(log["loss"], rel=1e-5)
    weights = load_file(tmp_path / "two.safetensors")
    for name, w in model.state_dict().items():
        torch.testing.assert_close(weights[name], w, rtol=1e-5, atol=1e-6, msg=name)

    # The one-GPU shape 4 x 1 over two processes (2 x 1 each) is the same global batches as on one
    torch.manual_seed(0)
    one = GPTNeoXForCausalLM(offline_config(scale))
    one_log = train_causal_lm(
        one,
        chunks,
        TrainConfig.specialist(scale, 5, steps=6, micro_batch=4, grad_accum=1, warmup_frac=0.2, curve_every=0),
    )
    assert two["one_gpu_log"]["loss"] == pytest.approx(one_log["loss"], rel=1e-5)
    weights = load_file(tmp_path / "two.one_gpu.safetensors")
    for name, w in one.state_dict().items():
        torch.testing.assert_close(weights[name], w, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "scale, outcome, waits", [("smoke", 0, True), ("no-such-scale", 2, False), ("boom", RuntimeError, False)]
)
def test_the_command_line_closes_the_process_group_it_ran_in(tmp_path, monkeypatch, scale, outcome, waits):
    # A process group left open at exit can abort a gloo process after its work is done
    # ("terminate called without an active exception"): every command closes it, failing or not.
    # Only a succeeding process waits for the others first: a failing one's peers may never arrive.
    import torch.distributed as dist

    from kalavai_utils import scales
    from kalavai_utils.__main__ import main

    barriers = []
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: barriers.append(1))
    real_get_scale = scales.get_scale

    def get_scale(name):
        if name == "boom":
            raise RuntimeError("an unexpected failure")
        return real_get_scale(name)

    monkeypatch.setattr(scales, "get_scale", get_scale)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        if outcome is RuntimeError:
            with pytest.raises(RuntimeError, match="unexpected"):
                main(["check-scale", scale])
        else:
            assert main(["check-scale", scale]) == outcome
        assert not dist.is_initialized()
        assert barriers == ([1] if waits else [])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
