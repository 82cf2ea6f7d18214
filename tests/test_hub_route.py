"""The Hub route's rules, in-process and without any network (protocol/hub.py, experiments/needs.py):
offline nothing is asked of the Hub, a prepared domain is found only for the manifest it was made
from, and what a run needs is listed from the experiments' own definitions."""

import dataclasses
import json
import shutil

import pytest
from test_data import CharTokenizer

from kalavai_utils.errors import KalavaiError
from kalavai_utils.experiments import ablations, needs
from kalavai_utils.protocol import data, hub, pipeline
from kalavai_utils.scales import get_scale

SHA = "c0ffee" + "0" * 34


@pytest.fixture
def manifests(tmp_path, monkeypatch):
    """A copy of data_manifests/ the test may edit, read by the code in its place."""
    folder = tmp_path / "manifests"
    shutil.copytree(data.MANIFEST_DIR, folder)
    monkeypatch.setattr(data, "MANIFEST_DIR", folder)
    return folder


def _online_fakes(monkeypatch, records):
    import datasets

    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return iter(records)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.setattr(hub, "resolve_dataset_revision", lambda dataset, revision: SHA)
    return calls


def test_a_prepared_domain_serves_offline_only_for_its_own_manifest(tmp_path, monkeypatch, manifests):
    scale = dataclasses.replace(get_scale("410m"), docs_per_domain=5, seq_len=16)
    runs = tmp_path / "runs"
    records = [{"support": f"support {i} " * 15, "question": f"q{i}?", "correct_answer": "a"} for i in range(8)]
    calls = _online_fakes(monkeypatch, records)
    t_hash = pipeline.tokenizer_hash(scale, runs)
    folder = runs / "data" / pipeline.corpus_key(scale)
    record = data.prepare_domain(scale, "science", CharTokenizer(), folder, tokenizer_hash=t_hash)
    assert record["source"]["resolved_revision"] == SHA and len(calls) == 1
    assert needs.prepared(scale, runs, needs.MAIN_FOLDER, "science") == record

    # offline: the prepared chunks are read as they are, nothing is loaded
    monkeypatch.setattr(hub, "offline", lambda: True)
    assert data.prepare_domain(scale, "science", CharTokenizer(), folder, tokenizer_hash=t_hash) == record
    assert len(calls) == 1

    # the manifest now pins another commit: those chunks are not that commit's, and offline says so
    path = manifests / "science.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "revision": "a" * 40}))
    assert needs.prepared(scale, runs, needs.MAIN_FOLDER, "science") is None
    with pytest.raises(
        KalavaiError, match="not among this run's prepared chunks.*HF_HUB_OFFLINE=1.*fetch --scale 410m"
    ):
        data.prepare_domain(scale, "science", CharTokenizer(), folder, tokenizer_hash=t_hash)
    assert len(calls) == 1


def test_offline_nothing_is_resolved_or_listed(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "offline", lambda: True)
    assert hub.resolve_dataset_revision("org/data", "b" * 40) == "b" * 40  # a pinned commit needs no Hub
    with pytest.raises(KalavaiError, match="org/data@main: HF_HUB_OFFLINE=1, so its commit cannot be resolved"):
        hub.resolve_dataset_revision("org/data", "main")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)  # an empty cache
    problem = hub.model_problem("EleutherAI/pythia-410m", "step10000", "410m")
    assert "not in the local Hugging Face cache (HF_HUB_OFFLINE=1)" in problem
    assert "python -m kalavai_utils fetch --scale 410m" in problem


def test_pickled_weights_are_refused_by_name(monkeypatch):
    monkeypatch.setattr(hub, "offline", lambda: False)
    files = {"config.json", "pytorch_model.bin", "tokenizer.json"}
    monkeypatch.setattr(hub, "model_files", lambda repo, revision: files)
    assert "has no model.safetensors, only pytorch_model.bin" in hub.model_problem("org/m", "step1")
    files.add("model.safetensors.index.json")  # sharded safetensors load
    assert hub.model_problem("org/m", "step1") is None


def test_the_needs_follow_the_notebooks():
    scale = get_scale("410m")
    main = needs.hub_needs(scale, ["00", "01", "02", "03"])
    assert main.models == ((scale.hub_model, scale.hub_revision),)
    assert main.domains == {needs.MAIN_FOLDER: scale.domains}
    every = needs.hub_needs(scale, [f"{i:02d}" for i in range(8)])
    revisions = {r for m, r in every.models if m == scale.hub_model}
    assert set(ablations.maturity_revisions(scale)) <= revisions
    assert {r for arm in ablations.mismatch_arms(scale).values() for r in arm} <= revisions
    assert (ablations.CAPACITY_HUB_MODEL, scale.hub_revision) in every.models
    assert set(every.domains[needs.PHASE2_FOLDER]) >= {*scale.languages, *scale.extra_domains, "instructions"}
    with pytest.raises(KalavaiError, match="reads nothing from the Hub"):
        needs.hub_needs(get_scale("tiny"), ["00"])
