"""The consistency predicates of ``rrbench-train filter``: one plug-in per file, registered by name.

A predicate is an async function ``(item, context) -> Check``. Every predicate runs on every item, so each one's
rejection rate is measured on its own; an item is kept when every *applied* predicate passed. A predicate that
cannot judge (no ``--judge`` for ``predictive``) returns ``Check.not_applied``: recorded and reported, never a pass.
A predicate that could not finish (the judge's server failed) returns ``Check.error``: the item is not kept, and a
rerun of the same filter stage tries it again.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rrbench import critique

LETTERS = ("A", "B")


@dataclass(frozen=True)
class Check:
    applied: bool
    passed: bool
    reason: str = ""
    error: bool = False  # could not be decided (a transport failure): not kept, redone on resume

    @classmethod
    def ok(cls, reason: str = "") -> Check:
        return cls(True, True, reason)

    @classmethod
    def reject(cls, reason: str) -> Check:
        return cls(True, False, reason)

    @classmethod
    def not_applied(cls, reason: str) -> Check:
        return cls(False, False, reason)

    @classmethod
    def failed(cls, reason: str) -> Check:
        return cls(True, False, reason, error=True)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"applied": self.applied, "passed": self.passed, "reason": self.reason}
        if self.error:
            out["error"] = True
        return out


@dataclass
class Item:
    """One answered anchor record and rrbench's reading of its answer (parsed once, shared by the predicates)."""

    record: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def pairwise(self) -> bool:
        return self.record["kind"] == "pairwise"

    @property
    def generation(self) -> str:
        return str(self.record["generation"])

    @property
    def answer(self) -> str:
        return str(self.record.get("answer") or "")

    @property
    def parsed(self) -> critique.Parsed:
        cached = self.__dict__.get("_parsed")
        if cached is None:
            cached = critique.parse_critique(self.answer, self.generation, self.pairwise)
            self.__dict__["_parsed"] = cached
        return cached


@dataclass
class Context:
    """What predicates share: the options, every item by id (a pointwise pair reads its partner), the judge."""

    items: Mapping[str, Item]
    options: Mapping[str, Any] = field(default_factory=dict)
    judge: Any = None  # an rrbench generic VLM judge, started; None when no --judge was given
    memo: dict[str, Any] = field(default_factory=dict)  # per-pair results a predicate computes once


Predicate = Callable[[Item, Context], Awaitable[Check]]
PREDICATES: dict[str, Predicate] = {}
ORDER = ("format", "label", "predictive", "leak", "length")  # the shipped ones, in report order


def predicate(name: str) -> Callable[[Predicate], Predicate]:
    def register(fn: Predicate) -> Predicate:
        PREDICATES[name] = fn
        return fn
    return register


def get(name: str) -> Predicate:
    if name not in PREDICATES and name in ORDER:
        importlib.import_module(f"rrbench_train.parrot.filters.{name}")
    return PREDICATES[name]


def known() -> tuple[str, ...]:
    return ORDER + tuple(n for n in PREDICATES if n not in ORDER)


def pair_items(item: Item, context: Context) -> tuple[Item, Item] | None:
    """Pointwise: (preferred item, rejected item) of this item's pair, or None when the partner has no answer."""
    ids = item.record["target"]["pair"]
    members = [context.items.get(i) for i in ids]
    if any(m is None for m in members):
        return None
    first, second = members
    assert first is not None and second is not None
    return (first, second) if first.record["target"]["preferred"] else (second, first)


def pointwise_mean(item: Item) -> float | None:
    """The pointwise critique's score as rrbench scores it (mean of the aspects, N/A dropped), or None."""
    judgement = critique.critique_judgement(item.answer, item.generation, pairwise=False)
    return None if not judgement.ok or not judgement.scores else judgement.scores[0]
