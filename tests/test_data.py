"""The packing and split protocol, the manifest's hashes, and determinism of the offline data."""

import json

import pytest
import torch

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol import data
from kalavai_utils.scales import get_scale
from kalavai_utils.storage import sha256_file


class CharTokenizer:
    """One token per character: makes the packing protocol checkable by hand."""

    name_or_path = "chars"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def __len__(self):
        return 256


def test_pack_joins_with_blank_line_and_drops_remainder():
    chunks = data.pack(["abc", "de"], CharTokenizer(), seq_len=3)
    # "abc\n\nde" = 7 characters -> two chunks of 3, the last character dropped
    assert chunks.tolist() == [[97, 98, 99], [10, 10, 100]]
    assert chunks.dtype == torch.int32


def test_split_by_index_matches_the_papers_counts():
    # The paper's 410M chunk counts follow from int(0.8 n) and int(0.9 n).
    for n, expected in [(1571, (1256, 157, 158)), (664, (531, 66, 67)), (7778, (6222, 778, 778))]:
        splits = data.split_by_index(torch.arange(n).view(n, 1))
        assert tuple(len(splits[s]) for s in data.SPLITS) == expected
    splits = data.split_by_index(torch.arange(10).view(10, 1))
    assert splits["train"].flatten().tolist() == list(range(8))  # contiguous, by index
    assert splits["heldout"].flatten().tolist() == [9]


def test_filter_documents_keeps_first_n_passing():
    assert data.filter_documents(["aa", "b", "cccc", "dd", "eee"], 2, min_chars=2) == ["aa", "cccc"]


def test_source_text_recipe():
    record = {"support": "S", "question": "Q?", "correct_answer": "A"}
    assert data.source_text(record, {"fields": ["support", "question", "correct_answer"], "join": "\n"}) == "S\nQ?\nA"
    assert data.source_text({"text": "x" * 10}, {"fields": ["text"], "max_chars": 4}) == "xxxx"


def test_source_manifests_are_well_formed():
    for domain in ["code", "science", "fiction", "tamil", "yoruba", "welsh", "pubmed", "eurlex", "patents"]:
        source = data.load_source_manifest(domain)
        assert source["n_documents"] == 3000 and source["text"]["fields"]


def test_missing_and_malformed_manifest(tmp_path):
    with pytest.raises(KalavaiError, match="no data manifest"):
        data.load_source_manifest("klingon", tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KalavaiError, match="malformed JSON"):
        data.load_source_manifest("bad", tmp_path)
    (tmp_path / "thin.json").write_text(json.dumps({"dataset": "x"}))
    with pytest.raises(KalavaiError, match="missing"):
        data.load_source_manifest("thin", tmp_path)
    # a misspelt filter would silently read other records: refused by name
    good = data.load_source_manifest("patents")
    for filters, named in (({"min_chars": 1, "equal": {"label": 0}}, "equal"), ({"equals": [0]}, "equals")):
        (tmp_path / "typo.json").write_text(json.dumps({**good, "filters": filters}))
        with pytest.raises(KalavaiError, match=f"filters take equals, min_chars.*got {named}"):
            data.load_source_manifest("typo", tmp_path)


def test_hub_source_without_hub_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    source = {**data.load_source_manifest("science"), "revision": "0" * 40, "n_documents": 3}
    with pytest.raises(KalavaiError, match="cannot load dataset allenai/sciq.*HF_HUB_OFFLINE"):
        data.hub_documents(source)


def _prepare(tmp_path, overlap=None):
    scale = get_scale("smoke")
    return data.prepare_domain(scale, "science", CharTokenizer(), tmp_path, overlap=overlap, tokenizer_hash="chars")


def test_offline_chunks_are_deterministic(tmp_path):
    a = _prepare(tmp_path / "a")
    b = _prepare(tmp_path / "b")
    c = _prepare(tmp_path / "c", overlap=0.9)
    assert a["files"] == b["files"]  # same seed and settings -> identical chunk hashes
    assert a["files"] != c["files"]


def test_corrupted_chunk_file_is_detected_and_rebuilt(tmp_path):
    record = _prepare(tmp_path)
    path = tmp_path / "science" / "heldout.safetensors"
    path.write_bytes(path.read_bytes()[:-8] + b"XXXXXXXX")
    with pytest.raises(KalavaiError, match="corrupted chunk file"):
        data.load_split(tmp_path, "science", "heldout")
    rebuilt = _prepare(tmp_path)  # the cached step notices the bad hash and rebuilds
    assert rebuilt["files"] == record["files"]
    assert sha256_file(path) == record["files"]["heldout.safetensors"]
    assert data.load_split(tmp_path, "science", "heldout").shape[1] == get_scale("smoke").seq_len


def test_unknown_split(tmp_path):
    _prepare(tmp_path)
    with pytest.raises(KalavaiError, match="unknown split"):
        data.load_split(tmp_path, "science", "validation")


# --------------------------------------------------------------------------- the folder's manifest


