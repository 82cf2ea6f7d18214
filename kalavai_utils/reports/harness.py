"""Scoring a fused model with EleutherAI's lm-evaluation-harness (the optional extra `eval`).

The harness is an outside client of a saved fused folder: its `hf` model loads the folder with
AutoModelForCausalLM (registered by `import kalavai_utils`, no remote code) and scores a local
task that this module writes from the held-out split (`write_task`): one task per domain,
`kalavai_heldout_<domain>`, all tagged `kalavai_heldout`, each with one document, that domain's
held-out text. The held-out split is cut from one token stream at chunk boundaries, so its chunks,
in order, are contiguous text: decoded, they are that text (byte-level BPE), and the harness's
tokenizer gives their token ids back, checked here for every domain (`heldout_span` drops the few
tokens at a cut point inside a character or word, and cuts to whole windows).

The task's output type is `loglikelihood_rolling` (the harness's perplexity tasks, wikitext's):
the harness scores every token of the document, the first one after a prefix token (the
tokenizer's bos, which is end-of-text here), in disjoint windows of the model's context
(`max_length`, the fused config's `max_position_embeddings`, the specialists' chunk length at the
offline scales). `rolling_chunks` turns that into chunks of the project's own evaluation, and
`rolling_loglikelihood` scores them with `evaluation.domain_loss`: the harness's log-likelihood of
the text, as this project computes it. tests/test_harness.py checks the two agree.

lm_eval is imported only inside the functions that run it, since the extra is optional.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..errors import KalavaiError
from ..protocol.evaluation import domain_loss
from ..storage import atomic_write_json, atomic_write_text, plain_name, sha256_bytes

TAG = "kalavai_heldout"
TASK_FILE = "task.json"  # what the task folder holds: domains, token counts and hashes, the window length
EXTRA = "eval"  # pyproject.toml's optional extra that installs the harness
INSTALL_HINT = f"pip install -c constraints-cpu.txt -e '.[{EXTRA}]'"


def task_name(domain: str) -> str:
    return f"{TAG}_{domain}"


def heldout_span(
    chunks: torch.Tensor, tokenizer, max_length: int, max_chunks: int | None = 200
) -> tuple[int, list[int], str]:
    """The held-out text a task holds: (where it starts in the stream, its token ids, its text).

    The stream is the first `max_chunks` chunks in order (default: the 200 that `evaluate_domains`
    reads). The text must tokenize back to exactly these ids, or the harness would score other
    tokens; inside the stream it does (byte-level BPE of one stream), but a cut point may fall
    inside a character or a word. The span is a whole number of windows of `max_length` (so every
    window of the harness is full) that tokenizes back: the longest, starting earliest; the whole
    stream when the chunk length is the model's context and the cuts are clean. It is at most one
    window shorter than that (a start up to a window later frees the first cut point), which bounds
    the search at 2 x `max_length` + 1 tries.
    """
    chunks = chunks if max_chunks is None else chunks[:max_chunks]
    stream = chunks.reshape(-1).tolist()
    longest = len(stream) // max_length * max_length
    for length in (n for n in (longest, longest - max_length) if n > 0):
        for start in range(len(stream) - length + 1):
            ids = stream[start : start + length]
            text = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
            if tokenizer(text, add_special_tokens=False)["input_ids"] == ids:
                return start, ids, text
    raise KalavaiError(
        f"no span of whole {max_length}-token windows, at most one window shorter than the {len(stream)} "
        "held-out tokens, decodes to text that tokenizes back to it"
    )


def write_task(
    folder, heldout: dict[str, torch.Tensor], tokenizer, max_length: int, max_chunks: int | None = 200
) -> dict:
    """A task folder for `--include_path`: per domain, `<domain>.jsonl` (one document, `text`) and
    `kalavai_heldout_<domain>.yaml`, plus `task.json` (its token count and ids' hash, the window).

    The YAML names the data file by its absolute path (the `json` dataset resolves relative paths
    from the working directory): write the folder again after moving it.
    """
    import yaml  # a dependency of transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"schema": "kalavai.harness-task/1", "tag": TAG, "max_length": max_length, "domains": {}}
    for domain, chunks in heldout.items():
        plain_name(domain, "domain")
        start, ids, text = heldout_span(chunks, tokenizer, max_length, max_chunks)
        data = (folder / f"{domain}.jsonl").resolve()
        atomic_write_text(data, json.dumps({"domain": domain, "text": text}, ensure_ascii=False) + "\n")
        config = {
            "task": task_name(domain),
            "tag": [TAG],
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test",
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "text",
            "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
            "metadata": {"version": 1.0},
        }
        atomic_write_text(folder / f"{task_name(domain)}.yaml", yaml.safe_dump(config, sort_keys=False))
        record["domains"][domain] = {
            "task": task_name(domain),
            "tokens": len(ids),
            "start": start,  # the span's first token in the stream of the chunks read
            "chunks_read": len(chunks if max_chunks is None else chunks[:max_chunks]),
            "bytes": len(text.encode("utf-8")),
            "ids_sha256": sha256_bytes(torch.tensor(ids, dtype=torch.int32).numpy().tobytes()),
        }
    atomic_write_json(folder / TASK_FILE, record)
    return record


def write_harness_task(fused_dir, data_dir, out, domains=None, max_chunks: int | None = 200) -> dict:
    """The command `harness-task`: `write_task` for a fused folder (its tokenizer, its context as
    the window) and a corpus folder's held-out splits; prints what it wrote and the command to run."""
    from transformers import AutoConfig

    from ..protocol.data import load_splits
    from ..protocol.tokenizer import load_local_tokenizer

    tokenizer = load_local_tokenizer(fused_dir)  # first: it refuses a folder that names code to import
    config = AutoConfig.from_pretrained(str(fused_dir), local_files_only=True, trust_remote_code=False)
    max_length = getattr(config, "max_position_embeddings", None)
    if not max_length:
        raise KalavaiError(f"{fused_dir}: its config states no context length (max_position_embeddings)")
    if isinstance(domains, str):
        domains = [d.strip() for d in domains.split(",") if d.strip()]
    domains = domains or getattr(config, "expert_names", None)
    if not domains:
        raise KalavaiError(f"{fused_dir} names no experts: say which domains with --domains")
    if max_chunks is not None and max_chunks < 1:
        raise KalavaiError(f"--max-chunks must be at least 1, got {max_chunks}")
    record = write_task(out, load_splits(data_dir, domains, "heldout"), tokenizer, max_length, max_chunks)
    for domain, row in record["domains"].items():
        print(f"{row['task']}: {row['tokens']} tokens ({row['bytes']} bytes) of {domain}'s held-out text")
    print(f"written: {Path(out) / TASK_FILE}; score with:")
    print(f"  python -m kalavai_utils lm-eval {' '.join(harness_args(fused_dir, out))}")
    return record


def harness_args(fused_dir, task_dir, device: str = "cpu", batch_size: int = 4) -> list[str]:
    """lm-eval's arguments that score a fused folder on a task folder's every domain (tag kalavai_heldout)."""
    return [
        "--model",
        "hf",
        "--model_args",
        f"pretrained={fused_dir},backend=causal,dtype=float32",
        "--tasks",
        TAG,
        "--include_path",
        str(task_dir),
        "--device",
        device,
        "--batch_size",
        str(batch_size),
    ]


def rolling_chunks(ids: list[int], prefix_token: int, max_length: int) -> torch.Tensor:
    """The harness's rolling windows over a text's tokens, as chunks of the project's evaluation.

    `loglikelihood_rolling` (lm_eval.utils.get_rolling_token_windows, context_len=1, made
    disjoint) predicts tokens t_0..t_{n-1} in windows of M = `max_length`: the first reads
    [prefix, t_0..t_{M-2}] and predicts t_0..t_{M-1}; window k reads t_{kM-1}..t_{(k+1)M-2} and
    predicts t_{kM}..t_{(k+1)M-1}. A window with its last target is a chunk of M+1 tokens whose
    every next token is scored, which is what the evaluation scores in a chunk (labels = inputs).
    So with n a multiple of M (heldout_span cuts it so), chunk k is [prefix, t_0, ...][kM : kM+M+1].
    The chunk's last token is only a target: for a causal model (a token router; not the
    sequence-pooled one, whose gate reads the whole chunk) it changes no scored logit.
    """
    if not ids or len(ids) % max_length:
        raise KalavaiError(f"{len(ids)} tokens: rolling_chunks needs a positive multiple of max_length={max_length}")
    stream = torch.tensor([prefix_token, *ids], dtype=torch.long)
    return torch.stack([stream[k : k + max_length + 1] for k in range(0, len(ids), max_length)])


def rolling_loglikelihood(model, ids: list[int], prefix_token: int, max_length: int) -> float:
    """The harness's `loglikelihood_rolling` of a text (natural log, summed over its tokens), computed
    with the project's evaluation: `domain_loss` over `rolling_chunks`, one chunk a batch, so its
    mean of batch means is the mean over all len(ids) scored tokens."""
    chunks = rolling_chunks(ids, prefix_token, max_length)
    return -domain_loss(model, chunks, batch_size=1, max_batches=len(chunks)) * len(ids)


def installed_version() -> str | None:
    """The installed lm-evaluation-harness's version, or None without the extra."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("lm_eval")
    except PackageNotFoundError:
        return None


def run_cli(args: list[str]) -> int:
    """The harness's own command line (`lm-eval ...`) in this process, after `import kalavai_utils`
    registered the fused model with transformers' Auto classes (which the plain `lm-eval` script
    cannot do: it would not know the folder's model type)."""
    if installed_version() is None:
        raise KalavaiError(f"lm-evaluation-harness is not installed; install the extra: {INSTALL_HINT}")
    from lm_eval.__main__ import cli_evaluate

    argv = sys.argv
    sys.argv = ["lm-eval", *args]
    try:
        cli_evaluate()
    except SystemExit as e:  # argparse's --help and errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return 0
