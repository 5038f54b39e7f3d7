"""Boundaries and branches of the preference metrics that the golden cases leave open (docs/mutation.md:
rrbench/metrics/). Every expected number is worked out in the test's comment from the documented rule.

Rules used here (rrbench/metrics/_rules.py and the rule files): ``tie-calibrated`` predicts a tie when
``|s0 - s1| <= epsilon`` and picks the smallest epsilon with the most units right among 0 and the observed gaps;
``pickapic`` predicts a tie when ``|p0 - p1| <= t`` with ``p = softmax(s0, s1)`` (``|p0 - p1| = |tanh((s0 - s1)/2)|``),
credits a match 1 and a half-tie 0.5, and takes the first best ``t`` of ``0, 0.1, ..., 1`` on the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from rrbench.metrics import Ledger, Tally, Unit, clopper_pearson, compute_metrics, metric_ci, pair_credit
from rrbench.metrics._core import MetricContext, check_failure_policy, mean, trial_failure
from rrbench.metrics.pairs import PICKAPIC_THRESHOLDS, accuracy, group_accuracy
from rrbench.metrics.ranking import inversion, inversion_score, inversion_score_ties, kendall, spearman
from rrbench.types import (
    FailureKind,
    Judgement,
    Label,
    LabelKind,
    Prediction,
    Protocol,
    SampleResult,
    Trial,
    UserError,
    Verdict,
)

A, B, TIE = Label.win(0), Label.win(1), Label.tie()


def _trial(*scores: float | None, verdict: Verdict | None = None, order: tuple[int, ...] = (0, 1),
           failure: FailureKind | None = None, raw: str | None = None, prompt: str | None = None) -> Trial:
    judgements = (Judgement(verdict=verdict, raw=raw, prompt=prompt),) if raw is not None else ()
    if failure is not None:
        return Trial(order, judgements, None, failure)
    return Trial(order, judgements, Prediction(tuple(scores) if scores else (None, None), verdict))


def _result(sid: str, label: Label, *trials: Trial, **meta: object) -> SampleResult:
    return SampleResult(sid, label, tuple(trials), meta=meta)


def _tally(results: Sequence[SampleResult], policy: str, *, grouped: bool = False, **options: object) -> Tally:
    ctx = MetricContext(policy, options)
    return group_accuracy(results, ctx) if grouped else accuracy(results, ctx)


def _credits(tally: Tally, failure_policy: str = "excluded") -> list[float]:
    return tally.credits(failure_policy)[0]


# --------------------------------------------------------------------------------------------------- tie thresholds


def test_a_gap_equal_to_epsilon_is_a_tie() -> None:
    # 0.75 - 0.5 = 0.25 exactly in binary floating point
    assert pair_credit(TIE, Prediction((0.75, 0.5)), "tie-calibrated", knob=0.25) == 1
    assert pair_credit(A, Prediction((0.75, 0.5)), "tie-calibrated", knob=0.25) == 0
    assert pair_credit(A, Prediction((0.75, 0.5)), "tie-calibrated", knob=0.125) == 1


def test_the_chosen_epsilon_is_the_gap_of_the_tie_it_makes() -> None:
    # a human tie with gap 0.25 is right from epsilon 0.25 on; a human "A" with gap 0.5 while epsilon < 0.5:
    # candidates 0, 0.25, 0.5 get 1, 2, 1 right, so epsilon = 0.25 and both are right
    results = [_result("t", TIE, _trial(0.75, 0.5)), _result("a", A, _trial(1.0, 0.5))]
    tally = _tally(results, "tie-calibrated")
    assert tally.extra["epsilon"] == 0.25 and _credits(tally) == [1.0, 1.0]


def test_a_verdict_is_never_turned_into_a_tie_by_epsilon() -> None:
    # "a": human A, gap 0.125, right only while epsilon < 0.125. "t": human tie with a TIE verdict (its scores
    # 0.9/0.1 say A, but the verdict is what counts): right at every epsilon, and its gap is no candidate.
    # epsilon 0: both right.
    results = [_result("a", A, _trial(0.625, 0.5)), _result("t", TIE, _trial(0.875, 0.125, verdict=Verdict.TIE))]
    tally = _tally(results, "tie-calibrated")
    assert tally.extra["epsilon"] == 0.0 and _credits(tally) == [1.0, 1.0]


def test_equal_scores_are_a_tie_at_any_epsilon_even_a_negative_one() -> None:
    # a user grid of -1 means "no ties": equal scores still compare as a tie, a gap of 0.5 as a winner
    results = [_result("t", TIE, _trial(0.5, 0.5)), _result("a", A, _trial(1.0, 0.5)),
               _result("b", TIE, _trial(0.5, 1.0))]
    tally = _tally(results, "tie-calibrated", epsilon_grid=[-1.0])
    assert tally.extra["epsilon"] == -1.0 and _credits(tally) == [1.0, 1.0, 0.0]


def test_pickapic_probability_gap_equal_to_t_is_a_tie() -> None:
    # tanh(20) rounds to exactly 1.0, so the probability gap of scores 40 and 0 is exactly t = 1
    assert pair_credit(TIE, Prediction((40.0, 0.0)), "pickapic", knob=1.0) == 1.0
    assert pair_credit(TIE, Prediction((40.0, 0.0)), "pickapic", knob=0.9) == 0.5
    assert pair_credit(A, Prediction((40.0, 0.0)), "pickapic", knob=1.0) == 0.5


def test_pickapic_grid_is_zero_to_one_in_tenths() -> None:
    assert PICKAPIC_THRESHOLDS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _pickapic_set() -> list[SampleResult]:
    """Validation: a human tie with score gap 0.5 (prob gap tanh(0.25) = 0.245) and a human "A" with score gap 0.8
    (prob gap tanh(0.4) = 0.380). Credit total per t: 0.0-0.2 -> 0.5 + 1; 0.3 -> 1 + 1; 0.4 and up -> 1 + 0.5.
    So t = 0.3, and the test sample (human "A", score gap 0.7: prob gap tanh(0.35) = 0.336) is right at 0.3."""
    return [
        _result("v1", TIE, _trial(1.5, 1.0), split="validation"),
        _result("v2", A, _trial(1.8, 1.0), split="validation"),
        _result("t1", A, _trial(1.7, 1.0), split="test"),
    ]


def test_pickapic_picks_t_on_validation_from_the_grid() -> None:
    tally = _tally(_pickapic_set(), "pickapic")
    assert tally.extra == {"threshold": 0.3, "threshold_from": "validation", "n_validation": 2}
    assert _credits(tally) == [1.0]
    assert (tally.coverage.n_total, tally.coverage.n_scored) == (3, 1)


def test_pickapic_grid_from_the_options_and_t_without_validation() -> None:
    # a grid of 0.5 alone: the test sample's gap 0.336 is a tie at 0.5, half credit
    assert _credits(_tally(_pickapic_set(), "pickapic", pickapic_thresholds=[0.5])) == [0.5]
    test_only = _pickapic_set()[2:]
    tally = _tally(test_only, "pickapic", threshold=0.4)
    assert tally.extra == {"threshold": 0.4, "threshold_from": "options", "n_validation": 0}
    assert _credits(tally) == [0.5]
    assert _tally(test_only, "pickapic").extra["threshold"] == 0.0
    # validation whose every call failed chooses nothing: t comes from the options
    failed = [_result("v", TIE, _trial(failure=FailureKind.HTTP), split="validation"), *test_only]
    assert _tally(failed, "pickapic", threshold=0.4).extra["threshold_from"] == "options"


def test_pickapic_t_of_one_when_only_the_largest_t_makes_the_ties() -> None:
    # human ties with probability gaps 0.95 (score gap 2 atanh(0.95) = 3.66): only t = 1 calls them ties
    results = [_result(f"v{i}", TIE, _trial(3.7, 0.0), split="validation") for i in range(2)]
    results.append(_result("t", TIE, _trial(3.7, 0.0), split="test"))
    tally = _tally(results, "pickapic")
    assert tally.extra["threshold"] == 1.0 and _credits(tally) == [1.0]


def test_validation_samples_are_left_out_under_other_policies() -> None:
    results = [_result("v", A, _trial(0.0, 1.0), split="validation"), _result("t", A, _trial(1.0, 0.0))]
    tally = _tally(results, "exact")
    assert _credits(tally) == [1.0] and tally.extra == {"n_validation": 1}
    assert tally.coverage.n_total == 2
    assert _tally(results[1:], "exact").extra == {}


# --------------------------------------------------------------------------------------------------- genai 4-way


def test_tie_split_is_the_median_score_or_the_option() -> None:
    # every score given: 3, 3, 2, 2, 3, 1, median 2.5. The 3/3 tie sits above it ("both good", right), the 2/2 tie
    # below ("both bad", right). With the split fixed at 3.5 both ties read "both bad": the first is then wrong.
    results = [_result("g", Label.tie(LabelKind.BOTH_GOOD), _trial(3.0, 3.0)),
               _result("b", Label.tie(LabelKind.BOTH_BAD), _trial(2.0, 2.0)),
               _result("a", A, _trial(3.0, 1.0))]
    tally = _tally(results, "genai-4way")
    assert (tally.extra["tie_split"], tally.extra["tie_split_from"]) == (2.5, "median of scores")
    assert _credits(tally) == [1.0, 1.0, 1.0]
    fixed = _tally(results, "genai-4way", tie_split=3.5)
    assert (fixed.extra["tie_split"], fixed.extra["tie_split_from"]) == (3.5, "options")
    assert _credits(fixed) == [0.0, 1.0, 1.0]


def test_tie_split_without_scores() -> None:
    results = [_result("v", A, _trial(verdict=Verdict.A))]
    tally = _tally(results, "genai-4way")
    assert (tally.extra["tie_split"], tally.extra["tie_split_from"]) == (0.0, "no scores")


def test_genai_official_reading_applies_to_pairs_and_reports_disagreements() -> None:
    # "[[a>b]]" is no official vote (case matters): wrong officially, right under the lenient reading (verdict A)
    lower = _trial(verdict=Verdict.A, raw="Verdict: [[a>b]]")
    exact = _trial(verdict=Verdict.A, raw="[[A>B]]")
    results = [_result("x", A, lower), _result("y", A, exact)]
    official = _tally(results, "genai-4way")
    assert _credits(official) == [0.0, 1.0]
    assert official.extra["answers_read"] == 2 and official.extra["lenient_reading_differs"] == 1
    assert _credits(_tally(results, "genai-4way-lenient")) == [1.0, 1.0]


def test_a_reading_rule_that_reads_nothing_fails_the_comparison() -> None:
    # MMRB2's scorer does not count an empty better_response: a failed comparison, not a wrong one
    empty = _trial(verdict=Verdict.A, raw='{"better_response": ""}', prompt="mmrb2/verdict-t2i")
    right = _trial(verdict=Verdict.A, raw='{"better_response": "A"}', prompt="mmrb2/verdict-t2i")
    tally = _tally([_result("e", A, empty), _result("r", A, right)], "mmrb2")
    assert [u.credit for u in tally.units] == [None, 1.0]
    assert tally.coverage.n_failed == 1 and tally.coverage.failed_by_kind == {"error": 1}


# --------------------------------------------------------------------------------------------------- units


def test_a_score_label_of_two_candidates_is_one_comparison() -> None:
    label = Label(LabelKind.SCORES, scores=(0.2, 0.9))
    tally = _tally([_result("s", label, _trial(0.1, 0.8))], "exact")
    assert _credits(tally) == [1.0]
    assert _tally([_result("s", Label(LabelKind.SCORES, scores=(0.2,)), _trial(0.1))], "exact").units == ()


def test_a_three_candidate_ranking_uses_the_scores_not_a_verdict_text() -> None:
    # three candidates: the verdict text means nothing; the three pairs come from the scores (0-1, 0-2, 1-2)
    trial = Trial((0, 1, 2), (Judgement(verdict=Verdict.B, raw="[[B>A]]"),), Prediction((3.0, 2.0, 1.0)))
    ranking = Label(LabelKind.RANKING, ranks=(1, 2, 3))
    tally = _tally([_result("r", ranking, trial)], "genai-4way")
    assert _credits(tally) == [1.0, 1.0, 1.0]


def test_a_ranking_with_a_missing_score_fails_that_pair_only() -> None:
    trial = Trial((0, 1, 2), (), Prediction((3.0, None, 1.0)))
    tally = _tally([_result("r", Label(LabelKind.RANKING, ranks=(1, 2, 3)), trial)], "exact")
    assert [u.credit for u in tally.units] == [None, 1.0, None]
    assert tally.coverage.failed_by_kind == {"parse": 1}


def test_pair_credit_reads_the_row_meta() -> None:
    # EditReward's official rule compares the judge's vote with the row's ranking string: "B<A" is never matched
    assert pair_credit(A, Prediction((0.9, 0.1)), "editreward-exact", meta={"ranking": "B<A"}) == 0.0
    assert pair_credit(A, Prediction((0.9, 0.1)), "editreward-exact", meta={"ranking": "A>B"}) == 1.0
    assert pair_credit(A, Prediction((0.9, 0.1)), "editreward-exact") == 1.0


def test_pair_credit_of_a_failed_or_empty_trial_is_none() -> None:
    assert pair_credit(A, Trial((0, 1), (), None, FailureKind.TIMEOUT), "exact") is None
    assert pair_credit(A, Prediction((None, None)), "exact") is None


# --------------------------------------------------------------------------------------------------- groups


def _group(name: str, size: int | None, rows: Sequence[tuple[str, Trial]], policy_meta: dict | None = None) -> list:
    meta = {"group": name, **({"group_size": size} if size is not None else {}), **(policy_meta or {})}
    return [SampleResult(sid, A, (trial,), meta=meta) for sid, trial in rows]


def test_a_group_counts_only_when_every_row_is_there_and_right() -> None:
    right = _trial(1.0, 0.0)
    full = _group("g1", 3, [("g1a", right), ("g1b", right), ("g1c", right)])
    short = _group("g2", 3, [("g2a", right), ("g2b", right)])  # C(3, 2) = 3 rows expected, 2 present
    one_wrong = _group("g3", 3, [("g3a", right), ("g3b", _trial(0.0, 1.0)), ("g3c", right)])
    unknown_size = _group("g4", None, [("g4a", right)])
    tally = _tally([*full, *short, *one_wrong, *unknown_size], "exact", grouped=True)
    assert [(u.cluster, u.credit) for u in tally.units] == [("g1", 1.0), ("g2", 0.0), ("g3", 0.0), ("g4", 1.0)]
    six = _group("h", 6, [(f"h{i}", right) for i in range(5)])  # C(4, 2) = 6 rows expected
    assert _credits(_tally(six, "exact", grouped=True)) == [0.0]
    assert _credits(_tally([*six, *_group("h", 6, [("h5", right)])], "exact", grouped=True)) == [1.0]


def test_a_label_skipped_row_still_counts_as_present() -> None:
    right = _trial(1.0, 0.0)
    skipped = SampleResult("b", Label.unknown("?"), (right,), meta={"group": "g", "group_size": 2})
    rows = [*_group("g", 2, [("a", right)]), skipped]
    assert _credits(_tally(rows, "exact", grouped=True)) == [1.0]


def test_group_failures_any_versus_all() -> None:
    right, failed = _trial(1.0, 0.0), _trial(failure=FailureKind.HTTP)
    partly = _group("p", 2, [("p1", right), ("p2", failed)])
    wholly = _group("w", 2, [("w1", failed), ("w2", failed)])
    # "any" (exact): a group with a failed comparison is a failed unit
    assert [u.credit for u in _tally([*partly, *wholly], "exact", grouped=True).units] == [None, None]
    # "all" (editreward-exact): a partly failed group is short, hence wrong; a wholly failed one is a failed unit
    assert [u.credit for u in _tally([*partly, *wholly], "editreward-exact", grouped=True).units] == [0.0, None]


def test_a_row_without_a_group_is_a_group_of_its_own() -> None:
    results = [_result("a", A, _trial(1.0, 0.0)), _result("b", A, _trial(0.0, 1.0))]
    tally = _tally(results, "exact", grouped=True)
    assert [(u.cluster, u.credit) for u in tally.units] == [("a", 1.0), ("b", 0.0)]


def test_both_orders_of_a_sample_share_its_cluster() -> None:
    result = _result("s", A, _trial(1.0, 0.0), _trial(0.0, 1.0, order=(1, 0)))
    tally = _tally([result], "exact")
    assert [(u.cluster, u.credit) for u in tally.units] == [("s", 1.0), ("s", 0.0)]


# --------------------------------------------------------------------------------------------------- coverage


def test_coverage_counts_each_sample_once() -> None:
    ledger = Ledger(5)
    ledger.scored(0)
    ledger.failed(1, FailureKind.TIMEOUT)
    ledger.failed(1, FailureKind.HTTP)  # the first kind is kept
    ledger.failed(2, FailureKind.HTTP)
    ledger.scored(2)
    ledger.skipped(3)
    ledger.skipped(0)  # scored as well: not skipped
    coverage = ledger.coverage()
    assert (coverage.n_total, coverage.n_scored, coverage.n_failed, coverage.n_label_skipped) == (5, 2, 2, 1)
    assert coverage.failed_by_kind == {"http": 1, "timeout": 1}
    assert list(coverage.failed_by_kind) == ["http", "timeout"]


def test_failure_policies_drop_or_zero_the_failed_units() -> None:
    tally = Tally((Unit("a", 1.0), Unit("b", None), Unit("c", 0.5)), Ledger(3).coverage(), "exact")
    assert tally.credits("excluded") == ([1.0, 0.5], ["a", "c"])
    assert tally.credits("wrong") == ([1.0, 0.0, 0.5], ["a", "b", "c"])
    with pytest.raises(UserError, match="unknown failure policy 'ignore'"):
        tally.credits("ignore")
    check_failure_policy("wrong")
    assert mean([1.0, 0.0, 0.5]) == 0.5


def test_a_trial_without_prediction_fails_as_an_error() -> None:
    assert trial_failure(Trial((0, 1), (), None)) is FailureKind.ERROR
    assert trial_failure(Trial((0, 1), (), None, FailureKind.EMPTY)) is FailureKind.EMPTY
    assert trial_failure(Trial((0, 1), (), Prediction((1.0, 0.0)))) is None


# --------------------------------------------------------------------------------------------------- ranking


def _rank_result(sid: str, ranks: tuple[int, ...], *trials: Trial) -> SampleResult:
    return SampleResult(sid, Label(LabelKind.RANKING, ranks=ranks), trials)


def test_rank_metrics_skip_fail_and_average() -> None:
    good = Trial((0, 1, 2), (), Prediction((3.0, 2.0, 1.0)))
    reversed_ = Trial((0, 1, 2), (), Prediction((1.0, 2.0, 3.0)))
    short = Trial((0, 1, 2), (), Prediction((3.0, 2.0)))  # one score missing: a parse failure
    nan = Trial((0, 1, 2), (), Prediction((3.0, math.nan, 1.0)))
    results = [
        _rank_result("two-trials", (1, 2, 3), good, reversed_),  # inversion 1 and 0: mean 0.5
        _rank_result("short", (1, 2, 3), short),
        _rank_result("nan", (1, 2, 3), nan),
        _rank_result("failed", (1, 2, 3), Trial((0, 1, 2), (), None, FailureKind.TIMEOUT)),
        _rank_result("all-tied", (1, 1, 1), good),
        _result("pair", A, _trial(1.0, 0.0)),
        SampleResult("untried", Label(LabelKind.RANKING, ranks=(1, 2)), ()),
    ]
    tally = inversion(results, MetricContext())
    by_id = {u.cluster: u.credit for u in tally.units}
    # "all-tied" counts under inversion (the official average is over every prompt): no strict pair, so 1
    assert by_id == {"two-trials": 0.5, "short": None, "nan": None, "failed": None, "all-tied": 1.0}
    assert (tally.coverage.n_failed, tally.coverage.n_label_skipped) == (3, 2)
    assert tally.coverage.failed_by_kind == {"parse": 2, "timeout": 1}
    assert "all-tied" not in {u.cluster for u in kendall(results, MetricContext()).units}
    assert {u.cluster: u.credit for u in spearman(results[:1], MetricContext()).units} == {"two-trials": 0.0}


def test_inversion_scores_by_hand() -> None:
    human = np.array([-1.0, -2.0, -3.0])  # ranks 1, 2, 3 as merit
    # a model tie between the first two: the stable argsort keeps the earlier first, so no pair is reversed
    assert inversion_score(human, np.array([2.0, 2.0, 1.0])) == 1.0
    # scores 1, 2, 2: positions 2, 0, 1; pairs (0,1) and (0,2) reversed, (1,2) agrees -> 1 - 2/3
    assert inversion_score(human, np.array([1.0, 2.0, 2.0])) == pytest.approx(1 / 3)
    # ties never count as discordant in the -ties variant: only (0,1) and (0,2) are reversed here too
    assert inversion_score_ties(human, np.array([1.0, 2.0, 2.0])) == pytest.approx(1 / 3)
    assert inversion_score_ties(human, np.array([2.0, 2.0, 2.0])) == 1.0


# --------------------------------------------------------------------------------------------------- intervals


def _exact(k: int, n: int) -> tuple[float, float]:
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def test_interval_method_follows_the_units() -> None:
    binary = [1.0, 0.0, 1.0, 1.0]
    assert metric_ci(binary, ["a", "b", "c", "d"], proportion=True, seed=0).method == "clopper-pearson"
    assert metric_ci(binary, ["a", "a", "c", "d"], proportion=True, seed=0).method == "cluster-bootstrap"
    assert metric_ci(binary, ["a", "b", "c", "d"], proportion=False, seed=0).method == "cluster-bootstrap"
    assert metric_ci([0.5, 0.5], ["a", "b"], proportion=True, seed=0).method == "cluster-exact"
    # 3 of 4 right: the exact binomial interval, as scipy computes it
    interval = metric_ci(binary, ["a", "b", "c", "d"], proportion=True, seed=0)
    assert (interval.low, interval.high) == pytest.approx(_exact(3, 4))


def test_clopper_pearson_edges() -> None:
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35  # 1 - 0.025 ** (1 / 10) = 0.308
    low, high = clopper_pearson(10, 10)
    assert high == 1.0 and 0.65 < low < 0.75
    with pytest.raises(ValueError):
        clopper_pearson(3, 0)
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_compute_metrics_value_and_interval_of_a_small_case() -> None:
    results = [_result(f"s{i}", A, _trial(1.0, 0.0) if i < 3 else _trial(0.0, 1.0)) for i in range(4)]
    rows = compute_metrics(results, Protocol(id="p", tie_policy="exact"), seed=0, n_boot=50)["overall"]
    assert [r["value"] for r in rows] == [0.75, 0.75]
    assert rows[0]["ci_method"] == "clopper-pearson"
    assert (rows[0]["ci_low"], rows[0]["ci_high"]) == pytest.approx(_exact(3, 4))


def test_a_verdict_inside_a_group_does_not_move_the_chosen_epsilon() -> None:
    # Group g1: a TIE verdict on a human tie (right at any epsilon, whatever its scores say) and a human "A" with
    # gap 0.5 (right while epsilon < 0.5): g1 is right for epsilon < 0.5. Group g2: a human tie with gap 0.75
    # (right from 0.75). Candidates 0, 0.5, 0.75 (a verdict's gap is none): 1, 0, 1 groups right -> epsilon 0.
    verdict = _trial(0.375, 0.125, verdict=Verdict.TIE)
    g1 = [SampleResult("v", TIE, (verdict,), meta={"group": "g1"}),
          SampleResult("x", A, (_trial(1.0, 0.5),), meta={"group": "g1"})]
    g2 = [SampleResult("y", TIE, (_trial(1.0, 0.25),), meta={"group": "g2"})]
    tally = _tally([*g1, *g2], "tie-calibrated", grouped=True)
    assert tally.extra["epsilon"] == 0.0
    assert [(u.cluster, u.credit) for u in tally.units] == [("g1", 1.0), ("g2", 0.0)]


def test_rank_correlations_of_a_constant_order_are_zero() -> None:
    from rrbench.metrics.ranking import kendall_tau_b, spearman_rho

    flat, rising = np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])
    assert kendall_tau_b(flat, rising) == 0.0 and kendall_tau_b(rising, flat) == 0.0
    assert spearman_rho(flat, rising) == 0.0 and spearman_rho(rising, flat) == 0.0
    assert kendall_tau_b(rising, rising) == pytest.approx(1.0)


def test_clopper_pearson_refuses_impossible_counts_with_its_own_message() -> None:
    for k, n in ((0, 0), (3, 0), (11, 10), (-1, 10)):
        with pytest.raises(ValueError, match="need 0 <= k <= n and n >= 1"):
            clopper_pearson(k, n)


def test_fractional_k_meets_the_exact_interval_at_whole_numbers() -> None:
    # the beta-quantile formula for a fractional k is the exact interval's own: just off a whole k, the two agree
    for k, n in ((2, 10), (7, 9), (1, 3)):
        near = clopper_pearson(k + 1e-7, n)
        assert near == pytest.approx(clopper_pearson(k, n), abs=1e-5)
        assert clopper_pearson(k, n, level=0.5) != pytest.approx(clopper_pearson(k, n), abs=1e-3)


def test_bootstrap_arguments_at_their_limits() -> None:
    from rrbench.metrics import bootstrap_ci

    low, high = bootstrap_ci([1.0, 0.0], ["a", "b"], seed=0, n_boot=1)  # one resample is allowed
    assert low == high
    for level in (0.0, 1.0):
        with pytest.raises(ValueError, match="level in"):
            bootstrap_ci([1.0, 0.0], ["a", "b"], seed=0, level=level)
    with pytest.raises(ValueError, match="n_boot must be"):
        bootstrap_ci([1.0, 0.0], ["a", "b"], seed=0, n_boot=0)


def test_a_winner_index_outside_the_pair_is_no_pair_label() -> None:
    assert pair_credit(Label(LabelKind.WINNER, winner=2), Prediction((0.9, 0.1)), "exact") is None
    assert pair_credit(Label(LabelKind.WINNER, winner=1), Prediction((0.1, 0.9)), "exact") == 1.0


def test_a_rule_plug_in_that_builds_something_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: a registered rule whose factory returns no PairRule."""
    from rrbench import registry
    from rrbench.metrics import get_rule

    class _Entry:
        factory = staticmethod(lambda: object())

    monkeypatch.setattr(registry, "find", lambda kind, name: _Entry())
    with pytest.raises(TypeError, match="rule 'odd' built object, not a PairRule"):
        get_rule("odd")
