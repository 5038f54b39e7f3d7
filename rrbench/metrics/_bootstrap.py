"""Seeded percentile cluster bootstrap of a ratio of sums: the CI every rrbench number carries."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

# Bound the (resamples x clusters) index matrix so 10k clusters x 1000 resamples stays a few tens of MB.
_MAX_CELLS = 4_000_000


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
    if values.size == 0 or values.size != len(clusters):
        raise ValueError(f"need one cluster per credit and at least one unit (got {values.size}, {len(clusters)})")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 1 and level in (0, 1) (got {n_boot}, {level})")
    # Sorted unique keys make the cluster numbering, hence the draws, independent of the units' order.
    _, cluster_of = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    sums = np.bincount(cluster_of, weights=values)
    sizes = np.bincount(cluster_of).astype(float)
    stats = _resample(sums, sizes, np.random.default_rng(seed), n_boot)
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
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
