"""rrbench.prefetch: a task's samples loaded in one background thread, ahead of the event loop by a bounded number,
in order, with what the loader raises delivered after the samples before it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from rrbench.prefetch import Prefetch
from rrbench.types import Label, Media, Sample


def samples(n: int, fail_at: int | None = None, record: list[str] | None = None) -> Iterator[Sample]:
    for i in range(n):
        if i == fail_at:
            raise RuntimeError(f"broken row {i}")
        if record is not None:
            record.append(threading.current_thread().name)
        yield Sample(id=f"s{i}", prompt="p", candidates=(Media.from_bytes(bytes([i]) * 64, "png"),),
                     label=Label.unknown("x"))


def pull_from(it: Iterator[Sample]) -> object:
    return lambda count: next(it, None)


def test_items_come_in_order_from_one_loader_thread_with_keys_computed() -> None:
    threads: list[str] = []

    async def main() -> list[Sample]:
        feed = Prefetch(pull_from(samples(20, record=threads)), ahead=3)  # type: ignore[arg-type]
        out = []
        while (item := await feed.next()) is not None:
            out.append(item)
        feed.close()
        return out

    got = asyncio.run(main())
    assert [s.id for s in got] == [f"s{i}" for i in range(20)]
    assert set(threads) == {"rrbench-loader"}  # never the loop's thread, and only one thread
    assert all("key" in vars(s.candidates[0]) for s in got)  # the sha256 was taken in the loader thread


def test_the_loader_stays_at_most_ahead_items_ahead() -> None:
    pulled: list[int] = []

    def pull(count: int) -> object:
        pulled.append(count)
        return count if count < 100 else None

    async def main() -> None:
        feed = Prefetch(pull, ahead=4)
        first = await feed.next()
        await asyncio.sleep(0.2)  # the thread has had all the time it wants
        assert first == 0 and len(pulled) <= 1 + 4, pulled
        feed.close()

    asyncio.run(main())


def test_an_error_comes_after_the_items_before_it_and_ends_the_feed() -> None:
    async def main() -> tuple[list[str], BaseException]:
        feed = Prefetch(pull_from(samples(10, fail_at=3)), ahead=8)  # type: ignore[arg-type]
        got: list[str] = []
        try:
            while (item := await feed.next()) is not None:
                got.append(item.id)
        except RuntimeError as exc:
            return got, exc
        finally:
            feed.close()
        raise AssertionError("no error")

    got, exc = asyncio.run(main())
    assert got == ["s0", "s1", "s2"] and str(exc) == "broken row 3"


def test_keyboard_interrupt_in_the_loader_reaches_the_loop() -> None:
    def pull(count: int) -> object:
        raise KeyboardInterrupt

    async def main() -> None:
        feed = Prefetch(pull, ahead=2)
        with pytest.raises(KeyboardInterrupt):
            await feed.next()
        feed.close()

    asyncio.run(main())


def test_close_releases_a_thread_waiting_for_room() -> None:
    async def main() -> threading.Thread:
        feed = Prefetch(lambda count: count, ahead=1)  # endless
        await feed.next()
        await asyncio.sleep(0.05)  # the thread now waits for room
        feed.close()
        return feed._thread

    thread = asyncio.run(main())
    deadline = time.monotonic() + 5
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not thread.is_alive()
