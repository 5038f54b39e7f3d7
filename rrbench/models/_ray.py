"""Scalar scoring sharded over Ray actors: `rrbench run --model M --ray [ADDRESS] --shards N` (docs/scale-out.md).

``RayDispatcher`` is the runner's ``Dispatcher`` (response cache, keys, batching, counts: all unchanged) whose model
calls go to ``shards`` Ray actors instead of a driver thread; each actor builds the in-process model from the
registry by name and arguments and starts it once (rrbench._ray_pool, shared with generation on Ray). Queries travel
with their images as encoded bytes (never a path to read: an actor may be on another node) and with the key they
have in the driver, so a model that reads ``query.key`` (``random``) answers as in one process. Answers come back as
the judgements' JSON. A batch that raised on an actor is retried one query at a time by the Batcher; an actor that
dies fails only the queries of its batch (``error``, with Ray's reason) and is started again.

Only in-process models qualify: a server-backed judge (``is_async``) already spreads its requests over replicas
(several ``--base-url``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rrbench._ray_pool import ActorBody, ActorPool, Identity
from rrbench.dispatch import DEFAULT_CALL_TIMEOUT_S, Dispatcher, _checked
from rrbench.models._base import RewardModel
from rrbench.store import ResponseCache
from rrbench.types import DataError, FailureKind, Judgement, Media, Query, UserError

JSON = dict[str, Any]


class _Scorer(ActorBody):
    """One Ray actor's reward model, built and started (weights loaded) once."""

    kind = "model"

    def started(self, plugin: Any, start: Any) -> Identity:
        model: RewardModel = plugin
        fingerprint = model.fingerprint()  # before start, as the driver's Dispatcher takes it
        asyncio.run(model.astart(start))
        return fingerprint, model.describe()

    def score(self, queries: list[Query]) -> list[JSON]:
        return self._answer("ascore", queries)

    def compare(self, queries: list[Query]) -> list[JSON]:
        return self._answer("acompare", queries)

    def _answer(self, method: str, queries: list[Query]) -> list[JSON]:
        """The model's judgements as JSON (a plug-in's own mapping types need not pickle); what it raised, or a
        wrong answer (checked as the driver's Batcher checks it), is raised for the driver to retry one by one."""
        assert self.plugin is not None
        answers = _checked(asyncio.run(getattr(self.plugin, method)(queries)), len(queries), Judgement)
        return [a.to_json() for a in answers]


class RayModel(RewardModel):
    """The driver's stand-in for ``model``: same identity, batch size and cacheability; its calls are awaited, one
    per free actor (``concurrency`` = shards). Its weights load in the actors, never here."""

    is_async = True  # awaited by the Dispatcher, never run in a driver thread

    def __init__(self, model: RewardModel, name: str, args: Mapping[str, Any], *, shards: int,
                 address: str | None) -> None:
        if model.is_async:
            raise UserError(f"model '{name}' is served (its requests go to an engine or server of its own), and "
                            "--ray shards in-process scalar models only: give several --base-url instead "
                            "(replicas, docs/scale-out.md section 1)")
        # Pinned to the driver's fingerprint: the response cache's keys are a one-process run's.
        self.pool = ActorPool(_Scorer, name, dict(args), shards=shards, address=address,
                              fingerprint=model.fingerprint())
        super().__init__(**model.config)
        self.local = model
        self.batch_size, self.cacheable, self.concurrency = model.batch_size, model.cacheable, shards

    def fingerprint(self) -> str:
        return self.local.fingerprint()

    def describe(self) -> dict[str, Any]:
        return self.pool.describe(self.local.describe())

    @property
    def can_score(self) -> bool:
        return self.local.can_score

    @property
    def can_compare(self) -> bool:
        return self.local.can_compare

    async def astart(self, generation: str = "t2i") -> None:
        await self.pool.astart(self.local.workdir, generation)

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def ascore(self, queries: Sequence[Query]) -> list[Judgement]:
        return await self._call("score", queries)

    async def acompare(self, queries: Sequence[Query]) -> list[Judgement]:
        return await self._call("compare", queries)

    async def _call(self, method: str, queries: Sequence[Query]) -> list[Judgement]:
        wires = await asyncio.to_thread(lambda: [wire(q) for q in queries])  # reads files: not on the loop
        answers = await self.pool.call(method, wires, _failed, "scoring")
        return [Judgement.from_json(a) for a in answers]


def _failed(kind: FailureKind, detail: str) -> JSON:
    return Judgement.failed(kind, detail).to_json()


class RayDispatcher(Dispatcher):
    """The ``Dispatcher`` of ``model`` scored on Ray: the runner starts it (``astart``) where it would start the
    model, and its ``aclose`` stops the actors too. ``call_timeout_s`` None: an in-process model's default."""

    def __init__(self, model: RewardModel, name: str, args: Mapping[str, Any], cache: ResponseCache, *,
                 shards: int, address: str | None = None, call_timeout_s: float | None = None,
                 on_interrupt: Callable[[BaseException], None] | None = None) -> None:
        self.ray = RayModel(model, name, args, shards=shards, address=address)
        timeout = DEFAULT_CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        super().__init__(self.ray, cache, call_timeout_s=timeout, on_interrupt=on_interrupt)

    @property
    def restarts(self) -> int:
        """Actors started again after one died."""
        return self.ray.pool.restarts

    async def astart(self, workdir: Path | None, generation: str) -> None:
        self.ray.local.workdir = workdir
        await self.ray.astart(generation)

    def describe(self) -> dict[str, Any]:
        """The model as the actors started it, with how it was sharded (run.json's ``model``)."""
        return self.ray.describe()

    async def aclose(self) -> None:
        self.ray.pool.closing()  # the calls cancelled now are the run stopping, not stuck actors to replace
        try:
            await super().aclose()
        finally:
            await self.ray.aclose()


def wire(query: Query) -> Query:
    """``query`` as it travels to an actor: every image as its encoded bytes and the key it has here."""
    out = dataclasses.replace(query, candidates=tuple(_bytes(m) for m in query.candidates),
                              source=tuple(_bytes(m) for m in query.source))
    vars(out)["key"] = query.key  # cached_property's slot: what a model (random) reads is the driver's key
    return out


def _bytes(media: Media) -> Media:
    """The image with its bytes read here (the path stays only as its name in messages, never read there), or one
    that fails as this read failed, with the same message."""
    try:
        key = media.key
        data = media.read_bytes()
    except DataError as exc:  # the model meets it where it reads the image, as in one process
        return Media.unavailable(media.recipe or f"unreadable/{media.describe()}", str(exc))
    out = dataclasses.replace(media, data=data, render=None, root=None, digest=None)
    vars(out)["key"] = key
    return out
