"""A task's samples loaded ahead of the event loop, in one background thread.

A loader's per-sample work (a parquet row group decoded, image bytes copied out, files read) and the sha256 of
every image for the cache key ran on the event loop, between requests: against a fast server that work, not the
server, set the request rate (issue 19's profile: about a quarter of the loop's time). Here one thread iterates
the loader and hashes each sample's images, a few samples ahead of what the loop consumes; pyarrow, file reads and
hashlib release the GIL on large buffers, so this work runs on another core beside the loop's HTTP. A model may add
its own per-sample work (``RewardModel.prepare``: an HTTP judge encodes each image's base64 for its request body,
pybase64 also without the GIL), so the loop only splices ready bytes.

One thread for the whole iteration: a loader is a generator and may hold thread-bound state (a sqlite connection),
so it is never resumed from two threads. What it raises, ``KeyboardInterrupt`` included, is handed to the loop in
order, after the samples before it. Memory stays flat: at most ``ahead`` samples wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from rrbench.types import Sample

Pull = Callable[[int], Any]  # (samples pulled so far) -> the next item, None at the end; may raise
Prepare = Callable[[Sample], None]  # work on a sample before the loop takes it (never raises); default ``warm``


def warm(sample: Sample) -> None:
    """Compute (and cache) the content key of every image of ``sample``: the sha256 the response cache needs.
    An image that cannot be read is left alone: the step that reads it records the sample's data failure."""
    for media in (*sample.source, *sample.candidates, *sample.reference):
        with contextlib.suppress(Exception):
            _ = media.key


class Prefetch:
    """``await next()`` gives the loader's items in order; ``close()`` stops the thread (it never blocks)."""

    def __init__(self, pull: Pull, ahead: int = 4, prepare: Prepare | None = None) -> None:
        self._pull = pull
        self._prepare = prepare or warm
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
        self._room = threading.Semaphore(max(1, ahead))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._work, name="rrbench-loader", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        count = 0
        while True:
            self._room.acquire()
            if self._closed.is_set():
                return
            try:
                item, error = self._pull(count), None
                if isinstance(item, Sample):
                    self._prepare(item)
            except BaseException as exc:  # delivered to the loop, which decides (KeyboardInterrupt included)
                item, error = None, exc
            if not self._hand_over(item, error) or item is None:
                return  # closed, or the loader is finished (its end, or it raised)
            count += 1

    def _hand_over(self, item: Any, error: BaseException | None) -> bool:
        if self._closed.is_set():
            return False
        try:
            self._loop.call_soon_threadsafe(self._ready.put_nowait, (item, error))
        except RuntimeError:  # the loop is closed: nobody waits any more
            return False
        return True

    async def next(self) -> Any:
        item, error = await self._ready.get()
        self._room.release()
        if error is not None:
            raise error
        return item

    def close(self) -> None:
        self._closed.set()
        self._room.release()  # a thread waiting for room sees the close at once
