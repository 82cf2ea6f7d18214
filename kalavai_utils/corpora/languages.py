"""The ten made-up languages: three in the main cooperative, seven more in Phase 2."""

from __future__ import annotations

import random
import unicodedata
from functools import lru_cache

from ..errors import KalavaiError
from .common import DOC_CHARS, _rng, _Words
from .english import _cap, _one_of

# ---------------------------------------------------------------------------------------
# Languages. Content words are drawn once from a fixed seed; affixes and function words are fixed.


def _sounds(name: str, *inventories: str):
    """Language `name`'s lexicon generator, seeded by the name alone (the same lexicon on every
    machine), and its sound inventories as lists; a sound listed twice is drawn twice as often."""
    return (_rng("lexicon", name), *(sounds.split() for sounds in inventories))


def _language_doc(rng: random.Random, title: str, sentence) -> str:
    """The title line, then paragraphs of 2 to 6 sentences until the document is long enough."""
    paragraphs, total, target = [title], 0, rng.randint(*DOC_CHARS)
    while total < target:
        p = " ".join(sentence() for _ in range(rng.randint(2, 6)))
        paragraphs.append(p)
        total += len(p)
    return "\n".join(paragraphs)


class _Ta:
    """lang_script: a Tamil-script abugida. A word is a tuple of (consonant, vowel) syllables;
    vowel '' is a bare consonant (virama), consonant '' an independent vowel."""

    CONS = dict(
        k="க",
        ng="ங",
        c="ச",
        ny="ஞ",
        tt="ட",
        nn="ண",
        t="த",
        n="ந",
        p="ப",
        m="ம",
        y="ய",
        r="ர",
        l="ல",
        v="வ",
        zh="ழ",
        ll="ள",
        rr="ற",
        N="ன",
    )
    VOWEL = dict(a="அ", aa="ஆ", i="இ", ii="ஈ", u="உ", uu="ஊ", e="எ", ee="ஏ", ai="ஐ", o="ஒ", oo="ஓ")
    SIGN = dict(a="", aa="ா", i="ி", ii="ீ", u="ு", uu="ூ", e="ெ", ee="ே", ai="ை", o="ொ", oo="ோ")
    VIRAMA = "்"

    @staticmethod
    def parse(spec: str):
        """'ka.ll' -> (('k','a'), ('ll','')); '-' is an independent vowel: '-ai' -> (('', 'ai'),)."""
        out = []
        for syl in spec.split("."):
            if syl.startswith("-"):
                out.append(("", syl[1:]))
                continue
            for n in (2, 1):
                if syl[:n] in _Ta.CONS:
                    out.append((syl[:n], syl[n:]))
                    break
        return tuple(out)

    @staticmethod
    def join(*parts):
        word = list(parts[0])
        for part in parts[1:]:
            part = list(part)
            if part and part[0][0] == "":
                if word[-1][1] == "":  # consonant meets vowel: they fuse into one letter
                    word[-1] = (word[-1][0], part[0][1])
                    part = part[1:]
                else:  # vowel meets vowel: a glide comes between, y after front vowels
                    part[0] = ("y" if word[-1][1] in ("i", "ii", "e", "ee", "ai") else "v", part[0][1])
            word += part
        return tuple(word)

    @staticmethod
    def render(word) -> str:
        out = []
        for c, v in word:
            if not c:
                out.append(_Ta.VOWEL[v])
            else:
                out.append(_Ta.CONS[c] + (_Ta.SIGN[v] if v else _Ta.VIRAMA))
        return "".join(out)


@lru_cache(maxsize=1)
def _ta_lexicon():
    rng, onsets, vowels, codas = _sounds(
        "lang_script", "k k t t p p m m n v v r l y c tt N", "a a a i i u u aa ai e ee o oo ii uu", "N l r ll m tt nn"
    )

    def root(n_syl: int, closed: bool):
        syls = [
            ("" if i == 0 and rng.random() < 0.25 else rng.choice(onsets), rng.choice(vowels)) for i in range(n_syl)
        ]
        if closed:
            syls.append((rng.choice(codas), ""))
        return tuple(syls)

    nouns = [root(rng.choice((1, 2, 2, 3)), rng.random() < 0.6) for _ in range(400)]
    verbs = [root(rng.choice((1, 1, 2)), rng.random() < 0.4) for _ in range(150)]
    adjs = [root(rng.choice((2, 3)), False) for _ in range(80)]
    return _Words([_Ta.render(x) for x in nouns], s=1.0), nouns, verbs, adjs


_TA_CASE = {
    k: _Ta.parse(v)
    for k, v in dict(acc="-ai", dat="-u.k.ku", loc="-i.l", gen="-i.N", ins="-aa.l", com="-o.ttu").items()
}
_TA_PLURAL = _Ta.parse("ka.ll")
_TA_TENSE = {k: _Ta.parse(v) for k, v in dict(past="n.t", present="ki.rr", future="v").items()}
_TA_PERSON = {
    k: _Ta.parse(v)
    for k, v in {"1s": "-ee.N", "2s": "-aa.y", "3s": "-aa.N", "1p": "-oo.m", "3p": "-aa.r.ka.ll"}.items()
}
_TA_PRONOUNS = {"1s": "நான்", "2s": "நீ", "3s": "அவன்", "1p": "நாம்", "3p": "அவர்கள்"}
_TA_CONNECT = ["ஆனால்", "எனவே", "பின்னர்", "அப்போது", "மேலும்"]


