"""One vocabulary for the paper's claims checked on our results: holds, does not hold, inconclusive.

Every notebook computes its verdicts from its results files and shows them with `table`; the
reference summaries keep them with `summary`. A claim is keyed by a stable identifier
(`fusion.beats_best_specialist.fused:mlp:sequence`): the results JSON and `compare-results` use
the identifier, and the sentence beside it is a label that can be reworded without breaking a
comparison. `holds` is None when the experiment cannot answer the claim; its numbers say why.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def word(holds: bool | None) -> str:
    """The verdict as a reader sees it."""
    return INCONCLUSIVE if holds is None else HOLDS if holds else DOES_NOT_HOLD


@dataclass(frozen=True)
class Verdict:
    id: str  # stable: results files and compare-results key on it
    claim: str  # the sentence a reader sees
    holds: bool | None
    numbers: str = ""  # what the verdict was computed from

    def __post_init__(self):
        if self.holds is not None:
            object.__setattr__(self, "holds", bool(self.holds))

    @property
    def word(self) -> str:
        return word(self.holds)


def summary(verdicts: list[Verdict]) -> dict[str, dict]:
    """Identifier -> {claim, holds}, as the reference summaries keep them."""
    ids = [v.id for v in verdicts]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ValueError(f"claim identifiers used twice: {', '.join(duplicated)}")
    return {v.id: {"claim": v.claim, "holds": v.holds} for v in verdicts}


def table(verdicts: list[Verdict]):
    """The verdicts as every notebook shows them: one row per claim, indexed by its identifier."""
    import pandas as pd

    rows = [{"claim id": v.id, "claim": v.claim, "verdict": v.word, "numbers": v.numbers} for v in verdicts]
    return pd.DataFrame(rows, columns=["claim id", "claim", "verdict", "numbers"]).set_index("claim id")


def count_line(verdicts: list[Verdict], scale: str) -> str:
    """'6 of 12 claims hold at scale tiny (2 inconclusive)'."""
    held = sum(v.holds is True for v in verdicts)
    unknown = sum(v.holds is None for v in verdicts)
    return f"{held} of {len(verdicts)} claims hold at scale {scale}" + (f" ({unknown} inconclusive)" if unknown else "")
