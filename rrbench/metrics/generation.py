"""Metrics of generation runs: a judge scored each generated image of a prompt (one trial per image).

* ``testpoint-accuracy`` (UniGenBench++): each image's 0/1 answer per testpoint is one unit, in the stratum of the
  testpoint's dimension; a dimension's accuracy pools its testpoints over every image (micro), and the value is
  the unweighted mean of the dimensions' accuracies. Each dimension's accuracy is in the result's ``extra``.
* ``mean-score``: the mean per-image judge score on the judge's own scale (``scale = "score"``).

Both cluster by sample: the images of one prompt move together in the bootstrap. An image that failed (to be made
or to be judged) fails all its units; a judgement without a 0/1 answer for every testpoint fails its image as a
``parse`` failure (UniGenBench re-asks, then drops the image). An answer of ``None`` is "not applicable" and counts
nowhere. A sample without testpoints (or skipped) is label-skipped by ``testpoint-accuracy``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rrbench.metrics._core import SCORE, STRATA_MEAN, Ledger, MetricContext, Tally, Unit, trial_failure
from rrbench.registry import metric
from rrbench.testpoints import Testpoint, load_testpoints, testpoint_key
from rrbench.types import DataError, FailureKind, SampleResult, Trial


@metric("testpoint-accuracy", description="UniGenBench-style: testpoints passed per dimension, pooled over images; "
                                          "overall = mean of the dimensions (each in extra)")
def testpoint_accuracy(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    ledger = Ledger(len(results))
    units: list[Unit] = []
    for index, result in enumerate(results):
        points = _testpoints(result)
        if points is None or not result.trials:
            ledger.skipped(index)
            continue
        for trial in result.trials:
            answers, failure = _answers(trial, points)
            if failure is not None:
                ledger.failed(index, failure)
            else:
                ledger.scored(index)
            # A failed image fails every testpoint; a testpoint answered "not applicable" counts nowhere.
            units += [Unit(result.sample_id, answer, point.dimension)
                      for point, answer in zip(points, answers, strict=True)
                      if answer is not None or failure is not None]
    return Tally(tuple(units), ledger.coverage(), None, aggregate=STRATA_MEAN, proportion=True, unit="testpoint")


@metric("mean-score", description="mean per-image judge score of generated images, on the judge's own scale")
def mean_score(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    ledger = Ledger(len(results))
    units: list[Unit] = []
    for index, result in enumerate(results):
        if result.skipped or not result.trials:
            ledger.skipped(index)
            continue
        for trial in result.trials:
            score, failure = image_score(trial)
            if failure is not None:
                ledger.failed(index, failure)
            else:
                ledger.scored(index)
            units.append(Unit(result.sample_id, score))
    return Tally(tuple(units), ledger.coverage(), None, scale=SCORE, proportion=False, unit="image")


def _testpoints(result: SampleResult) -> tuple[Testpoint, ...] | None:
    if result.skipped or "testpoints" not in result.meta:
        return None
    try:
        return load_testpoints(result.meta["testpoints"])
    except DataError:
        return None


def _answers(trial: Trial, points: Sequence[Testpoint]) -> tuple[list[float | None], FailureKind | None]:
    """One 0/1 (or None: not applicable) per testpoint, or all None and why the image has no answers."""
    failure = trial_failure(trial)
    aspects = trial.judgements[0].aspects if trial.judgements else ()
    if failure is None and not aspects:
        failure = FailureKind.PARSE
    if failure is not None:
        return [None] * len(points), failure
    keys = [testpoint_key(j, p.dimension) for j, p in enumerate(points)]
    if not all(_readable(aspects[0], key) for key in keys):
        return [None] * len(points), FailureKind.PARSE
    return [_credit(aspects[0][key]) for key in keys], None


def _readable(aspects: Mapping[str, float | None], key: str) -> bool:
    """The judge answered this testpoint 0 or 1, or None (not applicable); anything else is unreadable."""
    return key in aspects and (aspects[key] is None or aspects[key] in (0, 1))


def _credit(value: float | None) -> float | None:
    return None if value is None else float(value)


def image_score(trial: Trial) -> tuple[float | None, FailureKind | None]:
    """An image trial's one finite score, or why it has none (its failure, else ``parse``)."""
    failure = trial_failure(trial)
    if failure is not None:
        return None, failure
    scores = trial.prediction.scores if trial.prediction else ()
    if len(scores) != 1 or scores[0] is None or not math.isfinite(scores[0]):
        return None, FailureKind.PARSE
    return float(scores[0]), None
