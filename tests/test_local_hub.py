"""The stand-in Hub (tests/local_hub.py): the Hub scales' unmodified loading code runs against it.

Subprocesses get `local_hub.env(hf_home)` because huggingface_hub reads HF_ENDPOINT and the
offline flags when it is imported."""

import hashlib
import http.client
import io
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from local_hub import (
    EOS,
    HARD_STRINGS,
    PAD,
    SPACE_RUNS,
    mirrored_scales,
    missing_from,
    pythia_ids_in_source,
    required_datasets,
    required_models,
    required_tasks,
    serve,
)

from kalavai_utils import paper, scales
from kalavai_utils.protocol import data

REPO = Path(__file__).resolve().parents[1]
PYTHIA, REVISION = "EleutherAI/pythia-410m", "step10000"


def run_python(hub, hf_home: Path, code: str, offline: bool = False) -> dict:
    """Run `code` in a fresh interpreter that reaches `hub`; it prints one JSON object last."""
    env = hub.env(hf_home)
    env |= {
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def mirror_file(mirror, repo_type: str, repo_id: str, revision: str, path: str) -> bytes:
    commit = mirror.commit(repo_type, repo_id, revision)
    return mirror.read(mirror.files(repo_type, repo_id, commit)[path])


# --------------------------------------------------------------------------- models and tokenizer

MODEL_CODE = f"""
import json, unicodedata
import torch
from huggingface_hub import hf_hub_download
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM
from kalavai_utils.protocol.models import fingerprint, load_causal_lm, tensor_sha256
from kalavai_utils.protocol.tokenizer import load_hub_tokenizer
from local_hub import HARD_STRINGS

ID, REV = {PYTHIA!r}, {REVISION!r}
auto = AutoModelForCausalLM.from_pretrained(ID, revision=REV, use_safetensors=True)
ours = load_causal_lm(ID, REV)
tok = load_hub_tokenizer(ID, REV)
raw = Tokenizer.from_file(hf_hub_download(ID, "tokenizer.json", revision=REV))
cfg = auto.config
print(json.dumps({{
    "class": type(auto).__name__,
    "blocks": len(auto.gpt_neox.layers),
    "config": [cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size, cfg.max_position_embeddings,
               cfg.use_parallel_residual, cfg.tie_word_embeddings],
    "dtypes": [str(auto.dtype), str(ours.dtype)],
    "embed": tensor_sha256(auto.gpt_neox.embed_in.weight),
    "same_values": all(torch.equal(a.float(), b) for a, b in zip(auto.state_dict().values(), ours.state_dict().values())),
    "fingerprints": {{REV: fingerprint(ours), **{{r: fingerprint(load_causal_lm(ID, r)) for r in ("step143000", "main")}}}},
    "tokenizer": [type(tok).__name__, len(tok), tok.eos_token_id, tok.convert_tokens_to_ids("<|padding|>")],
    "ids": [[tok(s, add_special_tokens=False)["input_ids"], raw.encode(s, add_special_tokens=False).ids] for s in HARD_STRINGS],
    "decoded": [tok.decode(tok(s, add_special_tokens=False)["input_ids"]) for s in HARD_STRINGS],
}}))
"""

OFFLINE_CODE = f"""
import json
from kalavai_utils.protocol.models import fingerprint, load_causal_lm
from kalavai_utils.protocol.tokenizer import load_hub_tokenizer
tok = load_hub_tokenizer({PYTHIA!r}, {REVISION!r})
print(json.dumps({{"fingerprint": fingerprint(load_causal_lm({PYTHIA!r}, {REVISION!r})), "tokens": len(tok)}}))
"""


@pytest.fixture(scope="module")
def online_run(local_hub, tmp_path_factory):
    """One fresh HF_HOME, filled by loading Pythia-410M@step10000 through the stand-in."""
    hf_home = tmp_path_factory.mktemp("hf_home")
    start = len(local_hub.requests)
    out = run_python(local_hub, hf_home, MODEL_CODE)
    return hf_home, out, local_hub.requests[start:], local_hub.unexpected(start)


@pytest.mark.slow
def test_pythia_loads_through_the_hub_route(online_run, local_hub_mirror, local_hub):
    from safetensors import safe_open

    from kalavai_utils.protocol.models import tensor_sha256

    _, out, requests, unexpected = online_run
    config = json.loads(mirror_file(local_hub_mirror, "model", PYTHIA, REVISION, "config.json"))
    assert out["class"] == "GPTNeoXForCausalLM" and out["blocks"] == config["num_hidden_layers"] >= 13
    assert out["config"] == [32, 16, local_hub_mirror.index["vocab_size"], 2048, True, False]
    assert out["dtypes"] == ["torch.float16", "torch.float32"]  # as published (fp16); the project asks for fp32
    assert out["same_values"]
    # the weights are those of the revision asked for
    commit = local_hub_mirror.commit("model", PYTHIA, REVISION)
    weights = (
        local_hub_mirror.root / "blobs" / local_hub_mirror.files("model", PYTHIA, commit)["model.safetensors"]["sha256"]
    )
    with safe_open(str(weights), "pt") as f:
        assert out["embed"] == tensor_sha256(f.get_tensor("gpt_neox.embed_in.weight"))
    prints = out["fingerprints"]
    assert prints["main"] == prints["step143000"] != prints[REVISION]  # Pythia's main is its last step

    name, n_tokens, eos, pad = out["tokenizer"]
    assert name == "GPTNeoXTokenizer" and n_tokens == local_hub_mirror.index["tokenizer_size"]
    assert (eos, pad) == (0, 1) and n_tokens <= local_hub_mirror.index["vocab_size"]
    for text, (hub_ids, file_ids), decoded in zip(HARD_STRINGS, out["ids"], out["decoded"]):
        assert hub_ids == file_ids, text
        assert decoded == unicodedata.normalize("NFC", text)

    # every request answered, through the routes the real Hub has: LFS files by a redirect to the CDN
    assert not unexpected and not local_hub.errors
    statuses = {(m, urlsplit(p).path.rsplit("/", 1)[-1]): s for m, p, s in requests}
    assert statuses[("HEAD", "config.json")] == 200
    if local_hub.cdn_origin:  # None only where `localhost` does not reach 127.0.0.1
        assert statuses[("HEAD", "model.safetensors")] == 302
        assert any(p.startswith("/cdn-lfs/") and s == 200 for _, p, s in requests)


@pytest.mark.slow
def test_offline_rerun_reads_the_cache_and_makes_no_request(online_run, local_hub):
    hf_home, online, *_ = online_run
    start = len(local_hub.requests)
    out = run_python(local_hub, hf_home, OFFLINE_CODE, offline=True)
    assert local_hub.requests[start:] == []
    assert out == {"fingerprint": online["fingerprints"][REVISION], "tokens": online["tokenizer"][1]}


# --------------------------------------------------------------------------- datasets

DATA_CODE = """
import hashlib, json
from kalavai_utils.protocol import data
out = {}
for path in sorted(data.MANIFEST_DIR.glob("*.json")):
    source = data.load_source_manifest(path.stem)
    docs, provenance = data.hub_documents({**source, "n_documents": 20})
    out[path.stem] = {
        "n": len(docs),
        "empty": sum(not d.strip() for d in docs),
        "resolved": provenance["resolved_revision"],
        "sha": hashlib.sha256(json.dumps(docs).encode()).hexdigest(),
    }
print(json.dumps(out))
"""


def expected_documents(mirror, source: dict, n: int) -> list[str]:
    """What `hub_documents` must return, read straight from the mirror's data file."""
    import csv

    import pyarrow.parquet as pq

    commit = mirror.commit("dataset", source["dataset"], source["revision"])
    card = mirror.repo("dataset", source["dataset"])["commits"][commit]
    config = next(c for c in card["card_data"]["configs"] if c["config_name"] == (source["config"] or "default"))
    path = next(f["path"] for f in config["data_files"] if f["split"] == source["split"])
    raw = mirror_file(mirror, "dataset", source["dataset"], commit, path)
    rows = (
        list(csv.DictReader(io.StringIO(raw.decode())))
        if path.endswith(".csv")
        else pq.read_table(io.BytesIO(raw)).to_pylist()
    )
    equals = source["filters"].get("equals", {})
    texts = (data.source_text(r, source["text"]) for r in rows if data.record_matches(r, equals))
    return data.filter_documents(texts, n, source["filters"].get("min_chars", 0))


@pytest.mark.slow
def test_every_data_manifest_loads_through_the_hub_route(local_hub, local_hub_mirror, tmp_path):
    start = len(local_hub.requests)
    out = run_python(local_hub, tmp_path / "hf_home", DATA_CODE)
    manifests = {d["domain_file"]: d for d in required_datasets()}
    assert set(out) == set(manifests) and len(out) == 22
    for domain, got in out.items():
        source = manifests[domain]
        assert got["n"] == 20 and got["empty"] == 0, domain
        assert got["resolved"] == local_hub_mirror.commit("dataset", source["dataset"], source["revision"]), domain
        expected = expected_documents(local_hub_mirror, source, 20)
        assert got["sha"] == hashlib.sha256(json.dumps(expected).encode()).hexdigest(), domain
    requests = local_hub.requests[start:]
    assert not local_hub.unexpected(start) and not local_hub.errors
    assert any(p.startswith("/api/datasets/wikimedia/wikipedia/revision/main") for _, p, _ in requests)


def task_code(folder: Path, n: int) -> str:
    """Code reading the three tasks' first `n` items as the notebooks do, kept in `folder`."""
    return f"""
import json
from kalavai_utils.protocol import choice
out = {{}}
for name in ("sciq", "belebele_tam_Taml", "belebele_yor_Latn"):
    task = choice.hub_task(name, {n}, {str(folder)!r}, "410m")
    out[name] = {{"hash": task.hash, "n": len(task.items), "resolved": task.source["resolved_revision"]}}
print(json.dumps(out))
"""


def expected_task(mirror, name: str, n: int) -> str:
    """The hash of a task's first `n` items, read straight from the mirror's data file."""
    import pyarrow.parquet as pq

    from kalavai_utils.protocol import choice

    manifest = choice.load_task_manifest(name)
    commit = mirror.commit("dataset", manifest["dataset"], manifest["revision"])
    card = mirror.repo("dataset", manifest["dataset"])["commits"][commit]["card_data"]
    config = next(c for c in card["configs"] if c["config_name"] == (manifest["config"] or "default"))
    path = next(f["path"] for f in config["data_files"] if f["split"] == manifest["split"])
    rows = pq.read_table(io.BytesIO(mirror_file(mirror, "dataset", manifest["dataset"], commit, path))).to_pylist()
    format_items = {"sciq": choice.sciq_items, "belebele": choice.belebele_items}[manifest["format"]]
    return choice.items_hash(format_items(rows[:n]))


@pytest.mark.slow
def test_the_tasks_are_fetched_then_read_offline(local_hub, local_hub_mirror, tmp_path):
    folder, n = tmp_path / "runs" / "data" / "tasks", 12
    code = task_code(folder, n)
    start = len(local_hub.requests)
    online = run_python(local_hub, tmp_path / "hf_home", code)
    assert not local_hub.unexpected(start) and not local_hub.errors
    for name, got in online.items():
        dataset = {"sciq": "allenai/sciq"}.get(name, "facebook/belebele")
        assert got["resolved"] == local_hub_mirror.commit("dataset", dataset, "main"), name
        assert got["n"] == n and got["hash"] == expected_task(local_hub_mirror, name, n), name
    # offline, in an empty Hub cache: the kept items alone, the same tasks, no request
    start = len(local_hub.requests)
    assert run_python(local_hub, tmp_path / "empty_hf_home", code, offline=True) == online
    assert local_hub.requests[start:] == []


# --------------------------------------------------------------------------- coverage and layout


def test_the_mirror_holds_everything_the_project_names(local_hub_mirror):
    wanted = set(required_models())
    hub_scales = mirrored_scales(scales)
    assert {s.name for s in hub_scales} == {"410m", "1b", "6.9b"}
    # the Qwen2 Hub scale is not mirrored (no Qwen2 stand-in; docs/model-families.md)
    assert {s.name for s in scales.SCALES.values() if s.is_hub} - {s.name for s in hub_scales} == {"qwen-1.5b"}
    assert {(s.hub_model, s.hub_revision) for s in hub_scales} <= wanted
    assert {("EleutherAI/pythia-410m", f"step{n}") for n in paper.MATURITY_410M} <= wanted
    assert "EleutherAI/pythia-1.4b" in pythia_ids_in_source()  # the capacity control, named in ablations.py
    assert ("EleutherAI/pythia-1.4b", "step10000") in wanted
    assert {d["domain_file"] for d in required_datasets()} == {p.stem for p in data.MANIFEST_DIR.glob("*.json")}
    assert {d["domain_file"] for d in required_tasks()} == {
        "tasks/sciq",
        "tasks/belebele_tam_Taml",
        "tasks/belebele_yor_Latn",
    }
    assert missing_from(local_hub_mirror) == {"models": [], "datasets": [], "tasks": []}

    # each revision its own weights, main the last step's (as on Pythia's repos)
    sha = {
        rev: local_hub_mirror.files("model", PYTHIA, local_hub_mirror.commit("model", PYTHIA, rev))["model.safetensors"]
        for rev in [f"step{n}" for n in paper.MATURITY_410M] + ["main"]
    }
    assert len({e["sha256"] for r, e in sha.items() if r != "main"}) == len(paper.MATURITY_410M)
    assert local_hub_mirror.commit("model", PYTHIA, "main") == local_hub_mirror.commit("model", PYTHIA, "step143000")
    wider = json.loads(mirror_file(local_hub_mirror, "model", "EleutherAI/pythia-1.4b", "step10000", "config.json"))
    assert wider["hidden_size"] > 32


def test_models_are_in_pythias_published_layout(local_hub_mirror):
    from safetensors import safe_open

    files = local_hub_mirror.files("model", PYTHIA, local_hub_mirror.commit("model", PYTHIA, REVISION))
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    } <= set(files)
    config = json.loads(mirror_file(local_hub_mirror, "model", PYTHIA, REVISION, "config.json"))
    assert config["architectures"] == ["GPTNeoXForCausalLM"] and config["model_type"] == "gpt_neox"
    assert (config["rotary_pct"], config["rotary_emb_base"], config["torch_dtype"]) == (0.25, 10000, "float16")
    assert config["use_parallel_residual"] and not config["tie_word_embeddings"] and "rope_parameters" not in config
    assert config["vocab_size"] % 64 == 0 and config["num_hidden_layers"] >= 13
    with safe_open(str(local_hub_mirror.root / "blobs" / files["model.safetensors"]["sha256"]), "pt") as f:
        names = set(f.keys())
        assert f.get_tensor("embed_out.weight").dtype.is_floating_point
        assert str(f.get_tensor("gpt_neox.layers.0.attention.dense.weight").dtype) == "torch.float16"
    for suffix in ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq"):
        assert f"gpt_neox.layers.{config['num_hidden_layers'] - 1}.{suffix}" in names

    tokenizer = json.loads(mirror_file(local_hub_mirror, "model", PYTHIA, REVISION, "tokenizer.json"))
    assert tokenizer["normalizer"]["type"] == "NFC" and tokenizer["model"]["type"] == "BPE"
    assert tokenizer["pre_tokenizer"]["type"] == "ByteLevel" and not tokenizer["pre_tokenizer"]["add_prefix_space"]
    added = {t["content"]: t for t in tokenizer["added_tokens"]}
    assert added[EOS]["id"] == 0 and added[PAD]["id"] == 1 and added[EOS]["special"] and added[PAD]["special"]
    assert all(" " * n in added and not added[" " * n]["special"] for n in SPACE_RUNS)
    assert 1000 <= len(tokenizer["model"]["vocab"]) + len(SPACE_RUNS) <= config["vocab_size"] <= 2048
    tokenizer_config = json.loads(mirror_file(local_hub_mirror, "model", PYTHIA, REVISION, "tokenizer_config.json"))
    assert tokenizer_config["tokenizer_class"] == "GPTNeoXTokenizer"

    from tokenizers import Tokenizer

    raw = Tokenizer.from_str(json.dumps(tokenizer))
    assert raw.encode(" " * 24).ids == [added[" " * 24]["id"]]  # a run of spaces is one token, as in Pythia


