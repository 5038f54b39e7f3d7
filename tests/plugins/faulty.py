"""Plug-ins that misbehave, loaded through RRBENCH_PLUGINS as a third party's would be: models that raise anything at
all, return the wrong things, hang, or fail to be built or started; tasks whose loader raises, yields junk, or
carries text that cannot be encoded. Every fault is chosen by arguments, so one file serves tests/test_plugin_faults.py.

Faults are named by ``fault=``: ``runtime`` (RuntimeError), ``boom`` (a BaseException subclass of the plug-in's own),
``generator-exit``, ``cancelled`` (asyncio.CancelledError), ``recursion`` (RecursionError), ``keyboard``
(KeyboardInterrupt) and ``system-exit`` (SystemExit(3)). ``$RRBENCH_TEST_HEAL`` turns every fault off, so a resume
of the same spec can finish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model, task
from rrbench.tasks.sanity import sanity
from rrbench.types import Judgement, Query, Sample, Task


class Boom(BaseException):
    """What a careless plug-in might raise: not an Exception, so `except Exception` lets it through."""


def make_fault(name: str) -> BaseException:
    makers: dict[str, Any] = {
        "runtime": lambda: RuntimeError("weights are garbage"),
        "boom": lambda: Boom("kaboom"),
        "generator-exit": lambda: GeneratorExit("closed under me"),
        "cancelled": lambda: asyncio.CancelledError("cancelled by the plug-in"),
        "recursion": lambda: RecursionError("maximum recursion depth exceeded"),
        "keyboard": lambda: KeyboardInterrupt(),
        "system-exit": lambda: SystemExit(3),
    }
    return makers[name]()  # type: ignore[no-any-return,unused-ignore]


def _healed() -> bool:
    return bool(os.environ.get("RRBENCH_TEST_HEAL"))


def _score(query: Query) -> float:
    return int.from_bytes(hashlib.sha256(query.candidates[0].key.encode()).digest()[:4], "big") / 2**32


def _chosen(at: str, query: Query) -> bool:
    return not _healed() and (at == "all" or query.sample_id in at.split(","))


class Faulty(RewardModel):
    """Pointwise hash scores, except for the samples named in ``at`` (comma-separated ids, or ``all``): there it
    raises ``fault``, or with ``answer`` returns ``not-judgement`` (a float), ``short`` (one answer too few) or
    ``none`` for the whole call."""

    name = "faulty"
    cacheable = False

    def __init__(self, fault: str = "runtime", at: str = "", answer: str = "", batch_size: int = 1) -> None:
        super().__init__(fault=fault, at=at, answer=answer, batch_size=batch_size)
        self.fault, self.at, self.answer, self.batch_size = fault, at, answer, batch_size

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        if any(_chosen(self.at, q) for q in queries):
            wrong: dict[str, Any] = {"not-judgement": [0.5] * len(queries), "short": [Judgement(scores=(0.5,))] *
                                     (len(queries) - 1), "none": None}
            if self.answer:
                return wrong[self.answer]  # type: ignore[no-any-return,unused-ignore]
            raise make_fault(self.fault)
        return [Judgement(scores=(_score(q),)) for q in queries]


@reward_model("faulty", description="test model: raises (or answers wrongly) for the samples named in -M at")
def faulty(fault: str = "runtime", at: str = "", answer: str = "", batch_size: int = 1) -> RewardModel:
    return Faulty(fault=fault, at=at, answer=answer, batch_size=batch_size)


class FaultyAsync(Faulty):
    """The same faults raised from the coroutine interface (as a server-backed model would)."""

    name = "faulty-async"
    is_async = True

    async def ascore(self, queries: Sequence[Query]) -> list[Judgement]:
        await asyncio.sleep(0)
        return self.score(queries)


@reward_model("faulty-async", description="test model: faulty, from the asynchronous interface")
def faulty_async(fault: str = "runtime", at: str = "", answer: str = "", batch_size: int = 1) -> RewardModel:
    return FaultyAsync(fault=fault, at=at, answer=answer, batch_size=batch_size)


class Hang(RewardModel):
    """An in-process model whose call never returns for the samples named in ``at`` (or ``all``): the thread blocks
    for good, as a deadlocked forward pass does. ``mark``: a file created when a call starts hanging."""

    name = "hang"
    cacheable = False

    def __init__(self, at: str = "all", mark: str = "") -> None:
        super().__init__(at=at, mark=mark)
        self.at, self.mark = at, mark

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        if any(_chosen(self.at, q) for q in queries):
            if self.mark:
                Path(self.mark).touch()
            threading.Event().wait()  # forever
        return [Judgement(scores=(_score(q),)) for q in queries]


@reward_model("hang", description="test model: a call that never returns for the samples named in -M at")
def hang(at: str = "all", mark: str = "") -> RewardModel:
    return Hang(at=at, mark=mark)


@reward_model("bad-factory", description="test model: its factory raises -M fault")
def bad_factory(fault: str = "runtime") -> RewardModel:
    raise make_fault(fault)


class BadStart(Faulty):
    name = "bad-start"

    async def astart(self, generation: str = "t2i") -> None:
        raise make_fault(self.fault)


@reward_model("bad-start", description="test model: astart raises -M fault")
def bad_start(fault: str = "runtime") -> RewardModel:
    return BadStart(fault=fault)


@task("faulty-task", description="test task: sanity (32 px) whose loader misbehaves as told")
def faulty_task(n: int = 8, raise_at: int = -1, fault: str = "runtime", text: str = "", text_at: int = -1,
                junk_at: int = -1, claim: int = 0, count_fault: str = "", build_fault: str = "",
                int_ids: bool = False) -> Task:
    """``raise_at``: the loader raises ``fault`` before sample ``raise_at``; ``text`` (``surrogate`` or ``nul``) spoils
    sample ``text_at``'s prompt; ``junk_at``: a dict is yielded there instead of a sample; ``claim``: the size the
    task declares (default ``n``); ``count_fault``: counting the samples raises; ``build_fault``: the factory
    raises; ``int_ids``: sample ids are numbers, not text."""
    if build_fault:
        raise make_fault(build_fault)
    base = sanity(size=32, n=n)
    spoil = {"surrogate": "\udc80", "nul": "\x00"}.get(text, "")

    def load(data: Path | None) -> Iterator[Sample]:
        for i, sample in enumerate(base.load(data)):
            if i == raise_at and not _healed():
                raise make_fault(fault)
            if i == junk_at:
                yield {"id": "junk"}  # type: ignore[misc]
            if i == text_at:
                sample = dataclasses.replace(sample, prompt=f"{sample.prompt} {spoil} end")
            if int_ids:
                sample = dataclasses.replace(sample, id=1000 + i)  # type: ignore[arg-type,unused-ignore]
            yield sample

    def count(data: Path | None) -> int | None:
        if count_fault:
            raise make_fault(count_fault)
        return claim or n

    return dataclasses.replace(base, name="faulty-task", load=load, size=claim or n, count=count,
                               info=dataclasses.replace(base.info, size=None))
