"""Listwise metrics for samples with a human ranking or per-candidate human scores (HPDv2, ImageRewardDB).

The unit is the sample: its value is the mean over its trials (one in practice, as ranking tasks are scored
pointwise); a sample with a failed trial is a failed unit. A sample whose human order has no strict pair (all
candidates tied) tells nothing about the model and is label-skipped, as are samples with a pair label.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from rrbench.metrics._core import Ledger, MetricContext, Tally, Unit, mean, trial_failure
from rrbench.metrics._ties import merit
from rrbench.registry import metric
from rrbench.types import FailureKind, SampleResult, Trial

PerTrial = Callable[[np.ndarray, np.ndarray], float]  # (human merit, model scores) -> value of one trial


@metric("inversion", description="HPD: 1 - discordant/all pairs per sample, averaged; model ties not discordant")
def inversion(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _per_sample(results, inversion_score)


@metric("spearman", description="Spearman rho (average ranks) of model scores vs the human order, mean over samples")
def spearman(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _per_sample(results, spearman_rho)


@metric("kendall", description="Kendall tau-b of model scores vs the human order, mean over samples")
def kendall(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _per_sample(results, kendall_tau_b)


def _per_sample(results: Sequence[SampleResult], per_trial: PerTrial) -> Tally:
    ledger = Ledger(len(results))
    units = []
    for index, result in enumerate(results):
        human = merit(result.label)
        if result.skipped or human is None or not result.trials or len(set(human)) < 2:
            ledger.skipped(index)
            continue
        values: list[float] = []
        failure = None
        for trial in result.trials:
            scores = _model_scores(trial, len(human))
            failure = failure or trial_failure(trial) or (FailureKind.PARSE if scores is None else None)
            if scores is not None and failure is None:
                values.append(per_trial(np.asarray(human), scores))
        if failure is not None:
            ledger.failed(index, failure)
            units.append(Unit(result.sample_id, None))
        else:
            ledger.scored(index)
            units.append(Unit(result.sample_id, mean(values)))
    return Tally(tuple(units), ledger.coverage(), None)


def _model_scores(trial: Trial, k: int) -> np.ndarray | None:
    pred = trial.prediction
    if pred is None or len(pred.scores) != k:
        return None
    if any(s is None or not math.isfinite(s) for s in pred.scores):
        return None
    return np.asarray(pred.scores, dtype=float)


def _signs(values: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for every i, j."""
    return np.sign(values[:, None] - values[None, :])


def _upper(matrix: np.ndarray) -> np.ndarray:
    """The entries i < j: each unordered pair once."""
    return matrix[np.triu_indices(matrix.shape[0], k=1)]


def inversion_score(human: np.ndarray, model: np.ndarray) -> float:
    """1 - discordant / all K(K-1)/2 pairs, as HPSv2's evaluation code divides (human-tied pairs included, so
    they count as agreed); a model tie is not discordant."""
    h, m = _upper(_signs(human)), _upper(_signs(model))
    discordant = np.count_nonzero(h * m < 0)
    return 1.0 - float(discordant) / float(h.size)


def kendall_tau_b(human: np.ndarray, model: np.ndarray) -> float:
    """(concordant - discordant) / sqrt((pairs - human ties) (pairs - model ties)); 0 for a constant model."""
    h, m = _upper(_signs(human)), _upper(_signs(model))
    denominator = math.sqrt(np.count_nonzero(h) * np.count_nonzero(m))
    return 0.0 if denominator == 0 else float(np.sum(h * m)) / denominator


def spearman_rho(human: np.ndarray, model: np.ndarray) -> float:
    """Pearson correlation of the average ranks; 0 for a constant model (it expresses no order at all).

    The average rank of v_i is 1/2 + K/2 + (sum_j sign(v_i - v_j)) / 2, an affine map of the sign matrix's row
    sums, and a correlation ignores affine maps: so the row sums stand in for the ranks, with no sorting.
    """
    x, y = _signs(human).sum(axis=1), _signs(model).sum(axis=1)
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(np.sum(x * x) * np.sum(y * y)))
    return 0.0 if denominator == 0 else float(np.sum(x * y)) / denominator
