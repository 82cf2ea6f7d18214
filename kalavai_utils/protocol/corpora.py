"""Offline, deterministic text corpora: the `tiny` cooperative's stand-in for the Hub data sets.

No network and no downloaded data: every document is generated here, from a seed.

English-like domains (`ENGLISH_DOMAINS`) share an English-like core: the function words,
a general vocabulary sampled with Zipf-like frequencies, and a small probabilistic grammar
(noun phrases with articles that agree with the next sound, subject-verb agreement, tense
kept per document, subordinate clauses, topic words that recur inside a document). Each
domain adds its own vocabulary, sentence templates and document layout:

    code      real Python: functions of this interpreter's own standard library (> 200 chars;
              a contributor's have a docstring, as CodeSearchNet's do)
    science   SciQ-like: a support paragraph, then a question line, then the answer line
    fiction   narrative prose, named characters with pronouns, dialogue in quotes
    law       contract clauses, numbered sections, "shall", defined terms
    medicine  case notes: complaint, history, vital signs, assessment, plan
    news      dateline, past-tense report, attributed quotes
    recipes   title, ingredient list, numbered method steps that reuse the ingredients
    sports    score line, then a match report whose goals add up to the score
    finance   earnings reports: revenue, margins, percentages, share prices
    travel    guides with sections: getting there, where to stay, what to see

`overlap` (0..1, default 0.5) is how much the English-like domains share. It is the
probability that a prose sentence is built from the shared core templates rather than the
domain's own, and, separately, that a general word slot (noun, verb, adjective, adverb,
topic word) is filled from the shared vocabulary rather than the domain's. At 1.0 the
domains differ only in their layout lines (headers, lists, score lines); at 0.0 they share
little beyond the function words and the grammar. Code (real source text) and the three
languages ignore it.

The languages (`LANGUAGES`) are unlike English and unlike each other; each has its own
lexicon, drawn once from a fixed seed (so it is identical on every machine), and its own
grammar:

    lang_script    a Tamil-script abugida, agglutinative (case and person suffixes with
                   sandhi at morpheme joins), subject-object-verb order
    lang_tonal     Yoruba-like: Latin letters with tone marks and underdots, mostly
                   one-syllable verbs, vowel-initial nouns, aspect particles, SVO
    lang_mutation  Welsh-like: verb-first order, and the first consonant of a word mutates
                   (soft, nasal, aspirate) after particular particles and prepositions

Phase 2 (notebook 06) adds seven languages, each in a script none of the others uses, and
three private English-like domains. None of the ten is in the base's pretraining mixture or
its tokenizer's training text (pipeline.pretrain_documents reads only the scale's domains),
so the BPE tokenizer splits the new scripts into bytes: the weak base of the paper's
low-resource languages. Their generators are versioned apart (`corpus_version(domain)`), and
every earlier domain's documents are byte-identical to before they were added.

    lang_fusional      Cyrillic; Russian-like fusional endings (one ending: case + gender +
                       number), adjectives agreeing, prepositions governing a case, SVO
    lang_vso           Greek letters; verb-subject-object, articles agreeing in gender and
                       case, final sigma, ';' as the question mark
    lang_postpos       Devanagari abugida; Hindi-like SOV, postpositions as separate words,
                       verb + auxiliary at the clause end, '।' ending sentences
    lang_root          Arabic script, unvowelled; triconsonantal roots slotted into vowel
                       patterns (verb, noun, agent, place, plural), joined article, VSO
    lang_particle      Hangul syllable blocks composed by Unicode's rule; Korean-like
                       agglutination: topic/object/locative particles that alternate after a
                       final consonant, stacked verb endings, SOV
    lang_polypersonal  Georgian Mkhedruli; the verb agrees with subject (suffix) and object
                       (prefix), preverbs mark the past, ergative subjects, SOV
    lang_isolating     CJK ideographs, one per syllable; Chinese-like: no inflection at all,
                       numeral + classifier, aspect particle, SVO, no spaces between words
    patents            title, abstract, numbered claims ("comprising", "wherein", "of claim 2")
    abstracts          PubMed-like: BACKGROUND / METHODS / RESULTS / CONCLUSIONS, odds ratios
    regulations        EUR-Lex-like: "Whereas:" recitals, numbered Articles and paragraphs

Why the contributors' data is not simply more of the base's (generator v2): a real base
has seen text like a contributor's, but not the contributor's own data set, which repeats
itself in ways the base never saw (SciQ's stock phrasings, a book's turns of phrase, a set of
repositories' identifiers). So each English-like (domain, stream) has its own pool of
recurring sentences (`STOCK_SENTENCES`, replacing `STOCK_RATE` of the prose sentences; a
sentence with a number keeps its place, so the layouts' invariants hold), and code is split
between streams by module and drawn first from a seeded set of whole modules
(`CODE_REPOSITORY_SHARE`). A specialist then gains on its own domain by learning what is
new in its data, not only by trading the other domains' share of a small model's capacity,
which is what made v1's specialists forget 15-27% elsewhere where Pythia's lose about 4%.

Generator v3 makes the contributors' streams more like one data set each, and leaves the
base's pretraining stream as it was: a contributor's prose repeats its stock sentences more
often (`STOCK_RATE`: 0.5 of prose sentences against the pretraining stream's 0.35), its code
comes from fewer repositories (`CODE_REPOSITORY_SHARE`: a fifth of its modules first,
against two fifths), and, as in CodeSearchNet, which keeps only functions with a docstring,
a contributor's code functions all have one (the pretraining stream takes any function).
With v2, code's specialist could not pass both regime bars of notebook 02 at any learning
rate (divergence at least 8%, forgetting at most 6%: code moved 7.4% while losing 5.0%).
The measurements that led here are in `scales.py`'s account of `tiny`.

Determinism: every document list is a pure function of (domain, n_docs, seed, overlap,
stream, Python version). The random generator is seeded from a SHA-256 of those values,
never from Python's salted `hash()`. `stream` separates the contributors' data
("specialist") from the base model's pretraining mixture ("pretrain"): different random
streams, and for code disjoint halves of the function pool, so the base never sees a
contributor's documents, nor its recurring sentences or modules.
"""
from __future__ import annotations

import ast
import bisect
import hashlib
import itertools
import os
import random
import re
import sys
import sysconfig
import textwrap
import unicodedata
from functools import lru_cache

from ..errors import KalavaiError
from ..scales import ENGLISH_DOMAINS, LANGUAGES

DEFAULT_OVERLAP = 0.5
STREAMS = ("specialist", "pretrain")
DOC_CHARS = (300, 1400)  # target length range of a generated document, in characters
# Per stream: a contributor's code comes from a few repositories, the base's from a broad crawl.
CODE_REPOSITORY_SHARE = {"specialist": 0.2, "pretrain": 0.4}
CODE_CHARS = (200, 1500)  # code keeps functions longer than 200 chars (the paper's filter), short enough for a doc

# Bump when any generator changes: it goes into every data manifest.
_GENERATOR_VERSION = "corpora-v3"
# Phase 2's domains (never in the base's mixture) have their own version: changing them
# must not move the tokenizer, the base or any earlier domain's cache.
_PHASE2_VERSION = "phase2-v2"
PRIVATE_DOMAINS = ("patents", "abstracts", "regulations")
PHASE2_LANGUAGES = ("lang_fusional", "lang_vso", "lang_postpos", "lang_root", "lang_particle", "lang_polypersonal",
                    "lang_isolating")


def corpus_version(domain: str | None = None) -> str:
    """The generator's version; for a Phase 2 domain, with that domain's own version appended."""
    # Code documents come from the standard library's source, which changes with the interpreter.
    v = sys.version_info
    version = f"{_GENERATOR_VERSION}+py{v.major}.{v.minor}.{v.micro}"
    return f"{version}+{_PHASE2_VERSION}" if domain in PRIVATE_DOMAINS + PHASE2_LANGUAGES else version


def _rng(*parts) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class _Words:
    """A word list sampled with Zipf-like weights (the list order is the frequency rank)."""

    def __init__(self, words, s: float = 1.0, sep: str | None = None):
        if isinstance(words, str):
            words = [w.strip() for w in words.split(sep) if w.strip()]
        self.words = list(dict.fromkeys(words))
        self.cum = list(itertools.accumulate(1.0 / (r + 1) ** s for r in range(len(self.words))))

    def pick(self, rng: random.Random) -> str:
        return self.words[bisect.bisect(self.cum, rng.random() * self.cum[-1])]

    def __len__(self):
        return len(self.words)


def _terms(text: str, s: float = 0.8) -> _Words:
    """Multi-word terms, separated by '|'."""
    return _Words(text, s=s, sep="|")


# ---------------------------------------------------------------------------------------
# English morphology: just enough for agreement to be a real, learnable regularity.

_IRREGULAR_VERBS = {
    v.split(":")[0]: tuple(v.split(":")[1:]) for v in """
    be:was:been have:had:had do:did:done go:went:gone make:made:made take:took:taken see:saw:seen
    give:gave:given find:found:found know:knew:known think:thought:thought tell:told:told
    become:became:become leave:left:left feel:felt:felt bring:brought:brought begin:began:begun
    keep:kept:kept hold:held:held write:wrote:written stand:stood:stood hear:heard:heard
    let:let:let mean:meant:meant set:set:set meet:met:met run:ran:run pay:paid:paid sit:sat:sat
    speak:spoke:spoken lead:led:led read:read:read grow:grew:grown lose:lost:lost fall:fell:fallen
    send:sent:sent build:built:built understand:understood:understood draw:drew:drawn
    break:broke:broken spend:spent:spent cut:cut:cut rise:rose:risen drive:drove:driven
    buy:bought:bought wear:wore:worn choose:chose:chosen seek:sought:sought throw:threw:thrown
    catch:caught:caught win:won:won sell:sold:sold teach:taught:taught eat:ate:eaten
    forget:forgot:forgotten hide:hid:hidden ride:rode:ridden shake:shook:shaken sleep:slept:slept
    strike:struck:struck wake:woke:woken freeze:froze:frozen feed:fed:fed dig:dug:dug
    fly:flew:flown hang:hung:hung hit:hit:hit put:put:put shut:shut:shut spread:spread:spread
    light:lit:lit bind:bound:bound lie:lay:lain say:said:said get:got:got come:came:come
    bear:bore:borne beat:beat:beaten bend:bent:bent swing:swung:swung sweep:swept:swept
    tear:tore:torn fight:fought:fought undertake:undertook:undertaken withdraw:withdrew:withdrawn
    """.split()
}
_DOUBLE_FINAL = set("stop plan drop ship admit commit prefer refer control occur permit submit transfer fit grab step stir "
                    "chat nod rub scan trim chop whip slip grip tap hug jog skip wrap dip clap nap pat rob sip".split())
