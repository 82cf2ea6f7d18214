"""KALAVAI reproduction: the logic behind the notebooks.

Layers, bottom to top; a module imports only its own layer and those below
(tests/test_layers.py checks it):

0. `errors`, `storage`, `paper`, `scales`, `settings`, `families` (the model families as data): the foundation.
1. `corpora/` (the offline data generators) and `runtime/` (activation cache, worker
   processes, FLOP accounting, FSDP2).
2. `protocol/`: the paper's protocol (data, tokenizer, models, training, submission, routers,
   fusion, evaluation, metrics, the divergence->gain law, results, the run pipeline).
3. `experiments/`: one module per notebook running its cooperatives, the speed benchmark, and the
   coordinator's `fuse` and `evaluate` commands (`coordinator`).
4. `analysis/`: every notebook's tables, figures and statistics.
5. `reports/` (export-results / compare-results), `notebooks` (the runner), `__main__` (CLI).

PAPER.md tells the paper's story in words.

Importing the package registers the fused model with transformers' Auto classes, so a saved
fused folder loads with plain `AutoModelForCausalLM.from_pretrained` (no remote code). It
therefore imports torch and transformers, and turns transformers' download bars off.
"""

import importlib

importlib.import_module(".protocol.fusion", __name__)  # registers FusedConfig and FusedModel
