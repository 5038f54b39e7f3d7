"""Find run directories and keep the ones a leaderboard shows.

A leaderboard is built from run directories only: their ``run.json``, whose numbers are taken as written only
while its seal (``integrity``: the sha256 of the sample log and of the numbers) holds; a hand-edited or stale
``run.json`` is recomputed from ``samples.jsonl`` (and said on stderr). Only complete runs count. Runs are grouped
by what they measured, ``(task, task version, spec hash, protocol id)``; within a group the most recently updated
run wins. The protocol id is part of the key because ``rrbench rescore`` writes a new run with the same spec and
another protocol, and both are results in their own right.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench.types import UserError

RUN_JSON = "run.json"


@dataclass(frozen=True)
class RunEntry:
    """The parts of one run's record a leaderboard needs."""

    path: Path
    record: Mapping[str, Any]

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.record["spec"]

    @property
    def task(self) -> str:
        return str(self.spec["task"])

    @property
    def task_version(self) -> str:
        return str(self.record.get("task", {}).get("version", "?"))

    @property
    def model(self) -> str:
        return str(self.spec["model"])

    @property
    def protocol_id(self) -> str:
        return str(self.record.get("protocol", {}).get("id", "?"))

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.task, self.task_version, str(self.record.get("spec_hash", "")), self.protocol_id)

    @property
    def updated(self) -> str:
        return str(self.record.get("rescored_at") or self.record.get("updated_at") or "")


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run directories named directly or found below the given folders (a run directory is not searched)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"no such run directory or folder: {path}")
        found.extend(_walk(path))
    return sorted(set(found))


def _walk(folder: Path) -> Iterator[Path]:
    if (folder / RUN_JSON).is_file():
        yield folder
        return
    if not folder.is_dir():
        raise UserError(f"{folder} is neither a run directory (no {RUN_JSON}) nor a folder of runs")
    with os.scandir(folder) as entries:  # scandir: one syscall per entry, which matters over thousands of runs
        children = sorted(e.path for e in entries if e.is_dir() and not e.name.startswith("."))
    for child in children:
        yield from _walk(Path(child))


def read_entries(run_dirs: Iterable[Path]) -> tuple[list[RunEntry], list[str]]:
    """Complete runs, and one line per run left out (unreadable, or not complete) saying why."""
    entries, skipped = [], []
    for path in run_dirs:
        try:
            record = json.loads((path / RUN_JSON).read_bytes())
        except (OSError, ValueError) as exc:
            skipped.append(f"{path}: unreadable {RUN_JSON} ({exc.__class__.__name__})")
            continue
        if not isinstance(record, dict) or "spec" not in record:
            skipped.append(f"{path}: {RUN_JSON} is not an rrbench run record")
        elif not isinstance(record["spec"], dict) or not record["spec"].get("model"):
            skipped.append(f"{path}: a generation run (no judge); leaderboards rank judges")
        elif record["spec"].get("protocol") == "refine-critique":
            skipped.append(f"{path}: a critique stage of rrbench refine (its numbers are the refine's own)")
        elif record.get("status") != "complete":
            skipped.append(f"{path}: status {record.get('status')!r}, only complete runs count")
        else:
            checked, note = _checked(path, record)
            if note:
                print(f"note: {path}: {note}", file=sys.stderr)
            if checked.get("status") != "complete":
                skipped.append(f"{path}: status {checked.get('status')!r} by its sample log, only complete runs count")
            else:
                entries.append(RunEntry(path, checked))
    return entries, skipped


def _checked(path: Path, record: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """run.json's numbers, recomputed from the sample log where they do not match it (the log is the record)."""
    from rrbench.runner import checked_record  # the runner's import chain is not needed to list run directories

    return checked_record(path, record)


def latest(entries: Iterable[RunEntry]) -> list[RunEntry]:
    """One entry per (task, task version, spec, protocol): the latest; ties broken by path so order is stable."""
    best: dict[tuple[str, str, str, str], RunEntry] = {}
    for entry in entries:
        current = best.get(entry.key)
        if current is None or (entry.updated, str(entry.path)) > (current.updated, str(current.path)):
            best[entry.key] = entry
    return sorted(best.values(), key=lambda e: (e.task, e.task_version, e.model, str(e.path)))
