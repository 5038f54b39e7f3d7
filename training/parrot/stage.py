"""A stage directory: what one PARROT stage was asked, what it read, what it made, resumable.

``OUT/<stage>__<name>__<hash>/`` holds ``stage.json`` (the stage, its config, its inputs (stage directories or
rrbench tasks with their data revisions), rrbench's version and git commit, counts, status, timestamps) and
``records.jsonl`` (one JSON object per item, appended and flushed as each finishes; the latest line of an id wins).
The hash is of the config and the inputs, so the same stage asked again is the same directory and resumes: items
whose latest record is finished are kept, the others are done again, and nothing finished is done twice. A torn
last line (a kill mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import rrbench

STAGE_JSON, RECORDS = "stage.json", "records.jsonl"


def stage_hash(stage: str, config: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    blob = json.dumps({"stage": stage, "config": config, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


class StageDir:
    """One stage's directory: open (or resume) it, append records, finish it with counts."""

    def __init__(self, out: Path, stage: str, name: str, config: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
        self.stage, self.config, self.inputs = stage, dict(config), dict(inputs)
        self.path = out / f"{stage}__{_slug(name)}__{stage_hash(stage, self.config, self.inputs)}"
        self._log: IO[bytes] | None = None

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    def open(self) -> dict[str, dict[str, Any]]:
        """Create or resume: the latest record of each id so far (the caller skips the finished ones)."""
        self.path.mkdir(parents=True, exist_ok=True)
        previous = read_json(self.path / STAGE_JSON) or {}
        self._write_stage({**previous, "status": "running", "started_at": previous.get("started_at", _now()),
                           "sessions": int(previous.get("sessions", 0)) + 1})
        latest = {r["id"]: r for r in read_records(self.path)}
        self._log = self.records_path.open("ab", buffering=0)
        return latest

    def append(self, record: Mapping[str, Any]) -> None:
        assert self._log is not None, "open the stage first"
        self._log.write(json.dumps(record, ensure_ascii=False, default=str).encode() + b"\n")

    def finish(self, status: str, counts: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        if self._log is not None:
            self._log.close()
            self._log = None
        record = {**(read_json(self.path / STAGE_JSON) or {}), "status": status, "counts": dict(counts),
                  "updated_at": _now(), **extra}
        self._write_stage(record)
        return record

    def _write_stage(self, extra: Mapping[str, Any]) -> None:
        record = {"stage": self.stage, "config": self.config, "inputs": self.inputs,
                  "code": {"rrbench": rrbench.__version__, "git": _git_commit()}, **dict(extra)}
        tmp = self.path / f".{STAGE_JSON}.tmp"
        tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str))
        os.replace(tmp, self.path / STAGE_JSON)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a stage directory in order; a line that is not a whole JSON object (a torn write) is skipped."""
    file = path / RECORDS
    if not file.is_file():
        return
    with file.open("rb") as fh:
        for raw in fh:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                yield obj


def latest_records(path: Path) -> list[dict[str, Any]]:
    """One record per id, the latest, in first-seen order."""
    latest: dict[str, dict[str, Any]] = {}
    for record in read_records(path):
        latest[record["id"]] = record
    return list(latest.values())


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _git_commit() -> str | None:
    try:
        root = Path(rrbench.__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-") or "x"
