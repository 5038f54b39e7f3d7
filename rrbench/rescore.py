"""Recompute a run's metrics from its stored judgements under another policy: no model calls.

What can change: the tie policy, the failure policy, and for critique judges the aggregation of the recorded
per-aspect scores and its N/A policy (the scores and predictions are recomputed from the aspects).

The result is a new run directory beside the source (or under --output) whose run.json names its source, so the
original run is never modified and both numbers stay available with their protocol ids. It is built in a hidden
folder beside its place and put there in one step (store.publish_dir): a kill at any moment leaves the previous
output or the new one, never a mix; an output inside the source run is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from rrbench import metrics
from rrbench.models import _rationalrewards_format as rr
from rrbench.protocols import pairwise
from rrbench.protocols.pairwise import trial_credit
from rrbench.record import read_run_dict, write_run
from rrbench.runner import expected_of, integrity, now_iso, summarize
from rrbench.spec import RunSpec
from rrbench.store import (
    SAMPLES,
    dumps_record,
    load_results,
    publish_dir,
    staging_dir,
    write_error,
)
from rrbench.types import Judgement, Protocol, SampleResult, TaskKind, Trial, UserError


def rescore(
    src: Path,
    *,
    tie_policy: str | None = None,
    failure_policy: str | None = None,
    seed: int | None = None,
    output: Path | None = None,
    aggregation: str | None = None,
    na: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    src = src.resolve()  # `rescore .` names the run by its own name, and its output goes beside it, not inside
    record = read_run_dict(src)
    if not isinstance(record.get("protocol"), dict) or not isinstance(record.get("spec"), dict):
        raise UserError(f"{src} has no protocol to rescore (the run stopped before judging anything)")
    protocol = _override(Protocol.from_json(record["protocol"]), tie_policy, failure_policy, aggregation, na)
    spec = RunSpec.from_json(record["spec"])
    spec = dataclasses.replace(
        spec,
        tie_policy=tie_policy or spec.tie_policy,
        failure_policy=failure_policy or spec.failure_policy,
    )
    seed = spec.seed if seed is None else seed
    kind = TaskKind(record["task"]["kind"])
    results = load_results(src)
    if aggregation is not None or na is not None:
        _check_critic(src, record, results, "--na" if na is not None else "--aggregation")
        # Without --na the run's own N/A rule stands: the protocol's (e.g. the paper's 2.5), else "drop"
        na = na or str(protocol.options.get("na") or "drop")
        results = [_reaggregate(r, protocol.mode, aggregation, na) for r in results]
        record = {**record, "aggregation": {"name": aggregation, "na": na}}
    results = [_recredit(r, kind, protocol.tie_policy) for r in results]
    out = _destination(src, output, protocol, seed)
    new_record = {
        **record,
        "spec": spec.to_json(),
        "spec_hash": spec.hash(),
        "protocol": protocol.to_json(),
        "source_run": str(src.resolve()),
        "rescored_at": now_iso(),
        "stats": {"new_samples": 0, "model_calls": 0, "cache_hits": 0, "wall_s": 0.0, "samples_per_s": None},
        **summarize(results, protocol, seed, expected_of(record)),
    }
    write_published(out, results, new_record)
    return out, new_record


def write_published(out: Path, results: list[SampleResult], record: dict[str, Any]) -> None:
    """A whole run directory (sample log, then run.json with the log's integrity), built in a hidden folder beside
    ``out`` and then put in its place in one step: `rescore` and `import lm-eval` write theirs so."""
    try:
        staged = staging_dir(out)
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        log = staged / SAMPLES
        with log.open("wb") as fh:
            fh.writelines(dumps_record(result.to_json()) for result in results)
            fh.flush()
            os.fsync(fh.fileno())
        record["integrity"] = integrity(record, log)
        write_run(staged, record)
        publish_dir(staged, out)
    except OSError as exc:
        raise write_error(out, exc) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # gone already when published


def _override(
    protocol: Protocol, tie_policy: str | None, failure_policy: str | None, aggregation: str | None, na: str | None
) -> Protocol:
    if tie_policy is None and failure_policy is None and aggregation is None and na is None:
        raise UserError("rescore needs at least one of --tie-policy, --failure-policy, --aggregation, --na")
    if tie_policy is not None and tie_policy not in metrics.TIE_POLICIES:
        raise UserError(f"unknown tie policy {tie_policy!r} (known: {', '.join(metrics.TIE_POLICIES)})")
    if aggregation is not None and aggregation not in rr.AGGREGATIONS:
        raise UserError(f"unknown aggregation {aggregation!r} (known: {', '.join(rr.AGGREGATIONS)})")
    if na is not None and na not in rr.NA_POLICIES:
        raise UserError(f"unknown N/A policy {na!r} (known: {', '.join(rr.NA_POLICIES)})")
    changes: dict[str, Any] = {}
    if tie_policy is not None:
        changes["tie_policy"] = tie_policy
    if failure_policy is not None:
        changes["failure_policy"] = failure_policy
    if na is not None:
        changes["options"] = {**protocol.options, "na": na}  # the protocol's N/A rule is now this one
    labels = {**changes, "aggregation": aggregation, "na": na}
    suffix = "+".join(f"{k.replace('_policy', '')}={v}" for k, v in labels.items() if v is not None)
    return dataclasses.replace(protocol, id=f"{protocol.id.split('+')[0]}+{suffix}", **changes)


def _reaggregate(result: SampleResult, mode: str, aggregation: str | None, na: str) -> SampleResult:
    """Scores and predictions recomputed from each judgement's recorded aspects; other judgements untouched."""
    trials = tuple(
        pairwise.assemble(t.order, mode, [rr.reaggregate(j, aggregation, na) for j in _answers(t)])
        for t in result.trials
    )
    return dataclasses.replace(result, trials=trials)


def _check_critic(src: Path, record: dict[str, Any], results: list[SampleResult], flag: str) -> None:
    """``--na``/``--aggregation`` re-aggregate a critic's recorded aspect scores; a run without any (a scalar or a
    verdict judge) has nothing to re-aggregate, and a silently identical number would look like an answer."""
    if any(rr.is_critique(j) for r in results for t in r.trials for j in t.judgements):
        return
    model = (record.get("model") or {}).get("name") or record.get("spec", {}).get("model", "?")
    raise UserError(f"{flag} re-aggregates a critic's aspect scores, but {src} (model {model}) recorded none; "
                    "use --tie-policy or --failure-policy to rescore it")


def _answers(trial: Trial) -> list[Judgement]:
    # assemble() appends a synthetic judgement when the answers carried nothing usable; it is rebuilt, not kept
    synthetic = "judgement carries neither scores nor a verdict"
    return [j for j in trial.judgements if not (j.failure_detail == synthetic and j.raw is None and not j.aspects)]


def _recredit(result: SampleResult, kind: TaskKind, tie_policy: str) -> SampleResult:
    correct = tuple(trial_credit(result.label, t, kind, tie_policy, result.meta) for t in result.trials)
    return dataclasses.replace(result, correct=correct)


def _destination(src: Path, output: Path | None, protocol: Protocol, seed: int) -> Path:
    tag = hashlib.sha256(json.dumps([protocol.to_json(), seed], sort_keys=True).encode()).hexdigest()[:8]
    out = (output.resolve() if output is not None else src.parent) / f"{src.name}.rescore-{tag}"
    if out == src or src in out.parents:
        raise UserError(f"--output {output} is inside the run being rescored ({src}): its output would become part "
                        "of its source; give a folder outside it")
    return out
