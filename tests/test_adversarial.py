"""The coordinator's trust boundary, attacked: crafted submissions and careless input (issue 29).

Contributors are untrusted. Whatever they hand in must end in a one-line refusal (or, for a
command's bad input, one `error:` line and a non-zero exit before any work), never in code of
theirs run, a traceback, a hang, a forged line of output or a half-written file.

One tiny base (with a tokenizer) and one honest submission are built once per test session;
each test copies the honest folder and breaks the copy.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import torch
from test_submission import TRAINED, K, fine_tune, make_base, refused, rehash, submit

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol.submission import MANIFEST, verify_all, verify_submission

TEXT = "def add(x, y):\n    return x + y\n\nThe quick brown fox jumps over the lazy dog.\n"


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    from kalavai_utils.protocol.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("adversarial")
    base = make_base(0)
    base_dir = root / "base"
    base.save_pretrained(base_dir)
    train_tokenizer([TEXT * 20], base.config.vocab_size).save_pretrained(base_dir)
    text = root / "text.txt"
    text.write_text(TEXT * 200)
    honest = submit(fine_tune(base), root / "honest", base)
    return SimpleNamespace(base=base, base_dir=base_dir, honest=honest, text=text, root=root)


def copy_of(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


@pytest.fixture
def no_prompt(monkeypatch):
    """Fail the test if anything asks the user a question (transformers' 'run this custom code?')."""

    def boom(*args, **kwargs):
        raise AssertionError(f"prompted: {args}")

    monkeypatch.setattr("builtins.input", boom)


def plant_code(folder: Path) -> Path:
    """A folder whose tokenizer names code to import: the code, if ever run, leaves a marker file."""
    marker = folder.parent / f"{folder.name}.ran"
    (folder / "evil_tok.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil_tok.EvilTokenizer", None]})
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return marker


# ---------------------------------------------------------------------------------------------
# 1. No code from a folder is run, nor asked about


def test_train_specialist_refuses_a_base_that_names_code(world, tmp_path, no_prompt):
    from kalavai_utils.protocol.contributor import train_specialist_from_files

    base_dir = copy_of(world.base_dir, tmp_path / "base")
    marker = plant_code(base_dir)
    with pytest.raises(KalavaiError, match="evil_tok.py|auto_map") as info:
        train_specialist_from_files(str(base_dir), [str(world.text)], str(tmp_path / "out"), "x", "smoke", steps=1)
    assert "\n" not in str(info.value) and not marker.exists() and not (tmp_path / "out").exists()


def test_generate_refuses_a_folder_that_names_code(world, tmp_path, no_prompt):
    from kalavai_utils.experiments.inference import load_fused

    folder = copy_of(world.base_dir, tmp_path / "fused")
    marker = plant_code(folder)
    with pytest.raises(KalavaiError, match="evil_tok.py|auto_map"):
        load_fused(folder)
    (folder / "evil_tok.py").unlink()  # auto_map alone, no code beside it
    with pytest.raises(KalavaiError, match="auto_map"):
        load_fused(folder)
    assert not marker.exists()


def test_base_without_a_tokenizer_is_named_as_such(world, tmp_path):
    from kalavai_utils.protocol.contributor import train_specialist_from_files

    base_dir = tmp_path / "base"
    world.base.save_pretrained(base_dir)  # weights and config, no tokenizer
    with pytest.raises(KalavaiError, match="no tokenizer"):
        train_specialist_from_files(str(base_dir), [str(world.text)], str(tmp_path / "out"), "x", "smoke", steps=1)


# ---------------------------------------------------------------------------------------------
# 2. predict-gain reads only the held-out split the submission names, from the coordinator's folder


def submit_data(world, folder: Path, data: dict, name: str = "legal") -> Path:
    """An honest submission whose manifest carries these data statistics."""
    from kalavai_utils.protocol.models import fingerprint
    from kalavai_utils.protocol.submission import write_submission

    return write_submission(
        fine_tune(world.base, 5),
        folder,
        base_fingerprint=fingerprint(world.base),
        base_state=None,
        freeze_layers=K,
        training={},
        data=data,
        contributor=name,
    )


