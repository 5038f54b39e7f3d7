"""Which HTTP failures the client retries, against a real local server that counts requests
(docs/mutation.md: rrbench/backends/openai_http.py).

The rule (module docstring of openai_http.py): timeouts, 408, 429 and 5xx are transient and retried up to
``max_retries`` times; any other 4xx fails again identically, so it is sent once. With ``max_retries=2`` a transient
failure therefore costs 3 requests and a final one 1. Only the server saying it is overloaded (429, 5xx) halves the
number of requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rrbench.backends._base import BackendError, Completion, Sampling, text_part, user_message
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.types import FailureKind
from tests.conftest import free_port

OK_BODY = {"choices": [{"message": {"content": "[[A>B]]"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 7, "completion_tokens": 2}}


class _Server:
    """Answers the n-th request with ``plan[n]`` (the last entry repeats): a status code, or "slow" (no answer
    for two seconds, then 200)."""

    def __init__(self) -> None:
        self.plan: list[int | str] = [200]  # a status, "slow" or "list"
        self.count = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    step = outer.plan[min(outer.count, len(outer.plan) - 1)]
                    outer.count += 1
                payload: object = {"error": {"message": "no"}}
                if step == "slow":
                    time.sleep(2.0)
                    step = 200
                if step == "list":  # a 200 whose content is no text
                    payload, step = {"choices": [{"message": {"content": ["a", "b"]}}]}, 200
                elif step == 200:
                    payload = OK_BODY
                body = json.dumps(payload).encode()
                self.send_response(int(step))
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                if step in (429, 503):
                    self.send_header("retry-after", "0")
                if 300 <= int(step) < 400:
                    self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.end_headers()
                with contextlib.suppress(OSError):  # the client may have given up (timeout test)
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def _chat(url: str, **kwargs: object) -> tuple[Completion | BackendError, OpenAIHTTPBackend]:
    options: dict = {"max_retries": 2, "backoff_s": 0.0, "concurrency": 8, **kwargs}
    backend = OpenAIHTTPBackend([url], "judge", **options)

    async def main() -> Completion | BackendError:
        try:
            return await backend.chat([user_message(text_part("which is better?"))], Sampling(max_tokens=4))
        except BackendError as exc:
            return exc
        finally:
            await backend.close()

    return asyncio.run(main()), backend


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_sent_once(server: _Server, status: int) -> None:
    server.plan = [status]
    out, backend = _chat(server.url)
    assert isinstance(out, BackendError)
    assert server.count == 1
    assert backend.limit.limit == 8  # a refusal is no sign of overload
    assert "redirect" not in str(out)


@pytest.mark.parametrize(("status", "kind"), [(408, FailureKind.HTTP), (429, FailureKind.RATE_LIMITED),
                                              (500, FailureKind.HTTP), (502, FailureKind.HTTP),
                                              (503, FailureKind.HTTP)])
def test_a_transient_failure_is_retried_max_retries_times(server: _Server, status: int, kind: FailureKind) -> None:
    server.plan = [status]
    out, _ = _chat(server.url)
    assert isinstance(out, BackendError) and out.kind is kind
    assert server.count == 3
    assert f"{status}" in str(out)


def test_a_retry_that_succeeds_returns_the_answer(server: _Server) -> None:
    server.plan = [503, 502, 200]
    out, _ = _chat(server.url)
    assert isinstance(out, Completion)
    assert (out.text, out.finish_reason, out.usage) == ("[[A>B]]", "stop", {"prompt_tokens": 7, "completion_tokens": 2})
    assert server.count == 3


def test_no_retries_means_one_request(server: _Server) -> None:
    server.plan = [503]
    out, _ = _chat(server.url, max_retries=0)
    assert isinstance(out, BackendError) and server.count == 1


@pytest.mark.parametrize(("status", "halved"), [(429, True), (500, True), (503, True), (408, False)])
def test_only_overload_halves_the_requests_in_flight(server: _Server, status: int, halved: bool) -> None:
    server.plan = [status, 200]
    out, backend = _chat(server.url)
    assert isinstance(out, Completion) and server.count == 2
    assert backend.limit.limit == (4 if halved else 8)


def test_a_timeout_is_retried_as_a_timeout(server: _Server) -> None:
    server.plan = ["slow"]
    out, backend = _chat(server.url, timeout_s=0.3, max_retries=1)
    assert isinstance(out, BackendError) and out.kind is FailureKind.TIMEOUT
    assert server.count == 2
    assert backend.limit.limit == 8  # a slow answer is not the server saying it is overloaded


def test_nothing_listening_is_an_http_failure() -> None:
    out, _ = _chat(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    assert isinstance(out, BackendError) and out.kind is FailureKind.HTTP


def test_successes_grow_the_requests_in_flight_back_one_at_a_time(server: _Server) -> None:
    # a 503 halves 8 to 4; then every 8 successes in a row (the window) add one slot back
    server.plan = [503, 200]
    backend = OpenAIHTTPBackend([server.url], "judge", max_retries=2, backoff_s=0.0, concurrency=8)
    sampling, messages = Sampling(max_tokens=4), [user_message(text_part("which is better?"))]

    async def main() -> list[int]:
        limits = []
        try:
            for _ in range(9):
                await backend.chat(messages, sampling)
                limits.append(backend.limit.limit)
        finally:
            await backend.close()
        return limits

    assert asyncio.run(main()) == [4, 4, 4, 4, 4, 4, 4, 5, 5]


@pytest.mark.parametrize("status", [300, 301, 302, 307, 308])
def test_a_redirect_is_refused_not_followed_or_retried(server: _Server, status: int) -> None:
    server.plan = [status]
    out, _ = _chat(server.url)
    assert isinstance(out, BackendError) and out.kind is FailureKind.HTTP
    assert f"HTTP {status} redirect" in str(out) and "refused" in str(out)
    assert server.count == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_an_auth_failure_naming_the_variable(server: _Server, status: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-test-value")
    server.plan = [status]
    out, _ = _chat(server.url, api_key_env="JUDGE_KEY")
    assert isinstance(out, BackendError) and out.kind is FailureKind.AUTH
    assert "$JUDGE_KEY" in str(out) and "sk-test-value" not in str(out)
    assert server.count == 1


def test_an_answer_whose_content_is_no_text_is_malformed(server: _Server) -> None:
    server.plan = ["list"]
    out, _ = _chat(server.url, max_retries=0)
    assert isinstance(out, BackendError) and "malformed response body" in str(out)


def test_an_answer_records_its_latency(server: _Server) -> None:
    out, _ = _chat(server.url)
    assert isinstance(out, Completion) and out.latency_s > 0


def test_requests_go_to_the_least_busy_server_and_are_counted_back() -> None:
    """One request at a time: none is in flight when the next is sent, so each goes to the first base URL."""
    first, second = _Server(), _Server()
    try:
        backend = OpenAIHTTPBackend([first.url, second.url], "judge", max_retries=0)
        sampling, messages = Sampling(max_tokens=4), [user_message(text_part("which is better?"))]

        async def main() -> None:
            try:
                for _ in range(4):
                    await backend.chat(messages, sampling)
            finally:
                await backend.close()

        asyncio.run(main())
        assert (first.count, second.count) == (4, 0)
    finally:
        first.close()
        second.close()


def _concurrent(server: _Server, concurrency: int, n: int = 2) -> OpenAIHTTPBackend:
    backend = OpenAIHTTPBackend([server.url], "judge", max_retries=3, backoff_s=0.0, concurrency=concurrency)
    sampling, messages = Sampling(max_tokens=4), [user_message(text_part("which is better?"))]

    async def main() -> None:
        try:
            done = await asyncio.gather(*(backend.chat(messages, sampling) for _ in range(n)))
            assert all(c.text == "[[A>B]]" for c in done)
        finally:
            await backend.close()

    asyncio.run(main())
    return backend


def test_one_overload_burst_halves_the_limit_once(server: _Server) -> None:
    # both requests are in flight when their 503s come back: the second was sent before the first cut
    server.plan = [503, 503, 200]
    backend = _concurrent(server, concurrency=2)
    assert (backend.limit.epoch, backend.limit.limit) == (1, 1)


def test_an_overload_met_after_the_last_cut_cuts_again(server: _Server) -> None:
    # one slot: the second request waits for it and is sent after the first 503's cut, so its 503 is news
    server.plan = [503, 503, 200]
    backend = _concurrent(server, concurrency=1)
    assert backend.limit.epoch == 2


def test_requests_in_flight_spread_over_the_servers() -> None:
    first, second = _Server(), _Server()
    try:
        backend = OpenAIHTTPBackend([first.url, second.url], "judge", max_retries=0, concurrency=2)
        sampling, messages = Sampling(max_tokens=4), [user_message(text_part("which is better?"))]

        async def main() -> None:
            try:
                await asyncio.gather(*(backend.chat(messages, sampling) for _ in range(2)))
            finally:
                await backend.close()

        asyncio.run(main())
        assert (first.count, second.count) == (1, 1)
    finally:
        first.close()
        second.close()