_IRREGULAR_PLURALS = dict(p.split(":") for p in """
    man:men woman:women child:children person:people foot:feet tooth:teeth mouse:mice leaf:leaves
    knife:knives life:lives wife:wives half:halves shelf:shelves thief:thieves loaf:loaves
    sheep:sheep fish:fish series:series species:species analysis:analyses nucleus:nuclei
    bacterium:bacteria criterion:criteria phenomenon:phenomena potato:potatoes tomato:tomatoes
    hero:heroes premises:premises goods:goods news:news crisis:crises basis:bases thesis:theses""".split())


def _plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        p = _IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        p = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


def _verb_forms(verb: str, form: str) -> str:
    """form: 's' (3rd singular), 'ed' (past), 'en' (participle), 'ing'."""
    head, sep, rest = verb.partition(" ")
    if form == "s":
        if head == "be":
            out = "is"
        elif head == "have":
            out = "has"
        elif head.endswith(("s", "x", "z", "ch", "sh", "o")):
            out = head + "es"
        elif head.endswith("y") and head[-2:-1] not in "aeiou":
            out = head[:-1] + "ies"
        else:
            out = head + "s"
    elif form in ("ed", "en") and head in _IRREGULAR_VERBS:
        out = _IRREGULAR_VERBS[head][0 if form == "ed" else 1]
    elif form in ("ed", "en"):
        if head.endswith("e"):
            out = head + "d"
        elif head.endswith("y") and head[-2:-1] not in "aeiou":
            out = head[:-1] + "ied"
        elif head in _DOUBLE_FINAL:
            out = head + head[-1] + "ed"
        else:
            out = head + "ed"
    else:  # ing
        if head.endswith("ie"):
            out = head[:-2] + "ying"
        elif head.endswith("e") and head not in ("be", "see", "agree", "free") and not head.endswith("ee"):
            out = head[:-1] + "ing"
        elif head in _DOUBLE_FINAL or head in ("run", "sit", "get", "put", "cut", "hit", "win", "swim", "begin", "dig", "set"):
            out = head + head[-1] + "ing"
        else:
            out = head + "ing"
    return out + sep + rest


def _conj(verb: str, tense: str, person: str) -> str:
    """Finite verb agreeing with its subject; person is one of 1s 2s 3s 1p 2p 3p."""
    head, sep, rest = verb.partition(" ")
    if head == "be":
        if tense == "past":
            out = "was" if person in ("1s", "3s") else "were"
        else:
            out = {"1s": "am", "3s": "is"}.get(person, "are")
        return out + sep + rest
    if tense == "past":
        return _verb_forms(verb, "ed")
    return _verb_forms(verb, "s") if person == "3s" else verb


def _article(word: str) -> str:
    w = word.lower()
    vowel = w[:1] in "aeio" or (w[:1] == "u" and not w.startswith(("uni", "use", "usu", "ut"))) or w.startswith(("hour", "honest", "heir"))
    return "an" if vowel else "a"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


