"""A purpose-built misbehaving OpenAI-compatible server on 127.0.0.1, for what a real server cannot do on purpose.

Each request gets the behaviour its plan names (``plan(n)`` for the n-th request, 1-based, or one name for all):

* ``ok``: a valid 4-way verdict, ``[[A>B]]``;
* ``echo``: 200 whose content echoes the request's headers (the key also base64- and URL-encoded, as a careless
  server's debug page might) and its body, then a valid verdict, so the echo is a successful, cached answer;
* ``echo-error``: 500 whose body starts with the request's headers;
* ``long``: 200 whose content is 1.5 million characters of rambling, then a valid verdict;
* ``trickle``: 200 announcing a 1 MB body, then one byte per ``interval`` seconds until the client hangs up;
* ``flood`` / ``flood-declared``: 200 and a body without end (close-delimited, or announcing 1 GiB), written until
  the client hangs up; ``sent`` counts the body bytes that went out;
* a status code (``"401"``, ``"400"``, ``"503"``, ``"307"`` ...): that status with a small JSON error; a 30x
  carries ``Location: <location>``.

Every request is kept in ``requests`` (path with query, headers, body).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

VERDICT = "[[A>B]]"
CHUNK = b"x" * 65536
FLOOD_CAP = 2**30  # a client that never hangs up still ends the test


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class HostileServer:
    def __init__(self, plan: str | Callable[[int], str], *, location: str = "", interval: float = 1.0) -> None:
        self.plan = plan
        self.location = location
        self.interval = interval
        self.requests: list[Seen] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _mode(self, seen: Seen) -> str:
        with self._lock:
            self.requests.append(seen)
            number = len(self.requests)
        return self.plan if isinstance(self.plan, str) else self.plan(number)

    def _count(self, n: int) -> None:
        with self._lock:
            self.sent += n


def completion(content: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()


def echo(seen: Seen) -> str:
    """The request's headers, the key in the encodings a server might print it in, and the body."""
    lines = [f"{name}: {value}" for name, value in seen.headers.items()]
    block = "\n".join(lines)
    auth = seen.headers.get("Authorization", "")
    key = auth.split(" ", 1)[-1]
    forms = [key, base64.b64encode(key.encode()).decode(), base64.b64encode(auth.encode()).decode(),
             urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key),
             base64.b64encode(block.encode()).decode(), base64.urlsafe_b64encode(f"x{block}".encode()).decode()]
    return "\n".join([block, f"path: {seen.path}", *forms, seen.body.decode("utf-8", "replace")])


def _handler(owner: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet test output

        def do_GET(self) -> None:
            self._answer(Seen(self.path, dict(self.headers.items()), b""))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(Seen(self.path, dict(self.headers.items()), body))

        def _answer(self, seen: Seen) -> None:
            mode = owner._mode(seen)
            try:
                if mode == "ok":
                    self._send(200, completion(VERDICT))
                elif mode == "echo":
                    self._send(200, completion(f"{echo(seen)}\n{VERDICT}"))
                elif mode == "long":
                    self._send(200, completion("x" * 1_500_000 + VERDICT))
                elif mode == "echo-error":
                    self._send(500, echo(seen).encode())
                elif mode == "trickle":
                    self._stream(10**6, owner.interval, b" ")
                elif mode in ("flood", "flood-declared"):
                    self._stream(FLOOD_CAP if mode == "flood-declared" else None, 0, CHUNK)
                else:
                    status = int(mode)
                    headers = {"Location": owner.location} if 300 <= status < 400 else {}
                    self._send(status, json.dumps({"error": {"message": f"status {status}"}}).encode(), headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: what it should do with a trickle or a flood

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            owner._count(len(body))

        def _stream(self, declared: int | None, interval: float, chunk: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declared is not None:
                self.send_header("Content-Length", str(declared))
            self.end_headers()
            written = 0
            while written < FLOOD_CAP:
                self.wfile.write(chunk)
                self.wfile.flush()
                written += len(chunk)
                owner._count(len(chunk))
                if interval:
                    time.sleep(interval)

    return Handler
