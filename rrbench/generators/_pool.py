"""The runner's door to a generator: image requests of many samples in flight become batched generator calls.

The generator runs in one worker thread (a forward pass must not block the event loop), at most ``batch_size``
images a call. Whatever a call raises or returns is trusted no more than a reward model's (``dispatch.Batcher``):
a batch that raised is retried one image at a time, so one bad prompt never fails its batch-mates, and a call past
its deadline fails its images as ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from rrbench.dispatch import DEFAULT_CALL_TIMEOUT_S, Answers, Batcher
from rrbench.generators._base import Generated, Generator, ImageRequest


class GeneratorPool:
    """Batches for one in-process generator. ``model_calls`` counts images asked of it, ``cache_hits`` images found
    already made (a resume), so run.json's stats read alike for judge and generation runs."""

    def __init__(self, generator: Generator, *, call_timeout_s: float | None = None,
                 on_interrupt: Callable[[BaseException], None] | None = None) -> None:
        self.generator = generator
        self.fingerprint = generator.fingerprint()
        deadline = DEFAULT_CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        self._batcher: Batcher[ImageRequest, Generated] = Batcher(
            self._call, generator.batch_size, 1, call_timeout_s=deadline or None, on_interrupt=on_interrupt,
            answers=Answers(Generated, Generated.failed, lambda answer, _latency: answer))
        self.cache_hits = 0
        self.abandoned_calls = 0

    @property
    def model_calls(self) -> int:
        return self._batcher.calls

    async def _call(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        return await asyncio.to_thread(self.generator.generate, list(requests))

    async def submit(self, request: ImageRequest) -> Generated:
        answer = await self._batcher.submit(request)
        self.abandoned_calls = self._batcher.abandoned
        return answer

    def reused(self) -> None:
        self.cache_hits += 1

    async def aclose(self) -> None:
        await self._batcher.aclose()