_ROMAN = [(10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def _roman(n: int) -> str:
    out = ""
    for value, letters in _ROMAN:
        while n >= value:
            out, n = out + letters, n - value
    return out


_NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
_MONTHS = "January February March April May June July August September October November December".split()
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

# ---------------------------------------------------------------------------------------
# The shared English-like core.


class _Lexicon:
    def __init__(self, nouns="", verbs="", verbs_i="", adjs="", advs=""):
        self.noun = _Words(nouns, s=0.9)
        self.verb = _Words(verbs, s=0.9)  # transitive
        self.verb_i = _Words(verbs_i, s=0.9)  # intransitive
        self.adj = _Words(adjs, s=0.9)
        self.adv = _Words(advs, s=0.9, sep="|" if "|" in advs else None)  # '|' allows multi-word adverbials


CORE = _Lexicon(
    nouns="""time person year way day thing man woman child world life hand part place case week group problem
    fact question idea system result number point home water room area money story night word side kind head
    house friend power hour game line end member city community name team minute reason body door level office
    decision change morning moment plan letter paper road street country family price market answer picture voice
    table book window village field river garden student teacher worker leader parent island mountain season
    record image list method practice project purpose quality region response role rule sense source stage
    standard structure subject task type value view weight pattern memory material model message machine mind
    detail distance event example experience feature future goal ground history journey job interest evening
    building car boat phone computer box bag bottle chair wall floor corner hill lake sea tree flower animal dog
    bird horse bread coffee dinner lunch meeting visit conversation choice chance effort opinion attention
    agreement difficulty success failure condition situation position direction surface shape colour sound light""",
    verbs="""make take see find give use tell keep hold bring show follow build change open carry read write
    hear meet need want like help offer watch leave lose pay move start reach describe consider expect explain
    include produce provide receive remember share study support test visit check choose collect create enjoy
    mark notice order prepare protect replace report return save send serve answer ask call close compare cover
    discuss enter fill finish join learn manage miss pass pick prefer push raise recognise remove repeat review
    sell solve suggest teach throw touch understand win accept allow avoid clean count design develop imagine
    improve increase introduce keep mention organise record reduce""",
    verbs_i="""arrive begin continue fall grow happen laugh live remain rise sleep stay stop wait walk work appear
    improve return travel disappear agree listen move change succeed fail matter smile speak run sit stand""",
    adjs="""new good old great high small large long little young important different early public bad same able
    late hard major better strong possible whole free true clear full simple certain recent common special
    local general available similar private real best right social open short serious ready easy difficult
    natural main final particular current wide low poor happy quick careful busy quiet bright dark heavy light
    warm cold fresh rich dry wet empty deep strange useful famous beautiful pleasant obvious usual rare""",
    advs="""quickly slowly often rarely carefully suddenly usually quietly clearly nearly simply finally easily
    recently gently probably already together again soon later still also certainly almost really""",
)
_FIRST_NAMES = {  # name -> pronoun (he/she), for agreement in narratives
    **dict.fromkeys("Anna Clara Elena Grace Iris Karen Maria Olivia Rosa Vera Lucy Helen Sarah Nora Emma Ruth Alice Jane Mary Laura".split(), "she"),
    **dict.fromkeys("Ben David Frank Henry Jack Leo Noah Paul Sam Tom Will Peter Hugh Adam Thomas Oliver Edward James Robert Simon".split(), "he"),
}
_NAMES = _Words(list(_FIRST_NAMES), s=0.5)
_SURNAMES = _Words("Smith Walker Hughes Patel Murray Clarke Evans Turner Moore Harris Baker Wood Hall Green Lewis "
                   "Young King Wright Hill Cooper Ward Morgan Price Bell Carter Reed Fisher Shaw Grant Lowe", s=0.5)
_PLACES = _Words("Ashford Bramley Carrow Dunmore Eastwick Fairhaven Glenrock Harlow Kingsbridge Lowden Marston "
                 "Northam Oakridge Penrose Redfield Stanmore Thornbury Westmere Aldgate Brinton Caldwell Dorvale", s=0.6)
_PREPS = _Words("in on near under behind across through with without during after before beside around over towards into", s=0.8)
_SUBORDINATORS = _Words("when because although if after before while since until", s=0.7)
_CONJUNCTIONS = _Words("and but so yet", s=0.8)
_OPENERS = _terms("However|In fact|Later|Meanwhile|For example|In general|At first|Of course|As a result|"
                  "In the end|Afterwards|On the other hand|Sometimes|Usually|Even so|By then|At the same time")
_MODALS = _Words("can will should must may could would might", s=0.8)
_SAY = _Words("say think believe notice find explain know suggest feel", s=0.8)
_PERSONS = [("I", "1s"), ("you", "2s"), ("he", "3s"), ("she", "3s"), ("it", "3s"), ("we", "1p"), ("they", "3p")]


class _Writer:
    """Writes one document: holds its random stream, domain, overlap, tense and topic words."""

    def __init__(self, rng: random.Random, lex: _Lexicon | None, overlap: float, tense: str = "present"):
        self.rng, self.lex, self.overlap, self.tense = rng, lex or CORE, overlap, tense
        # A few nouns recur through a document, as topics do in real text.
        self.topics = [self.word("noun", topical=False) for _ in range(3)]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def word(self, kind: str, topical: bool = True) -> str:
        if kind == "noun" and topical and self.chance(0.25):
            return self.rng.choice(self.topics)
        source = CORE if self.chance(self.overlap) or not len(getattr(self.lex, kind)) else self.lex
        return getattr(source, kind).pick(self.rng)

    def dom(self, kind: str) -> str:
        return getattr(self.lex, kind).pick(self.rng)

    def target_length(self, lo: int = DOC_CHARS[0], hi: int = DOC_CHARS[1]) -> int:
        return self.rng.randint(lo, hi)

    # --- phrases -------------------------------------------------------------------
    def np(self, plural: bool | None = None, noun: str | None = None, adj_p: float = 0.35, pp_p: float = 0.12, det: str | None = None):
        """A noun phrase and its person ('3s' or '3p')."""
        plural = self.chance(0.3) if plural is None else plural
        noun = noun or self.word("noun")
        words = [self.word("adj")] if self.chance(adj_p) else []
        words.append(_plural(noun) if plural else noun)
        if det is None:
            if plural:
                det = self.rng.choice(("the", "the", "these", "those", "some", "many", "all the", "few", ""))
            else:
                det = self.rng.choice(("the", "the", "the", "a", "a", "this", "that", "every", "each", "her", "his", "our"))
        if det == "a":
            det = _article(words[0])
        phrase = " ".join([det] + words if det else words)
        if self.chance(pp_p):
            phrase += " " + self.pp(pp_p=0.0)
        return phrase, "3p" if plural else "3s"

    def pp(self, pp_p: float = 0.0) -> str:
        return f"{_PREPS.pick(self.rng)} {self.np(pp_p=pp_p, adj_p=0.2)[0]}"

    def subject(self):
        r = self.rng.random()
        if r < 0.2:
            return self.rng.choice(_PERSONS)
        if r < 0.3:
            return _NAMES.pick(self.rng), "3s"
        return self.np()

    def clause(self, tense: str | None = None) -> str:
        """Subject + verb phrase, agreeing in person and tense."""
        tense = tense or self.tense
        subj, person = self.subject()
        r = self.rng.random()
        if r < 0.42:
            vp = f"{_conj(self.word('verb'), tense, person)} {self.np()[0]}"
        elif r < 0.55:
            vp = f"{_conj(self.word('verb_i'), tense, person)}"
            if self.chance(0.5):
                vp += " " + self.word("adv")
        elif r < 0.7:
            vp = f"{_conj('be', tense, person)} {self.word('adj')}"
        elif r < 0.82:
            neg = " not" if self.chance(0.2) else ""
            vp = f"{_MODALS.pick(self.rng)}{neg} {self.word('verb')} {self.np()[0]}"
        elif r < 0.9:
            vp = f"{_conj('be', tense, person)} {_verb_forms(self.word('verb'), 'en')} by {self.np()[0]}"
        else:
            vp = f"{_conj(_SAY.pick(self.rng), tense, person)} that {self.clause(tense)}"
        if self.chance(0.2):
            vp += " " + self.pp()
        return f"{subj} {vp}"

    def core_sentence(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            s = self.clause()
        elif r < 0.6:
            s = f"{_SUBORDINATORS.pick(self.rng)} {self.clause()}, {self.clause()}"
        elif r < 0.72:
            s = f"{self.clause()} {_CONJUNCTIONS.pick(self.rng)} {self.clause()}"
        elif r < 0.84:
            s = f"{_OPENERS.pick(self.rng)}, {self.clause()}"
        elif r < 0.92:
            phrase, person = self.np(pp_p=0.0)
            there = _conj("be", self.tense, person)
            s = f"there {there} {phrase} {self.pp()}"
        else:
            noun, person = self.np(pp_p=0.0)
            s = f"{noun} that {_conj(self.word('verb'), self.tense, person)} {self.np()[0]} {_conj('be', self.tense, person)} {self.word('adj')}"
        return _cap(s) + "."

    def sentence(self, templates) -> str:
        """A prose sentence: from the shared core with probability `overlap`, else the domain's own."""
        if self.chance(self.overlap) or not templates:
            return self.core_sentence()
        return self.rng.choice(templates)(self)

    def paragraph(self, templates, n_chars: int) -> str:
        out = []
        while sum(len(s) + 1 for s in out) < n_chars:
            out.append(self.sentence(templates))
        return " ".join(out)


def _name(w: _Writer) -> str:
    return f"{_NAMES.pick(w.rng)} {_SURNAMES.pick(w.rng)}"


def _one_of(rng: random.Random, templates: list, shared=None):
    """Calls one of `templates`, chosen uniformly: only that one draws its words. With `shared`
    (law's clause reference, a sports play's team), that is drawn after the choice, whichever
    template is chosen, and passed to it."""
    k = rng.randrange(len(templates))
    return templates[k](shared()) if shared else templates[k]()


def _templates(rng: random.Random, templates: list, shared=None):
    """A sentence maker for `_Writer.sentence`/`paragraph`: each call fills one of `templates`
    (see `_one_of`). The templates use the document's own writer, the one the maker is called with."""
    return lambda w: _one_of(rng, templates, shared)


# ---------------------------------------------------------------------------------------
# English-like domains. Each has a lexicon, prose templates and a document layout.

_SCIENCE = _Lexicon(
    nouns="""cell molecule atom electron organism plant energy compound element protein enzyme gene tissue organ
    planet star wave particle nucleus ion rock mineral crystal cloud fossil species bacterium virus root leaf
    seed soil layer gas liquid solid metal acid salt sugar glucose oxygen carbon nitrogen hydrogen water vapour
    membrane chromosome muscle blood vessel body heat light sound current magnet field orbit ecosystem population""",
    verbs="""absorb release convert produce transfer contain form store carry reflect emit dissolve heat cool attract
    repel divide transport digest generate conduct reduce increase break down bind""",
    verbs_i="evaporate condense expand contract decay vibrate melt freeze grow divide react",
    adjs="""chemical physical organic solar thermal kinetic potential electric magnetic genetic cellular molecular
    atmospheric dense acidic neutral positive negative single complex living nuclear liquid solid renewable""",
    advs="rapidly slowly naturally chemically directly efficiently constantly",
)
_SCI_QUANTITIES = _Words("temperature mass volume pressure density speed energy concentration charge frequency "
                         "wavelength force weight acceleration velocity", s=0.7)
_SCI_UNITS = _terms("degrees Celsius|grams|kilograms|meters|liters|pascals|joules|newtons|volts|hertz|watts|moles", s=0.6)
_SCI_CONCEPTS = _Words("""photosynthesis respiration evaporation condensation osmosis diffusion erosion mitosis meiosis
    fermentation oxidation combustion pollination digestion convection radiation conduction precipitation
    weathering sedimentation fusion fission adaptation metabolism""", s=0.6)
_SCI_TERMS = _Words("""producers consumers decomposers mesophiles isotopes catalysts vertebrates mammals reptiles
    insulators conductors enzymes ions alloys predators herbivores carnivores minerals fossils hormones
    chromosomes metals polymers invertebrates amphibians""", s=0.6)
_SCIENTISTS = _Words("Dalton Mendel Curie Darwin Faraday Newton Kepler Hooke Pasteur Lavoisier Bohr Rutherford Maxwell Volta", s=0.5)


def _sci_np(w: _Writer, plural: bool | None = None) -> str:
    return w.np(plural=plural, pp_p=0.05, det="the" if plural is False else None)[0]


def _science_facts(w: _Writer, concept: str):
    """One support sentence and, for most, the question and answer it supports (SciQ style)."""
    rng = w.rng
    k = rng.randrange(9)
    v = w.word("verb")
    if k == 0:
        a, b = _sci_np(w, True), _sci_np(w)
        return f"{_cap(concept)} is the process by which {a} {v} {b}.", (f"What is the process by which {a} {v} {b}?", concept)
    if k == 1:
        a, b, term = _sci_np(w, True), _sci_np(w), _SCI_TERMS.pick(rng)
        return f"{_cap(a)} that {v} {b} are called {term}.", (f"What are {a} that {v} {b} called?", term)
    if k == 2:
        q1, q2, a = _SCI_QUANTITIES.pick(rng), _SCI_QUANTITIES.pick(rng), _sci_np(w, False)
        return f"The {q1} of {a} depends on its {q2}.", (f"The {q1} of {a} depends on what?", f"its {q2}")
    if k == 3:
        q, unit = _SCI_QUANTITIES.pick(rng), _SCI_UNITS.pick(rng)
        return f"{_cap(q)} is measured in {unit}.", (f"What unit is used to measure {q}?", unit)
    if k == 4:
        q, a, noun = _SCI_QUANTITIES.pick(rng), _sci_np(w, False), _plural(w.word("noun"))
        return (f"An increase in {q} causes {a} to {v} more {noun}.",
                (f"What causes {a} to {v} more {noun}?", f"an increase in {q}"))
    if k == 5:
        term, a, b = _SCI_TERMS.pick(rng), _sci_np(w, True), _sci_np(w, True)
        return f"{_cap(term)} are found in {a} and {b}.", (f"Where are {term} found?", f"in {a} and {b}")
    if k == 6:
        who, year = _SCIENTISTS.pick(rng), rng.randint(1650, 1950)
        return f"{_cap(concept)} was first described by {who} in {year}.", (f"Who first described {concept}?", who)
    if k == 7:
        noun, parts = w.word("noun"), _plural(w.word("noun"))
        n = rng.choice((2, 3, 4, 6, 8, 12, 23, 46))
        return f"Each {noun} contains {n} {parts}.", (f"How many {parts} does each {noun} contain?", str(n))
    a, person = w.np()
    return f"For example, {a} {_conj(v, 'present', person)} {_sci_np(w)} during {concept}.", None


def _science_doc(w: _Writer) -> str:
    concept = _SCI_CONCEPTS.pick(w.rng)
    target = w.target_length(200, 1100)
    support, qa = [], []
    while sum(len(s) + 1 for s in support) < target:
        if w.chance(w.overlap):
            support.append(w.core_sentence())
        else:
            sentence, pair = _science_facts(w, concept)
            support.append(sentence)
            if pair:
                qa.append(pair)
    if not qa:
        sentence, pair = _science_facts(w, concept)
        while pair is None:
            sentence, pair = _science_facts(w, concept)
        support.append(sentence)
        qa.append(pair)
    question, answer = w.rng.choice(qa)
    return " ".join(support) + "\n" + question + "\n" + answer


_FICTION = _Lexicon(
    nouns="""door window lantern candle road path hill forest river cottage letter voice face stair hall garden gate
    fire shadow silence stranger horse cart coat hat ring key box kitchen moon sky rain wind snow church bell inn
    parlour carriage servant master lady gentleman captain mistress cloak sword chest corridor orchard meadow
    bridge tower ship harbour storm fireplace portrait mirror secret promise""",
    verbs="""open close lift watch follow touch find lose hide notice grasp push pull light drop seize fold study
    fetch draw wrap kiss greet remember forgive""",
    verbs_i="tremble wander hesitate sigh wait linger shiver nod kneel weep vanish return",
    adjs="""dark quiet old pale cold silver narrow heavy soft bright empty strange warm distant faint wooden broken
    grey gentle bitter tall thin lonely ancient crimson restless solemn""",
    advs="softly|slowly|suddenly|quietly|bitterly|gently|at last|once more",
)
_SAID = _Words("said asked whispered replied cried murmured answered called shouted", s=0.9)
_BODY = _Words("hand arm shoulder head face hair eyes lips", s=0.7)


def _possessive(pronoun: str) -> str:
    return {"he": "his", "she": "her"}[pronoun]


def _utterance(w: _Writer) -> tuple[str, str]:
    rng = w.rng
    return _one_of(rng, [
        lambda: (f"Where is the {w.word('noun')}", "?"),
        lambda: (f"I {_conj(w.word('verb'), 'past', '1s')} the {w.word('noun')} {rng.choice(('last night', 'this morning', 'yesterday', 'long ago'))}", "."),
        lambda: (f"We must {w.word('verb')} the {w.word('noun')} before {rng.choice(('dark', 'morning', 'it is too late', 'they come'))}", "."),
        lambda: (f"Do you {w.word('verb')} the {w.word('noun')}", "?"),
        lambda: (f"It is too {w.word('adj')} to {w.word('verb')} the {w.word('noun')} now", "."),
        lambda: ("You never told me about the " + w.word("noun"), "."),
        lambda: (_cap(w.clause("present")), "."),
    ])


def _fiction_doc(w: _Writer) -> str:
    rng = w.rng
    cast = rng.sample(list(_FIRST_NAMES), rng.randint(2, 3))

    def narrative(w: _Writer) -> str:
        name = rng.choice(cast)
        pron = _FIRST_NAMES[name]
        return _one_of(rng, [
            lambda: f"{name} {_conj(w.word('verb'), 'past', '3s')} the {w.word('adj')} {w.word('noun')} {w.pp()}.",
            lambda: f"{_cap(pron)} {_conj(w.word('verb_i'), 'past', '3s')} {w.word('adv')} and {_conj(w.word('verb'), 'past', '3s')} {w.np()[0]}.",
            lambda: f"{name} looked at {rng.choice([c for c in cast if c != name])} for a long moment, and {pron} {_conj(w.word('verb_i'), 'past', '3s')}.",
            lambda: f"The {w.word('noun')} was {w.word('adj')}, and {name} could hear the {w.word('noun')} {w.pp()}.",
            lambda: f"{_cap(_possessive(pron))} {_BODY.pick(rng)} rested on the {w.word('adj')} {w.word('noun')}.",
        ])

    def dialogue(w: _Writer) -> str:
        name = rng.choice(cast)
        text, end = _utterance(w)
        verb = "asked" if end == "?" else _SAID.pick(rng)
        if end == "." and rng.random() < 0.5:
            return f'"{text}," {verb} {name}, {_verb_forms(w.word("verb"), "ing")} {_possessive(_FIRST_NAMES[name])} {_BODY.pick(rng)}.'
        return f'"{text}{end if end == "?" else ","}" {verb} {name}.'

    paragraphs, total, target = [], 0, w.target_length()
    if rng.random() < 0.3:
        paragraphs.append(f"CHAPTER {_roman(rng.randint(1, 30))}\n")
    while total < target:
        p = dialogue(w) if rng.random() < 0.35 else w.paragraph([narrative, narrative, narrative], rng.randint(120, 400))
        paragraphs.append(p)
        total += len(p) + 1
    return "\n".join(paragraphs)


_LAW = _Lexicon(
    nouns="""agreement party obligation liability breach notice term payment fee claim dispute provision warranty
    indemnity termination property premises goods services invoice consent right remedy default schedule clause
    period date sum deposit rent licence contract document information loss cost expense insurance""",
    verbs="""terminate deliver pay indemnify provide maintain perform assign disclose remedy notify procure repair
    insure renew waive comply with reimburse withhold suspend""",
    verbs_i="expire lapse commence continue survive",
    adjs="""reasonable material written applicable prior relevant confidential due lawful exclusive additional
    outstanding annual such proper statutory third-party""",
    advs="promptly forthwith reasonably jointly severally",
)
_ROLES = [("TENANCY", "Landlord", "Tenant"), ("SUPPLY", "Supplier", "Customer"), ("LICENCE", "Licensor", "Licensee"),
          ("EMPLOYMENT", "Employer", "Employee"), ("SALE", "Seller", "Buyer"), ("SERVICES", "Contractor", "Client"),
          ("LOAN", "Lender", "Borrower")]
_LAW_HEADINGS = _Words("Definitions|Payment|Term and Termination|Obligations|Liability|Confidentiality|Insurance|"
                       "Notices|Assignment|Governing Law|Warranties|Force Majeure|Dispute Resolution", s=0.4, sep="|")


def _law_doc(w: _Writer) -> str:
    rng = w.rng
    kind, a, b = rng.choice(_ROLES)
    n_sections = 0

    def clause(w: _Writer) -> str:
        who, other = rng.choice(((a, b), (b, a)))

        def deadline(ref: str) -> str:
            n = rng.choice((5, 7, 10, 14, 21, 28, 30, 60, 90))
            return f"The {who} shall {w.word('verb')} {w.np()[0]} within {_NUMBER_WORDS[n] if n <= 12 else n} ({n}) days of {w.np()[0]}."

        return _one_of(rng, [
            deadline,
            lambda ref: f"Notwithstanding clause {ref}, the {who} may {w.word('verb')} {w.np()[0]} by written notice to the {other}.",
            lambda ref: f'In this Agreement, "{_cap(w.dom("noun"))}" means {w.np()[0]} that the {who} {_conj(w.word("verb"), "present", "3s")} under clause {ref}.',
            lambda ref: f"The {who} shall not be liable for any {w.dom('noun')} arising out of or in connection with {w.np()[0]}.",
            lambda ref: f"Subject to clause {ref}, the {who} shall {w.word('verb')} {w.np()[0]} in accordance with {w.np()[0]}.",
            lambda ref: f"Any {w.dom('noun')} shall be {_verb_forms(w.word('verb'), 'en')} pursuant to section {rng.randint(1, 120)} of the {rng.choice(_PLACES.words)} Act {rng.randint(1950, 2020)}.",
            lambda ref: f"The {who} shall {w.word('adv')} {w.word('verb')} the {other} of {w.np()[0]}.",
        ], shared=lambda: f"{rng.randint(1, max(1, n_sections))}.{rng.randint(1, 4)}")

    day, month, year = rng.randint(1, 28), rng.choice(_MONTHS), rng.randint(1990, 2024)
    lines = [f"{kind} AGREEMENT", f'This Agreement is made on {day} {month} {year} between {_name(w)} (the "{a}") and {_name(w)} (the "{b}").']
    target = w.target_length()
    while sum(len(x) + 1 for x in lines) < target:
        n_sections += 1
        lines.append(f"{n_sections}. {_LAW_HEADINGS.pick(rng).upper()}")
        for m in range(1, rng.randint(2, 4)):
            lines.append(f"{n_sections}.{m} {w.sentence([clause, clause])}")
    return "\n".join(lines)


_MEDICINE = _Lexicon(
    nouns="""patient symptom examination test dose history medication result scan blood heart lung abdomen chest
    ward clinic nurse referral infection treatment review pain fever cough rash wound swelling tenderness
    antibiotic fluid tablet injection pulse sample culture x-ray""",
    verbs="""report deny prescribe start stop increase monitor review refer admit discharge examine order reduce
    treat continue withhold arrange repeat""",
    verbs_i="improve deteriorate recover settle worsen respond",
    adjs="""acute chronic mild severe stable normal abnormal tender clear regular elevated intermittent persistent
    bilateral systolic oral intravenous routine""",
    advs="twice daily|once daily|overnight|orally|promptly",
)
_SYMPTOMS = _terms("chest pain|shortness of breath|fever|cough|headache|nausea|abdominal pain|dizziness|fatigue|"
                   "back pain|rash|vomiting|palpitations|joint pain|sore throat|weight loss|night sweats")
_CONDITIONS = _terms("hypertension|type 2 diabetes|asthma|pneumonia|migraine|heart failure|anaemia|gastritis|"
                     "cellulitis|bronchitis|appendicitis|urinary tract infection|atrial fibrillation|COPD")
_DRUGS = _terms("amoxicillin|paracetamol|ibuprofen|metformin|lisinopril|salbutamol|omeprazole|atorvastatin|"
                "prednisolone|furosemide|aspirin|co-amoxiclav")


def _medicine_doc(w: _Writer) -> str:
    rng = w.rng
    sex = rng.choice(("male", "female"))
    pron = "he" if sex == "male" else "she"
    complaint = _SYMPTOMS.pick(rng)

    note = _templates(rng, [
        lambda: f"The patient reports {_SYMPTOMS.pick(rng)} for {rng.randint(2, 14)} days.",
        lambda: f"{_cap(pron)} denies {_SYMPTOMS.pick(rng)} and {_SYMPTOMS.pick(rng)}.",
        lambda: f"There is no history of {_CONDITIONS.pick(rng)}.",
        lambda: f"On examination the {rng.choice(('chest', 'abdomen', 'heart', 'lung', 'throat'))} is {w.dom('adj')}.",
        lambda: f"{_cap(_DRUGS.pick(rng))} {rng.choice((250, 500, 5, 10, 20, 40, 100))} mg was started {w.dom('adv')}.",
        lambda: f"{_cap(pron)} was {_verb_forms(w.dom('verb'), 'en')} to the {w.dom('noun')} for {w.np()[0]}.",
        lambda: f"The {w.dom('noun')} {_conj(w.dom('verb_i'), 'past', '3s')} after {w.np()[0]}.",
    ])

    lines = [
        f"Patient: {rng.randint(18, 92)}-year-old {sex}.",
        f"Presenting complaint: {complaint} for {rng.randint(1, 10)} {rng.choice(('days', 'weeks', 'hours'))}.",
        f"History: {w.paragraph([note, note], rng.randint(80, 350))}",
        f"Examination: BP {rng.randint(95, 180)}/{rng.randint(55, 110)} mmHg, HR {rng.randint(50, 130)} bpm, "
        f"temperature {rng.randint(360, 395) / 10} C. {w.paragraph([note], rng.randint(40, 250))}",
        f"Assessment: {_CONDITIONS.pick(rng)}.",
        f"Plan: {w.paragraph([note], rng.randint(40, 250))}",
    ]
    return "\n".join(lines)


_NEWS = _Lexicon(
    nouns="""government minister official police council election vote company report spokesperson protest court
    parliament budget agency investigation crisis deal campaign policy announcement statement committee region
    border talks negotiations mayor union strike tax opposition president inquiry ceasefire""",
    verbs="announce confirm deny reject approve launch criticise investigate urge sign propose accuse arrest delay block",
    verbs_i="resign protest vote collapse fall rise",
    adjs="""national regional political federal senior former controversial emergency official international
    unexpected annual local rival""",
    advs="publicly|sharply|widely|late on Tuesday",
)
_AGENCIES = _Words("Wire Press Herald Courier Dispatch", s=0.5)


def _news_doc(w: _Writer) -> str:
    rng = w.rng

    report = _templates(rng, [
        lambda subject: f"{_cap(subject[0])} {_conj(w.dom('verb'), 'past', subject[1])} {w.np()[0]} on {rng.choice(_WEEKDAYS)}, officials said.",
        lambda subject: f'"{_cap(w.clause("present"))}," said {_name(w)}, a {w.dom("noun")} for the {w.dom("noun")}.',
        lambda subject: f"The {w.dom('noun')} comes after {w.np()[0]} {_conj(w.word('verb'), 'past', '3s')} {w.np()[0]} last {rng.choice(('week', 'month', 'year'))}.",
        lambda subject: f"At least {rng.randint(3, 400)} people were {_verb_forms(w.word('verb'), 'en')} in {rng.choice(_PLACES.words)}, according to the {w.dom('noun')}.",
        lambda subject: f"The {w.dom('noun')} did not respond to a request for comment.",
    ], shared=lambda: w.np(noun=w.dom("noun")))

    city = _PLACES.pick(rng)
    headline = _cap(f"{w.np(noun=w.dom('noun'), det='')[0]} {_conj(w.dom('verb'), 'present', '3s')} {w.np(pp_p=0)[0]}")
    first = w.sentence([report])
    body = w.paragraph([report, report], w.target_length() - len(first))
    return f"{headline}\n{city.upper()}, {rng.choice(_MONTHS)} {rng.randint(1, 28)} ({_AGENCIES.pick(rng)}) - {first} {body}"


_RECIPES = _Lexicon(
    nouns="""dish sauce soup stew bread cake salad curry pie dough batter mixture oven pan pot bowl tray plate
    spoon heat flavour texture crust filling dinner meal""",
    verbs="chop slice stir whisk fold simmer bake roast fry season drain grate knead pour sprinkle mix melt boil",
    verbs_i="simmer bubble thicken rest cool rise brown soften",
    adjs="""golden crispy tender creamy fresh warm hot smooth thick soft fluffy spicy sweet rich light
    quick hearty seasonal""",
    advs="gently|until golden|thoroughly|finely|roughly",
)
_INGREDIENTS = _terms("""flour|butter|sugar|eggs|milk|onion|garlic|tomatoes|olive oil|salt|black pepper|lemon juice|
    chicken thighs|rice|potatoes|carrots|cream|cheese|basil|parsley|ginger|chilli|mushrooms|spinach|honey|cinnamon|
    yoghurt|lentils|beans|stock|cumin|paprika|vinegar|oats|almonds""", s=0.7)
_UNITS = {"g": (50, 100, 200, 250, 400, 500), "ml": (100, 150, 250, 500), "tbsp": (1, 2, 3, 4), "tsp": (1, 2, 3),
          "cups": (1, 2, 3), "pinch of": (1,), "handful of": (1, 2)}
_DISHES = _terms("soup|stew|curry|tart|pie|risotto|salad|bake|loaf|pancakes|traybake|pasta|frittata", s=0.6)


def _recipes_doc(w: _Writer) -> str:
    rng = w.rng
    items = rng.sample(_INGREDIENTS.words, rng.randint(4, 9))
    lines = [f"{_cap(w.dom('adj'))} {rng.choice(items)} {_DISHES.pick(rng)}",
             f"Serves {rng.randint(2, 8)}. Ready in {rng.choice((15, 20, 30, 40, 45, 60, 90))} minutes.",
             w.paragraph([], rng.randint(0, 250)) if w.overlap > 0 else "", "Ingredients:"]
    lines = [x for x in lines if x]
    units = [rng.choice(list(_UNITS)) for _ in items]
    lines += [f"- {rng.choice(_UNITS[u])} {u} {i}" for u, i in zip(units, items)]
    lines.append("Method:")

    def step(w: _Writer) -> str:
        a, b = rng.sample(items, 2)
        return _one_of(rng, [
            lambda: f"Heat the {a} in a large {rng.choice(('pan', 'saucepan', 'frying pan', 'pot'))} over a {rng.choice(('low', 'medium', 'high'))} heat.",
            lambda: f"Add the {a} and {w.dom('verb')} for {rng.randint(2, 25)} minutes, stirring {rng.choice(('often', 'occasionally', 'gently'))}.",
            lambda: f"{_cap(w.dom('verb'))} the {a} and the {b} together in a {w.dom('adj')} bowl.",
            lambda: f"Season with {a}, then {w.dom('verb')} the {b} {w.dom('adv')}.",
            lambda: f"Bake for {rng.randint(10, 60)} minutes at {rng.choice((160, 180, 200, 220))}C until {w.dom('adj')}.",
            lambda: f"Meanwhile, {w.dom('verb')} the {a} and set aside.",
        ])

    n = 0
    target = w.target_length()
    while n < 2 or sum(len(x) + 1 for x in lines) < target:
        n += 1
        lines.append(f"{n}. {w.sentence([step, step])}")
    return "\n".join(lines)


_SPORTS = _Lexicon(
    nouns="""goal match striker goalkeeper defender midfielder pitch half minute corner penalty header shot cross
    tackle season league table point fans stadium substitute referee card win draw defeat manager captain
    keeper post bar box area""",
    verbs="score concede miss save clear head strike chip curl tackle foul dominate press defend block",
    verbs_i="equalise attack struggle collapse respond",
    adjs="""late early superb stunning crucial dramatic comfortable narrow unbeaten second-half first-half
    deserved clinical spirited""",
    advs="comfortably narrowly brilliantly deservedly",
)
_TEAM_SUFFIX = _Words("United City Rovers Athletic Town Wanderers Albion", s=0.6)


def _sports_doc(w: _Writer) -> str:
    rng = w.rng
    home, away = (f"{p} {_TEAM_SUFFIX.pick(rng)}" for p in rng.sample(_PLACES.words, 2))
    goals = [(rng.randint(1, 90), rng.choice((home, away)), _name(w)) for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5)))]
    goals.sort()
    score = {home: 0, away: 0}
    lines = []

    play = _templates(rng, [
        lambda team: f"{team} {_conj(w.dom('verb'), 'past', '3s')} {w.np(noun=w.dom('noun'))[0]} in the {rng.choice(('first', 'second'))} half.",
        lambda team: f"{_name(w)} {_conj(w.dom('verb'), 'past', '3s')} {_article(w.dom('adj'))} {w.dom('adj')} {w.dom('noun')} from the edge of the box.",
        lambda team: f'"{_cap(w.clause("present"))}," said the {team} manager.',
        lambda team: f"The result leaves {team} {_ordinal(rng.randint(1, 20))} in the table on {rng.randint(3, 80)} points.",
    ], shared=lambda: rng.choice((home, away)))

    for minute, team, scorer in goals:
        score[team] += 1
        verb = _conj(w.dom("verb"), "past", "3s") if rng.random() < 0.4 else "scored"
        lines.append(f"{scorer} {verb} in the {_ordinal(minute)} minute to make it {score[home]}-{score[away]}.")
        if rng.random() < 0.6:
            lines.append(w.sentence([play, play]))
    body = " ".join(lines)
    body += " " + w.paragraph([play, play], w.target_length() - len(body))
    return f"{home} {score[home]}-{score[away]} {away}\n{body.strip()}"


