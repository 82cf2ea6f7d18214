"""Submissions: a good one is accepted as saved; each kind of bad one is refused for the right reason."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import safetensors.torch
import torch
from transformers import GPTNeoXForCausalLM

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.models import fingerprint, freeze_prefix, offline_config
from kalavai_utils.protocol.submission import (
    MANIFEST,
    collect_submissions,
    describe,
    verify_all,
    verify_submission,
    write_submission,
)
from kalavai_utils.scales import get_scale
from kalavai_utils.storage import atomic_write_json, sha256_file

K = 1  # frozen blocks (plus the embedding), as in the smoke scale
FROZEN = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
TRAINED = "gpt_neox.layers.1.mlp.dense_h_to_4h.weight"


def make_base(seed: int, **config_changes) -> GPTNeoXForCausalLM:
    torch.manual_seed(seed)
    config = offline_config(get_scale("smoke"))
    for key, value in config_changes.items():
        setattr(config, key, value)
    return GPTNeoXForCausalLM(config).eval()


def fine_tune(base: GPTNeoXForCausalLM, seed: int = 1) -> GPTNeoXForCausalLM:
    """Stands in for training: the trainable tensors move, the frozen prefix stays."""
    model = copy.deepcopy(base)
    freeze_prefix(model, K)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def base():
    return make_base(0)


def submit(model, folder, base, *, base_fingerprint=None, check=True, name="code", **kw):
    return write_submission(
        model,
        folder,
        base_fingerprint=base_fingerprint or fingerprint(base),
        base_state=base.state_dict() if check else None,
        freeze_layers=K,
        training={"lr": 1e-3, "steps": 8, "seed": 42},
        data={"n_chunks": 12, "n_tokens": 384, "chunk_files": {"train.bin.npy": "ab" * 32}},
        contributor=name,
        **kw,
    )


def refused(folder, base, *expected_words, freeze_layers=K):
    """Verification must fail, and its one-line reason must name each expected thing."""
    with pytest.raises(KalavaiError) as info:
        verify_submission(folder, base, freeze_layers)
    message = str(info.value)
    assert "\n" not in message
    for word in expected_words:
        assert word in message, f"{word!r} not in: {message}"
    return message


def rehash(folder):
    """Make the manifest vouch for the folder as it is now: a consistent liar, so deeper checks must catch it."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    atomic_write_json(folder / MANIFEST, manifest)


def edit_tensors(folder, edit, keep_manifest_honest=True):
    path = folder / "model.safetensors"
    tensors = safetensors.torch.load_file(path)
    edit(tensors)
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    if keep_manifest_honest:
        rehash(folder)


def edit_json(folder, name, edit, keep_manifest_honest=True):
    path = folder / name
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))
    if keep_manifest_honest and name != MANIFEST:
        rehash(folder)


@pytest.fixture
def no_pickle(monkeypatch):
    """Fail the test if anything tries to unpickle."""

    def boom(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)


# ---------------------------------------------------------------------------------------------
# Accepted


def test_good_submission_is_accepted_as_saved(tmp_path, base, no_pickle):
    trained = fine_tune(base)
    folder = submit(trained, tmp_path / "code", base)
    sub = verify_submission(folder, base, K)

    assert sub.name == "code" and sub.folder == folder
    saved = trained.state_dict()
    got = sub.model.state_dict()
    assert sorted(got) == sorted(saved)
    assert all(torch.equal(got[n], saved[n]) for n in saved)
    assert not sub.model.training
    assert not any(p.requires_grad for p in sub.model.parameters())
    x = torch.randint(0, 512, (2, 16))
    assert torch.equal(sub.model(x).logits, trained.eval()(x).logits)

    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == "kalavai.submission/1"
    assert manifest["base_fingerprint"] == fingerprint(base)
    assert "model.safetensors" in manifest["files"] and "config.json" in manifest["files"]
    assert FROZEN in manifest["frozen_tensors"] and TRAINED not in manifest["frozen_tensors"]
    assert {"torch", "transformers"} <= set(manifest["versions"])

    info = describe(sub)
    assert info["name"] == "code" and info["fingerprint"] == fingerprint(trained)
    assert info["n_params"] == sum(p.numel() for p in trained.parameters())