def test_manifest_describes_every_domain_in_the_folder(tmp_path):
    # sweep conditions share a corpus folder and each prepares only its own domains
    scale = get_scale("smoke")
    science = data.prepare_domain(scale, "science", CharTokenizer(), tmp_path, tokenizer_hash="chars")
    data.write_manifest(tmp_path, {"science": science}, {"scale": "smoke"})
    code = data.prepare_domain(scale, "code", CharTokenizer(), tmp_path, tokenizer_hash="chars")
    manifest = data.write_manifest(tmp_path, {"code": code}, {"scale": "smoke"})
    assert set(manifest["domains"]) == {"science", "code"}
    assert manifest["domains"]["science"]["files"] == science["files"]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert set(on_disk["domains"]) == {"science", "code"} and on_disk["scale"] == "smoke"
    # an unfinished domain (no step marker) is not vouched for
    (tmp_path / "code" / "step.json").unlink()
    assert set(data.write_manifest(tmp_path, {}, {})["domains"]) == {"science"}


# --------------------------------------------------------------------------- Hub sources, with local stand-ins

RECORDS = [{"body": "short"}, {"body": "a longer document " * 5}, {"body": "x" * 40}, {"body": "another long one " * 6}]


def _source(**changes):
    return {
        "schema": "kalavai.source/1",
        "domain": "science",
        "dataset": "org/stand-in",
        "config": None,
        "split": "train",
        "revision": "0" * 40,
        "n_documents": 3,
        "text": {"fields": ["body"]},
        "filters": {"min_chars": 10},
        **changes,
    }


def _local_hub(monkeypatch, records=RECORDS, error=None):
    """datasets.load_dataset replaced by a local list of records (or by an error)."""
    import datasets

    def load_dataset(*args, **kwargs):
        if error is not None:
            raise error
        return iter(records)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def test_hub_documents_apply_recipe_and_filters(monkeypatch):
    _local_hub(monkeypatch)
    docs, provenance = data.hub_documents(_source())
    assert docs == [r["body"] for r in RECORDS[1:]]
    assert provenance["resolved_revision"] == "0" * 40


def test_wrong_text_field_is_its_own_error_not_a_hub_error(monkeypatch):
    _local_hub(monkeypatch)
    with pytest.raises(KalavaiError) as info:
        data.hub_documents(_source(text={"fields": ["content"]}))
    message = str(info.value)
    assert "'content'" in message and "body" in message and "org/stand-in" in message
    assert "Hugging Face Hub" not in message and "\n" not in message


@pytest.mark.parametrize(
    "error", [ConnectionError("Couldn't reach 'org/stand-in' on the Hub"), TimeoutError("read timed out")]
)
def test_network_errors_say_the_hub_is_needed(monkeypatch, error):
    _local_hub(monkeypatch, error=error)
    with pytest.raises(KalavaiError, match="cannot load dataset org/stand-in.*HF_HUB_OFFLINE"):
        data.hub_documents(_source())


def test_equals_filter_keeps_only_matching_records(monkeypatch):
    records = [
        {"body": "first long document", "label": 1},
        {"body": "second long document", "label": 0},
        {"body": "third long document", "label": 0},
    ]
    _local_hub(monkeypatch, records=records)
    docs, _ = data.hub_documents(_source(filters={"min_chars": 10, "equals": {"label": 0}}))
    assert docs == ["second long document", "third long document"]
    with pytest.raises(KalavaiError) as info:
        data.hub_documents(_source(filters={"min_chars": 10, "equals": {"section": "a"}}))
    assert "'section'" in str(info.value) and "filters.equals" in str(info.value) and "\n" not in str(info.value)


def test_a_script_dataset_is_one_clear_error(monkeypatch):
    # what datasets 4.x raises for a repository that still has a loading script
    _local_hub(monkeypatch, error=RuntimeError("Dataset scripts are no longer supported, but found big_patent.py"))
    with pytest.raises(KalavaiError, match="needs a loading script.*Parquet") as info:
        data.hub_documents(_source())
    assert "org/stand-in" in str(info.value) and "\n" not in str(info.value)
    _local_hub(monkeypatch, error=RuntimeError("something else"))
    with pytest.raises(RuntimeError, match="something else"):
        data.hub_documents(_source())


def test_a_bug_is_not_reported_as_missing_hub_access(monkeypatch):
    _local_hub(monkeypatch, error=ZeroDivisionError("a bug, not the network"))
    with pytest.raises(ZeroDivisionError):
        data.hub_documents(_source())


def test_hub_chunks_are_rebuilt_when_the_data_manifest_changes(tmp_path, monkeypatch):
    import dataclasses

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    monkeypatch.setattr(data, "MANIFEST_DIR", manifests)
    _local_hub(monkeypatch, records=[{"body": f"document {i} " + "y" * (i % 7) * 10} for i in range(200)])
    calls = []
    real = data.hub_documents
    monkeypatch.setattr(data, "hub_documents", lambda source: calls.append(source) or real(source))
    scale = dataclasses.replace(get_scale("smoke"), source="hub", docs_per_domain=50)

    def prepare(**changes):
        (manifests / "science.json").write_text(json.dumps(_source(**changes)))
        return data.prepare_domain(scale, "science", CharTokenizer(), tmp_path / "chunks", tokenizer_hash="chars")

    first = prepare(filters={"min_chars": 10})
    assert prepare(filters={"min_chars": 10}) == first and len(calls) == 1  # unchanged manifest: cached
    stricter = prepare(filters={"min_chars": 40})
    assert len(calls) == 2 and stricter["files"] != first["files"]
    assert calls[-1]["filters"] == {"min_chars": 40}
    prepare(filters={"min_chars": 40}, revision="1" * 40)  # another revision: rebuilt too
    assert len(calls) == 3