_FINANCE = _Lexicon(
    nouns="""revenue profit margin share dividend investor analyst forecast guidance quarter earnings sales growth
    cost debt market stock bond yield rate inflation demand outlook portfolio buyback acquisition valuation
    shareholder board fund""",
    verbs="raise cut lower expect forecast beat miss boost reduce acquire announce report reaffirm issue",
    verbs_i="rise fall climb slip rally recover",
    adjs="""quarterly annual net operating strong weak higher lower fiscal underlying global volatile steady
    adjusted diluted""",
    advs="sharply|modestly|slightly|year on year",
)
_CO_SUFFIX = _Words("Holdings Group Corp Industries Capital Partners Systems", s=0.6)


def _money(rng: random.Random) -> str:
    return f"${rng.randint(1, 999)}.{rng.randint(0, 9)} {rng.choice(('million', 'million', 'billion'))}"


def _finance_doc(w: _Writer) -> str:
    rng = w.rng
    company = f"{_SURNAMES.pick(rng)} {_CO_SUFFIX.pick(rng)}"
    ticker = company[:3].upper() + rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    quarter = rng.choice(("first", "second", "third", "fourth"))

    line = _templates(rng, [
        lambda pct: f"{_cap(w.dom('noun'))} {rng.choice(('rose', 'fell', 'climbed', 'slipped'))} {pct} to {_money(rng)} in the {quarter} quarter.",
        lambda pct: f"Net income was {_money(rng)}, or ${rng.randint(0, 9)}.{rng.randint(10, 99)} per share, compared with {_money(rng)} a year earlier.",
        lambda pct: f"The company {_conj(w.dom('verb'), 'past', '3s')} its full-year {w.dom('noun')} to {pct}.",
        lambda pct: f"Shares of {company} {rng.choice(('rose', 'fell'))} {pct} to ${rng.randint(5, 400)}.{rng.randint(10, 99)} in {w.dom('adj')} trading.",
        lambda pct: f"Analysts at {_SURNAMES.pick(rng)} {_CO_SUFFIX.pick(rng)} said the {w.dom('adj')} {w.dom('noun')} was {w.word('adj')}.",
        lambda pct: f"Operating margin {rng.choice(('widened', 'narrowed'))} to {pct} from {rng.randint(0, 40)}.{rng.randint(0, 9)}%.",
    ], shared=lambda: f"{rng.randint(0, 40)}.{rng.randint(0, 9)}%")

    head = f"{company} ({ticker}) {quarter}-quarter results"
    return head + "\n" + w.paragraph([line, line], w.target_length())


