"""One HTTP exchange of the OpenAI-compatible client: the POST, the body read no further than its status allows,
and every failure as an ``ExchangeError`` of a few kinds the backend turns into its failure kinds."""

from __future__ import annotations

import asyncio
import base64
import functools
import urllib.parse
from typing import Any

JSON_HEADERS = {"content-type": "application/json"}
MAX_BODY_BYTES = 16 * 2**20  # a successful answer larger than this is a failure, and is not read any further
ERROR_BODY_BYTES = 64 * 2**10  # read of an error page, for the first ERROR_SNIPPET characters shown


class ExchangeError(Exception):
    """``kind``: timeout | too_large | transport (refused, reset, cut: the endpoint rests) | http (any other)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@functools.lru_cache(maxsize=256)
def _target(base_url: str) -> tuple[Any, dict[str, str]]:
    """The chat completions URL of a base URL, parsed once, and its request headers. encoded=True: the URL goes out
    as written (a ?key= query is not re-quoted). Credentials in the URL (``user:pass@``) are sent as HTTP Basic auth
    to that host, in place of an API key's Bearer header, as they always were; aiohttp refuses a URL with
    credentials beside an Authorization header, so they leave the URL and become this request's header."""
    from yarl import URL

    url = URL(endpoint(base_url, "chat/completions"), encoded=True)
    headers = dict(JSON_HEADERS)
    if url.user is not None or url.password is not None:  # UTF-8, as httpx sent them (aiohttp's BasicAuth: Latin-1)
        pair = f"{url.user or ''}:{url.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        url = url.with_user(None)
    return url, headers


def endpoint(base_url: str, path: str) -> str:
    """``base_url``/``path``, keeping a query the base URL carries (``?key=...``) after the path, not before it."""
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))


async def exchange(session: Any, url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` to ``url``'s chat completions through an ``aiohttp.ClientSession``: status, headers (lower-case
    names) and the body, read no further than the status needs (nothing of a redirect's body). ExchangeError for
    every failure.

    aiohttp, not httpx: with megabyte image bodies httpx spends ~3.9 ms of CPU per request in its pure-Python HTTP
    machinery and aiohttp ~0.5 ms (measured side by side on 2 cores against an instant local server, bench/README.md),
    and against fast servers that CPU is the client's whole throughput."""
    import aiohttp

    try:
        target, headers = _target(url)
        async with session.post(target, data=body, headers=headers, allow_redirects=False) as response:
            status, headers = response.status, {k.lower(): v for k, v in response.headers.items()}
            if 300 <= status < 400:
                return status, headers, b""
            return status, headers, await _read(response, status, headers)
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise ExchangeError("timeout", f"{type(exc).__name__}: {exc}") from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        raise ExchangeError("transport", f"{type(exc).__name__}: {exc}") from None
    except (aiohttp.ClientError, ValueError) as exc:  # a malformed answer, an unusable URL
        raise ExchangeError("http", f"{type(exc).__name__}: {exc}") from None


async def _read(response: Any, status: int, headers: dict[str, str]) -> bytes:
    limit = MAX_BODY_BYTES if status < 300 else ERROR_BODY_BYTES
    declared = headers.get("content-length", "")
    if status < 300 and declared.isdigit() and int(declared) > limit:
        raise ExchangeError("too_large", f"{int(declared):,} bytes announced")
    chunks, size = [], 0
    async for chunk in response.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if status >= 300:
                break  # an error page: its start is enough
            raise ExchangeError("too_large", f"more than {limit:,} bytes sent")
    return b"".join(chunks)


def new_session(max_connections: int, keepalive: int, read_timeout_s: float, headers: dict[str, str]) -> Any:
    """The client's connection pool. Idle connections are dropped after 4 s, before uvicorn's 5 s keep-alive closes
    them under a request; ``trust_env``: HTTP(S)_PROXY and NO_PROXY apply, as they did with httpx."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=4.0,
                                     force_close=keepalive == 0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=read_timeout_s, sock_read=read_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers, trust_env=True)
