"""One HTTP exchange of the OpenAI-compatible client: the POST, the body read no further than its status allows,
and every failure as an ``ExchangeError`` of a few kinds the backend turns into its failure kinds."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import netrc
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
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


# What aiohttp's trust_env reads, per request, in two worker-thread hops (the proxy from the environment, and
# ~/.netrc): against a fast server those hops and the GIL passed back and forth held a run at ~330 requests/s, and
# reading the same once per endpoint and environment instead gave 400-413 (bench/client_throughput.py --instant).
ENVIRONMENT = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "NETRC", "HOME")


@dataclasses.dataclass(frozen=True)
class Route:
    url: Any  # yarl.URL of the chat completions endpoint, without credentials
    headers: dict[str, str]  # this request's own: content type, Basic auth (URL credentials or .netrc), an http://
    # target's Proxy-Authorization
    proxy: Any = None  # yarl.URL of the HTTP proxy, or None
    proxy_headers: dict[str, str] | None = None  # an https:// target's Proxy-Authorization, for the CONNECT


def route(base_url: str, authorized: bool) -> Route:
    """How a request to ``base_url`` goes out; ``authorized``: the session already sends an Authorization header."""
    return _route(base_url, authorized, tuple(os.environ.get(k) for k in ENVIRONMENT))


@functools.lru_cache(maxsize=256)
def _route(base_url: str, authorized: bool, environment: tuple[str | None, ...]) -> Route:
    """The chat completions URL of a base URL, parsed once (encoded=True: the URL goes out as written, a ?key=
    query is not re-quoted), its headers and its proxy, as httpx and then aiohttp's trust_env chose them:

    - credentials in the URL (``user:pass@``) are HTTP Basic auth to that host, in place of an API key's Bearer
      header; aiohttp refuses a URL with credentials beside an Authorization header, so they leave the URL;
    - else, with no API key, a ~/.netrc (or $NETRC) entry for the host is Basic auth (never beside a Bearer header,
      which aiohttp would refuse);
    - HTTP_PROXY / HTTPS_PROXY apply unless NO_PROXY exempts the host (urllib's rules); only http:// proxies, as
      aiohttp supports, with their credentials from the proxy URL or ~/.netrc."""
    from yarl import URL

    url = URL(endpoint(base_url, "chat/completions"), encoded=True)
    headers = dict(JSON_HEADERS)
    if url.user is not None or url.password is not None:
        headers["Authorization"] = _basic(url.user or "", url.password or "")
        url = url.with_user(None)
    elif not authorized and url.host and (login := _netrc_login(url.host)):
        headers["Authorization"] = _basic(*login)
    proxy, proxy_login = _proxy(url)
    if proxy_login is None:
        return Route(url, headers, proxy)
    if url.scheme == "https":  # the tunnel's CONNECT carries it, never the request inside the tunnel
        return Route(url, headers, proxy, {"Proxy-Authorization": proxy_login})
    return Route(url, {**headers, "Proxy-Authorization": proxy_login}, proxy)  # the request itself goes to the proxy


def _basic(user: str, password: str) -> str:
    """UTF-8, as httpx sent them (aiohttp's BasicAuth: Latin-1)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _netrc_login(host: str) -> tuple[str, str] | None:
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):  # none, unreadable or malformed: no credentials, as aiohttp did
        return None
    if entry is None:
        return None
    login, account, password = entry
    return (login or account or ""), (password or "")


def _proxy(url: Any) -> tuple[Any, str | None]:
    """The proxy for ``url`` (yarl.URL, without credentials) and its Basic credentials, or (None, None)."""
    from yarl import URL

    if not url.host or urllib.request.proxy_bypass(url.host):
        return None, None
    given = urllib.request.getproxies().get(url.scheme)
    if not given:
        return None, None
    proxy = URL(given)
    if proxy.scheme != "http":  # aiohttp reaches servers through an http:// proxy only (CONNECT for https://)
        shown = f"{proxy.scheme}://{proxy.host}:{proxy.port}" if proxy.host else "not a URL"  # never its credentials
        print(f"warning: the {url.scheme} proxy from the environment ({shown}) is not an http:// proxy, which is all "
              f"rrbench can use; {url.host} is reached directly", file=sys.stderr, flush=True)
        return None, None
    if proxy.user is not None:
        credentials: tuple[str, str] | None = (proxy.user, proxy.password or "")
        proxy = proxy.with_user(None)
    else:
        credentials = _netrc_login(proxy.host) if proxy.host else None
    return proxy, (_basic(*credentials) if credentials else None)


def endpoint(base_url: str, path: str) -> str:
    """``base_url``/``path``, keeping a query the base URL carries (``?key=...``) after the path, not before it."""
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))


async def exchange(session: Any, url: str, body: bytes | Sequence[bytes]) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` (bytes, or the pieces it is the concatenation of: ``pieces``) to ``url``'s chat completions
    through an ``aiohttp.ClientSession`` (``route``): status, headers (lower-case names) and the body, read no
    further than the status needs (nothing of a redirect's body). ExchangeError for every failure.

    aiohttp, not httpx: with megabyte image bodies httpx spends ~3.9 ms of CPU per request in its pure-Python HTTP
    machinery and aiohttp ~0.5 ms (measured side by side on 2 cores against an instant local server, bench/README.md),
    and against fast servers that CPU is the client's whole throughput."""
    import aiohttp

    try:
        way = route(url, "Authorization" in session.headers)
        data = body if isinstance(body, bytes) else pieces(body)
        async with session.post(way.url, data=data, headers=way.headers, allow_redirects=False, proxy=way.proxy,
                                proxy_headers=way.proxy_headers) as response:
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


def pieces(parts: Sequence[bytes]) -> Any:
    """A request body sent as the pieces it is made of, with its Content-Length, never joined into one buffer.

    A megabyte body given as bytes is copied three more times on its way out (on Python < 3.12): aiohttp joins it
    with the headers, and asyncio's transport slices off what the first send took and copies the rest into its
    buffer. Written piece by piece, and the big ones as memoryviews (their slice is a view), each byte is copied once,
    into the transport's buffer, or not at all when the socket takes it."""
    return _pieces_class()(tuple(parts))


@functools.cache
def _pieces_class() -> type:
    from aiohttp.payload import Payload

    class Pieces(Payload):
        _autoclose = True  # bytes in memory: nothing to close, and it may be sent again (a retry)

        def __init__(self, parts: tuple[bytes, ...]) -> None:
            super().__init__(parts, content_type=JSON_HEADERS["content-type"])
            self._size = sum(map(len, parts))

        def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
            return b"".join(self._value).decode(encoding, errors)

        async def write(self, writer: Any) -> None:
            for part in self._value:
                await writer.write(memoryview(part) if len(part) > 65536 else part)

        async def write_with_length(self, writer: Any, content_length: int | None) -> None:
            await self.write(writer)  # aiohttp asks for no less than our own size (Content-Length is ours)

    return Pieces


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
    them under a request. Not ``trust_env``: ``route`` applies HTTP(S)_PROXY, NO_PROXY and ~/.netrc once per
    endpoint, as httpx did."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=4.0,
                                     force_close=keepalive == 0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=read_timeout_s, sock_read=read_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers)
