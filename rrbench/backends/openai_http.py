"""OpenAI-compatible HTTP: vLLM servers (one or many data-parallel replicas), Gemini's and OpenAI's endpoints.

One shared async connection pool; requests go to the least busy base URL; transient failures (timeouts, dropped
connections, 429, 5xx) are retried with exponential backoff and full jitter, honouring Retry-After; the number of
requests in flight shrinks on 429/5xx and grows back while requests succeed (AIMD), so a crowded server is not
hammered. Images travel as data URIs of their original bytes; only images above ``max_pixels`` are re-encoded
(downscaled), and the request records that it happened.

A server is not trusted to behave (docs/reliability.md, "Hostile or broken servers"): ``timeout_s`` is a deadline
for the whole exchange, not for each read, so a server trickling bytes cannot hold a request past it; a body over
``MAX_BODY_BYTES`` is a failure before it is read in full; a redirect is refused, never followed (it could carry the
API key to another host); 401/403 are ``auth`` failures naming the key's variable; whatever the server sent back is
scrubbed of secrets (rrbench/redact.py) before it goes anywhere, and URLs are shown without their credentials.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import random
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from rrbench.backends._base import Backend, BackendError, Completion, Message, Sampling
from rrbench.backends._exchange import MAX_BODY_BYTES, ExchangeError, exchange, new_session, route
from rrbench.redact import Scrubber, redact_url
from rrbench.registry import require
from rrbench.types import DataError, FailureKind, Media, UserError, open_image, to_rgb

RETRYABLE = (FailureKind.HTTP, FailureKind.TIMEOUT, FailureKind.RATE_LIMITED)
try:  # the same bytes as base64.b64encode, at memory speed: a megabyte image costs 20 us instead of 1 ms
    from pybase64 import b64encode
except ImportError:  # rrbench[api] installs it; without it the standard library's, slower on big images
    from base64 import b64encode  # type: ignore[assignment]

ERROR_SNIPPET = 300


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
        self._shown = {u: redact_url(u) for u in self.base_urls}  # what messages and run.json may say
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_pixels = max_pixels
        self.limit = AdaptiveLimit(concurrency)
        self._busy = dict.fromkeys(self.base_urls, 0)
        self._health = {u: _Health() for u in self.base_urls}
        self._client: Any = None
        self._starting: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._scrub = Scrubber.from_env(api_key_env, self.base_urls)
        self.downscaled = 0
        self._uris = UriCache()
        self._marker = f"rrbench-image-{secrets.token_hex(16)}"  # per backend: os.urandom per request cost ~3%

    def describe(self) -> dict[str, Any]:
        # the key's variable name is recorded, never its value
        return {"backend": self.name, "base_urls": list(self._shown.values()), "model": self.model,
                "api_key_env": self.api_key_env, "max_pixels": self.max_pixels, "max_retries": self.max_retries}

    def _headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UserError(f"the API key variable {self.api_key_env} is not set in the environment")
        return {"Authorization": f"Bearer {key}"}

    async def start(self) -> None:
        if self._client is not None:
            return
        # One session however many requests arrive before it exists (each making its own left all but one unclosed).
        loop = asyncio.get_running_loop()
        if self._starting is None or self._starting[0] is not loop:
            self._starting = (loop, asyncio.Lock())
        async with self._starting[1]:
            if self._client is None:
                # Imported off the event loop (~0.1 s): a refine generation stage running beside this start goes on.
                await asyncio.to_thread(require, "aiohttp", "api")
                headers = self._headers()
                self._scrub = Scrubber.from_env(self.api_key_env, self.base_urls)  # the key as it is now
                self._client = new_session(self.limit.maximum * 2, self.limit.maximum, self.timeout_s, headers)

    async def check_reachable(self, timeout_s: float = 10.0) -> None:
        """Fail before the first sample when nothing listens at a base URL (a typo, a server not started yet).

        Only a TCP connection is opened, no request is sent: whatever accepts it is a server (errors it may answer
        with are the run's to record), and neither an API's rate limit nor a test's fault proxy is consulted."""
        reasons = await asyncio.gather(*(_tcp_probe(url, timeout_s) for url in self.base_urls))
        dead = [f"{self._shown[url]} ({why})" for url, why in zip(self.base_urls, reasons, strict=True) if why]
        if dead:
            raise UserError(f"cannot reach {', '.join(dead)}: is the server running? "
                            f"(`rrbench doctor --base-url URL` checks an endpoint)")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        await self.start()
        # Built here, on the loop, from the images' base64 that the loader thread made (``warm``): only the JSON
        # around them is new. Whole bodies built in a worker thread measured slower (0.75-0.8x the raw rate instead
        # of 0.9-1.0x, bench/client_throughput.py --instant): the hand-over and the GIL between threads cost more.
        body = self._body_pieces(messages, sampling)
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
        """The least busy endpoint among those not resting after a failure (all of them when every one is)."""
        now = time.monotonic()
        up = [u for u in self.base_urls if self._health[u].until <= now] or self.base_urls
        return min(up, key=lambda u: self._busy[u])

    async def _post(self, body: Sequence[bytes]) -> Completion:
        url = self._pick_url()
        shown = self._shown[url]
        self._busy[url] += 1
        start = time.perf_counter()
        try:
            # the session's timeout bounds each read; this bounds the whole exchange (a byte a second never times out)
            status, headers, content = await asyncio.wait_for(self._exchange(url, body), self.timeout_s)
        except asyncio.TimeoutError:
            raise self._timed_out(shown) from None
        except ExchangeError as exc:
            if exc.kind == "timeout":
                raise self._timed_out(shown) from None
            if exc.kind == "too_large":
                raise _final(FailureKind.HTTP, 200, f"{shown}: answer too large ({exc.message}; the limit is "
                             f"{MAX_BODY_BYTES // 2**20} MiB)") from None
            if exc.kind == "transport":  # refused, reset, cut: its retry goes to another endpoint
                self._health[url].failed()
            raise BackendError(FailureKind.HTTP, self._scrub(f"{shown}: {exc.message}")) from None
        finally:
            self._busy[url] -= 1
        self._health[url].answered(status)
        return self._completion(status, headers, content, shown, time.perf_counter() - start)

    def _timed_out(self, shown: str) -> BackendError:
        return BackendError(FailureKind.TIMEOUT, f"{shown}: no complete answer within {self.timeout_s:g} s "
                                                 "(-M timeout_s)")

    async def _exchange(self, url: str, body: Sequence[bytes]) -> tuple[int, Any, bytes]:
        return await exchange(self._client, url, body)

    def _completion(self, status: int, headers: Any, content: bytes, url: str, latency: float) -> Completion:
        if status == 429:
            error = BackendError(FailureKind.RATE_LIMITED, f"{url}: 429 rate limited")
            error.retry_after = _retry_after(headers.get("retry-after"))  # type: ignore[attr-defined]
            raise error
        if 300 <= status < 400:
            target = redact_url(self._scrub(headers.get("location") or "nowhere"))
            raise _final(FailureKind.HTTP, status, f"{url}: HTTP {status} redirect to {target} refused: an "
                         "OpenAI-compatible endpoint answers directly, so --base-url is probably wrong (rrbench never "
                         "follows a redirect, which could carry the API key to another host)")
        if status in (401, 403):
            raise _final(FailureKind.AUTH, status, self._refused(status, url))
        if status >= 400:
            # scrubbed before the cut, so the cut never leaves the first half of an echoed key behind
            text = self._scrub(content.decode("utf-8", "replace"))[:ERROR_SNIPPET]
            error = BackendError(FailureKind.HTTP, f"{url}: HTTP {status}: {text}")
            error.status = status  # type: ignore[attr-defined]
            # A 4xx (prompt too long, bad request) fails again identically: only 408 and 5xx are worth a retry.
            error.transient = status >= 500 or status == 408  # type: ignore[attr-defined]
            # 503 may say when to come back, as 429 does
            error.retry_after = _retry_after(headers.get("retry-after"))  # type: ignore[attr-defined]
            raise error
        try:
            payload = json.loads(content)
            choice = payload["choices"][0]
            text = choice["message"].get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not text")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(FailureKind.HTTP, f"{url}: malformed response body ({type(exc).__name__})") from None
        finish = choice.get("finish_reason")
        logprobs = (choice.get("logprobs") or {}).get("content")
        usage = {k: int(v) for k, v in (payload.get("usage") or {}).items() if isinstance(v, int)}
        return Completion(text=self._scrub(text), finish_reason=finish, usage=usage, logprobs=logprobs,
                          latency_s=latency)

    def _refused(self, status: int, url: str) -> str:
        """The one line a run stops with when the server refuses the key: the variable's name, never its value."""
        if self.api_key_env:
            return f"the server refused the API key (HTTP {status} from {url}): check ${self.api_key_env}"
        return (f"the server refused the request (HTTP {status} from {url}): it wants an API key; "
                "name the variable that holds it with --api-key-env VAR")

    @staticmethod
    def _sampling(sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {}
        # Either may be unset: an official protocol whose code leaves it to the server sends nothing.
        if sampling.temperature is not None:
            body["temperature"] = sampling.temperature
        if sampling.max_tokens is not None:
            body["max_tokens"] = sampling.max_tokens
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

    def _body(self, messages: Sequence[Message], sampling: Sampling) -> bytes:
        """The request body, byte for byte the compact JSON of the request (``separators=(",", ":")``)."""
        return b"".join(self._body_pieces(messages, sampling))

    def _body_pieces(self, messages: Sequence[Message], sampling: Sampling) -> list[bytes]:
        """The request body as the pieces it is sent in (``_exchange.pieces``): the JSON around the images, and each
        image's base64 as cached, never copied here. Built without JSON scanning the megabytes of each image: the
        images' data URIs are spliced in where a placeholder stands (base64 needs no JSON escaping)."""
        uris: list[tuple[bytes, bytes]] = []
        marker = self._marker  # cannot occur in a request's own text (and if it did, the split below would not fit)
        skeleton = {"model": self.model, "messages": [self._wire(m, uris, marker) for m in messages],
                    **self._sampling(sampling)}
        text = json.dumps(skeleton, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        around = text.encode("utf-8").split(f'"{marker}"'.encode())
        if len(around) != len(uris) + 1:
            raise BackendError(FailureKind.DATA, "the request's text contains rrbench's image placeholder")
        out, small = [], [around[0]]
        for (head, data), piece in zip(uris, around[1:], strict=True):
            out += [b"".join([*small, b'"', head]), data]  # the JSON between two images goes out as one piece
            small = [b'"', piece]
        out.append(b"".join(small))
        return out

    def _wire(self, message: Message, uris: list[tuple[bytes, bytes]], marker: str) -> dict[str, Any]:
        content = message["content"]
        if isinstance(content, str):
            return {"role": message["role"], "content": content}
        parts = []
        for part in content:
            if part["type"] == "image":
                uris.append(self._uri_parts(part["media"]))
                parts.append({"type": "image_url", "image_url": {"url": marker}})
            else:
                parts.append({"type": "text", "text": part["text"]})
        return {"role": message["role"], "content": parts}

    def warm(self, media: Media) -> None:
        # The base64 of a sample's images made in the loader thread (pybase64 and hashlib release the GIL), so the
        # loop's body building finds them in the cache. A failure is left for the request, which records it.
        with contextlib.suppress(Exception):
            self._uri_parts(media)

    def _data_uri(self, media: Media) -> bytes:
        """The image as the request carries it: ``data:<mime>;base64,<bytes>``."""
        return b"".join(self._uri_parts(media))

    def _uri_parts(self, media: Media) -> tuple[bytes, bytes]:
        """The data URI's head (``data:<mime>;base64,``) and base64, kept apart so the body copies the megabytes once.
        One encoding per content and declared type while it is recent (a pair judged in both orders, an image
        several samples share)."""
        key = f"{media.key}\x1f{media.format or ''}" if not media.key.startswith("unreadable:") else None
        if key is not None and (parts := self._uris.get(key)) is not None:
            return parts
        try:
            data, mime = media.read_bytes(), media.mime
            data, mime = self._checked(data, mime, media.describe())
        except DataError as exc:
            raise BackendError(FailureKind.DATA, str(exc)) from exc
        # the MIME type as JSON writes it (a task names it; it may hold anything), the base64 as it is
        escaped = json.dumps(mime, ensure_ascii=False)[1:-1].encode("utf-8")
        parts = (b"data:" + escaped + b";base64,", b64encode(data))
        if key is not None:
            self._uris.put(key, parts)
        return parts

    def _checked(self, data: bytes, mime: str, what: str) -> tuple[bytes, str]:
        """The bytes to send: the original ones, after a look at the header (a decompression bomb or a file that is
        no image is the sample's data failure here, never a server's problem), or a downscaled PNG above max_pixels."""
        with open_image(data, what) as img:
            pixels = img.width * img.height
            if not self.max_pixels or pixels <= self.max_pixels:
                return data, mime  # within budget: the original bytes, untouched
            scale = (self.max_pixels / pixels) ** 0.5
            try:
                small = to_rgb(img).resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
            except (OSError, SyntaxError, ValueError) as exc:
                raise DataError(f"corrupt image {what}: {exc}") from exc
        out = io.BytesIO()
        small.save(out, format="PNG")
        self.downscaled += 1
        return out.getvalue(), "image/png"


class _Health:
    """An endpoint's rest after failures: a dead replica would otherwise be the least busy one (it fails at once)
    and draw every retry. Connection failures and 502/503/504 rest it 1 s, doubling with each failure in a row up
    to 30 s; any other answer ends the rest."""

    def __init__(self) -> None:
        self.until = 0.0
        self.in_a_row = 0

    def failed(self) -> None:
        self.in_a_row += 1
        self.until = time.monotonic() + min(30.0, 2.0 ** (self.in_a_row - 1))

    def answered(self, status: int) -> None:
        if status in (502, 503, 504):
            self.failed()
        else:
            self.in_a_row, self.until = 0, 0.0


class UriCache:
    """Recently built data URIs by content key, at most ``max_bytes`` (least recently used dropped first);
    thread-safe: the loader thread fills it (``OpenAIHTTPBackend.warm``) while the loop reads it."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bytes, bytes] | None:
        with self._lock:
            uri = self._items.get(key)
            if uri is not None:
                self._items.move_to_end(key)
            return uri

    def put(self, key: str, uri: tuple[bytes, bytes]) -> None:
        size = sum(map(len, uri))
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = uri
            self._size += size
            while self._size > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._size -= sum(map(len, dropped))


def _final(kind: FailureKind, status: int, message: str) -> BackendError:
    """A failure that a retry would only repeat."""
    error = BackendError(kind, message)
    error.status = status  # type: ignore[attr-defined]
    error.transient = False  # type: ignore[attr-defined]
    return error


def probe_models(url: str, api_key_env: str | None, timeout_s: float = 5.0) -> tuple[bool, str]:
    """`rrbench doctor`'s check of a base URL: GET <url>/models as a run would send it, with the same distrust.

    (ok, detail); the detail never holds a secret (it does not repeat the URL: show it with ``redact_url``).
    Credentials in the URL travel as Basic auth, as aiohttp sends them in a run; a redirect is not followed (it
    could carry the key to another host) and is a FAIL, as is a refused key; the answer is read up to
    ``MAX_BODY_BYTES``. ``timeout_s`` bounds the whole exchange: urllib's timeout bounds each read, which a server
    trickling a byte at a time never reaches (the probe runs in a daemon thread, left behind if it overruns)."""
    outcome: list[tuple[bool, str]] = []
    worker = threading.Thread(target=lambda: outcome.append(_probe(url, api_key_env, timeout_s)), daemon=True)
    worker.start()
    worker.join(timeout_s + 1)
    return outcome[0] if outcome else (False, f"no complete answer within {timeout_s:g} s")


def _probe(url: str, api_key_env: str | None, timeout_s: float) -> tuple[bool, str]:
    scrub = Scrubber.from_env(api_key_env, [url])
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": "application/json"}
    key = os.environ.get(api_key_env) if api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    target = urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=f"{parts.path.rstrip('/')}/models"))
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(target, headers=headers), timeout=timeout_s) as response:
            body = response.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return False, f"answer too large (more than {MAX_BODY_BYTES // 2**20} MiB)"
        served = [m.get("id") for m in json.loads(body).get("data", [])]
        return True, scrub("serves " + (", ".join(str(s) for s in served[:5]) or "no models"))
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            target = redact_url(scrub(exc.headers.get("location") or "nowhere"))
            return False, (f"HTTP {exc.code} redirect to {target}, not followed: an OpenAI-compatible endpoint "
                           "answers directly, so --base-url is probably wrong")
        if exc.code in (401, 403):
            fix = f"check ${api_key_env}" if api_key_env else "it wants an API key (--api-key-env VAR)"
            return False, f"refused the API key (HTTP {exc.code}): {fix}"
        return exc.code == 404, f"answered HTTP {exc.code}"  # 404: a server without /models still answers chats
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        return False, scrub(f"unreachable or not an OpenAI-compatible server ({type(exc).__name__}: "
                            f"{getattr(exc, 'reason', exc)})")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 30x as an HTTPError


async def _tcp_probe(url: str, timeout_s: float) -> str | None:
    """None if something accepts a TCP connection where the URL's requests go (its host and port, or the proxy the
    environment names for it), else why not."""
    parts = urllib.parse.urlsplit(url)
    host, port, via = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), ""
    try:
        proxy = route(url, authorized=True).proxy
    except ValueError:
        proxy = None  # an unusable URL: the connection below says so
    if proxy is not None:
        host, port, via = proxy.host, proxy.port, f"through the proxy {proxy.host}:{proxy.port} from the environment: "
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except asyncio.TimeoutError:
        return f"{via}no answer in {timeout_s:g} s"
    except OSError as exc:
        return via + (exc.strerror or type(exc).__name__)
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
