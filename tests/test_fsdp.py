"""FSDP (accelerate_configs/fsdp.yaml) through the one training loop.

accelerate 1.15 builds FSDP only on an accelerator: on CPU processes the shipped config stops in
`Accelerator()` ("There are currently no available devices found, ..."), and without
`sync_module_states` it silently falls back to DDP, which `train_causal_lm` refuses. torch 2.13's
FSDP itself, forced onto CPU processes, stops with "FSDP needs a non-CPU accelerator device". So on a
CPU machine these tests check those two refusals; the training itself is compared with one
process only where two GPUs are present.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_distributed import SCRIPT, _free_port  # the DDP test's training script and port helper

CONFIG = Path(__file__).resolve().parent.parent / "accelerate_configs" / "fsdp.yaml"
NO_DEVICE = "There are currently no available devices found"


def _launch(tmp_path, config: Path, *extra: str, cpu: bool) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(_free_port()), *extra, str(script), str(tmp_path / "two")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_fsdp_on_cpu_processes_stops_instead_of_training_something_else(tmp_path):
    # the shipped config: accelerate itself refuses (sync_module_states needs a device)
    done = _launch(tmp_path, CONFIG, cpu=True)
    assert done.returncode != 0 and NO_DEVICE in done.stderr, done.stderr[-3000:]
    # without sync_module_states accelerate would run DDP on gloo; the loop refuses that
    config = tmp_path / "fsdp_nosync.yaml"
    config.write_text(CONFIG.read_text().replace("fsdp_sync_module_states: true", "fsdp_sync_module_states: false"))
    done = _launch(tmp_path, config, cpu=True)
    assert done.returncode != 0 and "FSDP was asked for but accelerate runs" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "two.json").exists()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason=(
    "FSDP needs 2 GPUs: on CPU processes accelerate 1.15 stops with 'RuntimeError: There are currently no "
    "available devices found, must be one of XPU, CUDA, MLU, NPU, MUSA, or HPU' (and without sync_module_states "
    "falls back to DDP)"))
def test_fsdp_two_gpus_match_one_process_at_the_same_global_batch(tmp_path):
    done = _launch(tmp_path, CONFIG, cpu=False)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["processes"] == 2
    assert "not divisible by 2 processes" in two["refused"]

    # the reference: the same script as one plain process on one GPU (same device, same kernels)
    one_dir = tmp_path / "ref"
    one_dir.mkdir()
    script = one_dir / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "0"}
    ref = subprocess.run([sys.executable, str(script), str(one_dir / "one")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]
    one = json.loads((one_dir / "one.json").read_text())
    assert one["processes"] == 1

    # Same micro-batches per optimizer step, fp32; FSDP reduce-scatters two half-sums, so only
    # the order of float sums differs: the DDP test's tolerances.
    assert two["log"]["tokens"] == one["log"]["tokens"]
    assert two["log"]["lr"] == pytest.approx(one["log"]["lr"], rel=1e-12, abs=0)
    assert two["log"]["loss"] == pytest.approx(one["log"]["loss"], rel=1e-5)
    fsdp_weights, weights = load_file(tmp_path / "two.safetensors"), load_file(one_dir / "one.safetensors")
    assert fsdp_weights.keys() == weights.keys()
    for name, w in weights.items():
        torch.testing.assert_close(fsdp_weights[name], w, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("main", [True, False])
def test_gather_puts_full_weights_on_the_main_process_and_shapes_elsewhere(main):
    # What FSDP leaves behind, without FSDP (which needs GPUs): every parameter a flat view of
    # this process's shard, possibly empty; accelerate's full state dict on the main process only.
    from types import SimpleNamespace

    from transformers import GPTNeoXForCausalLM

    from kalavai_utils.protocol.models import offline_config
    from kalavai_utils.scales import get_scale
    from kalavai_utils.protocol.training import _gather_fsdp

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(offline_config(get_scale("smoke")))
    trained = {k: v + 1 for k, v in model.state_dict().items()}
    shapes = {id(p): p.shape for p in model.parameters()}
    for i, p in enumerate(model.parameters()):
        p.data = p.data.flatten()[: (p.numel() // 2 if i % 2 else 0)]
    acc = SimpleNamespace(get_state_dict=lambda _: trained if main else {}, unwrap_model=lambda m: m,
                          is_main_process=main)
    out = _gather_fsdp(acc, model, shapes)
    assert out is model
    for name, p in model.named_parameters():
        assert p.shape == trained[name].shape and not p.requires_grad
        if main:
            assert torch.equal(p, trained[name])
        else:
            assert p.device.type == "meta"
