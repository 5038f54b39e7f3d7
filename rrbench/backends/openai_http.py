"""OpenAI-compatible HTTP: vLLM servers (one or many data-parallel replicas), Gemini's and OpenAI's endpoints.

One shared async connection pool; requests go to the least busy base URL; transient failures (timeouts, dropped
connections, 429, 5xx) are retried with exponential backoff and full jitter, honouring Retry-After; the number of
requests in flight shrinks on 429/5xx and grows back while requests succeed (AIMD), so a crowded server is not
hammered. Images travel as data URIs of their original bytes; only images above ``max_pixels`` are re-encoded
(downscaled), and the request records that it happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import random
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from rrbench.backends._base import Backend, BackendError, Completion, Message, Sampling
from rrbench.registry import require
from rrbench.types import DataError, FailureKind, Media, UserError

RETRYABLE = (FailureKind.HTTP, FailureKind.TIMEOUT, FailureKind.RATE_LIMITED)


class AdaptiveLimit:
    """A concurrency limit that halves on overload and grows by one after ``window`` successes (AIMD).

    One overload burst halves it once: a request reports the ``epoch`` it was sent in, and only an overload seen by
    a request sent after the last cut cuts again (TCP's one decrease per window). Halving on every 503 of a burst
    that the requests already in flight all meet took 8 slots to 1 at once; under a 5% 503 + 2% 429 mix the
    client then averaged 2 of 8 requests in flight and ran at 40% of its fault-free rate (tests/test_soak.py)."""

    def __init__(self, maximum: int, window: int = 8) -> None:
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.in_flight = 0
        self.window = window
        self.epoch = 0  # how many cuts so far
        self._streak = 0
        self._changed = asyncio.Condition()

    # One free slot wakes one waiter: waking all of them (notify_all) on every request made each request cost
    # O(waiting callers), quadratic when many are queued (1000 queued: ~0.5 ms CPU per request, not ~0.05).
    async def __aenter__(self) -> AdaptiveLimit:
        async with self._changed:
            try:
                await self._changed.wait_for(lambda: self.in_flight < self.limit)
            except asyncio.CancelledError:
                self._changed.notify()  # a wake-up this waiter may have taken must not be lost with it
                raise
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify()

    async def feedback(self, overloaded: bool, sent_in: int | None = None) -> None:
        """``sent_in``: the epoch the reporting request was sent in (None: count it as sent now)."""
        async with self._changed:
            if overloaded:
                if sent_in is not None and sent_in < self.epoch:
                    return  # this burst already cut the limit
                self.limit = max(1, self.limit // 2)  # fewer slots: nobody to wake
                self.epoch += 1
                self._streak = 0
            else:
                self._streak += 1
                if self._streak >= self.window and self.limit < self.maximum:
                    self.limit += 1
                    self._streak = 0
                    self._changed.notify()  # one more slot


class OpenAIHTTPBackend(Backend):
    name = "openai-http"

    def __init__(
        self,
        base_urls: Sequence[str],
        model: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        concurrency: int = 32,
        max_pixels: int | None = None,
    ) -> None:
        if not base_urls:
            raise UserError("no base URL given for the HTTP backend (--base-url URL)")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_pixels = max_pixels
        self.limit = AdaptiveLimit(concurrency)
        self._busy = dict.fromkeys(self.base_urls, 0)
        self._client: Any = None
        self.downscaled = 0

    def describe(self) -> dict[str, Any]:
        # the key's variable name is recorded, never its value
        return {"backend": self.name, "base_urls": self.base_urls, "model": self.model,
                "api_key_env": self.api_key_env, "max_pixels": self.max_pixels, "max_retries": self.max_retries}

    def _headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UserError(f"the API key variable {self.api_key_env} is not set in the environment")
        return {"Authorization": f"Bearer {key}"}

    async def start(self) -> None:
        if self._client is None:
            httpx = require("httpx", "api")
            # Idle connections are dropped before uvicorn's 5 s keep-alive closes them under us mid-request.
            limits = httpx.Limits(max_connections=self.limit.maximum * 2, max_keepalive_connections=self.limit.maximum,
                                  keepalive_expiry=4.0)
            self._client = httpx.AsyncClient(headers=self._headers(), timeout=self.timeout_s, limits=limits)

    async def check_reachable(self, timeout_s: float = 10.0) -> None:
        """Fail before the first sample when nothing listens at a base URL (a typo, a server not started yet).

        Only a TCP connection is opened, no request is sent: whatever accepts it is a server (errors it may answer
        with are the run's to record), and neither an API's rate limit nor a test's fault proxy is consulted."""
        reasons = await asyncio.gather(*(_tcp_probe(url, timeout_s) for url in self.base_urls))
        dead = [f"{url} ({why})" for url, why in zip(self.base_urls, reasons, strict=True) if why]
        if dead:
            raise UserError(f"cannot reach {', '.join(dead)}: is the server running? "
                            f"(`rrbench doctor --base-url URL` checks an endpoint)")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        await self.start()
        body = {"model": self.model, "messages": [self._wire(m) for m in messages], **self._sampling(sampling)}
        attempt = 0
        while True:
            sent_in = self.limit.epoch
            try:
                async with self.limit:
                    sent_in = self.limit.epoch
                    completion = await self._post(body)
                await self.limit.feedback(overloaded=False)
                return completion
            except BackendError as exc:
                transient = exc.kind in RETRYABLE and getattr(exc, "transient", True)
                # Only the server saying so (429, 5xx) is overload; a dropped keep-alive connection is not.
                overloaded = transient and (exc.kind is FailureKind.RATE_LIMITED or getattr(exc, "status", 0) >= 500)
                await self.limit.feedback(overloaded=overloaded, sent_in=sent_in)
                if not transient or attempt >= self.max_retries:
                    raise
                await asyncio.sleep(self._delay(attempt, getattr(exc, "retry_after", None)))
                attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return random.uniform(0, self.backoff_s * 2**attempt)  # full jitter: retries of many samples spread out

    def _pick_url(self) -> str:
        return min(self.base_urls, key=lambda u: self._busy[u])

    async def _post(self, body: dict[str, Any]) -> Completion:
        httpx = require("httpx", "api")
        url = self._pick_url()
        self._busy[url] += 1
        start = time.perf_counter()
        try:
            response = await self._client.post(f"{url}/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise BackendError(FailureKind.TIMEOUT, f"{url}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise BackendError(FailureKind.HTTP, f"{url}: {type(exc).__name__}: {exc}") from None
        finally:
            self._busy[url] -= 1
        return self._completion(response, url, time.perf_counter() - start)

    def _completion(self, response: Any, url: str, latency: float) -> Completion:
        if response.status_code == 429:
            error = BackendError(FailureKind.RATE_LIMITED, f"{url}: 429 rate limited")
            error.retry_after = _retry_after(response.headers.get("retry-after"))  # type: ignore[attr-defined]
            raise error
        if response.status_code >= 400:
            error = BackendError(FailureKind.HTTP, f"{url}: HTTP {response.status_code}: {response.text[:300]}")
            error.status = response.status_code  # type: ignore[attr-defined]
            # A 4xx (prompt too long, bad request) fails again identically: only 408 and 5xx are worth a retry.
            error.transient = response.status_code >= 500 or response.status_code == 408  # type: ignore[attr-defined]
            # 503 may say when to come back, as 429 does
            error.retry_after = _retry_after(response.headers.get("retry-after"))  # type: ignore[attr-defined]
            raise error
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(FailureKind.HTTP, f"{url}: malformed response body ({type(exc).__name__})") from None
        finish = choice.get("finish_reason")
        logprobs = (choice.get("logprobs") or {}).get("content")
        usage = {k: int(v) for k, v in (payload.get("usage") or {}).items() if isinstance(v, int)}
        return Completion(text=text, finish_reason=finish, usage=usage, logprobs=logprobs, latency_s=latency)

    @staticmethod
    def _sampling(sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {"temperature": sampling.temperature, "max_tokens": sampling.max_tokens}
        # Left out unless set: a vLLM server then applies the checkpoint's generation_config.json, as it did for
        # the authors' evaluation. top_k is not OpenAI's: send it only to servers that take it (vLLM, SGLang).
        if sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        if sampling.top_k is not None:
            body["top_k"] = sampling.top_k
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.logprobs
        return body

    def _wire(self, message: Message) -> dict[str, Any]:
        content = message["content"]
        if isinstance(content, str):
            return {"role": message["role"], "content": content}
        parts = []
        for part in content:
            if part["type"] == "image":
                parts.append({"type": "image_url", "image_url": {"url": self._data_uri(part["media"])}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        return {"role": message["role"], "content": parts}

    def _data_uri(self, media: Media) -> str:
        try:
            data, mime = media.read_bytes(), media.mime
            if self.max_pixels:
                data, mime = self._downscale(data, mime)
        except DataError as exc:
            raise BackendError(FailureKind.DATA, str(exc)) from exc
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"

    def _downscale(self, data: bytes, mime: str) -> tuple[bytes, str]:
        from PIL import Image

        try:
            img = Image.open(io.BytesIO(data))
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"corrupt image: {exc}") from exc
        with img:
            pixels = img.width * img.height
            assert self.max_pixels is not None
            if pixels <= self.max_pixels:
                return data, mime  # within budget: the original bytes, untouched
            scale = (self.max_pixels / pixels) ** 0.5
            small = img.convert("RGB").resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        out = io.BytesIO()
        small.save(out, format="PNG")
        self.downscaled += 1
        return out.getvalue(), "image/png"


async def _tcp_probe(url: str, timeout_s: float) -> str | None:
    """None if something accepts a TCP connection at the URL's host and port, else why not."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout_s)
    except asyncio.TimeoutError:
        return f"no answer in {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 120.0))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
