"""``rrbench refine``: test-time Generate-Critique-Refine as a protocol (docs/refine.md).

1. the base set (``rrbench generate``'s run for the same task, generator and seed: reused when it exists), critiqued
   by the critic while it is made;
2. per round, the images the accept rule does not keep are made again from the critic's refined request, with the
   base image's seed (a new one for the identity refiner), and critiqued while they are made;
3. after each round the final set is assembled (every slot's kept or regenerated image): a generation run;
4. the base set and every round's final set are judged by the benchmark's judge (or ``--model``), and the paired
   gain is reported with a CI, per category, with what was regenerated and why the rest was kept.

Every stage is an ordinary run directory naming its source; running the same command again resumes the stage that
stopped and reads the ones that finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrbench import registry, subset
from rrbench.generators._base import Generator
from rrbench.models._base import RewardModel
from rrbench.protocols.official import official_judges
from rrbench.refine import plan
from rrbench.refine.rules import check_rule
from rrbench.refine.stages import DONE, Stages, critique_spec, planned_task
from rrbench.runner import plugin_call
from rrbench.spec import RunSpec
from rrbench.store import load_results
from rrbench.types import Task, UserError

MAX_REQUEST_CHARS = 4000  # a refined request longer than this is no prompt (a runaway answer): the image is kept
MAX_ROUNDS = 10


@dataclass(frozen=True)
class Job:
    """What ``rrbench refine`` was asked."""

    task: str
    generator: str
    critic: str
    judge: str | None = None
    task_args: dict[str, Any] = field(default_factory=dict)
    generator_args: dict[str, Any] = field(default_factory=dict)
    critic_args: dict[str, Any] = field(default_factory=dict)
    judge_args: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    limit: int | None = None
    subset: str | None = None
    seed: int = 0
    rounds: int = 1
    accept: str | None = None
    max_request_chars: int = MAX_REQUEST_CHARS
    output: Path = Path("runs")
    critic_runtime: dict[str, Any] = field(default_factory=dict)  # --base-url / --api-key-env of the critic
    judge_runtime: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # concurrency, quiet, call_timeout, cache, no_cache

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or not 1 <= self.rounds <= MAX_ROUNDS:
            raise UserError(f"--rounds must be a whole number from 1 to {MAX_ROUNDS}, not {self.rounds!r}")
        if isinstance(self.max_request_chars, bool) or not isinstance(self.max_request_chars, int) \
                or self.max_request_chars < 1:
            raise UserError(f"--max-request-chars must be a positive number, not {self.max_request_chars!r}")
        concurrency = self.options.get("concurrency")
        if concurrency is not None and concurrency < 1:
            raise UserError(f"--concurrency must be at least 1, not {concurrency}")


@dataclass
class Refined:
    """What a refine made: the stages' specs and the slots' final state (for the summary)."""

    base: RunSpec
    rule: str
    settings: plan.Settings
    critiques: list[RunSpec] = field(default_factory=list)
    regenerations: list[RunSpec] = field(default_factory=list)
    finals: list[RunSpec] = field(default_factory=list)
    slots: plan.Slots = field(default_factory=dict)
    status: str = DONE


def prepare(job: Job) -> tuple[Task, RunSpec, Generator, RewardModel, str]:
    """Build everything before any stage runs: a wrong name or argument is one line, and nothing is written."""
    from rrbench.session import build_generator

    task = registry.get("task", job.task).build(**job.task_args)
    if not task.generative:
        raise UserError(f"task '{task.name}' is a {task.kind.value} benchmark: refine needs a generation task")
    base = RunSpec(task=job.task, model=None, task_args=job.task_args, data=job.data, seed=job.seed, limit=job.limit,
                   subset=job.subset, generator=job.generator, generator_args=job.generator_args)
    with plugin_call(f"task '{task.name}' failed while --subset read its samples"):
        base = subset.resolve(base, task)
    generator = build_generator(base, task)
    critic = registry.get("model", job.critic).build(**job.critic_args, **job.critic_runtime)
    if not isinstance(critic, RewardModel):
        raise UserError(f"critic '{job.critic}' built a {type(critic).__name__}, not a reward model")
    rule = check_rule(job.accept or ("always" if critic.refiner_only else "rr-code"), critic.refiner_only, job.critic)
    return task, base, generator, critic, rule


def judge_of(job: Job, task: Task) -> str:
    """``--model``, else the benchmark's own judge."""
    if job.judge:
        return job.judge
    official = official_judges(task)
    if not official:
        raise UserError(f"task '{task.name}' names no judge of its own: give --model J to judge the sets")
    return official[0]


