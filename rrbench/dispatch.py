"""From single requests to model calls: the response cache, then batching with bounded concurrency.

The runner awaits one request at a time per sample; the dispatcher turns the requests of many samples in flight
into batches for in-process models (one worker thread, so the event loop never blocks on a forward pass) or into
up to ``model.concurrency`` simultaneous calls for server-backed models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from rrbench.models._base import RewardModel
from rrbench.store import ResponseCache
from rrbench.types import DataError, FailureKind, Judgement, Query

Call = Callable[[Sequence[Query]], Awaitable[list[Judgement]]]


class Batcher:
    """Collects queries and runs them in batches of up to ``batch_size``, at most ``workers`` batches at a time.

    A batch is taken when a worker slot frees up, so batches grow by themselves while the model is busy and
    nothing waits on a timer when it is idle.
    """

    def __init__(self, call: Call, batch_size: int, workers: int) -> None:
        self._call = call
        self._batch_size = max(1, batch_size)
        self._slots = asyncio.Semaphore(max(1, workers))
        self._pending: list[tuple[Query, asyncio.Future[Judgement]]] = []
        self._nonempty = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.calls = 0  # queries sent to the model

    async def submit(self, query: Query) -> Judgement:
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())
        future: asyncio.Future[Judgement] = asyncio.get_running_loop().create_future()
        self._pending.append((query, future))
        self._nonempty.set()
        return await future

    async def _pump(self) -> None:
        while True:
            await self._nonempty.wait()
            await self._slots.acquire()
            await asyncio.sleep(0)  # let the samples that are ready right now add their requests first
            batch = self._pending[: self._batch_size]
            del self._pending[: self._batch_size]
            if not self._pending:
                self._nonempty.clear()
            batch = [(q, f) for q, f in batch if not f.done()]  # drop requests of cancelled samples
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Query, asyncio.Future[Judgement]]]) -> None:
        try:
            queries = [q for q, _ in batch]
            self.calls += len(queries)
            answers = await self._answer(queries)
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        finally:
            self._slots.release()

    async def _answer(self, queries: list[Query]) -> list[Judgement]:
        start = time.perf_counter()
        try:
            answers = await self._call(queries)
            if len(answers) != len(queries):
                raise RuntimeError(f"model returned {len(answers)} judgements for {len(queries)} queries")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(queries) > 1:
                # One broken sample must not fail its batch-mates: retry them one by one.
                return [(await self._answer([q]))[0] for q in queries]
            return [_failure_from(exc)]
        latency = (time.perf_counter() - start) / len(queries)
        answers = [finite(a) for a in answers]
        return [a if a.latency_s is not None else dataclasses.replace(a, latency_s=latency) for a in answers]

    async def aclose(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        for _, future in self._pending:
            future.cancel()
        # Calls still running belong to samples the runner has given up on (Ctrl-C, an error): cancel them rather
        # than wait, since a call to a hung server ends only at the client timeout (600 s by default).
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def finite(judgement: Judgement) -> Judgement:
    """A judgement whose scores are all finite, or a failure: a NaN would compare as a silent tie, and it would be
    written into the sample log as a ``NaN`` token that strict JSON readers reject."""
    values = [*judgement.scores, *(v for a in judgement.aspects for v in a.values())]
    bad = [v for v in values if v is not None and not (isinstance(v, int | float) and math.isfinite(v))]
    if not bad:
        return judgement
    return dataclasses.replace(judgement, scores=(), aspects=(), verdict=None, failure=FailureKind.ERROR,
                               failure_detail=f"the model returned a non-finite score ({bad[0]!r})")


def _failure_from(exc: Exception) -> Judgement:
    kind = FailureKind.DATA if isinstance(exc, DataError) else FailureKind.ERROR
    return Judgement.failed(kind, f"{type(exc).__name__}: {exc}"[:2000])


class Dispatcher:
    """The runner's only door to the model: cache lookup, then the batcher for the request's operation."""

    def __init__(self, model: RewardModel, cache: ResponseCache) -> None:
        self.model = model
        self.cache = cache
        self.fingerprint = model.fingerprint()
        workers = model.concurrency if model.is_async else 1
        self._batchers = {
            "score": Batcher(model.ascore, model.batch_size, workers),
            "compare": Batcher(model.acompare, model.batch_size, workers),
        }
        self.cache_hits = 0

    @property
    def model_calls(self) -> int:
        return sum(b.calls for b in self._batchers.values())

    async def submit(self, op: str, query: Query) -> Judgement:
        key = f"{self.fingerprint}:{op}:{query.key}"
        if self.model.cacheable:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                return Judgement.from_json(hit)
        judgement = await self._batchers[op].submit(query)
        if judgement.ok and self.model.cacheable:
            self.cache.put(key, judgement.to_json())
        return judgement

    async def aclose(self) -> None:
        for batcher in self._batchers.values():
            await batcher.aclose()
        self.cache.flush()
