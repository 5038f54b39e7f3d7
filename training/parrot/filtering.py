"""PARROT 2, ``rrbench-train filter``: keep the anchored critiques that earn their label.

Reads an anchor stage directory, runs every chosen predicate (``rrbench_train.parrot.filters``: format, label,
predictive, leak, length) on every answered item, and writes a filter stage directory whose records are the anchor
records plus ``checks`` (each predicate's verdict and reason) and ``kept`` (every applied predicate passed).
``stage.json`` counts each predicate's rejections and rate on its own, the kept fraction, and a per-task table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rrbench
from rrbench import UserError
from rrbench_train.parrot import filters
from rrbench_train.parrot.anchor import assignments, load_prompt
from rrbench_train.parrot.filters.predictive import PROMPTS
from rrbench_train.parrot.stage import STAGE_JSON, StageDir, latest_records, read_json


def anchor_stage(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The anchor stage's stage.json and its latest records; a one-line UserError when it is not one."""
    info = read_json(path / STAGE_JSON)
    if info is None or info.get("stage") != "anchor":
        raise UserError(f"--anchor {path} is not an anchor stage directory (no stage.json of stage 'anchor')")
    return info, latest_records(path)


def choose(names: str) -> list[str]:
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in filters.known()]
    if unknown or not chosen:
        raise UserError(f"unknown predicate {unknown[0] if unknown else names!r}; known: {', '.join(filters.known())}")
    return chosen


def build_judge(args: argparse.Namespace) -> Any:
    if not args.judge:
        return None
    runtime = {k: v for k, v in (("base_urls", args.judge_base_urls), ("api_key_env", args.judge_api_key_env)) if v}
    judge = rrbench.build_model(args.judge, **assignments(args.judge_args, "-M"), **runtime)
    if not judge.can_chat:
        raise UserError(f"judge '{args.judge}' answers no free chat requests; use a generic VLM judge")
    return judge


async def judge_items(items: Sequence[filters.Item], chosen: Sequence[str], context: filters.Context,
                      concurrency: int, stage: StageDir, anchor: Path) -> None:
    gate = asyncio.Semaphore(concurrency)
    # The images stay in the anchor stage: a filter record says where, relative to its own stage directory, so
    # build-sft finds them (and the two directories can move together).
    images_root = os.path.relpath(anchor.resolve(), stage.path.resolve())

    async def one(item: filters.Item) -> None:
        async with gate:
            checks = {name: await filters.get(name)(item, context) for name in chosen}
        kept = all(c.passed for c in checks.values() if c.applied)
        stage.append({**item.record, "images_root": images_root, "checks": {n: c.to_json() for n, c in checks.items()},
                      "kept": kept})

    await asyncio.gather(*(one(i) for i in items))


