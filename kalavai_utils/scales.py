"""Every scale's settings, in one place.

`410m`, `1b` and `6.9b` follow the paper (PAPER.md, sections on specialist training and
data). `tiny` is the default: the offline cooperative that `./run_all.sh` runs on a 2-core CPU
(see the README's time budget). `smoke` only exercises the code paths.

Deviations of `tiny` from the paper, and why:
- a 1.3M-parameter GPT-NeoX pretrained here instead of Pythia (no Hub access);
- 128-token chunks instead of 512, and 200 specialist steps instead of 2,000 (CPU time);
- the regime is calibrated on the specialists alone, before any fusion (bars in
  metrics.REGIME_*): Pythia-410M's specialists move 10-25% on their own domain and lose at
  most ~4% elsewhere. A model this small gets there only with 3 of its 4 blocks frozen, a
  learning rate of 1.5e-4 and a base that reads 0.08 of the usual code, so that code still has
  room to move. What was measured and tried: docs/calibration.md, "The regime calibration".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .errors import KalavaiError
from .families import DEFAULT_FAMILY
from .settings import settings

# The offline corpora's domains (kalavai_utils.corpora generates them).
ENGLISH_DOMAINS = ("code", "science", "fiction", "law", "medicine", "news", "recipes", "sports", "finance", "travel")
LANGUAGES = ("lang_script", "lang_tonal", "lang_mutation")


@dataclass(frozen=True)
class Scale:
    name: str
    source: str  # "offline": data generated and base pretrained here; "hub": Pythia + Hub datasets
    domains: tuple[str, ...]  # the main experiment's contributors, one domain each
    languages: tuple[str, ...]  # cross-lingual contributors (Phase 2)
    extra_domains: tuple[str, ...]  # further domains for the many-contributor experiment
    seeds: tuple[int, ...]

    # base model
    # Its family (families.py): offline, the architecture the base is pretrained in; at a Hub scale,
    # what the Hub model must be (checked when it is loaded). Every scale but qwen-1.5b is GPT-NeoX.
    family: str = DEFAULT_FAMILY
    hub_model: str | None = None
    hub_revision: str | None = None
    d_model: int = 0
    n_layers: int = 0
    n_heads: int = 0
    vocab_size: int = 0
    seq_len: int = 512

    # data
    docs_per_domain: int = 3000
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / unused / held-out
    corpus_overlap: float = 0.5  # offline only: how much the English-like domains share

    # offline pretraining of the shared base
    pretrain_steps: int = 0
    pretrain_batch: int = 16
    pretrain_lr: float = 3e-3
    pretrain_docs_per_domain: int = 0
    pretrain_language_weight: float = 0.03  # languages are rare in the base's mixture
    # The languages' share of the tokenizer's training text (None: the base's share). A smaller
    # share for the base alone keeps the languages in tokens of several characters that the base
    # has rarely read, as Pythia reads Yoruba and Welsh (high loss per token); lowering both
    # splits them into bytes, which lowers the loss per token instead of raising it.
    tokenizer_language_weight: float | None = None
    pretrain_code_share: float = 1.0  # the base reads this share of an English domain's document count as code
    pretrain_revisions: tuple[int, ...] = ()
    base_revision: str | None = None  # which saved revision is the shared base

    # specialist training (the paper's section 2)
    freeze_layers: int = 4  # plus the input embedding
    spec_steps: int = 2000
    spec_lr: float = 2e-5
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    micro_batch: int = 2
    grad_accum: int = 4
    bf16: bool = True
    grad_checkpointing: bool = False
    curve_every: int = 200  # held-out curve point every so many optimizer steps
    curve_max_batches: int = 10

    # router (PAPER.md §1)
    router_steps: int = 500
    router_batch: int = 4
    router_lr: float = 1e-3
    router_wd: float = 0.01
    router_hidden: int = 256
    # The authors' router at this scale: their 410M code used a 2-layer MLP on the pooled
    # hidden state, their 1B and 6.9B code a single Linear(d, N). Both pool the whole chunk.
    paper_router: str = "mlp"

    # evaluation protocol (section 3)
    eval_batch: int = 4
    eval_max_batches: int = 50

    # gain-prediction sweep (notebook 04)
    sweep_seeds: tuple[int, ...] = field(default=())
    sweep_max_conditions: int = 0  # 0: every condition; smoke keeps a few to stay fast

    @property
    def is_hub(self) -> bool:
        return self.source == "hub"

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batch * self.grad_accum * self.seq_len

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **changes) -> "Scale":
        return replace(self, **changes)


_PAPER = dict(
    source="hub",
    hub_revision="step10000",
    domains=("code", "science", "fiction"),
    languages=("tamil", "yoruba", "welsh"),
    extra_domains=("pubmed", "eurlex", "patents"),
    seeds=(42, 137, 2026),
    seq_len=512,
    docs_per_domain=3000,
    freeze_layers=4,
    spec_steps=2000,
    spec_lr=2e-5,
    micro_batch=2,
    grad_accum=4,
    bf16=True,
    sweep_seeds=(42,),
)

# The same global batch as the authors' 2 x 4, in one micro-batch (a multi-GPU run splits it:
# `--processes 2` gives each GPU 4 x 1, `--processes 4` 2 x 1; training.local_batch_shape).
ONE_GPU_BATCH = dict(micro_batch=8, grad_accum=1)

SCALES: dict[str, Scale] = {
    "smoke": Scale(
        name="smoke",
        source="offline",
        domains=("code", "science", "fiction"),
        languages=LANGUAGES,
        extra_domains=ENGLISH_DOMAINS[3:],
        seeds=(42,),
        d_model=32,
        n_layers=2,
        n_heads=2,
        vocab_size=512,
        seq_len=32,
        docs_per_domain=60,
        pretrain_steps=20,
        pretrain_batch=8,
        pretrain_docs_per_domain=40,
        pretrain_revisions=(10, 20),
        base_revision="step20",
        freeze_layers=1,
        spec_steps=8,
        spec_lr=1e-3,
        micro_batch=2,
        grad_accum=2,
        bf16=False,
        curve_every=4,
        curve_max_batches=2,
        router_steps=10,
        router_hidden=16,
        eval_max_batches=3,
        sweep_seeds=(42,),
        sweep_max_conditions=5,
    ),
    "tiny": Scale(
        name="tiny",
        source="offline",
        domains=("code", "science", "fiction"),
        languages=LANGUAGES,
        extra_domains=ENGLISH_DOMAINS[3:],
        seeds=(42, 137, 2026),
        d_model=128,
        n_layers=4,
        n_heads=4,
        vocab_size=2048,
        seq_len=128,
        docs_per_domain=1500,
        pretrain_steps=1000,
        pretrain_batch=16,
        pretrain_docs_per_domain=1500,
        pretrain_revisions=(125, 250, 500, 1000),
        base_revision="step1000",
        pretrain_code_share=0.08,
        # Calibrated on the cross-lingual contributors before any fusion (notebook 06's regime table):
        # the base reads each language in a few documents, its tokenizer at the default share.
        pretrain_language_weight=0.0015,
        tokenizer_language_weight=0.03,
        freeze_layers=3,
        spec_steps=200,
        spec_lr=1.5e-4,
        micro_batch=4,
        grad_accum=2,
        bf16=False,
        curve_every=20,
        curve_max_batches=5,
        router_steps=500,
        router_hidden=256,
        eval_max_batches=50,
        sweep_seeds=(42,),
    ),
    # The paper's synthetic control (a ~25M GPT trained from scratch on synthetic domains), as a
    # step between `tiny` and `410m`: the same offline corpora and protocol with a model about
    # 20x tiny's, 512-token chunks and the paper's batch shape. Sized for one GPU in about 30
    # minutes for every notebook; on a CPU it builds and runs its smoke path only.
    "synthetic-25m": Scale(
        name="synthetic-25m",
        source="offline",
        domains=("code", "science", "fiction"),
        languages=LANGUAGES,
        extra_domains=ENGLISH_DOMAINS[3:],
        seeds=(42, 137, 2026),
        d_model=512,
        n_layers=6,
        n_heads=8,
        vocab_size=8192,
        seq_len=512,
        docs_per_domain=2000,  # the code domain's specialist pool (documented stdlib functions) holds about 2,100 on Python 3.11
        pretrain_steps=4000,
        pretrain_batch=32,
        pretrain_lr=1e-3,
        pretrain_docs_per_domain=3000,
        pretrain_revisions=(500, 1000, 2000, 4000),
        base_revision="step4000",
        pretrain_code_share=0.08,  # tiny's calibrated regime, scaled; not yet calibrated at this size
        freeze_layers=4,
        spec_steps=1000,
        spec_lr=1e-4,
        micro_batch=4,
        grad_accum=2,
        bf16=True,
        curve_every=100,
        curve_max_batches=5,
        router_steps=500,
        router_hidden=256,
        eval_max_batches=50,
        sweep_seeds=(42,),
    ),
    # On one GPU the paper's global batch of 8 sequences runs as one micro-batch of 8: 3.2x the
    # throughput of the authors' 2 x 4 on an H100 at 410M (results/410m/training_shapes_h100.json).
    "410m": Scale(name="410m", hub_model="EleutherAI/pythia-410m", **{**_PAPER, **ONE_GPU_BATCH}),
    "1b": Scale(name="1b", hub_model="EleutherAI/pythia-1b", **{**_PAPER, **ONE_GPU_BATCH}, paper_router="linear"),
    "6.9b": Scale(
        name="6.9b",
        hub_model="EleutherAI/pythia-6.9b",
        **{**_PAPER, "freeze_layers": 6, "spec_steps": 1000, "spec_lr": 1e-5},
        grad_checkpointing=True,
        paper_router="linear",
    ),
    # The paper's Qwen point of the divergence law (Qwen-1.5B: 3.16% divergence, +1.06% gain; paper.py),
    # as the authors' code ran it: experiments/kalavai_corrected_eval.py, MODEL_CONFIGS["qwen"]
    # (lines 89-112 at Murai-Labs/Kalavai 80b6782): Qwen/Qwen2.5-1.5B with no revision (so the Hub's
    # main when they ran it; pin the commit a run downloads), code and fiction, the embedding and
    # K = 2 blocks frozen, 1,000 steps at 2e-5, batches of 2 x 2, clip 1.0, AdamW weight decay 0.01,
    # a 2-layer MLP router of 128 hidden units trained 300 steps. Their Qwen loop held the rate
    # constant: here no warmup either, but the one training loop's cosine decay runs. Its data
    # is the paper scales' (notebook 00), not their Qwen run's 5,000 training / 500 held-out texts.
    "qwen-1.5b": Scale(
        name="qwen-1.5b",
        family="qwen2",
        hub_model="Qwen/Qwen2.5-1.5B",
        **{
            **_PAPER,
            "hub_revision": "main",
            "domains": ("code", "fiction"),
            "freeze_layers": 2,
            "spec_steps": 1000,
            "spec_lr": 2e-5,
            "micro_batch": 2,
            "grad_accum": 2,
        },
        weight_decay=0.01,
        warmup_frac=0.0,
        router_steps=300,
        router_hidden=128,
        paper_router="mlp",
    ),
}


# Pythia's shapes (the Hub configs of EleutherAI/pythia-<size>), for what is computed without
# loading them: hidden size, layers, intermediate size, vocabulary; and their attention heads.
# 1.4b is the capacity control's model (notebook 05), not a scale.
PYTHIA_SHAPES = {
    "410m": (1024, 24, 4096, 50304),
    "1b": (2048, 16, 8192, 50304),
    "1.4b": (2048, 24, 8192, 50304),
    "6.9b": (4096, 32, 16384, 50432),
}
PYTHIA_HEADS = {"410m": 16, "1b": 8, "1.4b": 16, "6.9b": 32}


def pythia_size(hub_model: str) -> str:
    """The PYTHIA_SHAPES key of a Pythia model id ("EleutherAI/pythia-1.4b" -> "1.4b"), checked."""
    size = hub_model.rsplit("pythia-", 1)[-1]
    if size not in PYTHIA_SHAPES:
        raise KalavaiError(f"no published shape recorded for {hub_model!r}; known: {', '.join(PYTHIA_SHAPES)}")
    return size


def pythia_config(size: str = "410m"):
    """Pythia-<size>'s published GPT-NeoX config (PYTHIA_SHAPES, PYTHIA_HEADS and the rest of its Hub
    config), for timing or counting its architecture with random weights when no Hub cache holds it."""
    from transformers import GPTNeoXConfig

    hidden, layers, intermediate, vocab = PYTHIA_SHAPES[size]
    return GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=PYTHIA_HEADS[size],
        intermediate_size=intermediate,
        max_position_embeddings=2048,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
    )


def pythia_410m_config():
    """Pythia-410M's published config (the benchmarks time its architecture)."""
    return pythia_config("410m")