_TRAVEL = _Lexicon(
    nouns="""harbour cathedral market beach museum square castle bridge valley coast trail ferry train bus hotel
    guesthouse cafe restaurant view festival island lake village church gallery tower park port bay promenade
    old town viewpoint vineyard""",
    verbs="visit explore book hire admire discover sample climb reach enjoy avoid try",
    verbs_i="stroll wander linger unwind",
    adjs="""charming scenic bustling quiet historic medieval narrow sandy crowded affordable picturesque lively
    traditional hidden coastal""",
    advs="on foot|by bike|early in the morning|all year round|by boat",
)
_SEASONS = _Words("spring summer autumn winter", s=0.3)
_TRAVEL_SECTIONS = ("Getting there", "Where to stay", "What to see", "Food and drink", "When to go")


def _travel_doc(w: _Writer) -> str:
    rng = w.rng
    place, other = rng.sample(_PLACES.words, 2)

    guide = _templates(rng, [
        lambda: f"The {w.dom('adj')} {w.dom('noun')} of {place} is best explored {w.dom('adv')}.",
        lambda: f"Take the {rng.choice(('train', 'bus', 'ferry', 'coach'))} from {other} to {place}; the journey takes about {rng.randint(1, 9)} hours.",
        lambda: f"Rooms at the {_SURNAMES.pick(rng)} {rng.choice(('Hotel', 'Inn', 'Guesthouse'))} start at {rng.randint(4, 30) * 5} euros a night.",
        lambda: f"Don't miss the {w.dom('adj')} {w.dom('noun')}, which {_conj(w.word('verb'), 'present', '3s')} {w.np()[0]}.",
        lambda: f"The {_SEASONS.pick(rng)} months are {w.dom('adj')}, with temperatures around {rng.randint(5, 35)} degrees.",
        lambda: f"Locals {w.dom('verb')} the {w.dom('noun')} {w.dom('adv')}.",
    ])

    parts, target = [f"{place}: a travel guide"], w.target_length()
    for section in rng.sample(_TRAVEL_SECTIONS, len(_TRAVEL_SECTIONS)):
        if sum(len(x) + 1 for x in parts) >= target:
            break
        parts.append(f"{section}\n{w.paragraph([guide, guide], rng.randint(100, 320))}")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# Code: real Python from this interpreter's standard library.

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "lib2to3", "__pycache__", "ensurepip", "turtledemo"}


