"""Any rrbench reward model as a reward function: ``scores = reward(prompts, images)``.

Training code (diffusion RL, best-of-N) asks for a number per image; this adapter builds the model from the
registry, starts it once, and sends one pointwise query per image through the model's own batching. A failed
judgement is ``None``, never a made-up score: the trainer decides what a missing reward means.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from typing import Any

from rrbench import registry
from rrbench.models._base import RewardModel
from rrbench.types import Judgement, Media, Query, UserError


class RewardFunction:
    """``RewardFunction("pickscore", path=...)(prompts, images)`` -> one score (or None) per image.

    ``images`` are PIL images, encoded bytes or ``Media``; ``sources`` (editing) one tuple of source images per
    image. ``generation`` is "t2i" or "edit" (which prompt family a critic uses)."""

    def __init__(self, model: str, *, generation: str = "t2i", **model_args: Any) -> None:
        built = registry.get("model", model).build(**model_args)
        if not isinstance(built, RewardModel) or not built.can_score:
            raise UserError(f"model '{model}' cannot score single images, so it cannot be a reward")
        self.model: RewardModel = built
        self.generation = generation
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self.model.astart(generation))
        except BaseException:  # a server that is not there: what the start opened (an HTTP session) closes now
            self.close()
            raise

    def __call__(self, prompts: Sequence[str], images: Sequence[Any],
                 sources: Sequence[Sequence[Any]] | None = None) -> list[float | None]:
        return [a.scores[0] if a.ok and a.scores else None for a in self.judge(prompts, images, sources)]

    def judge(self, prompts: Sequence[str], images: Sequence[Any],
              sources: Sequence[Sequence[Any]] | None = None) -> list[Judgement]:
        """The model's whole judgement of each image: score, per-aspect scores (a critic's; None = N/A), rationale,
        or the failure (kind and detail). For rewards built from aspects, and for counting failures by kind."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        queries = [
            Query(prompt, (_media(image),), tuple(_media(s) for s in (sources[i] if sources else ())), self.generation)
            for i, (prompt, image) in enumerate(zip(prompts, images, strict=True))
        ]
        return list(self._loop.run_until_complete(self.model.ascore(queries)))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.model.aclose())
            self._loop.close()

    def __enter__(self) -> RewardFunction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _media(image: Any) -> Media:
    if isinstance(image, Media):
        return image
    if isinstance(image, bytes | bytearray):
        return Media.from_bytes(bytes(image))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # a PIL image: lossless, so the model sees the trainer's pixels
    return Media.from_bytes(buffer.getvalue(), "png")
