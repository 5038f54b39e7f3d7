"""Paired comparison of two runs on the same samples: a paired bootstrap CI of the difference, and McNemar.

Comparing two CIs computed separately throws away the pairing (both runs saw the same samples), which makes them
far wider than the uncertainty of the difference itself; so each sample's credit is compared with its twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rrbench.metrics._bootstrap import bootstrap_ci
from rrbench.metrics._compute import metric_context, tally
from rrbench.metrics._core import FAILURE_POLICIES, Tally
from rrbench.types import Protocol, SampleResult, UserError


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
    b01 = int(np.count_nonzero((xa == 0) & (xb == 1)))
    b10 = int(np.count_nonzero((xa == 1) & (xb == 0)))
    row: dict[str, Any] = {
        "metric": name,
        "tie_policy": a.tie_policy,
        "failure_policy": failure_policy,
        "n_paired": len(keys),
        "value_a": float(xa.mean()) if keys else None,
        "value_b": float(xb.mean()) if keys else None,
        "diff": float((xb - xa).mean()) if keys else None,
        "ci_low": None,
        "ci_high": None,
        # b01: a wrong and b right; b10: a right and b wrong (clusters with 0/1 credit in both runs only)
        "mcnemar": {"b01": b01, "b10": b10, "p_value": mcnemar_exact_p(b01, b10)},
        "extra_a": dict(a.extra),
        "extra_b": dict(b.extra),
    }
    if keys and n_boot > 0:
        row["ci_low"], row["ci_high"] = bootstrap_ci(xb - xa, keys, seed=seed, n_boot=n_boot)
    return row


def _cluster_means(counted: Tally, failure_policy: str) -> dict[str, float]:
    credits, clusters = counted.credits(failure_policy)
    sums: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for credit, cluster in zip(credits, clusters, strict=True):
        sums[cluster] = sums.get(cluster, 0.0) + credit
        sizes[cluster] = sizes.get(cluster, 0) + 1
    return {k: sums[k] / sizes[k] for k in sums}


def mcnemar_exact_p(b01: int, b10: int) -> float:
    """Exact two-sided McNemar: twice the binomial(n, 1/2) tail of the rarer discordant count, capped at 1.

    Computed in integers, so it stays exact for thousands of discordant samples; each binomial coefficient comes
    from the previous one (C(n, i+1) = C(n, i) (n - i) / (i + 1), an exact division) rather than from scratch.
    """
    n = b01 + b10
    term = tail = 1
    for i in range(min(b01, b10)):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)
