"""Judging the sets and saying what refine gained: ``refine.json`` and the lines ``rrbench refine`` prints.

The base set and each round's final set are judged by the same judge, each an ordinary judge run. The gain is the
benchmark's headline metric on the final set minus on the base set (``rrbench.refine.gain``), overall and per
category, for each round (the gain curve); beside it, how many images were regenerated and why the others kept
their image, and the critic's mean aspect scores of the base images and of the final ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rrbench.record import read_run_dict
from rrbench.refine import plan
from rrbench.refine.gain import paired_gain
from rrbench.refine.run import Job, Refined
from rrbench.spec import RunSpec
from rrbench.store import load_results, write_json_atomic
from rrbench.types import Protocol, SampleResult

SUMMARY = "refine.json"


def judge_spec(job: Job, judge: str, judged: RunSpec) -> RunSpec:
    """The judge run of one set (the base set or a final one)."""
    return RunSpec(task=job.task, model=judge, task_args=job.task_args, model_args=job.judge_args, data=job.data,
                   seed=judged.seed, limit=judged.limit, subset=judged.subset, images=f"run:{judged.hash()}")


def judge_sets(job: Job, refined: Refined, judge: str) -> tuple[int, list[RunSpec]]:
    """Judge the base set and every final set (each resumable on its own); the worst exit code and the specs."""
    from rrbench.session import execute

    worst, specs = 0, []
    for judged in [refined.base, *refined.finals]:
        spec = judge_spec(job, judge, judged)
        code = execute(spec, job.output, images=str(job.output / judged.dirname()), **job.judge_runtime,
                       **{k: v for k, v in job.options.items() if k in ("concurrency", "quiet", "call_timeout",
                                                                          "cache", "no_cache")})
        worst = max(worst, code)
        specs.append(spec)
        if code == 130:
            break
    return worst, specs


def folder(job: Job, refined: Refined, judge: str) -> Path:
    """Where the refine's summary and report go: named by what it compared, so a resumed refine finds it."""
    key = json.dumps({"base": refined.base.hash(), "critic": job.critic, "critic_args": job.critic_args,
                      "accept": refined.rule, "rounds": job.rounds, "max": job.max_request_chars, "judge": judge,
                      "judge_args": job.judge_args}, sort_keys=True, default=str)
    name = f"{_slug(job.task)}__refine-{_slug(job.critic)}__{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    return job.output / name


def summarize(job: Job, refined: Refined, judges: Sequence[RunSpec]) -> dict[str, Any]:
    """refine.json: the stages, the gain per round (overall and per category), regenerated counts, critic means."""
    base_judge = job.output / judges[0].dirname()
    record = read_run_dict(base_judge)
    protocol = Protocol.from_json(record["protocol"])
    metric = protocol.metrics[0] if protocol.metrics else None
    base_results = load_results(base_judge)
    rounds = []
    for round_, (final, spec) in enumerate(zip(refined.finals, judges[1:], strict=False), start=1):
        results = load_results(job.output / spec.dirname())
        rounds.append({"round": round_, "final_set": final.dirname(), "judge_run": spec.dirname(),
                       **_gains(base_results, results, protocol, metric, job.seed)})
    return {
        "task": job.task, "generator": job.generator, "generator_args": job.generator_args,
        "critic": job.critic, "critic_args": job.critic_args, "accept": refined.rule,
        "rounds_asked": job.rounds, "max_request_chars": job.max_request_chars,
        "judge": judges[0].model, "judge_protocol": protocol.id, "metric": metric,
        "stages": {"base": refined.base.dirname(), "critiques": [s.dirname() for s in refined.critiques],
                   "regenerations": [s.dirname() for s in refined.regenerations],
                   "finals": [s.dirname() for s in refined.finals], "judges": [s.dirname() for s in judges]},
        "rounds": rounds,
        "images": _counts(refined.slots),
        "critic_scores": _critic_means(refined.slots, job.output, refined.critiques[0]),
        "slots": [_slot(s) for s in sorted(refined.slots.values(), key=lambda s: s.key)],
    }


