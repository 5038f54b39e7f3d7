"""Deterministic test models for the GenAI-Bench and MMRB2 task tests (loaded through RRBENCH_PLUGINS).

Both decode the real image bytes the task hands over and answer from the mean grey level (0-255), so a test picks
their answers by brightening or darkening photographs; a wrong column, a swapped candidate or a lost byte changes the
numbers. A near-black image (mean below ``dark``, default 8) is "unjudgeable", which lets a test place failures.

- ``luma``: pointwise; the score is the mean grey level; a near-black image is an EMPTY failure of its query.
- ``luma-verdict``: a native pairwise judge with the GenAI-Bench 4-way answer: A or B for the brighter image, and
  when the two means differ by at most ``tie`` (default 1.0) both good (mean of the pair >= 128) or both bad. It
  fails (PARSE, "no verdict") when the image shown *first* is near-black, so its failures depend on the order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import FailureKind, Judgement, Media, Query, Verdict

DARK = 8.0
# The exact strings GenAI-Bench's official scorer accepts (inference.py lines 162-173), so the official reading of
# luma-verdict's answers is its verdict.
OFFICIAL_ANSWER = {Verdict.A: "[[A>B]]", Verdict.B: "[[B>A]]", Verdict.BOTH_GOOD: "[[A=B=Good]]",
                   Verdict.BOTH_BAD: "[[A=B=Bad]]"}


def mean_grey(media: Media) -> float:
    return float(np.asarray(media.image().convert("L"), dtype=np.float64).mean())


class Luma(RewardModel):
    name = "luma"
    batch_size = 8
    cacheable = False

    def __init__(self, dark: float = DARK) -> None:
        super().__init__(dark=dark)
        self.dark = dark

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._one(q.candidates[0]) for q in queries]

    def _one(self, media: Media) -> Judgement:
        value = mean_grey(media)
        if value < self.dark:
            return Judgement.failed(FailureKind.EMPTY, "too dark to judge")
        return Judgement(scores=(value,))


@reward_model("luma", description="test model: mean grey level (0-255); a near-black image fails")
def luma(dark: float = DARK) -> RewardModel:
    return Luma(dark=dark)


class LumaVerdict(RewardModel):
    name = "luma-verdict"
    pairwise = True
    batch_size = 8
    cacheable = False

    def __init__(self, dark: float = DARK, tie: float = 1.0) -> None:
        super().__init__(dark=dark, tie=tie)
        self.dark, self.tie = dark, tie

    def compare(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._one(q) for q in queries]

    def _one(self, query: Query) -> Judgement:
        first, second = (mean_grey(m) for m in query.candidates)
        if first < self.dark:
            return Judgement.failed(FailureKind.PARSE, "no [[...]] verdict", raw="I cannot see the first image.")
        if abs(first - second) <= self.tie:
            verdict = Verdict.BOTH_GOOD if (first + second) / 2 >= 128 else Verdict.BOTH_BAD
        else:
            verdict = Verdict.A if first > second else Verdict.B
        return Judgement(verdict=verdict, raw=f"Final verdict: {OFFICIAL_ANSWER[verdict]}")


@reward_model("luma-verdict", description="test model: GenAI-Bench 4-way verdict from mean grey levels")
def luma_verdict(dark: float = DARK, tie: float = 1.0) -> RewardModel:
    return LumaVerdict(dark=dark, tie=tie)
