"""The coordinator's side as commands: fuse the submissions into one model; evaluate any models.

    python -m kalavai_utils fuse --base DIR --submissions DIR... --router-text PATH... \\
        --freeze-layers K --out DIR [--heldout NAME=PATH ...] [--router token|sequence]
    python -m kalavai_utils evaluate --model NAME=DIR... --heldout NAME=PATH... --base NAME --specialists NAME,...

`fuse` is the protocol's step 4 in one command. Every submission is verified again as it is
read (submission.iter_submissions: the bytes hashed are the bytes loaded), one at a time beside
the fused model, which takes each one's suffix (FusedModel.from_specialists, as
cooperative.assemble does). A router is trained on the coordinator's router text
(routers.train_router, the notebooks' trainer) and the fused model is written, atomically, as a
folder that plain `AutoModelForCausalLM.from_pretrained` loads after `import kalavai_utils`: the
weights, the base's tokenizer, a record of what went in (kalavai_fused.json: experts, hashes,
router, its training text, the hashes of the folder's own files) and a model card (README.md).

`evaluate` runs the paper's evaluation protocol (evaluation.evaluate_domains; the metrics of
results.make_results) over model folders, one in memory at a time, each read from the bytes
whose hashes are checked: a fused folder's against its record, a submission's against its
manifest.

Text is read as train-specialist reads it (contributor.read_documents: text files, one document
each, or .jsonl with a "text" field) and packed with the base's tokenizer (data.pack), or taken
from the project's chunk folders (a domain folder with chunks.json; each file checked against
its hash as it is read, data.load_split).

The router-text rule (`check_known_text`): text on which the base's tokenizer averages fewer
than MIN_BYTES_PER_TOKEN bytes per token is refused. Every token covers at least one byte, so
then more than 4 in 5 of its bytes are left as tokens of one byte, outside every merge the
tokenizer learned: a script or language the base never read in quantity. Every expert shares
the base's tokenizer, so none of them has seen such text in any quantity either, and a router
trained on it learns nothing about the experts. The smoke base's tokenizer (512 tokens) gives 1.3
to 2.3 bytes per token on every offline domain, the rare languages included, and 1.0 on Greek,
Cyrillic, CJK or Thai text (tests/test_fuse_command.py checks both sides of the rule).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

from ..errors import KalavaiError, first_line
from ..protocol import data
from ..protocol.contributor import MAX_SEED, check_output_folder, read_documents
from ..protocol.cooperative import CAUSAL_ROUTER, evaluate_pass, fused_name, paper_router
from ..protocol.evaluation import evaluate_domains
from ..protocol.forecast import check_recorded_heldout, coordinator_freeze_layers
from ..protocol.fusion import FusedModel
from ..protocol.models import fingerprint, for_inference, load_causal_lm
from ..protocol.results import library_versions, make_results, write_results
from ..protocol.routers import train_router
from ..protocol.submission import MANIFEST, iter_submissions
from ..protocol.tokenizer import TOKENIZER_FILES, load_local_tokenizer, refuse_remote_code
from ..scales import Scale, get_scale
from ..storage import atomic_write_json, atomic_write_text, parse_json, plain_name, printable, read_json, sha256_bytes
from .inference import quiet_transformers, save_fused

RECORD = "kalavai_fused.json"
RECORD_FORMAT = "kalavai.fused/1"
CARD = "README.md"
RESULTS = "results.json"

# The paper's router recipe and evaluation protocol are the Scale fields' defaults: 500 router
# steps, batches of 4 chunks, AdamW (lr 1e-3, weight decay 0.01), an MLP router's hidden width
# 256, 512-token chunks; evaluation in batches of 4 chunks, at most 50 batches a domain.
PAPER_RECIPE = Scale(name="paper", source="hub", domains=(), languages=(), extra_domains=(), seeds=())

# --router: the causal per-token linear router (the default: the fused model must generate), or
# the authors' sequence-pooled one (an MLP in the paper's recipe; a scale's own otherwise).
ROUTER_CHOICES = ("token", "sequence")

MIN_BYTES_PER_TOKEN = 1.1  # below it, over 2 / 1.1 - 1 = 82% of the text's bytes are tokens of their own


def recipe(scale: str | None) -> Scale:
    """Whose router recipe: the scale's, or the paper's."""
    return get_scale(scale) if scale is not None else PAPER_RECIPE


def router_choice(router: str, rec: Scale) -> tuple[str, str]:
    """(kind, granularity) of --router."""
    if router not in ROUTER_CHOICES:
        raise KalavaiError(f"--router {printable(router)}: choose one of {', '.join(ROUTER_CHOICES)}")
    return CAUSAL_ROUTER if router == "token" else paper_router(rec)


def parse_named(items, flag: str) -> dict[str, str]:
    """NAME=PATH arguments as {name: path}: plain names (they name rows and domains), each once."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, path = str(item).partition("=")
        if not sep or not path:
            raise KalavaiError(f"{flag} {printable(item)}: expected NAME=PATH")
        plain_name(name, f"{flag} name")
        if name in out:
            raise KalavaiError(f"{flag}: {name} given twice")
        out[name] = path
    return out


