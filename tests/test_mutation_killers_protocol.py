"""The pairwise protocol's choices that tests elsewhere leave open (docs/mutation.md: rrbench/protocols/pairwise.py).

The random order rule (``--order random``): a sample is shown reversed when the first byte of
``sha256("<run seed>:<sample id>")`` is odd. The expected orders below were worked out with ``hashlib`` by hand:

    seed 0: s0 46, s1 186, s2 219, s3 61, s4 143, s5 77    (first digest byte; odd = reversed)
    seed 1: s0 101, s1 211, s2 196, s3 163, s4 157, s5 245
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rrbench.models._base import RewardModel
from rrbench.protocols.pairwise import assemble, plan, resolve_mode, shown_variables, trial_orders
from rrbench.types import FailureKind, Judgement, Label, Media, Prediction, Query, Sample, UserError, Verdict

ID, REV = (0, 1), (1, 0)


def test_random_order_follows_the_run_seed_and_the_sample_id() -> None:
    ids = [f"s{i}" for i in range(6)]
    assert [trial_orders(2, "random", 0, s)[0] for s in ids] == [ID, ID, REV, REV, REV, REV]
    assert [trial_orders(2, "random", 1, s)[0] for s in ids] == [REV, REV, ID, REV, REV, REV]


def test_random_order_is_the_same_for_the_same_seed_and_differs_between_seeds() -> None:
    ids = [f"sample-{i}" for i in range(64)]
    first = [trial_orders(2, "random", 5, s) for s in ids]
    assert first == [trial_orders(2, "random", 5, s) for s in ids]
    assert first != [trial_orders(2, "random", 6, s) for s in ids]
    assert all(len(o) == 1 for o in first)


def test_order_policies_for_three_candidates_and_for_one() -> None:
    assert trial_orders(3, "both", 0, "s") == [(0, 1, 2), (2, 1, 0)]
    assert trial_orders(3, "swapped", 0, "s") == [(2, 1, 0)]
    assert trial_orders(1, "both", 0, "s") == [(0,)]  # one candidate has one order whatever the policy
    assert trial_orders(1, "swapped", 0, "s") == [(0,)]
    with pytest.raises(UserError, match="unknown order policy 'sideways'"):
        trial_orders(2, "sideways", 0, "s")


class _Scorer(RewardModel):
    name = "scorer"

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [Judgement(scores=(0.5,)) for _ in queries]


class _Comparer(RewardModel):
    name = "comparer"
    pairwise = True

    def compare(self, queries: Sequence[Query]) -> list[Judgement]:
        return [Judgement(verdict=Verdict.A) for _ in queries]


class _Both(_Comparer):
    name = "both"
    pairwise = False

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [Judgement(scores=(0.5,)) for _ in queries]


def test_mode_auto_follows_the_model_and_the_candidate_count() -> None:
    assert resolve_mode("auto", _Comparer()) == "pairwise"
    assert resolve_mode("auto", _Comparer(), 3) == "pointwise"
    assert resolve_mode("auto", _Scorer()) == "pointwise"
    assert resolve_mode("auto", _Both()) == "pointwise"  # can compare, but prefers to score


def test_an_impossible_mode_is_a_user_error() -> None:
    with pytest.raises(UserError, match="cannot judge pairs natively"):
        resolve_mode("pairwise", _Scorer())
    with pytest.raises(UserError, match="cannot score single images"):
        resolve_mode("pointwise", _Comparer())
    assert resolve_mode("pairwise", _Both()) == "pairwise"
    assert resolve_mode("pointwise", _Both()) == "pointwise"


def _sample(meta: dict | None = None) -> Sample:
    return Sample("s1", "a cat", (Media.from_bytes(b"\x89PNG a"), Media.from_bytes(b"\x89PNG b")), Label.win(0),
                  meta=meta or {})


def test_shown_variables_name_the_candidates_in_the_shown_order() -> None:
    sample = _sample({"comparison_type": "AvsC", "dataset": "3pair", "note": 7})
    names = ("comparison_type", "dataset", "missing", "note")
    assert shown_variables(sample, names, (0, 1)) == (("comparison_type", "AvsC"), ("dataset", "3pair"),
                                                       ("note", "7"))
    assert shown_variables(sample, names, (1, 0)) == (("comparison_type", "CvsA"), ("dataset", "3pair"),
                                                       ("note", "7"))
    # only a comparison type of the form XvsY is turned round; other fields never are
    odd = _sample({"comparison_type": "A-vs-C", "dataset": "AvsC"})
    assert shown_variables(odd, ("comparison_type", "dataset"), (1, 0)) == (("comparison_type", "A-vs-C"),
                                                                           ("dataset", "AvsC"))


def test_a_pairwise_plan_carries_the_judge_prompt_and_its_variables() -> None:
    sample = _sample({"comparison_type": "AvsB"})
    (request,) = plan(sample, "pairwise", (1, 0), "edit", "genai-bench/verdict", ("comparison_type",))
    assert request.op == "compare"
    query = request.query
    assert query.candidates == (sample.candidates[1], sample.candidates[0])
    assert (query.generation, query.sample_id, query.judge_prompt) == ("edit", "s1", "genai-bench/verdict")
    assert query.variables == (("comparison_type", "BvsA"),)
    pointwise = plan(sample, "pointwise", (0, 1), "t2i")
    assert [r.query.candidates for r in pointwise] == [(sample.candidates[0],), (sample.candidates[1],)]
    assert all(r.query.sample_id == "s1" and r.query.prompt == "a cat" for r in pointwise)


def test_assemble_maps_scores_and_verdicts_back() -> None:
    shown_first = assemble((0, 1), "pairwise", [Judgement(scores=(3.0, 1.0), verdict=Verdict.A)])
    assert shown_first.prediction == Prediction((3.0, 1.0), Verdict.A)
    reversed_b = assemble((1, 0), "pairwise", [Judgement(verdict=Verdict.B)])
    assert reversed_b.prediction == Prediction((None, None), Verdict.A)
    only_scores = assemble((1, 0), "pairwise", [Judgement(scores=(None, 2.0))])
    assert only_scores.prediction == Prediction((2.0, None))
    tie = assemble((1, 0), "pairwise", [Judgement(verdict=Verdict.TIE)])
    assert tie.prediction == Prediction((None, None), Verdict.TIE)


def test_assemble_fails_a_trial_without_anything_to_compare() -> None:
    missing = assemble((0, 1), "pointwise", [Judgement(scores=(0.4,)), Judgement()])
    assert missing.prediction is None and missing.failure is FailureKind.PARSE
    assert missing.judgements[-1].failure is FailureKind.PARSE  # the reason is recorded with the answers
    first_failure = assemble((0, 1), "pointwise", [Judgement.failed(FailureKind.TIMEOUT, "t"),
                                                   Judgement.failed(FailureKind.HTTP, "h")])
    assert first_failure.failure is FailureKind.TIMEOUT and len(first_failure.judgements) == 2
