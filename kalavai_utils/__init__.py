"""KALAVAI reproduction: the logic behind the notebooks.

Layers: `protocol` (data, training, submission, routers, fusion, evaluation, metrics: what
every experiment uses), `experiments` (one module of experiment definitions per notebook),
`analysis` (prediction, reports, figures). PAPER.md tells the paper's story in words.

Importing the package registers the fused model with transformers' Auto classes, so a saved
fused folder loads with plain `AutoModelForCausalLM.from_pretrained` (no remote code). It
therefore imports torch and transformers, and turns transformers' download bars off.
"""
import importlib

importlib.import_module(".protocol.fusion", __name__)  # registers FusedConfig and FusedModel
