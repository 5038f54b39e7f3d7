"""A fault-injecting HTTP/1.1 reverse proxy that sits between rrbench and a real OpenAI-compatible server.

Only the faults are fake: every request the plan lets through goes to the real server and its real answer comes
back. A plan looks at each request (its arrival number, its body and how often these exact bytes came before) and
names a fault or None:

* ``5xx``: answer 503 without forwarding;
* ``timeout``: hold the connection open without answering (until the client gives up or ``hold_s`` passes);
* ``429``: answer 429 with ``Retry-After: <retry_after>`` without forwarding;
* ``truncated``: forward, then send the real status and headers with the full Content-Length but only half of
  the body, and close;
* ``drop``: close the connection without any response.

Everything the proxy saw is recorded (``hits``: request, fault, arrival time), so tests compare what the client
recorded with what was really injected. The proxy runs its own event loop in a background thread, so it serves
blocking callers and subprocesses alike.

    with FaultProxy(server_url, by_number({1: "5xx"})) as proxy:
        ... point the client at proxy.url ...
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

FAULTS = ("5xx", "timeout", "429", "truncated", "drop")
# Headers that describe one hop, not the message: the proxy sets its own on each side.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
              "content-length"}
Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Request:
    number: int  # 1-based arrival order over the proxy's life
    attempt: int  # 0 the first time these exact bytes arrive, 1 for the first identical retry, ...
    method: str
    target: str
    body: bytes


@dataclass(frozen=True)
class Hit:
    request: Request
    fault: str | None
    at: float  # time.monotonic() on arrival


Plan = Callable[[Request], "str | None"]
Answer = Callable[[Request], "str | None"]


def by_number(faults: Mapping[int, str]) -> Plan:
    """A fault for chosen arrival numbers (1-based), every other request forwarded."""
    _check(faults.values())
    return lambda request: faults.get(request.number)


def seeded(probabilities: Mapping[str, float], seed: int = 0, key: Callable[[Request], bytes] | None = None
           ) -> Plan:
    """Each fault with its probability, drawn from a hash of (seed, attempt, key) rather than arrival order.

    So the same requests get the same faults however a concurrent client interleaves them, and a retry of the
    same request draws again. ``key`` defaults to the body; pass a part of it that is stable across sessions
    (the body may hold a temporary path, e.g. the model name).
    """
    _check(probabilities)
    if sum(probabilities.values()) > 1:
        raise ValueError("fault probabilities add up to more than 1")

    def plan(request: Request) -> str | None:
        content = request.body if key is None else key(request)
        digest = hashlib.sha256(f"{seed}:{request.attempt}:".encode() + content).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        for fault, p in probabilities.items():
            if draw < p:
                return fault
            draw -= p
        return None

    return plan


def _check(faults: object) -> None:
    unknown = set(faults) - set(FAULTS)  # type: ignore[call-overload]
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)} (known: {', '.join(FAULTS)})")


class FaultProxy:
    """``plan`` and ``answer`` may be replaced while the proxy runs (e.g. faults off before a resumed run).

    ``answer``, when it returns text for a forwarded request, replaces the completion's content (finish reason
    ``stop``) in the server's real response: a random-weight server never writes a valid critique, and a resume
    test needs samples that succeed.
    """

    def __init__(self, upstream: str, plan: Plan | None = None, *, answer: Answer | None = None,
                 retry_after: float = 0, hold_s: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port[/path], not {upstream!r}")
        self.upstream_host, self.upstream_port, self.prefix = parts.hostname, parts.port, parts.path.rstrip("/")
        self.plan = plan
        self.answer = answer
        self.retry_after = retry_after
        self.hold_s = hold_s
        self.port = 0
        self._hits: list[Hit] = []
        self._attempts: Counter[bytes] = Counter()
        self._lock = threading.RLock()  # a plan may read hits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []  # the proxy's own failures (a bad plan, upstream down): re-raised

    # ------------------------------------------------------------------------------------------------ records
    @property
    def url(self) -> str:
        """The upstream base URL as seen through the proxy (same path, e.g. ``.../v1``)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def injected(self, since: int = 0) -> Counter[str]:
        """How many times each fault was injected (from hit number ``since`` on)."""
        return Counter(h.fault for h in self.hits[since:] if h.fault is not None)

    def _register(self, method: str, target: str, body: bytes) -> tuple[Request, str | None]:
        key = hashlib.sha256(f"{method} {target}\n".encode() + body).digest()
        with self._lock:
            request = Request(len(self._hits) + 1, self._attempts[key], method, target, body)
            self._attempts[key] += 1
            plan = self.plan
            fault = plan(request) if plan is not None else None
            if fault is not None and fault not in FAULTS:
                raise ValueError(f"plan returned unknown fault {fault!r}")
            self._hits.append(Hit(request, fault, time.monotonic()))
        return request, fault

    # ------------------------------------------------------------------------------------------------ life
    def __enter__(self) -> FaultProxy:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._connection, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        if self.errors and kind is None:
            raise RuntimeError(f"the fault proxy failed {len(self.errors)} time(s)") from self.errors[0]

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()  # held (timeout) connections end now, not after hold_s
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    # ------------------------------------------------------------------------------------------------ serving
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._exchange(reader, writer):  # keep-alive: one connection, many requests
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away mid-request: just close
        except Exception as exc:
            self.errors.append(exc)  # to the client it looks like a drop; the test hears of it on exit
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close."""
        head = await _read_head(reader)
        if head is None:
            return False
        start_line, headers = head
        method, target, version = start_line.split(" ", 2)
        body = await _read_body(reader, headers, has_body=True)
        request, fault = self._register(method, target, body)
        keep = version == "HTTP/1.1" and _get(headers, "connection").lower() != "close"
        if fault == "drop":
            return False
        if fault == "timeout":
            # Never answer: wait for the client to give up (EOF) or for hold_s.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(), self.hold_s)
            return False
        if fault in ("5xx", "429"):
            status = (503, "Service Unavailable") if fault == "5xx" else (429, "Too Many Requests")
            extra = [("Retry-After", f"{self.retry_after:g}")] if fault == "429" else []
            payload = json.dumps({"error": {"message": f"injected {fault}"}}).encode()
            await _respond(writer, status, [("Content-Type", "application/json"), *extra], payload, keep)
            return keep
        status, headers_out, payload = await self._forward(method, target, headers, body)
        if fault == "truncated":
            await _respond(writer, status, headers_out, payload, keep=False, cut=len(payload) // 2)
            return False
        payload = self._rewrite(request, payload)
        await _respond(writer, status, headers_out, payload, keep)
        return keep

    async def _forward(self, method: str, target: str, headers: Headers, body: bytes) -> tuple[
            tuple[int, str], Headers, bytes]:
        # One upstream connection per request: a fault that closes the client's connection never leaves the
        # upstream one half-read.
        try:
            return await self._upstream(method, target, headers, body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise RuntimeError(f"upstream {self.upstream_host}:{self.upstream_port} failed: {exc!r}") from exc

    async def _upstream(self, method: str, target: str, headers: Headers, body: bytes) -> tuple[
            tuple[int, str], Headers, bytes]:
        reader, writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() != "host"]
            lines = [f"{method} {target} HTTP/1.1", f"Host: {self.upstream_host}:{self.upstream_port}",
                     *(f"{k}: {v}" for k, v in kept), f"Content-Length: {len(body)}", "Connection: close"]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            head = await _read_head(reader)
            if head is None:
                raise ConnectionError("upstream closed without a response")
            status_line, response_headers = head
            _, code, *reason = status_line.split(" ", 2)
            status = (int(code), reason[0] if reason else "")
            no_body = method == "HEAD" or status[0] in (204, 304) or status[0] < 200
            payload = await _read_body(reader, response_headers, has_body=not no_body, to_eof=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return status, [(k, v) for k, v in response_headers if k.lower() not in HOP_BY_HOP], payload

    def _rewrite(self, request: Request, payload: bytes) -> bytes:
        answer = self.answer
        text = answer(request) if answer is not None else None
        if text is None:
            return payload
        completion = json.loads(payload)
        choice = completion["choices"][0]
        choice["message"]["content"] = text
        choice["finish_reason"] = "stop"
        return json.dumps(completion).encode()


# ---------------------------------------------------------------------------------------------------- HTTP/1.1


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, Headers] | None:
    """The start line and headers, or None at a clean EOF between requests."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    start, *lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return start, headers


async def _read_body(reader: asyncio.StreamReader, headers: Headers, *, has_body: bool, to_eof: bool = False
                     ) -> bytes:
    """A Content-Length or chunked body; without either, a response runs to EOF and a request has none."""
    if not has_body:
        return b""
    if "chunked" in _get(headers, "transfer-encoding").lower():
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = _get(headers, "content-length")
    if length:
        return await reader.readexactly(int(length))
    return await reader.read() if to_eof else b""


async def _respond(writer: asyncio.StreamWriter, status: tuple[int, str], headers: Headers, body: bytes,
                   keep: bool, cut: int | None = None) -> None:
    """Send a response with the body's full Content-Length; ``cut`` sends only that many bytes of it."""
    lines = [f"HTTP/1.1 {status[0]} {status[1]}".rstrip(), *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}", f"Connection: {'keep-alive' if keep else 'close'}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body[:cut])
    await writer.drain()


def _get(headers: Headers, name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")