# --------------------------------------------------------------------------- the server's answers


def _request(endpoint: str, method: str, path: str, headers=None):
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_the_server_answers_with_the_hubs_headers(local_hub, local_hub_mirror):
    commit = local_hub_mirror.commit("model", PYTHIA, REVISION)
    files = local_hub_mirror.files("model", PYTHIA, commit)
    base = f"/{PYTHIA}/resolve/{REVISION}"

    status, headers, body = _request(local_hub.endpoint, "HEAD", f"{base}/config.json")
    assert status == 200 and body == b"" and headers["x-repo-commit"] == commit
    assert (
        headers["etag"] == f'"{files["config.json"]["oid"]}"'
        and int(headers["content-length"]) == files["config.json"]["size"]
    )

    status, headers, body = _request(local_hub.endpoint, "GET", f"{base}/tokenizer.json", {"Range": "bytes=8-15"})
    assert status == 206 and body == local_hub_mirror.read(files["tokenizer.json"])[8:16]
    assert headers["content-range"] == f"bytes 8-15/{files['tokenizer.json']['size']}"

    status, headers, _ = _request(local_hub.endpoint, "HEAD", f"{base}/vocab.json")
    assert (status, headers["x-error-code"], headers["x-repo-commit"]) == (404, "EntryNotFound", commit)
    status, headers, _ = _request(local_hub.endpoint, "GET", f"/api/models/{PYTHIA}/revision/step7")
    assert (status, headers["x-error-code"]) == (404, "RevisionNotFound")
    status, headers, _ = _request(local_hub.endpoint, "GET", "/api/models/EleutherAI/pythia-7b/revision/main")
    assert headers["x-error-code"] == "RepoNotFound"

    status, headers, _ = _request(local_hub.endpoint, "HEAD", f"{base}/model.safetensors")
    entry = files["model.safetensors"]
    if local_hub.cdn_origin is None:  # `localhost` does not reach 127.0.0.1 here: LFS files are served directly
        assert status == 200 and headers["etag"] == f'"{entry["sha256"]}"'
        return
    assert status == 302 and headers["x-repo-commit"] == commit
    assert headers["x-linked-etag"] == f'"{entry["sha256"]}"' and int(headers["x-linked-size"]) == entry["size"]
    cdn = urlsplit(headers["location"])
    assert cdn.hostname != "127.0.0.1"  # another origin, so the client reads the metadata off the redirect
    status, headers, body = _request(local_hub.endpoint, "GET", cdn.path, {"Range": "bytes=-8"})
    assert status == 206 and body == local_hub_mirror.read(entry)[-8:]
    assert headers["content-range"] == f"bytes {entry['size'] - 8}-{entry['size'] - 1}/{entry['size']}"
    status, headers, _ = _request(local_hub.endpoint, "GET", cdn.path, {"Range": f"bytes={entry['size']}-"})
    assert status == 416


