"""Deterministic reward models for tests, loaded through RRBENCH_PLUGINS like any user plug-in.

They never look at pixels: the score is a hash of the image identity, or an oracle that reads the label hidden in
the recipe of the sanity task's correct image. That makes run outcomes predictable without any weights.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import FailureKind, Judgement, Query

CALLS_FILE_ENV = "RRBENCH_TEST_CALLS"  # where a test counts model calls across processes


def _count(n: int) -> None:
    path = os.environ.get(CALLS_FILE_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(f"{n}\n")


def _hash_score(query: Query) -> float:
    digest = hashlib.sha256(query.candidates[0].key.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class Sleepy(RewardModel):
    """Pointwise, deterministic, `delay` seconds per batch; fails the queries whose sample id hash hits `fail`."""

    name = "sleepy"
    cacheable = True

    def __init__(self, delay: float = 0.0, fail: float = 0.0, batch_size: int = 4) -> None:
        super().__init__(delay=delay, fail=fail, batch_size=batch_size)
        self.delay, self.fail, self.batch_size = delay, fail, batch_size

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        _count(len(queries))
        time.sleep(self.delay)
        out = []
        for q in queries:
            bucket = int(hashlib.sha256(q.sample_id.encode()).hexdigest()[:8], 16) / 2**32
            if bucket < self.fail and not os.environ.get("RRBENCH_TEST_HEAL"):
                out.append(Judgement.failed(FailureKind.TIMEOUT, "injected failure"))
            else:
                out.append(Judgement(scores=(_hash_score(q),)))
        return out


@reward_model("sleepy", description="test model: hash score, optional delay and injected failures")
def sleepy(delay: float = 0.0, fail: float = 0.0, batch_size: int = 4) -> RewardModel:
    return Sleepy(delay=delay, fail=fail, batch_size=batch_size)


class Broken(RewardModel):
    name = "broken"

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        raise RuntimeError("weights are garbage")


@reward_model("broken", description="test model: raises on every call")
def broken() -> RewardModel:
    return Broken()


class NonFinite(RewardModel):
    """Pointwise hash scores, except NaN or an infinity for every third image: what a broken scorer returns."""

    name = "non-finite"
    cacheable = False

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        out = []
        for q in queries:
            pick = int(hashlib.sha256(q.candidates[0].key.encode()).hexdigest()[:8], 16) % 6
            value = {0: float("nan"), 1: float("inf")}.get(pick, _hash_score(q))
            out.append(Judgement(scores=(value,)))
        return out


@reward_model("non-finite", description="test model: hash scores with NaN and infinities mixed in")
def non_finite() -> RewardModel:
    return NonFinite()
