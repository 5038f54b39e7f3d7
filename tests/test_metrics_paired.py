"""Paired comparison of two runs: alignment by sample id, the paired bootstrap and the exact tests, by hand.

Expected p-values come from the binomial formula: two-sided, p = 2 * sum_{i <= k} C(n, i) / 2^n for the rarer
count k of n clusters scored differently, capped at 1.
"""

from __future__ import annotations

from math import comb
from typing import Any

import pytest

from rrbench.display import compare_table
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
    # s10 (a at .5) makes the credit fractional, so the sign test: b better on s1 (+1) and s10 (+.5), a better on
    # s2..s7; s8 and s9 tie and are dropped. p = 2 * P(X <= 2 | n=8, 1/2) = 2 * (1 + 8 + 28) / 256
    sign = {"name": "sign-test", "n": 8, "n_b_better": 2, "n_a_better": 6, "p_value": pytest.approx(74 / 256)}
    assert wrong["test"] == sign
    # failures excluded: b failed s9 (a had it wrong: 0), so s9 leaves the comparison: a 7.5/9, b 3/9,
    # diff -4.5/9 = -0.5; the test is unchanged (s9 was a tie)
    assert excluded["n_paired"] == 9
    assert excluded["value_a"] == pytest.approx(7.5 / 9) and excluded["value_b"] == pytest.approx(3 / 9)
    assert excluded["diff"] == pytest.approx(-0.5)
    assert excluded["test"] == sign
    for row in out["metrics"]:
        # 10 samples, 2 vs 6 better: the interval leans negative but, as the test's p = .29 says, reaches 0
        assert row["ci_low"] < row["diff"] < row["ci_high"] and row["ci_low"] < -0.5
        assert row["ci_method"] == "paired-cluster-bootstrap"


def test_mcnemar_when_every_sample_is_right_or_wrong_in_both_runs() -> None:
    a, b = _runs()
    binary_a, binary_b = [r for r in a if r.sample_id != "s10"], [r for r in b if r.sample_id != "s10"]
    wrong = paired_compare(binary_a, binary_b, Protocol(), n_boot=50)["metrics"][1]
    # b01 = 1 (s1: only b right), b10 = 6 (s2..s7): p = 2 * (1 + 7) / 128 = 0.125
    assert wrong["test"] == {"name": "mcnemar-exact", "n": 7, "n_b_better": 1, "n_a_better": 6, "p_value": 0.125}
    assert wrong["n_paired"] == 9


def _half_credit_runs() -> tuple[list[Any], list[Any]]:
    """50 samples judged in both orders, so credits are 0, 1/2 or 1 per sample: b is 42 points worse.

    2 samples b better (a 1/2, b 1); 44 a better (a 1, b 1/2); 2 both 1; 2 both 1/2.
    a = (2 * .5 + 44 + 2 + 2 * .5) / 50 = 48/50, b = (2 + 22 + 2 + 1) / 50 = 27/50: b - a = -21/50 = -0.42.
    No sample is 0 in one run and 1 in the other, so McNemar would see 0 discordant samples and say p = 1.
    """
    half, full = [RIGHT, WRONG], [RIGHT, RIGHT]
    plan = [(half, full)] * 2 + [(full, half)] * 44 + [(full, full)] * 2 + [(half, half)] * 2
    a = [{"id": f"s{i}", "label": "A", "trials": ta} for i, (ta, _) in enumerate(plan)]
    b = [{"id": f"s{i}", "label": "A", "trials": tb} for i, (_, tb) in enumerate(plan)]
    return build_results(a), build_results(b)


def test_half_credits_get_the_sign_test_and_a_small_p() -> None:
    a, b = _half_credit_runs()
    out = paired_compare(a, b, Protocol(), seed=0, n_boot=500)
    row = out["metrics"][0]
    assert row["diff"] == pytest.approx(-0.42) and row["n_paired"] == 50
    expected_p = 2 * (comb(46, 0) + comb(46, 1) + comb(46, 2)) / 2**46  # 2 of the 46 nonzero differences positive
    assert row["test"] == {"name": "sign-test", "n": 46, "n_b_better": 2, "n_a_better": 44,
                           "p_value": pytest.approx(expected_p, rel=1e-9)}
    assert row["test"]["p_value"] < 1e-10
    assert row["ci_high"] < 0  # every resample of 44 worse against 2 better stays below 0
    text = compare_table(out)
    line = next(line for line in text.splitlines() if line.startswith("accuracy") and "excluded" in line)
    cells = line.split()
    # the bootstrap's sample count, the test, the sample count the test used and its split are all printed
    assert "-42.00" in cells and "50" in cells and "exact sign test" in line and "46" in cells and "2/44" in cells
    assert f"{expected_p:.4g}" in cells
    assert "n test" in text and "n CI" in text


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
    assert row["test"] == {"name": "sign-test", "n": 0, "n_b_better": 0, "n_a_better": 0, "p_value": 1.0}


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
