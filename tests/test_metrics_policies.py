"""Tie policies one trial at a time, the public API's shapes and errors, and checks against independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrbench.metrics import (
    FAILURE_POLICIES,
    TIE_POLICIES,
    MetricResult,
    compute_metrics,
    pair_credit,
    predicted_class,
)
from rrbench.metrics.ranking import inversion_score, kendall_tau_b, spearman_rho
from rrbench.types import FailureKind, Label, LabelKind, Prediction, Protocol, SampleResult, Trial, UserError, Verdict
from tests.test_metrics_golden import build_results

A, B = Label.win(0), Label.win(1)
TIE, GOOD, BAD = Label.tie(), Label.tie(LabelKind.BOTH_GOOD), Label.tie(LabelKind.BOTH_BAD)


def _v(verdict: str) -> Prediction:
    return Prediction((None, None), Verdict(verdict))


def test_predicted_class_prefers_the_verdict_then_the_scores() -> None:
    assert predicted_class(Prediction((0.2, 0.9), Verdict.A)) == 0
    assert predicted_class(_v("B")) == 1
    assert predicted_class(_v("both_bad")) == "both_bad"
    assert predicted_class(Prediction((0.9, 0.2))) == 0
    assert predicted_class(Prediction((0.2, 0.9))) == 1
    assert predicted_class(Prediction((0.5, 0.5))) == "tie"
    assert predicted_class(Prediction((0.5, None))) is None
    assert predicted_class(Prediction((math.nan, 0.5))) is None  # NaN would otherwise compare as a silent tie
    assert predicted_class(Prediction(())) is None


# (label, prediction) -> credit under each policy, in this order (knob 0: epsilon, threshold, tie split):
TABLE_POLICIES = ("exact", "ties-excluded", "genai-4way", "tie-calibrated", "pickapic", "imagereward")
CREDIT_TABLE = [
    (A, Prediction((0.9, 0.1)), (1, 1, 1, 1, 1, 1)),
    (A, Prediction((0.1, 0.9)), (0, 0, 0, 0, 0, 0)),
    (A, Prediction((0.5, 0.5)), (0, 0, 0, 0, 0.5, 0)),
    (A, _v("both_good"), (0, 0, 0, 0, 0.5, 0)),
    (TIE, _v("both_bad"), (1, None, 1, 1, 1, None)),
    (GOOD, _v("tie"), (1, None, 1, 1, 1, None)),
    (GOOD, _v("both_bad"), (1, None, 0, 1, 1, None)),
    # genai-4way: a score tie at or above the tie split (here the default 0) reads as both good
    (BAD, Prediction((0.5, 0.5)), (1, None, 0, 1, 1, None)),
    (GOOD, Prediction((0.5, 0.5)), (1, None, 1, 1, 1, None)),
    (BAD, Prediction((-0.5, -0.5)), (1, None, 1, 1, 1, None)),
    (BAD, _v("A"), (0, None, 0, 0, 0.5, None)),
    (Label.unknown("?"), Prediction((0.9, 0.1)), (None,) * 6),
    (Label(LabelKind.RANKING, ranks=(1, 2, 3)), Prediction((0.9, 0.1, 0.5)), (None,) * 6),
    (A, Prediction((0.9, None)), (None,) * 6),
]


@pytest.mark.parametrize(("label", "pred", "credits"), CREDIT_TABLE)
def test_pair_credit_table(label: Label, pred: Prediction, credits: tuple[float | None, ...]) -> None:
    assert set(TABLE_POLICIES) <= set(TIE_POLICIES)
    assert tuple(pair_credit(label, pred, p) for p in TABLE_POLICIES) == credits


def test_calibrated_policies_read_the_score_gap() -> None:
    near = Prediction((0.6, 0.5))
    assert pair_credit(TIE, near, "tie-calibrated", knob=0.05) == 0
    assert pair_credit(TIE, near, "tie-calibrated", knob=0.2) == 1
    assert pair_credit(A, near, "tie-calibrated", knob=0.2) == 0
    # softmax gap of (2, 1) is tanh(0.5) = 0.462
    assert pair_credit(A, Prediction((2.0, 1.0)), "pickapic", knob=0.4) == 1
    assert pair_credit(A, Prediction((2.0, 1.0)), "pickapic", knob=0.5) == 0.5
    assert pair_credit(A, Prediction((1000.0, -1000.0)), "pickapic", knob=0.99) == 1  # no overflow
    # a verdict-only trial keeps its verdict whatever the knob
    assert pair_credit(TIE, _v("A"), "tie-calibrated", knob=10.0) == 0


def test_unknown_policies_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown tie policy 'ties'"):
        pair_credit(A, Prediction((1.0, 0.0)), "ties")
    results = build_results([{"id": "x", "label": "A", "trials": [[1.0, 0.0]]}])
    with pytest.raises(UserError, match="unknown tie policy"):
        compute_metrics(results, Protocol(tie_policy="nope"))
    with pytest.raises(UserError, match="unknown metric 'acuracy'; did you mean accuracy"):
        compute_metrics(results, Protocol(metrics=("acuracy",)))


def test_compute_metrics_shape_order_and_json_round_trip() -> None:
    results = build_results(
        [
            {"id": "a", "label": "A", "trials": [[1.0, 0.0]], "meta": {"category": "x"}},
            {"id": "b", "label": "B", "trials": [[1.0, 0.0]], "meta": {"category": "y"}},
            {"id": "c", "label": {"ranks": [1, 2, 3]}, "trials": [[3.0, 2.0, 1.0]]},
        ]
    )
    out = compute_metrics(results, Protocol(metrics=("accuracy", "spearman")), n_boot=50)
    names = [(r["metric"], r["failure_policy"]) for r in out["overall"]]
    assert names == [(m, f) for m in ("accuracy", "spearman") for f in FAILURE_POLICIES]
    assert sorted(out["by_category"]) == ["x", "y"]
    assert out["by_category"]["x"][0]["value"] == 1.0 and out["by_category"]["y"][0]["value"] == 0.0
    for row in out["overall"]:
        assert MetricResult.from_json(row).to_json() == row
    no_categories = compute_metrics(build_results([{"id": "a", "label": "A", "trials": [[1.0, 0.0]]}]), Protocol())
    assert no_categories["by_category"] == {}


def test_no_units_gives_no_value_and_no_ci() -> None:
    results = build_results([{"id": "u", "label": "unknown", "skipped": "unknown_label"}])
    (excluded, wrong) = compute_metrics(results, Protocol())["overall"]
    assert excluded["value"] is None and excluded["ci_low"] is None and excluded["n_units"] == 0
    assert excluded["n_label_skipped"] == 1 and wrong["n_total"] == 1


def test_a_trial_without_prediction_or_kind_is_an_error_not_a_pass() -> None:
    result = SampleResult("s", A, (Trial((0, 1), (), None),))
    (excluded, wrong) = compute_metrics([result], Protocol())["overall"]
    assert excluded["n_units"] == 0 and wrong["value"] == 0.0
    assert wrong["failed_by_kind"] == {FailureKind.ERROR.value: 1}


# ---------------------------------------------------------------------------------------- independent references

_score = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])  # few values, so gaps and ties repeat
_pair = st.fixed_dictionaries(
    {"label": st.sampled_from(["A", "B", "tie", "both_bad"]), "trials": st.lists(st.tuples(_score, _score), min_size=1)}
)


_grid = st.none() | st.lists(st.sampled_from([-0.25, 0.0, 0.125, 0.25, 0.5, 2.0]), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(_pair, min_size=1, max_size=25), st.booleans(), _grid)
def test_tie_calibrated_epsilon_matches_brute_force(specs: list[dict], grouped: bool, grid: list[float] | None) -> None:
    """The O(n log n) sweep picks the epsilon that trying every candidate on every trial picks."""
    for n, spec in enumerate(specs):
        spec["id"] = f"s{n}"
        spec["trials"] = [list(t) for t in spec["trials"]]
        spec["meta"] = {"group": f"g{n // 3}"}
    results = build_results(specs)
    metric = "group-accuracy" if grouped else "accuracy"
    protocol = Protocol(tie_policy="tie-calibrated", metrics=(metric,), options={"epsilon_grid": grid} if grid else {})
    row = compute_metrics(results, protocol, n_boot=0)["overall"][0]
    gaps = {abs(t.prediction.scores[0] - t.prediction.scores[1]) for r in results for t in r.trials if t.prediction}
    candidates = sorted(set(grid) if grid else {0.0} | gaps)
    best = max(candidates, key=lambda e: (_brute_value(results, e, grouped), -e))
    assert row["extra"]["epsilon"] == best
    assert row["value"] == pytest.approx(_brute_value(results, best, grouped))


def _brute_value(results: list[SampleResult], epsilon: float, grouped: bool) -> float:
    credits: dict[str, list[float]] = {}
    for n, r in enumerate(results):
        for m, t in enumerate(r.trials):
            assert t.prediction is not None
            credit = pair_credit(r.label, t.prediction, "tie-calibrated", knob=epsilon)
            assert credit is not None
            credits.setdefault(str(r.meta["group"]) if grouped else f"{n}/{m}", []).append(credit)
    values = [float(all(c == 1 for c in cs)) for cs in credits.values()]
    return sum(values) / len(values)


_vector = st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.5]), min_size=2, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_rank_correlations_match_scipy(data: st.DataObject) -> None:
    stats = pytest.importorskip("scipy.stats")
    human = np.array(data.draw(_vector))
    model = np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0, 2.0]), min_size=human.size, max_size=human.size)))
    if np.ptp(human) == 0 or np.ptp(model) == 0:
        assert spearman_rho(human, model) == 0.0 and kendall_tau_b(human, model) == 0.0  # documented convention
        return
    assert spearman_rho(human, model) == pytest.approx(stats.spearmanr(human, model).statistic, abs=1e-12)
    assert kendall_tau_b(human, model) == pytest.approx(stats.kendalltau(human, model).statistic, abs=1e-12)


def test_inversion_counts_only_strict_reversals() -> None:
    human = np.array([3.0, 2.0, 1.0])
    assert inversion_score(human, np.array([3.0, 2.0, 1.0])) == 1.0
    # a constant model keeps positions 0, 1, 2 (stable argsort), which is the human order here
    assert inversion_score(human, np.array([1.0, 1.0, 1.0])) == 1.0
    assert inversion_score(human, np.array([1.0, 2.0, 3.0])) == 0.0
    for perm in itertools.permutations([1.0, 2.0, 3.0]):
        discordant = sum(perm[i] < perm[j] for i in range(3) for j in range(i + 1, 3))
        assert inversion_score(human, np.array(perm)) == pytest.approx(1 - discordant / 3)
