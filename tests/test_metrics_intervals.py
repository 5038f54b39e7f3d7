"""Which interval a metric gets, and that an interval on a proportion keeps its promise and never has zero width.

Expected bounds come from the binomial distribution by hand: with k = n the exact lower bound p solves p^n = 2.5%,
with k = 0 the upper bound solves (1 - p)^n = 2.5%; coverage is the binomial pmf summed over the k whose interval
holds p (scipy.stats.binom, not the code under test).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rrbench.display import category_table, metrics_table
from rrbench.metrics import MetricResult, clopper_pearson, compute_metrics, metric_ci
from rrbench.types import Protocol
from tests.test_metrics_golden import build_results

RIGHT, WRONG, TIE = [0.9, 0.1], [0.1, 0.9], [0.5, 0.5]  # scores for a label "A"
P_GRID = np.linspace(0.0, 1.0, 201)


def _singleton_interval(k: int, n: int) -> tuple[float, float]:
    """The interval a plain proportion gets: k right of n samples, one 0/1 unit each."""
    ci = metric_ci([1.0] * k + [0.0] * (n - k), [f"s{i}" for i in range(n)], proportion=True, seed=0)
    assert ci.method == "clopper-pearson"
    return ci.low, ci.high


@cache
def _intervals(n: int) -> tuple[tuple[float, float], ...]:
    return tuple(_singleton_interval(k, n) for k in range(n + 1))


def _coverage(n: int, p: float) -> float:
    pmf = stats.binom.pmf(np.arange(n + 1), n, p)
    return float(sum(pmf[k] for k, (lo, hi) in enumerate(_intervals(n)) if lo <= p <= hi))


@pytest.mark.parametrize("n", range(1, 31))
def test_exact_interval_covers_at_least_95_percent_on_a_grid(n: int) -> None:
    worst = min(_coverage(n, float(p)) for p in P_GRID)
    assert worst >= 0.95 - 1e-9, (n, worst)


@settings(max_examples=200, deadline=None)
# p = 0 and 1 are on the grid above; scipy's pmf overflows for p within a few ulps of 0 (e.g. 2.2e-308)
@given(st.integers(1, 30), st.floats(1e-12, 1 - 1e-12))
def test_exact_interval_covers_at_least_95_percent_anywhere(n: int, p: float) -> None:
    assert _coverage(n, p) >= 0.95 - 1e-9


def _one_row(
    specs: list[dict[str, Any]], metric: str = "accuracy", policy: str = "excluded", ties: str = "exact"
) -> dict[str, Any]:
    protocol = Protocol(tie_policy=ties, metrics=(metric,))
    rows = compute_metrics(build_results(specs), protocol, seed=0, n_boot=200)["overall"]
    return next(r for r in rows if r["failure_policy"] == policy)


def test_ten_of_ten_is_not_certain() -> None:
    row = _one_row([{"id": f"s{i}", "label": "A", "trials": [RIGHT]} for i in range(10)])
    assert (row["value"], row["ci_method"]) == (1.0, "clopper-pearson")
    assert row["ci_low"] == pytest.approx(0.025 ** (1 / 10)) and row["ci_high"] == 1.0  # 0.6915, not 1


def test_zero_of_ten_is_not_certain() -> None:
    row = _one_row([{"id": f"s{i}", "label": "A", "trials": [WRONG]} for i in range(10)])
    assert row["value"] == 0.0 and row["ci_low"] == 0.0
    assert row["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 10))


def test_clusters_that_all_agree_get_an_exact_interval_on_the_clusters() -> None:
    """10 samples right in both orders: 20 units but 10 independent clusters, so the bound is 10/10's, not 20/20's;
    a bootstrap here would return [1, 1]."""
    row = _one_row([{"id": f"s{i}", "label": "A", "trials": [RIGHT, RIGHT]} for i in range(10)])
    assert (row["ci_method"], row["n_units"], row["n_samples"], row["unit"]) == ("cluster-exact", 20, 10, "trial")
    assert row["ci_low"] == pytest.approx(0.025 ** (1 / 10)) and row["ci_high"] == 1.0


def test_a_position_judge_in_both_orders_is_half_right_but_not_certainly_half() -> None:
    """always-first, both orders: every sample scores exactly 1/2, which a bootstrap would report as [50, 50]."""
    row = _one_row([{"id": f"s{i}", "label": "A", "trials": [RIGHT, WRONG]} for i in range(20)])
    assert row["value"] == 0.5 and row["ci_method"] == "cluster-exact"
    assert row["ci_low"] < 0.5 < row["ci_high"]
    # 10 "successes" of 20 coin flips bound it from outside: a half-right cluster is never more spread than a coin
    inner = (stats.beta.ppf(0.025, 10, 11), stats.beta.ppf(0.975, 11, 10))
    assert inner[0] == pytest.approx(row["ci_low"], abs=1e-12) and inner[1] == pytest.approx(row["ci_high"], abs=1e-12)


def test_fractional_k_lies_between_its_whole_neighbours() -> None:
    lo4, hi4 = clopper_pearson(4, 10)
    lo5, hi5 = clopper_pearson(5, 10)
    lo, hi = clopper_pearson(4.5, 10)
    assert lo4 < lo < lo5 and hi4 < hi < hi5


def test_half_credit_and_clusters_keep_the_bootstrap() -> None:
    ties = [{"id": f"t{i}", "label": "A", "trials": [TIE if i % 2 else RIGHT]} for i in range(20)]
    half = _one_row(ties, ties="pickapic")  # a model tie on a human win: half credit (no validation, so t = 0)
    assert (half["value"], half["ci_method"]) == (0.75, "cluster-bootstrap")
    mixed = [{"id": f"m{i}", "label": "A", "trials": [RIGHT, RIGHT if i % 3 else WRONG]} for i in range(20)]
    assert _one_row(mixed)["ci_method"] == "cluster-bootstrap"


def test_rank_metrics_are_not_proportions() -> None:
    """A mean of per-prompt correlations is no binomial count: the bootstrap, even where it has zero width."""
    specs = [{"id": f"r{i}", "label": {"ranks": [1, 2, 3]}, "trials": [[3.0, 2.0, 1.0]]} for i in range(8)]
    for metric in ("spearman", "inversion"):
        row = _one_row(specs, metric)
        assert (row["value"], row["ci_method"]) == (1.0, "cluster-bootstrap")
        assert (row["n_samples"], row["unit"]) == (8, "sample")


def test_n_samples_counts_samples_whatever_the_unit() -> None:
    ranking = _one_row([{"id": f"r{i}", "label": {"ranks": [1, 2, 3]}, "trials": [[3.0, 2.0, 1.0]]} for i in range(4)])
    assert (ranking["n_samples"], ranking["n_units"], ranking["unit"]) == (4, 12, "comparison")  # 3 pairs each
    grouped = [{"id": f"s{i}", "label": "A", "trials": [RIGHT], "meta": {"group": f"g{i // 3}"}} for i in range(9)]
    group = _one_row(grouped, "group-accuracy")
    assert (group["n_samples"], group["n_units"], group["unit"]) == (9, 3, "group")
    single = _one_row([{"id": "a", "label": "A", "trials": [RIGHT]}, {"id": "b", "label": "A", "trials": [WRONG]}])
    assert (single["n_samples"], single["n_units"], single["unit"]) == (2, 2, "sample")


def test_failed_units_leave_the_sample_count_under_excluded_only() -> None:
    specs = [{"id": f"s{i}", "label": "A", "trials": [RIGHT, RIGHT]} for i in range(4)]
    specs.append({"id": "f", "label": "A", "trials": [{"failure": "timeout"}, {"failure": "timeout"}]})
    excluded, wrong = _one_row(specs), _one_row(specs, policy="wrong")
    assert (excluded["n_samples"], excluded["n_units"]) == (4, 8)
    assert (wrong["n_samples"], wrong["n_units"]) == (5, 10)


def test_an_old_record_without_the_new_fields_still_reads() -> None:
    old = {
        "metric": "accuracy", "protocol": "p", "tie_policy": "exact", "failure_policy": "excluded", "value": 0.5,
        "ci_low": 0.3, "ci_high": 0.7, "n_total": 12, "n_units": 20, "n_scored": 10, "n_failed": 0,
        "failed_by_kind": {}, "n_label_skipped": 2, "extra": {},
    }
    result = MetricResult.from_json(old)
    assert (result.n_samples, result.unit, result.ci_method) == (20, None, "cluster-bootstrap")
    table = metrics_table([old])
    assert "cluster-bootstrap" in table and "units" not in table  # n falls back to the units, so they agree
    assert MetricResult.from_json({**old, "ci_low": None, "ci_high": None}).ci_method is None


def test_tables_show_samples_as_n_and_units_only_where_they_differ() -> None:
    specs = [{"id": f"s{i}", "label": "A", "trials": [RIGHT, WRONG if i < 3 else RIGHT]} for i in range(10)]
    out = compute_metrics(build_results(specs), Protocol(), seed=0, n_boot=100)
    table = metrics_table(out["overall"])
    header, _, first = table.splitlines()[:3]
    assert header.split() == ["metric", "ties", "failures", "value", "%", "95%", "CI", "CI", "method", "n", "units",
                              "notes"]
    assert " 10 " in first and "20 trials" in first and "cluster-bootstrap" in first
    plain = compute_metrics(build_results([{"id": "a", "label": "A", "trials": [RIGHT]}]), Protocol())["overall"]
    assert "units" not in metrics_table(plain) and "clopper-pearson" in metrics_table(plain)
    by_category = {"x": out["overall"]}
    assert "20 trials" in category_table(by_category)
