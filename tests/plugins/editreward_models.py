"""Deterministic test models for the EditReward-Bench tests, loaded through RRBENCH_PLUGINS.

Both read one thing from an image, its mean brightness, in buckets of 10 grey levels. A test sets a candidate's
answer by shifting a photo's brightness (``tests/test_task_editreward_bench.py`` builds such photos), so every
score is known before the run and the metrics can be worked out by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import DataError, FailureKind, Judgement, Media, Query, Verdict

BUCKET = 10.0  # grey levels per score unit: the tests shift photos to a multiple of it, far from a bucket edge


def brightness(media: Media) -> int:
    """The mean grey level in buckets: round(mean / 10)."""
    grey = np.asarray(media.image().convert("L"), dtype=np.float64)
    return round(float(grey.mean()) / BUCKET)


class Brightness(RewardModel):
    """Pointwise: each candidate scored alone by its brightness; an unreadable image fails its own query."""

    name = "er-brightness"
    batch_size = 8
    cacheable = False

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._one(q) for q in queries]

    @staticmethod
    def _one(query: Query) -> Judgement:
        try:
            return Judgement(scores=(float(brightness(query.candidates[0])),))
        except DataError as exc:
            return Judgement.failed(FailureKind.DATA, str(exc))


@reward_model("er-brightness", description="test model: pointwise score = mean brightness / 10, rounded")
def er_brightness() -> RewardModel:
    return Brightness()


class BrightnessJudge(RewardModel):
    """Natively pairwise and categorical: the brighter shown image wins, equal buckets are a tie; no scores."""

    name = "er-judge"
    pairwise = True
    batch_size = 8
    cacheable = False

    def compare(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._one(q) for q in queries]

    @staticmethod
    def _one(query: Query) -> Judgement:
        try:
            first, second = (brightness(m) for m in query.candidates)
        except DataError as exc:
            return Judgement.failed(FailureKind.DATA, str(exc))
        verdict = Verdict.A if first > second else Verdict.B if second > first else Verdict.TIE
        return Judgement(verdict=verdict, raw=f"[[{verdict.value}]]")


@reward_model("er-judge", description="test model: pairwise verdict, the brighter image wins, equal is a tie")
def er_judge() -> RewardModel:
    return BrightnessJudge()
