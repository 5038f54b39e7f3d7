"""One `rrbench run` combination: build the task and model from the registry, pick the run directory, run, print."""

from __future__ import annotations

import dataclasses
import fcntl
import sys
from pathlib import Path
from typing import Any

from rrbench import registry, subset
from rrbench.display import describe_run
from rrbench.generators._base import Generator
from rrbench.models._base import RewardModel
from rrbench.protocols.judge_images import open_source
from rrbench.runner import DEFAULT_CONCURRENCY, Outcome, Runner, plugin_call, resolve_protocol
from rrbench.spec import RunSpec
from rrbench.store import LOCK, RUN_JSON, SAMPLES, NullCache, ResponseCache, RunDir, default_cache_path
from rrbench.types import Task, UserError, image_limits

EXIT = {"complete": 0, "interrupted": 130, "failed": 1, "incomplete": 1}


def run_directory(spec: RunSpec, output: Path, no_resume: bool) -> RunDir:
    """The spec's own directory; --no-resume moves an old one aside (never deletes results), under its lock, when
    the run takes it (RunDir.acquire): a run still writing there is never moved."""
    return RunDir(output / spec.dirname(), fresh=no_resume)


def open_cache(cache: str | None, no_cache: bool) -> ResponseCache:
    if no_cache:
        return NullCache()
    return ResponseCache(Path(cache) if cache else default_cache_path())


def build(spec: RunSpec, runtime: dict[str, Any] | None = None) -> tuple[Task, RewardModel | Generator]:
    """Resolve names and arguments; every mistake here is a UserError raised before anything is written.

    ``runtime`` holds where the model is reached (base URLs, API key variable): given to the model but kept out
    of the spec, since the same weights behind another URL give the same run. A generation run builds its
    generator instead, and checks that it makes the task's kind of images.
    """
    task = registry.get("task", spec.task).build(**spec.task_args)
    if spec.generator is not None:
        return task, build_generator(spec, task)
    assert spec.model is not None
    entry = registry.get("model", spec.model)
    runtime = {k: v for k, v in (runtime or {}).items() if v}
    missing = sorted(set(runtime) - set(entry.parameters()))
    if missing:
        flag = "--" + missing[0].replace("_", "-").replace("base-urls", "base-url")
        raise UserError(f"model '{spec.model}' does not take {flag}")
    model = entry.build(**spec.model_args, **runtime)
    if spec.data is not None and not Path(spec.data).exists():
        raise UserError(f"--data path does not exist: {spec.data}")
    resolve_protocol(task, spec)
    return task, model


def build_generator(spec: RunSpec, task: Task) -> Generator:
    assert spec.generator is not None
    if not task.generative:
        raise UserError(f"task '{task.name}' is a {task.kind.value} benchmark with human labels: it judges given "
                        "images, it makes none (use rrbench run --model)")
    generator = registry.get("generator", spec.generator).build(**spec.generator_args)
    if not isinstance(generator, Generator):
        raise UserError(f"generator '{spec.generator}' built a {type(generator).__name__}, not a Generator")
    generator.check_kind(task.generation)
    if spec.data is not None and not Path(spec.data).exists():
        raise UserError(f"--data path does not exist: {spec.data}")
    return generator


def execute(
    spec: RunSpec,
    output: Path,
    *,
    concurrency: int | None = None,
    no_resume: bool = False,
    cache: str | None = None,
    no_cache: bool = False,
    quiet: bool = False,
    base_urls: list[str] | None = None,
    api_key_env: str | None = None,
    call_timeout: float | None = None,
    images: str | None = None,
    shards: int | None = None,
    ray_address: str | None = None,
) -> int:
    if concurrency is not None and concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, not {concurrency}")
    image_limits()  # a malformed $RRBENCH_MAX_IMAGE_* is one line now, not a failure of every sample later
    task, maker = build(spec, {"base_urls": base_urls, "api_key_env": api_key_env})
    with plugin_call(f"task '{task.name}' failed while --subset read its samples"):
        spec = subset.resolve(spec, task)  # --subset: the chosen ids join the spec (a no-op when already chosen)
    source = None
    if images is not None:
        if not task.generative:
            raise UserError(f"--images is for generation tasks; task '{task.name}' is a {task.kind.value} "
                            "benchmark whose images come with its data")
        with plugin_call(f"task '{task.name}' failed to load"):
            source = open_source(images, task, Path(spec.data) if spec.data else None)
        spec = dataclasses.replace(spec, images=source.identity())
    elif task.generative and spec.generator is None:
        raise UserError(f"task '{task.name}' judges generated images: give --images DIR (a generation run or a "
                        "folder of images) or --generator G")
    new_dir = no_resume or not (output / spec.dirname()).exists()
    output_existed = output.exists()
    response_cache = open_cache(cache, no_cache)
    runner = Runner(
        spec=spec,
        task=task,
        model=maker if isinstance(maker, RewardModel) else None,
        generator=maker if isinstance(maker, Generator) else None,
        source=source,
        run_dir=run_directory(spec, output, no_resume),
        cache=response_cache,
        concurrency=concurrency or DEFAULT_CONCURRENCY,
        resume=not no_resume,
        progress_enabled=not quiet,
        call_timeout_s=call_timeout,
        shards=shards,
        ray_address=ray_address,
    )
    try:
        outcome = runner.run()
    except BaseException:
        if new_dir:  # a start-up that failed leaves no run directory behind (nor a runs/ folder it made)
            discard_unused(output / spec.dirname(), None if output_existed else output)
        raise
    finally:
        response_cache.close()
    report(outcome)
    return EXIT.get(outcome.status, 1)


def discard_unused(path: Path, output: Path | None) -> None:
    """Remove a run directory that holds only what a run makes at start (run.json, its lock, an empty sample log),
    and then ``output`` if that is left empty. Anything else there (a sample, a server log) keeps it all."""
    try:
        entries = list(path.iterdir())
        if any(e.name not in (RUN_JSON, LOCK, SAMPLES) or (e.name == SAMPLES and e.stat().st_size) for e in entries):
            return
        with (path / LOCK).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run of this spec keeps it
            for entry in entries:
                entry.unlink(missing_ok=True)
            (path / LOCK).unlink(missing_ok=True)
        path.rmdir()
        if output is not None:
            output.rmdir()
    except OSError:  # in use, not empty, already gone: leave it as it is
        return


def report(outcome: Outcome) -> None:
    print(describe_run(outcome.record, str(outcome.run_dir)))
    if outcome.status == "interrupted":
        print("interrupted: finished samples are kept; run the same command again to resume", file=sys.stderr)
    elif outcome.status != "complete":
        print(f"run {outcome.status}: see {outcome.run_dir / 'run.json'}", file=sys.stderr)
