"""The one pipeline: load -> judge -> parse -> predict -> persist, for every task and model.

Samples stream from the task (images stay lazy); at most ``concurrency`` samples are in flight; each sample's
requests go through the dispatcher (cache, then batched model calls); the answers become a prediction in the
sample's own candidate order; the finished sample is appended to the log at once. Ctrl-C (or SIGTERM) stops
feeding samples, cancels those in flight and keeps everything that finished; the next run resumes.

Tasks and models are plug-ins, and nothing they do may lose a sample or hang the run: a fault while one sample is
judged (an exception anywhere in its step, text that cannot be encoded into its request key) is that sample's
recorded failure; a loader that raises stops the run cleanly after the samples in flight finish (one line, exit 2);
a plug-in that raises where no sample is at stake (its factory, start-up, size, description) is one line naming it
(``PluginError``, exit 2); KeyboardInterrupt or SystemExit raised by a plug-in stop the run as Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rrbench import metrics, provenance, subset
from rrbench.datarecord import ContentFingerprint, data_record
from rrbench.dispatch import DaemonThreads, Dispatcher, ModelInterrupt, _being_cancelled, describe_exception
from rrbench.generators._base import Generator
from rrbench.generators._pool import GeneratorPool
from rrbench.generators._ray import RayGeneratorPool
from rrbench.models._base import RewardModel
from rrbench.models._ray import RayDispatcher
from rrbench.prefetch import Prefetch, warm
from rrbench.progress import Progress
from rrbench.protocols import official, pairwise
from rrbench.protocols._base import SampleStep
from rrbench.protocols.generate import GenerateStep
from rrbench.protocols.judge_images import ImageSource, JudgeImagesStep
from rrbench.protocols.refine import CRITIQUE
from rrbench.record import write_run
from rrbench.spec import SCHEMA_VERSION, RunSpec
from rrbench.store import (
    SAMPLES,
    ResponseCache,
    RunDir,
    load_results,
    log_digest,
    read_json,
)
from rrbench.types import (
    DataError,
    FailureKind,
    Judgement,
    Label,
    Protocol,
    Sample,
    SampleResult,
    Task,
    Trial,
    UserError,
)

DEFAULT_CONCURRENCY = 32
GENERATE_PROTOCOL = Protocol(id="generate", mode="generate", metrics=())
ABORT_AFTER_ERRORS = 20  # consecutive model errors with no success before the run stops (a broken set-up)


class RunAborted(Exception):
    """The model failed on every sample so far: stop instead of recording thousands of identical failures."""


class PluginError(UserError):
    """A task or model plug-in raised where rrbench called it outside any one sample (its factory, start-up, sample
    count, description, loader): one line naming the plug-in, the error and where it was raised; exit 2.
    ``RRBENCH_DEBUG=1`` prints the traceback too."""


def plugin_error(what: str, exc: BaseException) -> PluginError:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (raised at {_shorter(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    message = " ".join(describe_exception(exc).split())  # one line, whatever the message holds
    if len(message) > 500:
        message = message[:500] + "..."
    error = PluginError(f"{what}: {message}{where}")
    error.__cause__ = exc
    return error


def _shorter(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return relative if not relative.startswith("..") else filename


@contextlib.contextmanager
def plugin_call(what: str) -> Iterator[None]:
    """Around a call into a plug-in outside any one sample: what it raises becomes a PluginError, except the
    user errors it means (UserError), interrupts and cancellation."""
    try:
        yield
    except (UserError, KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise plugin_error(what, exc) from exc


@dataclass
class Outcome:
    run_dir: Path
    status: str  # complete | interrupted | failed
    record: dict[str, Any]
    new_samples: int = 0
    model_calls: int = 0
    cache_hits: int = 0


@contextlib.contextmanager
def on_signals(handler: Callable[[], None]) -> Iterator[None]:
    """Call ``handler`` on SIGINT/SIGTERM while the block runs (in the running event loop, where it can set events)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_protocol(task: Task, spec: RunSpec) -> Protocol:
    """The task's official protocol, or a named alternative, with the user's explicit overrides applied."""
    protocol = task.protocol
    if task.generative and spec.protocol == CRITIQUE.id:  # rrbench refine's critique stage, on any generation task
        return CRITIQUE
    if spec.protocol is not None and spec.protocol != protocol.id:
        if spec.protocol not in task.alternatives:
            names = ", ".join([task.protocol.id, *task.alternatives]) or "none"
            raise UserError(f"task '{task.name}' has no protocol {spec.protocol!r} (has: {names})")
        protocol = task.alternatives[spec.protocol]
    overrides = {
        k: v
        for k, v in (("order", spec.order), ("tie_policy", spec.tie_policy), ("failure_policy", spec.failure_policy))
        if v is not None
    }
    if "tie_policy" in overrides and overrides["tie_policy"] not in metrics.TIE_POLICIES:
        raise UserError(f"unknown tie policy {spec.tie_policy!r} (known: {', '.join(metrics.TIE_POLICIES)})")
    if "failure_policy" in overrides and overrides["failure_policy"] not in metrics.FAILURE_POLICIES:
        raise UserError(f"failure policy must be one of {', '.join(metrics.FAILURE_POLICIES)}")
    if not overrides:
        return protocol
    changed = "+".join(f"{k.replace('_policy', '')}={v}" for k, v in overrides.items())
    return Protocol(**{**protocol.__dict__, **overrides, "id": f"{protocol.id}+{changed}"})


