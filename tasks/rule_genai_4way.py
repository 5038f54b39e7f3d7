"""`genai-4way`: GenAI-Bench's official 4-way rule (github.com/TIGER-AI-Lab/GenAI-Bench, ``inference.py``).

The official scorer (``parse_response``, inference.py lines 147-174) reads a judge's answer with
``re.search(r"\\[\\[.*\\]\\]", response)`` (line 157: greedy, so on one line it runs from the first ``[[`` to the last
``]]``; ``.`` never crosses a newline) and compares the match as an exact string: ``[[A>B]]`` or ``[[A>>B]]`` is right
for a ``leftvote``, ``[[B>A]]`` or ``[[B>>A]]`` for a ``rightvote``, ``[[A=B=Good]]`` or ``[[A=B]]`` for a ``tievote``,
``[[A=B=Bad]]`` or ``[[A=B]]`` for a ``bothbad_vote`` (lines 162-173). Quirks kept, because they are the rule:

- case matters: ``[[a>b]]`` matches nothing and is wrong;
- ``Verdict: [[B>A]] ... options: [[A>B]] [[B>A]]`` on one line is one match, the whole span, and is wrong;
- the first line holding a ``[[...]]`` wins, so an answer that states ``[[B>A]]`` and restates the four options on a
  later line is read as ``[[B>A]]``;
- an answer with no ``[[...]]`` is wrong (line 159), and the accuracy is the mean over all rows (line 266).

rrbench's lenient reader (the last bracketed verdict, any case, spaces allowed) stays available as the rule
``genai-4way-lenient``; this rule reports in its notes how many answers the two readings disagree on.

Judges that answer with scores, not text (critics, scalar reward models), have no official reading: their higher
score wins and a score tie is "both good" at or above the tie split, "both bad" below it (see ``tasks/genai_bench.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rrbench.metrics._rules import (
    BOTH_BAD,
    BOTH_GOOD,
    TIE,
    TIE_KINDS,
    UNREAD,
    Meta,
    PairClass,
    PairRule,
    answered_text,
    order_class,
    pair_scores,
    predicted_class,
    shown_first,
)
from rrbench.metrics._ties import PairUnit
from rrbench.registry import rule
from rrbench.types import Prediction, Trial

_OFFICIAL = re.compile(r"\[\[.*\]\]")  # inference.py line 157 (the `regex` module reads this pattern the same way)

# The exact strings the official table accepts (inference.py lines 162-173), as classes in the shown order.
_VOTES: dict[str, PairClass] = {
    "[[A>B]]": 0, "[[A>>B]]": 0,
    "[[B>A]]": 1, "[[B>>A]]": 1,
    "[[A=B=Good]]": BOTH_GOOD, "[[A=B=Bad]]": BOTH_BAD,
    "[[A=B]]": TIE,  # right for either tie vote
}
NO_VERDICT = "no verdict"


def official_vote(text: str) -> str | None:
    """The official scorer's reading of an answer: the greedy ``[[...]]`` match, or None."""
    found = _OFFICIAL.search(text)
    return None if found is None else found.group()


def official_class(text: str) -> PairClass:
    """The class of an answer in the order the candidates were shown; an unlisted string never matches."""
    vote = official_vote(text)
    if vote is None:
        return NO_VERDICT
    return _VOTES.get(vote, f"unmatched {vote}")


def _in_sample_order(cls: PairClass, trial: Trial) -> PairClass:
    return 1 - cls if isinstance(cls, int) and not shown_first(trial) else cls


def four_way_match(human: PairClass, predicted: PairClass) -> bool:
    if human == TIE:  # a label that does not say which tie (not in GenAI-Bench itself)
        return predicted in TIE_KINDS
    if human in TIE_KINDS:
        return predicted in (human, TIE)  # a bare [[A=B]] is right for either tie vote
    return predicted == human


@rule("genai-4way",
      description="GenAI-Bench official: the greedy [[...]] of the answer matched as an exact string (4 classes); "
                  "score judges: higher score wins, a score tie is both good at or above the tie split")
class GenAIFourWay(PairRule):
    knob = "tie_split"

    def read(self, trial: Trial, meta: Meta) -> Any:
        answer = answered_text(trial)
        if answer is None:
            return UNREAD
        return _in_sample_order(official_class(answer[0]), trial)

    def predicted(self, pred: Prediction, knob: float, meta: Meta) -> PairClass | None:
        scores = pair_scores(pred)
        if pred.verdict is not None or scores is None:
            return predicted_class(pred)
        if scores[0] == scores[1]:
            # A score judge cannot say "both good" or "both bad": its tie is split by the tie-split score.
            return BOTH_GOOD if scores[0] >= knob else BOTH_BAD
        return order_class(*scores)

    def credit(self, human: PairClass, predicted: PairClass) -> float:
        return 1.0 if four_way_match(human, predicted) else 0.0

    def notes(self, units: Sequence[PairUnit]) -> dict[str, Any]:
        read = [u for u in units if u.read is not None]
        if not read:
            return {}
        differ = sum(1 for u in read if u.read != _lenient(u))
        return {"answers_read": len(read), "lenient_reading_differs": differ}


def _lenient(unit: PairUnit) -> PairClass:
    """The lenient reading of the same answer; finding no verdict is the same outcome as the official none."""
    cls = None if unit.prediction is None else predicted_class(unit.prediction)
    return NO_VERDICT if cls is None else cls
