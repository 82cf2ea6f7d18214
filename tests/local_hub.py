"""A stand-in Hugging Face Hub on the loopback, for running the Hub scales' unmodified loading code offline.

The paper's scales (`410m`, `1b`, `6.9b`) read Pythia and the datasets of `data_manifests/` through
the real Hub client code: `from_pretrained(id, revision=...)`, `AutoTokenizer.from_pretrained`,
`datasets.load_dataset(..., streaming=True)`, `HfApi().dataset_info(...)`. This module builds a
small mirror of every repository and revision the project names (tiny random GPT-NeoX models in
Pythia's published layout, a GPT-NeoX-style tokenizer trained on the project's generated corpora,
and dataset repositories whose records have the real datasets' columns and generated text: the
data manifests' and the multiple-choice tasks' (SciQ's test split, Belebele's languages)), and
serves it over HTTP with the routes and headers `huggingface_hub` expects
(docs: /work/shared/design/HUB_ROUTE_FINDINGS.md, and huggingface_hub's `file_download.py`,
`hf_api.py`, `hf_file_system.py`).

    mirror = build_mirror(root)                  # cached under root/<content hash>
    with serve(mirror) as hub:
        env = hub.env(tmp_path / "hf_home")      # for a subprocess: HF_ENDPOINT, HF_HUB_DISABLE_XET, ...
        subprocess.run([...], env=env)
        hub.requests                             # [(method, path, status), ...]

`huggingface_hub` reads `HF_ENDPOINT` and the offline flags when it is imported, so the code under
test runs in a subprocess started with `hub.env(...)`.

What the server answers, as the Hub does:
- `GET /api/{models,datasets}/<id>[/revision/<rev>]`: the repo's info (`sha` = the revision's commit);
- `GET /api/{models,datasets}/<id>/tree/<rev>[/<path>]` and `POST .../paths-info/<rev>`: listings;
- `HEAD`/`GET /<id>/resolve/<rev>/<path>` (`/datasets/<id>/resolve/...` for datasets): a small file
  is answered with `ETag` (its git blob id), `X-Repo-Commit` and `Content-Length`; an LFS file
  (safetensors, bin, parquet) with a 302 to a "CDN" (the same server reached as `localhost`, so that
  huggingface_hub treats it as another host and reads `X-Linked-Etag`/`X-Linked-Size` from the redirect,
  as with the real Hub's CDN), which serves byte ranges;
- a missing file: 404 with `X-Error-Code: EntryNotFound` and `X-Repo-Commit` (so the client caches
  its absence), a missing revision: 404 `RevisionNotFound`, a missing repo: 401 `RepoNotFound`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_DIR = REPO_ROOT / "data_manifests"
FORMAT = "kalavai-local-hub/1"  # bump when the layout changes (the key also hashes this file's source)
DEFAULT_CACHE = Path(os.environ.get("KALAVAI_LOCAL_HUB_CACHE", Path.home() / ".cache" / "kalavai-local-hub"))

# ------------------------------------------------------------------ what the project names


PYTHIA_ORG = "EleutherAI/pythia-"
# Pythia's `main` is its last step branch (the same commit).
PYTHIA_MAIN = "step143000"


def required_models() -> list[tuple[str, str]]:
    """Every (model id, revision) the project's code loads from the Hub, sorted: what
    `experiments.needs.hub_needs` lists for every notebook at every Hub scale (the very list the
    project's `fetch` and `preflight` use, so a model the code loads but that list misses fails the
    end-to-end runs against this mirror), and every other Pythia id written in kalavai_utils' source
    at the scales' revision. The mirror serves the Pythia (GPT-NeoX) scales only: qwen-1.5b, a Qwen2
    model, has no stand-in here (docs/model-families.md)."""
    from kalavai_utils import scales
    from kalavai_utils.experiments.needs import hub_needs

    hub = mirrored_scales(scales)
    every_notebook = [f"{i:02d}" for i in range(8)]
    wanted = {m for s in hub for m in hub_needs(s, every_notebook).models}
    for model in pythia_ids_in_source():
        wanted |= {(model, s.hub_revision) for s in hub}
    return sorted(wanted)


def mirrored_scales(scales) -> list:
    """The Hub scales this mirror stands in for: those whose base is a Pythia (GPT-NeoX) model."""
    return [s for s in scales.SCALES.values() if s.is_hub and s.family == "gpt_neox"]


def pythia_ids_in_source() -> list[str]:
    """The Pythia model ids written as string literals anywhere in kalavai_utils."""
    found = set()
    for path in sorted((REPO_ROOT / "kalavai_utils").rglob("*.py")):
        found |= set(re.findall(r"[\"'](EleutherAI/pythia-[0-9.]+[mb])[\"']", path.read_text(encoding="utf-8")))
    return sorted(found)


def required_datasets() -> list[dict]:
    """The data manifests (data_manifests/*.json), each with its file stem as `domain_file`."""
    out = []
    for path in sorted(MANIFEST_DIR.glob("*.json")):
        out.append({**json.loads(path.read_text(encoding="utf-8")), "domain_file": path.stem})
    return out


def required_tasks() -> list[dict]:
    """The multiple-choice tasks' manifests (data_manifests/tasks/) that `hub_needs` lists for every
    notebook at every mirrored scale, each with `tasks/<name>` as `domain_file`."""
    from kalavai_utils import scales
    from kalavai_utils.experiments.needs import hub_needs
    from kalavai_utils.protocol.choice import load_task_manifest

    every_notebook = [f"{i:02d}" for i in range(8)]
    names = sorted({t for s in mirrored_scales(scales) for t in hub_needs(s, every_notebook).tasks})
    return [{**load_task_manifest(name), "domain_file": f"tasks/{name}"} for name in names]


def config_name(config: str | None) -> str:
    """A manifest's config as the dataset card names it: `datasets` calls the one config `default`."""
    return config or "default"


def missing_from(mirror: Mirror) -> dict[str, list]:
    """What the project names that `mirror` lacks (empty lists: full coverage)."""
    models = [m for m in required_models() if not mirror.has_model(*m)]

    def absent(manifests):
        return [
            d["domain_file"]
            for d in manifests
            if not mirror.has_dataset(d["dataset"], d["config"], d["split"], d["revision"])
        ]

    return {"models": models, "datasets": absent(required_datasets()), "tasks": absent(required_tasks())}


# ------------------------------------------------------------------ the models

SMALL = {"hidden_size": 32, "num_hidden_layers": 16, "num_attention_heads": 2, "intermediate_size": 128}
# pythia-1.4b is the capacity control: a bigger model than the base, so it is a little wider here too.
WIDER = {"EleutherAI/pythia-1.4b": {"hidden_size": 48, "intermediate_size": 192}}
MAX_POSITIONS = 2048
# Pythia's checkpoints carry each layer's causal-mask buffer `attention.bias` ([1, 1, 2048, 2048],
# bool). transformers drops it by name (GPTNeoXPreTrainedModel._keys_to_ignore_on_load_unexpected)
# without reading its shape; at full size it would make every snapshot 64 MiB, so it is kept
# at this many positions.
LEGACY_BIAS_POSITIONS = 128
LFS_SUFFIXES = (".safetensors", ".bin", ".parquet")
STANDIN_BIN = b"kalavai local hub: stand-in pytorch_model.bin, not a checkpoint; it must never be loaded\n"


def model_config(repo_id: str, vocab_size: int) -> dict:
    """config.json in the layout of Pythia's step branches (transformers 4.24, before rope_parameters)."""
    shape = {**SMALL, **WIDER.get(repo_id, {})}
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "bos_token_id": 0,
        "eos_token_id": 0,
        "hidden_act": "gelu",
        **shape,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": MAX_POSITIONS,
        "model_type": "gpt_neox",
        "rotary_emb_base": 10000,
        "rotary_pct": 0.25,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.24.0",
        "use_cache": True,
        "use_parallel_residual": True,
        "vocab_size": vocab_size,
    }


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big") % (2**62)


def model_weights(repo_id: str, revision: str, config: dict) -> bytes:
    """model.safetensors: fp16 random weights seeded by (repo, revision), with Pythia's legacy buffers."""
    import torch
    from safetensors.torch import save

    seed_revision = PYTHIA_MAIN if revision == "main" else revision
    gen = torch.Generator().manual_seed(_seed(repo_id, seed_revision))
    d, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = d // config["num_attention_heads"]
    rot = int(head_dim * config["rotary_pct"])

    def normal(*shape):
        return (torch.randn(*shape, generator=gen) * config["initializer_range"]).half()

    def ones(n):
        return torch.ones(n, dtype=torch.float16)

    def zeros(n):
        return torch.zeros(n, dtype=torch.float16)

    tensors = {"gpt_neox.embed_in.weight": normal(v, d)}
    mask = torch.tril(torch.ones(LEGACY_BIAS_POSITIONS, LEGACY_BIAS_POSITIONS, dtype=torch.bool))
    inv_freq = 1.0 / (config["rotary_emb_base"] ** (torch.arange(0, rot, 2).float() / rot))
    for i in range(config["num_hidden_layers"]):
        p = f"gpt_neox.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": ones(d),
            p + "input_layernorm.bias": zeros(d),
            p + "post_attention_layernorm.weight": ones(d),
            p + "post_attention_layernorm.bias": zeros(d),
            p + "attention.query_key_value.weight": normal(3 * d, d),
            p + "attention.query_key_value.bias": zeros(3 * d),
            p + "attention.dense.weight": normal(d, d),
            p + "attention.dense.bias": zeros(d),
            p + "mlp.dense_h_to_4h.weight": normal(ff, d),
            p + "mlp.dense_h_to_4h.bias": zeros(ff),
            p + "mlp.dense_4h_to_h.weight": normal(d, ff),
            p + "mlp.dense_4h_to_h.bias": zeros(d),
            # legacy buffers of the checkpoints written by transformers 4.24
            p + "attention.bias": mask.view(1, 1, LEGACY_BIAS_POSITIONS, LEGACY_BIAS_POSITIONS).clone(),
            p + "attention.masked_bias": torch.tensor(-1e9).half(),
            p + "attention.rotary_emb.inv_freq": inv_freq.half(),
        }
    tensors |= {
        "gpt_neox.final_layer_norm.weight": ones(d),
        "gpt_neox.final_layer_norm.bias": zeros(d),
        "embed_out.weight": normal(v, d),
    }
    return save(tensors, metadata={"format": "pt"})


# ------------------------------------------------------------------ the tokenizer

EOS, PAD = "<|endoftext|>", "<|padding|>"
BPE_VOCAB = 1500  # the trained vocabulary (bytes, merges and the two special tokens)
SPACE_RUNS = range(24, 1, -1)  # Pythia's added tokens 50254..50276: runs of 24 down to 2 spaces

# Strings on which the Hub route's tokenizer (transformers' rebuilt GPTNeoXTokenizer) must give
# tokenizer.json's own ids: indentation, composed and decomposed accents, Tamil, Thai, space runs.
HARD_STRINGS = (
    "def f(x):\n    if x:\n        return  x  +   1\n\tpass\n",
    "café naïve Ångström cafe\u0301 A\u030angstro\u0308m",
    "தமிழ் ஒரு திராவிட மொழி ஆகும்.",
    "ภาษาไทยเป็นภาษาราชการของประเทศไทย",
    "a" + " " * 30 + "b" + " " * 2 + "c" + " " * 25 + "\n" + " " * 7 + "d",
    "<|endoftext|>Hello world<|padding|>  \n\n\n",
)


def train_tokenizer(texts: list[str]) -> str:
    """tokenizer.json in GPT-NeoX-20B's layout (Pythia's): byte-level BPE, NFC, no prefix space,
    `<|endoftext|>` = 0, `<|padding|>` = 1, runs of 2..24 spaces as non-special added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    bpe.post_processor = processors.ByteLevel(trim_offsets=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        min_frequency=2,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    bpe.add_tokens([AddedToken(" " * n, special=False, normalized=True) for n in SPACE_RUNS])
    assert bpe.token_to_id(EOS) == 0 and bpe.token_to_id(PAD) == 1
    return bpe.to_str(pretty=True)


TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": EOS,
    "eos_token": EOS,
    "name_or_path": "EleutherAI/gpt-neox-20b",
    "tokenizer_class": "GPTNeoXTokenizer",
    "unk_token": EOS,
}
SPECIAL_TOKENS_MAP = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS}


# ------------------------------------------------------------------ the datasets

ROWS = 300  # records per config and split: tests read at most ~200 documents a domain
# Which generated domain (kalavai_utils.corpora) stands in for each Hub dataset's text. The private
# domains were written as stand-ins for these very sources (PubMed abstracts, EUR-Lex, patents).
LANGUAGE_DOMAINS = {
    "ta": "lang_script",
    "yo": "lang_tonal",
    "cy": "lang_mutation",
    "hi": "lang_postpos",
    "ar": "lang_root",
}
LANGUAGE_CYCLE = ("lang_script", "lang_tonal", "lang_mutation")


def _docs(domain: str, n: int, *key) -> list[str]:
    from kalavai_utils import corpora

    return corpora.generate_documents(domain, n, seed=_seed(*key) % (2**31))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")) if s.strip()]


def _hex(*key) -> str:
    return hashlib.sha1("\x1f".join(map(str, key)).encode()).hexdigest()


def _code_rows(key, n):
    rows = []
    for i, doc in enumerate(_docs("code", n, *key)):
        name = re.search(r"def (\w+)", doc)
        doc_match = re.search(r'"""(.*?)"""', doc, re.S)
        docstring = doc_match.group(1).strip() if doc_match else ""
        rows.append(
            {
                "id": i,
                "repo": "python/cpython",
                "path": f"Lib/module_{i % 37}.py",
                "func_name": name.group(1) if name else f"function_{i}",
                "original_string": doc,
                "language": "python",
                "code": doc,
                "code_tokens": re.findall(r"\w+|[^\w\s]", doc),
                "docstring": docstring,
                "docstring_tokens": docstring.split(),
                "sha": _hex(*key, i),
                "url": f"https://github.com/python/cpython/blob/{_hex(*key, i)}/Lib/module_{i % 37}.py#L1-L20",
            }
        )
    return rows


SCIQ_SPARE_WORDS = ("mitosis", "friction", "nitrogen", "erosion")  # when a support has too few words of its own


def _sciq_rows(key, n):
    """SciQ's columns; the distractors are three distinct words of the support, none the answer (as in SciQ)."""
    rng = random.Random(_seed(*key))
    rows = []
    for doc in _docs("science", n, *key):
        *support, question, answer = doc.split("\n")
        words = sorted({w.strip(".,") for w in " ".join(support).split() if len(w) > 5} - {answer})
        spare = [w for w in SCIQ_SPARE_WORDS if w != answer and w not in words]
        distractors = rng.sample(words, 3) if len(words) >= 3 else [*words, *spare][:3]
        rows.append(
            {
                "question": question,
                "distractor3": distractors[2],
                "distractor1": distractors[0],
                "distractor2": distractors[1],
                "correct_answer": answer,
                "support": "\n".join(support),
            }
        )
    return rows


# Belebele's configs (<ISO 639-3>_<script>) and the generated language standing in for each.
BELEBELE_DOMAINS = {"tam_Taml": "lang_script", "yor_Latn": "lang_tonal"}
OPTION_CHARS = 80


def _belebele_rows(key, n, config):
    """facebook/belebele's columns: a passage, a question on it, four options, the answer's number as a string."""
    domain = BELEBELE_DOMAINS.get(config) or LANGUAGE_CYCLE[sum(map(ord, config or "")) % len(LANGUAGE_CYCLE)]
    rng = random.Random(_seed(*key))
    docs = _docs(domain, n, *key)
    pool = sorted({s[:OPTION_CHARS] for doc in docs for s in _sentences(doc)})
    rows = []
    for i, doc in enumerate(docs):
        own = _sentences(doc) or [doc]
        answer = rng.choice(own)[:OPTION_CHARS]
        options = [answer, *rng.sample([s for s in pool if s != answer], 3)]
        rng.shuffle(options)
        rows.append(
            {
                "link": f"https://en.wikibooks.org/wiki/Passage_{i // 2}",
                "question_number": 1 + i % 2,
                "flores_passage": " ".join(doc.split()),
                "question": " ".join(own[0].split()[:6]).rstrip(".!?") + "?",
                **{f"mc_answer{k}": option for k, option in enumerate(options, 1)},
                "correct_answer_num": str(options.index(answer) + 1),
                "dialect": config,
                "ds": "2023-05-03",
            }
        )
    return rows


def _pg19_rows(key, n):
    docs = _docs("fiction", 4 * n, *key)
    return [
        {
            "short_book_title": docs[4 * i].split(".")[0][:40],
            "publication_date": 1850 + i % 70,
            "url": f"http://www.gutenberg.org/ebooks/{10000 + i}",
            "text": "\n\n".join(docs[4 * i : 4 * i + 4]),
        }
        for i in range(n)
    ]


def _wikipedia_rows(key, n, config):
    lang = (config or "").rsplit(".", 1)[-1]
    domain = LANGUAGE_DOMAINS.get(lang) or LANGUAGE_CYCLE[sum(map(ord, lang)) % len(LANGUAGE_CYCLE)]
    rows = []
    for i, doc in enumerate(_docs(domain, n, *key)):
        title = doc.split("\n", 1)[0][:60]
        rows.append(
            {
                "id": str(1000 + i),
                "url": f"https://{lang}.wikipedia.org/wiki?curid={1000 + i}",
                "title": title,
                "text": doc,
            }
        )
    return rows


def _pubmed_rows(key, n):
    articles, abstracts = _docs("medicine", 2 * n, *key, "article"), _docs("abstracts", n, *key, "abstract")
    return [{"article": "\n".join(articles[2 * i : 2 * i + 2]), "abstract": abstracts[i]} for i in range(n)]


def _eurlex_rows(key, n):
    rng = random.Random(_seed(*key))
    return [
        {"text": doc, "labels": sorted(rng.sample(range(100), rng.randint(1, 4)))}
        for doc in _docs("regulations", n, *key)
    ]


def _patent_rows(key, n):
    # ccdv/patent-classification: nine CPC sections as labels 0..8; most rows are section A here
    return [{"text": doc, "label": 0 if i % 6 else 1 + (i // 6) % 8} for i, doc in enumerate(_docs("patents", n, *key))]


def _gsm8k_rows(key, n):
    rows = []
    for i, doc in enumerate(_docs("sports", n, *key)):
        s = _sentences(doc)
        half = max(1, len(s) // 3)
        rows.append({"question": " ".join(s[:half]), "answer": "\n".join(s[half:]) + f"\n#### {i % 97}"})
    return rows


def _finance_rows(key, n):
    rows = []
    for i, doc in enumerate(_docs("finance", n, *key)):
        title, _, body = doc.partition("\n")
        rows.append({"title": title, "text": body, "url": f"https://www.example.com/markets/{i}"})
    return rows


def _chemrxiv_rows(key, n):
    return [{"_id": f"chemrxiv-{i}", "text": doc} for i, doc in enumerate(_docs("science", n, *key))]


def _text_rows(domain):
    return lambda key, n: [{"text": doc} for doc in _docs(domain, n, *key)]


def _dialogsum_rows(key, n):
    rows = []
    for i, doc in enumerate(_docs("fiction", n, *key)):
        turns = [f"#Person{1 + j % 2}#: {s}" for j, s in enumerate(_sentences(doc))]
        rows.append(
            {"id": f"train_{i}", "dialogue": "\n".join(turns), "summary": turns[0][11:], "topic": f"topic {i % 13}"}
        )
    return rows


def _alpaca_rows(key, n):
    rows = []
    for i, doc in enumerate(_docs("recipes", n, *key)):
        title, _, rest = doc.partition("\n")
        head, _, method = rest.partition("Method:\n")
        instruction = f"Write a recipe for {title.lower()}."
        given = head.strip() if i % 3 else ""  # as in Alpaca, many records have no input
        output = method or rest
        text = f"### Instruction:\n{instruction}\n\n### Input:\n{given}\n\n### Response:\n{output}"
        rows.append({"instruction": instruction, "input": given, "output": output, "text": text})
    return rows


# dataset id -> (record builder, file format). Columns are the real datasets' (their Hub cards).
DATASET_BUILDERS = {
    "google/code_x_glue_ct_code_to_text": (_code_rows, "parquet"),
    "allenai/sciq": (_sciq_rows, "parquet"),
    "facebook/belebele": (_belebele_rows, "parquet"),
    "emozilla/pg19": (_pg19_rows, "parquet"),
    "wikimedia/wikipedia": (_wikipedia_rows, "parquet"),
    "ccdv/pubmed-summarization": (_pubmed_rows, "parquet"),
    "coastalcph/lex_glue": (_eurlex_rows, "parquet"),
    "ccdv/patent-classification": (_patent_rows, "parquet"),
    "openai/gsm8k": (_gsm8k_rows, "parquet"),
    "ashraq/financial-news-articles": (_finance_rows, "parquet"),
    "BASF-AI/ChemRxivRetrieval": (_chemrxiv_rows, "parquet"),
    "roneneldan/TinyStories": (_text_rows("fiction"), "parquet"),
    "knkarthick/dialogsum": (_dialogsum_rows, "csv"),
    "tatsu-lab/alpaca": (_alpaca_rows, "parquet"),
}


def _generic_rows(manifest):
    """A dataset no builder knows: every text field and filter field the manifest names."""
    fields = manifest["text"]["fields"]
    equals = manifest["filters"].get("equals", {})

    def rows(key, n):
        docs = _docs("news", n * len(fields), *key)
        out = []
        for i in range(n):
            row = {f: docs[i * len(fields) + j] for j, f in enumerate(fields)}
            out.append({**row, **equals})
        return out

    return rows


def dataset_records(manifest: dict) -> tuple[list[dict], str]:
    """The records of a manifest's (dataset, config, split) and the file format."""
    builder, fmt = DATASET_BUILDERS.get(manifest["dataset"], (None, "parquet"))
    key = (manifest["dataset"], config_name(manifest["config"]), manifest["split"])
    if builder is None:
        return _generic_rows(manifest)(key, ROWS), fmt
    if builder in (_wikipedia_rows, _belebele_rows):
        return builder(key, ROWS, manifest["config"]), fmt
    return builder(key, ROWS), fmt


def write_table(rows: list[dict], fmt: str) -> bytes:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, row_group_size=100, compression="snappy")
    return buf.getvalue()


def dataset_card(configs: dict[str, dict[str, str]], pretty_name: str) -> tuple[str, dict]:
    """README.md whose YAML `configs:` maps each config to its files, and the card data."""
    import yaml

    card = {
        "configs": [
            {
                "config_name": name,
                "data_files": [{"split": split, "path": path} for split, path in sorted(files.items())],
            }
            for name, files in sorted(configs.items())
        ],
        "pretty_name": pretty_name,
    }
    text = f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n\n# {pretty_name}\n\nA stand-in for tests (kalavai local hub).\n"
    return text, card


GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)


# ------------------------------------------------------------------ the mirror on disk


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class Mirror:
    """A built mirror: `root` holds `index.json` and the files under `blobs/<sha256>`.

    index["repos"]["<type>:<id>"] = {"type", "id", "refs": {rev: commit}, "commits": {commit:
    {"files": {path: {"size", "sha256", "oid", "lfs"}}, "card_data"}}}."""

    root: Path
    index: dict
    seconds: float = 0.0  # how long building took (0.0: read from the cache)

    def repo(self, repo_type: str, repo_id: str) -> dict | None:
        return self.index["repos"].get(f"{repo_type}:{repo_id}")

    def commit(self, repo_type: str, repo_id: str, revision: str) -> str | None:
        """The commit a branch name or commit sha resolves to (None: no such repo or revision)."""
        repo = self.repo(repo_type, repo_id)
        if repo is None:
            return None
        if revision in repo["refs"]:
            return repo["refs"][revision]
        return revision if revision in repo["commits"] else None

    def files(self, repo_type: str, repo_id: str, commit: str) -> dict[str, dict]:
        return self.repo(repo_type, repo_id)["commits"][commit]["files"]

    def read(self, entry: dict) -> bytes:
        return (self.root / "blobs" / entry["sha256"]).read_bytes()

    def models(self) -> list[tuple[str, str]]:
        return sorted((r["id"], rev) for r in self.index["repos"].values() if r["type"] == "model" for rev in r["refs"])

    def datasets(self) -> list[str]:
        return sorted(r["id"] for r in self.index["repos"].values() if r["type"] == "dataset")

    def has_model(self, repo_id: str, revision: str) -> bool:
        commit = self.commit("model", repo_id, revision)
        files = self.files("model", repo_id, commit) if commit else {}
        return (
            "config.json" in files
            and "tokenizer.json" in files
            and any(f.endswith("model.bin") or f.endswith(".safetensors") for f in files)
        )

    def has_dataset(self, repo_id: str, config: str | None, split: str, revision: str = "main") -> bool:
        commit = self.commit("dataset", repo_id, revision)
        if commit is None:
            return False
        card = self.repo("dataset", repo_id)["commits"][commit]["card_data"]
        files = self.files("dataset", repo_id, commit)
        for cfg in card.get("configs", []):
            if cfg["config_name"] == config_name(config):
                return any(f["split"] == split and f["path"] in files for f in cfg["data_files"])
        return False

    def without_safetensors(self, pairs) -> Mirror:
        """A variant in which each (model id, revision) holds `pytorch_model.bin` instead of
        `model.safetensors` (a new commit; the .bin is a few bytes that are not a checkpoint)."""
        index = copy.deepcopy(self.index)
        for repo_id, revision in sorted(pairs):
            repo = index["repos"].get(f"model:{repo_id}")
            if repo is None or revision not in repo["refs"]:
                raise KeyError(f"the mirror has no model {repo_id}@{revision}")
            old = repo["commits"][repo["refs"][revision]]
            files = {p: e for p, e in old["files"].items() if p != "model.safetensors"}
            files["pytorch_model.bin"] = _entry(STANDIN_BIN, "pytorch_model.bin")
            commit = _commit_sha(f"model:{repo_id}", files)
            repo["commits"][commit] = {**old, "files": files}
            repo["refs"][revision] = commit
        return Mirror(self.root, index)


def _entry(data: bytes, path: str) -> dict:
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "oid": git_blob_oid(data),
        "lfs": path.endswith(LFS_SUFFIXES),
    }


def _commit_sha(repo_key: str, files: dict[str, dict]) -> str:
    """A stable fake commit: a hash of the repo and its files' contents."""
    listing = "".join(f"{p}\0{e['sha256']}\n" for p, e in sorted(files.items()))
    return hashlib.sha1(f"{FORMAT}\n{repo_key}\n{listing}".encode()).hexdigest()


def mirror_key() -> str:
    """A hash of everything the mirror's bytes depend on: this file, the generators and the
    interpreter (corpora.corpus_version), the manifests, the project's model list, the writers."""
    import pyarrow
    import safetensors
    import tokenizers
    import torch
    import yaml

    from kalavai_utils import corpora

    h = hashlib.sha256(FORMAT.encode())
    h.update(Path(__file__).read_bytes())
    h.update(corpora.corpus_version("patents").encode())
    for path in sorted(MANIFEST_DIR.glob("*.json")):
        h.update(path.name.encode() + path.read_bytes())
    h.update(json.dumps(required_models()).encode())
    h.update(json.dumps(required_tasks(), sort_keys=True).encode())
    for mod in (pyarrow, safetensors, tokenizers, torch, yaml):
        h.update(f"{mod.__name__}={mod.__version__}".encode())
    return h.hexdigest()[:16]


def build_mirror(root: Path | None = None, without_safetensors=()) -> Mirror:
    """The mirror under `root/<key>` (default: ~/.cache/kalavai-local-hub), built once per key.

    Idempotent and safe to call from several processes (a lock file; the folder appears whole).
    `without_safetensors`: (model id, revision) pairs served with pytorch_model.bin instead."""
    import time

    root = Path(root or DEFAULT_CACHE)
    root.mkdir(parents=True, exist_ok=True)
    key = mirror_key()
    final = root / key
    seconds = 0.0
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "index.json").exists():
            start = time.perf_counter()
            tmp = root / f"{key}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            _build(tmp, key)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            seconds = time.perf_counter() - start
        os.utime(final)  # in use: see _prune
        _prune(root, keep=key)
    mirror = Mirror(final, json.loads((final / "index.json").read_text()), seconds)
    return mirror.without_safetensors(without_safetensors) if without_safetensors else mirror


STALE_DAYS = 7


def _prune(root: Path, keep: str) -> None:
    """Remove other keys' mirrors unused for STALE_DAYS (each edit of this file makes a new key)."""
    import time

    for path in root.iterdir():
        if path.name.startswith(keep) or not re.fullmatch(r"[0-9a-f]{16}(\.tmp-\d+)?", path.name):
            continue
        if time.time() - path.stat().st_mtime > STALE_DAYS * 86400:
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                (root / f"{path.name}.lock").unlink()


def _build(out: Path, key: str) -> None:
    (out / "blobs").mkdir(parents=True)
    repos: dict[str, dict] = {}

    def put(data: bytes, path: str) -> dict:
        entry = _entry(data, path)
        blob = out / "blobs" / entry["sha256"]
        if not blob.exists():
            blob.write_bytes(data)
        return entry

    def add_commit(repo_type: str, repo_id: str, revisions: list[str], files: dict[str, bytes], card=None):
        entries = {p: put(data, p) for p, data in files.items()}
        repo = repos.setdefault(f"{repo_type}:{repo_id}", {"type": repo_type, "id": repo_id, "refs": {}, "commits": {}})
        commit = _commit_sha(f"{repo_type}:{repo_id}", entries)
        repo["commits"][commit] = {"files": entries, "card_data": card or {}}
        repo["refs"].update({r: commit for r in revisions})
        return commit

    put(STANDIN_BIN, "pytorch_model.bin")  # for without_safetensors variants

    # datasets: one repo per dataset id, one config per manifest
    tokenizer_texts = []
    by_dataset: dict[str, dict] = {}
    for manifest in required_datasets() + required_tasks():
        rows, fmt = dataset_records(manifest)
        cfg = config_name(manifest["config"])
        path = f"{cfg}/{manifest['split']}-00000-of-00001.{fmt}"
        repo = by_dataset.setdefault(manifest["dataset"], {"files": {}, "configs": {}, "revisions": {"main"}})
        repo["files"][path] = write_table(rows, fmt)
        repo["configs"].setdefault(cfg, {})[manifest["split"]] = path
        if re.fullmatch(r"[0-9a-f]{40}", manifest["revision"]):
            repo.setdefault("pinned", set()).add(manifest["revision"])
        else:
            repo["revisions"].add(manifest["revision"])
        tokenizer_texts += ["\n".join(str(v) for v in r.values() if isinstance(v, str)) for r in rows[:60]]
    for dataset, repo in sorted(by_dataset.items()):
        readme, card = dataset_card(repo["configs"], dataset.split("/")[-1])
        files = {".gitattributes": GITATTRIBUTES.encode(), "README.md": readme.encode(), **repo["files"]}
        commit = add_commit("dataset", dataset, sorted(repo["revisions"]), files, card)
        for pinned in sorted(repo.get("pinned", ())):  # a manifest frozen at a Hub commit: that commit holds the data
            repos[f"dataset:{dataset}"]["commits"][pinned] = repos[f"dataset:{dataset}"]["commits"][commit]

    # the tokenizer (one for every Pythia, as on the Hub), then the models
    tokenizer_json = train_tokenizer(tokenizer_texts).encode()
    n_tokens = len(json.loads(tokenizer_json)["model"]["vocab"]) + len(SPACE_RUNS)
    vocab_size = 64 * math.ceil(n_tokens / 64)  # padded as Pythia's 50277 tokens to 50304
    tokenizer_files = {
        "tokenizer.json": tokenizer_json,
        "tokenizer_config.json": json.dumps(TOKENIZER_CONFIG, indent=2).encode(),
        "special_tokens_map.json": json.dumps(SPECIAL_TOKENS_MAP, indent=2).encode(),
    }
    by_model: dict[str, set[str]] = {}
    for repo_id, revision in required_models():
        by_model.setdefault(repo_id, set()).add(revision)
    for repo_id, revisions in sorted(by_model.items()):
        revisions = revisions | {"main", PYTHIA_MAIN}
        for revision in sorted(revisions - {"main"}):
            config = model_config(repo_id, vocab_size)
            files = {
                ".gitattributes": GITATTRIBUTES.encode(),
                "config.json": json.dumps(config, indent=2, sort_keys=True).encode(),
                "model.safetensors": model_weights(repo_id, revision, config),
                **tokenizer_files,
            }
            add_commit("model", repo_id, [revision] + (["main"] if revision == PYTHIA_MAIN else []), files)

    index = {"format": FORMAT, "key": key, "vocab_size": vocab_size, "tokenizer_size": n_tokens, "repos": repos}
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))


# ------------------------------------------------------------------ the server

DATE = "2024-01-01T00:00:00.000Z"
# Files the real code asks for and a repo may lack: datasets' probes for a loading script
# (`<name>.py`), `dataset_infos.json` and `.huggingface.yaml`; transformers' optional files.
EXPECTED_MISSING = frozenset(
    {
        "dataset_infos.json",
        ".huggingface.yaml",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
        "chat_template.jinja",
        "additional_chat_templates",
        "generation_config.json",
        "adapter_config.json",
    }
)
ACTIONS = ("revision", "tree", "paths-info", "resolve")


def _cdn_host() -> str | None:
    """`localhost` when it reaches 127.0.0.1 here: a second origin for the server's "CDN"."""
    try:
        return "localhost" if "127.0.0.1" in {a[4][0] for a in socket.getaddrinfo("localhost", None)} else None
    except OSError:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet: the hub keeps its own log
        pass

    # ---- plumbing

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.server.hub._log(self.command, self.path, status)

    def _json(self, obj, status=200, headers=None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, code: str, message: str, commit: str | None = None):
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json({"error": message}, status, headers)

    def do_HEAD(self):
        self._route()

    def do_GET(self):
        self._route()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        self._route()

    def _route(self):
        try:
            self._dispatch()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - a bug in the stand-in is an error response, and logged
            self.server.hub.errors.append(f"{self.command} {self.path}: {type(e).__name__}: {e}")
            self._error(500, "InternalError", f"stand-in hub: {type(e).__name__}")

    # ---- routes

    def _dispatch(self):
        mirror = self.server.hub.mirror
        raw_path, query = urlsplit(self.path)[2:4]
        segs = [unquote(s) for s in raw_path.split("/")[1:]]
        if segs[:1] == ["cdn-lfs"] and len(segs) == 2:
            return self._blob(segs[1])
        if segs[:1] == ["api"] and len(segs) >= 3 and segs[1] in ("models", "datasets", "spaces"):
            repo_type, rest = segs[1][:-1], segs[2:]
        elif segs[:1] == ["datasets"]:
            repo_type, rest = "dataset", segs[1:]
        else:
            repo_type, rest = "model", segs
        api = segs[:1] == ["api"]
        repo_id, action, args = self._split(repo_type, rest)
        if repo_id is None or mirror.repo(repo_type, repo_id) is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if api and action is None and not args:  # /api/models/<id>: the info at main
            action, args = "revision", ["main"]
        if action is None or not args or (action == "resolve") == api:
            return self._error(404, "NotFound", f"stand-in hub: no route for {self.command} {raw_path}")
        revision, path = args[0], "/".join(args[1:])
        commit = mirror.commit(repo_type, repo_id, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = mirror.files(repo_type, repo_id, commit)
        if action == "revision":
            return self._info(repo_type, repo_id, commit, files)
        if action == "tree":
            return self._tree(repo_id, commit, files, path, parse_qs(query))
        if action == "paths-info":
            return self._paths_info(commit, files)
        return self._resolve(repo_id, commit, files, path)

    @staticmethod
    def _split(repo_type, rest):
        """(repo id, action, arguments) from the path segments after the repo type."""
        for n in (2, 1):
            if len(rest) > n and rest[n] in ACTIONS:
                return "/".join(rest[:n]), rest[n], rest[n + 1 :]
        if 1 <= len(rest) <= 2:
            return "/".join(rest), None, []
        return None, None, []

    def _info(self, repo_type, repo_id, commit, files):
        mirror = self.server.hub.mirror
        info = {
            "_id": _hex(repo_type, repo_id)[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit,
            "createdAt": DATE,
            "lastModified": DATE,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [{"rfilename": p} for p in sorted(files)],
        }
        if repo_type == "model":
            info |= {"modelId": repo_id, "library_name": "transformers", "pipeline_tag": "text-generation"}
            info["config"] = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox"}
        else:
            info["cardData"] = mirror.repo(repo_type, repo_id)["commits"][commit]["card_data"]
        self._json(info)

    def _entries(self, commit, files, paths):
        """Tree entries (files and folders) for `paths`, in the Hub's JSON."""
        dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        out = []
        for p in paths:
            if p in files:
                e = files[p]
                item = {"type": "file", "oid": e["oid"], "size": e["size"], "path": p}
                if e["lfs"]:
                    pointer = lfs_pointer(e["sha256"], e["size"])
                    item["oid"] = git_blob_oid(pointer)
                    item["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": len(pointer)}
                out.append(item)
            elif p in dirs:
                out.append({"type": "directory", "oid": _hex(commit, p), "size": 0, "path": p})
        return out

    def _tree(self, repo_id, commit, files, path, query):
        path = path.strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        expand = query.get("expand", ["false"])[0].lower() == "true"
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in files):
            return self._error(404, "EntryNotFound", f"{path} does not exist on {commit}", commit)
        below = {p[len(prefix) :] for p in files if p.startswith(prefix)}
        names = set()
        for rel in below:
            parts = rel.split("/")
            names |= (
                {prefix + "/".join(parts[:i]) for i in range(1, len(parts) + 1)} if recursive else {prefix + parts[0]}
            )
        entries = self._entries(commit, files, sorted(names))
        if expand:
            for e in entries:
                e["lastCommit"] = {"id": commit, "title": "kalavai local hub", "date": DATE}
        self._json(entries)

    def _paths_info(self, commit, files):
        body = getattr(self, "_body", b"")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            data = json.loads(body or b"{}")
            paths, expand = data.get("paths", []), bool(data.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[0].lower() == "true"
        entries = self._entries(commit, files, [p.strip("/") for p in paths])
        if expand:
            for e in entries:
                e["lastCommit"] = {"id": commit, "title": "kalavai local hub", "date": DATE}
        self._json(entries)

    def _resolve(self, repo_id, commit, files, path):
        hub = self.server.hub
        if path not in files:
            return self._error(404, "EntryNotFound", "Entry not found", commit)
        e = files[path]
        if e["lfs"] and hub.cdn_origin:  # the real Hub redirects LFS files to its CDN
            pointer = lfs_pointer(e["sha256"], e["size"])
            location = f"{hub.cdn_origin}/cdn-lfs/{e['sha256']}"
            body = f"Found. Redirecting to {location}".encode()
            headers = {
                "Location": location,
                "X-Repo-Commit": commit,
                "X-Linked-Etag": f'"{e["sha256"]}"',
                "X-Linked-Size": str(e["size"]),
                "ETag": f'"{git_blob_oid(pointer)}"',
            }
            return self._send(302, body, headers, "text/plain; charset=utf-8")
        etag = e["sha256"] if e["lfs"] else e["oid"]
        self._ranged(hub.mirror.read(e), {"ETag": f'"{etag}"', "X-Repo-Commit": commit})

    def _blob(self, sha256):
        hub = self.server.hub
        blob = hub.mirror.root / "blobs" / sha256
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not blob.exists():
            return self._send(404, b"NoSuchKey", content_type="text/plain")
        self._ranged(blob.read_bytes(), {"ETag": f'"{sha256}"'})

    def _ranged(self, data: bytes, headers: dict):
        headers = {"Accept-Ranges": "bytes", **headers}
        spec = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip()) if spec else None
        if not m or m.groups() == ("", ""):
            return self._send(200, data, headers, "application/octet-stream")
        size = len(data)
        if m.group(1) == "":
            start, end = max(0, size - int(m.group(2))), size - 1
        else:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if start >= size or start > end:
            return self._send(416, b"", {**headers, "Content-Range": f"bytes */{size}"}, "text/plain")
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(206, data[start : end + 1], headers, "application/octet-stream")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: LocalHub


@dataclass
class LocalHub:
    """A running stand-in Hub: `endpoint`, the `mirror` it serves (swap it with `use`), and its
    log of `requests` ((method, path, status), in arrival order) and server-side `errors`."""

    mirror: Mirror
    endpoint: str = ""
    cdn_origin: str | None = None
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.errors.clear()

    def unexpected(self, since: int = 0) -> list[tuple[str, str, int]]:
        """Requests (from the `since`-th on) answered with an error other than the probes the real
        code makes for files a repo may lack (404s the Hub gives too; HUB_ROUTE_FINDINGS.md): a
        route or a file missing here."""
        out = []
        for method, path, status in self.requests[since:]:
            route = urlsplit(path).path
            name = unquote(route.rstrip("/").rsplit("/", 1)[-1])
            repo_name = re.sub(r"^/(api/)?(datasets/|models/)?[^/]+/([^/]+)/.*", r"\3", route)
            probe = ("/resolve/" in route or "/tree/" in route) and (
                name in EXPECTED_MISSING or name == f"{unquote(repo_name)}.py"
            )
            if status >= 400 and not (status == 404 and probe):
                out.append((method, path, status))
        return out

    def use(self, mirror: Mirror) -> None:
        """Serve another mirror from now on (e.g. `mirror.without_safetensors(...)`)."""
        self.mirror = mirror

    def env(self, hf_home: str | os.PathLike, base: dict | None = None) -> dict[str, str]:
        """The environment for a subprocess that reaches this hub, with an own (empty or not) HF_HOME."""
        env = dict(os.environ if base is None else base)
        for name in (
            "HF_HUB_OFFLINE",
            "HF_DATASETS_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "HF_DATASETS_CACHE",
            "HF_ASSETS_CACHE",
            "HF_XET_CACHE",
            "TRANSFORMERS_CACHE",
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_TOKEN_PATH",
        ):
            env.pop(name, None)
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), "127.0.0.1,localhost"]))
        env |= {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }
        return env


@contextlib.contextmanager
def serve(mirror: Mirror, cdn: bool = True):
    """Serve `mirror` on 127.0.0.1 (a free port) in a background thread; yields the LocalHub.

    `cdn=False`: LFS files are answered directly (200) instead of by a redirect to the "CDN"."""
    hub = LocalHub(mirror)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hub = hub
    port = server.server_address[1]
    hub.endpoint = f"http://127.0.0.1:{port}"
    host = _cdn_host() if cdn else None
    hub.cdn_origin = f"http://{host}:{port}" if host else None
    thread = threading.Thread(target=server.serve_forever, name="kalavai-local-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
