"""ImgEdit-Bench Basic's aggregation (github.com/PKU-YuanGroup/ImgEdit, commit 547185d, ``Benchmark/Basic/``).

Each image's score is step1's (``round(mean of the answer's counted lines, 2)``, ``tasks/judge_imgedit.py``);
``step2_typescore.py`` (lines 5-18) then gives, per edit type, ``round(sum(scores) / len(scores), 2)`` over the
images step1 scored, summed in the order of its input. The scripts stop there: no overall number. Two are named:

* ``imgedit-type-mean``: the unweighted mean over edit types of each type's mean image score (value and CI from
  the unrounded type means). Its ``extra`` holds ``typescore``, step2's own output (each type rounded to 2, in
  first-seen order), bit for bit, and ``overall_of_rounded_types``, the mean of those rounded values: the "Overall"
  of the papers' ImgEdit tables, which average the nine published (rounded) type scores. The two overalls differ
  by at most 0.005.
* ``imgedit-image-mean``: the mean over every scored image (types weighted by their size: extract has 117 images,
  compose 23).

Images the official pipeline leaves out (no counted line) and images without an answer are failures of their
kind; under the ``excluded`` failure policy (the official one) they count nowhere. ``extra.flags`` counts the
images whose answers carried each flag (``out_of_range``: a value outside 1-5, which step1 accepts; ``no_score``;
``official_crash``; ``truncated``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rrbench.metrics._core import SCORE, STRATA_MEAN, Coverage, Ledger, MetricContext, Tally, Unit
from rrbench.metrics.generation import image_score
from rrbench.registry import metric
from rrbench.types import SampleResult

COUNTED_FLAGS = ("out_of_range", "no_score", "official_crash", "truncated")


@metric("imgedit-type-mean", description="ImgEdit-Bench: mean over edit types of the per-type mean image score "
                                         "(extra: step2's rounded typescore and the papers' overall)")
def imgedit_type_mean(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    units, coverage, flags = _units(results)
    scores = typescore(units)
    extra: dict[str, Any] = {"typescore": scores, "flags": flags, "breakdown": {"type": dict(scores)}}
    if scores:
        extra["overall_of_rounded_types"] = sum(scores.values()) / len(scores)
    return Tally(units, coverage, None, extra=extra, aggregate=STRATA_MEAN, scale=SCORE, proportion=False,
                 unit="image")


@metric("imgedit-image-mean", description="ImgEdit-Bench: mean image score over every scored image")
def imgedit_image_mean(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    units, coverage, flags = _units(results)
    return Tally(units, coverage, None, extra={"flags": flags}, scale=SCORE, proportion=False, unit="image")


def typescore(units: Sequence[Unit]) -> dict[str, float]:
    """step2_typescore.py's output on the scored images: per edit type, in first-seen order, round(mean, 2) with the
    scores summed in the order given (lines 8-17)."""
    by_type: dict[str, list[float]] = {}
    for unit in units:
        if unit.credit is not None:
            by_type.setdefault(str(unit.stratum), []).append(unit.credit)
    return {edit_type: round(sum(scores) / len(scores), 2) for edit_type, scores in by_type.items()}


def _units(results: Sequence[SampleResult]) -> tuple[tuple[Unit, ...], Coverage, dict[str, int]]:
    """One unit per image (credit: its score, None when it failed), stratified by edit type; coverage; flag counts."""
    ledger = Ledger(len(results))
    units: list[Unit] = []
    flags = dict.fromkeys(COUNTED_FLAGS, 0)
    for index, result in enumerate(results):
        edit_type = result.meta.get("edit_type")
        if result.skipped or not result.trials or edit_type is None:  # step2:11 ignores keys without a type
            ledger.skipped(index)
            continue
        for trial in result.trials:
            score, failure = image_score(trial)
            if failure is not None:
                ledger.failed(index, failure)
            else:
                ledger.scored(index)
            units.append(Unit(result.sample_id, score, str(edit_type)))
            for flag in {f for j in trial.judgements for f in j.flags if f in flags}:
                flags[flag] += 1
    return tuple(units), ledger.coverage(), flags
