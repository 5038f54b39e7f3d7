"""Generation sharded over Ray actors: the runner's door to ``shards`` copies of one generator (docs/generation-ray.md).

``RayGeneratorPool`` answers to the runner exactly as ``GeneratorPool`` does. Requests of the samples in flight are
batched by the same ``dispatch.Batcher`` (up to the generator's ``batch_size``, as many batches at a time as there are
shards), and each batch goes to a free actor; each actor builds the generator from the registry by name and
arguments and starts it once. Every image is made from its request's own seed, so which actor makes it, and next to
which batch-mates, never changes its bytes.

Failures stay as small as they can: a batch that raised on an actor is retried one image at a time (by the Batcher),
an actor that dies fails only the images of the batch it held (``error``, with Ray's reason) and is started again
while the others go on, and a call past its deadline kills its actor, which a thread never could. The driver stays
the one writer of the run directory: the actors only send back PNG bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench import registry
from rrbench.dispatch import DEFAULT_CALL_TIMEOUT_S, Answers, Batcher
from rrbench.generators._base import Generated, Generator, ImageRequest
from rrbench.types import FailureKind, Media, UserError

LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # a local cluster's shared memory: batches of PNGs need little
RESTARTS_PER_SHARD = 3  # a dead actor is started again this often per shard (a restart reloads the weights)
CONNECT_TIMEOUT_S = 5.0  # an unreachable --ray address is one line after this, not Ray's long retry loop
INSTALL_HINT = "pip install 'rrbench[ray]'"


@dataclass(frozen=True)
class _Wire:
    """An ``ImageRequest`` as it travels to an actor: source images as their encoded bytes, never a local path."""

    sample_id: str
    index: int
    seed: int
    prompt: str
    source: tuple[tuple[bytes, str | None], ...]
    meta: dict[str, Any]
    draw: int = 0

    @classmethod
    def of(cls, request: ImageRequest) -> _Wire:
        source = tuple((m.read_bytes(), m.format) for m in request.source)
        return cls(request.sample_id, request.index, request.seed, request.prompt, source, dict(request.meta),
                   request.draw)

    def request(self) -> ImageRequest:
        source = tuple(Media.from_bytes(data, fmt) for data, fmt in self.source)
        return ImageRequest(self.sample_id, self.index, self.seed, self.prompt, source, self.meta, self.draw)


class _Shard:
    """The body of one Ray actor: one generator, built and started once. Start-up errors are kept and told by
    ``ready`` (a raising constructor would reach the driver as a dead actor with a traceback, not as one line)."""

    def __init__(self, name: str, args: dict[str, Any], workdir: str | None, threads: int | None) -> None:
        self.generator: Generator | None = None
        self.identity: dict[str, Any] | None = None
        self.error: tuple[bool, str] | None = None
        try:
            generator = registry.get("generator", name).build(**args)
            generator.workdir = None if workdir is None else Path(workdir)
            self.identity = generator.describe()  # before start, as an in-process pool takes it
            generator.start()
            self.generator = generator
        except Exception as exc:
            self.error = (isinstance(exc, UserError), f"{type(exc).__name__}: {exc}")
        if threads and "torch" in sys.modules:  # one intra-op thread per CPU the actor holds, not per CPU it sees
            sys.modules["torch"].set_num_threads(threads)

    def ready(self) -> tuple[dict[str, Any] | None, tuple[bool, str] | None]:
        return self.identity, self.error

    def generate(self, wires: list[_Wire]) -> list[Generated]:
        assert self.generator is not None
        return self.generator.generate([w.request() for w in wires])

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()


@dataclass
class _Actor:
    slot: int
    handle: Any  # ray.actor.ActorHandle


class RayGeneratorPool:
    """``GeneratorPool`` over ``shards`` Ray actors. ``address``: a running cluster (``ray start``; ``auto`` finds the
    one on this machine); None starts a local Ray for this run and stops it at ``aclose``. ``astart`` starts the
    actors (the runner awaits it where it would call ``generator.start()``); a ``submit`` before it starts them too."""

    def __init__(self, generator_name: str, generator_args: Mapping[str, Any], *, shards: int,
                 address: str | None = None, call_timeout_s: float | None = None,
                 on_interrupt: Callable[[BaseException], None] | None = None) -> None:
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise UserError(f"--shards must be a positive integer, not {shards!r}")
        self._ray = _import_ray()
        self.generator_name, self.generator_args = generator_name, dict(generator_args)
        self.shards, self.address = shards, address
        # Built here only for its identity and batch size; its weights load in the actors, never in the driver.
        generator = registry.get("generator", generator_name).build(**self.generator_args)
        self.fingerprint = generator.fingerprint()
        self._sharding = {"ray": {"shards": shards, "address": address}}
        self._description: dict[str, Any] = {**generator.describe(), **self._sharding}
        self._from_actors = False  # fingerprint and description are the actors' (set by the first one started)
        deadline = DEFAULT_CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        self._batcher: Batcher[ImageRequest, Generated] = Batcher(
            self._call, generator.batch_size, shards, call_timeout_s=deadline or None, on_interrupt=on_interrupt,
            answers=Answers(Generated, Generated.failed, lambda answer, _latency: answer))
        self.cache_hits = 0
        self.abandoned_calls = 0
        self.restarts = 0  # actors started again after one died
        self._started: asyncio.Future[None] | None = None
        self._idle: asyncio.Queue[_Actor | None] = asyncio.Queue()
        self._actors: dict[int, _Actor] = {}
        self._reviving: set[asyncio.Task[None]] = set()
        self._owns_ray = False
        self._closing = False
        self._actor_class: Any = None  # ray.remote(_Shard) with this run's options
        self._workdir: str | None = None
        self._threads: int | None = None

    @property
    def model_calls(self) -> int:
        return self._batcher.calls

    # -- life cycle -------------------------------------------------------------------------------------------
    async def astart(self, workdir: Path | None = None) -> None:
        """Connect to (or start) Ray and start every actor; a start-up fault of the generator is raised here."""
        if self._started is None:
            self._workdir = None if workdir is None else str(workdir)
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await asyncio.to_thread(self._connect)
        self._actor_class = self._ray.remote(_Shard).options(**self._actor_options())
        actors = [self._spawn(slot) for slot in range(self.shards)]
        self._actors = {a.slot: a for a in actors}
        for actor in actors:
            identity = await self._ready(actor)
            if not self._from_actors:
                # The images' fingerprint is the actors': a driver without the workers' GPUs resolves
                # device=auto (and so dtype) otherwise.
                self.fingerprint, self._description = identity["fingerprint"], {**identity, **self._sharding}
                self._from_actors = True
            self._idle.put_nowait(actor)

    def _connect(self) -> None:
        """Runs in a worker thread, which is why Ray leaves the process's SIGTERM handler alone: on the main
        thread ray.init installs its own (exit at once) over the runner's clean stop."""
        ray = self._ray
        if self.address is not None:
            _reachable(self.address)
        if ray.is_initialized():  # the caller's own session (a notebook, the tests): used, never shut down
            return
        logging.getLogger("ray._private.worker").addFilter(_quiet_sigterm_notice)
        if self.address is None:
            # "local": a fresh instance even where `ray start` left one on this machine (that one is --ray auto).
            ray.init(address="local", num_cpus=self.shards, include_dashboard=False, log_to_driver=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, configure_logging=False)
        else:
            try:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"cannot connect to the Ray cluster at {self.address!r}: {_first_line(exc)}") \
                    from None
        self._owns_ray = True

    def _actor_options(self) -> dict[str, Any]:
        """One GPU per actor where the cluster has GPUs, else one CPU; the plug-ins named in $RRBENCH_PLUGINS
        travel, so an actor finds the same generators as the driver."""
        resources = self._ray.cluster_resources()
        kind = "GPU" if resources.get("GPU", 0) > 0 else "CPU"
        if resources.get(kind, 0) < self.shards:
            raise UserError(f"--shards {self.shards} needs {self.shards} {kind}s, the Ray cluster has "
                            f"{resources.get(kind, 0):g}")
        env = {registry.PLUGINS_ENV: _absolute_plugins(os.environ.get(registry.PLUGINS_ENV, ""))}
        if self.address is None:  # same machine: the driver's import path (a checkout, tests/) holds for the actors
            env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self._threads = None if kind == "GPU" else 1
        need = {"num_gpus": 1} if kind == "GPU" else {"num_cpus": 1}
        # Ray restarts nothing by itself: a dead actor's batch is failed here and its slot refilled (_replace).
        return {**need, "runtime_env": {"env_vars": env}, "max_restarts": 0, "max_task_retries": 0}

    def _spawn(self, slot: int) -> _Actor:
        handle = self._actor_class.remote(self.generator_name, self.generator_args, self._workdir, self._threads)
        return _Actor(slot, handle)

    async def _ready(self, actor: _Actor) -> dict[str, Any]:
        """The actor's ``describe()`` once its generator has started; its start-up fault as one line."""
        try:
            identity, error = await actor.handle.ready.remote()
        except self._ray.exceptions.RayError as exc:
            raise RuntimeError(f"Ray actor {actor.slot} for generator '{self.generator_name}' did not start: "
                               f"{_first_line(exc)}") from None
        if error is not None:
            user, message = error
            text = f"generator '{self.generator_name}' failed to start on Ray actor {actor.slot}: {message}"
            raise UserError(text) if user else RuntimeError(text)
        assert identity is not None
        if self._from_actors and identity["fingerprint"] != self.fingerprint:
            # Another rrbench, plug-in or device on that node: its images would not be this run's.
            raise UserError(f"generator '{self.generator_name}' on Ray actor {actor.slot} has fingerprint "
                            f"{identity['fingerprint']}, the others {self.fingerprint} (settings "
                            f"{identity.get('settings')}): install the same rrbench and plug-ins on every node")
        return dict(identity)

    def describe(self) -> dict[str, Any]:
        """The generator as the actors built it (its device and dtype are theirs, not the driver's), for run.json;
        the driver's own until the actors have started."""
        return dict(self._description)

    async def aclose(self) -> None:
        self._closing = True
        await self._batcher.aclose()
        if self._started is not None and not self._started.done():
            self._started.cancel()
            await asyncio.gather(self._started, return_exceptions=True)
        for task in self._reviving:
            task.cancel()
        await asyncio.gather(*self._reviving, return_exceptions=True)
        await asyncio.to_thread(self._stop)

    def _stop(self) -> None:
        for actor in self._actors.values():
            with contextlib.suppress(Exception):  # a dead actor, or a Ray already gone
                self._ray.kill(actor.handle, no_restart=True)
        self._actors.clear()
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()

    # -- requests ---------------------------------------------------------------------------------------------
    async def submit(self, request: ImageRequest) -> Generated:
        await self.astart()  # at once when started; a start that failed fails every submit, never hangs one
        answer = await self._batcher.submit(request)
        self.abandoned_calls = self._batcher.abandoned
        return answer

    def reused(self) -> None:
        self.cache_hits += 1

    async def _call(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        wires = await asyncio.to_thread(lambda: [_Wire.of(r) for r in requests])  # reads files: not on the loop
        actor = await self._idle.get()
        if actor is None:  # every actor died and none could be started again
            self._idle.put_nowait(None)
            return [Generated.failed(FailureKind.ERROR, "no Ray actor is left (they died and could not restart)")
                    for _ in requests]
        errors = self._ray.exceptions
        try:
            made = await actor.handle.generate.remote(wires)
        except errors.RayActorError as exc:
            reason = _death(exc)
            self._replace(actor, reason)
            return [Generated.failed(FailureKind.ERROR, f"Ray actor {actor.slot} died making this batch: {reason}")
                    for _ in requests]
        except errors.RayTaskError as exc:
            self._idle.put_nowait(actor)
            cause = exc.cause
            # The generator's own exception, so the Batcher retries the batch one image at a time and records it
            # (DataError as data) as an in-process pool would.
            raise cause if isinstance(cause, BaseException) else RuntimeError(_first_line(exc)) from None
        except asyncio.CancelledError:
            # Past the deadline, or the run stops: the actor may be stuck in the call. Killing it is the only stop.
            if not self._closing:
                self._replace(actor, "its call was cancelled (past --call-timeout)")
            raise
        except BaseException:
            self._idle.put_nowait(actor)
            raise
        self._idle.put_nowait(actor)
        return made

    def _replace(self, actor: _Actor, reason: str) -> None:
        """Start a new actor in a dead one's slot (within the restart budget); the others go on meanwhile."""
        with contextlib.suppress(Exception):
            self._ray.kill(actor.handle, no_restart=True)
        if self._closing or self.restarts >= RESTARTS_PER_SHARD * self.shards:
            self._retire(actor.slot, reason)
            return
        self.restarts += 1
        fresh = self._spawn(actor.slot)
        self._actors[actor.slot] = fresh
        task = asyncio.ensure_future(self._revive(fresh, reason))
        self._reviving.add(task)
        task.add_done_callback(self._reviving.discard)

    async def _revive(self, actor: _Actor, reason: str) -> None:
        try:
            await self._ready(actor)
        except (UserError, RuntimeError) as exc:
            print(f"warning: Ray actor {actor.slot} could not be started again ({exc}); {reason}", file=sys.stderr)
            self._retire(actor.slot, reason)
            return
        self._idle.put_nowait(actor)

    def _retire(self, slot: int, reason: str) -> None:
        actor = self._actors.pop(slot, None)
        if actor is not None:
            with contextlib.suppress(Exception):
                self._ray.kill(actor.handle, no_restart=True)
        if not self._actors:
            self._idle.put_nowait(None)  # wakes whoever waits for an actor: there will be none


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"ray is not installed: {INSTALL_HINT} (needed by --ray)") from None
    return ray


