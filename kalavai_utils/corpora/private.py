"""Phase 2's private English-like domains (patents, abstracts, regulations)."""

from __future__ import annotations

from .english import _cap, _conj, _Lexicon, _ordinal, _templates, _verb_forms, _Writer

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

    claim_body = _templates(
        rng,
        [
            lambda: (
                f"a {w.dom('adj')} {w.dom('noun')} {w.dom('adv')} {_verb_forms(w.dom('verb'), 'en')} to the {w.dom('noun')};"
            ),
            lambda: (
                f"wherein the {w.dom('noun')} {_conj(w.dom('verb'), 'present', '3s')} the {w.dom('adj')} {w.dom('noun')};"
            ),
            lambda: (
                f"a {w.dom('noun')} {_verb_forms(w.dom('verb'), 'en')} within the {w.dom('noun')} and {_verb_forms(w.dom('verb'), 'en')} to {w.np()[0]};"
            ),
            lambda: (
                f"the {w.dom('noun')} having a {w.dom('adj')} {w.dom('noun')} that {_conj(w.dom('verb_i'), 'present', '3s')} from the {w.dom('noun')};"
            ),
        ],
    )

    description = _templates(
        rng,
        [
            lambda: (
                f"In one embodiment, the {w.dom('noun')} is {_verb_forms(w.dom('verb'), 'en')} to the {w.dom('noun')}."
            ),
            lambda: f"It is an object of the present invention to provide {w.np()[0]}.",
            lambda: f"The {w.dom('noun')} may be {w.dom('adj')} or {w.dom('adj')}, depending on {w.np()[0]}.",
        ],
    )

    lines = [
        f"{_cap(thing)} and method of {_verb_forms(w.dom('verb'), 'ing')} the same",
        f"Abstract: {w.paragraph([description, description], rng.randint(120, 300))}",
        "Claims:",
    ]
    n, target = 0, w.target_length()
    while sum(len(x) + 1 for x in lines) < target:
        n += 1
        head = (
            f"{n}. The {thing} of claim {rng.randint(1, n - 1)}, wherein"
            if n > 1 and rng.random() < 0.7
            else f"{n}. A {thing}, comprising:"
        )
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

    finding = _templates(
        rng,
        [
            lambda: (
                f"The {w.dom('noun')} was {w.dom('adv')} {_verb_forms(w.dom('verb'), 'en')} with {w.np()[0]} (OR {rng.randint(11, 40) / 10}, 95% CI {rng.randint(10, 15) / 10}-{rng.randint(16, 60) / 10}; p = 0.0{rng.randint(1, 4)})."
            ),
            lambda: (
                f"We {_conj(w.dom('verb'), 'past', '1p')} the {w.dom('adj')} {w.dom('noun')} in {rng.randint(40, 4000)} participants."
            ),
            lambda: (
                f"The {w.dom('adj')} {w.dom('noun')} {_conj(w.dom('verb_i'), 'past', '3s')} by {rng.randint(5, 60)}% compared with placebo."
            ),
            lambda: (
                f"These findings suggest that {w.np()[0]} {_conj(w.dom('verb_i'), 'present', '3s')} with {w.np()[0]}."
            ),
        ],
    )

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

    recital = _templates(
        rng,
        [
            lambda: f"It is necessary to {w.dom('verb')} {w.dom('adj')} rules on {w.np()[0]}.",
            lambda: f"Member States should {w.dom('verb')} the {w.dom('adj')} {w.dom('noun')} {w.dom('adv')}.",
            lambda: (
                f"The measures provided for in this Regulation are in accordance with the opinion of the {w.dom('noun')} committee."
            ),
        ],
    )

    article = _templates(
        rng,
        [
            lambda: (
                f"The {w.dom('adj')} authorities shall {w.dom('verb')} the {w.dom('noun')} referred to in Article {rng.randint(1, 40)}."
            ),
            lambda: (
                f"By way of derogation from paragraph {rng.randint(1, 5)}, Member States may {w.dom('verb')} {w.np()[0]}."
            ),
            lambda: f"This Regulation shall {w.dom('verb_i')} {w.dom('adv')} in all Member States.",
        ],
    )

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
    lines.append(
        f"This Regulation shall enter into force on the {_ordinal(rng.randint(1, 20))} day following its publication."
    )
    return "\n".join(lines)


# domain -> (lexicon, tense, document writer)
DOMAINS = {
    "patents": (_PATENTS, "present", _patents_doc),
    "abstracts": (_ABSTRACTS, "past", _abstracts_doc),
    "regulations": (_REGULATIONS, "present", _regulations_doc),
}