def domain_kind(domain: str, languages) -> str:
    """'language', 'code' or 'English-like prose': code is real Python, dense in symbols and hard
    per character for any base, so it is kept apart when languages are compared with prose."""
    return "language" if domain in set(languages) else "code" if domain == "code" else "English-like prose"


# A 6.9B specialist does not fit one GPU: its fp32 weights, gradients and two AdamW moments
# take 16 bytes a parameter (110 GB). It trains sharded over several GPUs (KALAVAI_FSDP=1 under
# `accelerate launch`: `./run_all.sh --processes N`), and, as in the paper, only the main result
# (notebooks 00-03) is run at that scale.
SHARDED_SCALES = ("6.9b",)


def trains_sharded(scale: Scale) -> bool:
    return scale.name in SHARDED_SCALES


# KALAVAI_SIZES=ci: a Hub scale cut to a test of its code paths on a CPU against a local Hub
# (tests/local_hub.py). Sizes only: every notebook runs the same code, on fewer documents, steps,
# batches and seeds; the ladders that count in the paper's steps shrink in proportion
# (`step_count`). Never a result.
CI_SIZES = dict(
    seeds=(42, 137),
    seq_len=64,
    docs_per_domain=150,
    spec_steps=4,
    micro_batch=2,
    grad_accum=2,
    curve_every=2,
    curve_max_batches=2,
    router_steps=6,
    router_batch=2,
    router_hidden=16,
    eval_batch=2,
    eval_max_batches=3,
)


def step_count(scale: Scale, paper_steps: int) -> int:
    """A step count the paper states at its own specialists' length (a ladder rung), at this scale's:
    itself at a Hub scale, in proportion when KALAVAI_SIZES=ci has cut the specialists' steps."""
    full = SCALES[scale.name].spec_steps
    return paper_steps if scale.spec_steps == full else max(1, round(paper_steps * scale.spec_steps / full))


def get_scale(name: str) -> Scale:
    try:
        scale = SCALES[name]
    except KeyError:
        raise KalavaiError(f"unknown scale {name!r}; choose one of: {', '.join(SCALES)}") from None
    if scale.is_hub and settings().sizes == "ci":
        return scale.with_overrides(**CI_SIZES)
    return scale
