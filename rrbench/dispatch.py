"""From single requests to model calls: the response cache, then batching with bounded concurrency.

The runner awaits one request at a time per sample; the dispatcher turns the requests of many samples in flight
into batches for in-process models (one worker thread, so the event loop never blocks on a forward pass) or into
up to ``model.concurrency`` simultaneous calls for server-backed models.

A model is a plug-in, so the batcher trusts nothing it does: whatever a call raises (any exception, including
BaseException subclasses other than KeyboardInterrupt and SystemExit) or returns (the wrong number or type of
answers) fails that call's queries, never the batcher. KeyboardInterrupt or SystemExit raised by a model stop the
run as Ctrl-C does. A call may have a deadline (``call_timeout_s``): past it, its queries fail as ``timeout`` and the
call is abandoned, since a thread cannot be killed (``DaemonThreads`` keeps an abandoned thread from holding up
the exit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import math
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rrbench.models._base import RewardModel
from rrbench.store import ResponseCache
from rrbench.types import ChatQuery, DataError, FailureKind, Judgement, Query

Q = TypeVar("Q")  # a request: a Query to a model, an ImageRequest to a generator
A = TypeVar("A")  # its answer: a Judgement, a Generated image
Call = Callable[[Sequence[Q]], Awaitable[list[A]]]
DEFAULT_CALL_TIMEOUT_S = 600.0  # in-process models (synchronous score/compare): the longest one call may take


class CallTimeout(Exception):
    """A model call passed its deadline."""


class ModelInterrupt(Exception):
    """A model raised KeyboardInterrupt or SystemExit: the run stops as on Ctrl-C (wrapped, since either one
    escaping an asyncio task would tear down the event loop)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}{original.args!r}" if original.args else type(original).__name__)
        self.original = original