def test_sharded_submission_is_accepted(tmp_path, base):
    trained = fine_tune(base)
    folder = submit(trained, tmp_path / "code", base, max_shard_size=20_000)
    assert (folder / "model.safetensors.index.json").exists()
    sub = verify_submission(folder, base, K)
    assert torch.equal(sub.model.state_dict()[TRAINED], trained.state_dict()[TRAINED])


def test_collect_names_the_refused_folder_and_refuses_duplicates(tmp_path, base):
    good = submit(fine_tune(base, 1), tmp_path / "a", base, name="code")
    other = submit(fine_tune(base, 2), tmp_path / "b", base, name="science")
    assert [s.name for s in collect_submissions([good, other], base, K)] == ["code", "science"]

    (other / MANIFEST).unlink()
    with pytest.raises(KalavaiError, match=str(other)):
        collect_submissions([good, other], base, K)

    twin = submit(fine_tune(base, 3), tmp_path / "c", base, name="code")
    with pytest.raises(KalavaiError, match="already handed in"):
        collect_submissions([good, twin], base, K)


# ---------------------------------------------------------------------------------------------
# Refused: what the folder holds


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.ckpt", "extra.pkl"])
def test_pickle_beside_safetensors_is_refused_unopened(tmp_path, base, no_pickle, name):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / name).write_bytes(b"not a pickle: opening this would fail loudly")
    refused(folder, base, name, "pickle")


def test_pickle_instead_of_safetensors_is_refused_unopened(tmp_path, base, no_pickle):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04garbage")
    refused(folder, base, "pytorch_model.bin")


def test_no_safetensors_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / "model.safetensors").unlink()
    refused(folder, base, "safetensors")


def test_code_file_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / "modeling_gpt_neox.py").write_text("raise SystemExit('remote code ran')\n")
    refused(folder, base, "modeling_gpt_neox.py")


def test_auto_map_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    edit_json(folder, "config.json", lambda c: c.update(auto_map={"AutoModelForCausalLM": "evil.Model"}))
    refused(folder, base, "config.json", "auto_map")


def test_missing_folder_is_refused(tmp_path, base):
    refused(tmp_path / "nowhere", base, "nowhere")


# ---------------------------------------------------------------------------------------------
# Refused: the manifest


def test_missing_manifest_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / MANIFEST).unlink()
    refused(folder, base, MANIFEST, "missing")


def test_malformed_or_wrong_version_manifest_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    edit_json(folder, MANIFEST, lambda m: m.update(format="kalavai.submission/0"))
    refused(folder, base, MANIFEST, "format")
    (folder / MANIFEST).write_text("{not json")
    refused(folder, base, MANIFEST, "malformed")


def test_edited_manifest_hash_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    edit_json(folder, MANIFEST, lambda m: m["files"].update({"model.safetensors": "0" * 64}))
    refused(folder, base, "model.safetensors", "sha256")


def test_weights_edited_after_manifest_are_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    edit_tensors(folder, lambda t: t[TRAINED].mul_(2), keep_manifest_honest=False)
    refused(folder, base, "model.safetensors", "sha256")


def test_unlisted_weight_file_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    safetensors.torch.save_file({"x": torch.zeros(2)}, folder / "extra.safetensors")
    refused(folder, base, "extra.safetensors", "not listed")


def test_freeze_layers_mismatch_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    refused(folder, base, MANIFEST, "freeze_layers", freeze_layers=2)


# ---------------------------------------------------------------------------------------------
# Refused: another base, another shape, bad values, a moved frozen tensor


def test_different_base_is_refused_by_fingerprint(tmp_path, base):
    other = make_base(seed=7)
    folder = submit(fine_tune(other), tmp_path / "code", other)
    refused(folder, base, "base_fingerprint")


def test_lying_base_fingerprint_is_caught_by_frozen_tensors(tmp_path, base):
    other = make_base(seed=7)
    folder = submit(fine_tune(other), tmp_path / "code", base, base_fingerprint=fingerprint(base), check=False)
    refused(folder, base, "model.safetensors", "gpt_neox.embed_in.weight", "differs from the base")


