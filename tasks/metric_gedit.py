"""GEdit-Bench's aggregation (GEdit-Bench/calculate_statistics.py at ``judge_gedit.COMMIT``): ``gedit-o``,
``gedit-sc``, ``gedit-pq`` and their ``-intersection`` variants.

calculate_statistics.py:42-78: per group, the rows of the chosen language (lines 51-54), each image's
O = math.sqrt(SC * PQ) (line 56), the group's ``np.mean`` of SC, PQ and O (lines 66-71), and the same over the rows
whose ``intersection_exist`` is true (lines 61-64, 73-78); then ``np.mean`` of the 11 group means, in the order of
GROUPS (lines 84-117). Images without a score are not in its CSV (test_gedit_score.py:140-142), so they are left
out (failure policy ``excluded``); a group without rows gives NaN (``np.mean([])``), shown here as None.

Each metric's value is rrbench's strata mean (one stratum per group, on the judge's 0-10 scale) with a bootstrap CI
clustered by sample; it equals the official number up to the order of float additions (numpy sums pairwise).
``extra["official"]`` holds the number exactly as calculate_statistics.py computes it (np.mean, rows in sample
order, which is the order ``answers()`` writes them; None where it would be NaN), ``extra[<group>]`` each group's
mean, and ``n_guessed`` counts the images whose score includes a substituted random number. Under the protocol option
``guessed = "exclude"`` (``gedit-bench-excluded``) such images are parse failures instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rrbench.metrics._core import SCORE, STRATA_MEAN, Ledger, MetricContext, Tally, Unit, trial_failure
from rrbench.registry import metric
from rrbench.tasks.judge_gedit import GROUPS, final_scores, guessed
from rrbench.types import FailureKind, SampleResult, Trial


@dataclass(frozen=True)
class Image:
    """One scored image, as a row of the official CSV."""

    group: str
    sc: float
    pq: float
    guessed: bool

    @property
    def o(self) -> float:
        return math.sqrt(self.sc * self.pq)  # calculate_statistics.py:56


def _read(trial: Trial, exclude_guessed: bool) -> tuple[tuple[float, float] | None, FailureKind | None, bool]:
    failure = trial_failure(trial)
    if failure is not None:
        return None, failure, False
    scores = final_scores(trial.judgements)
    if scores is None:
        return None, FailureKind.PARSE, False
    was_guessed = guessed(trial.judgements)
    if was_guessed and exclude_guessed:
        return None, FailureKind.PARSE, True
    return scores, None, was_guessed


def _tally(results: Sequence[SampleResult], ctx: MetricContext, value: Callable[[Image], float],
           intersection: bool, name: str) -> Tally:
    exclude = ctx.options.get("guessed") == "exclude"
    ledger = Ledger(len(results))
    units: list[Unit] = []
    images: list[Image] = []
    for index, result in enumerate(results):
        if result.skipped or not result.trials or (intersection and not result.meta.get("intersection_exist")):
            ledger.skipped(index)
            continue
        group = str(result.meta.get("task_type", result.category))
        for trial in result.trials:
            scores, failure, was_guessed = _read(trial, exclude)
            if failure is not None or scores is None:
                ledger.failed(index, failure or FailureKind.PARSE)
                units.append(Unit(result.sample_id, None, group))
                continue
            ledger.scored(index)
            image = Image(group, scores[0], scores[1], was_guessed)
            images.append(image)
            units.append(Unit(result.sample_id, value(image), group))
    numbers = official_numbers(images)
    groups = {g: v[name] for g, v in numbers["per_group"].items() if v[name] is not None}
    extra = {"official": numbers["average"][name], "n_guessed": numbers["n_guessed"], "breakdown": {"group": groups}}
    return Tally(tuple(units), ledger.coverage(), None, extra=extra, aggregate=STRATA_MEAN, scale=SCORE,
                 proportion=False, unit="image")


def _mean(values: Sequence[float]) -> float | None:
    with warnings.catch_warnings():  # np.mean([]) warns and gives NaN, as in the official script
        warnings.simplefilter("ignore", RuntimeWarning)
        out = float(np.mean(values))
    return None if math.isnan(out) else out


def official_numbers(images: Sequence[Image]) -> dict[str, Any]:
    """calculate_statistics.py:42-117 on the scored images (in order): per group and average SC, PQ and O."""
    per_group: dict[str, dict[str, float | None]] = {}
    raw: dict[str, list[float]] = {"sc": [], "pq": [], "o": []}
    for group in GROUPS:
        rows = [i for i in images if i.group == group]
        means = {"sc": np.mean([i.sc for i in rows]) if rows else np.nan,
                 "pq": np.mean([i.pq for i in rows]) if rows else np.nan,
                 "o": np.mean([i.o for i in rows]) if rows else np.nan}
        for name, mean in means.items():
            raw[name].append(float(mean))
        per_group[group] = {name: None if math.isnan(m) else float(m) for name, m in means.items()}
    average = {name: _mean(values) for name, values in raw.items()}
    return {"per_group": per_group, "average": average, "n_images": len(images),
            "n_guessed": sum(i.guessed for i in images)}


def _o(i: Image) -> float:
    return i.o


def _sc(i: Image) -> float:
    return i.sc


def _pq(i: Image) -> float:
    return i.pq


@metric("gedit-o", description="GEdit-Bench overall: mean over 11 groups of per-image sqrt(SC*PQ) (0-10)")
def gedit_o(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _tally(results, ctx, _o, intersection=False, name="o")


@metric("gedit-sc", description="GEdit-Bench semantic consistency: mean over 11 groups of per-image min SC")
def gedit_sc(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _tally(results, ctx, _sc, intersection=False, name="sc")


@metric("gedit-pq", description="GEdit-Bench perceptual quality: mean over 11 groups of per-image min PQ")
def gedit_pq(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _tally(results, ctx, _pq, intersection=False, name="pq")


@metric("gedit-o-intersection", description="GEdit-Bench overall O on the Intersection_exist subset")
def gedit_o_intersection(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _tally(results, ctx, _o, intersection=True, name="o")


@metric("gedit-sc-intersection", description="GEdit-Bench SC on the Intersection_exist subset")
def gedit_sc_intersection(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _tally(results, ctx, _sc, intersection=True, name="sc")


@metric("gedit-pq-intersection", description="GEdit-Bench PQ on the Intersection_exist subset")
def gedit_pq_intersection(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _tally(results, ctx, _pq, intersection=True, name="pq")