class _Raised(Exception):
    """A BaseException that is not an Exception, raised by a model, carried as an ordinary exception."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _being_cancelled() -> bool:
    """Whether the running task was asked to stop (a CancelledError may also be a model's own, e.g. from a client
    library: that one is the call's failure, not ours)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or bool(cancelling())  # Python 3.10 cannot tell: treat it as ours


async def guarded(call: Call[Q, A], queries: Sequence[Q]) -> list[A]:
    """``call(queries)`` with whatever it raises turned into an ordinary exception (see the classes above)."""
    try:
        return await call(queries)
    except asyncio.CancelledError as exc:
        if _being_cancelled():
            raise
        raise _Raised(exc) from exc  # the model's own (a client library's), not a stop of ours
    except (KeyboardInterrupt, SystemExit) as exc:
        raise ModelInterrupt(exc) from exc
    except Exception:
        raise
    except BaseException as exc:  # GeneratorExit, or a plug-in's own BaseException subclass
        raise _Raised(exc) from exc


@dataclass(frozen=True)
class Answers(Generic[A]):
    """What a batcher's calls answer: the type (a plug-in may return anything else), how one answer says a failure,
    and what is done to each answer that arrived (``latency`` is the call's time per request)."""

    type: type[A]
    failed: Callable[[FailureKind, str], A]
    finish: Callable[[A, float], A]


def _finished_judgement(answer: Judgement, latency: float) -> Judgement:
    answer = finite(answer)
    return answer if answer.latency_s is not None else dataclasses.replace(answer, latency_s=latency)


class Batcher(Generic[Q, A]):
    """Collects requests and runs them in batches of up to ``batch_size``, at most ``workers`` batches at a time.

    A batch is taken when a worker slot frees up, so batches grow by themselves while the model is busy and
    nothing waits on a timer when it is idle. ``answers`` says what the calls return (judgements by default).
    """

    def __init__(self, call: Call[Q, A], batch_size: int, workers: int, *, call_timeout_s: float | None = None,
                 on_interrupt: Callable[[BaseException], None] | None = None,
                 answers: Answers[A] | None = None) -> None:
        self._call = call
        self._answers: Answers[A] = answers or Answers(Judgement, Judgement.failed, _finished_judgement)  # type: ignore[arg-type]
        self._batch_size = max(1, batch_size)
        self._slots = asyncio.Semaphore(max(1, workers))
        self._pending: list[tuple[Q, asyncio.Future[A]]] = []
        self._nonempty = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._deadline = call_timeout_s if call_timeout_s and call_timeout_s > 0 else None
        self._on_interrupt = on_interrupt
        self.calls = 0  # queries sent to the model
        self.abandoned = 0  # calls left running past their deadline

    async def submit(self, query: Q) -> A:
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())
        future: asyncio.Future[A] = asyncio.get_running_loop().create_future()
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

    async def _run(self, batch: list[tuple[Q, asyncio.Future[A]]]) -> None:
        try:
            queries = [q for q, _ in batch]
            self.calls += len(queries)
            answers = await self._answer(queries)
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        except ModelInterrupt as exc:
            if self._on_interrupt is not None:
                self._on_interrupt(exc.original)  # the runner stops first, so the cancelled samples are not failures
            for _, future in batch:
                future.cancel()
        finally:
            self._slots.release()
            for _, future in batch:  # whatever ended this call, nobody waits for its answers forever
                if not future.done():
                    future.set_result(self._answers.failed(FailureKind.ERROR, "the model call ended without an answer"))

    async def _answer(self, queries: list[Q]) -> list[A]:
        start = time.perf_counter()
        try:
            answers = _checked(await self._timed(queries), len(queries), self._answers.type)
        except asyncio.CancelledError:
            raise
        except ModelInterrupt:
            raise
        except CallTimeout as exc:
            # Not split and retried one by one like other failures: a hung model would hang once per query.
            return [self._answers.failed(FailureKind.TIMEOUT, str(exc)) for _ in queries]
        except Exception as exc:
            if len(queries) > 1:
                # One broken sample must not fail its batch-mates: retry them one by one.
                return [(await self._answer([q]))[0] for q in queries]
            return [self._answers.failed(*_failure_from(exc))]
        latency = (time.perf_counter() - start) / len(queries)
        return [self._answers.finish(a, latency) for a in answers]

    async def _timed(self, queries: list[Q]) -> list[A]:
        if self._deadline is None:
            return await guarded(self._call, queries)
        call = asyncio.ensure_future(guarded(self._call, queries))
        try:
            done, _ = await asyncio.wait({call}, timeout=self._deadline)
        except asyncio.CancelledError:
            call.cancel()
            raise
        if not done:
            # Asked to stop, never awaited: a call stuck in a thread (or one that ignores cancellation) is left
            # behind rather than waited for.
            call.cancel()
            self._abandon(call)
            raise CallTimeout(f"the model call did not return within {self._deadline:g} s (--call-timeout)")
        return call.result()

    def _abandon(self, call: asyncio.Future[Any]) -> None:
        self.abandoned += 1
        self._abandoned.add(call)
        call.add_done_callback(self._forget)

    def _forget(self, call: asyncio.Future[Any]) -> None:
        self._abandoned.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved, so asyncio does not log it: the call's samples have already failed

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
        for call in self._abandoned:
            call.cancel()


def _checked(answers: Any, n: int, kind: type[A]) -> list[A]:
    """The plug-in's answers, if they are what the interface promises: one answer of the right type per request."""
    what = "judgements" if kind is Judgement else f"{kind.__name__}s"
    if not isinstance(answers, list | tuple):
        raise TypeError(f"the model returned {type(answers).__name__}, not a list of {what}")
    if len(answers) != n:
        raise RuntimeError(f"model returned {len(answers)} {what} for {n} queries")
    wrong = next((a for a in answers if not isinstance(a, kind)), None)
    if wrong is not None:
        raise TypeError(f"the model returned a {type(wrong).__name__} where a {kind.__name__} belongs")
    return list(answers)


