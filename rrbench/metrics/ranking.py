"""Listwise metrics for samples with a human ranking or per-candidate human scores (HPDv2, ImageRewardDB).

The unit is the sample: its value is the mean over its trials (one in practice, as ranking tasks are scored
pointwise); a sample with a failed trial is a failed unit. Samples with a pair label are label-skipped, and so are
samples whose human order has no strict pair (all candidates tied), except under ``inversion``, whose official
average counts every prompt.
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


@metric("inversion", description="HPDv2 official: 1 - discordant/all pairs per prompt, model ranked by argsort, "
                                 "averaged over every prompt")
def inversion(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _per_sample(results, inversion_score, keep_all_tied=True)


@metric("inversion-ties", description="HPD inversion where a model tie is never discordant and prompts with all "
                                      "human ranks tied are skipped")
def inversion_ties(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _per_sample(results, inversion_score_ties)


@metric("spearman", description="Spearman rho (average ranks) of model scores vs the human order, mean over samples")
def spearman(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _per_sample(results, spearman_rho)


@metric("kendall", description="Kendall tau-b of model scores vs the human order, mean over samples")
def kendall(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _per_sample(results, kendall_tau_b)


def _per_sample(results: Sequence[SampleResult], per_trial: PerTrial, keep_all_tied: bool = False) -> Tally:
    ledger = Ledger(len(results))
    units = []
    for index, result in enumerate(results):
        human = merit(result.label)
        if result.skipped or human is None or not result.trials or (len(set(human)) < 2 and not keep_all_tied):
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
    """HPSv2's official score of one prompt (hpsv2/evaluation.py lines 100-104, src/training/train.py lines 358-368).

    The model's scores become positions by ``argsort(-scores)`` (a stable sort, as torch's on the CPU: equal scores
    keep the earlier image first, so a model tie can be discordant); a pair is discordant when positions and human
    ranks are strictly opposite (human-tied pairs never are); the count is divided by all K(K-1)/2 pairs. Written
    here because the official definition is not a rank correlation scipy offers.
    """
    k = model.size
    positions = np.empty(k, dtype=float)
    positions[np.argsort(-model, kind="stable")] = np.arange(k)
    h, m = _upper(_signs(human)), _upper(_signs(-positions))
    discordant = np.count_nonzero(h * m < 0)
    return 1.0 - float(discordant) / float(k * (k - 1) / 2)


def inversion_score_ties(human: np.ndarray, model: np.ndarray) -> float:
    """Like ``inversion_score`` but a model tie is never discordant (the ``inversion-ties`` alternative)."""
    h, m = _upper(_signs(human)), _upper(_signs(model))
    discordant = np.count_nonzero(h * m < 0)
    return 1.0 - float(discordant) / float(h.size)


def kendall_tau_b(human: np.ndarray, model: np.ndarray) -> float:
    """scipy's Kendall tau-b; 0 for a constant model or human order (scipy gives NaN: no order to agree with)."""
    if np.ptp(human) == 0 or np.ptp(model) == 0:
        return 0.0
    from scipy import stats  # imported on use (slow to import)

    return float(stats.kendalltau(human, model).statistic)


def spearman_rho(human: np.ndarray, model: np.ndarray) -> float:
    """scipy's Spearman rho (average ranks); 0 for a constant model or human order (scipy gives NaN)."""
    if np.ptp(human) == 0 or np.ptp(model) == 0:
        return 0.0
    from scipy import stats  # imported on use (slow to import)

    return float(stats.spearmanr(human, model).statistic)
