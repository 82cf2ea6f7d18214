"""The coordinator's commands `fuse` and `evaluate` (issue 31): the whole path by commands, and bad input.

The slow test runs the protocol as a user would, by the commands alone (each in its own process):
three contributors train specialists from a base, the coordinator verifies them, predicts the
gain, fuses them with a router trained on documents no contributor saw, evaluates every model and
generates. It does so twice, no command told the family: from the offline smoke base (GPT-NeoX)
and from a small random Llama-family base built here. The others hand each command bad input and
expect one `error:` line, exit code 2 and no output folder.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_adversarial import TEXT, copy_of, one_line_error
from test_families import CASES, config_of
from test_submission import K, fine_tune, make_base, rehash, submit

from kalavai_utils.experiments import coordinator
from kalavai_utils.families import get_family
from kalavai_utils.storage import sha256_file

ROOT = Path(__file__).resolve().parent.parent

# text in scripts the offline tokenizers never learned, one per script
SCRIPTS = {"greek": (0x3B1, 0x3C9), "cyrillic": (0x430, 0x44F), "cjk": (0x4E00, 0x4FFF), "thai": (0xE01, 0xE2E)}


def foreign_text(script: str, n_words: int = 400) -> str:
    lo, hi = SCRIPTS[script]
    r = random.Random(script)
    return " ".join("".join(chr(r.randint(lo, hi)) for _ in range(r.randint(2, 8))) for _ in range(n_words))


# ---------------------------------------------------------------------------------------------
# Bad input, on a tiny world built in this process


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    from kalavai_utils.protocol.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("fuse")
    base = make_base(0)
    base_dir = root / "base"
    base.save_pretrained(base_dir)
    train_tokenizer([TEXT * 20], base.config.vocab_size).save_pretrained(base_dir)
    subs = [submit(fine_tune(base, seed), root / name, base, name=name) for seed, name in ((1, "alpha"), (2, "beta"))]
    text = root / "router.txt"
    text.write_text(TEXT * 60)
    heldout = root / "heldout.txt"
    heldout.write_text(TEXT.upper() * 30)
    return SimpleNamespace(root=root, base=base, base_dir=base_dir, subs=subs, text=text, heldout=heldout)


def fuse_argv(light, out, *extra, subs=None, text=None):
    return [
        "fuse",
        "--base",
        str(light.base_dir),
        "--submissions",
        *map(str, subs or light.subs),
        "--router-text",
        *map(str, text or [light.text]),
        "--out",
        str(out),
        "--freeze-layers",
        str(K),
        "--steps",
        "2",
        *extra,
    ]


@pytest.fixture(scope="module")
def fused(light, tmp_path_factory):
    """A fused folder made in this process from the tiny world, with its evaluation."""
    from kalavai_utils.__main__ import main

    out = tmp_path_factory.mktemp("fused") / "out"
    heldout = [f"alpha={light.heldout}", f"beta={light.heldout}"]
    assert main(fuse_argv(light, out, "--heldout", *heldout)) == 0
    return out


def test_fuse_writes_a_folder_that_records_what_went_in(light, fused):
    record = json.loads((fused / coordinator.RECORD).read_text())
    assert [e["name"] for e in record["experts"]] == ["alpha", "beta"]
    assert record["freeze_layers"] == K and record["router"]["kind"] == "linear" and record["router"]["causal"]
    for e, sub in zip(record["experts"], light.subs):  # the hashes the submission's manifest vouched for
        assert e["files"]["model.safetensors"] == sha256_file(Path(sub) / "model.safetensors")
    assert record["router_text"]["sources"][0]["sha256"] == sha256_file(light.text)
    for name, digest in record["files"].items():  # the folder's own files, as written
        assert sha256_file(fused / name) == digest
    card = (fused / coordinator.CARD).read_text()
    for word in ("alpha", "beta", record["experts"][0]["fingerprint"], sha256_file(light.text), "Evaluation"):
        assert word in card
    assert f"{record['router_text']['tokens']:,} tokens" in card
    assert not [p for p in fused.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_fused_folder_with_a_changed_file_is_refused_by_evaluate(light, fused, tmp_path, capsys):
    changed = copy_of(fused, tmp_path / "changed")
    config = json.loads((changed / "config.json").read_text())
    config["router_seed"] = 7
    (changed / "config.json").write_text(json.dumps(config))

    def argv(folder):
        return [
            "evaluate",
            "--model",
            f"base={light.base_dir}",
            f"alpha={light.subs[0]}",
            f"fused={folder}",
            "--heldout",
            f"alpha={light.heldout}",
            "--base",
            "base",
            "--specialists",
            "alpha",
        ]

    one_line_error(capsys, argv(changed), "config.json", "changed", coordinator.RECORD)
    weights = copy_of(fused, tmp_path / "weights")
    raw = bytearray((weights / "model.safetensors").read_bytes())
    raw[-1] ^= 1  # one bit of one weight
    (weights / "model.safetensors").write_bytes(bytes(raw))
    one_line_error(capsys, argv(weights), "model.safetensors", "changed")
    from kalavai_utils.__main__ import main

    assert main(argv(fused)) == 0  # the folder as written is accepted
    assert "alpha" in capsys.readouterr().out


def test_fuse_bad_input_is_one_line_and_writes_nothing(light, tmp_path, capsys):
    out = tmp_path / "out"

    def refused(argv, *words):
        one_line_error(capsys, argv, *words)
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # submissions of another base, of another family, carrying another tokenizer
    other = make_base(5)
    foreign = submit(fine_tune(other), tmp_path / "foreign", other, name="gamma")
    refused(fuse_argv(light, out, subs=[light.subs[0], foreign]), "foreign", "another base")
    family = copy_of(light.subs[1], tmp_path / "family")
    config = json.loads((family / "config.json").read_text())
    config["model_type"] = "llama"
    (family / "config.json").write_text(json.dumps(config))
    rehash(family)
    refused(fuse_argv(light, out, subs=[light.subs[0], family]), "family", "model_type")
    tokenized = copy_of(light.subs[1], tmp_path / "tokenized")
    from kalavai_utils.protocol.tokenizer import train_tokenizer

    train_tokenizer(["zebra quagga okapi " * 200], 300).save_pretrained(tokenized)
    rehash(tokenized)
    refused(fuse_argv(light, out, subs=[light.subs[0], tokenized]), "tokenized", "tokenizer")

    # router text empty, unreadable, missing, no chunk folder, or in a script the tokenizer never learned
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    refused(fuse_argv(light, out, text=[empty]), "--router-text", "empty.txt", "no text")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 ".encode("latin-1") * 100)
    refused(fuse_argv(light, out, text=[latin1]), "latin1.txt", "UTF-8")
    refused(fuse_argv(light, out, text=[tmp_path / "nowhere.txt"]), "nowhere.txt")
    (tmp_path / "a_folder").mkdir()
    refused(fuse_argv(light, out, text=[tmp_path / "a_folder"]), "a_folder", "chunks.json")
    greek = tmp_path / "greek.txt"
    greek.write_text(foreign_text("greek"))
    refused(fuse_argv(light, out, text=[light.text, greek]), "greek.txt", "bytes per token")
    short = tmp_path / "short.txt"
    short.write_text("def f")
    refused(fuse_argv(light, out, text=[short]), "too little router text")

    # --out over the base, a submission, inside one, or a folder that is not empty
    refused(fuse_argv(light, light.base_dir), "--out", "base")
    refused(fuse_argv(light, light.subs[0]), "--out", "submission")
    refused(fuse_argv(light, Path(light.subs[1]) / "fused"), "--out", "submission")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    one_line_error(capsys, fuse_argv(light, full), "--out", "not an empty folder")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]

    # the evaluation must not read the router's training text; each expert needs its own domain's set
    refused(fuse_argv(light, out, "--heldout", f"alpha={light.text}", f"beta={light.heldout}"), "also router text")
    refused(fuse_argv(light, out, "--heldout", f"alpha={light.heldout}"), "beta", "--heldout")
    refused(fuse_argv(light, out, "--heldout", "alpha"), "NAME=PATH")
    # held-out chunks of another tokenizer (ids beyond the base's vocabulary)
    from kalavai_utils.protocol import data

    data.save_splits(tmp_path / "other", {"heldout": torch.full((2, 32), 9999, dtype=torch.int32)}, 32, {})
    refused(fuse_argv(light, out, "--heldout", f"alpha={tmp_path / 'other'}"), "vocabulary")

    # the command's own arguments
    refused(fuse_argv(light, out, "--router", "mlp"), "--router")
    refused(fuse_argv(light, out, "--seed", "-1"), "--seed")
    refused(fuse_argv(light, out, subs=light.subs[:1]), "two submissions")
    argv = fuse_argv(light, out)
    argv[argv.index("--steps") + 1] = "0"
    refused(argv, "--steps")
    argv = fuse_argv(light, out)
    del argv[argv.index("--freeze-layers") : argv.index("--freeze-layers") + 2]
    refused(argv, "--freeze-layers")


def test_evaluate_bad_input_is_one_line(light, tmp_path, capsys):
    def argv(*models, heldout=None, base="base", specialists="alpha", extra=()):
        return [
            "evaluate",
            "--model",
            *(models or (f"base={light.base_dir}", f"alpha={light.subs[0]}")),
            "--heldout",
            *(heldout or [f"alpha={light.heldout}"]),
            "--base",
            base,
            "--specialists",
            specialists,
            *extra,
        ]

    one_line_error(capsys, argv(base="nobody"), "--base", "nobody")
    one_line_error(capsys, argv(specialists="nobody"), "--specialists", "nobody")
    one_line_error(capsys, argv(specialists="base"), "--specialists", "base")
    one_line_error(capsys, argv(heldout=[f"other={light.heldout}"]), "alpha", "domain")
    one_line_error(capsys, argv(f"base={light.base_dir}", f"alpha={tmp_path}"), "--model", "alpha")
    one_line_error(capsys, argv(extra=("--json", str(tmp_path / "no" / "such.json"))), "--json")
    bigger = copy_of(light.subs[0], tmp_path / "bigger")  # another vocabulary: another tokenizer
    big = make_base(0, vocab_size=600)
    big.save_pretrained(bigger)
    (bigger / "kalavai_submission.json").unlink()
    one_line_error(capsys, argv(f"base={light.base_dir}", f"alpha={bigger}"), "vocabulary")
    from kalavai_utils.protocol.tokenizer import train_tokenizer

    other_tokenizer = copy_of(light.base_dir, tmp_path / "other_tokenizer")  # the same weights, another tokenizer
    train_tokenizer(["zebra quagga okapi " * 200], 300).save_pretrained(other_tokenizer)
    one_line_error(capsys, argv(f"base={light.base_dir}", f"alpha={other_tokenizer}"), "alpha", "tokenizer differs")
    tampered = copy_of(light.subs[0], tmp_path / "tampered")  # a submission edited after its manifest
    (tampered / "generation_config.json").write_text("{}")
    one_line_error(capsys, argv(f"base={light.base_dir}", f"alpha={tampered}"), "generation_config.json", "changed")


def test_the_router_text_rule(light):
    """Known text passes; text in a script the tokenizer never learned is refused, whichever script."""
    from kalavai_utils.protocol.tokenizer import load_local_tokenizer

    tokenizer = load_local_tokenizer(light.base_dir)

    def text_of(content: str, tmp: Path) -> coordinator.Text:
        tmp.write_text(content)
        return coordinator.read_text(tmp, tokenizer, ("train",), 512, "--router-text")

    known = text_of(TEXT * 10, light.root / "known.txt")
    assert known.bytes_per_token >= 2 * coordinator.MIN_BYTES_PER_TOKEN
    coordinator.check_known_text(known, "--router-text")
    for script in SCRIPTS:
        unknown = text_of(foreign_text(script), light.root / f"{script}.txt")
        assert unknown.bytes_per_token < coordinator.MIN_BYTES_PER_TOKEN, script
        with pytest.raises(coordinator.KalavaiError, match="bytes per token"):
            coordinator.check_known_text(unknown, "--router-text")


# ---------------------------------------------------------------------------------------------
# The whole path, by the commands alone


def command(*argv, cwd=ROOT) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "kalavai_utils", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )
    assert done.returncode == 0, f"{argv[0]}: {done.stderr[-3000:]}"
    return done.stdout


def random_base(case: str, scale, runs: Path, folder: Path) -> Path:
    """A small random base of a test_families case with the scale's tokenizer and vocabulary, as a practitioner
    hands one in: config, safetensors weights and tokenizer files written by save_pretrained. Two blocks above
    the scale's frozen ones, and a context longer than the scale's chunks."""
    from kalavai_utils.protocol import pipeline
    from kalavai_utils.protocol.models import build_causal_lm

    tokenizer = pipeline.prepare_tokenizer(scale, runs)
    config = config_of(
        case,
        vocab_size=len(tokenizer),
        num_hidden_layers=scale.freeze_layers + 2,
        max_position_embeddings=2 * scale.seq_len,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    build_causal_lm(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# the bases the whole path starts from: the offline smoke base (GPT-NeoX, pretrained here), or a random base of
# a test_families case (Llama: grouped-query attention); each command must read the family from the base's config
BASES = ["offline", "llama"]


@pytest.fixture(scope="module", params=BASES)
def path(request, tmp_path_factory):
    from kalavai_utils import corpora
    from kalavai_utils.protocol import pipeline
    from kalavai_utils.scales import get_scale

    scale = get_scale("smoke")
    root = tmp_path_factory.mktemp(f"path-{request.param}")
    runs = pipeline.run_dir(scale, root / "runs")
    if request.param == "offline":
        pipeline.prepare_corpus(scale, runs)
        base = pipeline.prepare_base(scale, runs)["path"]
    else:
        base = random_base(request.param, scale, runs, root / "base")
    work = root / "work"
    work.mkdir()
    seen = set()
    for d in scale.domains:  # each contributor's own text: the code one as text files, the others as .jsonl
        docs = pipeline.data.domain_documents(scale, d, n_docs=60)[0]
        seen |= set(docs)
        if d == "code":
            (work / "code_texts").mkdir()
            for i, doc in enumerate(docs):
                (work / "code_texts" / f"{i:03d}.txt").write_text(doc)
        else:
            (work / f"{d}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    # documents no contributor saw (the code generator draws from a fixed stock of real code: some repeat)
    router_docs = [t for d in scale.domains for t in corpora.generate_documents(d, 20, seed=7) if t not in seen]
    assert len(router_docs) > 40
    (work / "router.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in router_docs))

    out = {}
    for d in scale.domains:
        data = sorted((work / "code_texts").glob("*.txt")) if d == "code" else [work / f"{d}.jsonl"]
        out[f"train-{d}"] = command(
            "train-specialist", "--base", base, "--data", *data, "--out", work / f"sub_{d}", "--name", d,
            "--scale", "smoke", "--steps", 8, "--heldout-out", work / "eval",
        )  # fmt: skip
    subs = [work / f"sub_{d}" for d in scale.domains]
    heldout = [f"{d}={work / 'eval' / d}" for d in scale.domains]
    out["verify"] = command("verify", "--base", base, "--freeze-layers", scale.freeze_layers, *subs)
    out["predict-gain"] = command(
        "predict-gain", "--base", base, "--submissions", *subs, "--data", work / "eval",
        "--freeze-layers", scale.freeze_layers, "--fit", "paper",
    )  # fmt: skip
    out["fuse"] = command(
        "fuse", "--base", base, "--submissions", *subs, "--router-text", work / "router.jsonl",
        "--heldout", *heldout, "--freeze-layers", scale.freeze_layers, "--steps", 60, "--out", work / "fused",
    )  # fmt: skip
    out["evaluate"] = command(
        "evaluate", "--model", f"base={base}", *[f"{d}={s}" for d, s in zip(scale.domains, subs)],
        f"fused={work / 'fused'}", "--heldout", *heldout, "--base", "base",
        "--specialists", ",".join(scale.domains), "--json", work / "evaluation.json",
    )  # fmt: skip
    out["generate"] = command(
        "generate", "--fused", work / "fused", "--prompt", "The court held", "--max-new-tokens", 8
    )
    if request.param == "offline" and os.environ.get("KALAVAI_FUSE_TRANSCRIPT"):  # pasted into docs/fuse-your-own.md
        Path(os.environ["KALAVAI_FUSE_TRANSCRIPT"]).write_text(json.dumps(out, indent=2))
    return SimpleNamespace(
        scale=scale, base=base, work=work, subs=subs, out=out, fused=work / "fused",
        model_type=scale.family if request.param == "offline" else CASES[request.param][0],
    )  # fmt: skip


@pytest.mark.slow
def test_the_whole_path_by_commands(path):
    out, domains = path.out, path.scale.domains
    for d in domains:
        assert out[f"train-{d}"].strip() == f"submission written: {path.work / f'sub_{d}'}"
    assert out["verify"].count("accepted:") == 3
    assert "predicted gain" in out["predict-gain"]
    lines = out["fuse"].splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["accepted:"] * 3
    assert lines[3].startswith("router text: 1 source,") and lines[-1] == f"fused model written: {path.fused}"
    assert out["generate"].startswith("The court held") and len(out["generate"].rstrip("\n")) > len("The court held")
    # no command was told the family: each submission and the fused folder are in the base's own
    for sub in path.subs:
        assert json.loads((sub / "config.json").read_text())["model_type"] == path.model_type
    assert json.loads((path.fused / "config.json").read_text())["specialist"]["model_type"] == path.model_type


@pytest.mark.slow
def test_the_fused_folder_loads_with_plain_transformers_and_its_evaluation_holds(path):
    from transformers import AutoModelForCausalLM

    from kalavai_utils.protocol import data
    from kalavai_utils.protocol.evaluation import evaluate_domains
    from kalavai_utils.protocol.fusion import FusedModel
    from kalavai_utils.protocol.results import load_results

    model = AutoModelForCausalLM.from_pretrained(path.fused)
    assert isinstance(model, FusedModel) and model.config.expert_names == list(path.scale.domains)
    family = get_family(path.model_type)
    assert model.family is family and all(type(b) is family.layer_cls for b in model.shared_layers)
    results = load_results(path.work / "evaluation.json")  # the project's results schema
    models = ["base", *path.scale.domains, "fused"]
    assert list(results["losses"]) == models and results["domains"] == list(path.scale.domains)
    assert results["specialists"] == {d: d for d in path.scale.domains}
    m = results["metrics"]
    assert set(m["gain_vs_best_pct"]) == set(models) and m["best_specialist"] in path.scale.domains
    assert set(m["divergence_pct"]) == set(path.scale.domains) and "oracle_ew" in m
    table = path.out["evaluate"].splitlines()
    assert table[0].split()[:4] == ["model", *path.scale.domains] and [r.split()[0] for r in table[1:6]] == models

    # the fused row: the saved folder reloaded, evaluated by the protocol, and the table fuse wrote
    heldout = {d: data.load_split(path.work / "eval", d, "heldout") for d in path.scale.domains}
    reloaded = evaluate_domains(model, heldout, 4, 50)
    for d in path.scale.domains:
        assert results["losses"]["fused"][d] == pytest.approx(reloaded[d], abs=1e-6)
    at_fusion = load_results(path.fused / coordinator.RESULTS)
    record = json.loads((path.fused / coordinator.RECORD).read_text())
    fused_row = at_fusion["losses"][record["router"]["name"]]
    for d in path.scale.domains:
        assert fused_row[d] == pytest.approx(results["losses"]["fused"][d], abs=1e-5)
        assert at_fusion["losses"][f"spec:{d}"][d] == pytest.approx(results["losses"][d][d], abs=1e-5)
    assert record["router_text"]["sources"][0]["sha256"] == sha256_file(path.work / "router.jsonl")


@pytest.mark.slow
def test_every_offline_domain_passes_the_router_text_rule_and_other_scripts_do_not(path, tmp_path):
    from kalavai_utils import corpora
    from kalavai_utils.protocol.tokenizer import load_local_tokenizer

    tokenizer = load_local_tokenizer(path.base)
    scale = path.scale
    for d in [*scale.domains, *scale.extra_domains, *scale.languages]:  # the rare languages included
        doc = tmp_path / f"{d}.txt"
        doc.write_text("\n\n".join(corpora.generate_documents(d, 10, seed=3)))
        coordinator.check_known_text(coordinator.read_text(doc, tokenizer, ("train",), 512, "--router-text"), "x")
    for script in SCRIPTS:
        doc = tmp_path / f"{script}.txt"
        doc.write_text(foreign_text(script))
        with pytest.raises(coordinator.KalavaiError, match="bytes per token"):
            coordinator.check_known_text(coordinator.read_text(doc, tokenizer, ("train",), 512, "--router-text"), "x")
