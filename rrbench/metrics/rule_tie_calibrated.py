"""`tie-calibrated`: tie-calibrated accuracy (Deutsch et al. 2023, arXiv 2305.14324). A tie is predicted when the
two scores differ by at most epsilon; epsilon is swept over 0 and every observed score gap (or the protocol's
``options.epsilon_grid``) and the best 3-class accuracy is kept, the smallest epsilon on equal accuracy. A verdict
is a verdict: a categorical judge's answer is never turned into a tie by the score gap."""

from __future__ import annotations

from rrbench.metrics._rules import Meta, PairClass, PairRule
from rrbench.metrics._ties import calibrated_class
from rrbench.registry import rule
from rrbench.types import Prediction


@rule("tie-calibrated",
      description="Deutsch et al. 2023: tie when |s0 - s1| <= epsilon, epsilon swept for the best 3-class accuracy")
class TieCalibrated(PairRule):
    knob = "epsilon"

    def predicted(self, pred: Prediction, knob: float, meta: Meta) -> PairClass | None:
        return calibrated_class(pred, knob)
