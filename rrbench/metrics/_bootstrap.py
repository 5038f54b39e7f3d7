"""The 95% interval every rrbench number carries: exact where the number is a plain proportion, else a seeded
percentile cluster bootstrap, and never a zero-width interval on a proportion (docs/statistics.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

# Bound the (resamples x clusters) index matrix so 10k clusters x 1000 resamples stays a few tens of MB.
_MAX_CELLS = 4_000_000
_TOLERANCE = 1e-12  # cluster means computed as sums / sizes: equal values may differ in the last bits

CLOPPER_PEARSON = "clopper-pearson"
CLUSTER_BOOTSTRAP = "cluster-bootstrap"
CLUSTER_EXACT = "cluster-exact"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # one of CLOPPER_PEARSON, CLUSTER_BOOTSTRAP, CLUSTER_EXACT


def metric_ci(
    credits: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable],
    *,
    proportion: bool,
    seed: int,
    n_boot: int = 1000,
    level: float = 0.95,
) -> Interval:
    """The interval of sum(credit) / n for one metric.

    A proportion (every credit in [0, 1] and the metric a share of right answers) of 0/1 credits, one unit per
    cluster, is a binomial count: Clopper-Pearson, exact and never narrower than its level. Clustered units (both
    orders of a sample, the comparisons of a group) or fractional credit break that model, so they get the cluster
    bootstrap; but the bootstrap of clusters that all have one value has zero width (every resample is that value),
    which would claim certainty from a finite sample, so a proportion then gets Clopper-Pearson on the clusters.
    """
    values = np.asarray(credits, dtype=float)
    _check(values, clusters, n_boot, level)
    if proportion and _is_binary(values) and len(set(clusters)) == values.size:
        low, high = clopper_pearson(int(values.sum()), values.size, level)
        return Interval(low, high, CLOPPER_PEARSON)
    sums, sizes = _cluster_totals(values, clusters)
    means = sums / sizes
    if proportion and float(np.ptp(means)) <= _TOLERANCE:
        low, high = clopper_pearson(float(means.sum()), means.size, level)
        return Interval(low, high, CLUSTER_EXACT)
    low, high = _percentile(sums, sizes, seed, n_boot, level)
    return Interval(low, high, CLUSTER_BOOTSTRAP)


def clopper_pearson(k: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion of k successes in n trials.

    A whole k goes to scipy's binomial test. A fractional k (clusters that all scored, say, one half) uses the same
    beta-quantile formula with k as is: a [0, 1] variable is at its most spread out when it is 0/1, so treating the
    clusters as coin flips of that mean errs on the wide side.
    """
    from scipy import stats  # imported on use: scipy.stats costs ~0.6 s, and every rrbench command would pay it

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1 (got k={k}, n={n})")
    whole = round(k)
    if abs(k - whole) <= 1e-9:
        ci = stats.binomtest(int(whole), n).proportion_ci(confidence_level=level, method="exact")
        return float(ci.low), float(ci.high)
    tail = (1 - level) / 2
    return float(stats.beta.ppf(tail, k, n - k + 1)), float(stats.beta.ppf(1 - tail, k + 1, n - k))


