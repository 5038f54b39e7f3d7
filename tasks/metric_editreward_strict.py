"""`strict-ranking-accuracy`: EditReward's strict ranking accuracy of a K=3/4 group (github.com/TIGER-AI-Lab/
EditReward, ``EditReward/evaluate/eval_bench.py`` lines 570-587): a group is right when the human order equals
``tuple(np.argsort(scores)[::-1])`` of the model's scores for its candidates; no epsilon, so equal scores are ordered
by numpy's argsort (K=3, human A>C>B, scores A=2, B=1, C=1: argsort gives (1, 2, 0), reversed (0, 2, 1) = A>C>B,
right). It needs scores: a judge that only gives verdicts has no order to compare (a parse failure per group).

The unit is the group (meta ``group``); a candidate's score is read from the first of its group's rows that shows it
(rows are pointwise scores of the same image, so they agree for a deterministic scorer). A group short of its
C(K, 2) rows is wrong, a group with a failed row is a failed unit.
"""

from __future__ import annotations

from collections.abc import Sequence

from rrbench.metrics._core import Ledger, MetricContext, Tally, Unit, trial_failure
from rrbench.metrics._rules import human_class, pair_scores
from rrbench.registry import metric
from rrbench.tasks._editreward_evalbench import group_order, model_order, pairwise_gt
from rrbench.tasks.rule_editreward import group_k, letters
from rrbench.types import FailureKind, SampleResult


@metric("strict-ranking-accuracy",
        description="EditReward eval_bench.py: a group is right when argsort of its scores gives the human order")
def strict_ranking_accuracy(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    ledger = Ledger(len(results))
    groups: dict[str, list[int]] = {}
    for index, result in enumerate(results):
        if result.skipped or human_class(result.label) is None or not result.trials:
            ledger.skipped(index)
            continue
        groups.setdefault(str(result.meta.get("group", result.sample_id)), []).append(index)
    units = [_group_unit(key, [results[i] for i in members], members, ledger) for key, members in groups.items()]
    return Tally(tuple(units), ledger.coverage(), None)


def _group_unit(key: str, rows: list[SampleResult], indices: list[int], ledger: Ledger) -> Unit:
    scores: dict[str, float] = {}
    failure: FailureKind | None = None
    for index, row in zip(indices, rows, strict=True):
        trial = row.trials[0]
        pair = pair_scores(trial.prediction) if trial.prediction is not None else None
        row_failure = trial_failure(trial) or (None if pair is not None else FailureKind.PARSE)
        if row_failure is not None:
            ledger.failed(index, row_failure)
            failure = failure or row_failure
            continue
        ledger.scored(index)
        assert pair is not None
        for letter, value in zip(letters(row.meta), pair, strict=True):
            scores.setdefault(letter, value)
    if failure is not None:
        return Unit(key, None)
    k = group_k(rows[0].meta)
    if len(rows) < k * (k - 1) // 2:
        return Unit(key, 0.0)
    relations = [(*letters(r.meta), pairwise_gt(r.meta.get("ranking"), *letters(r.meta))) for r in rows]
    human = group_order(relations, k)
    return Unit(key, 1.0 if human is not None and human == model_order(scores, k) else 0.0)
