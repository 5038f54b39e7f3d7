"""`rrbench import lm-eval SAMPLES.jsonl --task T`: lm-eval's ``--log_samples`` output as an rrbench run directory.

Each line of the samples file is one document of an exported pack (``doc``: task, sample id, trial, order) with the
model's answer (``filtered_resps``). The answers are read and scored by ``core.results_of`` against the task's own
data, loaded the way ``rrbench run`` loads it (``--data``, else the hub snapshot), and written as a normal run
(run.json with counts, metrics, CIs and the seal; samples.jsonl). Nothing named in the samples file is opened: its
data path is compared, never read, and its sample ids are only looked up among the task's own samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rrbench import provenance
from rrbench.datarecord import ContentFingerprint, data_record
from rrbench.lmeval import core
from rrbench.rescore import write_published
from rrbench.runner import now_iso, task_record
from rrbench.spec import SCHEMA_VERSION, RunSpec
from rrbench.types import DataError, Task, UserError


def import_samples(samples: Path, task_name: str, data: Path | None, output: Path, model: str = core.MODEL
                   ) -> tuple[Path, dict[str, Any]]:
    """Write the run directory for one task's lm-eval samples file; returns its path and run record."""
    task = core.checked_task(task_name)
    raw = _read_bytes(samples)
    answers, recorded_data = _answers(raw, samples, task)
    if recorded_data and data is None:
        raise UserError(f"{samples} was made from the local copy {recorded_data}; give it (or its copy) with --data")
    local = str(data.resolve()) if data is not None else ""
    try:
        scored = core.results_of(task, local, answers)
    except DataError as exc:
        raise UserError(f"{task.name}: {exc}") from None
    _check_ids(task, local, answers, samples)
    digest = hashlib.sha256(raw).hexdigest()
    spec = RunSpec(task=task.name, model=model, model_args={"lm_eval_samples_sha256": digest},
                   data=local or None, seed=core.SEED)
    out = output / f"{task.name}__{model}__{spec.hash()[:10]}"
    record = _record(task, spec, scored, samples, digest, local)
    write_published(out, sorted(scored.results, key=lambda r: r.sample_id), record)
    return out, record


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _lines(raw: bytes, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{path}: line {n} is not JSON; expected lm-eval's --log_samples output") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("doc"), dict) or "filtered_resps" not in obj:
            raise UserError(f"{path}: line {n} is not an lm-eval sample record (no doc / filtered_resps)")
        yield n, obj


def _answers(raw: bytes, path: Path, task: Task) -> tuple[dict[tuple[str, int], str | None], str]:
    """(sample id, trial) -> answer, and the data path the pack recorded ("" for the hub)."""
    answers: dict[tuple[str, int], str | None] = {}
    datas: set[str] = set()
    for n, obj in _lines(raw, path):
        doc = obj["doc"]
        name = doc.get("rrbench_task")
        if not isinstance(name, str):
            raise UserError(f"{path}: line {n} is not from an rrbench task pack (its doc has no rrbench_task)")
        if name != task.name:
            raise UserError(f"{path}: line {n} is task {name!r}, not {task.name!r}")
        key = (str(doc.get("id")), _trial(doc.get("trial"), path, n))
        answer = _answer(obj["filtered_resps"], path, n)
        if key in answers and answers[key] != answer:
            raise UserError(f"{path}: sample {key[0]} trial {key[1]} has two different answers (lines up to {n})")
        answers[key] = answer
        datas.add(str(doc.get("rrbench_data") or ""))
    if not answers:
        raise UserError(f"{path}: no samples (expected lm-eval's --log_samples output of {core.lm_name(task.name)})")
    if len(datas) > 1:
        raise UserError(f"{path}: documents from {len(datas)} different data copies")
    return answers, datas.pop()


def _trial(value: Any, path: Path, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{path}: line {n} has no valid trial number")
    return value


def _answer(value: Any, path: Path, n: int) -> str | None:
    first = value[0] if isinstance(value, list) and value else value
    if first is None or isinstance(first, str):
        return first
    raise UserError(f"{path}: line {n}: filtered_resps is not a generated text")


def _check_ids(task: Task, data: str, answers: core.Answers, path: Path) -> None:
    """Every answered document is one of the task's samples and one of its presentation orders."""
    samples = core.samples_of(task.name, data)
    for sample_id, trial in answers:
        sample = samples.get(sample_id)
        if sample is None:
            raise UserError(f"{path}: sample {sample_id!r} is not in {task.name}'s data; was the pack made from "
                            "other data? (--data)")
        if trial >= len(core.orders(task, sample)):
            raise UserError(f"{path}: sample {sample_id!r} has no trial {trial} under {task.name}'s protocol")


def _record(task: Task, spec: RunSpec, scored: core.Scored, samples: Path, digest: str, data: str
            ) -> dict[str, Any]:
    summary = core.summary(task, scored)
    fingerprint = ContentFingerprint()
    for sample in core.samples_of(task.name, data).values():
        fingerprint.add(sample)
    now = now_iso()
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "complete" if summary["counts"]["missing"] == 0 else "incomplete",
        "spec": spec.to_json(), "spec_hash": spec.hash(), "created_at": now, "updated_at": now,
        "task": task_record(task, {}),
        "model": {"name": spec.model, "source": "lm-eval --log_samples", "samples_file": samples.name,
                  "samples_sha256": digest, "prompt": "official", "prompts": {core.prompt_of(task).key: dict(
                      core.prompt_of(task).describe())}},
        "protocol": core.protocol_of(task).to_json(),
        "provenance": provenance.collect(),
        "sessions": 1,
        **summary,
        "data": data_record(registered_size=task.info.size, registered_fingerprint=task.info.fingerprint,
                            size=scored.expected, limit=None, local_copy=bool(data), streamed=fingerprint,
                            previous=None),
        "stats": {"new_samples": len(scored.results), "model_calls": 0, "cache_hits": 0, "wall_s": 0.0,
                  "samples_per_s": None},
        **({"finished_at": now} if summary["counts"]["missing"] == 0 else {}),
    }


