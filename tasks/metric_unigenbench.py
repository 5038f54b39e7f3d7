"""`unigenbench-accuracy`: UniGenBench++'s aggregation (``calculate_scores``, eval/src/eval_common.py:381-452).

Every testpoint of every judged image is one unit, credited 1 when the image's score for it ``== 1`` (line 418);
a testpoint's primary dimension is the text before its first ``-`` (``cp.split("-", 1)[0]``, line 411), so
"Attribute - Color" counts toward ``"Attribute "`` *with* its trailing space, while "Style" (no ``-``) is its own
primary and sub dimension (line 414). A dimension's accuracy is correct / total pooled over images (micro). The
value is the unweighted mean of the primary dimensions' accuracies: the repository prints the dimensions only, and
the leaderboards' overall is their mean (10 dimensions for the full set).

Images the official rule drops (no readable answer in 11 asks, or a row the scorer skips) leave the denominator:
under failures "excluded" (the official number) their testpoints count nowhere; under "wrong" they count 0. Missing
images (``data``) are failures too; the official run refuses to start without them (eval_common.py:553).

``extra`` holds the official breakdown under failures excluded, in the shape of the official JSON summary
(``{"primary_dimensions": {name: {correct, total, accuracy}}, "sub_dimensions": {...}}``, accuracy rounded to 4
places as there, primary dimensions in first-seen order, sub dimensions sorted), each dimension with its unrounded
``value`` and a 95% interval clustered by prompt (seed: the protocol option ``seed``, default 0), and the image counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rrbench.metrics._bootstrap import metric_ci
from rrbench.metrics._core import STRATA_MEAN, Ledger, MetricContext, Tally, Unit, trial_failure
from rrbench.registry import metric
from rrbench.types import FailureKind, SampleResult, Trial

N_BOOT = 1000


def primary(point: str) -> str:
    """The primary dimension of a testpoint, as eval_common.py:410-414 keys it (trailing space kept)."""
    return point.split("-", 1)[0] if "-" in point else point


@dataclass
class _Cell:
    correct: int = 0
    total: int = 0
    credits: list[float] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)

    def add(self, cluster: str, credit: float) -> None:
        self.total += 1
        self.correct += credit == 1.0
        self.credits.append(credit)
        self.clusters.append(cluster)

    def summary(self, seed: int) -> dict[str, Any]:
        acc = self.correct / self.total if self.total > 0 else 0  # line 430
        ci = metric_ci(self.credits, self.clusters, proportion=True, seed=seed, n_boot=N_BOOT)
        return {"correct": self.correct, "total": self.total, "accuracy": round(acc, 4), "value": acc,
                "ci": [ci.low, ci.high], "ci_method": ci.method}


@dataclass
class _Book:
    primary: dict[str, _Cell] = field(default_factory=dict)
    sub: dict[str, _Cell] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=lambda: {"judged": 0, "dropped": 0, "missing": 0})

    def add(self, cluster: str, point: str, credit: float) -> None:
        self.primary.setdefault(primary(point), _Cell()).add(cluster, credit)
        self.sub.setdefault(point, _Cell()).add(cluster, credit)

    def extra(self, seed: int) -> dict[str, Any]:
        return {
            "primary_dimensions": {k: c.summary(seed) for k, c in self.primary.items()},
            "sub_dimensions": {k: self.sub[k].summary(seed) for k in sorted(self.sub)},  # line 437
            "images": dict(self.images),
            # what the leaderboard's per-dimension table shows (fractions, like the value)
            "breakdown": {"primary": {k.strip(): c.correct / c.total for k, c in self.primary.items() if c.total},
                          "sub": {k: self.sub[k].correct / self.sub[k].total for k in sorted(self.sub)
                                  if self.sub[k].total}},
        }


@metric("unigenbench-accuracy", description="UniGenBench++ calculate_scores: testpoint accuracy per primary and sub "
                                            "dimension pooled over images; overall = mean of the primary dimensions")
def unigenbench_accuracy(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    ledger = Ledger(len(results))
    units: list[Unit] = []
    book = _Book()
    for index, result in enumerate(results):
        points = _testpoints(result.meta)
        if points is None or result.skipped or not result.trials:
            ledger.skipped(index)  # a row whose testpoints could not be read (meta["broken"])
            continue
        for trial in result.trials:
            passed = image_credits(trial, len(points))
            if passed is None:
                kind = trial_failure(trial) or FailureKind.PARSE
                ledger.failed(index, kind)
                book.images["missing" if kind is FailureKind.DATA else "dropped"] += 1
                units += [Unit(result.sample_id, None, primary(p)) for p in points]
                continue
            ledger.scored(index)
            book.images["judged"] += 1
            for point, credit in zip(points, passed, strict=True):
                book.add(result.sample_id, point, credit)
                units.append(Unit(result.sample_id, credit, primary(point)))
    seed = int(ctx.options.get("seed", 0))
    return Tally(tuple(units), ledger.coverage(), None, extra=book.extra(seed), aggregate=STRATA_MEAN,
                 proportion=True, unit="testpoint")


def _testpoints(meta: Mapping[str, Any]) -> list[str] | None:
    points = meta.get("testpoint")
    if "broken" in meta or not isinstance(points, list | tuple) or not points:
        return None
    return [str(p) for p in points]


def image_credits(trial: Trial, n_points: int) -> list[float] | None:
    """The image's 0/1 per testpoint from the judgement the official parse read (flag ``read``), or None when the
    official rule drops the image."""
    if trial_failure(trial) is not None:
        return None
    read = [j for j in trial.judgements if "read" in j.flags and j.aspects]
    if not read:
        return None
    aspects = read[-1].aspects[0]
    values = [aspects[k] for k in sorted(aspects, key=lambda k: int(k.split(":", 1)[0]))]  # keys "<i>:<testpoint>"
    if len(values) != n_points or not all(v in (0.0, 1.0) for v in values):
        return None
    return [float(v) for v in values if v is not None]