def _lang_script_doc(rng: random.Random) -> str:
    noun_words, nouns, verbs, adjs = _ta_lexicon()
    zipf_n, zipf_v = _Words(list(range(len(nouns))), s=1.0), _Words(list(range(len(verbs))), s=1.0)
    topics = [nouns[zipf_n.pick(rng)] for _ in range(3)]

    def noun():
        return rng.choice(topics) if rng.random() < 0.3 else nouns[zipf_n.pick(rng)]

    def np(case: str | None, plural: bool = False) -> str:
        word = noun()
        if plural:
            word = _Ta.join(word, _TA_PLURAL)
        if case:
            word = _Ta.join(word, _TA_CASE[case])
        out = _Ta.render(word)
        return (_Ta.render(rng.choice(adjs)) + " " + out) if rng.random() < 0.3 else out

    def verb(person: str, tense: str) -> str:
        return _Ta.render(_Ta.join(verbs[zipf_v.pick(rng)], _TA_TENSE[tense], _TA_PERSON[person]))

    def sentence(tense: str) -> str:
        if rng.random() < 0.35:
            person = rng.choice(list(_TA_PRONOUNS))
            subj = _TA_PRONOUNS[person]
        else:
            plural = rng.random() < 0.3
            person, subj = ("3p" if plural else "3s"), np(None, plural)
        middle = _one_of(
            rng,
            [
                lambda: np("acc"),
                lambda: np("loc"),
                lambda: f"{np('dat')} {np('acc')}",
                lambda: f"{np('gen')} {np('com')}",
            ],
        )
        s = f"{subj} {middle} {verb(person, tense)}"
        if rng.random() < 0.15:
            s = f"{rng.choice(_TA_CONNECT)} {s}"
        return s + ("?" if rng.random() < 0.08 else ".")

    tense = rng.choice(("past", "present", "future"))
    return _language_doc(rng, np(None), lambda: sentence(tense))


_YO_HIGH, _YO_LOW = "\u0301", "\u0300"


@lru_cache(maxsize=1)
def _yo_lexicon():
    rng, cons, vowels = _sounds("lang_tonal", "b d f g gb h j k l m n p r s ṣ t w y", "a e ẹ i o ọ u")

    def syl(onset: bool) -> str:
        v = rng.choice(vowels)
        v += rng.choice(("", _YO_HIGH, _YO_LOW))  # mid tone is unmarked
        if rng.random() < 0.12 and v[0] in "aẹiọu":
            v += "n"
        return (rng.choice(cons) if onset else "") + v

    def word(n: int, vowel_initial: bool) -> str:
        return unicodedata.normalize("NFC", syl(not vowel_initial) + "".join(syl(True) for _ in range(n - 1)))

    nouns = _Words([word(rng.choice((2, 2, 3)), True) for _ in range(400)], s=1.0)
    verbs = _Words([word(rng.choice((1, 1, 1, 2)), False) for _ in range(150)], s=1.0)
    adjs = _Words([word(2, False) for _ in range(80)], s=1.0)
    return nouns, verbs, adjs


_YO_SUBJ = ["mo", "o", "ó", "a", "ẹ", "wọ́n"]
_YO_DET = ["náà", "kan", "yìí", "wọ̀nyí", "yẹn"]
_YO_POSS = ["mi", "rẹ̀", "wa", "wọn"]
_YO_ASPECT = ["ń", "ti", "yóò", "máa ń", "kò", ""]
_YO_PREP = ["ní", "sí", "fún", "pẹ̀lú", "láti", "nínú", "lórí"]


def _lang_tonal_doc(rng: random.Random) -> str:
    nouns, verbs, adjs = _yo_lexicon()
    topics = [nouns.pick(rng) for _ in range(3)]

    def np() -> str:
        parts = ["àwọn"] if rng.random() < 0.2 else []
        parts.append(rng.choice(topics) if rng.random() < 0.3 else nouns.pick(rng))
        if rng.random() < 0.3:
            parts.append(adjs.pick(rng))
        if rng.random() < 0.25:
            parts.append(rng.choice(_YO_POSS))
        if rng.random() < 0.5:
            parts.append(rng.choice(_YO_DET))
        return " ".join(parts)

    def clause() -> str:
        subj = rng.choice(_YO_SUBJ) if rng.random() < 0.45 else np()
        aspect = rng.choice(_YO_ASPECT)
        vp = f"{verbs.pick(rng)} {np()}"
        if rng.random() < 0.25:  # serial verbs: "take book come" = bring the book
            vp += " " + verbs.pick(rng)
        if rng.random() < 0.3:
            vp += f" {rng.choice(_YO_PREP)} {np()}"
        return " ".join(x for x in (subj, aspect, vp) if x)

    def sentence() -> str:
        return _cap(
            _one_of(
                rng,
                [
                    lambda: f"{clause()} ṣùgbọ́n {clause()}.",
                    lambda: f"{clause()} nítorí pé {clause()}.",
                    lambda: f"ṣé {clause()}?",
                    lambda: f"{rng.choice(_YO_SUBJ)} sọ pé {clause()}.",
                    lambda: f"{clause()}.",
                    lambda: f"{clause()}.",
                ],
            )
        )

    return _language_doc(rng, _cap(np()), sentence)