def test_changed_frozen_layer_is_refused(tmp_path, base):
    trained = fine_tune(base)
    with torch.no_grad():
        trained.get_parameter(FROZEN).add_(1e-3)
    with pytest.raises(KalavaiError, match=FROZEN):  # the contributor's own check catches it first
        submit(trained, tmp_path / "checked", base)
    folder = submit(trained, tmp_path / "code", base, check=False)
    refused(folder, base, FROZEN, "differs from the base")


@pytest.mark.parametrize("change", [{"intermediate_size": 64}, {"vocab_size": 256}])
def test_other_architecture_is_refused_by_config(tmp_path, base, change):
    other = make_base(seed=0, **change)
    folder = submit(fine_tune(other), tmp_path / "code", base, base_fingerprint=fingerprint(base), check=False)
    refused(folder, base, "config.json", next(iter(change)))


def test_wrong_shape_tensor_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    edit_tensors(folder, lambda t: t.update({TRAINED: torch.zeros(64, 32)}))
    refused(folder, base, "model.safetensors", TRAINED, "shape")


def test_missing_and_extra_tensors_are_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    edit_tensors(folder, lambda t: t.pop(TRAINED))
    refused(folder, base, TRAINED, "missing")
    folder = submit(fine_tune(base), tmp_path / "code2", base)
    edit_tensors(folder, lambda t: t.update({"gpt_neox.layers.9.extra": torch.zeros(3)}))
    refused(folder, base, "gpt_neox.layers.9.extra", "unexpected")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_tensor_is_refused(tmp_path, base, bad):
    trained = fine_tune(base)
    with torch.no_grad():
        trained.get_parameter(TRAINED)[0, 0] = bad
    folder = submit(trained, tmp_path / "code", base)
    refused(folder, base, "model.safetensors", TRAINED, "NaN or inf")


def test_data_text_is_not_written_into_the_manifest(tmp_path, base):
    with pytest.raises(KalavaiError, match="data.sample"):
        write_submission(
            fine_tune(base),
            tmp_path / "code",
            base_fingerprint=fingerprint(base),
            base_state=None,
            freeze_layers=K,
            training={},
            data={"sample": "x" * 1000},
            contributor="code",
        )


# ---------------------------------------------------------------------------------------------
# Refused: only the files a submission may hold, every one hashed, no auto_map anywhere


@pytest.mark.parametrize(
    "name, content",
    [
        ("weights.dat", pickle.dumps({"w": [1.0, 2.0]})),
        ("run.sh", b"#!/bin/sh\necho pwned\n"),
        ("evil.so", b"\x7fELF not really"),
        ("notes.txt", b"harmless, but not something a submission holds"),
    ],
)
@pytest.mark.parametrize("listed", [False, True])
def test_unexpected_file_kinds_are_refused_by_name(tmp_path, base, no_pickle, name, content, listed):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / name).write_bytes(content)
    if listed:  # a manifest that hashes the stray file does not make it acceptable
        rehash(folder)
    refused(folder, base, name)


def test_subfolder_is_refused(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / "extra").mkdir()
    (folder / "extra" / "model.safetensors").write_bytes(b"")
    refused(folder, base, "extra", "subfolder")


@pytest.mark.parametrize("listed", [False, True])
def test_auto_map_in_any_json_is_refused(tmp_path, base, listed):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPTNeoXTokenizer", "auto_map": {"AutoTokenizer": ["evil.Tok", None]}})
    )
    if listed:
        rehash(folder)
    refused(folder, base, "tokenizer_config.json", "auto_map")
    edit_json(folder, "generation_config.json", lambda c: c.update(nested={"auto_map": {"x": "evil.X"}}))
    (folder / "tokenizer_config.json").unlink()
    rehash(folder)
    refused(folder, base, "generation_config.json", "auto_map")


def test_tokenizer_files_are_allowed_and_must_be_hashed(tmp_path, base):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPTNeoXTokenizer"}))
    refused(folder, base, "tokenizer_config.json", "not listed")
    (folder / "merges.txt").write_text("#version: 0.2\n")
    refused(folder, base, "merges.txt", "not listed")  # every file is hashed, not only those the coordinator reads
    rehash(folder)
    # hashed, they are then compared with the base's tokenizer by content: this base has no folder, so
    # no tokenizer to compare with (test_adversarial compares real ones)
    refused(folder, base, "merges.txt", "the coordinator's base has no")


