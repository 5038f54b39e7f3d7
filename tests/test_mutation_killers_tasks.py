"""Task-side numbers the metrics depend on (docs/mutation.md): EditReward-Bench's group size C(K, 2) recorded on each
row, and the Pick-a-Pic threshold grid a protocol hands to the metric.

A K=3 group holds C(3, 2) = 3 comparisons (AvsB, AvsC, BvsC) and a K=4 group C(4, 2) = 6; the official group
scorers count a group right only when all of them are present and right.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rrbench.metrics._core import MetricContext
from rrbench.metrics.pairs import group_accuracy
from rrbench.tasks.editreward_bench import editreward_bench
from rrbench.tasks.pickapic import pickapic_v2
from rrbench.types import Prediction, Sample, SampleResult, Trial
from tests.test_task_editreward_bench import QUADS, TRIPLES, group_rows, write_parquet


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("editreward-groups")
    rows = group_rows({"g1": TRIPLES["g1"]}, "3pair") + group_rows({"h1": QUADS["h1"]}, "4pair")
    write_parquet(root / "editreward.parquet", rows)
    return root


def _right(sample: Sample) -> SampleResult:
    """A judge that always prefers the human's choice (these rows all have a strict winner)."""
    winner = sample.label.winner
    scores = (1.0, 0.0) if winner == 0 else (0.0, 1.0)
    return SampleResult(sample.id, sample.label, (Trial((0, 1), (), Prediction(scores)),), meta=sample.meta)


def _group_credit(samples: list[Sample]) -> list[float | None]:
    tally = group_accuracy([_right(s) for s in samples], MetricContext("editreward-exact"))
    return [u.credit for u in tally.units]


@pytest.mark.parametrize(("k", "size"), [(3, 3), (4, 6)])
def test_a_group_needs_all_of_its_k_choose_2_rows(groups: Path, k: int, size: int) -> None:
    samples = list(editreward_bench(k=k).load(groups))
    assert len(samples) == size
    assert {s.meta["group_size"] for s in samples} == {size}
    assert len({s.meta["group"] for s in samples}) == 1
    first = samples[0].meta
    assert (first["dataset"], first["comparison_type"], first["ranking"]) == (f"{k}pair", "AvsB", "A>B")
    assert (first["model_1"], first["score_2"]) == ("editor-x", 5.0)  # hub_row's columns, kept as meta
    assert _group_credit(samples) == [1.0]
    assert _group_credit(samples[:-1]) == [0.0]  # one comparison short: wrong, however right the rest


def test_pickapic_protocol_hands_the_official_grid_to_the_metric() -> None:
    task = pickapic_v2()
    assert task.protocol.options["pickapic_thresholds"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert task.protocol.options["threshold"] == 0.0
    assert task.protocol.tie_policy == "pickapic"
