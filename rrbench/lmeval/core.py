"""What the lm-eval pack and the importer share: tasks, documents, the prompt as lm-eval text, answers -> results.

A document is one presentation order of one sample (``trial``): MMRB2's protocol judges each pair in both orders,
so its samples are two documents each. Documents carry only names and indices; images and labels come from the
task's own loader, the one ``rrbench run`` uses. Answers are read as rrbench's generic VLM judge reads them
(``rrbench.models._vlm.VLMJudge._answer``: empty text, then the prompt's verdict parser) and mapped back to the
sample's own order by the pairwise protocol's ``assemble``; metrics are ``runner.summarize``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench import prompts, redact, registry
from rrbench.models import _rationalrewards_format as rr
from rrbench.protocols import pairwise
from rrbench.runner import resolve_protocol, summarize
from rrbench.spec import RunSpec
from rrbench.types import (
    FailureKind,
    Judgement,
    LabelKind,
    Media,
    Protocol,
    Sample,
    SampleResult,
    Task,
    TaskKind,
    UserError,
)

PREFIX = "rrbench_"
IMAGE = "<image>"  # lm-eval's image placeholder (lm_eval.models.hf_vlms.DEFAULT_IMAGE_PLACEHOLDER)
# A request that itself contains lm-eval's marker would open an image slot there; it is defused (docs/lm-eval.md).
DEFUSED = "<image\u200b>"
SEED = 0  # rrbench run's default seed: the seeded "random" order policy picks the same order here
MODEL = "lm-eval"  # the judge's name in an imported run's spec


def lm_name(task: str) -> str:
    """The lm-eval task name of an rrbench task: ``genai-bench-t2i`` -> ``rrbench_genai_bench_t2i``."""
    return PREFIX + task.replace("-", "_")


@functools.cache
def build_task(name: str) -> Task:
    return registry.get("task", name).build()


def protocol_of(task: Task) -> Protocol:
    """The protocol ``rrbench run --task T --model <generic VLM judge>`` records: the task's official one, with
    ``mode: auto`` resolved to ``pairwise`` (a verdict judge compares the pair in one request)."""
    protocol = resolve_protocol(task, RunSpec(task=task.name, model=MODEL))
    return dataclasses.replace(protocol, mode="pairwise") if protocol.mode == "auto" else protocol


def prompt_of(task: Task) -> prompts.PromptSpec:
    """The verdict prompt a generic VLM judge sends for this task (``VLMJudge.prompt_for``, ``-M prompt=official``)."""
    if task.judge_prompt:
        return prompts.get(task.judge_prompt)
    return prompts.select("rrbench", "verdict", task.generation)


def unsupported(task: Task) -> str | None:
    """Why a task cannot be an lm-eval task, or None when it can."""
    if task.generative:
        return "a generation benchmark: its candidates are made by a generator, not stored in a dataset"
    if task.kind is not TaskKind.PAIR:
        return (f"a {task.kind.value} task: its official protocol scores each image alone (pointwise), which needs "
                "a score prompt with a system message; an lm-eval task has one user text per document")
    if protocol_of(task).mode != "pairwise":
        return "its official protocol scores each candidate alone (pointwise)"
    spec = prompt_of(task)
    probe = Media.from_bytes(b"probe", "png")
    source = (probe,) if task.generation == "edit" else ()
    variables = {name: name for name in task.prompt_vars}
    messages = spec.render("probe", (probe, probe), source, variables)
    if len(messages) != 1 or messages[0].get("role") != "user":
        return f"its judge prompt {spec.key} has a system message; an lm-eval task has one user text per document"
    return None


def expressible() -> dict[str, str | None]:
    """Every registered non-generation task -> None (exported) or why not."""
    out: dict[str, str | None] = {}
    for entry in registry.entries("task"):
        task = build_task(entry.name)
        if not task.generative:
            out[entry.name] = unsupported(task)
    return out


def checked_task(name: str) -> Task:
    try:
        task = build_task(name)
    except UserError:
        raise UserError(f"unknown task {name!r}; see `rrbench ls tasks`") from None
    why = unsupported(task)
    if why is not None:
        raise UserError(f"task {name!r} has no lm-eval form: {why}")
    return task


# --------------------------------------------------------------------------------------------------- documents


@functools.cache
def samples_of(task_name: str, data: str) -> dict[str, Sample]:
    """The task's samples by id, in load order (``data`` "" = the hub snapshot, as ``rrbench run`` without --data)."""
    task = build_task(task_name)
    return {s.id: s for s in task.load(Path(data) if data else None)}


def orders(task: Task, sample: Sample) -> list[tuple[int, ...]]:
    return pairwise.trial_orders(len(sample.candidates), protocol_of(task).order, SEED, sample.id)


