"""Recompute a run's metrics under another tie or failure policy from its stored judgements: no model calls.

The result is a new run directory beside the source (or under --output) whose run.json names its source, so the
original run is never modified and both numbers stay available with their protocol ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from rrbench import metrics
from rrbench.runner import now_iso, summarize, trial_credit
from rrbench.spec import RunSpec
from rrbench.store import SAMPLES, load_results, read_json, write_json_atomic
from rrbench.types import Protocol, SampleResult, TaskKind, UserError


def rescore(
    src: Path,
    *,
    tie_policy: str | None = None,
    failure_policy: str | None = None,
    seed: int | None = None,
    output: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    record = read_json(src / "run.json")
    protocol = _override(Protocol.from_json(record["protocol"]), tie_policy, failure_policy)
    spec = RunSpec.from_json(record["spec"])
    spec = dataclasses.replace(
        spec,
        tie_policy=tie_policy or spec.tie_policy,
        failure_policy=failure_policy or spec.failure_policy,
    )
    seed = spec.seed if seed is None else seed
    kind = TaskKind(record["task"]["kind"])
    results = [_recredit(r, kind, protocol.tie_policy) for r in load_results(src)]
    out = _destination(src, output, protocol, seed)
    new_record = {
        **record,
        "spec": spec.to_json(),
        "spec_hash": spec.hash(),
        "protocol": protocol.to_json(),
        "source_run": str(src.resolve()),
        "rescored_at": now_iso(),
        "stats": {"new_samples": 0, "model_calls": 0, "cache_hits": 0, "wall_s": 0.0, "samples_per_s": None},
        **summarize(results, protocol, seed, record.get("counts", {}).get("expected")),
    }
    out.mkdir(parents=True, exist_ok=True)
    with (out / SAMPLES).open("w") as fh:
        for result in results:
            fh.write(json.dumps(result.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n")
    write_json_atomic(out / "run.json", new_record)
    return out, new_record


def _override(protocol: Protocol, tie_policy: str | None, failure_policy: str | None) -> Protocol:
    if tie_policy is None and failure_policy is None:
        raise UserError("rescore needs --tie-policy and/or --failure-policy")
    if tie_policy is not None and tie_policy not in metrics.TIE_POLICIES:
        raise UserError(f"unknown tie policy {tie_policy!r} (known: {', '.join(metrics.TIE_POLICIES)})")
    changes: dict[str, Any] = {}
    if tie_policy is not None:
        changes["tie_policy"] = tie_policy
    if failure_policy is not None:
        changes["failure_policy"] = failure_policy
    suffix = "+".join(f"{k.replace('_policy', '')}={v}" for k, v in changes.items())
    return dataclasses.replace(protocol, id=f"{protocol.id.split('+')[0]}+{suffix}", **changes)


def _recredit(result: SampleResult, kind: TaskKind, tie_policy: str) -> SampleResult:
    correct = tuple(trial_credit(result.label, t, kind, tie_policy) for t in result.trials)
    return dataclasses.replace(result, correct=correct)


def _destination(src: Path, output: Path | None, protocol: Protocol, seed: int) -> Path:
    tag = hashlib.sha256(json.dumps([protocol.to_json(), seed], sort_keys=True).encode()).hexdigest()[:8]
    return (output or src.parent) / f"{src.name}.rescore-{tag}"
