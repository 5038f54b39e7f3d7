"""`rrbench export`: a generation run's images, named as a benchmark's own evaluator reads them.

The official layouts are the tasks' own (``Task.layout``: UniGenBench's ``{index}_{j}.png``, GEdit's nested
folders, ...); rrbench's is ``<sample id>_<j>.png``. Reading such a folder back with ``rrbench run --images DIR``
gives the same images, so the two round-trip. Nothing existing is overwritten: a file already there with other
bytes stops the export with one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rrbench import registry
from rrbench.protocols import official
from rrbench.protocols.judge_images import own_layout
from rrbench.record import read_run
from rrbench.store import load_results, write_error
from rrbench.types import Sample, Task, UserError


def export(run_dir: Path, out: Path, layout: str) -> int:
    """Copy every image a generation run made into ``out`` (or write a judge run's answers in its benchmark's
    official scorer's files); returns how many files were written (or found already there)."""
    record = read_run(run_dir)
    spec = record.get("spec")
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise UserError(f"export to {out} would write inside the run directory {run_dir}; choose another folder")
    if isinstance(spec, dict) and _official_judge_run(record):
        return _export_answers(run_dir, out, spec)
    if not isinstance(spec, dict) or not isinstance(record.get("generator"), dict):
        raise UserError(f"{run_dir} is neither a generation run (its run.json names no generator) nor a run of a "
                        "benchmark's own judge")
    task = _task(spec)
    name_of = task.layout if layout == "official" and task.layout is not None else own_layout
    made = {r.sample_id: r for r in load_results(run_dir)}
    written = 0
    exported: list[Sample] = []
    for sample in task.load(_data(spec)):
        result = made.get(str(sample.id))
        if result is None:
            continue
        copied = 0
        for entry in result.candidates:
            if "path" not in entry or "failure" in entry:
                continue
            _copy(run_dir / str(entry["path"]), out / name_of(sample, int(entry["index"])))
            copied += 1
        if copied:  # a layout's own files list what is there (PICA's meta_info.json leaves out cases with none)
            exported.append(sample)
        written += copied
    if layout == "official" and task.layout_files is not None:
        for name, content in task.layout_files(exported).items():
            _write(out / name, content)
            written += 1
    return written


def _task(spec: dict[str, Any]) -> Task:
    return registry.get("task", spec["task"]).build(**spec.get("task_args", {}))


def _data(spec: dict[str, Any]) -> Path | None:
    return Path(spec["data"]) if spec.get("data") else None


def _official_judge_run(record: Mapping[str, Any]) -> bool:
    protocol = record.get("protocol")
    return isinstance(protocol, dict) and protocol.get("mode") == official.MODE and "generator" not in record


def _export_answers(run_dir: Path, out: Path, spec: dict[str, Any]) -> int:
    """A judge run's raw answers, in the files its benchmark's official scorer reads."""
    task = _task(spec)
    if not isinstance(task.judge, official.BenchmarkJudge):
        raise UserError(f"task '{task.name}' has no judge protocol of its own")
    results = load_results(run_dir)
    wanted = {r.sample_id for r in results}
    samples = {s.id: s for s in task.load(_data(spec)) if s.id in wanted}
    files = task.judge.answers(results, samples)
    for name, content in files.items():
        _write(out / name, content)
    return len(files)


def _copy(src: Path, dest: Path) -> None:
    try:
        _write(dest, src.read_bytes())
    except OSError as exc:  # the run's own image unreadable: one line, exit 2
        raise write_error(src, exc) from None


def _write(dest: Path, content: bytes) -> None:
    try:
        if dest.exists():
            if dest.read_bytes() != content:
                raise UserError(f"{dest} exists with other content; export into an empty folder")
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        tmp.write_bytes(content)
        os.replace(tmp, dest)
    except OSError as exc:  # a folder that is a file, no permission, a full disk: one line, exit 2
        raise write_error(dest, exc) from None