def _gains(base: Sequence[SampleResult], final: Sequence[SampleResult], protocol: Protocol, metric: str | None,
           seed: int) -> dict[str, Any]:
    if metric is None:
        return {"overall": None, "by_category": {}}
    categories = sorted({c for r in base if (c := r.category) is not None})
    return {
        "overall": paired_gain(base, final, protocol, metric, seed=seed),
        "by_category": {c: paired_gain([r for r in base if r.category == c], [r for r in final if r.category == c],
                                       protocol, metric, seed=seed) for c in categories},
    }


def _counts(slots: plan.Slots) -> dict[str, Any]:
    outcomes = Counter(slot.outcome for slot in slots.values())
    attempts = Counter(h["round"] for slot in slots.values() for h in slot.history)
    total = len(slots)
    regenerated = outcomes.get(plan.REGENERATED, 0)
    return {"total": total, "regenerated": regenerated, "fraction_regenerated": regenerated / total if total else None,
            "by_outcome": {k: outcomes[k] for k in plan.OUTCOMES if outcomes.get(k)},
            "made_again_per_round": {str(k): attempts[k] for k in sorted(attempts)}}


def _critic_means(slots: plan.Slots, output: Path, base_critique: RunSpec) -> dict[str, dict[str, float | None]]:
    """Mean critic score per aspect: of the base images (the first critique) and of the final ones."""
    before = {(r.sample_id, t.order[0]): t.judgements[0] for r in load_results(output / base_critique.dirname())
              for t in r.trials if t.judgements and t.order}
    after = {slot.key: slot.critique for slot in slots.values()}
    return {"before": _means(before.values()), "after": _means(after.values())}


def _means(judgements: Any) -> dict[str, float | None]:
    values: dict[str, list[float]] = {}
    for judgement in judgements:
        if judgement is None or judgement.failure is not None or not judgement.aspects:
            continue
        for name, value in judgement.aspects[0].items():
            values.setdefault(name, [])
            if value is not None:
                values[name].append(float(value))
    return {name: (sum(v) / len(v) if v else None) for name, v in sorted(values.items())}


def _slot(slot: plan.Slot) -> dict[str, Any]:
    return {"sample": slot.sample_id, "index": slot.index, "outcome": slot.outcome, "round": slot.round,
            "final_run": slot.run, "final_image": slot.entry.get("path"), "history": slot.history,
            "critique": plan.summary_of(slot.critique)}


def write(path: Path, summary: Mapping[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path / SUMMARY, dict(summary))


def lines(summary: Mapping[str, Any]) -> list[str]:
    """The refine's result in a few lines: the gain per round, regenerated counts, critic means."""
    counts = summary["images"]
    out = [f"refine {summary['task']} x {summary['generator']}: critic {summary['critic']}, accept "
           f"{summary['accept']}, judge {summary['judge']} ({summary['judge_protocol']}), metric {summary['metric']}"]
    for row in summary["rounds"]:
        gain = row["overall"]
        out.append(f"  round {row['round']}: " + (_gain_text(gain) if gain else "no metric"))
    share = counts["fraction_regenerated"]
    out.append(f"  images: {counts['total']}, final image regenerated: {counts['regenerated']}"
               + (f" ({100 * share:.1f}%)" if share is not None else "")
               + "; " + ", ".join(f"{k} {v}" for k, v in counts["by_outcome"].items()))
    unmade = {k: v for k, v in counts["by_outcome"].items() if k not in (plan.KEPT, plan.REGENERATED)}
    if unmade:
        out.append(f"  note: {sum(unmade.values())} images kept their earlier image for a reason other than the "
                   f"rule ({', '.join(f'{k} {v}' for k, v in unmade.items())}); the critiques are in "
                   f"{', '.join(summary['stages']['critiques'])}")
    for when in ("before", "after"):
        means = summary["critic_scores"][when]
        if means:
            out.append(f"  critic {when}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in means.items()))
    return out


def _gain_text(gain: Mapping[str, Any]) -> str:
    ci = f" [{_fmt(gain['ci_low'])}, {_fmt(gain['ci_high'])}]" if gain.get("ci_low") is not None else ""
    return f"{_fmt(gain['base'])} -> {_fmt(gain['final'])}, gain {_fmt(gain['gain'], sign=True)}{ci} " \
           f"(n={gain['n_samples']})"


def _fmt(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if sign else f"{value:.4f}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "x"
