"""Training throughput at a scale's architecture for several micro-batch shapes, with and without
torch.compile (random weights, 40 steps, the first 15 left out). Wrote results/410m/training_shapes_h100.json:

    OUT=. python scripts/speed_probe.py   # writes ./probe2.json
"""

import copy
import datetime
import json
import os
import time

import torch

from kalavai_utils.experiments.benchmark import benchmark_model
from kalavai_utils.protocol.training import TrainConfig, train_causal_lm
from kalavai_utils.runtime.perf import measure_matmul_peak
from kalavai_utils.scales import get_scale

STEPS, WARM_UP = 40, 15
# what experiments/budget.py names beside the numbers it reads from here
out = {
    "machine": {
        "device_name": torch.cuda.get_device_name(),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "weights": "random init, Pythia's published configs (scales.pythia_config)",
        "frozen_blocks": get_scale("410m").freeze_layers,
        "steps": STEPS,
        "left_out_as_warm_up": WARM_UP,
    }
}
peak = measure_matmul_peak("cuda", torch.bfloat16, n=4096)
for name in ["410m", "synthetic-25m"]:
    scale = get_scale(name)
    model, _ = benchmark_model(scale)
    T = scale.seq_len
    chunks = torch.randint(0, model.config.vocab_size, (512, T))
    variants = (
        [(2, 4, False), (8, 1, False), (8, 1, True)]
        if name == "410m"
        else [(4, 2, False), (16, 1, False), (16, 1, True)]
    )
    for mb, acc, comp in variants:
        # AdamW is fused on a GPU by protocol/training.py itself; compilation is its KALAVAI_COMPILE switch
        os.environ["KALAVAI_COMPILE"] = "1" if comp else "0"
        m = copy.deepcopy(model)
        stamps = []

        def on_step(step, mm):
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())

        steps = STEPS
        cfg = TrainConfig.specialist(scale, 0, steps=steps, curve_every=0, micro_batch=mb, grad_accum=acc)
        t0 = time.perf_counter()
        torch.cuda.reset_peak_memory_stats()
        log = train_causal_lm(m, chunks, cfg, on_step=on_step)
        steady = (stamps[-1] - stamps[WARM_UP - 1]) / (steps - WARM_UP)
        tps = mb * acc * T / steady
        r = dict(
            first_step_s=stamps[0] - t0,
            warm15_s=stamps[WARM_UP - 1] - t0,
            steady_step_s=steady,
            tokens_per_s=tps,
            mfu=tps * log["flops_per_token"] / peak,
            peak_gib=torch.cuda.max_memory_allocated() / 2**30,
        )
        out[f"{name} mb{mb}x{acc} fusedTrue compile{comp}"] = r  # key names as in the committed JSON
        print(name, mb, acc, comp, json.dumps(r), flush=True)
        del m
        torch._dynamo.reset()
json.dump(out, open(os.environ["OUT"] + "/probe2.json", "w"), indent=1)