class DaemonThreads(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor during a run: daemon threads, reused while idle, so a call stuck in a model
    (which no thread API can stop) holds up neither the loop's shutdown nor the interpreter's exit; Ctrl-C and a call
    deadline leave it behind, and the next call gets another thread. (asyncio.to_thread, used for in-process models
    and backends, runs here.)"""

    def __init__(self) -> None:
        super().__init__(max_workers=1)  # the pool's own machinery is never used: submit() below replaces it
        self._work: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._started = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._work.put((future, contextvars.copy_context(), fn, args, kwargs))
        if not self._idle.acquire(timeout=0):
            self._started += 1
            threading.Thread(target=self._worker, name=f"rrbench-call-{self._started}", daemon=True).start()
        return future

    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            future, context, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = context.run(fn, *args, **kwargs)
                except BaseException as exc:  # delivered to the awaiting coroutine, KeyboardInterrupt included
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, context, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Never waits: idle threads end now, a stuck one when (if ever) its call returns."""
        for _ in range(self._started):
            self._work.put(None)
        self._started = 0


def finite(judgement: Judgement) -> Judgement:
    """A judgement whose scores are all finite, or a failure: a NaN would compare as a silent tie, and it would be
    written into the sample log as a ``NaN`` token that strict JSON readers reject."""
    values = [*judgement.scores, *(v for a in judgement.aspects for v in a.values())]
    bad = [v for v in values if v is not None and not (isinstance(v, int | float) and math.isfinite(v))]
    if not bad:
        return judgement
    return dataclasses.replace(judgement, scores=(), aspects=(), verdict=None, failure=FailureKind.ERROR,
                               failure_detail=f"the model returned a non-finite score ({bad[0]!r})")


def _failure_from(exc: Exception) -> tuple[FailureKind, str]:
    if isinstance(exc, _Raised):
        exc_shown: BaseException = exc.original
    else:
        exc_shown = exc
    kind = FailureKind.DATA if isinstance(exc_shown, DataError) else FailureKind.ERROR
    return kind, describe_exception(exc_shown)[:2000]


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` (just the type when the message is empty)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Dispatcher:
    """The runner's only door to the model: cache lookup, then the batcher for the request's operation.

    ``call_timeout_s``: the deadline of one model call; None gives in-process models (the synchronous interface)
    ``DEFAULT_CALL_TIMEOUT_S`` and server-backed ones none (their requests have their own, ``-M timeout_s``); 0
    turns it off."""

    def __init__(self, model: RewardModel, cache: ResponseCache, *, call_timeout_s: float | None = None,
                 on_interrupt: Callable[[BaseException], None] | None = None) -> None:
        self.model = model
        self.cache = cache
        self.fingerprint = model.fingerprint()
        workers = model.concurrency if model.is_async else 1
        if call_timeout_s is None:
            call_timeout_s = None if model.is_async else DEFAULT_CALL_TIMEOUT_S
        self.call_timeout_s = call_timeout_s or None
        self._batchers = {
            op: Batcher(call, model.batch_size, workers, call_timeout_s=self.call_timeout_s,
                        on_interrupt=on_interrupt)
            for op, call in (("score", model.ascore), ("compare", model.acompare))
        }
        # A benchmark's own judge requests (rrbench.protocols.official), for judges that answer any chat request.
        self._chat: Batcher[ChatQuery, Judgement] | None = (
            Batcher(model.achat, model.batch_size, workers, call_timeout_s=self.call_timeout_s,
                    on_interrupt=on_interrupt) if model.can_chat else None)
        self.cache_hits = 0

    def _all(self) -> list[Batcher[Any, Judgement]]:
        return [*self._batchers.values(), *([self._chat] if self._chat is not None else [])]

    @property
    def model_calls(self) -> int:
        return sum(b.calls for b in self._all())

    @property
    def abandoned_calls(self) -> int:
        return sum(b.abandoned for b in self._all())

    async def submit(self, op: str, query: Query) -> Judgement:
        return await self._cached(f"{self.fingerprint}:{op}:{query.key}", self._batchers[op], query)

    async def chat(self, query: ChatQuery) -> Judgement:
        """A benchmark's own request: its raw answer (cached like any other), or its failure."""
        if self._chat is None:
            raise RuntimeError(f"{self.model.name} answers no chat requests")  # resolved() chose another protocol
        return await self._cached(f"{self.fingerprint}:chat:{query.key}", self._chat, query)

    async def _cached(self, key: str, batcher: Batcher[Any, Judgement], query: Any) -> Judgement:
        if self.model.cacheable:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    judgement = Judgement.from_json(hit)
                except (KeyError, TypeError, ValueError):
                    judgement = None  # an entry this version cannot read: ask the model again
                if judgement is not None:
                    self.cache_hits += 1
                    return judgement
        judgement = await batcher.submit(query)
        if judgement.ok and self.model.cacheable:
            self.cache.put(key, judgement.to_json())
        return judgement

    async def aclose(self) -> None:
        for batcher in self._all():
            await batcher.aclose()
        self.cache.flush()
