"""From recorded trials to pairwise comparisons under a tie/credit rule, and the calibration of the rules' knobs.

The rules themselves are plug-ins (see ``_rules.py``); this module turns a sample result into comparison units
(one per trial for a pair label, one per candidate pair for a ranking or score label), asks the rule for the human
and predicted classes, and chooses the knob of a calibrated rule (the tie epsilon, the Pick-a-Pic threshold).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rrbench.metrics._core import trial_failure
from rrbench.metrics._rules import (
    TIE,
    TIE_KINDS,
    UNREAD,
    Meta,
    PairClass,
    PairRule,
    get_rule,
    merged,
    order_class,
    pair_scores,
    predicted_class,
    usable,
)
from rrbench.types import FailureKind, Label, LabelKind, Prediction, SampleResult, Trial


def prob_gap(s0: float, s1: float) -> float:
    """|p0 - p1| for p = softmax(s0, s1); equal to |tanh((s0 - s1) / 2)|, which cannot overflow on large logits."""
    return abs(math.tanh((s0 - s1) / 2))


# --------------------------------------------------------------------------------------------------- pair units


@dataclass(frozen=True)
class PairUnit:
    """One pairwise comparison of one trial, in the (first, second) order of the pair.

    ``read`` is the class an official text rule read from the answer (None: the rule uses ``prediction``).
    ``failure`` is set when the trial failed or holds nothing to compare for this pair.
    """

    index: int  # position of the sample in the results
    human: PairClass
    prediction: Prediction | None
    failure: FailureKind | None
    read: PairClass | None = None
    meta: Meta | None = None


def merit(label: Label) -> tuple[float, ...] | None:
    """Human merit per candidate, higher = better: negated ranks (1 = best) or human scores; None otherwise."""
    if label.kind is LabelKind.RANKING and label.ranks is not None and len(label.ranks) >= 2:
        return tuple(-float(r) for r in label.ranks)
    if label.kind is LabelKind.SCORES and label.scores is not None and len(label.scores) >= 2:
        return tuple(float(s) for s in label.scores)
    return None


def label_pairs(label: Label, rule: PairRule, meta: Meta) -> list[tuple[int, int, PairClass]]:
    """The comparisons a label holds: one for a pair label, every candidate pair for a ranking or score label."""
    human = rule.human(label, meta)
    if human is not None:
        return [(0, 1, human)]
    values = merit(label)
    if values is None:
        return []
    k = len(values)
    return [(i, j, order_class(values[i], values[j])) for i in range(k) for j in range(i + 1, k)]


def skips(rule: PairRule, human: PairClass) -> bool:
    return rule.skips_human_ties and human in TIE_KINDS


def pair_units(index: int, result: SampleResult, rule: PairRule) -> list[PairUnit]:
    """Every comparison of every trial that the rule scores (empty: the sample is label-skipped)."""
    if result.skipped:
        return []
    pairs = [p for p in label_pairs(result.label, rule, result.meta) if not skips(rule, p[2])]
    k = _n_candidates(result)
    units = []
    for trial in result.trials:
        read = rule.read(trial, result.meta) if k == 2 else UNREAD
        for i, j, human in pairs:
            units.append(_unit(index, result, trial, (i, j, k), human, read))
    return units


def _unit(index: int, result: SampleResult, trial: Trial, pair: tuple[int, int, int], human: PairClass,
          read: Any) -> PairUnit:
    if read is not UNREAD:
        failure = None if read is not None else (trial_failure(trial) or FailureKind.ERROR)
        return PairUnit(index, human, trial.prediction, failure, read, result.meta)
    sub = _sub_prediction(trial.prediction, *pair)
    failure = trial_failure(trial) or (None if usable(sub) else FailureKind.PARSE)
    return PairUnit(index, human, sub, failure, None, result.meta)


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


def unit_class(unit: PairUnit, rule: PairRule, knob: float) -> PairClass | None:
    """The predicted class of a judged unit: what the rule read from the text, or from the prediction."""
    if unit.read is not None:
        return unit.read
    if unit.prediction is None:
        return None
    return rule.predicted(unit.prediction, knob, unit.meta or {})


def unit_credit(unit: PairUnit, rule: PairRule, knob: float) -> float:
    predicted = unit_class(unit, rule, knob)
    if predicted is None:  # a failed unit never reaches here: callers check failures first
        raise AssertionError("credit asked for a failed comparison")
    return rule.credit(unit.human, predicted)


def pair_credit(label: Label, trial: Trial | Prediction, tie_policy: str, *, knob: float = 0.0,
                meta: Mapping[str, Any] | None = None) -> float | None:
    """Credit of one pairwise trial (1, 0, or 0.5 under pickapic) at a given knob.

    None when the label is skipped under this rule (an unknown or non-pair label always; a human tie under rules
    that skip them) and when the trial holds nothing to compare: metrics count the latter as a failure, never as a
    silent 0. A bare Prediction stands for a trial shown in the sample's order with no recorded answer text.
    """
    rule = get_rule(tie_policy)
    trial = trial if isinstance(trial, Trial) else Trial((0, 1), (), trial)
    result = SampleResult("", label, (trial,), meta=meta or {})
    units = pair_units(0, result, rule)
    if len(units) != 1 or units[0].failure is not None:
        return None
    return unit_credit(units[0], rule, knob)


# --------------------------------------------------------------------------------------------------- calibration

Block = Sequence[PairUnit]  # the comparisons that make one counted unit (one trial-pair, or a whole group)
_NEVER = (math.inf, -math.inf)


def epsilon_interval(unit: PairUnit, rule: PairRule) -> tuple[float, float]:
    """The epsilons [lo, hi) for which the tie-calibrated prediction of this unit is right (lo >= hi: never).

    With gap d = |s0 - s1|: a human tie is matched once epsilon >= d; a human winner only while epsilon < d, and
    only if the scores point to it. A verdict (or a text reading) does not depend on epsilon. Bounds are open to
    -inf, so a user grid with a negative epsilon (no ties at all) is counted as the direct rule would count it.
    """
    scores = pair_scores(unit.prediction) if unit.prediction is not None and unit.read is None else None
    if scores is None or (unit.prediction is not None and unit.prediction.verdict is not None):
        right = unit_credit(unit, rule, 0.0) == 1.0
        return (-math.inf, math.inf) if right else _NEVER
    gap = abs(scores[0] - scores[1])
    if unit.human in TIE_KINDS:
        return (-math.inf if gap == 0 else gap), math.inf  # equal scores are a tie at any epsilon
    return (-math.inf, gap) if order_class(*scores) == unit.human else _NEVER


def observed_gaps(blocks: Sequence[Block]) -> set[float]:
    gaps = set()
    for block in blocks:
        for unit in block:
            if unit.prediction is None or unit.prediction.verdict is not None or unit.read is not None:
                continue
            scores = pair_scores(unit.prediction)
            if scores is not None:
                gaps.add(abs(scores[0] - scores[1]))
    return gaps


def best_epsilon(blocks: Sequence[Block], grid: Sequence[float] | None, rule: PairRule) -> float:
    """The epsilon with the most blocks right (the smallest on equal counts), in O(n log n).

    A block is right exactly where the intervals of its units overlap, so counting, for each candidate epsilon, how
    many overlaps contain it answers every candidate at once; trying each epsilon on each unit would be quadratic.
    """
    candidates = np.array(sorted(set(grid) if grid else {0.0} | observed_gaps(blocks)), dtype=float)
    spans = [_block_span(b, rule) for b in blocks]
    lows = np.sort(np.array([lo for lo, hi in spans if lo < hi], dtype=float))
    highs = np.sort(np.array([hi for lo, hi in spans if lo < hi], dtype=float))
    # Any interval with hi <= e also has lo < e, so (started by e) - (ended by e) counts those containing e.
    right = np.searchsorted(lows, candidates, side="right") - np.searchsorted(highs, candidates, side="right")
    return float(candidates[int(np.argmax(right))])  # argmax keeps the first, i.e. smallest, epsilon


def _block_span(block: Block, rule: PairRule) -> tuple[float, float]:
    spans = [epsilon_interval(u, rule) for u in block]
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


def calibrated_class(pred: Prediction, epsilon: float) -> PairClass | None:
    """Deutsch et al. 2023: a tie when the score gap is at most epsilon; a verdict is kept as given."""
    scores = pair_scores(pred)
    if pred.verdict is not None or scores is None:
        return predicted_class(pred)
    return TIE if abs(scores[0] - scores[1]) <= epsilon else order_class(*scores)


__all__ = [
    "TIE",
    "Block",
    "PairUnit",
    "best_epsilon",
    "best_threshold",
    "calibrated_class",
    "epsilon_interval",
    "label_pairs",
    "merged",
    "merit",
    "pair_credit",
    "pair_units",
    "prob_gap",
    "unit_class",
    "unit_credit",
]