def _reachable(address: str) -> None:
    """An address Ray would retry for a minute is one line now. "auto" and ray:// (Ray Client) are left to Ray."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray address must be HOST:PORT (the head node's GCS, default port 6379) or 'auto', "
                        f"not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one with "
                        "`ray start --head` or give its head node's address") from None


def _absolute_plugins(value: str) -> str:
    """$RRBENCH_PLUGINS with ``.py`` files as absolute paths: an actor's working directory is not the driver's."""
    items = (item.strip() for item in value.split(","))
    return ",".join(str(Path(i).resolve()) if i.endswith(".py") else i for i in items if i)


def _quiet_sigterm_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("SIGTERM handler is not set")


def _death(exc: BaseException) -> str:
    """Why Ray says an actor died, in one line: its first sentence, where, and the worker's exit type and detail."""
    text = str(exc)
    where = re.search(r"pid: (\d+)\s+(?:.*\s+)?ip: (\S+)", text)
    exit_type = re.search(r"Worker exit type: (\S+)", text)
    detail = re.search(r"Worker exit detail: (.*?\.)(?:\s|$)", text)
    parts = [_first_line(exc).rstrip(".")]
    if where:
        parts.append(f"(pid {where.group(1)} on {where.group(2)})")
    if exit_type:
        parts.append(f"exit {exit_type.group(1)}" + (f": {detail.group(1)}" if detail else ""))
    return " ".join(parts)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:500] if lines else type(exc).__name__