@dataclass
class Runner:
    spec: RunSpec
    task: Task
    model: RewardModel | None  # the judge; None in a generation run
    run_dir: RunDir
    cache: ResponseCache
    concurrency: int = DEFAULT_CONCURRENCY
    resume: bool = True
    progress_enabled: bool = True
    call_timeout_s: float | None = None  # a model call's deadline (dispatch.Dispatcher); None: the default, 0: off
    generator: Generator | None = None  # a generation run's generator
    source: ImageSource | None = None  # the images a judge run judges (a generation run, or a folder)
    shards: int | None = None  # a generation or scoring run sharded over this many Ray actors (--shards, --ray)
    ray_address: str | None = None  # a running Ray cluster's address; None: a local one
    # rrbench refine runs stages side by side in one process: a stage may bring its own per-sample step, tell the
    # next stage of each sample it records, leave Ctrl-C to the one handler of all stages, and share a model or
    # generator that stays loaded from one stage to the next (started by the first, closed by the caller).
    step_factory: Callable[[Any], SampleStep] | None = None
    on_record: Callable[[SampleResult], None] | None = None
    own_signals: bool = True
    keep_open: bool = False
    start_maker: bool = True  # False: a stage that only copies images (refine's final set) loads no generator
    protocol: Protocol = field(init=False)
    _door: Dispatcher | GeneratorPool | RayGeneratorPool | None = field(init=False, default=None)
    _stop: asyncio.Event = field(init=False)
    _errors_in_a_row: int = 0
    _size: int | None = None
    _successes: int = 0
    _first_error: str | None = None
    _slots: asyncio.Semaphore | None = None  # the feeder's: samples in flight
    _fatal: BaseException | None = None  # what stops the run, met while a sample was recorded (see _abort)

    def __post_init__(self) -> None:
        if self.call_timeout_s is not None and not (self.call_timeout_s >= 0 and self.call_timeout_s < float("inf")):
            raise UserError(f"--call-timeout must be a number of seconds (0 turns it off), not {self.call_timeout_s}")
        # A generation run makes images and scores nothing: its protocol is the making, with no metric.
        protocol = GENERATE_PROTOCOL if self.generator is not None else resolve_protocol(self.task, self.spec)
        if self.model is not None and not self.task.generative:
            protocol = pairwise.resolved(protocol, self.task, self.model)
        elif self.model is not None:
            protocol = official.resolved(protocol, self.task, self.model, self.spec.model or "",
                                         named=self.spec.protocol is not None)
        self.protocol = protocol
        from rrbench.hubdata import SNAPSHOTS

        SNAPSHOTS.clear()  # one process may run several tasks in turn: record only this run's datasets
        with plugin_call(f"task '{self.task.name}' could not count its samples"):
            self._size = self.task.size_of(Path(self.spec.data) if self.spec.data else None)

    # ------------------------------------------------------------------------------------------------ top level
    def run(self) -> Outcome:
        return asyncio.run(self._main())

    async def _main(self) -> Outcome:
        # asyncio.to_thread (in-process models and backends) in daemon threads: a call stuck in a model must hold up
        # neither Ctrl-C nor the exit (the loop's own executor would be joined at shutdown, forever).
        asyncio.get_running_loop().set_default_executor(DaemonThreads())
        self._stop = asyncio.Event()
        self.run_dir.acquire()
        try:
            return await self._run_locked()
        finally:
            self.run_dir.release()

    async def _run_locked(self) -> Outcome:
        record = self._initial_record()
        dispatcher = self._dispatcher()
        self.step = self._step(dispatcher)
        done = self.run_dir.prepare_resume() if self.resume else set()
        self.run_dir.open_log()
        write_run(self.run_dir.path, record)
        total = self._total()
        progress = Progress(total, f"{self.spec.task} x {self.spec.maker}", already=len(done),
                            enabled=self.progress_enabled)
        status, new, started = "complete", 0, time.perf_counter()
        error: BaseException | None = None
        with self._signals():
            try:
                if total == 0:
                    raise UserError(self._no_samples())
                if (total is None or len(done) < total) and await self._start_model():
                    new = await self._feed(dispatcher, done, progress)
                status = "interrupted" if self._stop.is_set() else "complete"
            except RunAborted as exc:
                status, record["error"] = "failed", str(exc)
            except (KeyboardInterrupt, asyncio.CancelledError) as exc:
                status, error = "interrupted", exc
            except BaseException as exc:  # recorded in run.json, then raised to the CLI for its exit code
                status, error, record["error"] = "failed", exc, f"{type(exc).__name__}: {exc}"
            finally:
                await dispatcher.aclose()
                await self._close_model()
                self.run_dir.close_log()
                progress.close()
        new = progress.done  # samples recorded this session: those Ctrl-C cancelled in flight are not counted
        try:
            record = self._final_record(record, status, dispatcher, new, time.perf_counter() - started)
            write_run(self.run_dir.path, record)
        except Exception:
            if error is None:
                raise
            # The run has already failed (a full disk fails this write too): its own error is the one to say; the
            # run.json of this session's start stands, whole.
        if error is not None:
            raise error
        # The record's status: a run that ended with samples missing is "incomplete", and exits non-zero.
        return Outcome(self.run_dir.path, record["status"], record, new, dispatcher.model_calls,
                       dispatcher.cache_hits)

    def _dispatcher(self) -> Dispatcher | GeneratorPool | RayGeneratorPool:
        """The door to what answers this run's requests: the judge (cache, batches), the generator, or its copies
        on a Ray cluster."""
        if self.generator is not None and self.shards:
            assert self.spec.generator is not None
            return RayGeneratorPool(self.spec.generator, self.spec.generator_args, shards=self.shards,
                                    address=self.ray_address, call_timeout_s=self.call_timeout_s,
                                    on_interrupt=self._plugin_interrupt)
        if self.generator is not None:
            with plugin_call(f"generator '{self.spec.generator}' is not usable"):
                return GeneratorPool(self.generator, call_timeout_s=self.call_timeout_s,
                                     on_interrupt=self._plugin_interrupt)
        assert self.model is not None
        with plugin_call(f"model '{self.spec.model}' is not usable"):
            if self.shards:  # scored by Ray actors (--ray, --shards): in-process models only
                return RayDispatcher(self.model, self.spec.model or "", self.spec.model_args, self.cache,
                                     shards=self.shards, address=self.ray_address,
                                     call_timeout_s=self.call_timeout_s, on_interrupt=self._plugin_interrupt)
            return Dispatcher(self.model, self.cache, call_timeout_s=self.call_timeout_s,
                              on_interrupt=self._plugin_interrupt)

    def _step(self, door: Dispatcher | GeneratorPool | RayGeneratorPool) -> SampleStep:
        """The protocol's per-sample step for this run."""
        self._door = door
        if self.step_factory is not None:
            return self.step_factory(door)
        if isinstance(door, GeneratorPool | RayGeneratorPool):
            return GenerateStep(self.task, self.spec.seed, door, self.run_dir.path)
        assert self.model is not None
        if self.task.generative:
            if self.source is None:
                raise UserError(f"task '{self.task.name}' judges generated images: give --images or --generator")
            if official.is_official(self.protocol):
                return official.BenchmarkJudgeStep(self.task, self.protocol, door, self.source, self.spec.seed)
            return JudgeImagesStep(self.task, self.protocol, door, self.source)
        return pairwise.PairwiseStep(self.task, self.protocol, self.model, door, self.spec.seed)

    async def _close_model(self) -> None:
        if self.keep_open:
            return
        if self.generator is not None:
            await self._close_generator()
            return
        assert self.model is not None
        try:
            await self.model.aclose()
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise
        except BaseException as exc:  # the samples are recorded: a plug-in's failing clean-up costs nothing more
            print(f"warning: {plugin_error(f'model {self.spec.model!r} failed to close', exc)}", file=sys.stderr)

    async def _close_generator(self) -> None:
        assert self.generator is not None
        if isinstance(self._door, RayGeneratorPool):
            return  # the actors are the door's, closed with it
        try:
            await asyncio.to_thread(self.generator.close)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise
        except BaseException as exc:
            print(f"warning: {plugin_error(f'generator {self.spec.generator!r} failed to close', exc)}",
                  file=sys.stderr)

    async def _start_model(self) -> bool:
        """Load weights or start a server; Ctrl-C during a minutes-long start stops at once. False if stopped."""
        if not self.start_maker:
            return True
        maker = self.generator if self.generator is not None else self.model
        assert maker is not None
        maker.workdir = self.run_dir.path
        start = asyncio.ensure_future(self._guarded_start())
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            return False
        try:
            start.result()
        except ModelInterrupt as exc:
            self._plugin_interrupt(exc.original)
            return False
        return True

    async def _guarded_start(self) -> None:
        try:
            if self.generator is not None:
                self.generator.check_kind(self.task.generation)
                with plugin_call(f"generator '{self.spec.generator}' failed to start"):
                    if isinstance(self._door, RayGeneratorPool):  # the weights load in the actors, not here
                        await self._door.astart(self.run_dir.path)
                    else:
                        await asyncio.to_thread(self.generator.start)
                return
            assert self.model is not None
            with plugin_call(f"model '{self.spec.model}' failed to start"):
                if isinstance(self._door, RayDispatcher):  # the weights load in the actors, not here
                    await self._door.astart(self.run_dir.path, self.task.generation)
                else:
                    await self.model.astart(self.task.generation)
        except (KeyboardInterrupt, SystemExit) as exc:  # escaping the task, either would stop the event loop
            raise ModelInterrupt(exc) from exc

    def _no_samples(self) -> str:
        where = f" in {self.spec.data}" if self.spec.data else ""
        return f"task '{self.task.name}' has no samples{where}: an empty dataset (or split) gives no numbers"

    def _total(self) -> int | None:
        if self._size is None:
            return self.spec.limit
        return min(self._size, self.spec.limit) if self.spec.limit else self._size

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """First Ctrl-C/SIGTERM: stop cleanly, keep what finished. A second one interrupts at once."""
        if not self.own_signals:
            yield
            return

        def request_stop() -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt
            self._request_stop("stopping")

        with on_signals(request_stop):
            yield

    def _request_stop(self, why: str) -> None:
        self._stop.set()
        if self._slots is not None:
            # The feeder may be waiting for a slot, which frees only when a sample in flight finishes: up to
            # the client timeout (600 s by default) against a hung server. One more slot lets it see the stop
            # now (tests/test_torture.py, the hung-server Ctrl-C test).
            self._slots.release()
        print(f"\n{why}: finished samples are kept; run the same command again to resume", flush=True)

    def _plugin_interrupt(self, exc: BaseException) -> None:
        """KeyboardInterrupt or SystemExit raised by a plug-in: the run stops as on Ctrl-C."""
        if not self._stop.is_set():
            self._request_stop(f"stopping ({describe_exception(exc)} raised by a plug-in)")

    # ------------------------------------------------------------------------------------------------ feeding
    def _samples(self) -> Iterator[Sample]:
        data = Path(self.spec.data) if self.spec.data else None
        with plugin_call(f"task '{self.task.name}' failed to load"):
            samples = iter(self.task.load(data))
        return subset.take(samples, self.spec)  # the first --limit samples, or the chosen --subset

    def _pull(self, samples: Iterator[Sample]) -> Callable[[int], Any]:
        """The loader thread's side of ``_next_sample`` (rrbench.prefetch): the next item, under plugin_call."""

        def pull(count: int) -> Any:
            with plugin_call(f"task '{self.task.name}' stopped loading after {count} samples"):
                return next(samples, None)

        return pull

    def _preparer(self, done: set[str]) -> Callable[[Sample], None]:
        """The loader thread's work on each sample still to be asked (rrbench.prefetch): its images' hashes, and the
        model's own (``RewardModel.prepare``). A resumed run's logged samples are skipped, so neither is spent on them;
        a plugin's failure here is left for the request, which records it as the sample's."""
        model, generation = self.model, self.task.generation
        own = model is not None and type(model).prepare is not RewardModel.prepare

        def prepare(sample: Sample) -> None:
            if str(sample.id) in done:
                return
            warm(sample)
            if own and model is not None:
                with contextlib.suppress(Exception):
                    model.prepare(sample, generation)

        return prepare

    async def _next_sample(self, feed: Prefetch, count: int) -> Sample | None:
        """The loader's next sample; None at its end. A loader that raises cannot go on (a generator that raised is
        finished): the error, naming the task and how far it got, ends the run once the samples in flight are in."""
        try:
            sample = await feed.next()
        except (KeyboardInterrupt, SystemExit) as exc:
            self._plugin_interrupt(exc)
            return None
        if sample is None:
            return None
        if not isinstance(sample, Sample):
            raise PluginError(f"task '{self.task.name}' yielded a {type(sample).__name__} after {count} samples, "
                              "not a Sample")
        if not isinstance(sample.id, str):  # the log's ids are text: a number would never match on resume
            sample = dataclasses.replace(sample, id=str(sample.id))
        return sample

    def _add_fingerprint(self, sample: Sample) -> None:
        """The data record's hash of ids and label strings; text UTF-8 cannot hold is hashed in escaped form."""
        try:
            self._fingerprint.add(sample)
        except Exception:  # a lone surrogate, or a label that is not one (the sample fails on its own later)
            original = getattr(sample.label, "original", None)
            label = Label.unknown(_escaped(original if isinstance(original, str) else repr(original)))
            self._fingerprint.add(dataclasses.replace(sample, id=_escaped(sample.id), label=label))

    async def _feed(self, dispatcher: Dispatcher | GeneratorPool | RayGeneratorPool, done: set[str],
                    progress: Progress) -> int:
        slots = self._slots = asyncio.Semaphore(max(1, self.concurrency))
        in_flight: set[asyncio.Task[None]] = set()
        seen: set[str] = set()
        new = 0
        feed = Prefetch(self._pull(self._samples()), ahead=min(8, max(2, self.concurrency // 4)),
                        prepare=self._preparer(done))
        stopped: BaseException | None = None  # the loader's error, said once the samples in flight are recorded
        try:
            while not self._stop.is_set():
                try:
                    sample = await self._next_sample(feed, len(seen))
                except UserError as exc:
                    stopped = exc
                    break
                if sample is None:
                    break
                if sample.id in seen:
                    stopped = UserError(f"task '{self.task.name}' yields sample id {sample.id!r} twice")
                    break
                seen.add(sample.id)
                self._add_fingerprint(sample)  # ids and label strings only: what the data record hashes
                if self.source is not None:
                    self.source.seen(sample, self.task.images_per_prompt)  # done ones too: which files are whose
                if sample.id in done:
                    continue
                await slots.acquire()
                if self._stop.is_set():
                    slots.release()
                    break
                task = asyncio.create_task(self._one(sample, progress))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(lambda _: slots.release())
                new += 1
                await asyncio.sleep(0)  # let finished samples be written before loading the next one
            if not seen and stopped is None and not self._stop.is_set():
                raise UserError(self._no_samples())
            await self._drain(in_flight)
            if self._fatal is not None:
                raise self._fatal
            if stopped is not None:
                raise stopped
        finally:
            feed.close()
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
        return new

    async def _drain(self, in_flight: set[asyncio.Task[None]]) -> None:
        while in_flight and not self._stop.is_set():
            stop = asyncio.create_task(self._stop.wait())
            finished, _ = await asyncio.wait({*in_flight, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            for task in finished - {stop}:
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    raise exc

    # ------------------------------------------------------------------------------------------------ one sample
    async def _one(self, sample: Sample, progress: Progress) -> None:
        start = time.perf_counter()
        try:
            result = await self.step.run(sample)
        except asyncio.CancelledError:
            if self._stop.is_set() or _being_cancelled():
                raise  # Ctrl-C, or the run ends: the sample was in flight, not failed
            result = self._failed(sample, asyncio.CancelledError("a request of this sample was cancelled"), start)
        except (UserError, RunAborted) as exc:
            self._abort(exc)  # the same for every sample (a model that cannot judge pairs): the run stops
            return
        except (KeyboardInterrupt, SystemExit) as exc:
            self._plugin_interrupt(exc)
            return
        except BaseException as exc:  # anything else is this sample's fault, recorded as its failure
            result = self._failed(sample, exc, start)
        try:
            self.run_dir.append(result)
            if self.on_record is not None:
                self.on_record(result)
            progress.update(failed=result.failure is not None)
            self._watch_errors(result)
        except Exception as exc:  # a full disk, or the model failing every sample: the run stops
            self._abort(exc)

    def _abort(self, exc: BaseException) -> None:
        """Stop the run for ``exc`` (raised by the feeder once the samples in flight are given up): the first one
        is said; the same error met by other samples at the same moment is not raised once per sample."""
        if self._fatal is None:
            self._fatal = exc
        if not self._stop.is_set():
            self._stop.set()
            if self._slots is not None:
                self._slots.release()

    def _failed(self, sample: Sample, exc: BaseException, start: float) -> SampleResult:
        """The record of a sample whose step raised: a ``data`` failure for its own data (a DataError, text that
        cannot be encoded), else ``error``; its fields are kept where they can be written."""
        kind = FailureKind.DATA if isinstance(exc, DataError | UnicodeError) else FailureKind.ERROR
        judgement = Judgement.failed(kind, " ".join(describe_exception(exc).split())[:2000])
        try:
            n = len(sample.candidates)
            candidates = tuple(m.to_json() for m in sample.candidates)
            source = tuple(m.to_json() for m in sample.source)
        except Exception:
            n, candidates, source = 0, (), ()
        label = sample.label if isinstance(sample.label, Label) else Label.unknown(repr(sample.label)[:200])
        return SampleResult(
            sample_id=sample.id,
            label=label,
            trials=(Trial(tuple(range(n)), (judgement,), None, kind),),
            meta=sample.meta if isinstance(sample.meta, Mapping) else {},
            correct=(None,),
            latency_s=time.perf_counter() - start,
            prompt=sample.prompt if isinstance(sample.prompt, str) else None,
            candidates=candidates,
            source=source,
        )

    def _watch_errors(self, result: SampleResult) -> None:
        failure = result.failure
        if failure is None:
            self._successes += 1
            self._errors_in_a_row = 0
            return
        if failure is FailureKind.AUTH and self._successes == 0:
            # The server refused the key before anything succeeded: every request would be refused alike (401/403
            # are not retried), so one line and exit 2 instead of a failure per sample. After a success it is
            # that sample's failure and the run goes on.
            raise UserError(next((j.failure_detail for t in result.trials for j in t.judgements
                                  if j.failure is FailureKind.AUTH), None) or "the server refused the API key")
        if failure is not FailureKind.ERROR:
            return
        self._errors_in_a_row += 1
        if self._first_error is None:
            judgement = next(j for t in result.trials for j in t.judgements if j.failure)
            self._first_error = judgement.failure_detail
        if self._successes == 0 and self._errors_in_a_row >= ABORT_AFTER_ERRORS:
            raise RunAborted(
                f"the model failed on the first {ABORT_AFTER_ERRORS} samples; first error: {self._first_error}"
            )

    # ------------------------------------------------------------------------------------------------ records
    def _initial_record(self) -> dict[str, Any]:
        previous: dict[str, Any] = {}
        if self.resume and self.run_dir.run_json.exists():
            try:
                previous = dict(read_json(self.run_dir.run_json))
            except UserError as exc:
                # The log is the record; run.json is rebuilt from it (the directory's name carries the spec hash).
                print(f"warning: {exc}; it is rewritten from samples.jsonl", file=sys.stderr)
            if previous and previous.get("spec_hash") != self.spec.hash():
                raise UserError(f"{self.run_dir.path} holds a different run spec; use another --output")
        self._previous = previous
        self._fingerprint = ContentFingerprint()
        sessions = previous.get("sessions")
        makers = self._makers()
        return {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "spec": self.spec.to_json(),
            "spec_hash": self.spec.hash(),
            "created_at": previous.get("created_at", now_iso()),
            "updated_at": now_iso(),
            "task": task_record(self.task, self.spec.task_args),
            **makers,
            "protocol": self.protocol.to_json(),
            **({"refine": dict(self.spec.refine)} if self.spec.refine else {}),
            "provenance": provenance.collect(),
            "sessions": (sessions if isinstance(sessions, int) and not isinstance(sessions, bool) else 0) + 1,
        }

    def _makers(self) -> dict[str, Any]:
        """What answered the run's requests, as run.json records it: the judge (``model``), the generator, and the
        source of the images a judge run judged."""
        out: dict[str, Any] = {}
        if self.model is not None:
            with plugin_call(f"model '{self.spec.model}' failed to describe itself"):
                out["model"] = dict(self.model.describe())
            judge = official.judge_record(self.task, self.protocol, self.spec.model or "", self.model)
            if judge is not None:
                out["judge"] = judge
        if self.generator is not None:
            with plugin_call(f"generator '{self.spec.generator}' failed to describe itself"):
                out["generator"] = dict(self.generator.describe())
        if self.source is not None:
            out["source"] = self.source.describe()
        return out

    def _final_record(
        self, record: dict[str, Any], status: str, dispatcher: Dispatcher | GeneratorPool | RayGeneratorPool,
        new: int, wall: float
    ) -> dict[str, Any]:
        if new == 0 and self._unchanged_since_last_session(record):
            # same log, same numbers (and the same seal: nothing in the log or in them has changed)
            record.update({k: self._previous[k] for k in ("counts", "metrics", "integrity")})
        else:
            results = load_results(self.run_dir.path)
            record.update(summarize(results, self.protocol, self.spec.seed, self._total()))
            record["integrity"] = integrity(record, self.run_dir.samples)
        record["status"] = status if status != "complete" or record["counts"]["missing"] == 0 else "incomplete"
        from rrbench.hubdata import SNAPSHOTS

        # Which hub commit each dataset was read at (the --data path is in the spec). A session that read nothing
        # (a resume with every sample done) keeps what the earlier sessions recorded.
        snapshots = dict(SNAPSHOTS) or _mapping(self._previous.get("data_snapshots"))
        if snapshots:
            record["data_snapshots"] = snapshots
        # A smaller local copy, --limit or other content is said in run.json, so no reader takes the number for the
        # benchmark's. Only a load that ran to its end fingerprints the data; otherwise the last session's stands.
        streamed = self._fingerprint if status == "complete" and self._fingerprint.count else None
        record["data"] = data_record(
            registered_size=self.task.info.size, registered_fingerprint=self.task.info.fingerprint,
            size=self._size, limit=self.spec.limit, local_copy=self.spec.data is not None, streamed=streamed,
            previous=_mapping(self._previous.get("data")),
        )
        if self.source is not None and status == "complete" and not self.spec.limit:
            # Only a pass over every sample can tell which files of a folder belong to none.
            problems = self.source.finish()
            record["source"] = {**self.source.describe(), **({"problems": problems} if problems else {})}
            for problem in problems:
                print(f"warning: {problem}", file=sys.stderr)
        # What only a started model knows (engine, server log, load time) joins the description at the end.
        if isinstance(self._door, RayGeneratorPool):
            record["generator"] = self._door.describe()  # with how it was sharded, and what each actor reported
        with contextlib.suppress(Exception):
            if self.model is not None:
                model = self._door if isinstance(self._door, RayDispatcher) else self.model  # the actors' model
                record["model"].update({k: v for k, v in model.describe().items() if v not in ({}, None)})
        record["updated_at"] = now_iso()
        if record["status"] == "complete":
            record["finished_at"] = now_iso()
        record["stats"] = {
            "new_samples": new,
            "model_calls": dispatcher.model_calls,
            "cache_hits": dispatcher.cache_hits,
            "wall_s": round(wall, 3),
            "samples_per_s": round(new / wall, 2) if wall > 0 else None,
        }
        if dispatcher.abandoned_calls:
            record["stats"]["abandoned_calls"] = dispatcher.abandoned_calls  # past --call-timeout, left running
        if isinstance(dispatcher, RayGeneratorPool | RayDispatcher) and dispatcher.restarts:
            record["stats"]["actor_restarts"] = dispatcher.restarts  # Ray actors that died and were replaced
        return record

    def _unchanged_since_last_session(self, record: dict[str, Any]) -> bool:
        """A finished run resumed with nothing to do: the log is byte for byte the one the previous session
        summarised (its seal says so), the counts and metrics are the ones it computed (not edited since), under
        the same protocol, expected size and rrbench code, so they stand. (Metrics are a deterministic function of
        those; recomputing 10,000 pairs' bootstrap CIs costs seconds.)"""
        previous = self._previous
        try:
            return bool(
                self.run_dir.log_unchanged
                and previous.get("status") == "complete"
                and "metrics" in previous and "counts" in previous
                and previous.get("integrity") == integrity(previous, None, self.run_dir.log_sha256)
                and previous.get("protocol") == record["protocol"]
                and previous["counts"].get("expected") == self._total()
                and (code := _code_identity(record.get("provenance"))) is not None
                and code == _code_identity(previous.get("provenance"))
            )
        except (AttributeError, TypeError, KeyError, ValueError):  # a run.json edited into another shape
            return False


def integrity(record: Mapping[str, Any], log: Path | None, log_sha256: str | None = None) -> dict[str, Any]:
    """The seal of run.json's numbers: the sha256 of the log they were computed from and of the numbers themselves.
    A reader that finds either one changed (a hand edit, a log written after) recomputes them from the log."""
    numbers = json.loads(json.dumps({"counts": record.get("counts"), "metrics": record.get("metrics")}, default=str))
    blob = json.dumps(numbers, sort_keys=True)  # as read back from run.json, whatever types it was written from
    return {"samples_sha256": log_digest(log) if log is not None else log_sha256,
            "summary_sha256": hashlib.sha256(blob.encode()).hexdigest()}


def checked_record(run_dir: Path, record: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """run.json's record with counts and metrics that agree with samples.jsonl: as written when its seal holds,
    else recomputed from the log (with a note saying so). The log is the record; run.json only summarises it."""
    if "counts" not in record or not isinstance(record.get("protocol"), dict):
        return record, None  # a run that failed at start has no numbers to check
    if record.get("integrity") == integrity(record, run_dir / SAMPLES):
        return record, None
    try:
        spec = RunSpec.from_json(record["spec"])
        summary = summarize(load_results(run_dir), Protocol.from_json(record["protocol"]), spec.seed,
                            expected_of(record))
    except (UserError, KeyError, TypeError, ValueError, AttributeError) as exc:
        return record, f"run.json's numbers could not be checked against samples.jsonl ({exc})"
    if {k: record.get(k) for k in summary} == summary:
        return record, None
    fixed = {**record, **summary}
    if fixed.get("status") == "complete" and summary["counts"]["missing"]:
        fixed["status"] = "incomplete"
    return fixed, ("run.json's counts and metrics do not match samples.jsonl (edited, or the run is still being "
                   "written): shown as recomputed from the log")


def expected_of(record: Mapping[str, Any]) -> int | None:
    """How many samples the run asked for: from its data record (its counts may have been edited)."""
    for source in (record.get("data"), record.get("counts")):
        value = source.get("expected") if isinstance(source, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _escaped(value: Any) -> Any:
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def _code_identity(prov: Any) -> tuple[Any, ...] | None:
    """What decides how metrics are computed: rrbench's version and source commit (None when dirty/unknown)."""
    if not isinstance(prov, dict):
        return None  # (None never matches: see _unchanged_since_last_session)
    git = prov.get("git")
    git = git if isinstance(git, dict) else {}
    if git.get("dirty"):
        return None  # uncommitted changes: the code may differ from the last session's, so recompute
    return (prov.get("rrbench"), git.get("commit"))


def task_record(task: Task, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out = {
        "name": task.name,
        "version": task.version,
        "kind": task.kind.value,
        "generation": task.generation,
        "size": task.size,
        "info": {k: v for k, v in task.info.__dict__.items() if v is not None},
    }
    if args is not None:
        out["args"] = task_args(task.name, args)
    if task.generative:
        out["images_per_prompt"] = task.images_per_prompt
    return out


def task_args(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The task's arguments as it ran: the factory's defaults with the ``-T`` values over them."""
    from rrbench import registry

    try:
        params = registry.get("task", name).parameters()
    except UserError:  # a task whose plug-in is gone: what was given is all there is
        return dict(given)
    defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
    return json.loads(json.dumps({**defaults, **given}, default=str))


def summarize(results: list[SampleResult], protocol: Protocol, seed: int, expected: int | None) -> dict[str, Any]:
    """Coverage and metrics of a set of results: what run.json, `show` and `rescore` share."""
    results = sorted(results, key=lambda r: r.sample_id)  # metric CIs must not depend on completion order
    failed: dict[str, int] = {}
    for r in results:
        if r.failure is not None:
            failed[r.failure.value] = failed.get(r.failure.value, 0) + 1
    counts = {
        "expected": expected,
        "recorded": len(results),
        "failed": sum(failed.values()),
        "failed_by_kind": failed,
        "label_skipped": sum(1 for r in results if r.skipped),
        "missing": max(0, (expected or 0) - len(results)),
    }
    return {"counts": counts, "metrics": metrics.compute_metrics(results, protocol, seed=seed)}
