"""From sample results to reported numbers: every metric of the protocol, both failure policies, CIs and coverage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rrbench import registry
from rrbench.metrics._bootstrap import CLUSTER_BOOTSTRAP, Interval, metric_ci, strata_mean, strata_mean_ci
from rrbench.metrics._core import FAILURE_POLICIES, FRACTION, STRATA_MEAN, MetricContext, Tally, Unit
from rrbench.metrics._rules import check_tie_policy
from rrbench.types import Protocol, SampleResult


@dataclass(frozen=True)
class MetricResult:
    """One reported number with its protocol, 95% CI and coverage. ``value`` is a fraction in [0, 1] (or None), or
    with ``scale = "score"`` a number on the judge's own scale (shown as is, never as a percentage).

    ``n_samples`` is what a reader calls n: the samples whose units are counted in the value. ``n_units`` can be
    larger (both presentation orders of a sample, every pair of a ranking) or smaller (groups of samples); ``unit``
    says which. Records written before these fields existed read with ``n_samples = n_units``, ``unit = None`` and,
    where they have a CI, ``ci_method = "cluster-bootstrap"`` (the only interval rrbench computed then).
    """

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
    n_samples: int | None = None  # distinct samples counted in the value (rows of the counted groups for groups)
    unit: str | None = None  # what n_units counts: "sample", "trial", "comparison", "group", "cluster" (or a
    # generation metric's own: "testpoint", "image")
    ci_method: str | None = None  # "clopper-pearson", "cluster-exact" or "cluster-bootstrap"; None without a CI
    extra: dict[str, Any] = field(default_factory=dict)
    scale: str = FRACTION  # "fraction" or "score"; written only when not a fraction, so older records read alike

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.scale == FRACTION:
            del out["scale"]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MetricResult:
        legacy_method = CLUSTER_BOOTSTRAP if obj.get("ci_low") is not None else None
        return cls(**{
            **obj,
            "n_samples": obj.get("n_samples", obj["n_units"]),
            "ci_method": obj.get("ci_method", legacy_method),
            "failed_by_kind": dict(obj["failed_by_kind"]),
            "extra": dict(obj.get("extra") or {}),
            "scale": obj.get("scale", FRACTION),
        })


@dataclass(frozen=True)
class SampleIndex:
    """What a metric's unit clusters are matched against to count samples: the results' sample ids (with their
    number of trials) and their ``meta["group"]`` keys (with the number of rows in each group)."""

    trials: Mapping[str, int]
    group_rows: Mapping[str, int]

    @classmethod
    def of(cls, results: Sequence[SampleResult]) -> SampleIndex:
        # Validation rows only choose a threshold: they are never in a counted group.
        groups = Counter(str(r.meta["group"]) for r in results
                         if "group" in r.meta and r.meta.get("split") != "validation")
        return cls({r.sample_id: len(r.trials) for r in results}, dict(groups))

    def count(self, clusters: Sequence[str]) -> tuple[int, str | None]:
        """(n_samples, unit) of the counted units with these clusters.

        Units clustered by sample (accuracy, the rank metrics) count their distinct clusters; units clustered by
        group count every row of their groups. A cluster that is neither (a plug-in's own) counts as one sample,
        and the unit is then named "cluster".
        """
        per_cluster = Counter(clusters)
        if not per_cluster:
            return 0, None
        if all(c in self.trials for c in per_cluster):
            return len(per_cluster), self._sample_unit(per_cluster)
        if all(c in self.group_rows or c in self.trials for c in per_cluster):
            return sum(self.group_rows.get(c, 1) for c in per_cluster), "group"
        return len(per_cluster), "cluster"

    def _sample_unit(self, per_cluster: Counter[str]) -> str:
        if all(n == 1 for n in per_cluster.values()):
            return "sample"
        # More units than trials in a sample: every pair of a ranking or score label is a comparison.
        return "trial" if all(n <= self.trials[c] for c, n in per_cluster.items()) else "comparison"


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
    name: str,
    counted: Tally,
    failure_policy: str,
    protocol_id: str,
    *,
    seed: int,
    n_boot: int,
    index: SampleIndex | None = None,
) -> MetricResult:
    """One metric under one failure policy; ``n_boot=0`` leaves out the CI. Without an ``index`` of the results
    the clusters cannot be matched to samples, and ``n_samples`` counts distinct clusters."""
    units = counted.counted(failure_policy)
    clusters = [u.cluster for u in units]
    value, interval, extra = _value(counted, units, seed=seed, n_boot=n_boot)
    low, high, method = (interval.low, interval.high, interval.method) if interval else (None, None, None)
    n_samples, unit = (index or SampleIndex({}, {})).count(clusters)
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
        n_units=len(units),
        n_scored=cov.n_scored,
        n_failed=cov.n_failed,
        failed_by_kind=dict(cov.failed_by_kind),
        n_label_skipped=cov.n_label_skipped,
        n_samples=n_samples,
        unit=counted.unit or unit,
        ci_method=method,
        extra=extra,
        scale=counted.scale,
    )


def _value(counted: Tally, units: Sequence[Unit], *, seed: int, n_boot: int) -> tuple[float | None, Interval | None,
                                                                                       dict[str, Any]]:
    """The value of the counted units, its interval (None with ``n_boot=0`` or no unit) and the metric's extra.

    A strata-mean tally adds each stratum's own value to its extra (stratum name -> mean credit), as UniGenBench
    reports every dimension beside the overall."""
    credits = [u.credit for u in units if u.credit is not None]
    clusters = [u.cluster for u in units]
    extra = dict(counted.extra)
    if not credits:
        return None, None, extra
    proportion = _is_proportion(counted, credits)
    if counted.aggregate == STRATA_MEAN:
        strata = [str(u.stratum) for u in units]
        value, per_stratum = strata_mean(credits, strata)
        extra.update(per_stratum)
        interval = strata_mean_ci(credits, clusters, strata, proportion=proportion, seed=seed,
                                  n_boot=n_boot) if n_boot > 0 else None
        return value, interval, extra
    interval = metric_ci(credits, clusters, proportion=proportion, seed=seed, n_boot=n_boot) if n_boot > 0 else None
    return sum(credits) / len(credits), interval, extra


def _is_proportion(counted: Tally, credits: Sequence[float]) -> bool:
    """A share of right answers: the metrics a tie policy applies to (pairwise and group accuracy) credit each unit
    in [0, 1]. Rank metrics (tie policy None) are means of per-sample scores, correlations even below 0, so an
    exact binomial interval says nothing about them. A tally may say so itself (``Tally.proportion``)."""
    share = counted.tie_policy is not None if counted.proportion is None else counted.proportion
    return share and all(0.0 <= c <= 1.0 for c in credits)


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
    index = SampleIndex.of(results)
    for name in protocol.metrics:
        counted = tally(name, results, ctx)
        for policy in FAILURE_POLICIES:
            row = summarize_tally(name, counted, policy, protocol.id, seed=seed, n_boot=n_boot, index=index)
            rows.append(row.to_json())
    return rows
