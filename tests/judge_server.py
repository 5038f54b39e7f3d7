"""A real OpenAI-compatible chat server on 127.0.0.1 whose answers a test script writes: the judge of a benchmark.

The generation benchmarks' judges (Gemini, GPT-4.1, GPT-5) answer in formats a tiny random-weight model never
produces, so the conformance tests script the content and keep everything else real: rrbench's HTTP client, its
retries, its cache and the request bodies it sends go over a socket to this server.

``ScriptedJudge(answer)``: ``answer(request)`` gets a ``Request`` (the parsed body, its text parts, its images as
bytes with their declared MIME types) and returns the answer's text, or ``(status, text)`` for an HTTP error
(``(200, text)`` with ``finish="length"`` style control through ``Reply``). ``die_after=n`` answers n requests and
then refuses connections (the server is shut down), as a judge server that dies mid-run; ``port=`` binds a given
port, so a test can bring a dead server back at its address. Every request is kept in ``requests``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Image:
    mime: str
    data: bytes


@dataclass(frozen=True)
class Request:
    body: dict[str, Any]
    texts: list[str]
    images: list[Image]
    roles: list[str] = field(default_factory=list)  # each message's role, in order
    # as it came over the wire: the request target (absolute through a proxy), the headers, the body's bytes
    target: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    @property
    def parts(self) -> list[str]:
        """The content parts in order: each text, and ``<image>`` where an image stands."""
        out: list[str] = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                out.append(content)
                continue
            out += ["<image>" if p.get("type") == "image_url" else p.get("text", "") for p in content or []]
        return out


@dataclass(frozen=True)
class Reply:
    """An answer with control over the envelope: ``finish`` (``length``: cut at max_tokens), or an HTTP ``status``."""

    text: str = ""
    status: int = 200
    finish: str = "stop"


Answer = Callable[[Request], "str | Reply"]


def parse(body: dict[str, Any]) -> Request:
    texts: list[str] = []
    images: list[Image] = []
    roles: list[str] = []
    for message in body.get("messages", []):
        roles.append(str(message.get("role")))
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"]
                head, _, data = url.partition(",")
                images.append(Image(head.removeprefix("data:").split(";")[0], base64.b64decode(data)))
    return Request(body, texts, images, roles)


class ScriptedJudge:
    def __init__(self, answer: Answer, *, die_after: int | None = None, model: str = "judge", port: int = 0) -> None:
        self.answer = answer
        self.die_after = die_after
        self.model = model
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ScriptedJudge:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Shut down: from now on connections are refused."""
        if self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread = None

    def _die_soon(self) -> None:
        threading.Thread(target=self.stop, daemon=True).start()


def completion(text: str, finish: str = "stop") -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "model": "judge",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": finish}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4)}}).encode()


def _handler(owner: ScriptedJudge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: else each answer waits ~40 ms for an ACK

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # /v1/models: what a reachability check asks
            self._send(200, json.dumps({"object": "list", "data": [{"id": owner.model, "object": "model"}]}).encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            request = dataclasses.replace(parse(json.loads(raw or b"{}")), target=self.path, raw=raw,
                                          headers={k.lower(): v for k, v in self.headers.items()})
            with owner._lock:
                owner.requests.append(request)
                served = len(owner.requests)
            if owner.die_after is not None and served > owner.die_after:
                self.close_connection = True
                self.connection.close()  # a server going down: the connection is cut, no answer
                owner._die_soon()
                return
            reply = owner.answer(request)
            if isinstance(reply, str):
                reply = Reply(reply)
            if reply.status != 200:
                self._send(reply.status, json.dumps({"error": {"message": reply.text}}).encode())
            else:
                self._send(200, completion(reply.text, reply.finish))

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
