"""`editreward-exact`: EditReward-Bench's official rule for judges (github.com/TIGER-AI-Lab/EditReward, commit
edb027e, ``EditReward/evaluate/inference_{2,3,4}pair_hf.py``).

- The judge's answer is read by the scripts' ``parse_pairwise_response`` (see ``tasks/_editreward_parse.py``) into
  a vote string (``A>B``, ``B>A``, ``A=B``, ``A>C``, ..., ``Unknown``) and compared with the row's ``ranking`` as an
  exact string (2pair line 130, 3pair line 169): a ``ranking`` of ``A=B=Good`` or ``B<A`` can never be right, and an
  unreadable answer (``Unknown``) is a wrong comparison, not a failure.
- A failed call (no answer text) is dropped before anything is counted (2pair lines 121-122 and 157-159, the
  accuracy's denominator is the non-failed rows, line 327); that is this rule with failures excluded.
- K=3/4 groups (3pair lines 392-405): groups are formed from the non-failed rows only, so a group whose every call
  failed leaves the denominator, and a group is right only when all its C(K, 2) comparisons are present and right
  (a group with a failed comparison is short, hence wrong). Per-comparison accuracy uses the same non-failed rows.

Judges that answer with scores (critics, scalar reward models) have no answer text: their vote is the same kind of
string made from the two scores (``A>B``/``B>A``, ``A=B`` on equal scores; for K=3/4 the letters of the row's
``comparison_type``), compared exactly in the same way.
"""

from __future__ import annotations

from typing import Any

from rrbench.metrics._rules import (
    TIE_KINDS,
    UNREAD,
    Meta,
    PairClass,
    PairRule,
    answered_text,
    predicted_class,
    shown_first,
)
from rrbench.prompts import answer_format
from rrbench.registry import rule
from rrbench.tasks._editreward_parse import read_2pair, read_npair
from rrbench.types import Label, Prediction, Trial

_SIZES = {"2pair": 2, "3pair": 3, "4pair": 4}
_GROUP_SIZE_K = {1: 2, 3: 3, 6: 4}


def group_k(meta: Meta) -> int:
    """K of the row: its ``dataset`` value, else its group size C(K, 2), else 2."""
    k = _SIZES.get(str(meta.get("dataset")))
    if k is None:
        size = meta.get("group_size")
        k = _GROUP_SIZE_K.get(size, 2) if isinstance(size, int) else 2
    return k


def letters(meta: Meta) -> tuple[str, str]:
    """The letters of candidate_1 and candidate_2 (``comparison_type`` ``AvsC`` -> A, C; none: A, B)."""
    ct = meta.get("comparison_type")
    if isinstance(ct, str) and len(ct) == 4 and ct[1:3] == "vs":
        return ct[0], ct[3]
    return "A", "B"


def vote_from_class(cls: PairClass, meta: Meta) -> str:
    first, second = letters(meta) if group_k(meta) > 2 else ("A", "B")
    if cls == 0:
        return f"{first}>{second}"
    if cls == 1:
        return f"{second}>{first}"
    return f"{first}={second}" if cls in TIE_KINDS else f"unknown {cls}"


def _swap(vote: str) -> str:
    left, sep, right = vote.partition(">")
    return f"{right}>{left}" if sep and len(left) == 1 and len(right) == 1 else vote


@rule("editreward-exact",
      description="EditReward-Bench official: the answer read by the scripts' parser, compared with the ranking as an "
                  "exact string; failed calls dropped, a group counts when any of its calls answered")
class EditRewardExact(PairRule):
    group_failure = "all"

    def human(self, label: Label, meta: Meta) -> PairClass | None:
        cls = super().human(label, meta)
        if cls is None:
            return None
        ranking = meta.get("ranking")
        return ranking if isinstance(ranking, str) else vote_from_class(cls, meta)

    def read(self, trial: Trial, meta: Meta) -> Any:
        answer = answered_text(trial)
        if answer is None:
            return UNREAD
        k = group_k(meta)
        if k > 2 and answer_format(answer[1]) != "editreward":
            # The K=3/4 parser reads letters as the candidates' letters (A, B, C, D); another prompt (rrbench's
            # own) calls the two shown images A and B, so its verdict is taken from the recorded prediction.
            return UNREAD
        if k == 2:
            vote = read_2pair(answer[0])
            return vote if shown_first(trial) else _swap(vote)
        first, second = letters(meta)
        vote, positional = read_npair(answer[0], f"{first}vs{second}", k)
        # Left/Right name shown positions; letters name candidates whatever the order they were shown in.
        return _swap(vote) if positional and not shown_first(trial) else vote

    def predicted(self, pred: Prediction, knob: float, meta: Meta) -> PairClass | None:
        cls = predicted_class(pred)
        return None if cls is None else vote_from_class(cls, meta)

    def credit(self, human: PairClass, predicted: PairClass) -> float:
        return 1.0 if human == predicted else 0.0