_CY_SOFT = {"p": "b", "t": "d", "c": "g", "b": "f", "d": "dd", "g": "", "m": "f", "ll": "l", "rh": "r"}
_CY_NASAL = {"p": "mh", "t": "nh", "c": "ngh", "b": "m", "d": "n", "g": "ng"}
_CY_ASPIRATE = {"p": "ph", "t": "th", "c": "ch"}
_CY_MUTATIONS = {"soft": _CY_SOFT, "nasal": _CY_NASAL, "aspirate": _CY_ASPIRATE}


def _mutate(word: str, kind: str | None) -> str:
    if not kind:
        return word
    table = _CY_MUTATIONS[kind]
    for n in (2, 1):  # 'll' and 'rh' before single letters
        if word[:n] in table and not (n == 1 and word[:2] in ("ll", "rh", "ch", "ph", "th", "dd", "ff", "ng")):
            return table[word[:n]] + word[n:]
    return word


@lru_cache(maxsize=1)
def _cy_lexicon():
    rng, onsets, vowels, codas = _sounds(
        "lang_mutation",
        "p t c b d g m ll rh p t c b d g m f ff h n l r s w th ch cl cr tr br gw gl pr",
        "a e i o u w y a e y ae ai au ei eu oe wy aw ew",
        "n r l d dd th ch f ff s m ng nt rch ll st",
    )

    def word(n: int) -> str:
        return "".join(
            rng.choice(onsets) + rng.choice(vowels) + (rng.choice(codas) if rng.random() < 0.6 else "")
            for _ in range(n)
        )

    nouns = [(word(rng.choice((1, 1, 2, 2, 3))), rng.choice("mf")) for _ in range(400)]  # with gender
    verbnouns = _Words([word(rng.choice((1, 2, 2))) + rng.choice(("u", "io", "o", "i", "")) for _ in range(150)], s=1.0)
    stems = _Words([word(rng.choice((1, 2))) for _ in range(150)], s=1.0)
    adjs = _Words([word(rng.choice((1, 2))) for _ in range(80)], s=1.0)
    return nouns, verbnouns, stems, adjs


# preposition -> the mutation it causes
_CY_PREPS = {
    "i": "soft",
    "o": "soft",
    "ar": "soft",
    "am": "soft",
    "heb": "soft",
    "dan": "soft",
    "gyda": "aspirate",
    "yn": "nasal",
}
_CY_POSS = {
    "fy": "nasal",
    "dy": "soft",
    "ei": "soft",
    "ei ": "aspirate",
    "ein": None,
    "eu": None,
}  # 'ei ' = her, written 'ei'


def _lang_mutation_doc(rng: random.Random) -> str:
    nouns, verbnouns, stems, adjs = _cy_lexicon()
    zipf = _Words(list(range(len(nouns))), s=1.0)
    topics = [nouns[zipf.pick(rng)] for _ in range(3)]

    def np(after: str | None = None) -> str:
        """A noun phrase; `after` is the mutation the preceding word causes."""
        noun, gender = rng.choice(topics) if rng.random() < 0.3 else nouns[zipf.pick(rng)]
        adj = (" " + _mutate(adjs.pick(rng), "soft" if gender == "f" else None)) if rng.random() < 0.3 else ""
        r = rng.random()
        if r < 0.45:  # the article: feminine singular nouns soften after it
            art = "yr" if noun[0] in "aeiouwy" or noun[0] == "h" else "y"
            return (
                f"{art} {_mutate(noun, 'soft' if gender == 'f' and not noun.startswith(('ll', 'rh')) else None)}{adj}"
            )
        if r < 0.7:
            poss = rng.choice(list(_CY_POSS))
            return f"{poss.strip()} {_mutate(noun, _CY_POSS[poss])}{adj}"
        if r < 0.8:
            return f"dau {_mutate(noun, 'soft')}{adj}" if gender == "m" else f"tri {_mutate(noun, 'aspirate')}{adj}"
        return _mutate(noun, after) + adj

    def pp() -> str:
        prep = rng.choice(list(_CY_PREPS))
        return f"{prep} {np(_CY_PREPS[prep])}"

    def sentence() -> str:
        s = _one_of(
            rng,
            [
                lambda: f"mae {np()} yn {verbnouns.pick(rng)} {np()}",
                lambda: f"roedd {np()} yn {_mutate(adjs.pick(rng), 'soft')}",
                lambda: f"bydd {np()} yn {verbnouns.pick(rng)} {pp()}",
                lambda: f"dydy {np()} ddim yn {verbnouns.pick(rng)} {np()}",
                # inflected past: verb-subject-object, and the object softens
                lambda: f"{stems.pick(rng)}{rng.choice(('odd', 'ais', 'on', 'odd'))} {np()} {np('soft')}",
                lambda: f"mae {np()} a {np('aspirate')} yn {verbnouns.pick(rng)} {pp()}",
            ],
        )
        if rng.random() < 0.2:
            s += " " + pp()
        return _cap(s) + ("?" if rng.random() < 0.06 else ".")

    return _language_doc(rng, _cap(np()), sentence)


