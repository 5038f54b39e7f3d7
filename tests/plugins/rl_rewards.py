"""Reward models for the RL tests, loaded through RRBENCH_PLUGINS like any user plug-in.

``brightness``: the mean pixel value of the image in [0, 1], an honest, learnable signal (a generator can raise it
only by making brighter images). ``fail`` fails every image (a reward server that is down), as a timeout would.
``red_minus_blue``: mean red minus mean blue value, an honest signal the tiny Flux's random VAE passes on far better.
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



class RedMinusBlue(RewardModel):
    """Mean red minus mean blue channel value, in [-1, 1]: unlike the plain mean it survives the tiny random VAE of
    tests/rl_common.py (it follows the mean latent, correlation ~0.4; per-image std ~0.01, 5x brightness's)."""

    name = "red_minus_blue"
    cacheable = False

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        import numpy as np

        out = []
        for q in queries:
            pixels = np.asarray(q.candidates[0].image().convert("RGB"), dtype=np.float64) / 255.0
            out.append(Judgement(scores=(float(pixels[..., 0].mean() - pixels[..., 2].mean()),)))
        return out


@reward_model("red_minus_blue", description="test reward: mean red minus mean blue channel value, in [-1, 1]")
def red_minus_blue() -> RewardModel:
    return RedMinusBlue()
