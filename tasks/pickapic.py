"""Pick-a-Pic v2 (``test_unique``) with the official PickScore scoring: half credit, tie threshold from validation.

Verified (public sources, read with the search tool):

- HF ``yuvalkirstain/pickapic_v2`` dataset card: splits ``train``, ``validation``, ``test``, ``validation_unique``
  (500 rows), ``test_unique`` (500 rows), parquet under ``data/<split>-NNNNN-of-NNNNN-<hash>.parquet``; columns
  ``are_different``, ``best_image_uid``, ``caption``, ``created_at``, ``has_label``, ``image_0_uid``, ``image_0_url``,
  ``image_1_uid``, ``image_1_url``, ``jpg_0``, ``jpg_1`` (raw JPEG bytes, ``binary``, not HF ``Image``),
  ``label_0``, ``label_1`` (float64), ``model_0``, ``model_1``, ``ranking_id``, ``user_id``,
  ``num_example_per_prompt``. The whole dataset is ~335 GB, so only the two ``*_unique`` files are fetched.
- Official scorer ``yuvalkirstain/PickScore: trainer/scripts/eval_preference_predictor.py``: probabilities are the
  softmax of the two scores; label ``label_0 == 0.5`` is a tie, ``1`` prefers image 0, else image 1; prediction is a
  tie when ``|p1 - p0| <= t``; credit 1 for a match, 0.5 when exactly one side is a tie, else 0; ``t`` is the first
  best of ``[0, 0.1, ..., 1]`` on ``validation_unique``, then ``test_unique`` is scored at that ``t``. rrbench's
  ``pickapic`` tie policy implements exactly this (``rrbench/metrics/_ties.py``, ``pairs.py``).

How the validation split reaches the metric: the loader yields both splits, interleaved (validation, test,
validation, ...) so that ``--limit`` keeps both; every sample carries ``meta["split"]`` = ``"validation"`` or
``"test"``. The ``pickapic`` policy chooses t on the validation samples and scores only the test samples (validation
counts in ``n_total`` and ``extra.n_validation``); every other policy leaves validation samples out as well.
``-T validation=false`` loads ``test_unique`` alone; t then comes from ``protocol.options["threshold"]`` (0).

Assumed / deviations: labels other than (1, 0), (0, 1), (0.5, 0.5) are unknown labels here (the official code would
read any other ``label_0`` as "image 1"); no commit sha of the dataset could be found, so the revision is not pinned.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rrbench.hubdata import Source, column, media, open_rows
from rrbench.metrics.pairs import PICKAPIC_THRESHOLDS
from rrbench.registry import task
from rrbench.types import Label, LabelKind, Media, Protocol, Sample, Task, TaskInfo, TaskKind, UserError

VERSION = "1"
DATASET = "yuvalkirstain/pickapic_v2"

# meta["split"] value -> where its rows live (file names carry content hashes, hence the patterns)
SPLITS: dict[str, Source] = {
    "validation": Source(DATASET, split="validation_unique", files=("data/validation_unique-*.parquet",)),
    "test": Source(DATASET, split="test_unique", files=("data/test_unique-*.parquet",)),
}

# (label_0, label_1) -> label; the dataset's numbers are kept as the original string
_LABELS: dict[tuple[float, float], Label] = {
    (1.0, 0.0): Label.win(0),
    (0.0, 1.0): Label.win(1),
    (0.5, 0.5): Label.tie(LabelKind.TIE),
}


@task("pickapic-v2", description="Pick-a-Pic v2 test_unique: half credit for ties, tie threshold t from validation")
def pickapic_v2(validation: bool = True) -> Task:
    """Pick-a-Pic v2 ``test_unique``; ``validation=False`` skips ``validation_unique`` (t from protocol options)."""
    if not isinstance(validation, bool):
        raise UserError(f"pickapic-v2: validation must be true or false, got {validation!r}")
    splits = ("validation", "test") if validation else ("test",)

    def load(data: Path | None) -> Iterator[Sample]:
        streams = [_samples(split, data) for split in splits]
        # Interleaved, so that any --limit prefix holds both validation and test samples.
        mixed = itertools.chain.from_iterable(itertools.zip_longest(*streams))
        return (s for s in mixed if s is not None)

    official = Protocol(id="pickapic-official", mode="auto", order="fixed", tie_policy="pickapic",
                        failure_policy="excluded", metrics=("accuracy",),
                        options={"pickapic_thresholds": list(PICKAPIC_THRESHOLDS), "threshold": 0.0})
    paper = Protocol(id="rationalrewards-paper", mode="auto", order="fixed", tie_policy="exact",
                     failure_policy="excluded", metrics=("accuracy",), options={"na": "2.5"})
    size = 500 * len(splits)
    return Task(
        name="pickapic-v2",
        version=VERSION,
        kind=TaskKind.PAIR,
        load=load,
        protocol=official,
        size=size,
        info=TaskInfo(
            paper="Pick-a-Pic: An Open Dataset of User Preferences for Text-to-Image Generation "
                  "(Kirstain et al., NeurIPS 2023), arXiv:2305.01569",
            dataset=DATASET,
            revision=None,
            license="MIT",
            size=size,
            homepage="https://github.com/yuvalkirstain/PickScore",
        ),
        alternatives={"rationalrewards-paper": paper},
        count=lambda data: _count(splits, data),
    )


def _count(splits: tuple[str, ...], data: Path | None) -> int | None:
    sizes = [open_rows(SPLITS[s], data).size for s in splits]
    return None if any(n is None for n in sizes) else sum(n for n in sizes if n is not None)


def _samples(split: str, data: Path | None) -> Iterator[Sample]:
    source = SPLITS[split]
    rows = open_rows(source, data)
    for row in rows:
        yield _sample(split, row, rows.root, source)


def _sample(split: str, row: dict[str, Any], root: Path, source: Source) -> Sample:
    ranking_id = column(row, "ranking_id", source)
    label = pickapic_label(column(row, "label_0", source), column(row, "label_1", source))
    meta = {"split": split, "hf_split": source.split, "ranking_id": ranking_id,
            "model_0": row.get("model_0"), "model_1": row.get("model_1")}
    sample_id = f"{source.split}-{ranking_id}"
    candidates = tuple(_image(column(row, f"jpg_{i}", source), root, f"{sample_id} jpg_{i}") for i in (0, 1))
    return Sample(sample_id, str(column(row, "caption", source)), candidates, label, meta=meta)


def _image(cell: Any, root: Path, what: str) -> Media:
    """The cell's image; an empty cell fails only when a model reads it (that sample's data failure)."""
    return media(cell, root, what)



def pickapic_label(label_0: Any, label_1: Any) -> Label:
    """The label of a (label_0, label_1) pair, with the dataset's numbers kept as the original string."""
    original = f"label_0={label_0},label_1={label_1}"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (label_0, label_1)):
        return Label.unknown(original)
    known = _LABELS.get((float(label_0), float(label_1)))
    if known is None:
        return Label.unknown(original)
    return Label(known.kind, winner=known.winner, original=original)
