"""Multiple-choice accuracy (protocol/choice.py): known answers, padding, the harness's scores, the tasks."""

import math

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from kalavai_utils import corpora
from kalavai_utils.analysis.accuracy import loss_gain_carries_over
from kalavai_utils.protocol import choice
from kalavai_utils.protocol.fusion import FusedModel
from kalavai_utils.protocol.models import frozen_prefix_names
from kalavai_utils.protocol.tokenizer import train_tokenizer
from kalavai_utils.scales import get_scale

Item = choice.Item


class Chars:
    """A tokenizer of one token per character (its code point), for hand-computed scores."""

    pad_token_id = 0

    def __call__(self, text, **_):
        return {"input_ids": [ord(c) for c in text]}


class Unigram(torch.nn.Module):
    """The same next-token distribution at every position: log p(token) is `logp[token]`."""

    def __init__(self, logp: dict[str, float]):
        super().__init__()
        logits = torch.full((256,), -30.0)
        for c, v in logp.items():
            logits[ord(c)] = v
        self.logits = torch.nn.Parameter(torch.log_softmax(logits, -1))
        self.config = type("Config", (), {"max_position_embeddings": 64})()

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.logits.expand(*input_ids.shape, 256)})()


def test_known_answer_gives_acc_one_or_zero():
    model = Unigram({"a": 0.0, "b": -3.0, "c": -3.0, "d": -3.0, " ": 0.0})
    right = [Item("x", ("a", "b", "c", "d"), 0), Item("xy", ("c", "b", "a", "d"), 2)]
    wrong = [Item("x", ("a", "b", "c", "d"), 1), Item("xy", ("c", "b", "a", "d"), 0)]
    assert choice.accuracy(right, choice.score_items(model, Chars(), right))["acc"] == 1.0
    assert choice.accuracy(wrong, choice.score_items(model, Chars(), wrong))["acc"] == 0.0
    # the scores are the continuation's log-probabilities, the delimiter's included
    (scores,) = choice.score_items(model, Chars(), [Item("x", ("ab", "c"), 0)])
    lp = model.logits.detach()
    assert scores[0] == pytest.approx((lp[ord(" ")] + lp[ord("a")] + lp[ord("b")]).item())


def test_acc_norm_divides_by_the_choice_length():
    # log p(a) = -1, log p(b) = -1.5 (about): "aa" scores -2, "b" -1.5; per character -1 against -1.5
    logits = {"a": 0.0, "b": -0.5, "z": 0.2}
    model = Unigram(logits)
    items = [Item("z", ("aa", "b"), 0, delimiter="")]
    scores = choice.score_items(model, Chars(), items)
    assert scores[0][0] < scores[0][1] and scores[0][0] / 2 > scores[0][1]
    result = choice.accuracy(items, scores)
    assert (result["acc"], result["acc_norm"]) == (0.0, 1.0)


def test_whitespace_moves_to_the_continuation_as_the_harness_does():
    ctx, cont = choice.encode_pair(Chars(), "Answer: ", "yes")
    assert ctx == [ord(c) for c in "Answer:"] and cont == [ord(c) for c in " yes"]


def test_wilson_interval():
    lo, hi = choice.wilson(37, 50)
    p, n, z = 37 / 50, 50, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert choice.accuracy([Item("x", ("a", "b"), 0)], [[0.0, -1.0]])["acc_lo"] == pytest.approx(choice.wilson(1, 1)[0])


def _items(rng_seed=0):
    g = torch.Generator().manual_seed(rng_seed)
    words = ["alpha", "be", "gamma delta", "e", "zeta eta theta", "iota"]
    items = []
    for k in range(7):
        context = " ".join(words[(k + i) % len(words)] for i in range(1 + int(torch.randint(8, (1,), generator=g))))
        items.append(Item(context, tuple(words[(k + j) % len(words)] for j in range(4)), k % 4))
    return items


def _neox(seed, vocab=256):
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return GPTNeoXForCausalLM(config).eval()


def test_padding_changes_no_score():
    items = _items()
    for model in (_neox(0), _fused(granularity="sequence")):
        one = choice.score_items(model, Chars(), items, batch_size=1)
        many = choice.score_items(model, Chars(), items, batch_size=11)
        assert torch.allclose(torch.tensor(one), torch.tensor(many), atol=1e-5), type(model).__name__


def _fused(granularity):
    specialists = [_neox(1), _neox(1)]
    frozen = set(frozen_prefix_names(specialists[1].state_dict().keys(), 1))
    with torch.no_grad():
        for name, p in specialists[1].named_parameters():
            if name not in frozen:
                p.add_(0.05 * torch.randn_like(p))
    fused = FusedModel.from_specialists(specialists, ["a", "b"], 1)
    fused.use_router("linear", granularity, seed=3)
    return fused.eval()


