"""`pickapic`: the Pick-a-Pic v2 official rule (``yuvalkirstain/PickScore``,
``trainer/scripts/eval_preference_predictor.py``). The two scores become probabilities by a softmax; a tie is
predicted when ``|p0 - p1| <= t``; a match earns 1, a half-tie (exactly one of label and prediction is a tie) 0.5,
anything else 0; ``t`` is the first best of 0, 0.1, ..., 1 on ``validation_unique`` (chosen by the metric, see
``rrbench/metrics/pairs.py``). A verdict judge's answer is used as given: it is never re-read through a score gap.
"""

from __future__ import annotations

from rrbench.metrics._rules import TIE, TIE_KINDS, Meta, PairClass, PairRule, order_class, pair_scores, predicted_class
from rrbench.metrics._ties import prob_gap
from rrbench.registry import rule
from rrbench.types import Prediction


@rule("pickapic",
      description="Pick-a-Pic v2 official: tie when |p0 - p1| <= t, half credit for a half-tie, t chosen on validation")
class PickAPic(PairRule):
    knob = "threshold"

    def predicted(self, pred: Prediction, knob: float, meta: Meta) -> PairClass | None:
        scores = pair_scores(pred)
        if pred.verdict is not None or scores is None:
            return predicted_class(pred)
        return TIE if prob_gap(*scores) <= knob else order_class(*scores)

    def credit(self, human: PairClass, predicted: PairClass) -> float:
        human_tie, predicted_tie = human in TIE_KINDS, predicted in TIE_KINDS
        if human_tie and predicted_tie:
            return 1.0
        if human_tie or predicted_tie:
            return 0.5
        return 1.0 if human == predicted else 0.0
