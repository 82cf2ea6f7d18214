"""The English-like core (morphology, a small grammar, a shared lexicon) and the nine prose domains' generators."""

from __future__ import annotations

import random

from .common import DOC_CHARS, _terms, _Words

# ---------------------------------------------------------------------------------------
# English morphology: just enough for agreement to be a real, learnable regularity.

_IRREGULAR_VERBS = {
    v.split(":")[0]: tuple(v.split(":")[1:])
    for v in """
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
_DOUBLE_FINAL = set(
    "stop plan drop ship admit commit prefer refer control occur permit submit transfer fit grab step stir "
    "chat nod rub scan trim chop whip slip grip tap hug jog skip wrap dip clap nap pat rob sip".split()
)
_IRREGULAR_PLURALS = dict(
    p.split(":")
    for p in """
    man:men woman:women child:children person:people foot:feet tooth:teeth mouse:mice leaf:leaves
    knife:knives life:lives wife:wives half:halves shelf:shelves thief:thieves loaf:loaves
    sheep:sheep fish:fish series:series species:species analysis:analyses nucleus:nuclei
    bacterium:bacteria criterion:criteria phenomenon:phenomena potato:potatoes tomato:tomatoes
    hero:heroes premises:premises goods:goods news:news crisis:crises basis:bases thesis:theses""".split()
)


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
        elif head in _DOUBLE_FINAL or head in (
            "run",
            "sit",
            "get",
            "put",
            "cut",
            "hit",
            "win",
            "swim",
            "begin",
            "dig",
            "set",
        ):
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
    vowel = (
        w[:1] in "aeio"
        or (w[:1] == "u" and not w.startswith(("uni", "use", "usu", "ut")))
        or w.startswith(("hour", "honest", "heir"))
    )
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
    **dict.fromkeys(
        "Anna Clara Elena Grace Iris Karen Maria Olivia Rosa Vera Lucy Helen Sarah Nora Emma Ruth Alice Jane Mary Laura".split(),
        "she",
    ),
    **dict.fromkeys(
        "Ben David Frank Henry Jack Leo Noah Paul Sam Tom Will Peter Hugh Adam Thomas Oliver Edward James Robert Simon".split(),
        "he",
    ),
}
_NAMES = _Words(list(_FIRST_NAMES), s=0.5)
_SURNAMES = _Words(
    "Smith Walker Hughes Patel Murray Clarke Evans Turner Moore Harris Baker Wood Hall Green Lewis "
    "Young King Wright Hill Cooper Ward Morgan Price Bell Carter Reed Fisher Shaw Grant Lowe",
    s=0.5,
)
_PLACES = _Words(
    "Ashford Bramley Carrow Dunmore Eastwick Fairhaven Glenrock Harlow Kingsbridge Lowden Marston "
    "Northam Oakridge Penrose Redfield Stanmore Thornbury Westmere Aldgate Brinton Caldwell Dorvale",
    s=0.6,
)
_PREPS = _Words(
    "in on near under behind across through with without during after before beside around over towards into", s=0.8
)
_SUBORDINATORS = _Words("when because although if after before while since until", s=0.7)
_CONJUNCTIONS = _Words("and but so yet", s=0.8)
_OPENERS = _terms(
    "However|In fact|Later|Meanwhile|For example|In general|At first|Of course|As a result|"
    "In the end|Afterwards|On the other hand|Sometimes|Usually|Even so|By then|At the same time"
)
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
    def np(
        self,
        plural: bool | None = None,
        noun: str | None = None,
        adj_p: float = 0.35,
        pp_p: float = 0.12,
        det: str | None = None,
    ):
        """A noun phrase and its person ('3s' or '3p')."""
        plural = self.chance(0.3) if plural is None else plural
        noun = noun or self.word("noun")
        words = [self.word("adj")] if self.chance(adj_p) else []
        words.append(_plural(noun) if plural else noun)
        if det is None:
            if plural:
                det = self.rng.choice(("the", "the", "these", "those", "some", "many", "all the", "few", ""))
            else:
                det = self.rng.choice(
                    ("the", "the", "the", "a", "a", "this", "that", "every", "each", "her", "his", "our")
                )
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
_SCI_QUANTITIES = _Words(
    "temperature mass volume pressure density speed energy concentration charge frequency "
    "wavelength force weight acceleration velocity",
    s=0.7,
)
_SCI_UNITS = _terms(
    "degrees Celsius|grams|kilograms|meters|liters|pascals|joules|newtons|volts|hertz|watts|moles", s=0.6
)
_SCI_CONCEPTS = _Words(
    """photosynthesis respiration evaporation condensation osmosis diffusion erosion mitosis meiosis
    fermentation oxidation combustion pollination digestion convection radiation conduction precipitation
    weathering sedimentation fusion fission adaptation metabolism""",
    s=0.6,
)
_SCI_TERMS = _Words(
    """producers consumers decomposers mesophiles isotopes catalysts vertebrates mammals reptiles
    insulators conductors enzymes ions alloys predators herbivores carnivores minerals fossils hormones
    chromosomes metals polymers invertebrates amphibians""",
    s=0.6,
)
_SCIENTISTS = _Words(
    "Dalton Mendel Curie Darwin Faraday Newton Kepler Hooke Pasteur Lavoisier Bohr Rutherford Maxwell Volta", s=0.5
)


def _sci_np(w: _Writer, plural: bool | None = None) -> str:
    return w.np(plural=plural, pp_p=0.05, det="the" if plural is False else None)[0]


def _science_facts(w: _Writer, concept: str):
    """One support sentence and, for most, the question and answer it supports (SciQ style)."""
    rng = w.rng
    k = rng.randrange(9)
    v = w.word("verb")
    if k == 0:
        a, b = _sci_np(w, True), _sci_np(w)
        return f"{_cap(concept)} is the process by which {a} {v} {b}.", (
            f"What is the process by which {a} {v} {b}?",
            concept,
        )
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
        return (
            f"An increase in {q} causes {a} to {v} more {noun}.",
            (f"What causes {a} to {v} more {noun}?", f"an increase in {q}"),
        )
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
    return _one_of(
        rng,
        [
            lambda: (f"Where is the {w.word('noun')}", "?"),
            lambda: (
                f"I {_conj(w.word('verb'), 'past', '1s')} the {w.word('noun')} {rng.choice(('last night', 'this morning', 'yesterday', 'long ago'))}",
                ".",
            ),
            lambda: (
                f"We must {w.word('verb')} the {w.word('noun')} before {rng.choice(('dark', 'morning', 'it is too late', 'they come'))}",
                ".",
            ),
            lambda: (f"Do you {w.word('verb')} the {w.word('noun')}", "?"),
            lambda: (f"It is too {w.word('adj')} to {w.word('verb')} the {w.word('noun')} now", "."),
            lambda: ("You never told me about the " + w.word("noun"), "."),
            lambda: (_cap(w.clause("present")), "."),
        ],
    )


def _fiction_doc(w: _Writer) -> str:
    rng = w.rng
    cast = rng.sample(list(_FIRST_NAMES), rng.randint(2, 3))

    def narrative(w: _Writer) -> str:
        name = rng.choice(cast)
        pron = _FIRST_NAMES[name]
        return _one_of(
            rng,
            [
                lambda: f"{name} {_conj(w.word('verb'), 'past', '3s')} the {w.word('adj')} {w.word('noun')} {w.pp()}.",
                lambda: (
                    f"{_cap(pron)} {_conj(w.word('verb_i'), 'past', '3s')} {w.word('adv')} and {_conj(w.word('verb'), 'past', '3s')} {w.np()[0]}."
                ),
                lambda: (
                    f"{name} looked at {rng.choice([c for c in cast if c != name])} for a long moment, and {pron} {_conj(w.word('verb_i'), 'past', '3s')}."
                ),
                lambda: (
                    f"The {w.word('noun')} was {w.word('adj')}, and {name} could hear the {w.word('noun')} {w.pp()}."
                ),
                lambda: f"{_cap(_possessive(pron))} {_BODY.pick(rng)} rested on the {w.word('adj')} {w.word('noun')}.",
            ],
        )

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
        p = (
            dialogue(w)
            if rng.random() < 0.35
            else w.paragraph([narrative, narrative, narrative], rng.randint(120, 400))
        )
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
_ROLES = [
    ("TENANCY", "Landlord", "Tenant"),
    ("SUPPLY", "Supplier", "Customer"),
    ("LICENCE", "Licensor", "Licensee"),
    ("EMPLOYMENT", "Employer", "Employee"),
    ("SALE", "Seller", "Buyer"),
    ("SERVICES", "Contractor", "Client"),
    ("LOAN", "Lender", "Borrower"),
]
_LAW_HEADINGS = _Words(
    "Definitions|Payment|Term and Termination|Obligations|Liability|Confidentiality|Insurance|"
    "Notices|Assignment|Governing Law|Warranties|Force Majeure|Dispute Resolution",
    s=0.4,
    sep="|",
)


def _law_doc(w: _Writer) -> str:
    rng = w.rng
    kind, a, b = rng.choice(_ROLES)
    n_sections = 0

    def clause(w: _Writer) -> str:
        who, other = rng.choice(((a, b), (b, a)))

        def deadline(ref: str) -> str:
            n = rng.choice((5, 7, 10, 14, 21, 28, 30, 60, 90))
            return f"The {who} shall {w.word('verb')} {w.np()[0]} within {_NUMBER_WORDS[n] if n <= 12 else n} ({n}) days of {w.np()[0]}."

        return _one_of(
            rng,
            [
                deadline,
                lambda ref: (
                    f"Notwithstanding clause {ref}, the {who} may {w.word('verb')} {w.np()[0]} by written notice to the {other}."
                ),
                lambda ref: (
                    f'In this Agreement, "{_cap(w.dom("noun"))}" means {w.np()[0]} that the {who} {_conj(w.word("verb"), "present", "3s")} under clause {ref}.'
                ),
                lambda ref: (
                    f"The {who} shall not be liable for any {w.dom('noun')} arising out of or in connection with {w.np()[0]}."
                ),
                lambda ref: (
                    f"Subject to clause {ref}, the {who} shall {w.word('verb')} {w.np()[0]} in accordance with {w.np()[0]}."
                ),
                lambda ref: (
                    f"Any {w.dom('noun')} shall be {_verb_forms(w.word('verb'), 'en')} pursuant to section {rng.randint(1, 120)} of the {rng.choice(_PLACES.words)} Act {rng.randint(1950, 2020)}."
                ),
                lambda ref: f"The {who} shall {w.word('adv')} {w.word('verb')} the {other} of {w.np()[0]}.",
            ],
            shared=lambda: f"{rng.randint(1, max(1, n_sections))}.{rng.randint(1, 4)}",
        )

    day, month, year = rng.randint(1, 28), rng.choice(_MONTHS), rng.randint(1990, 2024)
    lines = [
        f"{kind} AGREEMENT",
        f'This Agreement is made on {day} {month} {year} between {_name(w)} (the "{a}") and {_name(w)} (the "{b}").',
    ]
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
_SYMPTOMS = _terms(
    "chest pain|shortness of breath|fever|cough|headache|nausea|abdominal pain|dizziness|fatigue|"
    "back pain|rash|vomiting|palpitations|joint pain|sore throat|weight loss|night sweats"
)
_CONDITIONS = _terms(
    "hypertension|type 2 diabetes|asthma|pneumonia|migraine|heart failure|anaemia|gastritis|"
    "cellulitis|bronchitis|appendicitis|urinary tract infection|atrial fibrillation|COPD"
)
_DRUGS = _terms(
    "amoxicillin|paracetamol|ibuprofen|metformin|lisinopril|salbutamol|omeprazole|atorvastatin|"
    "prednisolone|furosemide|aspirin|co-amoxiclav"
)


def _medicine_doc(w: _Writer) -> str:
    rng = w.rng
    sex = rng.choice(("male", "female"))
    pron = "he" if sex == "male" else "she"
    complaint = _SYMPTOMS.pick(rng)

    note = _templates(
        rng,
        [
            lambda: f"The patient reports {_SYMPTOMS.pick(rng)} for {rng.randint(2, 14)} days.",
            lambda: f"{_cap(pron)} denies {_SYMPTOMS.pick(rng)} and {_SYMPTOMS.pick(rng)}.",
            lambda: f"There is no history of {_CONDITIONS.pick(rng)}.",
            lambda: (
                f"On examination the {rng.choice(('chest', 'abdomen', 'heart', 'lung', 'throat'))} is {w.dom('adj')}."
            ),
            lambda: (
                f"{_cap(_DRUGS.pick(rng))} {rng.choice((250, 500, 5, 10, 20, 40, 100))} mg was started {w.dom('adv')}."
            ),
            lambda: f"{_cap(pron)} was {_verb_forms(w.dom('verb'), 'en')} to the {w.dom('noun')} for {w.np()[0]}.",
            lambda: f"The {w.dom('noun')} {_conj(w.dom('verb_i'), 'past', '3s')} after {w.np()[0]}.",
        ],
    )

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

    report = _templates(
        rng,
        [
            lambda subject: (
                f"{_cap(subject[0])} {_conj(w.dom('verb'), 'past', subject[1])} {w.np()[0]} on {rng.choice(_WEEKDAYS)}, officials said."
            ),
            lambda subject: (
                f'"{_cap(w.clause("present"))}," said {_name(w)}, a {w.dom("noun")} for the {w.dom("noun")}.'
            ),
            lambda subject: (
                f"The {w.dom('noun')} comes after {w.np()[0]} {_conj(w.word('verb'), 'past', '3s')} {w.np()[0]} last {rng.choice(('week', 'month', 'year'))}."
            ),
            lambda subject: (
                f"At least {rng.randint(3, 400)} people were {_verb_forms(w.word('verb'), 'en')} in {rng.choice(_PLACES.words)}, according to the {w.dom('noun')}."
            ),
            lambda subject: f"The {w.dom('noun')} did not respond to a request for comment.",
        ],
        shared=lambda: w.np(noun=w.dom("noun")),
    )

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
_INGREDIENTS = _terms(
    """flour|butter|sugar|eggs|milk|onion|garlic|tomatoes|olive oil|salt|black pepper|lemon juice|
    chicken thighs|rice|potatoes|carrots|cream|cheese|basil|parsley|ginger|chilli|mushrooms|spinach|honey|cinnamon|
    yoghurt|lentils|beans|stock|cumin|paprika|vinegar|oats|almonds""",
    s=0.7,
)
_UNITS = {
    "g": (50, 100, 200, 250, 400, 500),
    "ml": (100, 150, 250, 500),
    "tbsp": (1, 2, 3, 4),
    "tsp": (1, 2, 3),
    "cups": (1, 2, 3),
    "pinch of": (1,),
    "handful of": (1, 2),
}
_DISHES = _terms("soup|stew|curry|tart|pie|risotto|salad|bake|loaf|pancakes|traybake|pasta|frittata", s=0.6)


def _recipes_doc(w: _Writer) -> str:
    rng = w.rng
    items = rng.sample(_INGREDIENTS.words, rng.randint(4, 9))
    lines = [
        f"{_cap(w.dom('adj'))} {rng.choice(items)} {_DISHES.pick(rng)}",
        f"Serves {rng.randint(2, 8)}. Ready in {rng.choice((15, 20, 30, 40, 45, 60, 90))} minutes.",
        w.paragraph([], rng.randint(0, 250)) if w.overlap > 0 else "",
        "Ingredients:",
    ]
    lines = [x for x in lines if x]
    units = [rng.choice(list(_UNITS)) for _ in items]
    lines += [f"- {rng.choice(_UNITS[u])} {u} {i}" for u, i in zip(units, items)]
    lines.append("Method:")

    def step(w: _Writer) -> str:
        a, b = rng.sample(items, 2)
        return _one_of(
            rng,
            [
                lambda: (
                    f"Heat the {a} in a large {rng.choice(('pan', 'saucepan', 'frying pan', 'pot'))} over a {rng.choice(('low', 'medium', 'high'))} heat."
                ),
                lambda: (
                    f"Add the {a} and {w.dom('verb')} for {rng.randint(2, 25)} minutes, stirring {rng.choice(('often', 'occasionally', 'gently'))}."
                ),
                lambda: f"{_cap(w.dom('verb'))} the {a} and the {b} together in a {w.dom('adj')} bowl.",
                lambda: f"Season with {a}, then {w.dom('verb')} the {b} {w.dom('adv')}.",
                lambda: (
                    f"Bake for {rng.randint(10, 60)} minutes at {rng.choice((160, 180, 200, 220))}C until {w.dom('adj')}."
                ),
                lambda: f"Meanwhile, {w.dom('verb')} the {a} and set aside.",
            ],
        )

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
    goals = [
        (rng.randint(1, 90), rng.choice((home, away)), _name(w)) for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5)))
    ]
    goals.sort()
    score = {home: 0, away: 0}
    lines = []

    play = _templates(
        rng,
        [
            lambda team: (
                f"{team} {_conj(w.dom('verb'), 'past', '3s')} {w.np(noun=w.dom('noun'))[0]} in the {rng.choice(('first', 'second'))} half."
            ),
            lambda team: (
                f"{_name(w)} {_conj(w.dom('verb'), 'past', '3s')} {_article(w.dom('adj'))} {w.dom('adj')} {w.dom('noun')} from the edge of the box."
            ),
            lambda team: f'"{_cap(w.clause("present"))}," said the {team} manager.',
            lambda team: (
                f"The result leaves {team} {_ordinal(rng.randint(1, 20))} in the table on {rng.randint(3, 80)} points."
            ),
        ],
        shared=lambda: rng.choice((home, away)),
    )

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

    line = _templates(
        rng,
        [
            lambda pct: (
                f"{_cap(w.dom('noun'))} {rng.choice(('rose', 'fell', 'climbed', 'slipped'))} {pct} to {_money(rng)} in the {quarter} quarter."
            ),
            lambda pct: (
                f"Net income was {_money(rng)}, or ${rng.randint(0, 9)}.{rng.randint(10, 99)} per share, compared with {_money(rng)} a year earlier."
            ),
            lambda pct: f"The company {_conj(w.dom('verb'), 'past', '3s')} its full-year {w.dom('noun')} to {pct}.",
            lambda pct: (
                f"Shares of {company} {rng.choice(('rose', 'fell'))} {pct} to ${rng.randint(5, 400)}.{rng.randint(10, 99)} in {w.dom('adj')} trading."
            ),
            lambda pct: (
                f"Analysts at {_SURNAMES.pick(rng)} {_CO_SUFFIX.pick(rng)} said the {w.dom('adj')} {w.dom('noun')} was {w.word('adj')}."
            ),
            lambda pct: (
                f"Operating margin {rng.choice(('widened', 'narrowed'))} to {pct} from {rng.randint(0, 40)}.{rng.randint(0, 9)}%."
            ),
        ],
        shared=lambda: f"{rng.randint(0, 40)}.{rng.randint(0, 9)}%",
    )

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

    guide = _templates(
        rng,
        [
            lambda: f"The {w.dom('adj')} {w.dom('noun')} of {place} is best explored {w.dom('adv')}.",
            lambda: (
                f"Take the {rng.choice(('train', 'bus', 'ferry', 'coach'))} from {other} to {place}; the journey takes about {rng.randint(1, 9)} hours."
            ),
            lambda: (
                f"Rooms at the {_SURNAMES.pick(rng)} {rng.choice(('Hotel', 'Inn', 'Guesthouse'))} start at {rng.randint(4, 30) * 5} euros a night."
            ),
            lambda: (
                f"Don't miss the {w.dom('adj')} {w.dom('noun')}, which {_conj(w.word('verb'), 'present', '3s')} {w.np()[0]}."
            ),
            lambda: (
                f"The {_SEASONS.pick(rng)} months are {w.dom('adj')}, with temperatures around {rng.randint(5, 35)} degrees."
            ),
            lambda: f"Locals {w.dom('verb')} the {w.dom('noun')} {w.dom('adv')}.",
        ],
    )

    parts, target = [f"{place}: a travel guide"], w.target_length()
    for section in rng.sample(_TRAVEL_SECTIONS, len(_TRAVEL_SECTIONS)):
        if sum(len(x) + 1 for x in parts) >= target:
            break
        parts.append(f"{section}\n{w.paragraph([guide, guide], rng.randint(100, 320))}")
    return "\n".join(parts)


# domain -> (lexicon, tense, document writer)
DOMAINS = {
    "science": (_SCIENCE, "present", _science_doc),
    "fiction": (_FICTION, "past", _fiction_doc),
    "law": (_LAW, "present", _law_doc),
    "medicine": (_MEDICINE, "past", _medicine_doc),
    "news": (_NEWS, "past", _news_doc),
    "recipes": (_RECIPES, "present", _recipes_doc),
    "sports": (_SPORTS, "past", _sports_doc),
    "finance": (_FINANCE, "past", _finance_doc),
    "travel": (_TRAVEL, "present", _travel_doc),
}
