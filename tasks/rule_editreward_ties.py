"""`editreward-ties`: EditReward's "accuracy with ties" for scalar reward models on 2-candidate rows
(github.com/TIGER-AI-Lab/EditReward, ``EditReward/evaluate/eval_bench.py``, ``calc_accuracy_with_ties_for_edit_
reward_bench``, lines 461-485): a tie is predicted when |s_A - s_B| <= epsilon; epsilon is swept over 0 and every
observed gap and the first best accuracy is kept (Deutsch et al. 2023). Human labels are read as the scorer reads
them (``get_pairwise_gt``, see ``tasks/_editreward_evalbench.py``), quirks included: a plain ``A=B`` counts as "A
preferred" and ``B<A`` as "B preferred". A verdict judge's answer is used as given."""

from __future__ import annotations

from rrbench.metrics._rules import TIE, Meta, PairClass, PairRule
from rrbench.metrics._ties import calibrated_class
from rrbench.registry import rule
from rrbench.tasks._editreward_evalbench import pairwise_gt
from rrbench.tasks.rule_editreward import letters
from rrbench.types import Label, Prediction

_GT_CLASS: dict[int, PairClass] = {1: 0, -1: 1, 0: TIE}


def eval_bench_class(label: Label, meta: Meta) -> PairClass | None:
    """The human class as eval_bench.py reads the row's ranking string (rrbench's own reading when there is none)."""
    ranking = meta.get("ranking")
    if not isinstance(ranking, str):
        return PairRule().human(label, meta)
    return _GT_CLASS[pairwise_gt(ranking, *letters(meta))]


@rule("editreward-ties",
      description="EditReward eval_bench.py accuracy with ties: tie when |s0 - s1| <= epsilon (swept), labels read as "
                  "its get_pairwise_gt reads them")
class EditRewardTies(PairRule):
    knob = "epsilon"

    def human(self, label: Label, meta: Meta) -> PairClass | None:
        if PairRule().human(label, meta) is None:
            return None  # unknown labels stay label-skipped
        return eval_bench_class(label, meta)

    def predicted(self, pred: Prediction, knob: float, meta: Meta) -> PairClass | None:
        return calibrated_class(pred, knob)
