"""From sample results to reported numbers: every metric of the protocol, both failure policies, CIs and coverage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rrbench import registry
from rrbench.metrics._bootstrap import bootstrap_ci
from rrbench.metrics._core import FAILURE_POLICIES, MetricContext, Tally
from rrbench.metrics._ties import check_tie_policy
from rrbench.types import Protocol, SampleResult


@dataclass(frozen=True)
class MetricResult:
    """One reported number with its protocol, 95% CI and coverage. ``value`` is a fraction in [0, 1] (or None)."""

    metric: str
    protocol: str
    tie_policy: str | None
    failure_policy: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n_total: int  # samples given
    n_units: int  # units counted in the value (trials, comparisons, groups or samples, per metric)
    n_scored: int  # samples with at least one judged unit
    n_failed: int  # samples with a model failure
    failed_by_kind: dict[str, int]
    n_label_skipped: int  # samples that yielded no unit because of their label (or were never judged)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MetricResult:
        return cls(**{**obj, "failed_by_kind": dict(obj["failed_by_kind"]), "extra": dict(obj.get("extra") or {})})


def metric_context(protocol: Protocol) -> MetricContext:
    check_tie_policy(protocol.tie_policy)
    return MetricContext(protocol.tie_policy, protocol.options)


def tally(name: str, results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    """Run one registered metric (an unknown name is a one-line user error from the registry)."""
    fn = registry.get("metric", name).factory
    out = fn(results, ctx)
    if not isinstance(out, Tally):
        raise TypeError(f"metric '{name}' returned {type(out).__name__}, not a Tally")
    return out


def summarize_tally(
    name: str, counted: Tally, failure_policy: str, protocol_id: str, *, seed: int, n_boot: int
) -> MetricResult:
    credits, clusters = counted.credits(failure_policy)
    value = sum(credits) / len(credits) if credits else None
    low = high = None
    if credits and n_boot > 0:
        low, high = bootstrap_ci(credits, clusters, seed=seed, n_boot=n_boot)
    cov = counted.coverage
    return MetricResult(
        metric=name,
        protocol=protocol_id,
        tie_policy=counted.tie_policy,
        failure_policy=failure_policy,
        value=value,
        ci_low=low,
        ci_high=high,
        n_total=cov.n_total,
        n_units=len(credits),
        n_scored=cov.n_scored,
        n_failed=cov.n_failed,
        failed_by_kind=dict(cov.failed_by_kind),
        n_label_skipped=cov.n_label_skipped,
        extra=dict(counted.extra),
    )


def compute_metrics(
    results: Sequence[SampleResult], protocol: Protocol, *, seed: int = 0, n_boot: int = 1000
) -> dict[str, Any]:
    """Every metric of the protocol under both failure policies (excluded first), overall and per category.

    ``by_category`` maps each ``meta["category"]`` value to the same list, computed on that category's samples
    alone (a calibrated tie threshold is re-chosen within the category); it is empty when no sample has one.
    """
    ctx = metric_context(protocol)
    categories = sorted({c for r in results if (c := r.category) is not None})
    return {
        "overall": _evaluate(results, protocol, ctx, seed, n_boot),
        "by_category": {
            c: _evaluate([r for r in results if r.category == c], protocol, ctx, seed, n_boot) for c in categories
        },
    }


def _evaluate(
    results: Sequence[SampleResult], protocol: Protocol, ctx: MetricContext, seed: int, n_boot: int
) -> list[dict[str, Any]]:
    rows = []
    for name in protocol.metrics:
        counted = tally(name, results, ctx)
        for policy in FAILURE_POLICIES:
            rows.append(summarize_tally(name, counted, policy, protocol.id, seed=seed, n_boot=n_boot).to_json())
    return rows
