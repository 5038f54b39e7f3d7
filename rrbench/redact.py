"""Secrets out of everything rrbench stores or prints, and stored text capped.

A server may echo what it was sent (the ``Authorization`` header, the body) in an answer or an error page, and a
``--base-url`` may carry credentials (``http://user:pass@host/v1``, ``?key=...``). Text that came from a server is
scrubbed of every secret rrbench knows before it is stored or printed: the API key (the variable the model names,
and any set variable whose name says it holds a secret: ``OPENAI_API_KEY``, ``GEMINI_API_KEY``, ``HF_TOKEN``, ...)
and the credentials of the base URLs, each in the forms a server may echo: the literal value, its base64 (at any
alignment, so a base64 of a whole header block is caught too), its URL-encoded and JSON-escaped forms. URLs are
shown with their credentials and query values replaced by ``***``.

Stored text (a raw answer, a rationale, a failure detail) is capped at ``TEXT_CAP`` characters; a capped field ends
with a note saying so, and the judgement carries the flag ``capped:<field>``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence

from rrbench.types import Judgement

REDACTED = "[redacted]"
TEXT_CAP = 2**20  # characters kept of one stored text field (raw answer, rationale, failure detail)
MIN_SECRET = 8  # shorter values ("EMPTY", "1") are not secrets worth mangling every text for
# Variables whose value is always a secret, and names that say a variable holds one (GITHUB_TOKEN, MY_API_KEY).
SECRET_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN",
               "HUGGING_FACE_HUB_TOKEN")
_SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|TOKEN|SECRET|PASSWORD|ACCESS_KEY)$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")
_PERCENT = re.compile(r"%[0-9A-F]{2}")
_CAPPED_FIELDS = ("raw", "rationale", "refined_prompt", "failure_detail")


def redact_url(url: str) -> str:
    """The URL as it may be shown: userinfo and every query value replaced by ``***``, no fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _URL_USERINFO.sub("***@", url.split("?", 1)[0].split("#", 1)[0])
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{name.split('=', 1)[0]}=***" if "=" in name else f"{name}=***"
                     for name in parts.query.split("&") if name)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: userinfo (whole and each part) and query values, percent-decoded."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [userinfo, urllib.parse.unquote(userinfo), *(urllib.parse.unquote(p) for p in userinfo.split(":"))]
    found += [value for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    return found


def env_secrets(names: Iterable[str | None] = ()) -> list[str]:
    """Values of the named variables, of the well-known secret variables, and of any variable named like one."""
    wanted = {n for n in names if n} | set(SECRET_VARS)
    return [value for name, value in os.environ.items() if value and (name in wanted or _SECRET_NAME.search(name))]


class Scrubber:
    """Replaces every known form of every secret with ``[redacted]``, and URL userinfo with ``***@``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._pattern = _compile(frozenset(s for s in secrets if len(s) >= MIN_SECRET))

    @classmethod
    def from_env(cls, key_env: str | None = None, urls: Sequence[str] = ()) -> Scrubber:
        """The secrets of this process's environment (``key_env`` included) and of the base URLs."""
        return cls([*env_secrets([key_env]), *(s for url in urls for s in url_secrets(url))])

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _URL_USERINFO.sub("***@", text) if "@" in text else text


def scrub(text: str, key_env: str | None = None, urls: Sequence[str] = ()) -> str:
    return Scrubber.from_env(key_env, urls)(text)


def cap(text: str, limit: int = TEXT_CAP) -> tuple[str, bool]:
    """At most ``limit`` characters, with a note saying how long the text was; True when cut."""
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}\n[rrbench: cut to the first {limit:,} of {len(text):,} characters]", True


def clean(judgement: Judgement, scrubber: Scrubber) -> Judgement:
    """A judgement fit to store: its text fields scrubbed of secrets, then capped (flag ``capped:<field>``)."""
    changes: dict[str, object] = {}
    flags = list(judgement.flags)
    for name in _CAPPED_FIELDS:
        value = getattr(judgement, name)
        if not isinstance(value, str):
            continue
        # scrubbed before the cut, so a cut never leaves the first half of a secret behind
        text, cut = cap(scrubber(value))
        if text != value:
            changes[name] = text
        if cut:
            flags.append(f"capped:{name}")
    if not changes:
        return judgement
    return dataclasses.replace(judgement, flags=tuple(flags), **changes)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=32)
def _compile(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets for form in _forms(secret)}
    if not forms:
        return None
    # longest first: a form that contains another (the whole base64 vs its middle) is replaced whole
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def _forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe=""),
             urllib.parse.quote_plus(secret, safe="")}
    forms |= {_PERCENT.sub(lambda m: m.group(0).lower(), f) for f in forms}  # %2f as well as %2F
    for data in (raw, b"Bearer " + raw):
        for shift in range(3):
            forms |= _base64_cores(data, shift)
    return {f for f in forms if len(f) >= MIN_SECRET}


def _base64_cores(data: bytes, shift: int) -> set[str]:
    """The base64 characters that any encoding holding ``data`` at ``shift`` bytes past a 3-byte boundary contains.

    The first group mixes bits of the bytes before the secret and a final partial group those after it, so only
    the groups made of the secret's own bytes are certain; standard and URL-safe alphabets."""
    encoded = base64.b64encode(b"\0" * shift + data)
    whole = (shift + len(data)) // 3
    core = encoded[4 if shift else 0: 4 * whole].decode()
    return {core, core.replace("+", "-").replace("/", "_")} | (
        {encoded.decode(), encoded.decode().rstrip("=")} if shift == 0 else set())
