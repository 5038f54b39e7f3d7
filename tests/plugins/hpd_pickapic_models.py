"""Deterministic pointwise test models for the HPD, Pick-a-Pic and ImageRewardDB task tests (via RRBENCH_PLUGINS).

Both decode the real image bytes the task hands over, so a wrong path, a lost byte or a swapped candidate shows up
in the scores:

- ``brightness``: the mean grey level of the image in [0, 255]; a test orders its answers by darkening or
  brightening photographs, and gets an exact tie by using the same photograph twice.
- ``hidden-score``: reads the score written into the image's comment (a JPEG COM segment or a PNG ``comment`` text
  chunk) as ``score=<float>``; ``fail`` there makes a parse failure. Tests use it where the score itself matters
  (Pick-a-Pic's probability gaps, exact model ties).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import FailureKind, Judgement, Query


class Brightness(RewardModel):
    name = "brightness"
    batch_size = 8
    cacheable = False

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [Judgement(scores=(_mean_grey(q),)) for q in queries]


def _mean_grey(query: Query) -> float:
    pixels = np.asarray(query.candidates[0].image().convert("L"), dtype=np.float64)
    return float(pixels.mean())


@reward_model("brightness", description="test model: mean grey level of the image (0-255)")
def brightness() -> RewardModel:
    return Brightness()


class HiddenScore(RewardModel):
    name = "hidden-score"
    batch_size = 8
    cacheable = False

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [_hidden(q) for q in queries]


def _hidden(query: Query) -> Judgement:
    from PIL import Image

    media = query.candidates[0]
    media.image()  # decodes fully: a corrupt image is a data failure, as for a real model
    with Image.open(io.BytesIO(media.read_bytes())) as img:
        comment = img.info.get("comment", b"")
    text = comment.decode() if isinstance(comment, bytes) else str(comment)
    if text.startswith("score="):
        return Judgement(scores=(float(text.removeprefix("score=")),), raw=text)
    return Judgement.failed(FailureKind.PARSE, f"no score in the image comment ({text!r})", raw=text)


@reward_model("hidden-score", description="test model: the score written in the image's comment")
def hidden_score() -> RewardModel:
    return HiddenScore()
