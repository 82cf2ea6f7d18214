import os
import subprocess
import sys
from pathlib import Path

import pytest

from kalavai_utils.corpora import ENGLISH_DOMAINS, LANGUAGES, generate_documents
from kalavai_utils.errors import KalavaiError
from kalavai_utils.protocol import tokenizer as tk

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus():
    return {d: generate_documents(d, 30, seed=0, stream="pretrain") for d in ENGLISH_DOMAINS + LANGUAGES}


@pytest.fixture(scope="module")
def tok(corpus):
    return tk.train_tokenizer([x for docs in corpus.values() for x in docs], vocab_size=600)


def test_layout_is_pythia_like(tok):
    assert len(tok) == 600
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 0
    assert tok.convert_tokens_to_ids("<|padding|>") == 1
    assert tok("a\n\n<|endoftext|>b")["input_ids"].count(0) == 1  # the eos string is one special token
    assert tok("Hello world")["input_ids"][0] != 0  # no bos is prepended


def test_round_trip_every_domain(tok, corpus):
    for domain in ENGLISH_DOMAINS + LANGUAGES:
        text = generate_documents(domain, 2, seed=9)[0]  # unseen text
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text, domain
    odd = "naïve 東京 \t\x00 emoji 🙂"
    assert tok.decode(tok(odd)["input_ids"]) == odd  # byte level: nothing is unknown


def test_bpe_learns_merges(tok, corpus):
    text = "\n\n".join(corpus["fiction"])
    assert len(tok(text)["input_ids"]) < 0.5 * len(text.encode())


def test_save_and_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = tk.load_tokenizer(tmp_path)
    text = "The Tenant shall pay\n\n<|endoftext|>ஏதேயை ọ̀wé"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.eos_token_id == 0 and len(again) == len(tok)


def test_training_is_deterministic(corpus):
    texts = [x for docs in corpus.values() for x in docs[:10]]
    a = tk.train_tokenizer(texts, vocab_size=400)
    b = tk.train_tokenizer(texts, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()


def test_bad_inputs():
    with pytest.raises(KalavaiError, match="vocab_size"):
        tk.train_tokenizer(["abc"], vocab_size=100)
    with pytest.raises(KalavaiError, match="no tokenizer"):
        tk.load_tokenizer("/nonexistent/tokenizer")


def test_hub_tokenizer_failure_is_one_line(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nsecond line")

    monkeypatch.setattr(tk.AutoTokenizer, "from_pretrained", refuse)
    monkeypatch.setattr(tk.hub, "model_problem", lambda *a, **k: None)  # the cause unknown: the error's own line
    with pytest.raises(KalavaiError) as err:
        tk.load_hub_tokenizer("EleutherAI/pythia-410m", "step10000")
    message = str(err.value)
    assert "\n" not in message and "couldn't connect" in message and "pythia-410m@step10000" in message


@pytest.mark.slow
def test_hub_tokenizer_offline_for_real():
    code = (
        "from kalavai_utils.protocol.tokenizer import load_hub_tokenizer\n"
        "from kalavai_utils.errors import KalavaiError\n"
        "try:\n    load_hub_tokenizer('kalavai-test/no-such-model', 'step10000')\n"
        "except KalavaiError as e:\n    print('KalavaiError', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("KalavaiError") and "HF_HUB_OFFLINE=1" in out.stdout, out.stdout + out.stderr
    assert "not in the local Hugging Face cache" in out.stdout and "kalavai_utils fetch" in out.stdout
