"""Tie policies: how one pairwise prediction earns credit against a human label. The policy names are public API.

A pair's human class and predicted class are ``0`` / ``1`` (the preferred candidate) or a tie kind (``"tie"``,
``"both_good"``, ``"both_bad"``). Two policies derive the predicted class from the score gap with a knob chosen on
data (``tie-calibrated``: epsilon; ``pickapic``: threshold t); the others take the judge's class as given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from rrbench.metrics._core import trial_failure
from rrbench.types import FailureKind, Label, LabelKind, Prediction, SampleResult, UserError, Verdict

PairClass: TypeAlias = int | str

TIE = "tie"
BOTH_GOOD, BOTH_BAD = "both_good", "both_bad"
TIE_KINDS = frozenset({"tie", "both_good", "both_bad"})

TIE_POLICIES: dict[str, str] = {
    "exact": "3-class exact match (A / B / tie); every tie kind, human or predicted, is the one class 'tie'",
    "ties-excluded": "human ties skipped (label-skipped); a predicted tie is wrong",
    "genai-4way": "GenAI-Bench official 4 classes (A, B, both good, both bad); a bare [[A=B]] fits either; a score "
                  "tie is both good at or above the tie split (options or the run's median score), else both bad",
    "tie-calibrated": "Deutsch et al. 2023: tie when |s0 - s1| <= epsilon, epsilon swept for the best 3-class accuracy",
    "pickapic": "Pick-a-Pic v2 official: tie when |p0 - p1| <= t, half credit for a half-tie, t chosen on validation",
    "imagereward": "ImageRewardDB: only pairs with a strict human order; a model tie is wrong",
}

# Policies under which a human tie is not a scorable label.
_SKIPS_HUMAN_TIES = frozenset({"ties-excluded", "imagereward"})

_VERDICT_CLASS: dict[Verdict, PairClass] = {
    Verdict.A: 0,
    Verdict.B: 1,
    Verdict.TIE: "tie",
    Verdict.BOTH_GOOD: "both_good",
    Verdict.BOTH_BAD: "both_bad",
}


def check_tie_policy(name: str) -> None:
    if name not in TIE_POLICIES:
        raise UserError(f"unknown tie policy {name!r} (known: {', '.join(TIE_POLICIES)})")


# --------------------------------------------------------------------------------------------------- classes


def human_class(label: Label) -> PairClass | None:
    """The class of a two-candidate label, or None when the label is not one (unknown, ranking, bad index)."""
    if label.kind is LabelKind.WINNER and label.winner in (0, 1):
        return label.winner
    if label.kind.is_tie:
        return label.kind.value
    return None


def pair_scores(pred: Prediction) -> tuple[float, float] | None:
    """The two scores when both are real numbers; a NaN would compare as a silent tie, so it is unusable."""
    if len(pred.scores) != 2:
        return None
    s0, s1 = pred.scores
    if s0 is None or s1 is None or not (math.isfinite(s0) and math.isfinite(s1)):
        return None
    return float(s0), float(s1)


def usable(pred: Prediction | None) -> bool:
    return pred is not None and (pred.verdict is not None or pair_scores(pred) is not None)


def predicted_class(pred: Prediction) -> PairClass | None:
    """0 / 1 for a winner or a tie kind: from the verdict if set, else from the scores; None if neither is usable."""
    if pred.verdict is not None:
        return _VERDICT_CLASS[pred.verdict]
    scores = pair_scores(pred)
    return None if scores is None else _order(*scores)


def _order(s0: float, s1: float) -> PairClass:
    return 0 if s0 > s1 else 1 if s1 > s0 else TIE


def _merged(cls: PairClass) -> PairClass:
    return TIE if cls in TIE_KINDS else cls


def prob_gap(s0: float, s1: float) -> float:
    """|p0 - p1| for p = softmax(s0, s1); equal to |tanh((s0 - s1) / 2)|, which cannot overflow on large logits."""
    return abs(math.tanh((s0 - s1) / 2))


def policy_class(pred: Prediction, policy: str, epsilon: float = 0.0, threshold: float = 0.0) -> PairClass | None:
    """The predicted class as the policy reads it: the calibrated policies re-derive ties from the score gap.

    A trial with only a verdict (a categorical judge) keeps its verdict under every policy.
    """
    scores = pair_scores(pred)
    if policy == "tie-calibrated" and scores is not None:
        return TIE if abs(scores[0] - scores[1]) <= epsilon else _order(*scores)
    if policy == "pickapic" and scores is not None:
        return TIE if prob_gap(*scores) <= threshold else _order(*scores)
    if policy == "genai-4way" and pred.verdict is None and scores is not None and scores[0] == scores[1]:
        # A score judge cannot say "both good" or "both bad": its tie is split by the tie-split score.
        return BOTH_GOOD if scores[0] >= threshold else BOTH_BAD
    return predicted_class(pred)


# --------------------------------------------------------------------------------------------------- credit


def skips_label(policy: str, human: PairClass) -> bool:
    return policy in _SKIPS_HUMAN_TIES and human in TIE_KINDS


def class_credit(policy: str, human: PairClass, predicted: PairClass) -> float:
    if policy == "genai-4way":
        return 1.0 if _genai_match(human, predicted) else 0.0
    if policy == "pickapic":
        return _pickapic_credit(human, predicted)
    # exact and tie-calibrated: 3 classes; ties-excluded and imagereward: human ties never get here, so a
    # predicted tie (merged to "tie") can never match a winner.
    return 1.0 if _merged(human) == _merged(predicted) else 0.0


def _genai_match(human: PairClass, predicted: PairClass) -> bool:
    if human == TIE:
        return predicted in TIE_KINDS
    if human in TIE_KINDS:
        # The official scorer accepts a bare [[A=B]] for either tie kind.
        return predicted in (human, TIE)
    return predicted == human


def _pickapic_credit(human: PairClass, predicted: PairClass) -> float:
    human_tie, predicted_tie = human in TIE_KINDS, predicted in TIE_KINDS
    if human_tie and predicted_tie:
        return 1.0
    if human_tie or predicted_tie:
        return 0.5
    return 1.0 if human == predicted else 0.0


def pair_credit(
    label: Label, pred: Prediction, tie_policy: str, *, epsilon: float = 0.0, threshold: float = 0.0
) -> float | None:
    """Credit of one pairwise trial: 1, 0, or 0.5 (pickapic).

    None when the label is skipped under this policy (an unknown or non-pair label always; a human tie under
    ``ties-excluded`` and ``imagereward``) and when the prediction holds nothing to compare (no verdict and no
    two finite scores): the metrics count the latter as a parse failure, never as a silent 0.
    """
    check_tie_policy(tie_policy)
    human = human_class(label)
    if human is None or skips_label(tie_policy, human):
        return None
    predicted = policy_class(pred, tie_policy, epsilon, threshold)
    return None if predicted is None else class_credit(tie_policy, human, predicted)


# --------------------------------------------------------------------------------------------------- pair units


@dataclass(frozen=True)
class PairUnit:
    """One pairwise comparison of one trial, in the (first, second) order of the pair.

    ``failure`` is set when the trial failed or its prediction has nothing to compare for this pair.
    """

    index: int  # position of the sample in the results
    human: PairClass
    prediction: Prediction | None
    failure: FailureKind | None


def merit(label: Label) -> tuple[float, ...] | None:
    """Human merit per candidate, higher = better: negated ranks (1 = best) or human scores; None otherwise."""
    if label.kind is LabelKind.RANKING and label.ranks is not None and len(label.ranks) >= 2:
        return tuple(-float(r) for r in label.ranks)
    if label.kind is LabelKind.SCORES and label.scores is not None and len(label.scores) >= 2:
        return tuple(float(s) for s in label.scores)
    return None


def label_pairs(label: Label) -> list[tuple[int, int, PairClass]]:
    """The comparisons a label holds: one for a pair label, every candidate pair for a ranking or score label."""
    human = human_class(label)
    if human is not None:
        return [(0, 1, human)]
    values = merit(label)
    if values is None:
        return []
    k = len(values)
    return [(i, j, _order(values[i], values[j])) for i in range(k) for j in range(i + 1, k)]


def pair_units(index: int, result: SampleResult, policy: str) -> list[PairUnit]:
    """Every comparison of every trial that the policy scores (empty: the sample is label-skipped)."""
    if result.skipped:
        return []
    pairs = [p for p in label_pairs(result.label) if not skips_label(policy, p[2])]
    k = _n_candidates(result)
    units = []
    for trial in result.trials:
        for i, j, human in pairs:
            sub = _sub_prediction(trial.prediction, i, j, k)
            failure = trial_failure(trial) or (None if usable(sub) else FailureKind.PARSE)
            units.append(PairUnit(index, human, sub, failure))
    return units


def _n_candidates(result: SampleResult) -> int:
    values = merit(result.label)
    return 2 if values is None else len(values)


def _sub_prediction(pred: Prediction | None, i: int, j: int, k: int) -> Prediction | None:
    if pred is None:
        return None
    if k == 2:
        return pred  # a plain pair keeps its verdict
    scores = pred.scores
    # A verdict names one of two shown candidates, so it means nothing for a pair taken out of K > 2.
    return Prediction((scores[i] if i < len(scores) else None, scores[j] if j < len(scores) else None))


# --------------------------------------------------------------------------------------------------- calibration

Block = Sequence[PairUnit]  # the comparisons that make one counted unit (one trial-pair, or a whole group)
_NEVER = (math.inf, -math.inf)


def epsilon_interval(unit: PairUnit) -> tuple[float, float]:
    """The epsilons [lo, hi) for which the tie-calibrated prediction of this unit is right (lo >= hi: never).

    With gap d = |s0 - s1|: a human tie is matched once epsilon >= d; a human winner only while epsilon < d, and
    only if the scores point to it. A verdict-only trial does not depend on epsilon. Bounds are open to -inf, so a
    user grid with a negative epsilon (no ties at all) is counted as the direct rule would count it.
    """
    assert unit.prediction is not None
    scores = pair_scores(unit.prediction)
    if scores is None:
        verdict = predicted_class(unit.prediction)
        right = verdict is not None and _merged(unit.human) == _merged(verdict)
        return (-math.inf, math.inf) if right else _NEVER
    gap = abs(scores[0] - scores[1])
    if unit.human in TIE_KINDS:
        return (-math.inf if gap == 0 else gap), math.inf  # equal scores are a tie at any epsilon
    return (-math.inf, gap) if _order(*scores) == unit.human else _NEVER


def observed_gaps(blocks: Sequence[Block]) -> set[float]:
    gaps = set()
    for block in blocks:
        for unit in block:
            scores = pair_scores(unit.prediction) if unit.prediction is not None else None
            if scores is not None:
                gaps.add(abs(scores[0] - scores[1]))
    return gaps


def best_epsilon(blocks: Sequence[Block], grid: Sequence[float] | None) -> float:
    """The epsilon with the most blocks right (the smallest on equal counts), in O(n log n).

    A block is right exactly where the intervals of its units overlap, so counting, for each candidate epsilon, how
    many overlaps contain it answers every candidate at once; trying each epsilon on each unit would be quadratic.
    """
    candidates = np.array(sorted(set(grid) if grid else {0.0} | observed_gaps(blocks)), dtype=float)
    spans = [_block_span(b) for b in blocks]
    lows = np.sort(np.array([lo for lo, hi in spans if lo < hi], dtype=float))
    highs = np.sort(np.array([hi for lo, hi in spans if lo < hi], dtype=float))
    # Any interval with hi <= e also has lo < e, so (started by e) - (ended by e) counts those containing e.
    right = np.searchsorted(lows, candidates, side="right") - np.searchsorted(highs, candidates, side="right")
    return float(candidates[int(np.argmax(right))])  # argmax keeps the first, i.e. smallest, epsilon


def _block_span(block: Block) -> tuple[float, float]:
    spans = [epsilon_interval(u) for u in block]
    return max(lo for lo, _ in spans), min(hi for _, hi in spans)


def best_threshold(blocks: Sequence[Block], grid: Sequence[float], credit: Callable[[Block, float], float]) -> float:
    """The threshold with the highest total credit over the blocks (the smallest on equal totals).

    Totals rather than means: the denominator is the same for every threshold, and sums of halves compare exactly.
    """
    best, best_total = min(grid), -1.0
    for t in sorted(grid):
        total = sum(credit(b, t) for b in blocks)
        if total > best_total:
            best, best_total = t, total
    return float(best)
