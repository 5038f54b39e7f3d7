"""The run record, ``run.json``: its fields, written and read in one place (docs/run-format.md explains each).

Every reader and writer of a run directory's ``run.json`` goes through ``read_run`` and ``write_run``: the file is
rewritten atomically (a reader sees the previous version or the new one, never a torn one), and a file that is not
a run record is one line naming it. ``RunRecord`` types the fields (all optional: records written by older versions
lack the newer ones); ``runner.checked_record`` is how a reader gets numbers it can trust (the seal).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from rrbench.store import RUN_JSON, read_json, write_json_atomic
from rrbench.types import UserError


class RunRecord(TypedDict, total=False):
    schema_version: int  # 1
    status: str  # running | complete | incomplete | interrupted | failed
    spec: dict[str, Any]  # RunSpec.to_json(): what was asked
    spec_hash: str  # sha256 of the canonical spec; its prefix names the directory
    created_at: str
    updated_at: str
    finished_at: str
    task: dict[str, Any]  # name, version, kind, generation kind, size, args (defaults filled in), info
    model: dict[str, Any]  # the judge: name, config, fingerprint, engine details (never a key)
    generator: dict[str, Any]  # a generation run's generator: name, kinds, config, settings, fingerprint
    source: dict[str, Any]  # a judge run of images: where they came from (generation run or folder)
    protocol: dict[str, Any]  # the scoring protocol: id, mode, order, tie and failure policies, metrics, options
    provenance: dict[str, Any]  # rrbench version, git commit, packages, hardware
    sessions: int
    counts: dict[str, Any]  # expected, recorded, failed (by kind), label_skipped, missing
    metrics: dict[str, Any]  # overall and by_category metric records
    integrity: dict[str, Any]  # the seal: samples_sha256, summary_sha256
    data: dict[str, Any]  # which samples the run covered against the registered benchmark
    data_snapshots: dict[str, Any]  # hub commits read
    stats: dict[str, Any]  # this session's new samples, calls, cache hits, wall time
    error: str  # why a failed run failed
    source_run: str  # rescore output: the run it was recomputed from
    rescored_at: str
    aggregation: dict[str, Any]  # rescore output: the aggregation and N/A policy used


def run_json(run_dir: Path) -> Path:
    return run_dir / RUN_JSON


def read_run(run_dir: Path) -> RunRecord:
    """The run record of ``run_dir``: one line (UserError) when it is missing, unreadable or not a run record."""
    record = read_json(run_json(run_dir))
    if not isinstance(record.get("spec"), dict):
        raise UserError(f"not a run directory ({RUN_JSON} has no spec): {run_dir}")
    return record  # type: ignore[return-value]


def write_run(run_dir: Path, record: Mapping[str, Any]) -> None:
    """Replace ``run.json`` atomically (temporary file, fsync, rename)."""
    write_json_atomic(run_json(run_dir), dict(record))


def read_run_dict(run_dir: Path) -> dict[str, Any]:
    """``read_run`` as a plain dict, for code that adds fields of its own (rescore, the report page)."""
    return dict(read_run(run_dir))
