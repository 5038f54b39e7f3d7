"""The stages of a refine, each an ordinary run directory, run in one process so that they overlap.

Round 0 makes the base set (the same run ``rrbench generate`` makes, so an existing one is reused) while the critic
critiques it; round r makes again the images round r-1's plan names while the critic critiques those; after each
round the final set is assembled. A generation stage and its critique run side by side: the critique of a sample
starts as soon as its images are recorded, so the critic works while the generator makes the next ones. A stage
that is complete is read, never run again; one that is not is resumed (its finished samples are kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrbench.generators._base import Generator
from rrbench.models._base import RewardModel
from rrbench.protocols.refine import CRITIQUE, AssembleStep, CritiqueStep, RegenerateStep, Relay, StageSource
from rrbench.record import read_run_dict
from rrbench.runner import DEFAULT_CONCURRENCY, Runner, on_signals
from rrbench.session import discard_unused
from rrbench.spec import RunSpec
from rrbench.store import RunDir, load_results
from rrbench.types import Sample, SampleResult, Task, UserError

DONE = "complete"


@dataclass
class Outcome:
    """How a stage ended: its status (``complete``, ``interrupted``, ``failed``...) and its directory."""

    spec: RunSpec
    path: Path
    status: str


@dataclass
class Stages:
    """Runs refine's stages with one task, one generator and one critic, all loaded once."""

    task: Task
    generator: Generator
    critic: RewardModel
    output: Path
    cache: Any  # the response cache of the critic's requests
    options: dict[str, Any] = field(default_factory=dict)  # concurrency, quiet, call_timeout
    _running: list[Runner] = field(default_factory=list)
    _stopping: bool = False

    # ------------------------------------------------------------------------------------------------ stages
    async def generate_and_critique(self, gen: RunSpec, crit: RunSpec, task: Task, regenerate: bool
                                    ) -> tuple[Outcome, Outcome]:
        """One round: the generation stage and the critique of its images, side by side."""
        gen_dir, gen_done = self.output / gen.dirname(), self.complete(gen)
        relay = Relay(_recorded(gen_dir, finished_only=not gen_done), closed=gen_done)
        stopped = asyncio.Event()
        source = StageSource(gen_dir, gen.hash(), relay, stopped)
        jobs = []
        if not gen_done:
            step = (lambda door: RegenerateStep(task, door, gen_dir)) if regenerate else None
            jobs.append(self._runner(gen, task, generator=self.generator, step_factory=step, on_record=relay.put))
        crit_runner = None
        if not self.complete(crit):
            crit_runner = self._runner(crit, task, model=self.critic, source=source,
                                       step_factory=lambda door: CritiqueStep(task, door, source))
        if jobs and crit_runner is not None:
            gen_status, crit_status = await self._side_by_side(jobs[0], crit_runner, relay, stopped)
        else:
            gen_status = await self._run(jobs[0]) if jobs else DONE
            crit_status = await self._run(crit_runner) if crit_runner is not None else DONE
        return (Outcome(gen, gen_dir, gen_status), Outcome(crit, self.output / crit.dirname(), crit_status))

    async def _side_by_side(self, gen: Runner, crit: Runner, relay: Relay, stopped: asyncio.Event) -> tuple[str, str]:
        """Both stages at once. If the generation stops early, the critique stops with it (keeping what it has); if
        the critique stops early (its critic cannot start, say), the generation stops too, so the error is said now
        rather than after every image is made."""
        crit_job = asyncio.ensure_future(self._run(crit))
        gen_job = asyncio.ensure_future(self._run(gen))
        await asyncio.wait({gen_job, crit_job}, return_when=asyncio.FIRST_COMPLETED)
        if crit_job.done() and not gen_job.done() and not _finished(crit_job):
            gen._request_stop("the critique stage stopped")
        try:
            gen_status = await gen_job
        finally:
            if not _finished(gen_job):
                stopped.set()
                if not crit_job.done():
                    crit._request_stop("the generation stage stopped")
            relay.close()
        return gen_status, await crit_job

    async def assemble(self, spec: RunSpec, task: Task) -> Outcome:
        """The final set after a round: the chosen image of every slot, copied into a generation run of its own."""
        path = self.output / spec.dirname()
        if self.complete(spec):
            return Outcome(spec, path, DONE)
        runner = self._runner(spec, task, generator=self.generator, start_maker=False,
                              step_factory=lambda door: AssembleStep(task, self.output, path))
        return Outcome(spec, path, await self._run(runner))

    def complete(self, spec: RunSpec) -> bool:
        """A stage whose run directory holds this spec's finished run: read, never run again."""
        try:
            record = read_run_dict(self.output / spec.dirname())
        except (UserError, OSError):
            return False
        return record.get("spec_hash") == spec.hash() and record.get("status") == DONE

    # ------------------------------------------------------------------------------------------------ runners
    def _runner(self, spec: RunSpec, task: Task, **parts: Any) -> Runner:
        return Runner(
            spec=spec, task=task, model=parts.pop("model", None), run_dir=RunDir(self.output / spec.dirname()),
            cache=self.cache, concurrency=self.options.get("concurrency") or DEFAULT_CONCURRENCY,
            progress_enabled=not self.options.get("quiet"), call_timeout_s=self.options.get("call_timeout"),
            own_signals=False, keep_open=True, **parts,
        )

    async def _run(self, runner: Runner) -> str:
        if self._stopping:
            return "interrupted"
        self._running.append(runner)
        new = not runner.run_dir.path.exists()
        try:
            outcome = await runner._main()
        except BaseException:
            if new:  # a stage that failed to start leaves no directory behind (session.execute does the same)
                discard_unused(runner.run_dir.path, None)
            raise
        finally:
            self._running.remove(runner)
        if not self.options.get("quiet"):
            print(f"  {runner.spec.task} x {runner.spec.maker}: {outcome.status} ({outcome.run_dir.name})")
        return str(outcome.status)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """First Ctrl-C/SIGTERM: every running stage stops cleanly, keeping what finished. A second: at once."""

        def stop() -> None:
            if self._stopping:
                raise KeyboardInterrupt
            self._stopping = True
            for runner in list(self._running):
                runner._request_stop("stopping")

        with on_signals(stop):
            yield

    @property
    def stopping(self) -> bool:
        return self._stopping