# ---------------------------------------------------------------------------------------
# Phase 2's seven further languages (the 20-contributor cooperative). Each has its own
# script (a Unicode block none of the others uses), morphology and word order, a lexicon
# drawn once from a fixed seed, and affixes and function words fixed here. They were added
# after the first three without touching any other domain's generator: every document of
# the thirteen earlier domains is byte-identical to before (tests/test_phase2.py).


def _roots(
    name: str, onsets: str, vowels: str, codas: str, n: int, syllables=(1, 2, 2, 3), coda_p: float = 0.4
) -> list[str]:
    """`n` distinct romanized roots for language `name`, drawn from its own fixed seed."""
    rng, ons, vows, cods = _sounds(name, onsets, vowels, codas)
    out: dict[str, None] = {}
    while len(out) < n:
        k = rng.choice(syllables)
        out[
            "".join(
                rng.choice(ons) + rng.choice(vows) + (rng.choice(cods) if rng.random() < coda_p else "")
                for _ in range(k)
            )
        ] = None
    return list(out)


def _transliterate(word: str, table: dict[str, str]) -> str:
    """Greedy longest-match romanization -> script, for alphabets with one letter per sound."""
    out, i = [], 0
    while i < len(word):
        if word[i] == " ":
            out.append(" ")
            i += 1
            continue
        for n in (3, 2, 1):
            if word[i : i + n] in table:
                out.append(table[word[i : i + n]])
                i += n
                break
        else:
            raise KalavaiError(f"no letter for {word[i:]!r}")
    return "".join(out)


_CYR = dict(
    a="а",
    b="б",
    v="в",
    g="г",
    d="д",
    e="е",
    zh="ж",
    z="з",
    i="и",
    k="к",
    l="л",
    m="м",
    n="н",
    o="о",
    p="п",
    r="р",
    s="с",
    t="т",
    u="у",
    f="ф",
    kh="х",
    ts="ц",
    ch="ч",
    sh="ш",
    y="ы",
    ya="я",
    yu="ю",
    j="й",
)


@lru_cache(maxsize=1)
def _fus_lexicon():
    roots = _roots(
        "lang_fusional",
        "b v g d z k l m n p r s t zh kh ts ch sh st pr kr sl dr",
        "a o e i u y",
        "n r l s k t v m",
        300,
    )
    nouns = [(r, ("m", "f", "n")[i % 3]) for i, r in enumerate(roots[:200])]  # gender rides on the root
    verbs = roots[200:270]
    adjs = roots[270:]
    return nouns, verbs, adjs


# case endings by gender: a fusional ending carries case, number and gender at once
_FUS_CASE = {
    "m": dict(nom="", acc="a", gen="a", dat="u", pl="y"),
    "f": dict(nom="a", acc="u", gen="y", dat="e", pl="y"),
    "n": dict(nom="o", acc="o", gen="a", dat="u", pl="a"),
}
_FUS_ADJ = {"m": "yj", "f": "aya", "n": "oe", "pl": "ye"}
_FUS_VERB = {
    "1s": "yu",
    "2s": "esh",
    "3s": "et",
    "1p": "em",
    "3p": "yut",
    "past_m": "l",
    "past_f": "la",
    "past_pl": "li",
}
_FUS_PRON = {"1s": "ya", "2s": "ty", "3s": "on", "1p": "my", "3p": "oni"}
_FUS_PREP = {"v": "dat", "na": "dat", "bez": "gen", "dlya": "gen", "k": "dat", "iz": "gen"}


