"""The contract between a metric function and ``compute_metrics``: units with credits, and per-sample coverage.

A metric function is ``fn(results, ctx) -> Tally`` and is independent of the failure policy: a unit the model
failed on carries ``credit=None``, and ``compute_metrics`` derives both variants (failures excluded, failures
counted wrong) from one tally. That keeps the expensive part (calibrating a tie threshold, ranking) to one pass
and guarantees the two variants count exactly the same units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rrbench.types import FailureKind, Trial, UserError

FAILURE_POLICIES = ("excluded", "wrong")
MEAN, STRATA_MEAN = "mean", "strata-mean"  # how a tally's units make its value (Tally.aggregate)
FRACTION, SCORE = "fraction", "score"  # what scale its value is on (Tally.scale)


@dataclass(frozen=True)
class MetricContext:
    """What a metric may read from the run's protocol: its tie policy and per-metric knobs."""

    tie_policy: str = "exact"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    """One counted item (a trial, a human-ordered pair, a group or a sample).

    ``cluster`` names what the bootstrap resamples as a whole (the sample, or the group), so that correlated units,
    such as the two presentation orders of one pair, move together. ``credit`` is None when the model failed.
    """

    cluster: str
    credit: float | None
    stratum: str | None = None  # the part of a strata-mean value it counts toward (a UniGenBench dimension)


@dataclass(frozen=True)
class Coverage:
    n_total: int
    n_scored: int
    n_failed: int
    failed_by_kind: dict[str, int]
    n_label_skipped: int


@dataclass(frozen=True)
class Tally:
    """What a metric counted on a list of results, before a failure policy is applied."""

    units: tuple[Unit, ...]
    coverage: Coverage
    tie_policy: str | None  # None for metrics a tie policy does not apply to (rank correlations)
    extra: Mapping[str, Any] = field(default_factory=dict)
    # MEAN: the value is sum(credit) / units. STRATA_MEAN: the unweighted mean over strata of each stratum's
    # sum(credit) / units (UniGenBench's overall: the mean of its dimensions' accuracies, each pooled over images).
    aggregate: str = MEAN
    scale: str = FRACTION  # FRACTION: a share in [0, 1], shown x100; SCORE: on the judge's own scale, shown as is
    proportion: bool | None = None  # a share of right answers (exact intervals apply); None: when a tie policy does
    unit: str | None = None  # what one unit is, where the sample index cannot tell ("testpoint", "image")

    def counted(self, failure_policy: str) -> list[Unit]:
        """The counted units with their credit: failed units dropped ("excluded") or scored 0 ("wrong")."""
        check_failure_policy(failure_policy)
        return [unit if unit.credit is not None else Unit(unit.cluster, 0.0, unit.stratum)
                for unit in self.units if unit.credit is not None or failure_policy == "wrong"]

    def credits(self, failure_policy: str) -> tuple[list[float], list[str]]:
        """Credits and clusters of the counted units: failed units dropped ("excluded") or scored 0 ("wrong")."""
        units = self.counted(failure_policy)
        return [u.credit for u in units if u.credit is not None], [u.cluster for u in units]


class Ledger:
    """Per-sample coverage, keyed by the sample's position in the results.

    A sample is scored when at least one of its units was judged, failed when at least one of its units met a model
    failure (the first kind is kept, as the sample log does), and label-skipped when it yielded no unit at all.
    """

    def __init__(self, n_total: int) -> None:
        self.n_total = n_total
        self._scored: set[int] = set()
        self._failed: dict[int, FailureKind] = {}
        self._skipped: set[int] = set()

    def scored(self, index: int) -> None:
        self._scored.add(index)

    def failed(self, index: int, kind: FailureKind) -> None:
        self._failed.setdefault(index, kind)

    def skipped(self, index: int) -> None:
        self._skipped.add(index)

    def coverage(self) -> Coverage:
        by_kind: dict[str, int] = {}
        for kind in self._failed.values():
            by_kind[kind.value] = by_kind.get(kind.value, 0) + 1
        return Coverage(
            n_total=self.n_total,
            n_scored=len(self._scored),
            n_failed=len(self._failed),
            failed_by_kind=dict(sorted(by_kind.items())),
            n_label_skipped=len(self._skipped - self._scored - set(self._failed)),
        )


def trial_failure(trial: Trial) -> FailureKind | None:
    """Why a trial has no prediction; a missing prediction without a recorded kind is an error, never a pass."""
    if trial.failure is not None:
        return trial.failure
    return FailureKind.ERROR if trial.prediction is None else None


def check_failure_policy(name: str) -> None:
    if name not in FAILURE_POLICIES:
        raise UserError(f"unknown failure policy {name!r} (known: {', '.join(FAILURE_POLICIES)})")


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
