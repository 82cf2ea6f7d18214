"""Tokenizer and base round trips, the contributor/coordinator commands, and bad input."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, GPTNeoXForCausalLM

from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol import forecast, pipeline
from kalavai_utils.protocol.contributor import train_specialist_from_files
from kalavai_utils.protocol.evaluation import domain_loss
from kalavai_utils.protocol.metrics import divergence_pct
from kalavai_utils.protocol.models import fingerprint, load_causal_lm
from kalavai_utils.protocol.submission import write_submission
from kalavai_utils.scales import get_scale
from kalavai_utils.storage import sha256_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    scale = get_scale("smoke")
    runs = pipeline.run_dir(scale, tmp_path_factory.mktemp("runs"))
    folder, manifest = pipeline.prepare_corpus(scale, runs)
    info = pipeline.prepare_base(scale, runs)
    return scale, runs, folder, manifest, info


def test_tokenizer_and_base_round_trip_through_from_pretrained(smoke_run):
    scale, runs, folder, manifest, info = smoke_run
    path = Path(info["path"])
    model = GPTNeoXForCausalLM.from_pretrained(path)
    assert fingerprint(model) == info["fingerprint"]
    tok = AutoTokenizer.from_pretrained(path)
    text = "def f(x):\n    return x + 1"
    assert tok.decode(tok(text)["input_ids"]) == text
    for step in scale.pretrain_revisions:  # revisions saved like Pythia's stepN
        assert (runs / "base" / f"step{step}" / "model.safetensors").exists()
    assert set(scale.domains) <= set(manifest["domains"])


def test_rerun_reuses_finished_steps(smoke_run):
    scale, runs, folder, manifest, info = smoke_run
    stamp = (runs / "base" / "base.json").stat().st_mtime_ns
    again = pipeline.prepare_base(scale, runs)
    assert again == info and (runs / "base" / "base.json").stat().st_mtime_ns == stamp


def test_contributor_command_verify_and_predicted_divergence(smoke_run, tmp_path):
    scale, runs, folder, manifest, info = smoke_run
    text = tmp_path / "science.txt"
    docs = pipeline.data.domain_documents(scale, "science", n_docs=60)[0]
    text.write_text("\n\n".join(docs))
    trained = train_specialist_from_files(
        info["path"], [str(text)], str(tmp_path / "sub_sci"), "science", "smoke", steps=6
    )
    # a crafted second submission: the base with noise on its head, handed in as 'code' (it cannot beat the base;
    # the untouched base itself is refused as no specialist)
    base = load_causal_lm(info["path"])
    noisy = copy.deepcopy(base)
    with torch.no_grad():
        head = noisy.get_output_embeddings().weight
        head.add_(0.1 * torch.randn(head.shape, generator=torch.Generator().manual_seed(0)))
    write_submission(
        noisy,
        tmp_path / "sub_code",
        base_fingerprint=info["fingerprint"],
        base_state=base.state_dict(),
        freeze_layers=scale.freeze_layers,
        training={},
        data={"domain": "code"},
        contributor="code",
    )
    result = forecast.forecast(
        info["path"],
        [str(trained), str(tmp_path / "sub_code")],
        str(folder),
        fit="paper",
        freeze_layers=scale.freeze_layers,
    )
    heldout = pipeline.data.load_split(folder, "science", "heldout")
    expected = divergence_pct(domain_loss(base, heldout), domain_loss(load_causal_lm(trained), heldout))
    assert result["divergences"]["science"] == pytest.approx(expected, abs=1e-9)
    assert result["divergences"]["code"] < 0
    assert result["non_improving"] == ["code"]  # flagged, not silently averaged
    assert "WARNING" in forecast.describe(result)


def test_a_new_domain_hands_its_heldout_split_to_the_coordinator(smoke_run, tmp_path):
    scale, runs, folder, manifest, info = smoke_run
    text = tmp_path / "legal.txt"
    text.write_text("\n\n".join(pipeline.data.domain_documents(scale, "science", n_docs=60)[0]))
    sub = train_specialist_from_files(
        info["path"],
        [str(text)],
        str(tmp_path / "legal"),
        "legal",
        "smoke",
        steps=4,
        heldout_dir=str(tmp_path / "eval"),
    )
    heldout = pipeline.data.load_split(tmp_path / "eval", "legal", "heldout")  # hash-checked against its chunks.json
    assert len(heldout) > 0
    result = forecast.forecast(
        info["path"], [str(sub)], str(tmp_path / "eval"), fit="paper", freeze_layers=scale.freeze_layers
    )
    base = load_causal_lm(info["path"])
    expected = divergence_pct(domain_loss(base, heldout), domain_loss(load_causal_lm(sub), heldout))
    assert result["divergences"]["legal"] == pytest.approx(expected, abs=1e-9)
    assert not (tmp_path / "eval" / "legal" / "train.safetensors").exists()  # training text stays with the contributor
    # the submission names the split it came with, so the coordinator can tie the two together
    stats = json.loads((tmp_path / "legal" / "kalavai_submission.json").read_text())["data"]
    assert stats["heldout_chunks"] == len(heldout)
    assert stats["heldout_chunks_sha256"] == sha256_bytes(heldout.int().numpy().tobytes())
    with pytest.raises(KalavaiError, match="contributor name"):
        train_specialist_from_files(
            info["path"], [str(text)], str(tmp_path / "x"), "../x", "smoke", steps=1, heldout_dir=str(tmp_path / "eval")
        )


@pytest.mark.slow
def test_a_sharded_contributor_hands_in_what_one_process_would(smoke_run, tmp_path, monkeypatch):
    # The 6.9B route at smoke size: `accelerate launch` of the contributor command over two CPU
    # processes with KALAVAI_FSDP=1; only the main process reads the base's weights.
    import torch
    from test_distributed import _free_port

    from kalavai_utils.protocol.submission import verify_all

    monkeypatch.delenv("KALAVAI_FSDP", raising=False)  # this process trains unsharded
    scale, runs, folder, manifest, info = smoke_run
    text = tmp_path / "science.txt"
    text.write_text("\n\n".join(pipeline.data.domain_documents(scale, "science", n_docs=60)[0]))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ACCELERATE_USE_CPU": "true",
        "KALAVAI_FSDP": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "kalavai_utils",
        "train-specialist",
        "--base",
        info["path"],
        "--data",
        str(text),
        "--out",
        str(tmp_path / "sharded"),
        "--name",
        "science",
        "--scale",
        "smoke",
        "--steps",
        "4",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("submission written") == 1
    one = train_specialist_from_files(info["path"], [str(text)], str(tmp_path / "one"), "science", "smoke", steps=4)
    base = load_causal_lm(info["path"])
    verdicts = verify_all([str(tmp_path / "sharded")], base, scale.freeze_layers)
    assert verdicts[0]["accepted"], verdicts
    sharded, plain = load_causal_lm(tmp_path / "sharded").state_dict(), load_causal_lm(one).state_dict()
    for name, w in plain.items():
        torch.testing.assert_close(sharded[name], w, rtol=1e-5, atol=1e-6, msg=name)
    manifest_of = lambda sub: json.loads((Path(sub) / "kalavai_submission.json").read_text())  # noqa: E731
    assert manifest_of(tmp_path / "sharded")["data"] == manifest_of(one)["data"]
    assert manifest_of(tmp_path / "sharded")["base_fingerprint"] == info["fingerprint"]


@pytest.mark.slow
def test_notebook_02s_training_runs_sharded_before_it_and_the_notebook_finds_it_done(smoke_run, tmp_path, monkeypatch):
    # The 6.9b route (`KALAVAI_FSDP=1 ./run_all.sh --processes N`) at smoke size: notebook 02's
    # corpus, specialists and monolithic baseline are made by two sharded CPU processes first;
    # the notebook, in one process, then trains nothing (a specialist it trained itself would not
    # be sharded), and what was handed in equals one process's training.
    import dataclasses
    import shutil

    import torch

    from kalavai_utils import notebooks
    from kalavai_utils.protocol import cooperative
    from kalavai_utils.protocol.submission import verify_all

    scale, runs, folder, manifest, info = smoke_run
    mine = pipeline.run_dir(scale, tmp_path)
    for step in ("data/tokenizer", "data/pretrain", "base"):  # the base made; the corpus is made by the launch
        shutil.copytree(runs / step, mine / step)
    monkeypatch.setenv("KALAVAI_FSDP", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebooks.run_notebooks("smoke", only="02", runs_root=str(tmp_path), processes=2)
    assert "train-cooperative" in notebooks.read_timings(mine)["notebooks"]
    coop = cooperative.main_cooperative(scale, mine, scale.seeds[0], mine / folder.relative_to(runs))
    logs = {p.parent.name: json.loads(p.read_text()) for p in sorted(coop.folder(mine).glob("**/train_log.json"))}
    assert sorted(logs) == sorted([*scale.domains, "monolithic"])
    assert all(log["fsdp_shard_fraction"] == pytest.approx(0.5, abs=0.01) for log in logs.values())
    base = load_causal_lm(info["path"])
    subs = cooperative.submission_folders(coop, mine)
    assert all(v["accepted"] for v in verify_all([str(s) for s in subs], base, scale.freeze_layers))

    monkeypatch.delenv("KALAVAI_FSDP")
    one = dataclasses.replace(coop, monolithic=False, domains=("code",))
    one_logs = cooperative.train_contributors(one, pipeline.run_dir(scale, tmp_path / "one"), base, info["fingerprint"])
    assert logs["code"]["loss"] == pytest.approx(one_logs["code"]["loss"], rel=1e-5)
    sharded = load_causal_lm(coop.folder(mine) / "specialists" / "code" / "submission").state_dict()
    plain = load_causal_lm(
        one.folder(pipeline.run_dir(scale, tmp_path / "one")) / "specialists" / "code" / "submission"
    )
    for name, w in plain.state_dict().items():
        torch.testing.assert_close(sharded[name], w, rtol=1e-5, atol=1e-6, msg=name)

    # A specialist that another cooperative trained the same way is copied by the main process's
    # decision, and every process moves on (the others must not train it alone, waiting forever).
    code = coop.folder(mine) / "specialists" / "code"
    elsewhere = mine / "elsewhere" / "specialists"
    elsewhere.mkdir(parents=True)
    code.rename(elsewhere / "code")
    monkeypatch.setenv("KALAVAI_FSDP", "1")
    notebooks.launch_training("smoke", 2, runs_root=str(tmp_path))
    copied = json.loads((code / "train_log.json").read_text())
    assert copied["copied_from"] == "elsewhere/specialists/code" and copied["loss"] == logs["code"]["loss"]


def test_a_scale_that_trains_sharded_runs_its_main_result_only_and_never_trains_unsharded(
    smoke_run, tmp_path, monkeypatch
):
    from kalavai_utils import notebooks
    from kalavai_utils.protocol import cooperative
    from kalavai_utils.protocol.training import TrainConfig

    assert [p.name[:2] for p in notebooks.select(None, "6.9b")] == ["00", "01", "02", "03"]
    assert len(notebooks.select(None, "1b")) == len(notebooks.available())
    with pytest.raises(KalavaiError, match=r"at scale 6.9b only the main result runs .*notebook\(s\) 04"):
        notebooks.select("03,04", "6.9b")
    scale, runs, folder, manifest, info = smoke_run
    monkeypatch.delenv("KALAVAI_FSDP", raising=False)
    train = pipeline.data.load_split(folder, "code", "train")
    with pytest.raises(KalavaiError, match="at scale 6.9b the specialists train only sharded"):
        cooperative.train_specialist(
            load_causal_lm(info["path"]),
            info["fingerprint"],
            train,
            TrainConfig.specialist(scale, 42, steps=1),
            tmp_path / "x",
            contributor="code",
            data={},
            sharded="6.9b",
        )
    with pytest.raises(KalavaiError, match="train only sharded"):  # before any process loads the base
        cooperative.train_main_cooperatives(get_scale("6.9b"), tmp_path / "runs", [42])
    for processes in (None, "1"):  # before notebooks 00-01, too
        with pytest.raises(KalavaiError, match="KALAVAI_FSDP=1 ./run_all.sh --scale 6.9b --processes 4"):
            notebooks.parse_processes(processes, "6.9b", notebooks.select("02", "6.9b"))
    assert notebooks.parse_processes(None, "6.9b", notebooks.select("03", "6.9b")) is None  # evaluation only
    monkeypatch.setenv("KALAVAI_FSDP", "1")
    assert notebooks.parse_processes("4", "6.9b", notebooks.select("02", "6.9b")) == 4
    with notebooks.kernel_environment():  # a notebook's kernel is one process
        assert "KALAVAI_FSDP" not in os.environ
    assert os.environ["KALAVAI_FSDP"] == "1"


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "kalavai_utils", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (("check-scale", "huge"), "unknown scale 'huge'"),
        (("check-scale", "tiny", "--only", "00,77"), "unknown notebook number(s) 77"),
        (("check-scale", "tiny", "--seeds", "4x"), "--seeds takes comma-separated integers"),
        (("check-scale", "tiny", "--processes", "0"), "--processes takes a positive number"),
        (("check-scale", "410m", "--processes", "3"), "8 x 1 = 8 sequences cannot be split evenly over 3 processes"),
        (("check-scale", "6.9b", "--only", "05"), "at scale 6.9b only the main result runs"),
        (
            ("verify", "--base", "/nonexistent", "--freeze-layers", "1", "/nonexistent2"),
            "no such checkpoint folder: /nonexistent",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = _cli(*args)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and message in r.stderr, r.stderr


@pytest.mark.slow
def test_run_all_refuses_unknown_scale_before_running_anything():
    r = subprocess.run([str(ROOT / "run_all.sh"), "--scale", "huge"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown scale" in r.stderr


@pytest.mark.slow
def test_hub_scale_without_hub_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    # offline, nothing is asked of the network: the missing cache is named with the command that fills it
    with pytest.raises(KalavaiError, match="pythia-410m@step10000 is not in the local Hugging Face cache.*fetch"):
        pipeline.prepare_tokenizer(get_scale("410m"), tmp_path)
    with pytest.raises(KalavaiError, match="Hub model EleutherAI/pythia-410m@step10000.*HF_HUB_OFFLINE=1"):
        load_causal_lm("EleutherAI/pythia-410m", "step10000")
