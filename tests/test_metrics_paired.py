"""Paired comparison of two runs: alignment by sample id, the paired bootstrap and an exact McNemar, by hand."""

from __future__ import annotations

from typing import Any

import pytest

from rrbench.metrics import mcnemar_exact_p, paired_compare
from rrbench.types import Protocol, UserError
from tests.test_metrics_golden import build_results

RIGHT, WRONG = [0.9, 0.1], [0.1, 0.9]  # scores for a label "A"


def _runs() -> tuple[list[Any], list[Any]]:
    """s1: a wrong, b right (b01); s2..s7: a right, b wrong (b10 = 6); s8 both right; s9 both wrong (b fails it
    with a timeout); s10: a right in one order of two (credit .5), b right in both; s11 only in a; s12, s13 only in b.
    """
    a = [{"id": "s1", "label": "A", "trials": [WRONG]}]
    b = [{"id": "s1", "label": "A", "trials": [RIGHT]}]
    for i in range(2, 8):
        a.append({"id": f"s{i}", "label": "A", "trials": [RIGHT]})
        b.append({"id": f"s{i}", "label": "A", "trials": [WRONG]})
    a += [
        {"id": "s8", "label": "A", "trials": [RIGHT]},
        {"id": "s9", "label": "A", "trials": [WRONG]},
        {"id": "s10", "label": "A", "trials": [RIGHT, WRONG]},
        {"id": "s11", "label": "A", "trials": [RIGHT]},
    ]
    b += [
        {"id": "s8", "label": "A", "trials": [RIGHT]},
        {"id": "s9", "label": "A", "trials": [{"failure": "timeout"}]},
        {"id": "s10", "label": "A", "trials": [RIGHT, RIGHT]},
        {"id": "s12", "label": "A", "trials": [RIGHT]},
        {"id": "s13", "label": "B", "trials": [RIGHT]},
    ]
    return build_results(a), build_results(b)


def test_paired_compare_by_hand() -> None:
    a, b = _runs()
    out = paired_compare(a, b, Protocol(), seed=0, n_boot=500)
    assert (out["n_common"], out["n_only_a"], out["n_only_b"]) == (10, 1, 2)
    excluded, wrong = out["metrics"]
    # failures counted wrong: per-sample credits a = 0,1x6,1,0,.5 (7.5/10); b = 1,0x6,1,0,1 (3/10)
    assert wrong["n_paired"] == 10
    assert wrong["value_a"] == pytest.approx(0.75) and wrong["value_b"] == pytest.approx(0.3)
    assert wrong["diff"] == pytest.approx(-0.45)
    # McNemar on samples 0/1 in both runs (s10 at .5 left out): b01 = 1 (s1), b10 = 6 (s2..s7)
    # p = 2 * P(X <= 1 | n=7, 1/2) = 2 * (1 + 7) / 128 = 0.125
    assert wrong["mcnemar"] == {"b01": 1, "b10": 6, "p_value": 0.125}
    # failures excluded: b failed s9 (a had it wrong: 0), so s9 leaves the comparison: a 7.5/9, b 3/9,
    # diff -4.5/9 = -0.5; McNemar unchanged (s9 was never discordant)
    assert excluded["n_paired"] == 9
    assert excluded["value_a"] == pytest.approx(7.5 / 9) and excluded["value_b"] == pytest.approx(3 / 9)
    assert excluded["diff"] == pytest.approx(-0.5)
    assert excluded["mcnemar"] == {"b01": 1, "b10": 6, "p_value": 0.125}
    for row in out["metrics"]:
        # 10 samples, 1 vs 6 discordant: the interval leans negative but, as McNemar's p = .125 says, reaches 0
        assert row["ci_low"] < row["diff"] < row["ci_high"] and row["ci_low"] < -0.5


def test_paired_bootstrap_is_seeded() -> None:
    a, b = _runs()
    first = paired_compare(a, b, Protocol(), seed=1)
    assert first == paired_compare(a, b, Protocol(), seed=1)
    second = paired_compare(a, b, Protocol(), seed=2)
    assert [(r["ci_low"], r["ci_high"]) for r in first["metrics"]] != [
        (r["ci_low"], r["ci_high"]) for r in second["metrics"]
    ]


def test_a_run_against_itself_differs_by_nothing() -> None:
    a, _ = _runs()
    row = paired_compare(a, a, Protocol())["metrics"][1]
    assert row["diff"] == 0.0 and (row["ci_low"], row["ci_high"]) == (0.0, 0.0)
    assert row["mcnemar"] == {"b01": 0, "b10": 0, "p_value": 1.0}


def test_different_labels_for_one_sample_are_refused() -> None:
    a = build_results([{"id": "s1", "label": "A", "trials": [RIGHT]}])
    b = build_results([{"id": "s1", "label": "B", "trials": [RIGHT]}])
    with pytest.raises(UserError, match="disagree on the label of sample 's1'"):
        paired_compare(a, b, Protocol())


@pytest.mark.parametrize(
    ("b01", "b10", "p"),
    [
        (1, 6, 2 * (1 + 7) / 128),
        (6, 1, 0.125),
        (0, 5, 2 / 32),
        (0, 0, 1.0),
        (3, 3, 1.0),  # 2 * (1 + 6 + 15 + 20) / 64 > 1: capped
        (2, 8, 2 * (1 + 10 + 45) / 1024),
    ],
)
def test_mcnemar_exact_p(b01: int, b10: int, p: float) -> None:
    assert mcnemar_exact_p(b01, b10) == pytest.approx(p, abs=1e-15)


def test_mcnemar_stays_finite_for_large_counts() -> None:
    p = mcnemar_exact_p(5000, 5300)
    assert 0.0 < p < 0.01
    assert mcnemar_exact_p(5000, 5000) == 1.0