def heldout_split(folder: Path, domain: str, seed: int = 0) -> torch.Tensor:
    from kalavai_utils.protocol import data

    ids = torch.randint(0, 512, (4, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.int32)
    data.save_splits(folder / domain, {"heldout": ids}, 32, {"domain": domain})
    return ids


def predict(world, sub: Path, data_dir: Path, **kw):
    from kalavai_utils.protocol.forecast import forecast

    return forecast(str(world.base_dir), [str(sub)], str(data_dir), freeze_layers=K, **kw)


@pytest.mark.parametrize("domain", ["../outside", "OUTSIDE", "a/b", "..", "legal\n", ".hidden", ""])
def test_predict_gain_refuses_a_domain_that_is_not_a_plain_name(world, tmp_path, domain):
    heldout_split(tmp_path, "outside")  # chunks the contributor would like the coordinator to read
    heldout_split(tmp_path / "data", "legal")
    domain = str(tmp_path / "outside") if domain == "OUTSIDE" else domain  # an absolute path
    sub = submit_data(world, tmp_path / "sub", {"domain": domain})
    with pytest.raises(KalavaiError, match="domain") as info:
        predict(world, sub, tmp_path / "data")
    assert "\n" not in str(info.value)


def test_predict_gain_reads_the_heldout_split_the_submission_recorded(world, tmp_path):
    from kalavai_utils.storage import sha256_bytes

    recorded = heldout_split(tmp_path / "theirs", "legal", seed=1)
    heldout_split(tmp_path / "data", "legal", seed=2)  # another split under the same name, intact on its own
    digest = sha256_bytes(recorded.numpy().tobytes())
    sub = submit_data(world, tmp_path / "sub", {"domain": "legal", "heldout_chunks_sha256": digest})
    with pytest.raises(KalavaiError, match="heldout_chunks_sha256"):
        predict(world, sub, tmp_path / "data")
    assert predict(world, sub, tmp_path / "theirs")["divergences"]["legal"] is not None


# ---------------------------------------------------------------------------------------------
# 3. One hostile folder gets a refusal; every other folder still its verdict


def test_hostile_folders_are_refused_and_the_others_still_judged(world, tmp_path, monkeypatch):
    import builtins

    wrong_type = copy_of(world.honest, tmp_path / "wrong_type")
    (wrong_type / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": ["model.safetensors"]}}))
    rehash(wrong_type)
    deep = copy_of(world.honest, tmp_path / "deep")
    levels = [deep / "/".join(["d"] * k) for k in range(1, 1501)]
    for level in levels:  # one at a time: makedirs, rmtree and os.walk recurse, and 1,500 levels exceed the limit
        os.mkdir(level)
    linked = copy_of(world.honest, tmp_path / "linked")
    (linked / "generation_config.json").unlink()
    (linked / "generation_config.json").symlink_to(world.honest / "generation_config.json")
    unreadable = copy_of(world.honest, tmp_path / "unreadable")
    real_open = builtins.open

    def open_(file, *args, **kwargs):  # root reads any file: an unreadable one is simulated
        if str(file) == str(unreadable / "config.json"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)

    folders = [wrong_type, deep, world.honest, linked, unreadable]
    try:
        verdicts = verify_all(folders, world.base, K)
    finally:
        for level in reversed(levels):
            os.rmdir(level)
    assert [v["accepted"] for v in verdicts] == [False, False, True, False, False], verdicts
    assert "weight_map" in verdicts[0]["reason"] and "subfolder" in verdicts[1]["reason"]
    assert "symbolic" in verdicts[3]["reason"] and "config.json" in verdicts[4]["reason"]
    assert all("\n" not in v["reason"] for v in verdicts if v["reason"])


@pytest.mark.parametrize("swap", ["pipe", "symlink"])
def test_a_file_swapped_after_its_name_was_checked_is_refused_without_waiting(world, tmp_path, monkeypatch, swap):
    from kalavai_utils.protocol import submission

    folder = copy_of(world.honest, tmp_path / "swapped")
    check_sizes = submission._check_sizes

    def then_swap(*args):  # between the checks on names and sizes and the one read
        sizes = check_sizes(*args)
        (folder / "config.json").unlink()
        if swap == "pipe":
            os.mkfifo(folder / "config.json")  # opening it for reading would wait for a writer, forever
        else:
            (folder / "config.json").symlink_to(world.honest / "config.json")
        return sizes

    monkeypatch.setattr(submission, "_check_sizes", then_swap)
    verdict = verify_all([folder], world.base, K)[0]
    assert not verdict["accepted"] and "config.json" in verdict["reason"], verdict


# ---------------------------------------------------------------------------------------------
# 4. One set of weights, one contributor: twins and the untouched base are refused


def renamed(world, folder: Path, name: str) -> Path:
    manifest = json.loads((world.honest / MANIFEST).read_text())
    copy_of(world.honest, folder)
    (folder / MANIFEST).write_text(json.dumps({**manifest, "contributor": name}))
    return folder


@pytest.mark.parametrize("name", ["science", "code\u200b", "co\u00addé"])
def test_the_same_weights_under_another_name_are_refused(world, tmp_path, name):
    twin = renamed(world, tmp_path / "twin", name)
    verdicts = verify_all([world.honest, twin], world.base, K)
    assert verdicts[0]["accepted"] and not verdicts[1]["accepted"]
    assert any(word in verdicts[1]["reason"] for word in ("same weights", "invisible")), verdicts[1]["reason"]


def test_a_confusable_name_is_the_same_contributor(world, tmp_path):
    other = submit(
        fine_tune(world.base, 7), tmp_path / "other", world.base, name="\uff43\uff4f\uff44\uff45"
    )  # fullwidth
    verdicts = verify_all([world.honest, other], world.base, K)
    assert verdicts[0]["accepted"] and "already handed in" in verdicts[1]["reason"]


def test_the_untouched_base_is_not_a_specialist(world, tmp_path):
    folder = submit(world.base, tmp_path / "base_again", world.base)
    refused(folder, world.base, "base")


# ---------------------------------------------------------------------------------------------
# 5. What verify prints cannot be forged: one line per submission, no terminal escapes


def test_verify_prints_names_safely(world, tmp_path, capsys):
    from kalavai_utils.__main__ import main

    forged = copy_of(world.honest, tmp_path / "x\naccepted: forged (code)\x1b[2K")
    odd = copy_of(world.honest, tmp_path / "odd")
    (odd / "note\nrefused: nothing\x1b[31m.json").write_text("{}")
    args = ["verify", "--base", str(world.base_dir), "--freeze-layers", str(K), str(forged), str(odd)]
    assert main(args) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("accepted: ") and lines[1].startswith("refused: "), out
    assert "\x1b" not in out and "\\n" in lines[0] and "\\x1b" in lines[1]


# ---------------------------------------------------------------------------------------------
# 6. train-specialist never writes over its base


@pytest.mark.parametrize("where", ["same", "inside", "holding", "symlink"])
def test_train_specialist_never_writes_over_its_base(world, tmp_path, where, no_training):
    from kalavai_utils.protocol.contributor import train_specialist_from_files

    base_dir = copy_of(world.base_dir, tmp_path / "models" / "base")
    before = {p.name: p.read_bytes() for p in base_dir.iterdir()}
    out = {"same": base_dir, "inside": base_dir / "sub", "holding": tmp_path / "models", "symlink": tmp_path / "link"}[
        where
    ]
    if where == "symlink":
        out.symlink_to(base_dir, target_is_directory=True)
    with pytest.raises(KalavaiError, match="--out|base"):
        train_specialist_from_files(str(base_dir), [str(world.text)], str(out), "x", "smoke", steps=1)
    assert {p.name: p.read_bytes() for p in base_dir.iterdir()} == before


# ---------------------------------------------------------------------------------------------
# 7. The bytes hashed are the bytes loaded, and what was verified is what later steps use


def test_a_file_swapped_during_verification_is_never_accepted(world, tmp_path):
    import os
    import threading
    import time

    from kalavai_utils.protocol.models import fingerprint
    from kalavai_utils.protocol.submission import collect_submissions

    folder = copy_of(world.honest, tmp_path / "raced")
    path = folder / "model.safetensors"
    good = path.read_bytes()
    tensors = safetensors.torch.load(good)
    tensors[TRAINED] = tensors[TRAINED] * 2  # same size, other weights, not the manifest's hash
    bad = safetensors.torch.save(tensors, metadata={"format": "pt"})
    assert len(bad) == len(good)
    versions = [tmp_path / "good", tmp_path / "bad"]
    versions[0].write_bytes(good)
    versions[1].write_bytes(bad)
    expected = fingerprint(verify_submission(world.honest, world.base, K).model)

    stop = threading.Event()

    def swap():
        i = 0
        while not stop.is_set():
            tmp = folder.parent / f"swap{i % 2}"
            os.link(versions[i % 2], tmp)
            os.replace(tmp, path)  # atomic: a reader sees one version or the other, whole
            i += 1

    writer = threading.Thread(target=swap, daemon=True)
    writer.start()
    accepted = wrong = 0
    deadline = time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            try:
                sub = verify_submission(folder, world.base, K)
            except KalavaiError:
                continue
            accepted += 1
            wrong += fingerprint(sub.model) != expected
    finally:
        stop.set()
        writer.join()
    assert wrong == 0, f"{wrong} of {accepted} acceptances hold weights whose hash is not the manifest's"

    path.write_bytes(good)
    [sub] = collect_submissions([folder], world.base, K)
    path.write_bytes(bad)  # after verification: what a later step uses is what was verified
    assert fingerprint(sub.model) == expected


# ---------------------------------------------------------------------------------------------
# 8. Every file is what its name says: hidden weight files, pickles as text, empty or odd shards


def test_a_hidden_weight_file_is_refused(world, tmp_path):
    import pickle

    folder = copy_of(world.honest, tmp_path / "hidden")
    (folder / ".safetensors").write_bytes(pickle.dumps({"w": 1}))
    rehash(folder)
    refused(folder, world.base, ".safetensors")


@pytest.mark.parametrize("name", ["merges.txt", "vocab.json", "tokenizer.json"])
def test_a_pickle_as_a_tokenizer_file_is_refused(world, tmp_path, name):
    import pickle

    folder = copy_of(world.honest, tmp_path / "pickled")
    (folder / name).write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    rehash(folder)
    refused(folder, world.base, name)


def test_a_shard_without_tensors_or_with_metadata_is_refused(world, tmp_path):
    folder = copy_of(world.honest, tmp_path / "empty_shard")
    (folder / "model-extra.safetensors").write_bytes(safetensors.torch.save({}, metadata={"anything": "x" * 100}))
    rehash(folder)
    refused(folder, world.base, "model-extra.safetensors")
    folder = copy_of(world.honest, tmp_path / "metadata")
    tensors = safetensors.torch.load((folder / "model.safetensors").read_bytes())
    safetensors.torch.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt", "note": "hello"})
    rehash(folder)
    refused(folder, world.base, "model.safetensors", "metadata")


# ---------------------------------------------------------------------------------------------
# 9. Tokenizer and config: the base's, by content


def with_tokenizer(world, folder: Path, edit=None) -> Path:
    copy_of(world.honest, folder)
    tok = json.loads((world.base_dir / "tokenizer.json").read_text())
    if edit:
        edit(tok)
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    shutil.copy(world.base_dir / "tokenizer_config.json", folder / "tokenizer_config.json")
    rehash(folder)
    return folder


def test_the_bases_own_tokenizer_is_accepted(world, tmp_path):
    folder = with_tokenizer(world, tmp_path / "same")
    assert verify_all([folder], world.base, K, base_dir=world.base_dir)[0]["accepted"]


def _swap_vocab(tok):
    vocab = tok["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]


@pytest.mark.parametrize(
    "edit",
    [
        _swap_vocab,
        lambda tok: tok["model"]["merges"].reverse(),
        lambda tok: tok["added_tokens"].append({**tok["added_tokens"][0], "id": 511, "content": "<|evil|>"}),
    ],
    ids=["vocabulary order", "merges", "added tokens"],
)
def test_another_tokenizer_is_refused(world, tmp_path, edit):
    folder = with_tokenizer(world, tmp_path / "other", edit)
    verdict = verify_all([folder], world.base, K, base_dir=world.base_dir)[0]
    assert not verdict["accepted"] and "tokenizer.json" in verdict["reason"]


def _edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    rehash(folder)


def _rope(config, key, value):
    if isinstance(config.get("rope_parameters"), dict):
        config["rope_parameters"][key] = value
    config[{"rope_theta": "rotary_emb_base", "partial_rotary_factor": "rotary_pct"}[key]] = value


@pytest.mark.parametrize(
    "field, edit",
    [
        ("rope", lambda c: _rope(c, "rope_theta", 5000.0)),
        ("rot", lambda c: _rope(c, "partial_rotary_factor", 0.5)),
        ("tie_word_embeddings", lambda c: c.update(tie_word_embeddings=True)),
        ("hidden_act", lambda c: c.update(hidden_act="relu")),
        ("layer_norm_eps", lambda c: c.update(layer_norm_eps=1e-3)),
        ("use_parallel_residual", lambda c: c.update(use_parallel_residual=False)),
    ],
)
def test_config_fields_beyond_the_shape_are_compared(world, tmp_path, field, edit):
    folder = copy_of(world.honest, tmp_path / "config")
    _edit_config(folder, edit)
    refused(folder, world.base, "config.json", field)


# ---------------------------------------------------------------------------------------------
# 10. A careless contributor's or coordinator's input: one line, exit 2, before any work


def one_line_error(capsys, argv, *words) -> str:
    from kalavai_utils.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training starts: bad input must be refused before."""
    import kalavai_utils.protocol.contributor as contributor

    def boom(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(contributor, "train_causal_lm", boom)


def test_train_specialist_bad_input_is_refused_before_training(world, tmp_path, capsys, no_training):
    def cli(*extra, data=None, out=None):
        return [
            "train-specialist",
            "--base",
            str(world.base_dir),
            "--data",
            str(data or world.text),
            "--out",
            str(out or tmp_path / "out"),
            "--name",
            "legal",
            "--scale",
            "smoke",
            *extra,
        ]

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 ".encode("latin-1") * 100)
    one_line_error(capsys, cli(data=latin1), "latin1.txt", "UTF-8")
    not_text = tmp_path / "docs.jsonl"
    not_text.write_text('{"text": "fine"}\n{"text": 12}\n')
    one_line_error(capsys, cli(data=not_text), "docs.jsonl:2", "string")
    one_line_error(capsys, cli("--seed", str(2**70)), "--seed")
    one_line_error(capsys, cli("--seed", "-1"), "--seed")
    one_line_error(capsys, cli("--steps", "-1"), "--steps")
    one_line_error(capsys, cli("--steps", "0"), "--steps")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    one_line_error(capsys, cli(out=full), "--out", "not an empty folder")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line_error(capsys, cli(out=a_file / "out"), "--out")
    (full / "legal").mkdir()
    (full / "legal" / "chunks.json").write_text("{}")
    one_line_error(capsys, cli("--heldout-out", str(full)), "--heldout-out")
    one_line_error(capsys, cli("--heldout-out", str(a_file)), "--heldout-out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_verify_and_seeds_bad_input(world, capsys):
    for k in ("-1", "99"):
        one_line_error(
            capsys,
            ["verify", "--base", str(world.base_dir), "--freeze-layers", k, str(world.honest)],
            "--freeze-layers",
        )
    one_line_error(capsys, ["check-scale", "tiny", "--seeds", ","], "--seeds")


def test_predict_gain_malformed_files_are_named(world, tmp_path, capsys):
    from kalavai_utils.protocol.prediction import FIT_FILE_KIND

    sub = submit_data(world, tmp_path / "sub", {"domain": "legal"})
    data_dir = tmp_path / "data"
    heldout_split(data_dir, "legal")

    def cli(*extra, base=world.base_dir, fit="paper"):
        return [
            "predict-gain",
            "--base",
            str(base),
            "--submissions",
            str(sub),
            "--data",
            str(data_dir),
            "--fit",
            str(fit),
            "--freeze-layers",
            str(K),
            *extra,
        ]

    fit = tmp_path / "fit.json"
    for bad in (
        {"kind": FIT_FILE_KIND, "fit": {"x": ["a", "b"], "y": [1, 2]}},
        {"kind": FIT_FILE_KIND, "fit": [1]},
        {"kind": FIT_FILE_KIND, "fit": {"x": [1, 2, 3], "y": [1, 2, 3], "slope": "s", "intercept": 0, "r2": 1}},
    ):
        fit.write_text(json.dumps(bad))
        one_line_error(capsys, cli(fit=fit), "fit.json")

    base_dir = copy_of(world.base_dir, tmp_path / "base")
    (base_dir / "config.json").write_text('{"model_type": "gpt_neox", "hidden_size": "wide"')
    one_line_error(capsys, cli(base=base_dir), str(base_dir))

    record = data_dir / "legal" / "chunks.json"
    good = record.read_text()
    record.write_text(json.dumps({"files": "none"}))
    one_line_error(capsys, cli(), "chunks.json")
    garbage = b"\x00" * 64
    record.write_text(json.dumps({"files": {"heldout.safetensors": sha256(garbage)}}))
    (data_dir / "legal" / "heldout.safetensors").write_bytes(garbage)
    one_line_error(capsys, cli(), "heldout.safetensors")
    record.write_text(good)
    ids = torch.full((2, 32), 10_000, dtype=torch.int32)  # beyond the vocabulary
    raw = safetensors.torch.save({"input_ids": ids})
    (data_dir / "legal" / "heldout.safetensors").write_bytes(raw)
    record.write_text(json.dumps({"files": {"heldout.safetensors": sha256(raw)}}))
    one_line_error(capsys, cli(), "heldout.safetensors", "vocabulary")


def sha256(raw: bytes) -> str:
    import hashlib

    return hashlib.sha256(raw).hexdigest()


def test_generate_bad_input(world, tmp_path, capsys):
    folder = copy_of(world.base_dir, tmp_path / "fused")
    (folder / "config.json").write_text('{"model_type": "kalavai_fused", "n_experts": "many"}')
    one_line_error(capsys, ["generate", "--fused", str(folder), "--prompt", "hi"], str(folder))
    one_line_error(
        capsys, ["generate", "--fused", str(folder), "--prompt", "hi", "--max-new-tokens", "0"], "--max-new-tokens"
    )


def test_compare_results_malformed_files_are_named(tmp_path, capsys):
    from kalavai_utils.reports.reference import SCHEMA

    runs = tmp_path / "runs" / "tiny"
    (runs / "base").mkdir(parents=True)
    (runs / "base" / "base_eval.json").write_text('{"revision": 1}')  # a run file missing its numbers
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "01_base.json").write_text(json.dumps({"schema": SCHEMA, "notebook": "01_base", "summary": [1]}))
    one_line_error(capsys, ["compare-results", str(runs), str(ref)], "01_base.json")
    (ref / "01_base.json").write_text(json.dumps({"schema": SCHEMA, "notebook": "01_base", "summary": {"base": {}}}))
    one_line_error(capsys, ["compare-results", str(runs), str(ref)], "01_base", "malformed")