# ---------------------------------------------------------------------------------------------
# Refused before loading: sizes, and the safetensors headers


@pytest.fixture
def forbid(monkeypatch):
    """forbid(): from then on, fail the test if any tensor is loaded (and, with hashing=True, any file read or hashed)."""
    import kalavai_utils.protocol.submission as submission

    def boom(*args, **kwargs):
        raise AssertionError(f"read too early: {args}")

    def apply(hashing: bool = False):
        monkeypatch.setattr(safetensors.torch, "load_file", boom)
        monkeypatch.setattr(safetensors.torch, "load", boom)
        if hashing:  # nothing read at all: the bytes hashed are the bytes read, once
            monkeypatch.setattr(submission, "_read_files", boom)
            monkeypatch.setattr(submission, "sha256_bytes", boom)

    return apply


def test_oversized_weights_are_refused_unread(tmp_path, base, forbid):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    base_bytes = sum(t.numel() * t.element_size() for t in base.state_dict().values())
    with open(folder / "model.safetensors", "ab") as f:
        f.truncate(f.tell() + base_bytes // 5 + (2 << 20))  # sparse: 20% more than the base, plus the slack
    forbid(hashing=True)
    refused(folder, base, "model.safetensors", "cap")


def test_a_50mb_junk_file_is_refused_unread(tmp_path, base, forbid):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    with open(folder / "junk.safetensors", "wb") as f:
        f.truncate(50 << 20)
    forbid(hashing=True)
    refused(folder, base, "junk.safetensors", "cap")
    (folder / "junk.safetensors").unlink()
    with open(folder / "tokenizer.json", "wb") as f:
        f.truncate(100 << 20)
    refused(folder, base, "tokenizer.json", "cap")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.update({TRAINED: torch.zeros(64, 32)}), [TRAINED, "shape"]),
        (lambda t: t.update({TRAINED: t[TRAINED].half()}), [TRAINED, "F16", "F32"]),
        (lambda t: t.update({TRAINED: t[TRAINED].to(torch.int32)}), [TRAINED, "I32"]),
        (lambda t: t.pop(TRAINED), [TRAINED, "missing"]),
        (lambda t: t.update({"gpt_neox.layers.9.extra": torch.zeros(3)}), ["gpt_neox.layers.9.extra", "unexpected"]),
    ],
)
def test_names_shapes_and_dtypes_are_checked_from_the_header(tmp_path, base, forbid, edit, words):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    edit_tensors(folder, edit)
    forbid()
    refused(folder, base, "model.safetensors", *words)