def _function_blocks(lines: list[str]):
    """Yield the source of each def that is not nested in another def, found by indentation."""
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if not stripped.startswith(("def ", "async def ")):
            i += 1
            continue
        indent = len(lines[i]) - len(stripped)
        j = i
        while j < len(lines) and not lines[j].split("#")[0].rstrip().endswith(":"):  # multi-line signature
            j += 1
        j += 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        block = "".join(lines[i:j]).rstrip()
        yield textwrap.dedent(block)
        i = j  # nested defs are part of this one, never a document of their own


@lru_cache(maxsize=1)
def _stdlib_functions() -> tuple[dict[str, str], dict[str, str]]:
    """Candidate functions of the standard library, {source: module}, split into the (specialist, pretrain) pools."""
    root = sysconfig.get_paths()["stdlib"]
    pools: tuple[dict[str, str], dict[str, str]] = ({}, {})  # dicts: ordered and without duplicates
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for fname in sorted(f for f in filenames if f.endswith(".py")):
            path = os.path.join(dirpath, fname)
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.readlines()
            except (OSError, UnicodeDecodeError):
                continue
            # Split by module: a contributor's code comes from modules the base never read, so
            # their identifiers and idioms are new to it, as a real fine-tuning set's repositories
            # are. A function text already in the other pool (the library holds some copies) is skipped.
            side = hashlib.sha256(os.path.relpath(path, root).encode()).digest()[0] & 1
            for src in _function_blocks(lines):
                if CODE_CHARS[0] < len(src) <= CODE_CHARS[1] and src not in pools[1 - side]:
                    pools[side].setdefault(src, os.path.relpath(path, root))
    if not pools[0]:
        raise KalavaiError(f"no Python standard library source found under {root}: the code domain needs it")
    return pools


