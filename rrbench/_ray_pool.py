"""Copies of one plug-in as Ray actors: what generation (generators/_ray.py) and scalar scoring (models/_ray.py)
sharded over a Ray cluster share (docs/generation-ray.md, docs/scale-out.md).

``ActorPool`` connects to a cluster (or starts a local one for the run), starts ``shards`` actors that each build
the plug-in from the registry by name and arguments and start it once, and sends each call to a free actor. Failures
stay as small as they can: an actor that dies fails only the call it held (``error``, with Ray's reason) and is
started again while the others go on; a call that raised on an actor raises the plug-in's own exception in the
driver, so the ``dispatch.Batcher`` retries its batch one request at a time as it does in one process; a call that is
cancelled (past its deadline) kills its actor, which a thread never could. The driver stays the one writer of the
run directory: the actors only send answers back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from rrbench import registry
from rrbench.types import FailureKind, UserError

LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # a local cluster's shared memory: batches of PNGs need little
RESTARTS_PER_SHARD = 3  # a dead actor is started again this often per shard (a restart reloads the weights)
CONNECT_TIMEOUT_S = 5.0  # an unreachable --ray address is one line after this, not Ray's long retry loop
INSTALL_HINT = "pip install 'rrbench[ray]'"

A = TypeVar("A")  # one answer of a call: a Generated image, a Judgement
Identity = tuple[str, dict[str, Any]]  # what an actor's plug-in says it is: fingerprint, description


class ActorBody:
    """The body of one Ray actor: one plug-in of ``kind`` built and started once (``started``, per kind). Start-up
    errors are kept and told by ``ready`` (a raising constructor would reach the driver as a dead actor with a
    traceback, not as one line)."""

    kind: ClassVar[registry.Kind] = "model"  # each body names its own

    def __init__(self, name: str, args: dict[str, Any], workdir: str | None, threads: int | None,
                 start: Any = None) -> None:
        self.plugin: Any = None
        self.identity: Identity | None = None
        self.error: tuple[bool, str] | None = None
        try:
            plugin = registry.get(self.kind, name).build(**args)
            plugin.workdir = None if workdir is None else Path(workdir)
            self.identity = self.started(plugin, start)
            self.plugin = plugin
        except Exception as exc:
            self.error = (isinstance(exc, UserError), f"{type(exc).__name__}: {exc}")
        if threads and "torch" in sys.modules:  # one intra-op thread per CPU the actor holds, not per CPU it sees
            sys.modules["torch"].set_num_threads(threads)

    def started(self, plugin: Any, start: Any) -> Identity:
        """Start ``plugin`` (load its weights) and say what it is."""
        raise NotImplementedError

    def ready(self) -> tuple[Identity | None, tuple[bool, str] | None]:
        return self.identity, self.error


@dataclass
class _Actor:
    slot: int
    handle: Any  # ray.actor.ActorHandle


class ActorPool:
    """``shards`` Ray actors of ``body`` (an ``ActorBody``), each holding plug-in ``name`` built with ``args``.

    ``address``: a running cluster (``ray start``; ``auto`` finds the one on this machine); None starts a local Ray
    for this run and stops it at ``aclose``. ``astart`` starts the actors; ``call`` waits for a free one. The
    identity (fingerprint and description) is the actors' own, and every actor must agree on it; with
    ``fingerprint`` given (the driver's), they must agree with it too."""

    def __init__(self, body: type[ActorBody], name: str, args: dict[str, Any], *, shards: int,
                 address: str | None = None, fingerprint: str | None = None) -> None:
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise UserError(f"--shards must be a positive integer, not {shards!r}")
        self._ray = import_ray()
        self.body, self.name, self.args = body, name, dict(args)
        self.what = f"{body.kind} '{name}'"
        self.shards, self.address = shards, address
        self.sharding = {"ray": {"shards": shards, "address": address}}
        self.identity: Identity | None = None  # the first actor's, once started
        self.restarts = 0  # actors started again after one died
        self._pinned = fingerprint  # the driver's fingerprint, where every actor must have it
        self._started: asyncio.Future[None] | None = None
        self._idle: asyncio.Queue[_Actor | None] = asyncio.Queue()
        self._actors: dict[int, _Actor] = {}
        self._reviving: set[asyncio.Task[None]] = set()
        self._owns_ray = False
        self._closing = False
        self._actor_class: Any = None  # ray.remote(body) with this run's options
        self._workdir: str | None = None
        self._start_arg: Any = None
        self._threads: int | None = None

    # -- life cycle -------------------------------------------------------------------------------------------
    async def astart(self, workdir: Path | None = None, start: Any = None) -> None:
        """Connect to (or start) Ray and start every actor (``start``: what the body's ``started`` needs); a
        start-up fault of the plug-in is raised here. Later calls wait for the first one."""
        if self._started is None:
            self._workdir = None if workdir is None else str(workdir)
            self._start_arg = start
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await asyncio.to_thread(self._connect)
        self._actor_class = self._ray.remote(self.body).options(**self._actor_options())
        actors = [self._spawn(slot) for slot in range(self.shards)]
        self._actors = {a.slot: a for a in actors}
        for actor in actors:
            identity = await self._ready(actor)
            # The actors' identity, not the driver's: a driver without the workers' GPUs resolves device=auto (and
            # so dtype) otherwise.
            self.identity = self.identity or identity
            self._idle.put_nowait(actor)

    def _connect(self) -> None:
        """Runs in a worker thread, which is why Ray leaves the process's SIGTERM handler alone: on the main
        thread ray.init installs its own (exit at once) over the runner's clean stop."""
        ray = self._ray
        if self.address is not None:
            reachable(self.address)
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
                raise UserError(f"cannot connect to the Ray cluster at {self.address!r}: {first_line(exc)}") \
                    from None
        self._owns_ray = True

    def _actor_options(self) -> dict[str, Any]:
        """One GPU per actor where the cluster has GPUs, else one CPU; the plug-ins named in $RRBENCH_PLUGINS
        travel, so an actor finds the same plug-ins as the driver."""
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
        # Ray restarts nothing by itself: a dead actor's call is failed here and its slot refilled (_replace).
        return {**need, "runtime_env": {"env_vars": env}, "max_restarts": 0, "max_task_retries": 0}

    def _spawn(self, slot: int) -> _Actor:
        handle = self._actor_class.remote(self.name, self.args, self._workdir, self._threads, self._start_arg)
        return _Actor(slot, handle)

    async def _ready(self, actor: _Actor) -> Identity:
        """The actor's identity once its plug-in has started; its start-up fault as one line."""
        try:
            identity, error = await actor.handle.ready.remote()
        except self._ray.exceptions.RayError as exc:
            raise RuntimeError(f"Ray actor {actor.slot} for {self.what} did not start: {first_line(exc)}") from None
        if error is not None:
            user, message = error
            text = f"{self.what} failed to start on Ray actor {actor.slot}: {message}"
            raise UserError(text) if user else RuntimeError(text)
        assert identity is not None
        fingerprint, description = identity
        expected = self._pinned or (self.identity[0] if self.identity else None)
        if expected is not None and fingerprint != expected:
            # Another rrbench, plug-in or device on that node: its answers would not be this run's.
            raise UserError(f"{self.what} on Ray actor {actor.slot} has fingerprint {fingerprint}, "
                            f"{'the driver' if self._pinned else 'the others'} {expected} (settings "
                            f"{description.get('settings', description.get('config'))}): install the same rrbench "
                            "and plug-ins on every node")
        return fingerprint, dict(description)

    def describe(self, fallback: dict[str, Any]) -> dict[str, Any]:
        """The plug-in as the actors built it (its device and dtype are theirs, not the driver's) with how it was
        sharded, for run.json; ``fallback`` (the driver's) until the actors have started."""
        return {**(self.identity[1] if self.identity else fallback), **self.sharding}

    def closing(self) -> None:
        """From now on a cancelled call is the run stopping, not a stuck actor: nothing is started again."""
        self._closing = True

    async def aclose(self) -> None:
        self._closing = True
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

    # -- calls ------------------------------------------------------------------------------------------------
    async def call(self, method: str, payload: Sequence[Any], failed: Callable[[FailureKind, str], A],
                   doing: str) -> list[A]:
        """``method(payload)`` on a free actor: its answers, one per item; ``failed`` answers for each item when
        its actor died (``doing``: what it was doing, for the message). What the plug-in raised is raised here."""
        actor = await self._idle.get()
        if actor is None:  # every actor died and none could be started again
            self._idle.put_nowait(None)
            return [failed(FailureKind.ERROR, "no Ray actor is left (they died and could not restart)")
                    for _ in payload]
        errors = self._ray.exceptions
        try:
            answers: list[A] = await getattr(actor.handle, method).remote(payload)
        except errors.RayActorError as exc:
            reason = death(exc)
            self._replace(actor, reason)
            return [failed(FailureKind.ERROR, f"Ray actor {actor.slot} died {doing} this batch: {reason}")
                    for _ in payload]
        except errors.RayTaskError as exc:
            self._idle.put_nowait(actor)
            cause = exc.cause
            # The plug-in's own exception, so the Batcher retries the batch one request at a time and records it
            # (DataError as data) as it does in one process.
            raise cause if isinstance(cause, BaseException) else RuntimeError(first_line(exc)) from None
        except asyncio.CancelledError:
            # Past the deadline, or the run stops: the actor may be stuck in the call. Killing it is the only stop.
            if not self._closing:
                self._replace(actor, "its call was cancelled (past --call-timeout)")
            raise
        except BaseException:
            self._idle.put_nowait(actor)
            raise
        self._idle.put_nowait(actor)
        return answers

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


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"ray is not installed: {INSTALL_HINT} (needed by --ray)") from None
    return ray


def reachable(address: str) -> None:
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


def death(exc: BaseException) -> str:
    """Why Ray says an actor died, in one line: its first sentence, where, and the worker's exit type and detail."""
    text = str(exc)
    where = re.search(r"pid: (\d+)\s+(?:.*\s+)?ip: (\S+)", text)
    exit_type = re.search(r"Worker exit type: (\S+)", text)
    detail = re.search(r"Worker exit detail: (.*?\.)(?:\s|$)", text)
    parts = [first_line(exc).rstrip(".")]
    if where:
        parts.append(f"(pid {where.group(1)} on {where.group(2)})")
    if exit_type:
        parts.append(f"exit {exit_type.group(1)}" + (f": {detail.group(1)}" if detail else ""))
    return " ".join(parts)


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:500] if lines else type(exc).__name__