def refine_record(job: Job, rule: str, base: RunSpec, stage: str, round_: int, content: str) -> dict[str, Any]:
    """What a stage's spec says about the refine it belongs to (it names the stage's run directory)."""
    return {"stage": stage, "round": round_, "critic": job.critic, "critic_args": dict(job.critic_args),
            "accept": rule, "max_request_chars": job.max_request_chars, "base": base.hash()[:16], "content": content}


def run_stages(job: Job) -> Refined:
    """Make, critique, regenerate and assemble: every round, every stage (resuming what an earlier call left)."""
    from rrbench.session import open_cache

    task, base, generator, critic, rule = prepare(job)
    settings = plan.Settings(rule, job.max_request_chars, critic.new_seed_on_refine, base.seed)
    refined = Refined(base, rule, settings)
    cache = open_cache(job.options.get("cache"), bool(job.options.get("no_cache")))
    stages = Stages(task, generator, critic, job.output, cache, job.options)
    try:
        asyncio.run(_rounds(stages, job, task, refined))
    finally:
        cache.close()
    return refined


async def _rounds(stages: Stages, job: Job, task: Task, refined: Refined) -> None:
    base = refined.base
    try:
        with stages.signals():
            crit = critique_spec(base, job.critic, job.critic_args)
            refined.critiques.append(crit)
            if not _ok(refined, await stages.generate_and_critique(base, crit, task, regenerate=False)):
                return
            refined.slots = plan.start(base.dirname(), load_results(job.output / base.dirname()),
                                       load_results(job.output / crit.dirname()))
            for round_ in range(1, job.rounds + 1):
                if not await _round(stages, job, task, refined, round_):
                    return
    finally:
        await _close(stages)


async def _round(stages: Stages, job: Job, task: Task, refined: Refined, round_: int) -> bool:
    planned = plan.plan_round(refined.slots, refined.settings, round_)
    if planned:
        regen = dataclasses.replace(refined.base, refine=refine_record(
            job, refined.rule, refined.base, "regenerate", round_, plan.digest(planned)))
        crit = critique_spec(regen, job.critic, job.critic_args)
        refined.regenerations.append(regen)
        refined.critiques.append(crit)
        if not _ok(refined, await stages.generate_and_critique(regen, crit, planned_task(task, planned, round_),
                                                               regenerate=True)):
            return False
        plan.after_round(refined.slots, planned, regen.dirname(), load_results(job.output / regen.dirname()),
                         load_results(job.output / crit.dirname()), refined.settings, round_)
    chosen = plan.choices(refined.slots)
    final = dataclasses.replace(refined.base, refine=refine_record(
        job, refined.rule, refined.base, "final", round_, plan.digest(chosen)))
    refined.finals.append(final)
    outcome = await stages.assemble(final, planned_task(task, chosen, round_))
    if outcome.status != DONE:
        refined.status = outcome.status
    return outcome.status == DONE


def _ok(refined: Refined, outcomes: tuple[Any, ...]) -> bool:
    for outcome in outcomes:
        if outcome.status != DONE:
            refined.status = outcome.status
            return False
    return True


async def _close(stages: Stages) -> None:
    """The critic and the generator stay loaded across stages; released once, here."""
    try:
        await stages.critic.aclose()
    finally:
        await asyncio.to_thread(stages.generator.close)