def _lang_fusional_doc(rng: random.Random) -> str:
    nouns, verbs, adjs = _fus_lexicon()
    zipf = _Words(list(range(len(nouns))), s=1.0)
    topics = [nouns[zipf.pick(rng)] for _ in range(3)]

    def np(case: str) -> tuple[str, str]:
        root, g = rng.choice(topics) if rng.random() < 0.3 else nouns[zipf.pick(rng)]
        plural = rng.random() < 0.25
        word = root + (_FUS_CASE[g]["pl"] if plural else _FUS_CASE[g][case])
        if rng.random() < 0.3:
            word = rng.choice(adjs) + _FUS_ADJ["pl" if plural else g] + " " + word
        return _transliterate(word, _CYR), "pl" if plural else g

    def sentence(past: bool) -> str:
        if rng.random() < 0.3:
            person = rng.choice(list(_FUS_PRON))
            subj, agree = _transliterate(_FUS_PRON[person], _CYR), {"1p": "pl", "3p": "pl"}.get(person, "m")
        else:
            subj, agree = np("nom")
            person = "3p" if agree == "pl" else "3s"
        ending = _FUS_VERB["past_" + ("m" if agree == "n" else agree)] if past else _FUS_VERB[person]
        verb = _transliterate(rng.choice(verbs) + ("a" if past else "") + ending, _CYR)
        rest = np("acc")[0]
        if rng.random() < 0.3:
            prep = rng.choice(list(_FUS_PREP))
            rest += " " + _transliterate(prep, _CYR) + " " + np(_FUS_PREP[prep])[0]
        s = f"{subj} {verb} {rest}"  # SVO, but the endings carry the roles
        return _cap(s) + ("?" if rng.random() < 0.07 else ".")

    past = rng.random() < 0.5
    return _language_doc(rng, _cap(np("nom")[0]), lambda: sentence(past))


_GRK = dict(
    a="α",
    b="β",
    g="γ",
    d="δ",
    e="ε",
    z="ζ",
    ee="η",
    th="θ",
    i="ι",
    k="κ",
    l="λ",
    m="μ",
    n="ν",
    x="ξ",
    o="ο",
    p="π",
    r="ρ",
    s="σ",
    t="τ",
    u="υ",
    f="φ",
    kh="χ",
    ps="ψ",
    oo="ω",
)


@lru_cache(maxsize=1)
def _vso_lexicon():
    roots = _roots("lang_vso", "p t k b d g m n l r s th kh f ps x z", "a e i o u ee oo", "n s r", 260, coda_p=0.2)
    return roots[:160], roots[160:230], roots[230:]


_VSO_ART = {"nom": ("o", "ee", "to"), "acc": ("ton", "teen", "to"), "gen": ("tou", "tees", "tou")}
_VSO_END = {"nom": ("os", "ee", "on"), "acc": ("on", "een", "on"), "gen": ("ou", "ees", "ou")}
_VSO_VERB = {"present": "ei", "past": "ise", "future": "sei"}
_VSO_PARTICLES = ["kai", "alla", "oti", "giati", "tote"]


def _greek_final(word: str) -> str:
    return word[:-1] + "ς" if word.endswith("σ") else word  # word-final sigma, as Greek writes it


def _lang_vso_doc(rng: random.Random) -> str:
    nouns, verbs, adjs = _vso_lexicon()
    zipf = _Words(list(range(len(nouns))), s=1.0)
    topics = [zipf.pick(rng) for _ in range(3)]

    def np(case: str) -> str:
        i = rng.choice(topics) if rng.random() < 0.3 else zipf.pick(rng)
        g = i % 3  # gender rides on the root; the article agrees in gender and case
        words = [_VSO_ART[case][g]]
        if rng.random() < 0.3:
            words.append(rng.choice(adjs) + _VSO_END[case][g])
        words.append(nouns[i] + _VSO_END[case][g])
        return " ".join(_greek_final(_transliterate(w, _GRK)) for w in words)

    def clause(tense: str) -> str:
        verb = _greek_final(_transliterate(rng.choice(verbs) + _VSO_VERB[tense], _GRK))
        s = f"{verb} {np('nom')} {np('acc')}"  # verb first, then subject, then object
        if rng.random() < 0.3:
            s += " " + np("gen")
        return s

    def sentence(tense: str) -> str:
        s = clause(tense)
        if rng.random() < 0.25:
            s += " " + _transliterate(rng.choice(_VSO_PARTICLES), _GRK) + " " + clause(tense)
        return _cap(s) + (";" if rng.random() < 0.07 else ".")  # Greek's question mark is ';'

    tense = rng.choice(list(_VSO_VERB))
    return _language_doc(rng, _cap(np("nom")), lambda: sentence(tense))


class _Dev:
    """lang_postpos: Devanagari, an abugida like Tamil's but a different block and different signs."""

    CONS = dict(
        k="क",
        kh="ख",
        g="ग",
        c="च",
        j="ज",
        t="त",
        d="द",
        n="न",
        p="प",
        b="ब",
        m="म",
        y="य",
        r="र",
        l="ल",
        v="व",
        s="स",
        h="ह",
        sh="श",
    )
    VOWEL = dict(a="अ", aa="आ", i="इ", ii="ई", u="उ", uu="ऊ", e="ए", ai="ऐ", o="ओ", au="औ")
    SIGN = dict(a="", aa="ा", i="ि", ii="ी", u="ु", uu="ू", e="े", ai="ै", o="ो", au="ौ")
    VIRAMA, ANUSVARA = "्", "ं"

    @staticmethod
    def render(syllables) -> str:
        return "".join(
            _Dev.VOWEL[v] if not c else _Dev.CONS[c] + (_Dev.SIGN[v] if v else _Dev.VIRAMA) for c, v in syllables
        )


