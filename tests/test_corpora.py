import ast
import collections
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kalavai_utils import corpora
from kalavai_utils.corpora import (
    DEFAULT_OVERLAP,
    ENGLISH_DOMAINS,
    LANGUAGES,
    corpus_version,
    describe_domain,
    english,
    generate_documents,
    languages,
)
from kalavai_utils.errors import KalavaiError

ALL = ENGLISH_DOMAINS + LANGUAGES
REPO = Path(__file__).resolve().parents[1]


def test_domain_names_come_from_scales():
    from kalavai_utils import scales

    assert corpora.ENGLISH_DOMAINS is scales.ENGLISH_DOMAINS and corpora.LANGUAGES is scales.LANGUAGES
    assert 0.0 <= DEFAULT_OVERLAP <= 1.0


@pytest.mark.parametrize("domain", ALL)
def test_documents_are_deterministic_and_seeded(domain):
    a = generate_documents(domain, 8, seed=3)
    assert a == generate_documents(domain, 8, seed=3)
    assert a != generate_documents(domain, 8, seed=4)
    assert len(set(a)) == 8
    assert all(isinstance(d, str) and d.strip() for d in a)


@pytest.mark.parametrize("domain", ALL)
def test_streams_never_share_documents(domain):
    specialist = set(generate_documents(domain, 200, seed=1, stream="specialist"))
    pretrain = set(generate_documents(domain, 200, seed=1, stream="pretrain"))
    assert not specialist & pretrain


