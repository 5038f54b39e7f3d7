"""Reward models for the RL tests, loaded through RRBENCH_PLUGINS like any user plug-in.

``brightness``: the mean pixel value of the image in [0, 1], an honest, learnable signal (a generator can raise it
only by making brighter images). ``fail`` fails every image (a reward server that is down), as a timeout would.
"""

from __future__ import annotations

from collections.abc import Sequence

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import FailureKind, Judgement, Query


class Brightness(RewardModel):
    name = "brightness"
    cacheable = False  # cheaper than a cache lookup

    def __init__(self, fail: bool = False) -> None:
        super().__init__(fail=fail)
        self.fail = fail

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        import numpy as np

        if self.fail:
            return [Judgement.failed(FailureKind.TIMEOUT, "injected: the reward is down") for _ in queries]
        out = []
        for q in queries:
            pixels = np.asarray(q.candidates[0].image().convert("RGB"), dtype=np.float64) / 255.0
            out.append(Judgement(scores=(float(pixels.mean()),)))
        return out


@reward_model("brightness", description="test reward: mean pixel value in [0, 1]; fail=true fails every image")
def brightness(fail: bool = False) -> RewardModel:
    return Brightness(fail=fail)