# ---------------------------------------------------------------- text


@dataclass
class Text:
    """One source of text as read: every token in order, and what identifies it."""

    path: str
    kind: str  # "documents", or "chunks (<split> split)"
    sha256: str  # of the file's bytes read (documents); of the chunks' int32 ids (chunks: what a manifest records)
    stream: torch.Tensor  # every token, in order (1-D)
    chunks: torch.Tensor | None  # a chunk folder's chunks as they were made; None for documents
    n_bytes: int  # UTF-8 bytes of the text the tokens stand for

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / len(self.stream) if len(self.stream) else 0.0

    def describe(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "sha256": self.sha256,
            "tokens": len(self.stream),
            "bytes_per_token": round(self.bytes_per_token, 4),
        }


def read_text(path, tokenizer, splits: tuple[str, ...], vocab_size: int, flag: str) -> Text:
    """A text or .jsonl file (documents, tokenized with `tokenizer`), or a chunk folder's first split of `splits`."""
    p = Path(path)
    if p.is_dir():
        folder = p.resolve()
        if not (folder / "chunks.json").is_file():
            raise KalavaiError(
                f"{flag} {printable(path)}: a folder without chunks.json (not a chunk folder); give text or .jsonl files"
            )
        record = read_json(folder / "chunks.json")
        files = record.get("files") if isinstance(record, dict) else None
        split = next((s for s in splits if isinstance(files, dict) and f"{s}.safetensors" in files), None)
        if split is None:
            raise KalavaiError(f"{flag} {printable(path)}: its chunks.json lists no {' or '.join(splits)} split")
        try:
            chunks = data.load_split(folder.parent, folder.name, split)
        except KalavaiError as e:
            raise KalavaiError(f"{flag} {printable(path)}: {e}") from None
        stream = chunks.reshape(-1)
        if len(stream) and (stream.min() < 0 or stream.max() >= vocab_size):
            raise KalavaiError(
                f"{flag} {printable(path)}: token ids outside the base's vocabulary of {vocab_size} "
                "(chunks made with another tokenizer)"
            )
        n_bytes = len(tokenizer.decode(stream.tolist()).encode("utf-8")) if tokenizer is not None else 0
        return Text(
            str(path), f"chunks ({split} split)", sha256_bytes(chunks.int().numpy().tobytes()), stream, chunks, n_bytes
        )
    digests: dict[str, str] = {}
    try:
        docs = read_documents([p], digests)
    except KalavaiError as e:
        raise KalavaiError(f"{flag}: {e}") from None
    stream = data.pack(docs, tokenizer, 1).reshape(-1)  # every token of the documents joined as packing joins them
    n_bytes = len(tokenizer.decode(stream.tolist()).encode("utf-8"))
    return Text(str(path), "documents", digests[str(p)], stream, None, n_bytes)


def check_known_text(text: Text, flag: str) -> None:
    """Refuse text mostly outside the base tokenizer's merges (the module docstring states the rule)."""
    if text.bytes_per_token < MIN_BYTES_PER_TOKEN:
        raise KalavaiError(
            f"{flag} {printable(text.path)}: {text.bytes_per_token:.2f} bytes per token with the base's tokenizer, "
            f"under {MIN_BYTES_PER_TOKEN}: more than 4 in 5 of its bytes get no merge, a script or language "
            "the base (and so every expert) never read; no router can learn from it"
        )


