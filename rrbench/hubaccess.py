"""Getting a dataset snapshot from the Hugging Face hub without hanging: offline or unreachable fails in seconds.

huggingface_hub retries a connection that fails or times out (10 s per try, five tries, a warning each), so an
offline machine used to print pages of retry messages before the one line that mattered. Here:

* ``HF_HUB_OFFLINE=1`` (or a :func:`local_only` block, as ``rrbench doctor`` uses): the local cache only, no network;
* a pinned commit already in the cache is used without asking the hub (a commit never changes);
* otherwise one cheap probe of the hub endpoint (``HF_ENDPOINT``, default https://huggingface.co), at most
  ``HUB_PROBE_TIMEOUT_S`` seconds, once per process; unreachable means the local cache or a one-line
  :class:`NotCached` error naming the fetch command; reachable means an ordinary ``snapshot_download``.

The probe is a HEAD request through urllib, which honours the ``https_proxy``/``http_proxy`` variables as the hub
client does; any HTTP answer, even an error status, counts as reachable.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from rrbench.types import UserError

HUB_PROBE_TIMEOUT_S = 2.0
_LOCAL_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("rrbench_hub_local_only", default=False)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class NotCached(UserError):
    """A dataset that is not in the local cache and cannot be downloaded now (offline, unreachable, or a
    :func:`local_only` check). ``hint`` is the command that fetches it."""

    def __init__(self, dataset: str, hint: str, why: str | None = None) -> None:
        self.dataset, self.hint = dataset, hint
        because = f" ({why})" if why else ""
        super().__init__(f"dataset {dataset} is not in the local Hugging Face cache{because}; fetch it once: {hint}")


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Within the block, snapshots come from the local cache or raise :class:`NotCached`; nothing is downloaded."""
    token = _LOCAL_ONLY.set(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.reset(token)


def offline_env() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE",
                                                                                   "TRANSFORMERS_OFFLINE"))


def local_only_active() -> bool:
    """Whether this check must download nothing (inside ``local_only()``, as ``rrbench doctor`` runs)."""
    return _LOCAL_ONLY.get()


def endpoint() -> str:
    """The hub endpoint huggingface_hub talks to (``HF_ENDPOINT`` as read when it was imported)."""
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT).rstrip("/")
    except ImportError:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_unreachable(url: str | None = None) -> str | None:
    """None when the hub endpoint answers within ``HUB_PROBE_TIMEOUT_S``; otherwise why not (one short phrase)."""
    return _probe(url or endpoint(), HUB_PROBE_TIMEOUT_S)


@functools.lru_cache(maxsize=8)
def _probe(url: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/", method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except urllib.error.URLError as exc:
        return f"{url}: {exc.reason}"
    except (OSError, ValueError) as exc:  # TimeoutError, a malformed URL
        return f"{url}: {type(exc).__name__}: {exc}" if str(exc) else f"{url}: {type(exc).__name__}"


def snapshot(hub: Any, dataset: str, revision: str | None, patterns: Sequence[str], hint: str) -> str:
    """The snapshot folder of a dataset repository: from the cache, or downloaded when the hub is reachable."""

    def cached() -> str | None:
        try:
            return str(hub.snapshot_download(dataset, repo_type="dataset", revision=revision,
                                             allow_patterns=list(patterns), local_files_only=True))
        except Exception:  # not cached (huggingface_hub raises several kinds for it)
            return None

    if offline_env() or _LOCAL_ONLY.get():
        found = cached()
        if found is None:
            raise NotCached(dataset, hint, "HF_HUB_OFFLINE is set" if offline_env() else None)
        return found
    if revision is not None and _COMMIT.match(revision) and (found := cached()) is not None:
        return found
    unreachable = hub_unreachable()
    if unreachable is not None:
        found = cached()
        if found is None:
            raise NotCached(dataset, hint, f"the hub is unreachable: {unreachable}")
        return found
    try:
        return str(hub.snapshot_download(dataset, repo_type="dataset", revision=revision,
                                         allow_patterns=list(patterns)))
    except Exception as exc:  # no such repo or revision, gated, or the connection broke: fixed the same way
        raise UserError(f"cannot get dataset {dataset} ({type(exc).__name__}); fetch it once: {hint}") from None


def dataset_snapshot(dataset: str, patterns: Sequence[str], revision: str | None = None) -> str:
    """The local folder of a hub dataset's files matching ``patterns``: from the cache, or downloaded when the hub
    is reachable; offline and not cached is one :class:`NotCached` line naming ``hf download``. (Public as
    ``rrbench.dataset_snapshot``, for training/.)"""
    import huggingface_hub

    return snapshot(huggingface_hub, dataset, revision, patterns, f"hf download {dataset} --repo-type dataset")
