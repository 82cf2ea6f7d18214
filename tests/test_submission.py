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
from kalavai_utils.models import fingerprint, freeze_prefix, offline_config
from kalavai_utils.scales import get_scale
from kalavai_utils.storage import atomic_write_json, sha256_file
from kalavai_utils.submission import (
    MANIFEST, collect_submissions, describe, verify_submission, write_submission,
)

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
        model, folder,
        base_fingerprint=base_fingerprint or fingerprint(base),
        base_state=base.state_dict() if check else None,
        freeze_layers=K,
        training={"lr": 1e-3, "steps": 8, "seed": 42},
        data={"n_chunks": 12, "n_tokens": 384, "chunk_files": {"train.bin.npy": "ab" * 32}},
        contributor=name, **kw,
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
            fine_tune(base), tmp_path / "code", base_fingerprint=fingerprint(base), base_state=None,
            freeze_layers=K, training={}, data={"sample": "x" * 1000}, contributor="code",
        )
