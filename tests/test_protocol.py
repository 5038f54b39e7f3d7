from __future__ import annotations

from rrbench.protocols.pairwise import assemble, plan, trial_orders
from rrbench.types import FailureKind, Judgement, Label, Media, Prediction, Sample, Verdict


def _sample() -> Sample:
    a = Media.from_bytes(b"\x89PNG a")
    b = Media.from_bytes(b"\x89PNG b")
    return Sample("s1", "a cat", (a, b), Label.win(0))


def test_order_policies() -> None:
    assert trial_orders(2, "fixed", 0, "s") == [(0, 1)]
    assert trial_orders(2, "swapped", 0, "s") == [(1, 0)]
    assert trial_orders(2, "both", 0, "s") == [(0, 1), (1, 0)]
    picks = {trial_orders(2, "random", 0, f"s{i}")[0] for i in range(40)}
    assert picks == {(0, 1), (1, 0)}
    assert trial_orders(2, "random", 3, "s7") == trial_orders(2, "random", 3, "s7")


def test_pairwise_answers_map_back_to_the_sample_order() -> None:
    sample = _sample()
    requests = plan(sample, "pairwise", (1, 0), "t2i")
    assert len(requests) == 1 and requests[0].query.candidates[0] is sample.candidates[1]
    # shown (B, A); the judge prefers what it saw first, i.e. original candidate 1
    trial = assemble((1, 0), "pairwise", [Judgement(scores=(3.0, 1.0), verdict=Verdict.A)])
    assert trial.prediction == Prediction((1.0, 3.0), Verdict.B)
    tie = assemble((1, 0), "pairwise", [Judgement(verdict=Verdict.BOTH_BAD)])
    assert tie.prediction is not None and tie.prediction.verdict is Verdict.BOTH_BAD


def test_pointwise_scores_each_candidate() -> None:
    sample = _sample()
    requests = plan(sample, "pointwise", (1, 0), "t2i")
    assert [r.op for r in requests] == ["score", "score"]
    trial = assemble((1, 0), "pointwise", [Judgement(scores=(0.2,)), Judgement(scores=(0.9,))])
    assert trial.prediction == Prediction((0.9, 0.2))


def test_a_failed_judgement_fails_the_trial_with_its_kind() -> None:
    trial = assemble((0, 1), "pointwise", [Judgement(scores=(0.2,)), Judgement.failed(FailureKind.HTTP, "503")])
    assert trial.prediction is None and trial.failure is FailureKind.HTTP
    empty = assemble((0, 1), "pairwise", [Judgement()])
    assert empty.failure is FailureKind.PARSE