def summarize(records: Sequence[Mapping[str, Any]], chosen: Sequence[str], anchor_counts: Mapping[str, Any]
              ) -> dict[str, Any]:
    """Per predicate: items it judged, rejections and the rate; the kept fraction; the same per task."""
    n = len(records)
    per: dict[str, Any] = {}
    for name in chosen:
        checks = [r["checks"][name] for r in records]
        applied = [c for c in checks if c["applied"] and not c.get("error")]
        rejected = sum(1 for c in checks if _rejected(c))
        per[name] = {"applied": len(applied), "not_applied": sum(1 for c in checks if not c["applied"]),
                     "errors": sum(1 for c in checks if c.get("error")), "rejected": rejected,
                     "rate": round(rejected / len(applied), 4) if applied else None}
    kept = sum(1 for r in records if r["kept"])
    tasks: dict[str, Any] = {}
    for task in sorted({str(r["task"]) for r in records}):
        rows = [r for r in records if r["task"] == task]
        task_kept = sum(1 for r in rows if r["kept"])
        by_predicate = Counter(name for r in rows for name in chosen if _rejected(r["checks"][name]))
        tasks[task] = {"items": len(rows), "kept": task_kept, "kept_fraction": round(task_kept / len(rows), 4),
                       "rejected": {name: by_predicate.get(name, 0) for name in chosen}}
    return {"items": n, "anchor_failed": int(sum(dict(anchor_counts.get("failed") or {}).values())),
            "predicates": per, "kept": kept, "kept_fraction": round(kept / n, 4) if n else None, "per_task": tasks}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    anchor = Path(args.anchor)
    info, anchored = anchor_stage(anchor)
    chosen = choose(args.predicates)
    if args.min_chars < 0 or args.max_chars < args.min_chars:
        raise UserError("--min-chars must be at least 0 and --max-chars at least --min-chars")
    answered = [r for r in anchored if "answer" in r]
    if not answered:
        raise UserError(f"--anchor {anchor} has no answered item to filter")
    judge = build_judge(args) if "predictive" in chosen else None
    records_sha = hashlib.sha256((anchor / "records.jsonl").read_bytes()).hexdigest()
    config = {"predicates": chosen, "min_chars": args.min_chars, "max_chars": args.max_chars,
              "judge": args.judge if judge else None, "judge_args": assignments(args.judge_args, "-M"),
              "judge_fingerprint": judge.fingerprint() if judge else None,
              "judge_prompts": {k: load_prompt(v).key for k, v in PROMPTS.items()} if judge else None,
              "judge_max_tokens": args.judge_max_tokens}
    inputs = {"anchor": {"path": str(anchor.resolve()), "config": info.get("config"), "records_sha256": records_sha}}
    stage = StageDir(Path(args.out) if args.out else anchor.parent, "filter", anchor.name, config, inputs)
    done = {i for i, r in stage.open().items() if "kept" in r and not _has_error(r)}
    items = {str(r["id"]): filters.Item(r) for r in answered}
    todo = [item for i, item in items.items() if i not in done]
    context = filters.Context(items, {"min_chars": args.min_chars, "max_chars": args.max_chars,
                                      "judge_max_tokens": args.judge_max_tokens}, judge)
    status = "failed"
    try:
        try:
            if judge is not None and todo:  # a start that fails (no server) still closes what it opened
                await judge.astart(str(answered[0]["generation"]))
            await judge_items(todo, chosen, context, args.concurrency, stage, anchor)
        finally:
            if judge is not None and todo:
                await judge.aclose()
        status = "done"
    finally:
        final = [r for r in latest_records(stage.path) if r["id"] in items]
        counts = summarize(final, chosen, info.get("counts") or {})
        record = stage.finish(status, counts, notes=notes_for(counts, judge is not None, chosen))
    return {"path": str(stage.path), **record}


def _rejected(check: Mapping[str, Any]) -> bool:
    return bool(check["applied"] and not check["passed"] and not check.get("error"))


def notes_for(counts: Mapping[str, Any], judge: bool, chosen: Sequence[str]) -> list[str]:
    """What a reader must not miss: a predicate that was not applied, a teacher that never wrote the format."""
    out = [] if judge or "predictive" not in chosen else ["predictive: not applied (no --judge given)"]
    fmt = counts["predicates"].get("format")
    if fmt and fmt["applied"] and fmt["rejected"] == fmt["applied"]:
        out.append("format: every answer was rejected: the teacher does not answer in the student's critique format "
                   "(check --teacher, its prompt and --max-tokens)")
    return out


def _has_error(record: Mapping[str, Any]) -> bool:
    return any(c.get("error") for c in dict(record.get("checks") or {}).values())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--anchor", required=True, metavar="STAGE_DIR", help="an anchor stage directory")
    p.add_argument("--predicates", default=",".join(filters.ORDER), help="comma-separated (default: all five)")
    p.add_argument("--judge", help="predictive: an un-anchored generic VLM judge (`rrbench ls models`)")
    p.add_argument("-M", dest="judge_args", action="append", metavar="KEY=VALUE", help="judge argument")
    p.add_argument("--judge-base-url", dest="judge_base_urls", action="append", metavar="URL", help="its endpoint")
    p.add_argument("--judge-api-key-env", help="environment variable holding the judge's API key")
    p.add_argument("--judge-max-tokens", type=int, default=256, help="the judge's answer limit (default 256)")
    p.add_argument("--min-chars", type=int, default=200, help="length: shortest answer kept (default 200)")
    p.add_argument("--max-chars", type=int, default=12_000, help="length: longest answer kept (default 12000)")
    p.add_argument("--concurrency", type=int, default=8, help="items judged at once (default 8)")
    p.add_argument("--out", help="folder of stage directories (default: the anchor stage's folder)")


def main(args: argparse.Namespace) -> int:
    result = asyncio.run(run(args))
    c = result["counts"]
    rejected = ", ".join(f"{k} {v['rejected']}" + ("" if v["applied"] else " (not applied)")
                         for k, v in c["predicates"].items())
    print(f"{result['path']}: kept {c['kept']}/{c['items']} ({c['kept_fraction']}); rejected by {rejected}")
    for note in result.get("notes") or ():
        print(f"note: {note}")
    return 0 if result["status"] == "done" else 1