@pytest.mark.parametrize("domain", ALL)
def test_document_lengths(domain):
    lengths = sorted(len(d) for d in generate_documents(domain, 150, seed=0))
    median = lengths[len(lengths) // 2]
    assert 200 <= lengths[0] and lengths[-1] <= 2500, (lengths[0], lengths[-1])
    assert 300 <= median <= 1500


def test_a_longer_list_extends_a_shorter_one():
    # Callers may ask for more documents later without the first ones changing.
    for domain in ("code", "fiction", "lang_tonal"):
        assert generate_documents(domain, 20, seed=5)[:7] == generate_documents(domain, 7, seed=5)


@pytest.mark.slow
def test_same_documents_in_another_process_with_another_hash_seed():
    def digest(docs):
        return hashlib.sha256("\x00".join(docs).encode()).hexdigest()

    here = {d: digest(generate_documents(d, 5, seed=11)) for d in corpora.ALL_DOMAINS}
    code = (
        "import hashlib, json; from kalavai_utils.corpora import generate_documents, ALL_DOMAINS as A; "
        "print(json.dumps({d: hashlib.sha256('\\x00'.join(generate_documents(d, 5, seed=11)).encode()).hexdigest() for d in A}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    import json

    assert json.loads(out.stdout) == here


def test_bad_arguments_raise_kalavai_error():
    with pytest.raises(KalavaiError, match="lang_mutation"):  # the message lists the valid names
        generate_documents("poetry", 3, seed=0)
    with pytest.raises(KalavaiError, match="overlap"):
        generate_documents("law", 3, seed=0, overlap=1.5)
    with pytest.raises(KalavaiError, match="overlap"):
        generate_documents("law", 3, seed=0, overlap=-0.1)
    with pytest.raises(KalavaiError, match="stream"):
        generate_documents("law", 3, seed=0, stream="test")
    with pytest.raises(KalavaiError):
        generate_documents("law", -1, seed=0)
    with pytest.raises(KalavaiError, match="code"):
        describe_domain("Code")
    assert generate_documents("law", 0, seed=0) == []


def test_describe_and_version():
    for d in ALL:
        text = describe_domain(d)
        assert text and "\n" not in text
    v = corpus_version()
    assert (
        v.startswith("corpora-v") and f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}" in v
    )


def test_code_is_real_python_over_200_chars():
    for doc in generate_documents("code", 100, seed=2):
        assert len(doc) > 200
        assert doc.startswith(("def ", "async def "))
        ast.parse(doc)


def test_contributors_code_is_documented_like_codesearchnet_and_the_base_reads_any_function():
    def documented(doc):
        return ast.get_docstring(ast.parse(doc).body[0]) is not None

    assert all(documented(d) for d in generate_documents("code", 300, seed=2, stream="specialist"))
    assert not all(documented(d) for d in generate_documents("code", 300, seed=2, stream="pretrain"))


def test_a_contributors_prose_repeats_its_stock_sentences_more_than_the_pretraining_stream():
    def repeated_share(stream):
        sentences = [
            s
            for doc in generate_documents("fiction", 200, seed=3, stream=stream)
            for s in re.split(r"(?<=[.!?]) ", doc)
            if len(s) > 25
        ]
        counts = collections.Counter(sentences)
        return sum(c for c in counts.values() if c > 1) / len(sentences)

    assert repeated_share("specialist") > repeated_share("pretrain") + 0.05


def test_science_is_support_question_answer():
    for doc in generate_documents("science", 50, seed=2):
        support, question, answer = doc.split("\n")
        assert len(support) > 100 and question.endswith("?") and answer.strip()
        assert not answer.endswith((".", "?"))


def test_fiction_has_dialogue_and_pronouns():
    docs = generate_documents("fiction", 50, seed=2)
    assert sum('"' in d for d in docs) > 25
    text = " ".join(docs)
    assert " she " in text and " he " in text.lower()


def test_sports_goals_add_up_to_the_score_line():
    for doc in generate_documents("sports", 60, seed=2):
        header = doc.split("\n")[0]
        home, away = map(int, re.search(r" (\d+)-(\d+) ", header).groups())
        running = re.findall(r"to make it (\d+)-(\d+)", doc)
        assert len(running) == home + away
        if running:
            assert tuple(map(int, running[-1])) == (home, away)


def test_recipes_use_their_own_ingredients():
    for doc in generate_documents("recipes", 40, seed=2):
        head, method = doc.split("\nMethod:\n")
        listed = [
            re.sub(r"^- \S+ (g|ml|tbsp|tsp|cups|pinch of|handful of) ", "", x)
            for x in head.split("\n")
            if x.startswith("- ")
        ]
        assert 4 <= len(listed) <= 9
        for step in re.findall(r"the ([a-z ]+?) (?:and|in|together)", method):
            if step in english._INGREDIENTS.words:
                assert step in listed


def test_english_agreement():
    assert english._conj("be", "present", "3p") == "are" and english._conj("be", "past", "3s") == "was"
    assert english._conj("carry", "present", "3s") == "carries" and english._conj("watch", "present", "3s") == "watches"
    assert (
        english._conj("break down", "past", "3p") == "broke down" and english._conj("stop", "past", "1s") == "stopped"
    )
    assert english._plural("child") == "children" and english._plural("cell membrane") == "cell membranes"
    assert english._plural("city") == "cities" and english._plural("box") == "boxes"
    assert english._article("hour") == "an" and english._article("unit") == "a" and english._article("apple") == "an"


def _unigrams(docs):
    counts = collections.Counter(w for d in docs for w in re.findall(r"[a-z]+", d.lower()))
    total = sum(counts.values())
    return {w: c / total for w, c in counts.items()}


def _distance(p, q):
    return 0.5 * sum(abs(p.get(w, 0) - q.get(w, 0)) for w in set(p) | set(q))


def test_overlap_controls_how_much_domains_share():
    far = _distance(*(_unigrams(generate_documents(d, 120, seed=0, overlap=0.1)) for d in ("science", "law")))
    near = _distance(*(_unigrams(generate_documents(d, 120, seed=0, overlap=0.9)) for d in ("science", "law")))
    assert far > near + 0.15, (far, near)


def test_languages_and_code_ignore_overlap():
    for d in ("code",) + LANGUAGES:
        assert generate_documents(d, 4, seed=1, overlap=0.0) == generate_documents(d, 4, seed=1, overlap=1.0)


def test_languages_look_like_their_models():
    script = "".join(generate_documents("lang_script", 20, seed=0))
    letters = [c for c in script if c.isalpha() or 0x0B80 <= ord(c) <= 0x0BFF]
    assert sum(0x0B80 <= ord(c) <= 0x0BFF for c in letters) / len(letters) > 0.99  # Tamil block only

    tonal = "".join(generate_documents("lang_tonal", 20, seed=0))
    assert re.search("[áéíóúàèìòù]", tonal) and ("ẹ" in tonal or "ọ" in tonal)
    assert " the " not in tonal and " and " not in tonal

    welsh = " ".join(generate_documents("lang_mutation", 40, seed=0))
    assert " yn " in welsh and (" dau " in welsh or " tri " in welsh)
    # 'fy' (my) causes the nasal mutation, so it is never followed by a radical p/t/c/b/d/g.
    assert not re.search(r"\bfy (p|t|c|b|d|g)(?!h)", welsh)


def test_welsh_mutations():
    m = languages._mutate
    assert m("pen", "soft") == "ben" and m("tad", "nasal") == "nhad" and m("cath", "aspirate") == "chath"
    assert m("llan", "soft") == "lan" and m("rhos", "soft") == "ros" and m("gardd", "soft") == "ardd"
    assert m("llan", "aspirate") == "llan" and m("bara", "aspirate") == "bara" and m("tŷ", None) == "tŷ"
