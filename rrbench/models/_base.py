"""The reward-model interface every model family implements.

A model answers queries in batches. In-process models implement the synchronous ``score`` (and ``compare`` if
they judge pairs natively); the runner calls them in a worker thread so the event loop stays free. Models that
talk to servers override the ``a``-prefixed coroutines instead and are awaited directly, many at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from rrbench.types import ChatQuery, DataError, FailureKind, Judgement, Query, Sample

T = TypeVar("T")


class RewardModel:
    """Base class. Subclasses set ``name`` and implement ``score`` and/or ``compare``.

    ``pairwise`` tells the pairwise protocol which mode the model prefers when the user does not choose:
    True judges both candidates in one request, False scores each candidate and compares.
    """

    name: ClassVar[str] = "model"
    pairwise: ClassVar[bool] = False
    batch_size: int = 1
    concurrency: int = 1  # requests in flight at once (HTTP models); in-process models use one worker
    cacheable: bool = True  # False for models cheaper to call than the cache lookup
    workdir: Path | None = None  # the run directory, set by the runner: where a model may write its logs

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)

    # -- identity ---------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Identity of weights + decoding: equal fingerprints must give equal answers to equal queries."""
        blob = json.dumps({"model": self.name, "config": self.config}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What run.json records about the model (never secrets)."""
        return {"name": self.name, "config": self.config, "fingerprint": self.fingerprint()}

    # -- synchronous, in-process ------------------------------------------------------------------------------
    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        """One judgement per single-candidate query, with ``scores=(s,)``."""
        raise NotImplementedError(f"{self.name} cannot score single images")

    def compare(self, queries: Sequence[Query]) -> list[Judgement]:
        """One judgement per multi-candidate query, with per-candidate scores and/or a verdict."""
        raise NotImplementedError(f"{self.name} cannot judge pairs natively")

    # A general-purpose VLM judge (GPT-4.1, Gemini, a served Qwen-VL) answers any chat request with ``achat``, so it
    # can run a benchmark's own judge protocol (rrbench.protocols.official). A reward model with its own prompt and
    # scale (RationalRewards, PickScore) cannot, and scores generation tasks under their ``-rm`` protocols.
    generic_judge: bool = False

    # Test-time refine (rrbench refine): a critic answers ``score`` queries with per-aspect scores and a
    # ``refined_prompt``. A refiner that only rewrites (no aspect scores to decide which images to keep, e.g. the
    # blind prompt enhancer) sets ``refiner_only``; one whose rewrite is worth nothing without a fresh draw (the
    # identity refiner: the same prompt again) sets ``new_seed_on_refine``, so the regenerated image gets a new seed.
    refiner_only: bool = False
    new_seed_on_refine: bool = False

    def prepare(self, sample: Sample, generation: str) -> None:
        """Work on ``sample`` before it is asked about, in the runner's loader thread (rrbench.prefetch), so that
        the event loop does less per request: nothing by default. Thread-safe, and never raises: a sample whose
        data is bad fails where it is asked about, with its own failure."""

    async def achat(self, queries: Sequence[ChatQuery]) -> list[Judgement]:
        """One judgement per chat request: the raw answer in ``raw`` (no parsing: the benchmark's own rule reads
        it), or a failure (transport, refusal, data)."""
        raise NotImplementedError(f"{self.name} answers no chat requests")

    @property
    def can_chat(self) -> bool:
        return self.generic_judge and type(self).achat is not RewardModel.achat

    @property
    def can_compare(self) -> bool:
        return type(self).compare is not RewardModel.compare or type(self).acompare is not RewardModel.acompare

    @property
    def can_score(self) -> bool:
        return type(self).score is not RewardModel.score or type(self).ascore is not RewardModel.ascore

    # -- asynchronous -----------------------------------------------------------------------------------------
    is_async: ClassVar[bool] = False

    async def ascore(self, queries: Sequence[Query]) -> list[Judgement]:
        return await asyncio.to_thread(self.score, queries)

    async def acompare(self, queries: Sequence[Query]) -> list[Judgement]:
        return await asyncio.to_thread(self.compare, queries)

    # -- life cycle -------------------------------------------------------------------------------------------
    async def astart(self, generation: str = "t2i") -> None:
        """Open connections, start servers, load weights (for the task's generation kind, "t2i" or "edit").

        Called once before the first query, so a missing checkpoint fails the run at once, not per sample.
        """

    async def aclose(self) -> None:
        """Release what ``astart`` took. Called on success, error and Ctrl-C alike."""


def decode_candidates(queries: Sequence[Query], transform: Callable[[Any], T]) -> tuple[list[T], list[int],
                                                                                          list[Judgement]]:
    """For in-process scorers that batch pixels: each query's candidate image through ``transform``.

    A broken image fails its own query (a ``data`` failure), never the batch. Returns the transformed images, the
    indices of the queries they belong to, and one judgement per query: its failure, or a placeholder to replace
    with the score."""
    images: list[T] = []
    decoded: list[int] = []
    out: list[Judgement] = []
    for i, query in enumerate(queries):
        try:
            images.append(transform(query.candidates[0].image()))
        except DataError as exc:
            out.append(Judgement.failed(FailureKind.DATA, str(exc)))
            continue
        decoded.append(i)
        out.append(Judgement())
    return images, decoded, out
