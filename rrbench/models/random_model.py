"""`random`: the chance baseline. Each image gets a uniform score in [0, 1) that is a pure function of the seed and
the exact query, so reruns, resumes and other orders of work agree without any global random state."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import Judgement, Query, UserError


class RandomModel(RewardModel):
    name = "random"
    batch_size = 64
    cacheable = False  # hashing is cheaper than a cache lookup

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.seed = seed

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [Judgement(scores=(self._uniform(q),)) for q in queries]

    def _uniform(self, query: Query) -> float:
        digest = hashlib.sha256(f"{self.seed}:{query.key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64  # 53-bit floats: the division stays below 1.0


@reward_model("random", description="baseline: uniform random score in [0, 1), deterministic per (seed, query)")
def random_model(seed: int = 0) -> RewardModel:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"random: seed must be an integer, got {seed!r}")
    return RandomModel(seed=seed)
