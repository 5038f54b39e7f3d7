"""The seeded cluster bootstrap behind the CIs of clustered or fractional credit (tests/test_metrics_intervals.py:
the rule choosing it)."""

from __future__ import annotations

import numpy as np
import pytest

from rrbench.metrics import bootstrap_ci, compute_metrics
from rrbench.types import Protocol
from tests.test_metrics_golden import build_results

RNG = np.random.default_rng(7)
CREDITS = (RNG.random(400) < 0.7).astype(float)
IDS = [f"s{i}" for i in range(400)]


def test_seeded_is_identical_and_another_seed_differs() -> None:
    first = bootstrap_ci(CREDITS, IDS, seed=3)
    assert first == bootstrap_ci(CREDITS, IDS, seed=3)
    assert first != bootstrap_ci(CREDITS, IDS, seed=4)


def test_ci_contains_the_value_and_narrows_with_more_data() -> None:
    value = CREDITS.mean()
    low, high = bootstrap_ci(CREDITS, IDS, seed=0)
    assert low < value < high
    # binomial standard error at n=400, p~0.7 is ~0.023: a 95% interval is about +-1.96 of it
    assert 0.06 < high - low < 0.12
    big_low, big_high = bootstrap_ci(np.tile(CREDITS, 16), [f"{i}" for i in range(6400)], seed=0)
    assert big_high - big_low < (high - low) / 2


def test_the_units_of_one_cluster_move_together() -> None:
    """Both orders of a sample (same cluster) resample as one: duplicating units within clusters changes nothing,
    while pretending they are independent would shrink the interval by about sqrt(2)."""
    single = bootstrap_ci(CREDITS, IDS, seed=1)
    both_orders = bootstrap_ci(np.repeat(CREDITS, 2), np.repeat(IDS, 2).tolist(), seed=1)
    assert both_orders == pytest.approx(single, abs=1e-12)
    as_independent = bootstrap_ci(np.repeat(CREDITS, 2), [f"{i}" for i in range(800)], seed=1)
    assert (as_independent[1] - as_independent[0]) < 0.8 * (single[1] - single[0])


def test_unit_order_does_not_change_the_interval() -> None:
    perm = RNG.permutation(400)
    assert bootstrap_ci(CREDITS[perm], [IDS[i] for i in perm], seed=5) == bootstrap_ci(CREDITS, IDS, seed=5)


def test_unequal_cluster_sizes_weight_units_not_clusters() -> None:
    # one cluster of 3 right units, one of 1 wrong unit: every resample is 0, 1 or a 3:1 mix (0.75)
    low, high = bootstrap_ci([1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"], seed=0, n_boot=2000, level=0.5)
    assert (low, high) == (0.75, 0.75)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([], [], seed=0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 0.0], ["a"], seed=0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], ["a"], seed=0, n_boot=0)



def test_compute_metrics_cis_are_seeded() -> None:
    # Judged in both orders, so each sample is a cluster of two trials: the bootstrap's case, not Clopper-Pearson's
    # (one trial per sample would be a plain proportion, whose exact interval has no seed at all).
    specs = [{"id": f"s{i}", "label": "A", "trials": [[float(i % 3), 1.0], [float(i % 2), 1.0]]} for i in range(60)]
    results = build_results(specs)
    one = compute_metrics(results, Protocol(), seed=11)["overall"][0]
    assert one["ci_method"] == "cluster-bootstrap"
    assert one == compute_metrics(results, Protocol(), seed=11)["overall"][0]
    other = compute_metrics(results, Protocol(), seed=12)["overall"][0]
    assert (one["ci_low"], one["ci_high"]) != (other["ci_low"], other["ci_high"])
    assert one["ci_low"] <= one["value"] <= one["ci_high"]
