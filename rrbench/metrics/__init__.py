"""Preference metrics: every official tie policy, both failure policies, seeded bootstrap CIs and paired tests.

A metric is a registered function ``fn(results, ctx) -> Tally`` (see ``pairs.py`` and ``ranking.py``): it turns
sample results into counted units (credit per unit, ``None`` where the model failed) plus per-sample coverage, and
knows nothing of failure policies or CIs; ``compute_metrics`` applies both failure policies and the cluster
bootstrap to every metric alike. Values are fractions in [0, 1]; display code multiplies by 100.

Plug-in metrics register with ``@metric("name", description=...)`` from ``rrbench.registry`` and build their
``Tally`` with the helpers exported here (``Unit``, ``Ledger``, ``MetricContext``).
"""

from __future__ import annotations

from rrbench.metrics._bootstrap import bootstrap_ci
from rrbench.metrics._compute import MetricResult, compute_metrics
from rrbench.metrics._core import FAILURE_POLICIES, Coverage, Ledger, MetricContext, Tally, Unit
from rrbench.metrics._paired import mcnemar_exact_p, paired_compare
from rrbench.metrics._ties import TIE_POLICIES, pair_credit, predicted_class

__all__ = [
    "FAILURE_POLICIES",
    "TIE_POLICIES",
    "Coverage",
    "Ledger",
    "MetricContext",
    "MetricResult",
    "Tally",
    "Unit",
    "bootstrap_ci",
    "compute_metrics",
    "mcnemar_exact_p",
    "pair_credit",
    "paired_compare",
    "predicted_class",
]
