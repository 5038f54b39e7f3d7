"""Pairwise preference metrics: accuracy per trial and all-or-nothing accuracy per group, under any tie policy.

Ranking and score labels take part too: every candidate pair becomes one comparison (a human tie where the ranks
or scores are equal), which is what the ``imagereward`` policy asks for on ImageRewardDB.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rrbench.metrics._core import Ledger, MetricContext, Tally, Unit
from rrbench.metrics._rules import PairRule, get_rule
from rrbench.metrics._ties import PairUnit, best_epsilon, best_threshold, pair_units, unit_credit
from rrbench.registry import metric
from rrbench.types import FailureKind, SampleResult

PICKAPIC_THRESHOLDS = tuple(i / 10 for i in range(11))


@metric("accuracy", description="pairwise accuracy under the run's tie policy; unit = trial (or human-ordered pair)")
def accuracy(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    return _score(results, ctx, grouped=False)


@metric("group-accuracy", description="a group (meta 'group') counts only if every comparison in it is right")
def group_accuracy(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    """EditReward-Bench K=3/4. A group with any failed comparison is a failed unit; comparisons whose label the
    policy skips are left out of their group, and a sample without a group is a group of its own."""
    return _score(results, ctx, grouped=True)


@dataclass(frozen=True)
class _Block:
    """The comparisons that make one counted unit: one comparison of one trial, or every comparison of a group."""

    cluster: str
    units: tuple[PairUnit, ...]
    failure: FailureKind | None
    complete: bool = True  # a group holds every comparison it should (meta["group_size"]); otherwise it is wrong


def _score(results: Sequence[SampleResult], ctx: MetricContext, *, grouped: bool) -> Tally:
    rule = get_rule(ctx.tie_policy)
    if rule.knob == "threshold":
        return _score_pickapic(results, ctx, rule, grouped)
    # Samples marked as validation exist to choose the Pick-a-Pic threshold; under any other rule they are not
    # part of the test set, so they count in n_total and extra["n_validation"] only (as under "pickapic").
    validation = sum(1 for r in results if r.meta.get("split") == "validation")
    scored = [r for r in results if r.meta.get("split") != "validation"] if validation else results
    ledger, blocks = _collect(scored, rule, grouped)
    knob = 0.0
    extra: dict[str, object] = {"n_validation": validation} if validation else {}
    if rule.knob == "epsilon":
        knob = best_epsilon([b.units for b in blocks if b.failure is None], ctx.options.get("epsilon_grid"), rule)
        extra["epsilon"] = knob
    if rule.knob == "tie_split":
        knob, extra["tie_split_from"] = _tie_split([b.units for b in blocks], ctx)
        extra["tie_split"] = knob
    extra.update(rule.notes([u for b in blocks for u in b.units]))
    units = tuple(_counted(b, rule, knob, grouped) for b in blocks)
    coverage = dataclasses.replace(ledger.coverage(), n_total=len(results))
    return Tally(units, coverage, ctx.tie_policy, extra)


def _tie_split(blocks: Sequence[Sequence[PairUnit]], ctx: MetricContext) -> tuple[float, str]:
    """The score at which a score judge's tie becomes "both good" rather than "both bad" (GenAI-Bench 4-way).

    ``options["tie_split"]`` when the protocol fixes one; otherwise the median of every candidate score the
    judge gave in this run, which needs no knowledge of the judge's scale (a constant judge's ties then all
    read as "both good", so it scores like a random guess between the two tie kinds, not as if it knew both).
    """
    if ctx.options.get("tie_split") is not None:
        return float(ctx.options["tie_split"]), "options"
    scores = [s for units in blocks for u in units
              if u.failure is None and u.read is None and u.prediction is not None and u.prediction.verdict is None
              for s in u.prediction.scores if s is not None and math.isfinite(s)]
    return (float(statistics.median(scores)), "median of scores") if scores else (0.0, "no scores")


def _score_pickapic(results: Sequence[SampleResult], ctx: MetricContext, rule: PairRule, grouped: bool) -> Tally:
    """Choose t on the validation results, then score the others at that t (the official Pick-a-Pic recipe).

    Validation samples count in ``n_total`` and ``extra["n_validation"]`` only; the other coverage counts and the
    value describe the scored results. Without judged validation results t is ``options["threshold"]`` (default 0).
    """
    validation = [r for r in results if r.meta.get("split") == "validation"]
    others = [r for r in results if r.meta.get("split") != "validation"]
    _, val_blocks = _collect(validation, rule, grouped)
    judged = [b.units for b in val_blocks if b.failure is None]
    if judged:
        grid = ctx.options.get("pickapic_thresholds") or PICKAPIC_THRESHOLDS
        threshold = best_threshold(judged, grid, lambda units, t: _credit(units, rule, t, grouped))
        source = "validation"
    else:
        threshold = float(ctx.options.get("threshold", 0.0))
        source = "options"  # no judged validation results: n_validation says how many there were
    extra = {"threshold": threshold, "threshold_from": source, "n_validation": len(validation)}
    ledger, blocks = _collect(others, rule, grouped)
    units = tuple(_counted(b, rule, threshold, grouped) for b in blocks)
    coverage = dataclasses.replace(ledger.coverage(), n_total=len(results))
    return Tally(units, coverage, ctx.tie_policy, extra)


def _collect(results: Sequence[SampleResult], rule: PairRule, grouped: bool) -> tuple[Ledger, list[_Block]]:
    ledger = Ledger(len(results))
    members: dict[str, list[PairUnit]] = {}  # insertion-ordered, so blocks follow the results
    for index, result in enumerate(results):
        units = pair_units(index, result, rule)
        if not units:
            ledger.skipped(index)
        for n, unit in enumerate(units):
            if unit.failure is None:
                ledger.scored(index)
            else:
                ledger.failed(index, unit.failure)
            key = _group_of(result) if grouped else f"{index}\x1f{n}"
            members.setdefault(key, []).append(unit)
    # A group is its own cluster; a lone comparison is clustered by its sample, so both orders move together.
    blocks = [_block(key if grouped else results[group[0].index].sample_id, group, rule.group_failure)
              for key, group in members.items()]
    if grouped:
        present = Counter(_group_of(r) for r in results)  # label-skipped rows count: they are in the data
        blocks = [dataclasses.replace(b, complete=_complete(b, results, present)) for b in blocks]
    return ledger, blocks


def _complete(block: _Block, results: Sequence[SampleResult], present: Counter[str]) -> bool:
    """Whether a group's rows are all there (the official group scorers count a short group wrong, e.g. one cut
    by --limit or a partial copy); groups of unknown size pass."""
    expected = results[block.units[0].index].meta.get("group_size")
    return expected is None or present[block.cluster] >= int(expected)


def _group_of(result: SampleResult) -> str:
    return str(result.meta.get("group", result.sample_id))


def _block(cluster: str, units: Sequence[PairUnit], group_failure: str) -> _Block:
    failures = [u.failure for u in units if u.failure is not None]
    # "all": only a group whose every comparison failed is a failed unit (EditReward's group scripts drop failed
    # calls before grouping, so such a group never reaches the denominator; a partly failed one is short, wrong).
    failed = failures and (group_failure == "any" or len(failures) == len(units))
    return _Block(cluster, tuple(units), failures[0] if failed else None)


def _counted(block: _Block, rule: PairRule, knob: float, grouped: bool) -> Unit:
    if block.failure is not None:
        return Unit(block.cluster, None)
    if not block.complete or any(u.failure is not None for u in block.units):
        return Unit(block.cluster, 0.0)
    return Unit(block.cluster, _credit(block.units, rule, knob, grouped))


def _credit(units: Sequence[PairUnit], rule: PairRule, knob: float, grouped: bool) -> float:
    credits = [unit_credit(u, rule, knob) for u in units]
    if grouped:
        return 1.0 if all(c == 1.0 for c in credits) else 0.0
    return credits[0]