VARIANT_CODE = """
import json
from huggingface_hub import HfApi, file_exists
pairs = [("EleutherAI/pythia-6.9b", "step10000"), ("EleutherAI/pythia-6.9b", "step143000"),
         ("EleutherAI/pythia-410m", "step10000")]
print(json.dumps({
    "safetensors": [file_exists(r, "model.safetensors", revision=v) for r, v in pairs],
    "bin": [file_exists(r, "pytorch_model.bin", revision=v) for r, v in pairs],
    "files": sorted(HfApi().list_repo_files("EleutherAI/pythia-6.9b", revision="step10000")),
    "sha": HfApi().model_info("EleutherAI/pythia-6.9b", revision="step10000").sha,
}))
"""


def test_a_revision_without_safetensors_can_be_served(local_hub_mirror, tmp_path):
    variant = local_hub_mirror.without_safetensors({("EleutherAI/pythia-6.9b", "step10000")})
    with serve(variant) as hub:
        out = run_python(hub, tmp_path / "hf_home", VARIANT_CODE)
        # the only errors are the 404s for the absent files file_exists asked about
        assert not hub.errors and {s for _, _, s in hub.requests} <= {200, 302, 404}
        assert all(p.endswith((".safetensors", ".bin")) for _, p, s in hub.requests if s == 404)
    assert out["safetensors"] == [False, True, True]
    assert out["bin"] == [True, False, False]
    assert "pytorch_model.bin" in out["files"] and "model.safetensors" not in out["files"]
    assert out["sha"] == variant.commit("model", "EleutherAI/pythia-6.9b", "step10000")
    assert out["sha"] != local_hub_mirror.commit("model", "EleutherAI/pythia-6.9b", "step10000")
    with pytest.raises(KeyError, match="pythia-6.9b@step7"):
        local_hub_mirror.without_safetensors({("EleutherAI/pythia-6.9b", "step7")})