@lru_cache(maxsize=1)
def _postpos_lexicon():
    rng = _rng("lexicon", "lang_postpos")
    cons, vowels = list(_Dev.CONS), "a a a aa aa i ii u e o ai".split()

    def word(n: int) -> str:
        syl = [("" if i == 0 and rng.random() < 0.15 else rng.choice(cons), rng.choice(vowels)) for i in range(n)]
        return _Dev.render(syl) + (_Dev.ANUSVARA if rng.random() < 0.1 else "")

    return (
        [word(rng.choice((2, 2, 3))) for _ in range(300)],
        [word(rng.choice((1, 2))) for _ in range(100)],
        [word(2) for _ in range(60)],
    )


# postpositions are separate words after the noun; the verb ends the clause with an auxiliary
_PP_POST = ["ने", "को", "में", "से", "पर", "का", "की", "के लिए"]
_PP_AUX = {"present": ["ता है", "ती है", "ते हैं"], "past": ["आ था", "ई थी", "ए थे"], "future": ["एगा", "एगी", "एंगे"]}
_PP_CONNECT = ["और", "लेकिन", "क्योंकि", "फिर"]


def _lang_postpos_doc(rng: random.Random) -> str:
    nouns, verbs, adjs = _postpos_lexicon()
    zn, zv = _Words(nouns, s=1.0), _Words(verbs, s=1.0)
    topics = [zn.pick(rng) for _ in range(3)]

    def np(post: str | None) -> str:
        words = [rng.choice(adjs)] if rng.random() < 0.25 else []
        words.append(rng.choice(topics) if rng.random() < 0.3 else zn.pick(rng))
        if post:
            words.append(post)
        return " ".join(words)

    def clause(tense: str) -> str:
        subj = np("ने" if tense == "past" and rng.random() < 0.5 else None)
        middle = " ".join(np(rng.choice(_PP_POST[1:])) for _ in range(rng.choice((1, 1, 2))))
        aux = rng.choice(_PP_AUX[tense])
        return f"{subj} {middle} {zv.pick(rng)}{aux}"  # subject, object(s), verb: SOV

    def sentence(tense: str) -> str:
        s = clause(tense)
        if rng.random() < 0.2:
            s += f" {rng.choice(_PP_CONNECT)} {clause(tense)}"
        return s + ("?" if rng.random() < 0.07 else " ।")

    tense = rng.choice(list(_PP_AUX))
    return _language_doc(rng, np(None), lambda: sentence(tense))


_ARB_CONS = dict(
    b="ب",
    t="ت",
    th="ث",
    j="ج",
    H="ح",
    kh="خ",
    d="د",
    r="ر",
    z="ز",
    s="س",
    sh="ش",
    S="ص",
    D="ض",
    T="ط",
    E="ع",
    gh="غ",
    f="ف",
    q="ق",
    k="ك",
    l="ل",
    m="م",
    n="ن",
    h="ه",
    w="و",
    y="ي",
)
_ARB_LONG = {"aa": "ا", "uu": "و", "ii": "ي", "a": "", "u": "", "i": ""}  # short vowels are not written


@lru_cache(maxsize=1)
def _root_lexicon():
    rng = _rng("lexicon", "lang_root")
    cons = list(_ARB_CONS)
    roots: dict[tuple, None] = {}
    while len(roots) < 160:
        r = tuple(rng.sample(cons, 3))
        roots[r] = None
    return list(roots)


# root-and-pattern morphology: C1, C2, C3 slot into a pattern; the pattern makes the word's class
_ROOT_PATTERNS = {
    "verb_past": "1a2a3a",
    "verb_pres": "ya12u3u",
    "noun": "1i2aa3",
    "agent": "1aa2i3",
    "place": "ma12a3",
    "abstract": "1u2uu3",
    "plural": "1u2u3",
}
_ROOT_ARTICLE, _ROOT_AND = "ال", "و"
_ROOT_PREPS = ["في", "من", "إلى", "على"]


