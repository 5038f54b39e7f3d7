"""`always-first`: a native pairwise judge that always prefers the image shown first. Its accuracy measures how
balanced a task's positions are (50% on a balanced task) and how much an order policy hides position bias."""

from __future__ import annotations

from collections.abc import Sequence

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import Judgement, Query, Verdict


class AlwaysFirst(RewardModel):
    name = "always-first"
    pairwise = True
    batch_size = 64
    cacheable = False

    def compare(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._first(q) for q in queries]

    @staticmethod
    def _first(query: Query) -> Judgement:
        scores = (1.0,) + (0.0,) * (len(query.candidates) - 1)
        return Judgement(scores=scores, verdict=Verdict.A)


@reward_model("always-first", description="baseline: a pairwise judge that always picks the first image shown")
def always_first() -> RewardModel:
    return AlwaysFirst()
