"""How a vision-language model is reached: one interface, several engines.

Messages are OpenAI-style chat messages whose content parts are ``{"type": "text", "text": ...}`` or
``{"type": "image", "media": Media}``. Each backend turns an image part into what its engine takes (a data URI
of the original bytes for HTTP, a PIL image in-process), so model families never care which engine runs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rrbench.types import FailureKind, Media

Message = Mapping[str, Any]


DEFAULT_MAX_TOKENS = 4096  # in-process engines, for a request that sets no limit (the server decides over HTTP)
API_TEMPERATURE = 1.0  # what OpenAI-compatible servers use when a request sets no temperature


@dataclass(frozen=True)
class Sampling:
    """How to decode one request. ``top_p``/``top_k`` None: the checkpoint's generation config decides.

    That is what the RationalRewards authors' evaluation did: its requests to a vLLM server carry only
    temperature and max_tokens, so vLLM filled in top_p/top_k (and the penalties) from generation_config.json.
    Every engine resolves None the same way, so one judge decodes alike whichever engine runs it.
    """

    temperature: float | None = 0.1  # None: not sent (an official protocol that leaves it to the server)
    max_tokens: int | None = 2048  # None: not sent over HTTP; in-process engines use DEFAULT_MAX_TOKENS
    top_p: float | None = None
    top_k: int | None = None  # 0 or -1: no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # top-k logprobs per token when the engine offers them

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())}

    def in_process(self) -> Sampling:
        """What an in-process engine runs: the values a server would fill in for those a request leaves unset."""
        temperature = API_TEMPERATURE if self.temperature is None else self.temperature
        max_tokens = DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens
        return dataclasses.replace(self, temperature=temperature, max_tokens=max_tokens)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None = None  # "stop", "length", ...
    usage: Mapping[str, int] = field(default_factory=dict)
    logprobs: Sequence[Any] | None = None
    latency_s: float | None = None


class BackendError(Exception):
    """A request that failed for a reason the sample log records as a FailureKind."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(media: Media) -> dict[str, Any]:
    return {"type": "image", "media": media}


def fit_pixels(image: Any, max_pixels: int | None) -> Any:
    """A PIL image shrunk (aspect kept) to at most ``max_pixels`` pixels; the same image when within budget."""
    pixels = image.width * image.height
    if not max_pixels or pixels <= max_pixels:
        return image
    scale = (max_pixels / pixels) ** 0.5
    return image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))


def user_message(*parts: Mapping[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


class Backend:
    """Base class: ``chat`` answers one conversation; ``chat_batch`` may answer many in one engine call."""

    name = "backend"

    async def start(self) -> None:
        """Connect, load weights or launch a server; called once before the first request."""

    async def close(self) -> None:
        """Release whatever ``start`` took; called on success, error and Ctrl-C alike."""

    async def chat(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        return (await self.chat_batch([messages], sampling))[0]

    async def chat_batch(self, conversations: Sequence[Sequence[Message]], sampling: Sampling) -> list[Completion]:
        return [await self.chat(c, sampling) for c in conversations]

    def warm(self, media: Media) -> None:
        """Prepare ``media`` for a later request, from a thread other than the event loop's (rrbench.prefetch);
        nothing by default. Thread-safe and never raises."""

    def describe(self) -> dict[str, Any]:
        """What run.json records about the engine (never secrets)."""
        return {"backend": self.name}
