"""`constant`: every image gets the same score, so every pair is a predicted tie. It shows what a tie policy does
to a model that never decides."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import Judgement, Query, UserError


class Constant(RewardModel):
    name = "constant"
    batch_size = 64
    cacheable = False

    def __init__(self, value: float = 0.5) -> None:
        super().__init__(value=value)
        self.value = float(value)

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [Judgement(scores=(self.value,)) for _ in queries]


@reward_model("constant", description="baseline: the same score for every image (every pair a tie)")
def constant(value: float = 0.5) -> RewardModel:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"constant: value must be a finite number, got {value!r}")
    return Constant(value=value)
