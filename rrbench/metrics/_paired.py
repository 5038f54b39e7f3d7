"""Paired comparison of two runs on the same samples: a paired bootstrap CI of the difference, and an exact test.

Comparing two CIs computed separately throws away the pairing (both runs saw the same samples), which makes them
far wider than the uncertainty of the difference itself; so each sample's credit is compared with its twin.

The test is McNemar's when every paired cluster is simply right or wrong in both runs, and otherwise the sign test
on the per-cluster differences: with fractional credit (both orders averaged, half credit for a tie, group
means) a cluster can be better in one run without being 0 in one and 1 in the other, and McNemar would see no
discordant cluster at all. On 0/1 credit the two are the same test; the name says which question was asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rrbench.metrics._bootstrap import bootstrap_ci
from rrbench.metrics._compute import metric_context, tally
from rrbench.metrics._core import FAILURE_POLICIES, Tally
from rrbench.types import Protocol, SampleResult, UserError

_SAME = 1e-12


def paired_compare(
    a: Sequence[SampleResult], b: Sequence[SampleResult], protocol: Protocol, *, seed: int = 0, n_boot: int = 1000
) -> dict[str, Any]:
    """Run b minus run a, per metric of the protocol and failure policy, on the samples both runs hold.

    Each metric is computed on the common samples of each run (a calibrated tie threshold is chosen per run, as in
    its own report); a cluster's credit is the mean credit of its units (the cluster is the sample, or the group
    for ``group-accuracy``), and clusters present in both runs are compared.
    """
    ctx = metric_context(protocol)
    ids_a, ids_b = {r.sample_id for r in a}, {r.sample_id for r in b}
    common = ids_a & ids_b
    common_a = sorted((r for r in a if r.sample_id in common), key=lambda r: r.sample_id)
    common_b = sorted((r for r in b if r.sample_id in common), key=lambda r: r.sample_id)
    _check_same_labels(common_a, common_b)
    rows = []
    for name in protocol.metrics:
        tally_a, tally_b = tally(name, common_a, ctx), tally(name, common_b, ctx)
        for policy in FAILURE_POLICIES:
            rows.append(_compare(name, tally_a, tally_b, policy, seed=seed, n_boot=n_boot))
    return {
        "protocol": protocol.id,
        "tie_policy": protocol.tie_policy,
        "n_common": len(common),
        "n_only_a": len(ids_a - common),
        "n_only_b": len(ids_b - common),
        "metrics": rows,
    }


def _check_same_labels(a: Sequence[SampleResult], b: Sequence[SampleResult]) -> None:
    for ra, rb in zip(a, b, strict=True):
        if ra.label != rb.label:
            raise UserError(f"the two runs disagree on the label of sample {ra.sample_id!r}: not the same task data")


def _compare(name: str, a: Tally, b: Tally, failure_policy: str, *, seed: int, n_boot: int) -> dict[str, Any]:
    credit_a, credit_b = _cluster_means(a, failure_policy), _cluster_means(b, failure_policy)
    keys = sorted(credit_a.keys() & credit_b.keys())
    xa = np.array([credit_a[k] for k in keys], dtype=float)
    xb = np.array([credit_b[k] for k in keys], dtype=float)
    row: dict[str, Any] = {
        "metric": name,
        "tie_policy": a.tie_policy,
        "failure_policy": failure_policy,
        "n_paired": len(keys),  # clusters in both runs (samples; groups for group-accuracy): the bootstrap's n
        "value_a": float(xa.mean()) if keys else None,
        "value_b": float(xb.mean()) if keys else None,
        "diff": float((xb - xa).mean()) if keys else None,
        "ci_low": None,
        "ci_high": None,
        "ci_method": None,
        "test": paired_test(xa, xb),
        "extra_a": dict(a.extra),
        "extra_b": dict(b.extra),
    }
    if keys and n_boot > 0:
        row["ci_low"], row["ci_high"] = bootstrap_ci(xb - xa, keys, seed=seed, n_boot=n_boot)
        row["ci_method"] = "paired-cluster-bootstrap"
    return row


def paired_test(xa: np.ndarray, xb: np.ndarray) -> dict[str, Any]:
    """Exact two-sided test of "neither run is better", on per-cluster credits of the same clusters.

    ``n`` is the number of clusters the test used: those where the runs differ (McNemar's discordant pairs, the
    sign test's nonzero differences); clusters scored alike carry no information on which run is better.
    """
    binary = bool(np.all(np.isin(xa, (0.0, 1.0)) & np.isin(xb, (0.0, 1.0))))
    diff = xb - xa
    # Cluster means are sums over sizes: two equal credits reached by different sums may differ in the last bits.
    b_better = int(np.count_nonzero(diff > _SAME))
    a_better = int(np.count_nonzero(diff < -_SAME))
    return {
        "name": "mcnemar-exact" if binary else "sign-test",
        "n": b_better + a_better,
        "n_b_better": b_better,
        "n_a_better": a_better,
        "p_value": _two_sided_binomial_p(b_better, a_better),
    }


def _cluster_means(counted: Tally, failure_policy: str) -> dict[str, float]:
    credits, clusters = counted.credits(failure_policy)
    sums: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for credit, cluster in zip(credits, clusters, strict=True):
        sums[cluster] = sums.get(cluster, 0.0) + credit
        sizes[cluster] = sizes.get(cluster, 0) + 1
    return {k: sums[k] / sizes[k] for k in sums}


def mcnemar_exact_p(b01: int, b10: int) -> float:
    """Exact two-sided McNemar p from the discordant counts (b01: only B right, b10: only A right)."""
    return _two_sided_binomial_p(b01, b10)


def _two_sided_binomial_p(k: int, other: int) -> float:
    """Binomial(k + other, 1/2) two-sided p of k; 1 with nothing to compare (scipy needs n >= 1)."""
    from scipy import stats  # imported on use (slow to import; most commands never compare)

    n = k + other
    return 1.0 if n == 0 else float(stats.binomtest(k, n, 0.5).pvalue)