def test_scores_match_lm_evaluation_harness():
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    texts = [" ".join(f"w{i % 13} v{i % 7}" for i in range(k, k + 40)) for k in range(30)]
    tokenizer = train_tokenizer(texts, 300)
    model = _neox(2, vocab=len(tokenizer))
    items = [Item(f"w{k} v{k} w{k + 1} ", (f"v{k}", f"w{k} v3 w2", "v5 w9", "w12"), 0) for k in range(5)]
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=3, max_length=64, device="cpu")
    requests = [
        Instance("loglikelihood", {}, (item.context, item.delimiter + c), i)
        for i, item in enumerate(items)
        for c in item.choices
    ]
    theirs = [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]
    ours = [ll for row in choice.score_items(model, tokenizer, items, batch_size=4) for ll in row]
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_science_items_deterministic_and_distractors_of_the_same_kind():
    docs = corpora.generate_documents("science", 200, seed=7)
    items = choice.science_items(docs, 50, seed=0)
    assert len(items) == 50 and choice.items_hash(items) == choice.items_hash(choice.science_items(docs, 50, seed=0))
    assert choice.items_hash(items) != choice.items_hash(choice.science_items(docs, 50, seed=1))
    for item in items:
        question = item.context.rsplit("\n", 1)[1]
        assert len(item.choices) == 4 and len(set(item.choices)) == 4
        answer = item.choices[item.answer]
        assert any(doc.endswith(f"{question}\n{answer}") for doc in docs)
        kind = choice.science_kind(question)
        same_kind = {d.rsplit("\n", 1)[1] for d in docs if choice.science_kind(d.rsplit("\n", 2)[1]) == kind}
        assert set(item.choices) <= same_kind


def test_continuation_items_distractors_come_from_other_documents():
    docs = corpora.generate_documents("lang_tonal", 60, seed=7)
    items = choice.continuation_items(docs, "lang_tonal", 40)
    assert len(items) == 40 and choice.items_hash(items) == choice.items_hash(
        choice.continuation_items(docs, "lang_tonal", 40)
    )
    for item in items:
        owner = [d for d in docs if d.startswith(item.context + " ")]
        assert owner and owner[0][len(item.context) + 1 :].startswith(item.choices[item.answer])
        assert sum(owner[0][len(item.context) + 1 :].startswith(c) for c in item.choices) == 1


@pytest.fixture(scope="module")
def smoke_corpus(tmp_path_factory):
    from kalavai_utils.protocol import pipeline

    scale = get_scale("smoke")
    runs = pipeline.run_dir(scale, tmp_path_factory.mktemp("runs"))
    data_dir, _ = pipeline.prepare_corpus(scale, runs, domains=["science", "lang_isolating"])
    return data_dir, pipeline.prepare_tokenizer(scale, runs)


def test_heldout_documents_are_in_the_heldout_split_only(smoke_corpus):
    from kalavai_utils.protocol.data import load_split

    data_dir, tokenizer = smoke_corpus
    for domain in ("science", "lang_isolating"):
        docs = choice.heldout_documents(data_dir, domain, tokenizer)
        text = {s: tokenizer.decode(load_split(data_dir, domain, s).reshape(-1).tolist()) for s in ("train", "heldout")}
        assert docs and all(d in text["heldout"] and d not in text["train"] for d in docs)
    task = choice.offline_task(data_dir, "lang_isolating", tokenizer, n_items=3)
    assert len(task.items) == 3 and task.hash == choice.offline_task(data_dir, "lang_isolating", tokenizer, 3).hash


def test_hub_rows_become_the_harness_items():
    sciq = {
        "question": "Q?",
        "distractor1": "d1",
        "distractor2": "d2",
        "distractor3": "d3",
        "correct_answer": "c",
        "support": "  S.",
    }
    (item,) = choice.sciq_items([sciq])
    assert item.context == "S.\nQuestion: Q?\nAnswer:" and item.choices[item.answer] == "c" and item.delimiter == " "
    row = {
        "flores_passage": "P",
        "question": " Q ",
        "correct_answer_num": "3",
        **{f"mc_answer{k}": f"o{k}" for k in range(1, 5)},
    }
    (item,) = choice.belebele_items([row])
    assert item.context == "P: P\nQ: Q\nA: o1\nB: o2\nC: o3\nD: o4\nAnswer:" and item.choices[item.answer] == "C"
    for name in ("sciq", "belebele_tam_Taml", "belebele_yor_Latn"):
        manifest = choice.load_task_manifest(name)
        assert manifest["format"] in choice.FORMATS


def test_loss_gain_verdict_rule():
    results = {
        "domains": ["x", "y"],
        "specialists": {"x": "spec:x", "y": "spec:y"},
        "losses": {"spec:x": {"x": 1.0, "y": 2.0}, "spec:y": {"x": 2.0, "y": 1.0}, "fused": {"x": 1.0, "y": 1.0}},
    }

    def acc(a, n=400):
        lo, hi = choice.wilson(round(a * n), n)
        return {"acc": a, "acc_lo": lo, "acc_hi": hi, "n": n}

    base = {"base": acc(0.3), "spec:x": acc(0.5), "spec:y": acc(0.4)}
    assert loss_gain_carries_over(results, {**base, "fused": acc(0.7)}, "fused", "t").holds is True
    assert loss_gain_carries_over(results, {**base, "fused": acc(0.5)}, "fused", "t").holds is False
    assert loss_gain_carries_over(results, {**base, "fused": acc(0.52)}, "fused", "t").holds is None
    results["losses"]["fused"] = {"x": 2.0, "y": 2.0}  # no loss gain: nothing to carry over
    assert loss_gain_carries_over(results, {**base, "fused": acc(0.9)}, "fused", "t").holds is None
