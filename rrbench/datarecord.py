"""The ``data`` record of run.json: how the samples a run judged compare with the registered benchmark.

A number measured on a local copy that is smaller than (or different from) the registered dataset, or on the first
``--limit`` samples, is not the benchmark's number. The runner writes::

    "data": {"registered_size": 1735, "size": 37, "expected": 37, "fingerprint": "sha256:...",
             "partial": true, "reasons": ["local copy smaller than the registered dataset"]}

and ``rrbench show``/``run``, the leaderboard and the report page say PARTIAL wherever the number is read.
The fingerprint hashes each sample's id and original label string in load order (never image bytes, so it costs
nothing next to judging), which tells two copies of one size apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rrbench.types import Sample

PREFIX = "sha256:"


class ContentFingerprint:
    """sha256 over the (sample id, original label string) sequence, fed as samples stream from the task."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def add(self, sample: Sample) -> None:
        line = json.dumps([sample.id, sample.label.original], ensure_ascii=False, separators=(",", ":"))
        self._hash.update(line.encode("utf-8") + b"\n")
        self.count += 1

    def hexdigest(self) -> str:
        return PREFIX + self._hash.hexdigest()


def data_record(
    *,
    registered_size: int | None,
    registered_fingerprint: str | None,
    size: int | None,
    limit: int | None,
    local_copy: bool,
    streamed: ContentFingerprint | None,
    previous: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The record for one session. ``streamed`` is the fingerprint of a load that ran to its end (None when the
    session stopped early or read nothing, e.g. a resume with every sample done: the last session's values stand).
    """
    previous = previous or {}
    fingerprint = streamed.hexdigest() if streamed is not None else previous.get("fingerprint")
    if size is None and streamed is not None and (limit is None or streamed.count < limit):
        size = streamed.count  # the load ended on its own: that is the data's size
    if size is None:
        size = previous.get("size")
    expected = limit if size is None else min(size, limit) if limit is not None else size
    reasons = _reasons(registered_size, size, limit, local_copy)
    if registered_fingerprint and fingerprint and limit is None and fingerprint != registered_fingerprint:
        reasons.append("content differs from the registered dataset")
    return {"registered_size": registered_size, "size": size, "expected": expected, "fingerprint": fingerprint,
            "partial": bool(reasons), "reasons": reasons}


def _reasons(registered: int | None, size: int | None, limit: int | None, local_copy: bool) -> list[str]:
    reasons = []
    if registered is not None and size is not None and size != registered:
        where = "local copy" if local_copy else "data read"
        reasons.append(f"{where} {'smaller' if size < registered else 'larger'} than the registered dataset")
    if limit is not None and size is None:
        reasons.append(f"--limit {limit}; the task's size is unknown")
    elif limit is not None and size is not None and limit < size:
        reasons.append(f"--limit {limit} below the task size")
    return reasons


@dataclass(frozen=True)
class DataStatus:
    """What a reader of a run needs to know about its data: partial or not, how many of how many, and why."""

    partial: bool
    n: int | None  # samples this run asked for
    of: int | None  # the registered benchmark's size (else the task's size for this data)
    reasons: tuple[str, ...]

    def count(self) -> str:
        """``37 of 1,735``: the samples asked for, of the registered benchmark's."""
        count = "?" if self.n is None else f"{self.n:,}"
        return count + (f" of {self.of:,}" if self.of is not None else "")

    def line(self) -> str:
        """``PARTIAL: 37 of 1,735 samples (local copy smaller than the registered dataset)``."""
        return f"PARTIAL: {self.count()} samples ({'; '.join(self.reasons)})"


def data_status(record: Mapping[str, Any]) -> DataStatus:
    """The run's data status; records written before the ``data`` record are judged by their limit and size."""
    data = record.get("data")
    if isinstance(data, Mapping):
        of = data.get("registered_size") if data.get("registered_size") is not None else data.get("size")
        return DataStatus(bool(data.get("partial")), data.get("expected"), of, tuple(data.get("reasons") or ()))
    return _legacy_status(record)


def _legacy_status(record: Mapping[str, Any]) -> DataStatus:
    task = record.get("task") or {}
    registered = (task.get("info") or {}).get("size")
    limit = (record.get("spec") or {}).get("limit")
    expected = (record.get("counts") or {}).get("expected")
    reasons = _reasons(registered, task.get("size"), limit, bool((record.get("spec") or {}).get("data")))
    if registered is not None and expected is not None and expected < registered and not reasons:
        reasons.append("fewer samples than the registered dataset")
    return DataStatus(bool(reasons), expected, registered if registered is not None else task.get("size"),
                      tuple(reasons))
