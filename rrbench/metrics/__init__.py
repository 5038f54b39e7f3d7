"""Preference metrics: every official tie policy, both failure policies, exact or bootstrap CIs and paired tests.

A metric is a registered function ``fn(results, ctx) -> Tally`` (see ``pairs.py`` and ``ranking.py``): it turns
sample results into counted units (credit per unit, ``None`` where the model failed) plus per-sample coverage, and
knows nothing of failure policies or CIs; ``compute_metrics`` applies both failure policies and one interval
rule (exact for a plain proportion, else the cluster bootstrap: docs/statistics.md) to every metric alike.
Values are fractions in [0, 1]; display code multiplies by 100.

Plug-in metrics register with ``@metric("name", description=...)`` from ``rrbench.registry`` and build their
``Tally`` with the helpers exported here (``Unit``, ``Ledger``, ``MetricContext``).
"""

from __future__ import annotations

from rrbench.metrics._bootstrap import Interval, bootstrap_ci, clopper_pearson, metric_ci
from rrbench.metrics._compute import MetricResult, SampleIndex, compute_metrics
from rrbench.metrics._core import FAILURE_POLICIES, Coverage, Ledger, MetricContext, Tally, Unit
from rrbench.metrics._paired import mcnemar_exact_p, paired_compare, paired_test
from rrbench.metrics._rules import TIE_POLICIES, PairRule, check_tie_policy, get_rule, predicted_class
from rrbench.metrics._ties import pair_credit

__all__ = [
    "FAILURE_POLICIES",
    "TIE_POLICIES",
    "Coverage",
    "Interval",
    "Ledger",
    "MetricContext",
    "MetricResult",
    "PairRule",
    "SampleIndex",
    "Tally",
    "Unit",
    "bootstrap_ci",
    "check_tie_policy",
    "clopper_pearson",
    "compute_metrics",
    "get_rule",
    "mcnemar_exact_p",
    "metric_ci",
    "pair_credit",
    "paired_compare",
    "paired_test",
    "predicted_class",
]
