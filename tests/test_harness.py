"""A fused folder scored by outside clients: EleutherAI's lm-evaluation-harness (the extra `eval`)
on the local held-out task, and transformers' text-generation pipeline.

The harness's log-likelihood of each domain's held-out text must equal the project's evaluation of
the same tokens (reports.harness.rolling_loglikelihood: `domain_loss` over the harness's windows)
within TOL_NATS_PER_TOKEN (docs/protocol-cli.md states it, with what was measured).
"""

import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPTNeoXForCausalLM

from kalavai_utils.experiments.inference import save_fused
from kalavai_utils.protocol import pipeline
from kalavai_utils.protocol.data import load_splits
from kalavai_utils.protocol.fusion import FusedModel
from kalavai_utils.protocol.models import frozen_prefix_names, offline_config
from kalavai_utils.reports import harness
from kalavai_utils.scales import get_scale

ROOT = Path(__file__).resolve().parent.parent
# Measured: at most 8e-8 nats per token (float32, CPU; the harness batches 4 windows, the project
# one chunk at a time): rounding. The bound leaves room for other BLAS kernels, and is far below
# a real difference: another prefix token before the first window moves the sum by 0.13 nats (3e-4 per token).
TOL_NATS_PER_TOKEN = 1e-6
DOMAINS = ("code", "lang_script")  # lang_script's held-out stream starts inside a character
MAX_CHUNKS = 12  # chunks of 32 tokens per domain: 12 windows of the harness (11 for lang_script)