def chunked(stream: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Full chunks of `seq_len` tokens, the remainder dropped (as data.pack cuts)."""
    n = len(stream) // seq_len
    return stream[: n * seq_len].reshape(n, seq_len).long()


def heldout_sets(heldout: dict[str, str], tokenizer, seq_len: int, vocab_size: int) -> tuple[dict, dict]:
    """Each --heldout set's chunks ({name: [n, T]}) and what they were read from.

    A chunk folder gives its held-out split as its contributor made it; a text file is packed
    at `seq_len` (every chunk held out: it is the coordinator's evaluation text).
    """
    sets, sources = {}, {}
    for name, path in heldout.items():
        text = read_text(path, tokenizer, ("heldout",), vocab_size, f"--heldout {name}")
        chunks = text.chunks if text.chunks is not None else chunked(text.stream, seq_len)
        if len(chunks) == 0:
            raise KalavaiError(
                f"--heldout {name}={printable(path)}: {len(text.stream)} tokens, not one chunk of {seq_len}"
            )
        sets[name] = chunks.long()
        sources[name] = {**text.describe(), "chunks": len(chunks), "seq_len": chunks.shape[1]}
    return sets, sources


def refuse_overlap(router_chunks: torch.Tensor, router_paths, heldout: dict[str, str], sets: dict) -> None:
    """The evaluation must not read the router's own training text: no path given as both, no chunk in both."""
    given = {Path(p).resolve() for p in router_paths}
    for name, path in heldout.items():
        if Path(path).resolve() in given:
            raise KalavaiError(
                f"--heldout {name}={printable(path)} is also router text: the evaluation would read the router's "
                "training text; give the router other text (or part of it)"
            )
    width = router_chunks.shape[1]
    seen = {row.numpy().tobytes() for row in router_chunks.int()}
    for name, chunks in sets.items():
        if chunks.shape[1] == width:
            shared = sum(row.numpy().tobytes() in seen for row in chunks.int())
            if shared:
                raise KalavaiError(
                    f"--heldout {name}: {shared} of its {len(chunks)} chunks are also in the router text: the "
                    "evaluation would read the router's training text"
                )


# ---------------------------------------------------------------- fuse


def fuse(
    base_dir,
    submission_dirs,
    router_text,
    out_dir,
    *,
    heldout=(),
    router: str = "token",
    steps: int | None = None,
    seed: int = 42,
    freeze_layers: int | None = None,
    scale: str | None = None,
    progress: bool = True,
) -> dict:
    """Verify, fuse, train the router, evaluate (with held-out data) and write the folder; returns its record.

    Everything about the input that can be judged without the submissions' weights is judged
    first (one line, nothing written); the folder appears, whole, only at the end.
    """
    k = coordinator_freeze_layers(freeze_layers, scale)  # the coordinator's K, never a submission's
    rec = recipe(scale)
    kind, granularity = router_choice(router, rec)
    steps = rec.router_steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise KalavaiError(f"--steps must be at least 1, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise KalavaiError(f"--seed must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    submission_dirs = [str(s) for s in submission_dirs]
    if len(submission_dirs) < 2:
        raise KalavaiError(f"fusion needs at least two submissions, got {len(submission_dirs)}")
    if not router_text:
        raise KalavaiError("--router-text: no text given")
    heldout = parse_named(heldout, "--heldout")
    keep = [("submission", s) for s in submission_dirs]
    keep += [("router text", p) for p in router_text] + [("held-out data", p) for p in heldout.values()]
    check_output_folder(out_dir, "--out", base_dir, keep)

    tokenizer = load_local_tokenizer(base_dir)  # refuses a base folder that names code
    config = base_config(base_dir)
    vocab_size = config.vocab_size
    if len(tokenizer) > vocab_size:
        raise KalavaiError(
            f"the base's tokenizer has {len(tokenizer)} tokens, its model {vocab_size}: not this model's tokenizer"
        )
    seq_len = min(rec.seq_len, getattr(config, "max_position_embeddings", None) or rec.seq_len)
    texts = [read_text(p, tokenizer, ("train", "heldout"), vocab_size, "--router-text") for p in router_text]
    for text in texts:
        if len(text.stream) == 0:
            raise KalavaiError(f"--router-text {printable(text.path)}: no text")
        check_known_text(text, "--router-text")
    router_chunks = torch.cat([chunked(t.stream, seq_len) for t in texts])
    if len(router_chunks) == 0:
        n = sum(len(t.stream) for t in texts)
        raise KalavaiError(f"too little router text: {n} tokens, not one chunk of {seq_len}")
    sets, set_sources = heldout_sets(heldout, tokenizer, heldout_seq_len(config), vocab_size)
    refuse_overlap(router_chunks, router_text, heldout, sets)

    # The work: verify and fuse, one submission in memory at a time beside the fused model.
    base = load_causal_lm(base_dir)
    base_fp = fingerprint(base)
    experts: list[dict] = []

    def specialists():
        for sub in iter_submissions(submission_dirs, base, k, base_dir=base_dir):
            domain = sub.manifest["data"].get("domain", sub.name)
            experts.append(
                {
                    "name": sub.name,
                    "domain": domain if isinstance(domain, str) else sub.name,
                    "submission": str(sub.folder),
                    "fingerprint": sub.fingerprint,
                    "files": dict(sorted(sub.manifest["files"].items())),
                    "training": sub.manifest["training"],
                    "data": sub.manifest["data"],
                }
            )
            yield sub.model
            del sub

    placeholders = [f"#{i}" for i in range(len(submission_dirs))]  # the contributors' names come with verification
    fused = FusedModel.from_specialists(
        specialists(),
        placeholders,
        k,
        router_kind=kind,
        granularity=granularity,
        router_hidden=rec.router_hidden,
        seed=seed,
    )
    fused.config.expert_names = [e["name"] for e in experts]
    specialists_of = expert_domains(experts, heldout, sets, set_sources)
    fused = for_inference(fused)

    losses = train_router(fused, router_chunks, steps, rec.router_batch, rec.router_lr, rec.router_wd, seed, progress)
    results = None
    if sets:
        results = evaluate_fused_folder(fused, base, base_fp, sets, specialists_of, experts, kind, granularity, seed)
    base = None  # let it go before the folder is written
    fused = fused.to("cpu").eval()

    tail = max(1, min(50, len(losses) // 2))  # the loss at the start and at the end, each a mean of up to 50 steps
    record = {
        "format": RECORD_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "base": {
            "folder": str(base_dir),
            "fingerprint": base_fp,
            "model_type": config.model_type,
            "layers": getattr(config, "num_hidden_layers", None),
        },
        "freeze_layers": k,
        "experts": experts,
        "router": {
            "kind": kind,
            "granularity": granularity,
            "causal": granularity == "token",
            "name": fused_name(kind, granularity),
            "recipe": rec.name,
            "steps": steps,
            "batch": rec.router_batch,
            "lr": rec.router_lr,
            "weight_decay": rec.router_wd,
            "hidden": rec.router_hidden if kind == "mlp" else None,
            "seed": seed,
            "loss_first": sum(losses[:tail]) / tail,
            "loss_last": sum(losses[-tail:]) / tail,
        },
        "router_text": {
            "sources": [t.describe() for t in texts],
            "tokens": int(router_chunks.numel()),
            "chunks": len(router_chunks),
            "seq_len": seq_len,
            "rule": f"each source at least {MIN_BYTES_PER_TOKEN} bytes per token with the base's tokenizer",
        },
        "heldout": set_sources,
        "files": {},  # the folder's model and tokenizer files, filled in as written
        "versions": library_versions(),
    }

    def finish(folder: Path) -> None:
        record["files"] = {p.name: sha256_bytes(p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()}
        if results is not None:
            write_results(folder / RESULTS, results)
        atomic_write_json(folder / RECORD, record)
        atomic_write_text(folder / CARD, model_card(record, results))

    save_fused(fused, tokenizer, out_dir, finish=finish, replace=False)
    return {**record, "out": str(out_dir), "results": results}


def heldout_seq_len(config) -> int:
    """The chunk length of held-out text files, in `fuse` and `evaluate` alike: the paper's, or the base's
    context if shorter (a recipe's own length is for its router text only)."""
    return min(PAPER_RECIPE.seq_len, getattr(config, "max_position_embeddings", None) or PAPER_RECIPE.seq_len)


def base_config(base_dir):
    """The base's configuration alone, read before its weights (no code run)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(base_dir), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise KalavaiError(f"cannot read the base's config in {printable(base_dir)}: {first_line(e)}") from None


def expert_domains(experts: list[dict], heldout: dict, sets: dict, sources: dict) -> dict[str, str]:
    """{domain: "spec:<name>"} for the evaluation: every expert needs the held-out set of its own domain,
    and a held-out split its contributor handed over (a chunk folder) must be the one it recorded."""
    if not heldout:
        return {}
    out: dict[str, str] = {}
    for e in experts:
        if e["domain"] not in heldout:
            raise KalavaiError(
                f"--heldout has no set for expert {printable(e['name'])}'s domain {printable(repr(e['domain']))}: "
                f"give --heldout {printable(e['domain'])}=PATH (its contributor's held-out split)"
            )
        if e["domain"] in out:
            raise KalavaiError(f"two experts claim the domain {printable(repr(e['domain']))}")
        out[e["domain"]] = f"spec:{e['name']}"
        if sources[e["domain"]]["kind"].startswith("chunks"):
            where = f"--heldout {e['domain']}={heldout[e['domain']]}"
            check_recorded_heldout({"data": e["data"]}, sets[e["domain"]], where, e["submission"])
    return out


def evaluate_fused_folder(fused, base, base_fp, sets, specialists_of, experts, kind, granularity, seed) -> dict:
    """The evaluation table of what is about to be written: base, each expert, uniform gates, the router."""
    name = fused_name(kind, granularity)
    variants = [("uniform", "uniform", None, None), (name, "soft", fused.router, granularity)]
    fused_losses, gates = evaluate_pass(fused, sets, PAPER_RECIPE, variants, experts=True)
    losses = {
        "base": evaluate_domains(for_inference(base), sets, PAPER_RECIPE.eval_batch, PAPER_RECIPE.eval_max_batches)
    }
    losses.update({f"spec:{e['name']}": fused_losses[f"spec:{e['name']}"] for e in experts})
    losses["uniform"], losses[name] = fused_losses["uniform"], fused_losses[name]
    return make_results(
        experiment="fuse",
        condition=name,
        scale=PAPER_RECIPE.name,
        seed=seed,
        config={"protocol": protocol(), "experts": [e["fingerprint"] for e in experts]},
        base_fingerprint=base_fp,
        domains=list(sets),
        losses=losses,
        specialists=specialists_of,
        gates=gates,
    )


def protocol() -> dict:
    return {"eval_batch": PAPER_RECIPE.eval_batch, "eval_max_batches": PAPER_RECIPE.eval_max_batches}


# ---------------------------------------------------------------- printing


def md_code(text) -> str:
    """Anything someone else chose, as inline code on one line of Markdown."""
    return "`" + printable(text).replace("`", "'") + "`"


def blocks(n: int) -> str:
    return f"{n} block" + ("" if n == 1 else "s")


def model_card(record: dict, results: dict | None) -> str:
    r, text = record["router"], record["router_text"]
    granularity = (
        "per token, causal (the gate at a position reads only that position's hidden state)"
        if r["causal"]
        else "per sequence, mean-pooled over the whole chunk (the authors'; not causal: generation re-reads the sequence)"
    )
    lines = [
        f"# Fused model: {len(record['experts'])} experts mixed by a router",
        "",
        "A KALAVAI cooperative: specialists fine-tuned from one shared base, each with the base's embedding and "
        f"first {blocks(record['freeze_layers'])} frozen, run side by side and mixed in logit space by a router "
        "(`python -m kalavai_utils fuse`). It loads with transformers' Auto classes once `kalavai_utils` is "
        "imported (no remote code):",
        "",
        "```python",
        "import kalavai_utils  # registers the fused architecture",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        "```",
        "",
        "## Base",
        "",
        f"- folder: {md_code(record['base']['folder'])}",
        f"- fingerprint (sha256 over every tensor): {md_code(record['base']['fingerprint'])}",
        f"- architecture: {md_code(record['base']['model_type'])}, {record['base']['layers']} blocks",
        f"- frozen depth: the embedding and the first {blocks(record['freeze_layers'])}, shared by every expert "
        "(checked bit for bit against the base)",
        "",
        "## Experts",
        "",
        "Each submission was verified again as it was read: the bytes hashed are the bytes fused.",
        "",
        "| # | contributor | domain | weights fingerprint | files (sha256) |",
        "|---|---|---|---|---|",
    ]
    for i, e in enumerate(record["experts"]):
        files = "<br>".join(f"{md_code(n)} {md_code(h)}" for n, h in e["files"].items())
        lines.append(f"| {i} | {md_code(e['name'])} | {md_code(e['domain'])} | {md_code(e['fingerprint'])} | {files} |")
    lines += [
        "",
        "## Router",
        "",
        f"- kind: {r['kind']}, {granularity}",
        f"- training: {r['steps']} steps of {r['batch']} chunks, AdamW (lr {r['lr']:g}, weight decay "
        f"{r['weight_decay']:g}), seed {r['seed']}, the {r['recipe']} recipe; the experts frozen",
        f"- loss: {r['loss_first']:.4f} over the first steps, {r['loss_last']:.4f} over the last (mean of up to 50)",
        "",
        "## Router training data",
        "",
        f"{text['tokens']:,} tokens in {text['chunks']:,} chunks of {text['seq_len']} tokens, from:",
        "",
        "| source | kind | sha256 | tokens | bytes per token |",
        "|---|---|---|---|---|",
    ]
    for s in text["sources"]:
        lines.append(
            f"| {md_code(s['path'])} | {s['kind']} | {md_code(s['sha256'])} | {s['tokens']:,} | {s['bytes_per_token']:.2f} |"
        )
    lines += ["", f"Rule: {text['rule']} (text the tokenizer never learned is refused).", ""]
    if results is not None:
        lines += [
            "## Evaluation",
            "",
            "Held-out loss (nats per token) by the paper's protocol: each domain in batches of "
            f"{PAPER_RECIPE.eval_batch} chunks, at most {PAPER_RECIPE.eval_max_batches} batches. "
            "`uniform` is the experts with equal gates; the last row is this model.",
            "",
            "```",
            describe_results(results),
            "```",
            "",
            "Held-out data:",
            "",
        ]
        for name, s in record["heldout"].items():
            lines.append(
                f"- {md_code(name)}: {md_code(s['path'])}, {s['kind']}, {s['chunks']} chunks, sha256 {md_code(s['sha256'])}"
            )
        lines.append("")
    lines += [f"Files of this folder and their sha256: `{RECORD}` (checked by `python -m kalavai_utils evaluate`).", ""]
    return "\n".join(lines)


def describe_results(results: dict) -> str:
    """The table the commands print: each model's loss per domain, its equal-weight loss and gains, then the metrics."""
    m, domains = results["metrics"], results["domains"]
    names = {model: printable(model) for model in results["losses"]}
    width = max(12, *(len(n) for n in names.values()))
    cols = [printable(d)[:12] for d in domains]
    head = f"{'model':<{width}}  " + "  ".join(f"{c:>9}" for c in cols) + f"  {'EW':>9}  {'vs best':>8}  {'vs base':>8}"
    lines = [head]
    for model, row in results["losses"].items():
        cells = "  ".join(f"{row[d]:9.4f}" for d in domains)
        lines.append(
            f"{names[model]:<{width}}  {cells}  {m['ew'][model]:9.4f}  "
            f"{m['gain_vs_best_pct'][model]:+7.2f}%  {m['gain_vs_base_pct'][model]:+7.2f}%"
        )
    divergence = ", ".join(f"{printable(d)} {v:.2f}%" for d, v in m["divergence_pct"].items())
    lines += [
        f"best specialist: {printable(m['best_specialist'])} (EW {m['ew'][m['best_specialist']]:.4f})",
        f"divergence: {divergence}; mean {m['mean_divergence_pct']:.2f}%",
        f"domain oracle: EW {m['oracle_ew']:.4f} ({m['oracle_gain_pct']:+.2f}% vs the best specialist)",
    ]
    if m["non_improving_specialists"]:
        lines.append(
            f"WARNING: no better than the base on their own domain: {', '.join(map(printable, m['non_improving_specialists']))}"
        )
    return "\n".join(lines)


def describe_fusion(result: dict) -> str:
    lines = [f"accepted: {printable(e['submission'])} ({printable(e['name'])})" for e in result["experts"]]
    text, r = result["router_text"], result["router"]
    per_source = ", ".join(f"{s['bytes_per_token']:.2f}" for s in text["sources"])
    lines.append(
        f"router text: {len(text['sources'])} source{'s' if len(text['sources']) > 1 else ''}, {text['tokens']:,} tokens in {text['chunks']:,} chunks of "
        f"{text['seq_len']} ({per_source} bytes per token)"
    )
    lines.append(
        f"router {r['kind']} per {r['granularity']}: {r['steps']} steps, loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}"
    )
    if result["results"] is not None:
        lines.append(describe_results(result["results"]))
    lines.append(f"fused model written: {printable(result['out'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------- evaluate


def read_files(folder: Path, names) -> dict[str, bytes]:
    """Each named file of `folder`, read once (names with no path in them)."""
    out = {}
    for name in names:
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise KalavaiError(f"{printable(folder)}: {printable(repr(name))} is not a file name")
        path = folder / name
        if not path.is_file():
            raise KalavaiError(f"{printable(path)}: missing")
        try:
            out[name] = path.read_bytes()
        except OSError as e:
            raise KalavaiError(f"cannot read {printable(path)}: {e.strerror or type(e).__name__}") from None
    return out


def load_model(folder) -> tuple[torch.nn.Module, dict]:
    """A causal LM folder, safetensors only, loaded from the very bytes whose hashes are checked.

    A fused folder (kalavai_fused.json) must hold every file its record lists, unchanged; a
    submission (kalavai_submission.json) every file its manifest lists. Any other folder is
    read as it is (its hashes are reported). No code from the folder is run.
    """
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise KalavaiError(f"{printable(folder)}: no config.json (not a model folder)")
    refuse_remote_code(folder)
    kind, expected = "model", None
    for name, what in ((RECORD, "fused"), (MANIFEST, "submission")):
        if (folder / name).is_file():
            listed = read_json(folder / name)
            expected = listed.get("files") if isinstance(listed, dict) else None
            if not isinstance(expected, dict) or not all(isinstance(v, str) for v in expected.values()):
                raise KalavaiError(f"{printable(folder / name)}: no 'files' with their sha256")
            kind = what
            break
    index = "model.safetensors.index.json"
    on_disk = sorted(p.name for p in folder.iterdir() if p.name.endswith(".safetensors") and p.is_file())
    if (folder / index).is_file():
        weight_map = read_json(folder / index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise KalavaiError(f"{printable(folder / index)}: no weight_map of tensor -> shard")
        weights = sorted(set(weight_map.values()))
    else:
        weights = on_disk
    if not weights:
        raise KalavaiError(f"{printable(folder)}: no *.safetensors weights (pickle checkpoints are never loaded)")
    names = sorted(set(expected or ()) | {"config.json", *weights})
    files = read_files(folder, names)
    hashes = {name: sha256_bytes(raw) for name, raw in files.items()}
    if expected is not None:
        where = f"the record written at fusion ({RECORD})" if kind == "fused" else f"its {MANIFEST}"
        for name in names:
            if name not in expected:
                raise KalavaiError(f"{printable(folder / name)}: not listed in {where}")
            if hashes[name] != expected[name]:
                raise KalavaiError(f"{printable(folder / name)}: changed since (its sha256 differs from {where})")
    raw = parse_json(files.pop("config.json"), folder / "config.json")
    if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
        raise KalavaiError(f"{printable(folder / 'config.json')}: no model_type")
    model_type = raw.pop("model_type")
    try:
        config = AutoConfig.for_model(model_type, **raw)
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except (ValueError, KeyError, TypeError) as e:
        raise KalavaiError(
            f"{printable(folder)}: model_type {printable(repr(model_type))} is no causal LM transformers knows ({first_line(e)})"
        ) from None
    tensors = {}
    for name in weights:
        try:
            tensors.update(safetensors.torch.load(files.pop(name)))
        except Exception as e:  # noqa: BLE001 - whatever is wrong with the bytes, the file is named
            raise KalavaiError(f"{printable(folder / name)}: unreadable safetensors ({type(e).__name__})") from None
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(
                None, config=config, state_dict=tensors, dtype=torch.float32, output_loading_info=True
            )
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, KalavaiError) as e:
        raise KalavaiError(f"cannot load {printable(folder)}: {first_line(e)}") from None
    problems = [(what, info.get(what)) for what in ("missing_keys", "unexpected_keys", "mismatched_keys")]
    for what, keys in problems:
        if keys:
            raise KalavaiError(
                f"{printable(folder)}: {what.replace('_', ' ')} in its weights, e.g. {printable(sorted(keys)[0])}"
            )
    return model.eval(), {"path": str(folder), "kind": kind, "model_type": model_type, "files": hashes}


def model_vocab(model) -> int:
    return int(model.config.vocab_size)


def same_tokenizer(a, b) -> bool:
    """Two tokenizers that map every text to the same ids: the same definition (vocabulary, merges,
    normalization, special tokens)."""
    backend_a, backend_b = getattr(a, "backend_tokenizer", None), getattr(b, "backend_tokenizer", None)
    if backend_a is not None and backend_b is not None:
        return backend_a.to_str() == backend_b.to_str() and a.all_special_tokens == b.all_special_tokens
    return a.get_vocab() == b.get_vocab() and a.all_special_tokens == b.all_special_tokens


def has_tokenizer(folder) -> bool:
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


def evaluate(models, heldout, base: str, specialists: str, json_out=None) -> dict:
    """The paper's evaluation of every model on every held-out set; returns the results (and writes them with `json_out`)."""
    models = parse_named(models, "--model")
    heldout = parse_named(heldout, "--heldout")
    if not models:
        raise KalavaiError("--model: no models given")
    if not heldout:
        raise KalavaiError("--heldout: no held-out data given")
    if base not in models:
        raise KalavaiError(f"--base {printable(base)} is none of the --model names ({', '.join(models)})")
    names = [s.strip() for s in str(specialists).split(",") if s.strip()]
    if not names:
        raise KalavaiError("--specialists: name at least one of the --model names")
    for name in names:
        if name not in models:
            raise KalavaiError(f"--specialists {printable(name)} is none of the --model names ({', '.join(models)})")
        if name == base:
            raise KalavaiError(f"--specialists {printable(name)} is the base")
    if len(set(names)) != len(names):
        raise KalavaiError("--specialists: a name given twice")
    if json_out is not None:
        out = Path(json_out)
        if out.is_dir() or not out.parent.is_dir():
            raise KalavaiError(f"--json {printable(json_out)}: not a file in an existing folder")
    for name, path in models.items():
        if not (Path(path) / "config.json").is_file():
            raise KalavaiError(f"--model {name}={printable(path)}: not a model folder (no config.json)")
        refuse_remote_code(path)
    specialists_of = {}
    for name in names:
        domain = specialist_domain(name, models[name], heldout)
        if domain in specialists_of:
            raise KalavaiError(f"--specialists {name} and {specialists_of[domain]} both have the domain {domain}")
        specialists_of[domain] = name

    # the tokenizer (text files are tokenized with it): the base's, or the first model folder's that has one
    with_tokenizer = [n for n in [base, *(m for m in models if m != base)] if has_tokenizer(models[n])]
    tokenizer = load_local_tokenizer(models[with_tokenizer[0]]) if with_tokenizer else None
    for name in with_tokenizer[1:]:
        if not same_tokenizer(tokenizer, load_local_tokenizer(models[name])):
            raise KalavaiError(
                f"--model {name}={printable(models[name])}: its tokenizer differs from {with_tokenizer[0]}'s"
            )
    if tokenizer is None and any(not Path(p).is_dir() for p in heldout.values()):
        raise KalavaiError("--heldout text files need a tokenizer, and no --model folder holds one")
    config = base_config(models[base])
    vocab_size = config.vocab_size
    if tokenizer is not None and len(tokenizer) > vocab_size:
        raise KalavaiError(f"the tokenizer has {len(tokenizer)} tokens, the base {vocab_size}: not its tokenizer")
    sets, sources = heldout_sets(heldout, tokenizer, heldout_seq_len(config), vocab_size)

    losses, infos, base_fp = {}, {}, None
    for name in [base, *[n for n in models if n != base]]:  # one model in memory at a time
        try:
            model, info = load_model(models[name])
        except KalavaiError as e:
            raise KalavaiError(f"--model {name}: {e}") from None
        if model_vocab(model) != vocab_size:
            raise KalavaiError(
                f"--model {name}: a vocabulary of {model_vocab(model)}, the base's is {vocab_size} (another tokenizer)"
            )
        if name == base:
            base_fp = fingerprint(model)
        info["fingerprint"] = fingerprint(model)
        model = for_inference(model)
        losses[name] = evaluate_domains(model, sets, PAPER_RECIPE.eval_batch, PAPER_RECIPE.eval_max_batches)
        infos[name] = info
        del model
    losses = {n: losses[n] for n in models}  # the order given
    results = make_results(
        experiment="evaluate",
        condition="evaluate",
        scale=PAPER_RECIPE.name,
        seed=None,
        config={"protocol": protocol(), "models": infos, "heldout": sources, "base": base},
        base_fingerprint=base_fp,
        domains=list(sets),
        losses=losses,
        specialists=specialists_of,
    )
    if json_out is not None:
        write_results(json_out, results)
    return results


def specialist_domain(name: str, folder, heldout: dict) -> str:
    """A specialist's own domain: the held-out set of its name, else the domain its submission manifest names."""
    if name in heldout:
        return name
    manifest = Path(folder) / MANIFEST
    domain = None
    if manifest.is_file():
        recorded = read_json(manifest)
        data_stats = recorded.get("data") if isinstance(recorded, dict) else None
        domain = data_stats.get("domain") if isinstance(data_stats, dict) else None
    if isinstance(domain, str) and domain in heldout:
        return domain
    raise KalavaiError(
        f"--specialists {printable(name)}: no held-out set of its own domain (name the model after its domain's "
        "--heldout set, or hand in its submission folder, whose manifest names the domain)"
    )
