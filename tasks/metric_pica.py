"""`pica-accuracy`: PICA-Bench's accuracy (``calculate_accuracy_by_dimension``, PicaEval_gpt.py:456-522 at commit
0514acd of github.com/Andrew0613/PICABench).

A case's accuracy is its correct answers over its asked questions (a failed call counted wrong); the overall number
is the mean of the cases' accuracies x 100, in the order of meta_info.json (:481-514); a case with no asked question
is left out (:493-494). Per physics category, law and edit operation the same mean over that group's cases
(:499-512). The value here is that mean as a fraction (the report shows it x 100); ``extra`` holds the number exactly
as the official code computes it (``official_overall`` = 100.0 * sum / count, summed in meta_info order) and the
breakdowns ``by_category``, ``by_law``, ``by_operation`` with the official fields (accuracy, sample_count, qa_total)
and a 95% interval (the cluster bootstrap over cases, seed 0).

One unit per case, credit = its accuracy. A case whose image is missing was never asked anything (the official
prepare_meta_info.py leaves it out of meta_info.json): a failed unit, excluded under the official protocol. A case
whose calls failed keeps its official accuracy (those questions wrong) and is also counted among the failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rrbench.metrics._bootstrap import metric_ci
from rrbench.metrics._core import Ledger, MetricContext, Tally, Unit, trial_failure
from rrbench.registry import metric
from rrbench.types import FailureKind, SampleResult, Trial

GROUPS = (("by_category", "physics_category"), ("by_law", "physics_law"), ("by_operation", "edit_operation"))
CI_SEED, CI_BOOT = 0, 1000


@dataclass(frozen=True)
class Case:
    """One judged case: its accuracy inputs and its groups."""

    sample_id: str
    correct: int
    asked: int
    groups: Mapping[str, str]

    @property
    def accuracy(self) -> float:
        return self.correct / self.asked


def case_of(result: SampleResult, trial: Trial) -> Case | None:
    """The case as the official summary reads it, or None when none of its questions was asked."""
    answers = [j.aspects[0]["correct"] for j in trial.judgements if j.aspects and "correct" in j.aspects[0]]
    if not answers:
        return None
    groups = {field: str(result.meta.get(field, "unknown")) for _, field in GROUPS}
    return Case(result.sample_id, sum(1 for a in answers if a == 1.0), len(answers), groups)


def summary(cases: Sequence[Case]) -> dict[str, Any]:
    """calculate_accuracy_by_dimension's numbers, in its order of operations (PicaEval_gpt.py:456-522)."""
    total, acc_sum, count = 0, 0.0, 0
    stats: dict[str, dict[str, dict[str, float]]] = {name: {} for name, _ in GROUPS}
    for case in cases:
        accuracy = case.correct / case.asked
        count += 1
        acc_sum += accuracy
        total += case.asked
        for name, field in GROUPS:
            entry = stats[name].setdefault(case.groups[field], {"sum_acc": 0.0, "sample_count": 0, "qa_total": 0})
            entry["sum_acc"] += accuracy
            entry["sample_count"] += 1
            entry["qa_total"] += case.asked
    out: dict[str, Any] = {"overall_accuracy": (100.0 * acc_sum / count) if count > 0 else 0.0,
                           "sample_count": count, "qa_total": total}
    for name, _ in GROUPS:
        out[name] = {key: {"accuracy": 100.0 * v["sum_acc"] / v["sample_count"] if v["sample_count"] > 0 else 0.0,
                           "sample_count": int(v["sample_count"]), "qa_total": int(v["qa_total"])}
                     for key, v in stats[name].items()}
    return out


def official_summary(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The analysis file PicaEval_gpt.py writes (:576-581), from its output items (``judge_pica.answers``)."""
    cases = []
    for item in items:
        asked = [qa for qa in item.get("annotated_qa_pairs") or () if "is_correct" in qa]
        if asked:
            groups = {field: item.get(field, "unknown") for _, field in GROUPS}
            cases.append(Case(str(item.get("index")), sum(1 for qa in asked if qa["is_correct"]), len(asked), groups))
    return summary(cases)


def _intervals(cases: Sequence[Case], out: dict[str, Any]) -> None:
    """Adds a 95% interval (in %) to every group of ``out``: the cases of the group resampled as clusters."""
    for name, field in GROUPS:
        for key, entry in out[name].items():
            members = [c for c in cases if c.groups[field] == key]
            ci = metric_ci([c.accuracy for c in members], [c.sample_id for c in members], proportion=True,
                           seed=CI_SEED, n_boot=CI_BOOT)
            entry.update(ci_low=round(100.0 * ci.low, 2), ci_high=round(100.0 * ci.high, 2))


@metric("pica-accuracy", description="PICA-Bench: mean over cases of correct answers / questions "
                                     "(by category, law and operation in extra)")
def pica_accuracy(results: Sequence[SampleResult], ctx: MetricContext) -> Tally:
    ledger = Ledger(len(results))
    units: list[Unit] = []
    cases: list[Case] = []
    calls: dict[str, int] = {}
    order = sorted(range(len(results)), key=lambda i: _position(results[i]))
    for index in order:
        result = results[index]
        if result.skipped or not result.trials:
            ledger.skipped(index)
            continue
        for trial in result.trials:
            case = case_of(result, trial)
            failure = trial_failure(trial)
            if case is None and failure in (None, FailureKind.DATA) and not _has_questions(result):
                ledger.skipped(index)  # nothing to ask: the official summary skips the case (:493-494)
                continue
            if failure is not None:
                ledger.failed(index, failure)
            if case is None:
                units.append(Unit(result.sample_id, None))
                continue
            ledger.scored(index)
            cases.append(case)
            units.append(Unit(result.sample_id, case.accuracy))
            for judgement in trial.judgements:
                if judgement.failure is not None:
                    calls[judgement.failure.value] = calls.get(judgement.failure.value, 0) + 1
    extra = summary(cases)
    extra["official_overall"] = extra.pop("overall_accuracy")
    if cases:
        _intervals(cases, extra)
    extra["failed_calls_counted_wrong"] = dict(sorted(calls.items()))
    # what the leaderboard's per-dimension table shows: fractions, like the value (the official fields are percent)
    extra["breakdown"] = {name.removeprefix("by_"): {k: v["accuracy"] / 100.0 for k, v in extra[name].items()}
                          for name, _ in GROUPS}
    return Tally(tuple(units), ledger.coverage(), None, extra=extra, proportion=True, unit="case")


def _position(result: SampleResult) -> tuple[int, str]:
    """meta_info.json's order: the dataset index."""
    index = result.meta.get("index")
    return (index if isinstance(index, int) else 1 << 62, result.sample_id)


def _has_questions(result: SampleResult) -> bool:
    from rrbench.tasks.judge_pica import askable

    return bool(askable(result.meta.get("annotated_qa_pairs")))