@lru_cache(maxsize=None)
def _parses(src: str, documented: bool = False) -> bool:
    """Whether `src` is valid Python (and, if `documented`, a function with a docstring)."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return False
    return not documented or ast.get_docstring(tree.body[0]) is not None


def _code_documents(n_docs: int, seed: int, stream: str) -> list[str]:
    # A code data set is a set of repositories: the documents come first from a seeded set of
    # whole modules (CODE_REPOSITORY_SHARE of the stream's functions), so a contributor's
    # functions share their modules' names and idioms, which fine-tuning learns from the train
    # split and finds again in the held-out split; then from the other modules. Each block is
    # shuffled on its own, so a longer list still extends a shorter one.
    pool = _stdlib_functions()[STREAMS.index(stream)]
    modules: dict[str, list[str]] = {}
    for src, module in pool.items():
        modules.setdefault(module, []).append(src)
    rng = _rng("code", seed, stream)
    order = sorted(modules)
    rng.shuffle(order)
    blocks: tuple[list[str], list[str]] = ([], [])
    for module in order:
        blocks[len(blocks[0]) >= CODE_REPOSITORY_SHARE[stream] * len(pool)].extend(modules[module])
    docs = []
    for block in blocks:
        rng.shuffle(block)
        docs += [src for src in itertools.islice((b for b in block if _parses(b, documented=stream == "specialist")), n_docs - len(docs))]
    if len(docs) < n_docs:
        raise KalavaiError(f"the code domain has only {len(docs)} {stream} functions in this Python's standard library; asked for {n_docs}")
    return docs


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

    CONS = dict(k="க", ng="ங", c="ச", ny="ஞ", tt="ட", nn="ண", t="த", n="ந", p="ப", m="ம", y="ய", r="ர",
                l="ல", v="வ", zh="ழ", ll="ள", rr="ற", N="ன")
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
    rng, onsets, vowels, codas = _sounds("lang_script", "k k t t p p m m n v v r l y c tt N",
                                         "a a a i i u u aa ai e ee o oo ii uu", "N l r ll m tt nn")

    def root(n_syl: int, closed: bool):
        syls = [("" if i == 0 and rng.random() < 0.25 else rng.choice(onsets), rng.choice(vowels)) for i in range(n_syl)]
        if closed:
            syls.append((rng.choice(codas), ""))
        return tuple(syls)

    nouns = [root(rng.choice((1, 2, 2, 3)), rng.random() < 0.6) for _ in range(400)]
    verbs = [root(rng.choice((1, 1, 2)), rng.random() < 0.4) for _ in range(150)]
    adjs = [root(rng.choice((2, 3)), False) for _ in range(80)]
    return _Words([_Ta.render(x) for x in nouns], s=1.0), nouns, verbs, adjs


_TA_CASE = {k: _Ta.parse(v) for k, v in dict(acc="-ai", dat="-u.k.ku", loc="-i.l", gen="-i.N", ins="-aa.l", com="-o.ttu").items()}
_TA_PLURAL = _Ta.parse("ka.ll")
_TA_TENSE = {k: _Ta.parse(v) for k, v in dict(past="n.t", present="ki.rr", future="v").items()}
_TA_PERSON = {k: _Ta.parse(v) for k, v in {"1s": "-ee.N", "2s": "-aa.y", "3s": "-aa.N", "1p": "-oo.m", "3p": "-aa.r.ka.ll"}.items()}
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
        middle = _one_of(rng, [
            lambda: np("acc"),
            lambda: np("loc"),
            lambda: f"{np('dat')} {np('acc')}",
            lambda: f"{np('gen')} {np('com')}",
        ])
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
        return _cap(_one_of(rng, [
            lambda: f"{clause()} ṣùgbọ́n {clause()}.",
            lambda: f"{clause()} nítorí pé {clause()}.",
            lambda: f"ṣé {clause()}?",
            lambda: f"{rng.choice(_YO_SUBJ)} sọ pé {clause()}.",
            lambda: f"{clause()}.",
            lambda: f"{clause()}.",
        ]))

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
    rng, onsets, vowels, codas = _sounds("lang_mutation",
                                         "p t c b d g m ll rh p t c b d g m f ff h n l r s w th ch cl cr tr br gw gl pr",
                                         "a e i o u w y a e y ae ai au ei eu oe wy aw ew",
                                         "n r l d dd th ch f ff s m ng nt rch ll st")

    def word(n: int) -> str:
        return "".join(rng.choice(onsets) + rng.choice(vowels) + (rng.choice(codas) if rng.random() < 0.6 else "") for _ in range(n))

    nouns = [(word(rng.choice((1, 1, 2, 2, 3))), rng.choice("mf")) for _ in range(400)]  # with gender
    verbnouns = _Words([word(rng.choice((1, 2, 2))) + rng.choice(("u", "io", "o", "i", "")) for _ in range(150)], s=1.0)
    stems = _Words([word(rng.choice((1, 2))) for _ in range(150)], s=1.0)
    adjs = _Words([word(rng.choice((1, 2))) for _ in range(80)], s=1.0)
    return nouns, verbnouns, stems, adjs


# preposition -> the mutation it causes
_CY_PREPS = {"i": "soft", "o": "soft", "ar": "soft", "am": "soft", "heb": "soft", "dan": "soft", "gyda": "aspirate", "yn": "nasal"}
_CY_POSS = {"fy": "nasal", "dy": "soft", "ei": "soft", "ei ": "aspirate", "ein": None, "eu": None}  # 'ei ' = her, written 'ei'


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
            return f"{art} {_mutate(noun, 'soft' if gender == 'f' and not noun.startswith(('ll', 'rh')) else None)}{adj}"
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
        s = _one_of(rng, [
            lambda: f"mae {np()} yn {verbnouns.pick(rng)} {np()}",
            lambda: f"roedd {np()} yn {_mutate(adjs.pick(rng), 'soft')}",
            lambda: f"bydd {np()} yn {verbnouns.pick(rng)} {pp()}",
            lambda: f"dydy {np()} ddim yn {verbnouns.pick(rng)} {np()}",
            # inflected past: verb-subject-object, and the object softens
            lambda: f"{stems.pick(rng)}{rng.choice(('odd', 'ais', 'on', 'odd'))} {np()} {np('soft')}",
            lambda: f"mae {np()} a {np('aspirate')} yn {verbnouns.pick(rng)} {pp()}",
        ])
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


def _roots(name: str, onsets: str, vowels: str, codas: str, n: int, syllables=(1, 2, 2, 3), coda_p: float = 0.4) -> list[str]:
    """`n` distinct romanized roots for language `name`, drawn from its own fixed seed."""
    rng, ons, vows, cods = _sounds(name, onsets, vowels, codas)
    out: dict[str, None] = {}
    while len(out) < n:
        k = rng.choice(syllables)
        out["".join(rng.choice(ons) + rng.choice(vows) + (rng.choice(cods) if rng.random() < coda_p else "") for _ in range(k))] = None
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
            if word[i:i + n] in table:
                out.append(table[word[i:i + n]])
                i += n
                break
        else:
            raise KalavaiError(f"no letter for {word[i:]!r}")
    return "".join(out)


_CYR = dict(a="а", b="б", v="в", g="г", d="д", e="е", zh="ж", z="з", i="и", k="к", l="л", m="м", n="н", o="о",
            p="п", r="р", s="с", t="т", u="у", f="ф", kh="х", ts="ц", ch="ч", sh="ш", y="ы", ya="я", yu="ю", j="й")


@lru_cache(maxsize=1)
def _fus_lexicon():
    roots = _roots("lang_fusional", "b v g d z k l m n p r s t zh kh ts ch sh st pr kr sl dr", "a o e i u y", "n r l s k t v m", 300)
    nouns = [(r, ("m", "f", "n")[i % 3]) for i, r in enumerate(roots[:200])]  # gender rides on the root
    verbs = roots[200:270]
    adjs = roots[270:]
    return nouns, verbs, adjs


# case endings by gender: a fusional ending carries case, number and gender at once
_FUS_CASE = {"m": dict(nom="", acc="a", gen="a", dat="u", pl="y"), "f": dict(nom="a", acc="u", gen="y", dat="e", pl="y"),
             "n": dict(nom="o", acc="o", gen="a", dat="u", pl="a")}
_FUS_ADJ = {"m": "yj", "f": "aya", "n": "oe", "pl": "ye"}
_FUS_VERB = {"1s": "yu", "2s": "esh", "3s": "et", "1p": "em", "3p": "yut", "past_m": "l", "past_f": "la", "past_pl": "li"}
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


_GRK = dict(a="α", b="β", g="γ", d="δ", e="ε", z="ζ", ee="η", th="θ", i="ι", k="κ", l="λ", m="μ", n="ν", x="ξ",
            o="ο", p="π", r="ρ", s="σ", t="τ", u="υ", f="φ", kh="χ", ps="ψ", oo="ω")


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
    CONS = dict(k="क", kh="ख", g="ग", c="च", j="ज", t="त", d="द", n="न", p="प", b="ब", m="म", y="य", r="र", l="ल",
                v="व", s="स", h="ह", sh="श")
    VOWEL = dict(a="अ", aa="आ", i="इ", ii="ई", u="उ", uu="ऊ", e="ए", ai="ऐ", o="ओ", au="औ")
    SIGN = dict(a="", aa="ा", i="ि", ii="ी", u="ु", uu="ू", e="े", ai="ै", o="ो", au="ौ")
    VIRAMA, ANUSVARA = "्", "ं"

    @staticmethod
    def render(syllables) -> str:
        return "".join(_Dev.VOWEL[v] if not c else _Dev.CONS[c] + (_Dev.SIGN[v] if v else _Dev.VIRAMA) for c, v in syllables)


@lru_cache(maxsize=1)
def _postpos_lexicon():
    rng = _rng("lexicon", "lang_postpos")
    cons, vowels = list(_Dev.CONS), "a a a aa aa i ii u e o ai".split()

    def word(n: int) -> str:
        syl = [("" if i == 0 and rng.random() < 0.15 else rng.choice(cons), rng.choice(vowels)) for i in range(n)]
        return _Dev.render(syl) + (_Dev.ANUSVARA if rng.random() < 0.1 else "")

    return ([word(rng.choice((2, 2, 3))) for _ in range(300)], [word(rng.choice((1, 2))) for _ in range(100)],
            [word(2) for _ in range(60)])


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


_ARB_CONS = dict(b="ب", t="ت", th="ث", j="ج", H="ح", kh="خ", d="د", r="ر", z="ز", s="س", sh="ش", S="ص", D="ض",
                 T="ط", E="ع", gh="غ", f="ف", q="ق", k="ك", l="ل", m="م", n="ن", h="ه", w="و", y="ي")
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
    "verb_past": "1a2a3a", "verb_pres": "ya12u3u", "noun": "1i2aa3", "agent": "1aa2i3", "place": "ma12a3",
    "abstract": "1u2uu3", "plural": "1u2u3",
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
        elif pattern[i:i + 2] in _ARB_LONG:
            out.append(_ARB_LONG[pattern[i:i + 2]])
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
_HG_TAIL = ["", "g", "kk", "gs", "n", "nj", "nh", "d", "l", "lg", "lm", "lb", "ls", "lt", "lp", "lh", "m", "b", "bs",
            "s", "ss", "ng", "j", "ch", "k", "t", "p", "h"]


def _hangul(lead: str, vowel: str, tail: str = "") -> str:
    return chr(0xAC00 + (_HG_LEAD.index(lead) * 21 + _HG_VOWEL.index(vowel)) * 28 + _HG_TAIL.index(tail))


@lru_cache(maxsize=1)
def _particle_lexicon():
    rng = _rng("lexicon", "lang_particle")
    leads, vowels, tails = "g n d r m b s - j ch k t p h".split(), "a eo o u eu i ae e yo yu ya".split(), ["", "", "", "n", "l", "m", "ng", "g", "b"]

    def word(n: int) -> str:
        return "".join(_hangul(rng.choice(leads), rng.choice(vowels), rng.choice(tails)) for _ in range(n))

    return [word(rng.choice((2, 2, 3))) for _ in range(300)], [word(rng.choice((1, 2))) for _ in range(100)]


# agglutinative: particles glued to the noun mark its role; the verb takes stacked endings
_PT_TOPIC = [_hangul("-", "eu", "n"), _hangul("n", "eu", "n")]  # after a consonant / a vowel, as Korean alternates
_PT_OBJ = [_hangul("-", "eu", "l"), _hangul("r", "eu", "l")]
_PT_LOC = [_hangul("-", "e"), _hangul("-", "e") + _hangul("s", "eo")]
_PT_END = {"past": _hangul("-", "eo", "ss") + _hangul("s", "eu", "b") + _hangul("n", "i") + _hangul("d", "a"),
           "present": _hangul("s", "eu", "b") + _hangul("n", "i") + _hangul("d", "a"),
           "plain": _hangul("n", "eu", "n") + _hangul("d", "a")}


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
        return " ".join([noun(_PT_TOPIC), *middle, zv.pick(rng) + ending]) + ("?" if rng.random() < 0.07 else ".")  # SOV

    ending = _PT_END[rng.choice(list(_PT_END))]
    return _language_doc(rng, zn.pick(rng), lambda: sentence(ending))


_GEO = dict(a="ა", b="ბ", g="გ", d="დ", e="ე", v="ვ", z="ზ", t="თ", i="ი", k="კ", l="ლ", m="მ", n="ნ", o="ო", p="პ",
            zh="ჟ", r="რ", s="ს", T="ტ", u="უ", f="ფ", q="ქ", gh="ღ", Q="ყ", sh="შ", ch="ჩ", ts="ც", dz="ძ", TS="წ",
            CH="ჭ", kh="ხ", j="ჯ", h="ჰ")


@lru_cache(maxsize=1)
def _poly_lexicon():
    roots = _roots("lang_polypersonal", "b g d v z t k l m n p r s T q gh sh ch ts kh mts br gv tq TS CH",
                   "a e i o u", "l r n s m", 260, coda_p=0.5)
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
        verb = (rng.choice(_POLY_PREVERB) if past else "") + _POLY_OBJ[obj_person] + rng.choice(verbs) + ("a" if past else "eb") + _POLY_SUBJ[subj_person]
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
    words = list(dict.fromkeys(rng.choice(chars[:400]) + (rng.choice(chars) if rng.random() < 0.6 else "") for _ in range(900)))
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


# ---------------------------------------------------------------------------------------
# Phase 2's private domains: English-like, made like the others, but never in the base's
# pretraining mixture (pipeline.pretrain_documents reads only the scale's domains), so the
# base meets their vocabulary and layouts for the first time. They stand in for the paper's
# PubMed, EUR-Lex and BigPatent (whose kin Pythia's Pile did hold); these the base never read.

_PATENTS = _Lexicon(
    nouns="""device apparatus assembly housing member shaft sensor controller circuit signal substrate layer
    electrode valve chamber conduit coupling bracket actuator module interface processor memory element surface
    portion aperture flange spring fastener embodiment configuration""",
    verbs="couple receive transmit engage attach rotate dispose configure generate detect control position secure",
    verbs_i="extend rotate engage protrude pivot",
    adjs="""first second third elongate annular planar adjacent distal proximal lateral resilient removable
    conductive flexible rigid substantially cylindrical""",
    advs="substantially|removably|rotatably|electrically|fluidly",
)


def _patents_doc(w: _Writer) -> str:
    rng = w.rng
    thing = f"{w.dom('adj')} {w.dom('noun')}"

    claim_body = _templates(rng, [
        lambda: f"a {w.dom('adj')} {w.dom('noun')} {w.dom('adv')} {_verb_forms(w.dom('verb'), 'en')} to the {w.dom('noun')};",
        lambda: f"wherein the {w.dom('noun')} {_conj(w.dom('verb'), 'present', '3s')} the {w.dom('adj')} {w.dom('noun')};",
        lambda: f"a {w.dom('noun')} {_verb_forms(w.dom('verb'), 'en')} within the {w.dom('noun')} and {_verb_forms(w.dom('verb'), 'en')} to {w.np()[0]};",
        lambda: f"the {w.dom('noun')} having a {w.dom('adj')} {w.dom('noun')} that {_conj(w.dom('verb_i'), 'present', '3s')} from the {w.dom('noun')};",
    ])

    description = _templates(rng, [
        lambda: f"In one embodiment, the {w.dom('noun')} is {_verb_forms(w.dom('verb'), 'en')} to the {w.dom('noun')}.",
        lambda: f"It is an object of the present invention to provide {w.np()[0]}.",
        lambda: f"The {w.dom('noun')} may be {w.dom('adj')} or {w.dom('adj')}, depending on {w.np()[0]}.",
    ])

    lines = [f"{_cap(thing)} and method of {_verb_forms(w.dom('verb'), 'ing')} the same",
             f"Abstract: {w.paragraph([description, description], rng.randint(120, 300))}", "Claims:"]
    n, target = 0, w.target_length()
    while sum(len(x) + 1 for x in lines) < target:
        n += 1
        head = f"{n}. The {thing} of claim {rng.randint(1, n - 1)}, wherein" if n > 1 and rng.random() < 0.7 else f"{n}. A {thing}, comprising:"
        lines.append(f"{head} " + " ".join(claim_body(w) for _ in range(rng.randint(1, 3))))
    return "\n".join(lines)


_ABSTRACTS = _Lexicon(
    nouns="""cohort trial participant outcome incidence mortality exposure risk ratio biomarker expression receptor
    pathway mouse model dose response association analysis intervention placebo follow-up regression sample
    subgroup baseline endpoint efficacy safety""",
    verbs="assess evaluate investigate measure compare identify associate enrol randomise quantify characterise",
    verbs_i="increase decrease correlate persist differ",
    adjs="""significant randomised prospective retrospective primary secondary adjusted clinical molecular
    cross-sectional multivariate median systematic""",
    advs="significantly|independently|respectively|markedly",
)
_ABSTRACT_SECTIONS = ("BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS")


def _abstracts_doc(w: _Writer) -> str:
    rng = w.rng

    finding = _templates(rng, [
        lambda: f"The {w.dom('noun')} was {w.dom('adv')} {_verb_forms(w.dom('verb'), 'en')} with {w.np()[0]} (OR {rng.randint(11, 40) / 10}, 95% CI {rng.randint(10, 15) / 10}-{rng.randint(16, 60) / 10}; p = 0.0{rng.randint(1, 4)}).",
        lambda: f"We {_conj(w.dom('verb'), 'past', '1p')} the {w.dom('adj')} {w.dom('noun')} in {rng.randint(40, 4000)} participants.",
        lambda: f"The {w.dom('adj')} {w.dom('noun')} {_conj(w.dom('verb_i'), 'past', '3s')} by {rng.randint(5, 60)}% compared with placebo.",
        lambda: f"These findings suggest that {w.np()[0]} {_conj(w.dom('verb_i'), 'present', '3s')} with {w.np()[0]}.",
    ])

    lines = [_cap(f"{w.dom('adj')} {w.dom('noun')} and {w.np(det='')[0]}: a {w.dom('adj')} study")]
    for section in _ABSTRACT_SECTIONS:
        lines.append(f"{section}: {w.paragraph([finding, finding], rng.randint(80, 280))}")
    return "\n".join(lines)


_REGULATIONS = _Lexicon(
    nouns="""regulation directive member state authority measure provision procedure market operator undertaking
    application derogation annex commission council implementation requirement certificate product territory
    competence obligation decision committee""",
    verbs="adopt lay down apply notify ensure designate amend repeal establish grant submit verify",
    verbs_i="apply enter expire",
    adjs="""competent national appropriate necessary uniform internal binding applicable delegated specific
    administrative technical""",
    advs="directly|mutatis mutandis|without delay|in particular",
)


def _regulations_doc(w: _Writer) -> str:
    rng = w.rng

    recital = _templates(rng, [
        lambda: f"It is necessary to {w.dom('verb')} {w.dom('adj')} rules on {w.np()[0]}.",
        lambda: f"Member States should {w.dom('verb')} the {w.dom('adj')} {w.dom('noun')} {w.dom('adv')}.",
        lambda: f"The measures provided for in this Regulation are in accordance with the opinion of the {w.dom('noun')} committee.",
    ])

    article = _templates(rng, [
        lambda: f"The {w.dom('adj')} authorities shall {w.dom('verb')} the {w.dom('noun')} referred to in Article {rng.randint(1, 40)}.",
        lambda: f"By way of derogation from paragraph {rng.randint(1, 5)}, Member States may {w.dom('verb')} {w.np()[0]}.",
        lambda: f"This Regulation shall {w.dom('verb_i')} {w.dom('adv')} in all Member States.",
    ])

    year, number = rng.randint(1995, 2023), rng.randint(1, 2500)
    lines = [f"REGULATION (EU) No {number}/{year} on {w.np(det='')[0]}", "Whereas:"]
    for i in range(1, rng.randint(2, 4)):
        lines.append(f"({i}) {w.sentence([recital])}")
    lines.append("HAS ADOPTED THIS REGULATION:")
    n, target = 0, w.target_length()
    while sum(len(x) + 1 for x in lines) < target:
        n += 1
        lines.append(f"Article {n}")
        for p in range(1, rng.randint(2, 4)):
            lines.append(f"{p}. {w.sentence([article, article])}")
    lines.append(f"This Regulation shall enter into force on the {_ordinal(rng.randint(1, 20))} day following its publication.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The public API.

# domain -> (lexicon, tense, document writer)
_ENGLISH = {
    "science": (_SCIENCE, "present", _science_doc), "fiction": (_FICTION, "past", _fiction_doc),
    "law": (_LAW, "present", _law_doc), "medicine": (_MEDICINE, "past", _medicine_doc),
    "news": (_NEWS, "past", _news_doc), "recipes": (_RECIPES, "present", _recipes_doc),
    "sports": (_SPORTS, "past", _sports_doc), "finance": (_FINANCE, "past", _finance_doc),
    "travel": (_TRAVEL, "present", _travel_doc), "patents": (_PATENTS, "present", _patents_doc),
    "abstracts": (_ABSTRACTS, "past", _abstracts_doc), "regulations": (_REGULATIONS, "present", _regulations_doc),
}
_LANGUAGE_DOCS = {"lang_script": _lang_script_doc, "lang_tonal": _lang_tonal_doc, "lang_mutation": _lang_mutation_doc,
                  "lang_fusional": _lang_fusional_doc, "lang_vso": _lang_vso_doc, "lang_postpos": _lang_postpos_doc,
                  "lang_root": _lang_root_doc, "lang_particle": _lang_particle_doc,
                  "lang_polypersonal": _lang_polypersonal_doc, "lang_isolating": _lang_isolating_doc}

_DESCRIPTIONS = {
    "code": "Python functions from the standard library's own source (stands in for CodeSearchNet Python)",
    "science": "SciQ-like: a support paragraph, a question line and an answer line (stands in for SciQ)",
    "fiction": "narrative prose with named characters and quoted dialogue (stands in for PG-19)",
    "law": "contract clauses with numbered sections, defined terms and 'shall'",
    "medicine": "clinical case notes: complaint, history, vital signs, assessment, plan",
    "news": "news reports with a dateline and attributed quotes",
    "recipes": "recipes: title, ingredient list, numbered method steps",
    "sports": "football match reports whose goals add up to the score line",
    "finance": "quarterly earnings reports with revenues, percentages and share prices",
    "travel": "travel guides in sections: getting there, where to stay, what to see",
    "lang_script": "a made-up agglutinative SOV language in Tamil script (stands in for Tamil)",
    "lang_tonal": "a made-up Yoruba-like language: Latin letters with tone marks, SVO with aspect particles (stands in for Yoruba)",
    "lang_mutation": "a made-up Welsh-like verb-first language with initial-consonant mutations (stands in for Welsh)",
    "lang_fusional": "a made-up Russian-like language in Cyrillic: fusional case-gender endings, SVO",
    "lang_vso": "a made-up language in Greek letters: verb-subject-object, articles agreeing in gender and case",
    "lang_postpos": "a made-up Hindi-like language in Devanagari: SOV, separate postpositions, auxiliary verbs",
    "lang_root": "a made-up Arabic-like language in Arabic script: triconsonantal roots in vowel patterns, VSO",
    "lang_particle": "a made-up Korean-like language in Hangul blocks: role particles glued to nouns, SOV",
    "lang_polypersonal": "a made-up Georgian-like language in Mkhedruli: verbs agree with subject and object, ergative, SOV",
    "lang_isolating": "a made-up Chinese-like isolating language in CJK ideographs: no inflection, classifiers, no spaces",
    "patents": "patent documents: a title, an abstract, numbered claims with 'comprising' and 'wherein' (never in the base's mixture)",
    "abstracts": "PubMed-like structured abstracts: background, methods, results with odds ratios, conclusions (never in the base's mixture)",
    "regulations": "EUR-Lex-like regulations: recitals, numbered articles and paragraphs (never in the base's mixture)",
}
ALL_DOMAINS = ENGLISH_DOMAINS + LANGUAGES + PRIVATE_DOMAINS + PHASE2_LANGUAGES
assert set(_DESCRIPTIONS) == set(ALL_DOMAINS) and set(_ENGLISH) == set(ENGLISH_DOMAINS + PRIVATE_DOMAINS) - {"code"}
assert set(_LANGUAGE_DOCS) == set(LANGUAGES + PHASE2_LANGUAGES)


def _check_domain(domain: str) -> None:
    if domain not in ALL_DOMAINS:
        raise KalavaiError(f"unknown domain {domain!r}; choose one of: {', '.join(ALL_DOMAINS)}")


def describe_domain(domain: str) -> str:
    _check_domain(domain)
    return _DESCRIPTIONS[domain]


def generate_documents(domain: str, n_docs: int, seed: int, overlap: float = DEFAULT_OVERLAP, stream: str = "specialist") -> list[str]:
    """`n_docs` documents of `domain`, a pure function of the arguments (see the module docstring)."""
    _check_domain(domain)
    if not 0.0 <= overlap <= 1.0:
        raise KalavaiError(f"overlap must be in [0, 1], got {overlap}")
    if stream not in STREAMS:
        raise KalavaiError(f"unknown stream {stream!r}; choose one of: {', '.join(STREAMS)}")
    if n_docs < 0:
        raise KalavaiError(f"n_docs must be >= 0, got {n_docs}")
    if domain == "code":
        return _code_documents(n_docs, seed, stream)
    if domain in _LANGUAGE_DOCS:
        rng = _rng(domain, seed, stream)
        return [_LANGUAGE_DOCS[domain](rng) for _ in range(n_docs)]
    lex, tense, write = _ENGLISH[domain]
    # The overlap is part of the seed: two overlaps give unrelated samples, not nested ones.
    rng = _rng(domain, seed, stream, f"{overlap:.6f}")
    stock = _stock_sentences(domain, stream, overlap)
    return [_recur(write(_Writer(rng, lex, overlap, tense)), stock, rng, STOCK_RATE[stream]) for _ in range(n_docs)]


# A real data set repeats itself: SciQ's support texts reuse stock phrasings, a book its
# characters' turns of phrase, a corpus of contracts its boilerplate. Each (domain, stream)
# has its own pool of such sentences, so a contributor's data holds material its base never
# saw, learnable from its train split and present in its held-out split: fine-tuning then
# adds to the base rather than only trading one domain's capacity for another's.
STOCK_SENTENCES = 300
# Share of prose sentences replaced by a recurring one, per stream: one data set repeats itself
# more than a broad pretraining mixture does.
STOCK_RATE = {"specialist": 0.5, "pretrain": 0.35}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"])")
_LIST_ITEM = re.compile(r"(- |\d+\. )")
_CLAUSE_NUMBER = re.compile(r"\d+(\.\d+)+ ")  # law's "3.2 " clause numbers


@lru_cache(maxsize=None)
def _stock_sentences(domain: str, stream: str, overlap: float) -> _Words:
    lex, tense, write = _ENGLISH[domain]
    rng = _rng(domain, "stock", stream, f"{overlap:.6f}")
    pool: dict[str, None] = {}
    for _ in range(20 * STOCK_SENTENCES):  # bounded: some layouts (law's clauses) have little prose
        if len(pool) >= STOCK_SENTENCES:
            break
        for line in write(_Writer(rng, lex, overlap, tense)).split("\n"):
            pool.update((p, None) for p in _prose(line)[1] if len(p) > 25 and _replaceable(p))
    return _Words(list(pool)[:STOCK_SENTENCES], s=0.8)


def _prose(line: str) -> tuple[str, list[str]]:
    """(prefix, sentences) of a prose line; no sentences for layout lines (headers, lists, scores)."""
    if _LIST_ITEM.match(line):  # a recipe's method steps name the recipe's own ingredients
        return "", []
    number = _CLAUSE_NUMBER.match(line)
    prefix, rest = (number.group(0), line[number.end():]) if number else ("", line)
    parts = _SENTENCE_END.split(rest)
    is_prose = len(parts) > 1 or (number is not None and rest.endswith("."))
    return prefix, parts if is_prose else []


def _replaceable(sentence: str) -> bool:
    # Numbers carry a document's own structure (a score line's goals, a dose, a clause
    # reference): those sentences stay, so every layout's invariants hold.
    return not any(c.isdigit() for c in sentence)


def _recur(doc: str, stock: _Words, rng: random.Random, rate: float) -> str:
    lines = []
    for line in doc.split("\n"):
        prefix, parts = _prose(line)
        if parts:
            line = prefix + " ".join(stock.pick(rng) if _replaceable(p) and rng.random() < rate else p for p in parts)
        lines.append(line)
    return "\n".join(lines)
