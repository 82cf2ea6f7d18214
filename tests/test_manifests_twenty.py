"""The twenty-contributor cooperative at the Hub scales: every contributor has a data manifest,
and the section resolves its 20 domains through the one loader, with local stand-ins for the Hub."""

import dataclasses
import json
import shutil

import pytest
from test_data import CharTokenizer

from kalavai_utils.errors import KalavaiError
from kalavai_utils.experiments import phase2
from kalavai_utils.protocol import data, pipeline
from kalavai_utils.scales import get_scale

SHA = "0123456789abcdef" * 2 + "01234567"  # what "main" resolves to, in place of the Hub


def all_manifests() -> dict[str, dict]:
    return {p.stem: data.load_source_manifest(p.stem) for p in sorted(data.MANIFEST_DIR.glob("*.json"))}


@pytest.mark.parametrize("domain", phase2.twenty_hub_sources())
def test_every_contributor_has_a_valid_manifest(domain):
    source = data.load_source_manifest(domain)  # the project's own check: file present, keys complete
    assert source["schema"] == "kalavai.source/1" and source["domain"] == domain
    assert source["dataset"] and source["split"] and source["revision"]
    assert source["text"]["fields"] and all(isinstance(f, str) for f in source["text"]["fields"])
    assert source["filters"]["min_chars"] > 0 and source["n_documents"] == 3000
    assert source.get("role"), "say what the source stands for"


def test_twenty_distinct_contributors_with_distinct_data():
    names = phase2.twenty_hub_sources()
    assert len(names) == len(set(names)) == 20
    sources = all_manifests()
    assert set(names) <= set(sources)
    keys = [(s["dataset"], s["config"]) for s in sources.values()]
    duplicates = {k for k in keys if keys.count(k) > 1}
    assert not duplicates, f"two manifests read the same data: {duplicates}"
    # ten languages first, then ten domains, as the authors listed them
    assert all(sources[d]["dataset"] == "wikimedia/wikipedia" for d in names[:10])
    assert not any(sources[d]["dataset"] == "wikimedia/wikipedia" for d in names[10:])


# Hub datasets that still need a loading script, which `datasets` 4.x refuses to run (from their
# Hub pages; data_manifests/README.md names what stands in for each)
SCRIPT_DATASETS = {
    "code_search_net",
    "code-search-net/code_search_net",
    "big_patent",
    "NortheasternUniversity/big_patent",
    "cc100",
    "codeparrot/github-code",
    "lighteval/MATH",
    "reuters21578",
    "financial_phrasebank",
    "blended_skill_talk",
    "conv_ai_2",
    "deepmind/pg19",
    "pg19",
    "bigbio/chemdner",
}


def test_no_manifest_names_a_dataset_that_needs_a_script():
    named = {d: s["dataset"] for d, s in all_manifests().items()}
    assert not {d: n for d, n in named.items() if n in SCRIPT_DATASETS}


def _local_hub(monkeypatch):
    """datasets.load_dataset and revision lookup replaced by local records; every call is recorded."""
    import datasets

    calls = []

    def load_dataset(path, name=None, split=None, revision=None, streaming=False, **kwargs):
        calls.append((path, name, split, revision))
        source = next(s for s in all_manifests().values() if (s["dataset"], s["config"]) == (path, name))
        filler = "x" * source["filters"]["min_chars"]
        return iter(
            [
                {
                    **{f: f"{path}/{name} record {i} {f} {filler}" for f in source["text"]["fields"]},
                    **source["filters"].get("equals", {}),
                }
                for i in range(50)
            ]
        )

    def no_network(*args, **kwargs):
        raise AssertionError("the test reached for the Hub")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(data.hub, "resolve_dataset_revision", lambda dataset, revision: SHA)
    # the network stays shut (the variables below), yet the code takes its online route against the fakes
    monkeypatch.setattr(data.hub, "offline", lambda: False)
    monkeypatch.setattr(pipeline.tok, "load_hub_tokenizer", no_network)
    monkeypatch.setattr(pipeline, "prepare_tokenizer", lambda scale, runs: CharTokenizer())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return calls


def test_twenty_at_1b_resolves_every_domain_through_its_manifest(tmp_path, monkeypatch):
    calls = _local_hub(monkeypatch)
    scale = dataclasses.replace(get_scale("1b"), docs_per_domain=4, seq_len=16)  # the 1b scale, small data
    coop = phase2.cooperative_for(scale, tmp_path, "twenty", seed=42)
    assert coop.domains == tuple(phase2.twenty_hub_sources())
    manifest = json.loads((coop.data_dir / "manifest.json").read_text())
    assert manifest["tokenizer"] == "EleutherAI/pythia-1b@step10000"
    assert set(manifest["domains"]) == set(coop.domains)
    for d in coop.domains:
        source = data.load_source_manifest(d)
        record = manifest["domains"][d]
        assert record["source"]["dataset"] == source["dataset"] and record["source"]["config"] == source["config"]
        assert record["source"]["resolved_revision"] == SHA and record["n_documents"] == 4
        assert record["chunks"]["heldout"] > 0
        held = data.load_split(coop.data_dir, d, "heldout")
        assert held.shape[1] == 16
    assert sorted(calls) == sorted(
        (s["dataset"], s["config"], s["split"], SHA) for s in map(data.load_source_manifest, coop.domains)
    )


def test_a_missing_manifest_stops_the_twenty_before_any_download(tmp_path, monkeypatch):
    calls = _local_hub(monkeypatch)
    folder = tmp_path / "manifests"
    shutil.copytree(data.MANIFEST_DIR, folder)
    (folder / "thai.json").unlink()
    monkeypatch.setattr(data, "MANIFEST_DIR", folder)
    with pytest.raises(KalavaiError, match="no data manifest for domain 'thai'"):
        phase2.cooperative_for(get_scale("1b"), tmp_path, "twenty", seed=42)
    assert calls == []