def documents(task: Task, data: str) -> list[dict[str, Any]]:
    """One document per (sample, presentation order); samples whose label the task does not know are left out
    (rrbench records them unjudged; the importer adds them back)."""
    docs = []
    for sample in samples_of(task.name, data).values():
        if sample.label.kind is LabelKind.UNKNOWN:
            continue
        for trial, order in enumerate(orders(task, sample)):
            docs.append({"rrbench_task": task.name, "rrbench_data": data, "id": sample.id, "trial": trial,
                         "order": list(order)})
    return docs


def rendered(task: Task, sample: Sample, order: Sequence[int]) -> tuple[str, list[Media]]:
    """The judge prompt of one document as lm-eval text (``<image>`` where each image stands) and its images in
    that order: the parts of rrbench's single user message, text pieces joined as the chat template joins them."""
    shown = tuple(sample.candidates[i] for i in order)
    variables = pairwise.shown_variables(sample, task.prompt_vars, tuple(order))
    messages = prompt_of(task).render(sample.prompt, shown, sample.source, dict(variables))
    pieces: list[str] = []
    images: list[Media] = []
    for part in messages[0]["content"]:
        if part["type"] == "image":
            pieces.append(IMAGE)
            images.append(part["media"])
        else:
            pieces.append(str(part["text"]).replace(IMAGE, DEFUSED))
    return "".join(pieces), images


# --------------------------------------------------------------------------------------------------- answers


def judgement(spec: prompts.PromptSpec, text: str | None) -> Judgement:
    """An answer read as ``VLMJudge._answer`` reads a completion (lm-eval gives no finish reason: a cut-off answer
    is a parse failure here, ``truncated`` in rrbench's own runs)."""
    text = text or ""
    if not text.strip():
        out = Judgement.failed(FailureKind.EMPTY, "the model returned no text", raw=text)
    elif (verdict := rr.read_verdict(spec.answer, text)) is None:
        out = Judgement.failed(FailureKind.PARSE, f"no verdict found ({spec.answer} answer expected)", raw=text)
    else:
        out = Judgement(verdict=verdict, raw=text, rationale=text)
    out = redact.clean(out, _scrubber())
    return dataclasses.replace(out, prompt=spec.key)


@functools.cache
def _scrubber() -> redact.Scrubber:
    return redact.Scrubber.from_env(None, [])


Answers = Mapping[tuple[str, int], str | None]


@dataclass(frozen=True)
class Scored:
    results: list[SampleResult]
    expected: int  # samples of the task's data (the run's expected count)


def results_of(task: Task, data: str, answers: Answers) -> Scored:
    """Sample results from answers keyed by (sample id, trial); a sample with a trial unanswered is missing."""
    protocol = protocol_of(task)
    spec = prompt_of(task)
    samples = samples_of(task.name, data)
    out = []
    for sample in samples.values():
        if sample.label.kind is LabelKind.UNKNOWN:
            out.append(_result(task, protocol, sample, (), "unknown_label"))
            continue
        keys = [(sample.id, t) for t in range(len(orders(task, sample)))]
        if any(k not in answers for k in keys):
            continue
        trials = tuple(
            pairwise.assemble(order, protocol.mode, [pairwise.protocol_scores(judgement(spec, answers[k]), protocol,
                                                                              None)])
            for k, order in zip(keys, orders(task, sample), strict=True)
        )
        out.append(_result(task, protocol, sample, trials, None))
    return Scored(out, len(samples))


def _result(task: Task, protocol: Protocol, sample: Sample, trials: tuple[Any, ...], skipped: str | None
            ) -> SampleResult:
    credit = [pairwise.trial_credit(sample.label, t, task.kind, protocol.tie_policy, sample.meta) for t in trials]
    return SampleResult(
        sample_id=sample.id, label=sample.label, trials=trials, meta=sample.meta, skipped=skipped,
        correct=tuple(credit), prompt=sample.prompt, candidates=tuple(m.to_json() for m in sample.candidates),
        source=tuple(m.to_json() for m in sample.source),
    )


def summary(task: Task, scored: Scored) -> dict[str, Any]:
    """``counts`` and ``metrics`` as run.json records them."""
    return summarize(scored.results, protocol_of(task), SEED, scored.expected)


def headline(metrics: Mapping[str, Any], protocol: Protocol, failure_policy: str | None = None) -> float:
    """The protocol's first metric under a failure policy (the protocol's own by default); NaN when uncounted."""
    policy = failure_policy or protocol.failure_policy
    for row in metrics["overall"]:
        if row["metric"] == protocol.metrics[0] and row["failure_policy"] == policy:
            return float("nan") if row["value"] is None else float(row["value"])
    return float("nan")


def iter_items(items: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str, Answers]]:
    """process_results items grouped by (task, data): the answers of each."""
    groups: dict[tuple[str, str], dict[tuple[str, int], str | None]] = {}
    for item in items:
        key = (str(item["rrbench_task"]), str(item["rrbench_data"]))
        groups.setdefault(key, {})[(str(item["id"]), int(item["trial"]))] = item.get("answer")
    for (task, data), answers in groups.items():
        yield task, data, answers
