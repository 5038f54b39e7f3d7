"""`rrbench export`: a generation run's images, named as a benchmark's own evaluator reads them.

The official layouts are the tasks' own (``Task.layout``: UniGenBench's ``{index}_{j}.png``, GEdit's nested
folders, ...); rrbench's is ``<sample id>_<j>.png``. Reading such a folder back with ``rrbench run --images DIR``
gives the same images, so the two round-trip. Nothing existing is overwritten: a file already there with other
bytes stops the export with one line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rrbench import registry
from rrbench.protocols.judge_images import own_layout
from rrbench.record import read_run
from rrbench.store import load_results, write_error
from rrbench.types import UserError


def export(run_dir: Path, out: Path, layout: str) -> int:
    """Copy every image the run made into ``out``; returns how many were written (or found already there)."""
    record = read_run(run_dir)
    spec = record.get("spec")
    if not isinstance(spec, dict) or not isinstance(record.get("generator"), dict):
        raise UserError(f"{run_dir} is not a generation run (its run.json names no generator)")
    task = registry.get("task", spec["task"]).build(**spec.get("task_args", {}))
    name_of = task.layout if layout == "official" and task.layout is not None else own_layout
    made = {r.sample_id: r for r in load_results(run_dir)}
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise UserError(f"export to {out} would write inside the run directory {run_dir}; choose another folder")
    written = 0
    data = Path(spec["data"]) if spec.get("data") else None
    for sample in task.load(data):
        result = made.get(str(sample.id))
        if result is None:
            continue
        for entry in result.candidates:
            if "path" not in entry or "failure" in entry:
                continue
            _copy(run_dir / str(entry["path"]), out / name_of(sample, int(entry["index"])))
            written += 1
    return written


def _copy(src: Path, dest: Path) -> None:
    try:
        if dest.exists():
            if dest.read_bytes() != src.read_bytes():
                raise UserError(f"{dest} exists with other content; export into an empty folder")
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except OSError as exc:  # a folder that is a file, no permission, a full disk: one line, exit 2
        raise write_error(dest, exc) from None
