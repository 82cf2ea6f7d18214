"""The Hub route's rules, in-process and without any network (protocol/hub.py, experiments/needs.py):
offline nothing is asked of the Hub, a prepared domain is found only for the manifest it was made
from, and what a run needs is listed from the experiments' own definitions."""

import dataclasses
import json
import shutil

import pytest
from test_data import CharTokenizer

from kalavai_utils.errors import KalavaiError
from kalavai_utils.experiments import ablations, needs, phase2
from kalavai_utils.protocol import choice, data, hub, pipeline
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
    assert main.tasks == ("sciq",)  # notebook 03 scores the main cooperative, science among its domains
    assert needs.hub_needs(scale, ["00", "01", "02"]).tasks == ()
    cross = needs.hub_needs(scale, ["06"]).tasks
    assert cross == ("belebele_tam_Taml", "belebele_yor_Latn")
    assert cross == tuple(choice.hub_task_names(phase2.domains_for(scale, "cross-lingual")))
    every = needs.hub_needs(scale, [f"{i:02d}" for i in range(8)])
    revisions = {r for m, r in every.models if m == scale.hub_model}
    assert set(ablations.maturity_revisions(scale)) <= revisions
    assert {r for arm in ablations.mismatch_arms(scale).values() for r in arm} <= revisions
    assert (ablations.CAPACITY_HUB_MODEL, scale.hub_revision) in every.models
    assert set(every.domains[needs.PHASE2_FOLDER]) >= {*scale.languages, *scale.extra_domains, "instructions"}
    assert every.tasks == ("sciq", *cross)
    with pytest.raises(KalavaiError, match="reads nothing from the Hub"):
        needs.hub_needs(get_scale("tiny"), ["00"])


SCIQ_ROWS = [
    {
        "support": f" support {i}",
        "question": f"q{i}?",
        "distractor1": f"d1-{i}",
        "distractor2": f"d2-{i}",
        "distractor3": f"d3-{i}",
        "correct_answer": f"a{i}",
    }
    for i in range(8)
]


def test_a_prepared_task_serves_offline_only_for_its_manifest_and_size(tmp_path, monkeypatch):
    manifests = tmp_path / "tasks-manifests"
    shutil.copytree(choice.TASK_MANIFEST_DIR, manifests)
    monkeypatch.setattr(choice, "TASK_MANIFEST_DIR", manifests)
    folder = choice.tasks_folder(tmp_path / "runs")
    calls = _online_fakes(monkeypatch, SCIQ_ROWS)

    # online, as `fetch` and the notebooks read it: the first rows, kept with the commit read
    task = choice.hub_task("sciq", 5, folder, "410m")
    assert len(calls) == 1 and calls[0][1]["revision"] == SHA and calls[0][1]["split"] == "test"
    assert [i.choices[-1] for i in task.items] == [f"a{i}" for i in range(5)]
    assert task.hash == choice.items_hash(task.items) and task.source["resolved_revision"] == SHA
    assert (folder / "sciq.json").exists()

    # offline: the kept items, nothing loaded; the same task as online
    monkeypatch.setattr(hub, "offline", lambda: True)
    again = choice.hub_task("sciq", 5, folder, "410m")
    assert (again.items, again.hash, again.source) == (task.items, task.hash, task.source) and len(calls) == 1

    # another number of items, or a manifest pinned elsewhere: not these items, and offline says so in one line
    with pytest.raises(KalavaiError, match=r"task sciq \(6 items\): not prepared in .*fetch --scale 410m") as e:
        choice.hub_task("sciq", 6, folder, "410m")
    assert "\n" not in str(e.value)
    path = manifests / "sciq.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "revision": "a" * 40}))
    assert choice.prepared_task("sciq", 5, folder) is None
    with pytest.raises(KalavaiError, match="HF_HUB_OFFLINE=1.*fetch --scale 410m"):
        choice.hub_task("sciq", 5, folder, "410m")
    assert len(calls) == 1


def test_a_hub_cooperative_reads_its_tasks_from_its_run_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    runs = tmp_path / "runs" / "410m"
    coop = SimpleNamespace(
        scale=get_scale("410m"), domains=("code", "science", "fiction"), data_dir=runs / "data" / "x"
    )
    calls = _online_fakes(monkeypatch, SCIQ_ROWS)
    (task,) = choice.tasks_for(coop, tokenizer=None)
    assert task.name == "sciq" and len(calls) == 1
    assert choice.prepared_task("sciq", choice.N_ITEMS, runs / "data" / "tasks").hash == task.hash
    with pytest.raises(KalavaiError, match="must lie in runs/<scale>/data/"):
        choice.tasks_for(SimpleNamespace(**{**vars(coop), "data_dir": tmp_path / "x"}), tokenizer=None)


def test_a_damaged_prepared_task_is_not_read(tmp_path, monkeypatch):
    folder = tmp_path / "tasks"
    _online_fakes(monkeypatch, SCIQ_ROWS)
    choice.hub_task("sciq", 3, folder)
    record = json.loads((folder / "sciq.json").read_text())
    record["items"][0]["answer"] = 0  # an edited answer no longer gives the recorded hash
    (folder / "sciq.json").write_text(json.dumps(record))
    assert choice.prepared_task("sciq", 3, folder) is None
    (folder / "sciq.json").write_text("{")
    assert choice.prepared_task("sciq", 3, folder) is None


def test_preflight_names_the_tasks_an_offline_run_lacks(tmp_path, monkeypatch):
    scale, runs = get_scale("410m"), tmp_path / "runs"
    monkeypatch.setattr(hub, "offline", lambda: True)
    assert needs._task_problem(scale, runs, "sciq") == (
        f"not prepared in {choice.tasks_folder(runs)} and HF_HUB_OFFLINE=1: {hub.fetch_hint('410m')}"
    )
    _online_fakes(monkeypatch, SCIQ_ROWS)
    choice.hub_task("sciq", choice.N_ITEMS, choice.tasks_folder(runs))  # as `fetch` prepares it
    monkeypatch.setattr(hub, "offline", lambda: True)
    assert needs._task_problem(scale, runs, "sciq") is None
    assert needs._task_problem(scale, runs, "belebele_yor_Latn") is not None
