"""The paired gain of a refined set over its base set, on the benchmark's own headline metric, with a CI.

Both sets hold the same samples and the same judge judged both, so the uncertainty that matters is that of the
difference: samples are resampled together (a paired cluster bootstrap, the sample being the cluster, as every
generation metric clusters its units), and the metric is recomputed on both sets from the same resample. The
metric's own aggregation is kept: a plain mean of units, or the unweighted mean over strata (UniGenBench's mean of
dimensions), so the two values are exactly the numbers each judge run reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rrbench.metrics._compute import metric_context, tally
from rrbench.metrics._core import STRATA_MEAN, Tally
from rrbench.types import Protocol, SampleResult

N_BOOT = 1000
LEVEL = 0.95


def paired_gain(base: Sequence[SampleResult], final: Sequence[SampleResult], protocol: Protocol, metric: str, *,
                failure_policy: str = "excluded", seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """``metric`` on the final set minus on the base set, over the samples both hold, with a paired CI."""
    by_id = {r.sample_id: r for r in final}
    ids = sorted(r.sample_id for r in base if r.sample_id in by_id)
    base_by_id = {r.sample_id: r for r in base}
    ctx = metric_context(protocol)
    a = tally(metric, [base_by_id[i] for i in ids], ctx)
    b = tally(metric, [by_id[i] for i in ids], ctx)
    sums_a, counts_a = _table(a, failure_policy, ids)
    sums_b, counts_b = _table(b, failure_policy, ids)
    ones = np.ones((1, len(ids)))
    value_a, value_b = _values(a, ones, sums_a, counts_a)[0], _values(b, ones, sums_b, counts_b)[0]
    out: dict[str, Any] = {"metric": metric, "failure_policy": failure_policy, "n_samples": len(ids),
                           "base": _number(value_a), "final": _number(value_b),
                           "gain": _number(value_b - value_a), "ci_low": None, "ci_high": None}
    if ids and n_boot > 0 and np.isfinite(value_b - value_a):
        weights = _resamples(len(ids), n_boot, seed)
        diffs = _values(b, weights, sums_b, counts_b) - _values(a, weights, sums_a, counts_a)
        diffs = diffs[np.isfinite(diffs)]
        if diffs.size:
            tail = (1 - LEVEL) / 2 * 100
            out["ci_low"], out["ci_high"] = (float(v) for v in np.percentile(diffs, [tail, 100 - tail]))
            out["ci_method"] = "paired-cluster-bootstrap"
            out["n_boot"] = n_boot
    return out


def _table(counted: Tally, failure_policy: str, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (rows) and stratum (columns; one column for a plain mean): the sum of credits and the count."""
    units = counted.counted(failure_policy)
    strata = sorted({str(u.stratum) for u in units}) if counted.aggregate == STRATA_MEAN else ["*"]
    row, column = {sid: i for i, sid in enumerate(ids)}, {s: j for j, s in enumerate(strata)}
    sums, counts = np.zeros((len(ids), len(strata))), np.zeros((len(ids), len(strata)))
    for unit in units:
        i, j = row[unit.cluster], column[str(unit.stratum) if counted.aggregate == STRATA_MEAN else "*"]
        sums[i, j] += float(unit.credit or 0.0)
        counts[i, j] += 1
    return sums, counts


def _values(counted: Tally, weights: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The metric's value under each row of sample weights (a resample): per stratum sum / count, then the
    unweighted mean over the strata that have units (a plain mean has one stratum)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        per_stratum = (weights @ sums) / (weights @ counts)
    if per_stratum.shape[1] == 0:
        return np.full(weights.shape[0], np.nan)
    present = np.isfinite(per_stratum)
    totals = np.where(present, per_stratum, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(totals / present.sum(axis=1), dtype=float)


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` bootstrap resamples of ``n`` samples, as how many times each sample is drawn."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.repeat(np.arange(n_boot), n), draws.ravel()), 1.0)
    return weights


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