def bootstrap_ci(
    credits: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable],
    *,
    seed: int,
    n_boot: int = 1000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of sum(credit) / n, resampling whole clusters with replacement.

    Units of one cluster (the two presentation orders of a sample, the pairs of one ranking) are correlated, so
    they are drawn together; each resample's value is its credit total over its unit count, as the metric is.
    """
    values = np.asarray(credits, dtype=float)
    _check(values, clusters, n_boot, level)
    sums, sizes = _cluster_totals(values, clusters)
    return _percentile(sums, sizes, seed, n_boot, level)


def _check(values: np.ndarray, clusters: Sequence[Hashable], n_boot: int, level: float) -> None:
    if values.size == 0 or values.size != len(clusters):
        raise ValueError(f"need one cluster per credit and at least one unit (got {values.size}, {len(clusters)})")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 1 and level in (0, 1) (got {n_boot}, {level})")


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0.0) | (values == 1.0)))


def _cluster_totals(values: np.ndarray, clusters: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    # Sorted unique keys make the cluster numbering, hence the draws, independent of the units' order.
    _, cluster_of = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return np.bincount(cluster_of, weights=values), np.bincount(cluster_of).astype(float)


def _percentile(sums: np.ndarray, sizes: np.ndarray, seed: int, n_boot: int, level: float) -> tuple[float, float]:
    resampled = _resample(sums, sizes, np.random.default_rng(seed), n_boot)
    tail = (1 - level) / 2
    low, high = np.quantile(resampled, [tail, 1 - tail])
    return float(low), float(high)


def _resample(sums: np.ndarray, sizes: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    n = sums.size
    rows = max(1, _MAX_CELLS // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        picks = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    return out


def strata_mean(credits: Sequence[float] | np.ndarray, strata: Sequence[Hashable]) -> tuple[float, dict[str, float]]:
    """The unweighted mean over strata of each stratum's mean credit, and the stratum means (sorted by name)."""
    totals: dict[str, list[float]] = {}
    for credit, stratum in zip(credits, strata, strict=True):
        cell = totals.setdefault(str(stratum), [0.0, 0.0])
        cell[0] += float(credit)
        cell[1] += 1.0
    means = {name: total / count for name, (total, count) in sorted(totals.items())}
    return sum(means.values()) / len(means), means


def strata_mean_ci(
    credits: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable],
    strata: Sequence[Hashable],
    *,
    proportion: bool,
    seed: int,
    n_boot: int = 1000,
    level: float = 0.95,
) -> Interval:
    """The interval of ``strata_mean``: a seeded percentile bootstrap resampling whole clusters, so that every unit
    of a sample (its images and testpoints, whatever their stratum) moves together, and each resample's value is
    computed as the metric's is, from the strata present in it.

    A proportion whose bootstrap has zero width (every cluster alike in every stratum: a painter that errs by rule,
    a judge that passes everything) falls back to the ``cluster-exact`` rule with k = value x clusters, as
    ``metric_ci`` does: a finite sample never settles the question.
    """
    values = np.asarray(credits, dtype=float)
    _check(values, clusters, n_boot, level)
    if len(strata) != values.size:
        raise ValueError(f"need one stratum per credit (got {len(strata)} for {values.size})")
    _, cluster_of = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    _, stratum_of = np.unique(np.asarray([str(s) for s in strata]), return_inverse=True)
    shape = (int(cluster_of.max()) + 1, int(stratum_of.max()) + 1)
    sums, sizes = np.zeros(shape), np.zeros(shape)
    np.add.at(sums, (cluster_of, stratum_of), values)
    np.add.at(sizes, (cluster_of, stratum_of), 1.0)
    resampled = _resample_strata(sums, sizes, np.random.default_rng(seed), n_boot)
    tail = (1 - level) / 2
    low, high = (float(q) for q in np.quantile(resampled, [tail, 1 - tail]))
    if proportion and high - low <= _TOLERANCE:
        value = strata_mean(values, [str(s) for s in strata])[0]
        low, high = clopper_pearson(min(max(value, 0.0), 1.0) * shape[0], shape[0], level)
        return Interval(low, high, CLUSTER_EXACT)
    return Interval(low, high, CLUSTER_BOOTSTRAP)


def _resample_strata(sums: np.ndarray, sizes: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """``n_boot`` values of the strata mean over clusters drawn with replacement (rows of ``sums`` and ``sizes``)."""
    n = sums.shape[0]
    rows = max(1, _MAX_CELLS // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        picks = rng.integers(0, n, size=(stop - start, n))
        # How often each cluster was drawn, per resample: then the stratum totals are one matrix product.
        offsets = (picks + n * np.arange(stop - start)[:, None]).ravel()
        drawn = np.bincount(offsets, minlength=(stop - start) * n).reshape(stop - start, n).astype(float)
        totals, counts = drawn @ sums, drawn @ sizes
        with np.errstate(invalid="ignore", divide="ignore"):
            means = totals / counts  # NaN where a resample has no unit of a stratum: that stratum is absent
        out[start:stop] = np.nanmean(means, axis=1)
    return out