def _root_word(root: tuple, pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch in "123":
            out.append(_ARB_CONS[root[int(ch) - 1]])
            i += 1
        elif pattern[i : i + 2] in _ARB_LONG:
            out.append(_ARB_LONG[pattern[i : i + 2]])
            i += 2
        elif ch in _ARB_LONG:
            out.append(_ARB_LONG[ch])
            i += 1
        else:
            out.append(_ARB_CONS[ch])
            i += 1
    return "".join(out)


def _lang_root_doc(rng: random.Random) -> str:
    roots = _root_lexicon()
    zipf = _Words(list(range(len(roots))), s=1.0)
    topics = [roots[zipf.pick(rng)] for _ in range(3)]

    def np() -> str:
        root = rng.choice(topics) if rng.random() < 0.3 else roots[zipf.pick(rng)]
        word = _root_word(root, _ROOT_PATTERNS[rng.choice(("noun", "noun", "agent", "place", "abstract", "plural"))])
        return (_ROOT_ARTICLE + word) if rng.random() < 0.5 else word  # the article is written joined

    def sentence(past: bool) -> str:
        verb = _root_word(roots[zipf.pick(rng)], _ROOT_PATTERNS["verb_past" if past else "verb_pres"])
        s = f"{verb} {np()} {np()}"  # verb, subject, object: VSO
        if rng.random() < 0.35:
            s += f" {rng.choice(_ROOT_PREPS)} {np()}"
        if rng.random() < 0.2:
            s = f"{_ROOT_AND} {s}"
        return s + ("؟" if rng.random() < 0.07 else ".")

    past = rng.random() < 0.5
    return _language_doc(rng, np(), lambda: sentence(past))


# Hangul: a syllable block is computed from its three jamo indices (Unicode's composition rule)
_HG_LEAD = "g kk n d tt r m b pp s ss - j jj ch k t p h".split()  # '-' is the silent initial
_HG_VOWEL = "a ae ya yae eo e yeo ye o wa wae oe yo u wo we wi yu eu ui i".split()
_HG_TAIL = [
    "",
    "g",
    "kk",
    "gs",
    "n",
    "nj",
    "nh",
    "d",
    "l",
    "lg",
    "lm",
    "lb",
    "ls",
    "lt",
    "lp",
    "lh",
    "m",
    "b",
    "bs",
    "s",
    "ss",
    "ng",
    "j",
    "ch",
    "k",
    "t",
    "p",
    "h",
]


def _hangul(lead: str, vowel: str, tail: str = "") -> str:
    return chr(0xAC00 + (_HG_LEAD.index(lead) * 21 + _HG_VOWEL.index(vowel)) * 28 + _HG_TAIL.index(tail))


@lru_cache(maxsize=1)
def _particle_lexicon():
    rng = _rng("lexicon", "lang_particle")
    leads, vowels, tails = (
        "g n d r m b s - j ch k t p h".split(),
        "a eo o u eu i ae e yo yu ya".split(),
        ["", "", "", "n", "l", "m", "ng", "g", "b"],
    )

    def word(n: int) -> str:
        return "".join(_hangul(rng.choice(leads), rng.choice(vowels), rng.choice(tails)) for _ in range(n))

    return [word(rng.choice((2, 2, 3))) for _ in range(300)], [word(rng.choice((1, 2))) for _ in range(100)]


# agglutinative: particles glued to the noun mark its role; the verb takes stacked endings
_PT_TOPIC = [_hangul("-", "eu", "n"), _hangul("n", "eu", "n")]  # after a consonant / a vowel, as Korean alternates
_PT_OBJ = [_hangul("-", "eu", "l"), _hangul("r", "eu", "l")]
_PT_LOC = [_hangul("-", "e"), _hangul("-", "e") + _hangul("s", "eo")]
_PT_END = {
    "past": _hangul("-", "eo", "ss") + _hangul("s", "eu", "b") + _hangul("n", "i") + _hangul("d", "a"),
    "present": _hangul("s", "eu", "b") + _hangul("n", "i") + _hangul("d", "a"),
    "plain": _hangul("n", "eu", "n") + _hangul("d", "a"),
}


def _has_tail(block: str) -> bool:
    return (ord(block[-1]) - 0xAC00) % 28 != 0


def _lang_particle_doc(rng: random.Random) -> str:
    nouns, verbs = _particle_lexicon()
    zn, zv = _Words(nouns, s=1.0), _Words(verbs, s=1.0)
    topics = [zn.pick(rng) for _ in range(3)]

    def noun(particles) -> str:
        n = rng.choice(topics) if rng.random() < 0.3 else zn.pick(rng)
        return n + particles[0 if _has_tail(n) else 1]

    def sentence(ending: str) -> str:
        middle = [noun(_PT_OBJ)]
        if rng.random() < 0.4:
            middle.insert(0, noun(_PT_LOC))
        return " ".join([noun(_PT_TOPIC), *middle, zv.pick(rng) + ending]) + (
            "?" if rng.random() < 0.07 else "."
        )  # SOV

    ending = _PT_END[rng.choice(list(_PT_END))]
    return _language_doc(rng, zn.pick(rng), lambda: sentence(ending))


_GEO = dict(
    a="ა",
    b="ბ",
    g="გ",
    d="დ",
    e="ე",
    v="ვ",
    z="ზ",
    t="თ",
    i="ი",
    k="კ",
    l="ლ",
    m="მ",
    n="ნ",
    o="ო",
    p="პ",
    zh="ჟ",
    r="რ",
    s="ს",
    T="ტ",
    u="უ",
    f="ფ",
    q="ქ",
    gh="ღ",
    Q="ყ",
    sh="შ",
    ch="ჩ",
    ts="ც",
    dz="ძ",
    TS="წ",
    CH="ჭ",
    kh="ხ",
    j="ჯ",
    h="ჰ",
)


@lru_cache(maxsize=1)
def _poly_lexicon():
    roots = _roots(
        "lang_polypersonal",
        "b g d v z t k l m n p r s T q gh sh ch ts kh mts br gv tq TS CH",
        "a e i o u",
        "l r n s m",
        260,
        coda_p=0.5,
    )
    return roots[:160], roots[160:230], roots[230:]


# polypersonal verbs: a prefix agrees with the object, a suffix with the subject; the subject
# of a transitive past verb takes the ergative case (-ma), the object the nominative
_POLY_OBJ = {"1s": "m", "2s": "g", "1p": "gv", "3": ""}
_POLY_SUBJ = {"1s": "v", "2s": "", "3s": "s", "1p": "vt", "3p": "en"}
_POLY_PREVERB = ["da", "ga", "mo", "a", "she"]


def _lang_polypersonal_doc(rng: random.Random) -> str:
    nouns, verbs, adjs = _poly_lexicon()
    zipf = _Words(list(range(len(nouns))), s=1.0)
    topics = [nouns[zipf.pick(rng)] for _ in range(3)]

    def noun(case: str) -> str:
        n = rng.choice(topics) if rng.random() < 0.3 else nouns[zipf.pick(rng)]
        word = n + {"nom": "i", "erg": "ma", "dat": "s", "gen": "is", "ins": "it"}[case]
        if rng.random() < 0.25:
            word = rng.choice(adjs) + "i " + word
        return _transliterate(word, _GEO)

    def sentence(past: bool) -> str:
        subj_person = rng.choice(list(_POLY_SUBJ))
        obj_person = rng.choice(list(_POLY_OBJ))
        verb = (
            (rng.choice(_POLY_PREVERB) if past else "")
            + _POLY_OBJ[obj_person]
            + rng.choice(verbs)
            + ("a" if past else "eb")
            + _POLY_SUBJ[subj_person]
        )
        parts = []
        if subj_person.startswith("3"):
            parts.append(noun("erg" if past else "nom"))
        if obj_person == "3":
            parts.append(noun("nom" if past else "dat"))
        if rng.random() < 0.25:
            parts.append(noun(rng.choice(("gen", "ins"))))
        parts.append(_transliterate(verb, _GEO))  # the verb last: SOV
        return " ".join(parts) + ("?" if rng.random() < 0.07 else ".")

    past = rng.random() < 0.5
    return _language_doc(rng, noun("nom"), lambda: sentence(past))


@lru_cache(maxsize=1)
def _isolating_lexicon():
    """Syllables written as CJK ideographs (one per syllable), words of one or two syllables."""
    rng = _rng("lexicon", "lang_isolating")
    chars = [chr(c) for c in rng.sample(range(0x4E00, 0x4E00 + 3000), 700)]
    words = list(
        dict.fromkeys(rng.choice(chars[:400]) + (rng.choice(chars) if rng.random() < 0.6 else "") for _ in range(900))
    )
    return words[:450], words[450:600], words[600:680], chars[400:408]  # nouns, verbs, adjectives, classifiers


_ISO_FUNCTION = dict(de="的", le="了", bu="不", zai="在", ma="吗", he="和", dan="但是", yin="因为")


def _lang_isolating_doc(rng: random.Random) -> str:
    nouns, verbs, adjs, classifiers = _isolating_lexicon()
    zn, zv = _Words(nouns, s=1.0), _Words(verbs, s=1.0)
    topics = [zn.pick(rng) for _ in range(3)]

    def np() -> str:
        n = rng.choice(topics) if rng.random() < 0.3 else zn.pick(rng)
        if rng.random() < 0.25:  # numeral + classifier, chosen by the noun (no inflection anywhere)
            n = rng.choice("一两三几") + classifiers[nouns.index(n) % len(classifiers)] + n
        if rng.random() < 0.25:
            n = rng.choice(adjs) + _ISO_FUNCTION["de"] + n
        return n

    def clause() -> str:
        vp = zv.pick(rng)
        if rng.random() < 0.15:
            vp = _ISO_FUNCTION["bu"] + vp
        where = _ISO_FUNCTION["zai"] + np() if rng.random() < 0.25 else ""
        aspect = _ISO_FUNCTION["le"] if rng.random() < 0.3 else ""
        return f"{np()}{where}{vp}{aspect}{np()}"  # SVO, no spaces between words

    def sentence() -> str:
        r = rng.random()
        if r < 0.15:
            return f"{clause()}{_ISO_FUNCTION['ma']}？"
        if r < 0.3:
            return f"{_ISO_FUNCTION['yin']}{clause()}，{clause()}。"
        if r < 0.4:
            return f"{clause()}，{_ISO_FUNCTION['dan']}{clause()}。"
        return f"{clause()}。"

    return _language_doc(rng, np(), sentence)


# language -> document writer
DOCS = {
    "lang_script": _lang_script_doc,
    "lang_tonal": _lang_tonal_doc,
    "lang_mutation": _lang_mutation_doc,
    "lang_fusional": _lang_fusional_doc,
    "lang_vso": _lang_vso_doc,
    "lang_postpos": _lang_postpos_doc,
    "lang_root": _lang_root_doc,
    "lang_particle": _lang_particle_doc,
    "lang_polypersonal": _lang_polypersonal_doc,
    "lang_isolating": _lang_isolating_doc,
}