if harness.installed_version() is None:
    if os.environ.get("CI"):  # CI installs the extra (scripts/ensure_env.sh): a skip there would hide a broken install
        raise RuntimeError(f"CI without lm-evaluation-harness: {harness.INSTALL_HINT}")
    pytest.skip(f"lm-evaluation-harness is not installed ({harness.INSTALL_HINT})", allow_module_level=True)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke corpus and tokenizer, and a fused model of three specialists of the smoke base
    (their unfrozen weights moved apart at random: fake fine-tuning), saved as a folder."""
    scale = get_scale("smoke")
    runs = pipeline.run_dir(scale, tmp_path_factory.mktemp("runs"))
    data_dir, _ = pipeline.prepare_corpus(scale, runs, domains=list(DOMAINS))
    base = GPTNeoXForCausalLM.from_pretrained(pipeline.prepare_base(scale, runs)["path"]).eval()
    assert base.config.max_position_embeddings == scale.seq_len
    frozen = set(frozen_prefix_names(base.state_dict().keys(), scale.freeze_layers))
    torch.manual_seed(0)
    specialists = []
    for _ in range(3):
        m = GPTNeoXForCausalLM(offline_config(scale, base.config.vocab_size))
        m.load_state_dict(base.state_dict())
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name not in frozen:
                    p.add_(0.05 * torch.randn_like(p))
        specialists.append(m.eval())
    fused = FusedModel.from_specialists(specialists, ["code", "science", "fiction"], scale.freeze_layers)
    fused.use_router("linear", "token", seed=1)  # causal: the harness's windows see only their past
    tokenizer = pipeline.prepare_tokenizer(scale, runs)
    folder = save_fused(fused.eval(), tokenizer, tmp_path_factory.mktemp("fused") / "fused")
    return scale, data_dir, folder, fused, tokenizer


def test_rolling_chunks_are_the_harness_windows():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    ids = torch.randint(2, 500, (4 * 7,), generator=torch.Generator().manual_seed(0)).tolist()
    chunks = harness.rolling_chunks(ids, 0, 7)
    windows = [make_disjoint_window(w) for w in get_rolling_token_windows(ids, 0, 7, context_len=1)]
    assert len(windows) == len(chunks) == 4
    for chunk, (context, targets) in zip(chunks, windows):
        # the harness feeds (context + targets)[:-1] and scores every target: a chunk of 8, all 7 scored
        assert len(targets) == 7 and chunk.tolist() == (context + targets)[-8:]
    with pytest.raises(harness.KalavaiError, match="multiple of max_length"):
        harness.rolling_chunks(ids[:-1], 0, 7)


def test_heldout_span_is_whole_windows_that_tokenize_back(smoke):
    scale, data_dir, folder, fused, tokenizer = smoke
    heldout = load_splits(data_dir, DOMAINS, "heldout")

    def round_trips(ids):
        return tokenizer(tokenizer.decode(ids), add_special_tokens=False)["input_ids"] == ids

    start, ids, text = harness.heldout_span(heldout["code"], tokenizer, scale.seq_len, 3)
    assert (start, ids) == (0, heldout["code"][:3].reshape(-1).tolist()) and text == tokenizer.decode(ids)
    # lang_script's held-out chunks begin inside a character: its span starts a few tokens later,
    # one window shorter, and is the first such span that tokenizes back
    stream = heldout["lang_script"][:MAX_CHUNKS].reshape(-1).tolist()
    assert not round_trips(stream)
    start, ids, _ = harness.heldout_span(heldout["lang_script"], tokenizer, scale.seq_len, MAX_CHUNKS)
    assert 0 < start < scale.seq_len and len(ids) == len(stream) - scale.seq_len
    assert ids == stream[start : start + len(ids)] and round_trips(ids)
    assert not any(round_trips(stream[s : s + len(ids)]) for s in range(start))
    with pytest.raises(harness.KalavaiError, match="no span of whole"):
        harness.heldout_span(heldout["lang_script"][:1, :4], tokenizer, 4, None)


@pytest.mark.slow
def test_lm_eval_harness_scores_the_heldout_text_as_the_project_does(smoke, tmp_path):
    scale, data_dir, folder, fused, tokenizer = smoke
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    task = tmp_path / "task"
    cmd = [sys.executable, "-m", "kalavai_utils", "harness-task", "--fused", str(folder), "--data", str(data_dir)]
    cmd += ["--out", str(task), "--domains", ",".join(DOMAINS), "--max-chunks", str(MAX_CHUNKS)]
    made = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    record = json.loads((task / harness.TASK_FILE).read_text())
    assert record["max_length"] == scale.seq_len  # the fused config's context: the specialists' chunk length
    # the docs' command (docs/protocol-cli.md), as harness-task prints it, plus where to write the samples
    args = harness.harness_args(folder, task)
    assert f"python -m kalavai_utils lm-eval {' '.join(args)}" in made.stdout
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "kalavai_utils", "lm-eval", *args, "--output_path", str(out), "--log_samples"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    for domain in DOMAINS:
        assert harness.task_name(domain) in done.stdout  # the results table
    (results_file,) = glob.glob(str(out / "**" / "results_*.json"), recursive=True)
    results = json.loads(Path(results_file).read_text())

    heldout = load_splits(data_dir, DOMAINS, "heldout")
    worst = 0.0
    for domain in DOMAINS:
        name = harness.task_name(domain)
        (samples_file,) = glob.glob(str(out / "**" / f"samples_{name}_*.jsonl"), recursive=True)
        (sample,) = [json.loads(line) for line in Path(samples_file).read_text().splitlines()]
        harness_ll = float(sample["resps"][0][0])
        start, ids, text = harness.heldout_span(heldout[domain], tokenizer, scale.seq_len, MAX_CHUNKS)
        assert (start, len(ids)) == (record["domains"][domain]["start"], record["domains"][domain]["tokens"])
        assert text == json.loads((task / f"{domain}.jsonl").read_text())["text"]
        project_ll = harness.rolling_loglikelihood(fused, ids, tokenizer.bos_token_id, scale.seq_len)
        worst = max(worst, abs(harness_ll - project_ll) / len(ids))
        assert abs(harness_ll - project_ll) <= TOL_NATS_PER_TOKEN * len(ids), (domain, harness_ll, project_ll)
        # the printed perplexities are that log-likelihood per byte of the text
        row = results["results"][name]
        assert math.isclose(row["byte_perplexity,none"], math.exp(-harness_ll / len(text.encode())), rel_tol=1e-9)
        assert math.isclose(row["bits_per_byte,none"], -harness_ll / len(text.encode()) / math.log(2), rel_tol=1e-9)
    print(f"harness vs project: at most {worst:.2e} nats per token apart")


@torch.no_grad()
def test_text_generation_pipeline_on_the_fused_folder(smoke):
    from transformers import pipeline as hf_pipeline

    scale, data_dir, folder, fused, tokenizer = smoke
    generator = hf_pipeline("text-generation", model=str(folder), device="cpu")
    assert isinstance(generator.model, FusedModel)
    prompt = "def main():\n    return"
    out = generator(prompt, max_new_tokens=12, do_sample=False, return_tensors=True)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    want = fused.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert out[0]["generated_token_ids"] == want[0].tolist()
    text = generator(prompt, max_new_tokens=12, do_sample=False)[0]["generated_text"]
    assert text == tokenizer.decode(want[0], skip_special_tokens=True)


def test_the_docs_show_the_command_harness_task_prints():
    import shlex

    from kalavai_utils.__main__ import build_parser

    text = (ROOT / "docs" / "protocol-cli.md").read_text()
    commands = [
        shlex.split(block.removeprefix("bash\n").replace("\\\n", " "))
        for block in text.split("```")
        if block.startswith("bash\npython -m kalavai_utils ")
    ]
    (task,) = [c[3:] for c in commands if c[3] == "harness-task"]
    (score,) = [c[4:] for c in commands if c[3] == "lm-eval"]
    args = build_parser().parse_args(task)
    assert score == harness.harness_args(args.fused, args.out)
