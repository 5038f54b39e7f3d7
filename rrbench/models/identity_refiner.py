"""`identity`: the refine baseline that rewrites nothing. Its refined request is the benchmark prompt itself.

Under `rrbench refine` the image is regenerated from the same prompt with a new seed, so the gain it measures is
the gain of drawing a second sample and nothing else: the floor any critic's refined request has to beat. It gives
no aspect scores and no score, so it decides nothing about which image to keep (``refiner_only``). Offline, no
arguments, no model behind it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import Judgement, Query

RATIONALE = "identity refiner: the same prompt, a new seed"


class IdentityRefiner(RewardModel):
    name = "identity"
    batch_size = 256  # copying a string: one call for a large batch costs less than the thread hand-over
    cacheable = False  # a cache lookup costs more than the answer
    refiner_only = True  # no aspect scores: refine cannot tell a good image from a bad one with it
    new_seed_on_refine = True  # the same prompt with the same seed would redraw the same image

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        """The benchmark prompt, exactly, as each query's refined request; no scores, no aspects."""
        return [Judgement(refined_prompt=query.prompt, rationale=RATIONALE) for query in queries]


@reward_model("identity", description="refine baseline: regenerate from the same prompt with a new seed (the gain "
                                      "of a second sample alone), offline")
def identity() -> RewardModel:
    return IdentityRefiner()