def _finished(job: asyncio.Future[str]) -> bool:
    """A stage's job that ended complete (not raised, not cancelled, not stopped early)."""
    return job.done() and not job.cancelled() and job.exception() is None and job.result() == DONE


def _recorded(path: Path, finished_only: bool) -> list[SampleResult]:
    """A stage's records so far (a resumed stage records its failed samples again, so only the finished ones)."""
    if not (path / "samples.jsonl").is_file():
        return []
    return [r for r in load_results(path) if not finished_only or r.failure is None]


def critique_spec(gen: RunSpec, critic: str, critic_args: dict[str, Any]) -> RunSpec:
    """The critique stage of a generation stage: the critic, under the critique protocol, on its images."""
    return RunSpec(task=gen.task, model=critic, task_args=gen.task_args, model_args=critic_args, data=gen.data,
                   seed=gen.seed, limit=gen.limit, subset=gen.subset, protocol=CRITIQUE.id,
                   images=f"run:{gen.hash()}")


def planned_task(task: Task, plan: dict[str, list[dict[str, Any]]], round_: int) -> Task:
    """The task restricted to the samples of a plan, each carrying its part of the plan in ``meta["refine"]``."""

    def load(data: Path | None) -> Iterator[Sample]:
        for sample in task.load(data):
            if sample.id in plan:
                refine = {"round": round_, "images": plan[sample.id]}
                yield dataclasses.replace(sample, meta={**sample.meta, "refine": refine})

    return dataclasses.replace(task, load=load, size=len(plan), count=None)