def _raw_header(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_raw(path, header_bytes, data):
    path.write_bytes(len(header_bytes).to_bytes(8, "little") + header_bytes + data)


def test_malformed_headers_are_refused(tmp_path, base, forbid):
    folder = submit(fine_tune(base), tmp_path / "code", base)
    forbid()
    path = folder / "model.safetensors"
    header, data = _raw_header(path)

    def check(header_bytes, payload, *words):
        _write_raw(path, header_bytes, payload)
        rehash(folder)
        refused(folder, base, "model.safetensors", *words)

    check(json.dumps(header).encode(), data + b"\0" * 64, "beyond")  # trailing bytes nobody declared
    h = copy.deepcopy(header)
    h[TRAINED]["data_offsets"] = h[FROZEN]["data_offsets"]  # two tensors on the same bytes
    check(json.dumps(h).encode(), data, "overlaps")
    dup = json.dumps(header)[:-1] + ', "__metadata__": {"format": "pt"}}'
    check(dup.encode(), data, "twice")
    check(b"[1, 2, 3]", data, "not a JSON object")
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    rehash(folder)
    refused(folder, base, "model.safetensors", "header length")


# ---------------------------------------------------------------------------------------------
# Every submission gets a verdict


def test_verify_all_reports_every_verdict(tmp_path, base):
    good = submit(fine_tune(base, 1), tmp_path / "a", base, name="code")
    broken = submit(fine_tune(base, 2), tmp_path / "b", base, name="science")
    (broken / MANIFEST).unlink()
    stray = submit(fine_tune(base, 3), tmp_path / "c", base, name="fiction")
    (stray / "run.sh").write_text("echo hi\n")
    twin = submit(fine_tune(base, 4), tmp_path / "d", base, name="code")
    other = submit(fine_tune(base, 5), tmp_path / "e", base, name="law")

    verdicts = verify_all([good, broken, stray, twin, other], base, K)
    assert [v["path"] for v in verdicts] == [str(p) for p in (good, broken, stray, twin, other)]
    assert [v["accepted"] for v in verdicts] == [True, False, False, False, True]
    assert MANIFEST in verdicts[1]["reason"] and "run.sh" in verdicts[2]["reason"]
    assert "already handed in" in verdicts[3]["reason"] and str(good) in verdicts[3]["reason"]
    assert verdicts[0]["reason"] is None and verdicts[0]["contributor"] == "code"
    assert verdicts[4]["contributor"] == "law" and verdicts[4]["base_fingerprint"] == fingerprint(base)
    json.dumps(verdicts)  # for machines


def test_verify_command_reports_all_and_exits_1(tmp_path, base, capsys):
    from kalavai_utils.__main__ import main

    base.save_pretrained(tmp_path / "base")
    good = submit(fine_tune(base, 1), tmp_path / "a", base, name="code")
    bad = submit(fine_tune(base, 2), tmp_path / "b", base, name="science")
    (bad / "evil.so").write_bytes(b"\x7fELF")
    also_good = submit(fine_tune(base, 3), tmp_path / "c", base, name="fiction")
    args = ["verify", "--base", str(tmp_path / "base"), "--freeze-layers", str(K)]

    assert main(args + [str(good), str(bad), str(also_good)]) == 1
    out = capsys.readouterr().out
    assert f"accepted: {good} (code)" in out and f"accepted: {also_good} (fiction)" in out
    assert f"refused: {bad}: evil.so" in out

    assert main(args + ["--json", str(good), str(bad)]) == 1
    verdicts = json.loads(capsys.readouterr().out)
    assert [(v["path"], v["accepted"]) for v in verdicts] == [(str(good), True), (str(bad), False)]
    assert "evil.so" in verdicts[1]["reason"]

    assert main(args + [str(good), str(also_good)]) == 0


# ---------------------------------------------------------------------------------------------
# predict-gain: K is the coordinator's, never a submission's


def test_predict_gain_takes_k_from_the_coordinator_only(tmp_path, base, capsys):
    from kalavai_utils.__main__ import main
    from kalavai_utils.protocol.forecast import forecast

    base.save_pretrained(tmp_path / "base")
    # a contributor that froze nothing and says so: its manifest must not set the K it is checked against
    model = copy.deepcopy(base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    sub = write_submission(
        model,
        tmp_path / "sub",
        base_fingerprint=fingerprint(base),
        base_state=None,
        freeze_layers=0,
        training={},
        data={"domain": "science"},
        contributor="science",
    )
    args = [str(tmp_path / "base"), [str(sub)], str(tmp_path / "no-data")]

    with pytest.raises(KalavaiError, match="--freeze-layers K or --scale"):
        forecast(*args)
    with pytest.raises(KalavaiError, match="freeze_layers 0, the coordinator uses 1"):
        forecast(*args, scale="smoke")  # smoke freezes 1 block
    with pytest.raises(KalavaiError, match="freeze_layers 0, the coordinator uses 1"):
        forecast(*args, freeze_layers=1)
    with pytest.raises(KalavaiError, match="contradicts"):
        forecast(*args, freeze_layers=2, scale="smoke")

    cli = ["predict-gain", "--base", str(tmp_path / "base"), "--submissions", str(sub), "--data", str(tmp_path)]
    assert main(cli) == 2
    assert "--freeze-layers K or --scale" in capsys.readouterr().err
    assert main(cli + ["--scale", "smoke"]) == 2
    assert "the coordinator uses 1" in capsys.readouterr().err
