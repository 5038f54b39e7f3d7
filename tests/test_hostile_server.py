"""Hostile or broken servers, through the CLI a user types (docs/reliability.md, "Hostile or broken servers").

The server is tests/hostile_server.py, built to misbehave on purpose: it refuses the key (401/403), trickles a
byte at a time, floods an endless body, redirects elsewhere, or refuses requests with a 4xx. rrbench must stop at
once with one line when the key is refused, hold no request past ``-M timeout_s``, read no body past its limit,
never follow a redirect, and never retry a 4xx other than 408 and 429.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from rrbench import cli
from rrbench.backends._base import BackendError, Sampling, text_part, user_message
from rrbench.backends.openai_http import MAX_BODY_BYTES, OpenAIHTTPBackend, probe_models
from rrbench.redact import TEXT_CAP
from rrbench.types import FailureKind
from tests.conftest import rrbench
from tests.hostile_server import HostileServer


def _run(tmp_path: Path, env: dict[str, str], url: str, *args: str, n: int = 4,
         timeout: float = 120) -> tuple[CompletedProcess[str], str]:
    """`rrbench run` of gpt-4o at ``url`` with a random OPENAI_API_KEY; the key is returned with the result."""
    key = f"sk-{secrets.token_urlsafe(24)}"
    done = rrbench("run", "--task", "sanity", "-T", f"n={n}", "-T", "size=32", "--model", "gpt-4o",
                   "--base-url", url, "-M", "max_retries=0", "--output", str(tmp_path / "runs"), *args,
                   env={**env, "OPENAI_API_KEY": key}, cwd=tmp_path, timeout=timeout)
    return done, key


def _samples(tmp_path: Path) -> list[dict[str, Any]]:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def _details(sample: dict[str, Any]) -> list[str]:
    return [j.get("failure_detail", "") for t in sample["trials"] for j in t["judgements"] if j.get("failure")]


def _record(tmp_path: Path) -> dict[str, Any]:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return dict(json.loads((run_dir / "run.json").read_text()))


@pytest.mark.parametrize("status", ["401", "403"])
def test_a_refused_key_stops_the_run_at_once_with_one_line(tmp_path: Path, cli_env: dict[str, str],
                                                           status: str) -> None:
    with HostileServer(status) as server:
        done, key = _run(tmp_path, cli_env, server.url, n=200)
    errors = [line for line in done.stderr.splitlines() if line.startswith("rrbench: error:")]
    assert done.returncode == 2, done.stderr  # a user error: the key (or its variable) is wrong
    assert errors == [f"rrbench: error: the server refused the API key (HTTP {status} from {server.url}): "
                      "check $OPENAI_API_KEY"], done.stderr
    assert "Traceback" not in done.stderr and key not in done.stderr + done.stdout
    # Stopped at the first refusal: at most the requests already in flight (gpt-4o's concurrency is 16), not 200.
    assert 1 <= len(server.requests) <= 32
    record = _record(tmp_path)
    assert record["status"] == "failed" and "refused the API key" in record["error"]


def test_a_refusal_after_successes_is_that_samples_failure(tmp_path: Path, cli_env: dict[str, str]) -> None:
    # One sample at a time: three verdicts, then the key stops working (revoked mid-run).
    with HostileServer(lambda number: "ok" if number <= 3 else "401") as server:
        done, _ = _run(tmp_path, cli_env, server.url, "--concurrency", "1", n=6)
    assert done.returncode == 0, done.stderr  # the run went on to the end; failures are counted, not fatal
    assert _record(tmp_path)["counts"]["failed_by_kind"] == {"auth": 3}
    assert len(server.requests) == 6  # every sample was asked once: no retry of a refusal
    refused = [s for s in _samples(tmp_path) if s.get("failure") == "auth"]
    assert all("check $OPENAI_API_KEY" in d for s in refused for d in _details(s))


def test_a_trickling_server_cannot_hold_a_request_past_timeout_s(tmp_path: Path, cli_env: dict[str, str]) -> None:
    # One byte every 0.5 s: httpx's per-read timeout (2 s) alone would wait for the whole megabyte (6 days).
    with HostileServer("trickle", interval=0.5) as server:
        started = time.monotonic()
        done, _ = _run(tmp_path, cli_env, server.url, "-M", "timeout_s=2", n=3)
        wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    samples = _samples(tmp_path)
    assert [s["failure"] for s in samples] == ["timeout"] * 3
    assert all(s["latency_s"] < 2 + 1.5 for s in samples)  # the deadline, plus scheduling
    assert wall < 30  # the whole command, interpreter start included
    assert server.sent >= 3  # the server did trickle: bytes arrived well within every per-read timeout


@pytest.mark.parametrize("mode", ["flood", "flood-declared"])
def test_a_huge_body_is_a_failure_without_reading_it_all(tmp_path: Path, cli_env: dict[str, str],
                                                         mode: str) -> None:
    with HostileServer(mode) as server:
        done, _ = _run(tmp_path, cli_env, server.url, n=1)
    assert done.returncode == 0, done.stderr
    (sample,) = _samples(tmp_path)
    assert sample["failure"] == "http" and "answer too large" in _details(sample)[0]
    # The client hung up at the limit (an endless body) or at the announced length: what the server managed to
    # write is the limit plus what the sockets' buffers held, never the 1 GiB it offered.
    assert server.sent < (MAX_BODY_BYTES if mode == "flood-declared" else 3 * MAX_BODY_BYTES)


@pytest.mark.parametrize("status", ["301", "302", "307", "308"])
def test_a_redirect_is_refused_and_never_followed(tmp_path: Path, cli_env: dict[str, str], status: str) -> None:
    with HostileServer("ok") as elsewhere, \
            HostileServer(status, location=f"{elsewhere.url}/chat/completions") as server:
        done, _ = _run(tmp_path, cli_env, server.url, n=2)
    assert done.returncode == 0, done.stderr
    samples = _samples(tmp_path)
    assert [s["failure"] for s in samples] == ["http"] * 2
    assert all(f"redirect to {elsewhere.url}/chat/completions refused" in d for s in samples for d in _details(s))
    assert elsewhere.requests == []  # the key never travelled to the other host
    assert len(server.requests) == 2  # and a redirect is not retried


def test_a_long_answer_is_judged_whole_and_stored_capped(tmp_path: Path, cli_env: dict[str, str]) -> None:
    with HostileServer("long") as server:
        done, _ = _run(tmp_path, cli_env, server.url, n=1)
    assert done.returncode == 0, done.stderr
    (sample,) = _samples(tmp_path)
    (judgement,) = sample["trials"][0]["judgements"]
    assert judgement["verdict"] == "A" and "failure" not in sample  # the verdict at the very end was read
    assert "capped:raw" in judgement["flags"] and "capped:rationale" in judgement["flags"]
    assert len(judgement["raw"]) < TEXT_CAP + 100
    assert judgement["raw"].endswith(f"[rrbench: cut to the first {TEXT_CAP:,} of 1,500,007 characters]")
    assert len(server.requests) == 1


def _ask(url: str, retries: int) -> BackendError:
    async def main() -> BackendError:
        backend = OpenAIHTTPBackend([url], "m", max_retries=retries, backoff_s=0.01)
        try:
            await backend.chat([user_message(text_part("hi"))], Sampling())
        except BackendError as exc:
            return exc
        finally:
            await backend.close()
        raise AssertionError("the server answered every request with an error")

    return asyncio.run(main())


@pytest.mark.parametrize("status", ["400", "401", "403", "404", "405", "413", "422"])
def test_a_4xx_is_never_retried(status: str) -> None:
    # A bad request fails again identically: retrying it only multiplies the load (and, with a key, the bill).
    with HostileServer(status) as server:
        error = _ask(server.url, retries=3)
    assert len(server.requests) == 1
    assert error.kind is (FailureKind.AUTH if status in ("401", "403") else FailureKind.HTTP)


@pytest.mark.parametrize("status", ["408", "429", "500", "503"])
def test_a_timeout_rate_limit_or_5xx_is_retried(status: str) -> None:
    with HostileServer(status) as server:
        error = _ask(server.url, retries=3)
    assert len(server.requests) == 4  # the first try and three retries
    assert error.kind is (FailureKind.RATE_LIMITED if status == "429" else FailureKind.HTTP)


def test_the_doctor_probe_follows_no_redirect_and_shows_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    key, password, query_key = (f"sk-{secrets.token_urlsafe(16)}" for _ in range(3))
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with HostileServer("ok") as elsewhere, HostileServer("307", location=f"{elsewhere.url}/models") as server:
        ok, detail = probe_models(server.url, "OPENAI_API_KEY")
        assert not ok and f"HTTP 307 redirect to {elsewhere.url}/models, not followed" in detail
        assert elsewhere.requests == [] and len(server.requests) == 1  # the key went nowhere else
    with HostileServer("ok") as server:
        parts = urllib.parse.urlsplit(server.url)
        url = parts._replace(netloc=f"admin:{password}@{parts.netloc}", query=f"key={query_key}").geturl()
        ok, detail = probe_models(url, "OPENAI_API_KEY")
        assert ok and detail == "serves no models"  # reached, as the run would (Basic auth, the query kept)
        (seen,) = server.requests
        assert seen.headers["Authorization"].startswith("Basic ") and seen.path == f"/v1/models?key={query_key}"
    with HostileServer("401") as server:
        assert probe_models(server.url, "OPENAI_API_KEY") == (False, "refused the API key (HTTP 401): "
                                                                     "check $OPENAI_API_KEY")
    with HostileServer("trickle", interval=0.2) as server:
        started = time.monotonic()
        assert probe_models(server.url, None, timeout_s=1) == (False, "no complete answer within 1 s")
        assert time.monotonic() - started < 3  # a byte every 0.2 s never trips urllib's per-read timeout
    dead = f"http://admin:{password}@127.0.0.1:9/v1?key={query_key}"
    ok, detail = probe_models(dead, "OPENAI_API_KEY")
    assert not ok and password not in detail and query_key not in detail and key not in detail


def test_doctor_follows_no_redirect_and_prints_no_credentials(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    key, password = f"sk-{secrets.token_urlsafe(16)}", f"pw-{secrets.token_urlsafe(16)}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with HostileServer("ok") as elsewhere, HostileServer("307", location=f"{elsewhere.url}/models") as server:
        url = server.url.replace("http://", f"http://admin:{password}@")
        code = cli.main(["doctor", "--model", "gpt-4o", "--base-url", url])
        out, err = capsys.readouterr()
    assert code == 1 and "redirect" in out  # a FAIL line: the base URL is wrong
    assert elsewhere.requests == []
    assert password not in out + err and key not in out + err
