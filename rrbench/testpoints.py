"""Testpoints: the checkable statements a generation benchmark attaches to each prompt (UniGenBench++'s shape).

A task stores a prompt's testpoints in ``Sample.meta["testpoints"]`` as a JSON string (a list of ``{"dimension",
"check"}`` objects), so a judge receives them verbatim in ``Query.variables``. A judge answers each testpoint 0 or 1
in ``Judgement.aspects[0]`` under the key ``testpoint_key(j, dimension)``; the ``testpoint-accuracy`` metric pools
the answers per dimension. A JSON string rather than a list because judge variables are text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from rrbench.types import DataError


@dataclass(frozen=True)
class Testpoint:
    """One checkable statement about an image: ``dimension`` names what it tests (UniGenBench's primary
    dimension), ``check`` says what must hold, in words a VLM judge can read."""

    dimension: str
    check: str

    def to_json(self) -> dict[str, str]:
        return {"dimension": self.dimension, "check": self.check}


def testpoint_key(index: int, dimension: str) -> str:
    """The aspect key of the testpoint at ``index``: unique within the prompt, readable in the sample log."""
    return f"{index}:{dimension}"


def dump_testpoints(testpoints: Sequence[Testpoint]) -> str:
    return json.dumps([t.to_json() for t in testpoints], ensure_ascii=False)


def load_testpoints(text: object) -> tuple[Testpoint, ...]:
    """The testpoints of a JSON string; DataError saying what is wrong with it otherwise."""
    if not isinstance(text, str):
        raise DataError(f"testpoints must be a JSON string, got {type(text).__name__}")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"testpoints are not valid JSON: {exc}") from None
    if not isinstance(items, list) or not items:
        raise DataError("testpoints must be a non-empty JSON list")
    out = []
    for item in items:
        if not (isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("dimension", "check"))):
            raise DataError(f"testpoint {item!r} is not an object with string 'dimension' and 'check'")
        out.append(Testpoint(item["dimension"], item["check"]))
    return tuple(out)
