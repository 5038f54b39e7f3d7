"""Published numbers (``reported.json`` beside this module, package data): one entry per number, with its source
and protocol.

The file is written by hand from the papers and official leaderboards (see ``../shared/REPORTED.md``) and ships
inside the package, so ``rrbench leaderboard`` shows it from any folder. Each entry places its number in a benchmark
setting (task, task version, task arguments) and a metric, and names the protocol the source used: an rrbench
protocol id where it is the same procedure, otherwise a description that matches no measured protocol, so the two
are never merged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrbench.types import UserError

REQUIRED = ("judge", "task", "task_version", "metric", "value", "protocol", "source")
# percent: an accuracy as published; score: on the benchmark's own scale (ImgEdit 1-5, GEdit 0-10)
UNITS = ("percent", "score")


@dataclass(frozen=True)
class Reported:
    judge: str  # as the source names it
    task: str
    task_version: str
    metric: str
    value: float  # as published: percent, or the benchmark's own score scale (unit)
    protocol: str
    source: str
    model: str | None = None  # the rrbench model name of the same judge, when there is one (used for row order)
    task_args: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    # A generation benchmark's number: the generator it is of and its setting ("base", "+RL RationalRewards",
    # "+test-time refine"); ``judge`` is then the benchmark judge the source used.
    generator: str | None = None
    setting: str | None = None


def load_reported(path: Path) -> list[Reported]:
    """Entries of a reported-numbers file; a malformed entry is a one-line error naming its index and field."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read reported numbers {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"{path}: expected an object with an 'entries' list")
    return [_entry(path, i, e) for i, e in enumerate(entries)]


def _entry(path: Path, index: int, obj: Any) -> Reported:
    where = f"{path} entry {index}"
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected an object")
    missing = [k for k in REQUIRED if obj.get(k) in (None, "")]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    value, unit = obj["value"], obj.get("unit", "percent")
    if unit not in UNITS:
        raise UserError(f"{where}: unit must be one of {', '.join(UNITS)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise UserError(f"{where}: value must be a number, got {value!r}")
    if unit == "percent" and not 0 <= value <= 100:
        raise UserError(f"{where}: value must be a percentage in [0, 100], got {value!r}")
    args = obj.get("task_args") or {}
    if not isinstance(args, dict):
        raise UserError(f"{where}: task_args must be an object")
    return Reported(judge=str(obj["judge"]), task=str(obj["task"]), task_version=str(obj["task_version"]),
                    metric=str(obj["metric"]), value=float(value), protocol=str(obj["protocol"]),
                    source=str(obj["source"]), model=obj.get("model"), task_args=args, note=obj.get("note"),
                    generator=obj.get("generator"), setting=obj.get("setting"))
