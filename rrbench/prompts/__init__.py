"""Judge prompts as versioned data: the exact text each benchmark or reward model was evaluated with.

A prompt is a template file plus a small JSON record (``data/<family>/prompts.json``) saying where it comes from
(repository, commit, file, lines, licence), what kind of answer it asks for, and how the request and the images
fill it. Rendering gives chat messages whose content parts are ``text_part``/``image_part`` (see
``rrbench.backends._base``): the same messages every engine sends. Prompt keys (``id@version``) are recorded in
each judgement and in run.json, so a number always says which prompt produced it.

Families: ``rationalrewards`` (the released critic prompts), ``genai-bench``, ``editreward-bench`` and ``mmrb2``
(each benchmark's official VLM-as-judge prompt), further released variants, and ``rrbench`` (rrbench's own prompts,
built in code by ``rrbench.models._rationalrewards_format``).

Template rules: image markers (``images``: marker -> the roles of its successive occurrences: ``source`` = every
source image, ``a``/``b`` = the two shown candidates, ``image`` = the one judged image) split the text where they
stand; variable markers (``variables``: marker -> a variable name, or ``=text`` for a fixed text) are replaced
inside each piece afterwards, so a user's request can never create an image slot. Empty text pieces are dropped
(they render to nothing in every chat template).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from rrbench.backends._base import image_part, text_part
from rrbench.types import DataError, Media, UserError

KINDS = ("verdict", "pairwise", "pointwise")
ANSWERS = ("brackets", "editreward", "mmrb2-json", "critique")

Builder = Callable[[str, Sequence[Media], Sequence[Media], Mapping[str, str]], list[dict[str, Any]]]


@dataclass(frozen=True)
class PromptSpec:
    """One prompt. ``user`` is a list of segments: ``{"file": path}`` or ``{"text": str}`` (text with markers),
    ``{"image": role}``, or ``{"request": "mmrb2"}`` (the request with its ``<image_N>`` placeholders interleaved
    with the source images, as MMRB2's ``build_from_hf.py`` does)."""

    id: str
    version: str
    kind: str
    answer: str
    generation: str
    source: Mapping[str, Any]
    system: str | None = None
    user: tuple[Mapping[str, str], ...] = ()
    images: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""
    builder: Builder | None = None  # rrbench's own prompts are built in code

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def family(self) -> str:
        return self.id.split("/", 1)[0]

    def describe(self) -> dict[str, Any]:
        """What run.json records about a prompt used (never its full text: that is the data file)."""
        out = {"kind": self.kind, "answer": self.answer, "generation": self.generation, **dict(self.source)}
        return {k: v for k, v in out.items() if v not in (None, "")}

    def render(self, prompt: str, candidates: Sequence[Media], source: Sequence[Media],
               variables: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Chat messages for one request; a missing image (an edit without its source) is the sample's DataError."""
        values = {"prompt": prompt, **dict(variables or {})}
        if self.builder is not None:
            return self.builder(prompt, candidates, source, values)
        roles = _roles(candidates, source, self.generation)
        parts: list[dict[str, Any]] = []
        for segment in self.user:
            parts += self._segment(segment, roles, values, prompt, source)
        messages: list[dict[str, Any]] = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": parts})
        return messages

    def _segment(self, segment: Mapping[str, str], roles: Mapping[str, Sequence[Media]], values: Mapping[str, str],
                 prompt: str, source: Sequence[Media]) -> list[dict[str, Any]]:
        if "image" in segment:
            return [image_part(m) for m in _media(roles, segment["image"])]
        if "request" in segment:
            return _interleaved(prompt, source)
        text = segment["text"] if "text" in segment else _read(self.family, segment["file"])
        return self._fill(text, roles, values)

    def _fill(self, text: str, roles: Mapping[str, Sequence[Media]], values: Mapping[str, str]) -> list[dict[str, Any]]:
        markers = [*self.images, *self.variables]
        if not markers:
            return [text_part(text)] if text else []
        seen: dict[str, int] = {}
        parts: list[dict[str, Any]] = []
        piece: list[str] = []
        for token in re.split("(" + "|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)) + ")",
                              text):
            if token in self.variables:
                piece.append(_value(self.variables[token], values, self.key))
            elif token in self.images:
                n = seen[token] = seen.get(token, -1) + 1
                occurrences = self.images[token]
                if n >= len(occurrences):
                    raise ValueError(f"prompt {self.key}: more {token} markers than roles")
                parts += _flush(piece)
                parts += [image_part(m) for m in _media(roles, occurrences[n])]
            else:
                piece.append(token)
        return parts + _flush(piece)


def _flush(piece: list[str]) -> list[dict[str, Any]]:
    text = "".join(piece)
    piece.clear()
    return [text_part(text)] if text else []


def _value(name: str, values: Mapping[str, str], key: str) -> str:
    if name.startswith("="):
        return name[1:]
    if name not in values:
        raise DataError(f"prompt {key} needs {name!r}, which this sample does not have")
    return str(values[name])


def _roles(candidates: Sequence[Media], source: Sequence[Media], generation: str) -> dict[str, Sequence[Media]]:
    roles: dict[str, Sequence[Media]] = {"source": source}
    if candidates:
        roles["a"] = roles["image"] = candidates[:1]
    if len(candidates) > 1:
        roles["b"] = candidates[1:2]
    return roles


def _media(roles: Mapping[str, Sequence[Media]], role: str) -> Sequence[Media]:
    media = roles.get(role)
    if not media:
        what = "the source image" if role == "source" else f"image {role!r}"
        raise DataError(f"this judgement needs {what}, and the sample has none")
    return media


_PLACEHOLDER = re.compile(r"<image_(\d+)>")


def _interleaved(prompt: str, source: Sequence[Media]) -> list[dict[str, Any]]:
    """MMRB2 ``benchmark/build_from_hf.py`` ``extract_images_and_text`` (lines 95-131): text pieces stripped and
    kept when not blank; each placeholder takes the next source image in order (its number is not used); without
    any placeholder the images follow the text."""
    if not prompt:
        return [image_part(m) for m in source]
    parts: list[dict[str, Any]] = []
    pieces = _PLACEHOLDER.split(prompt)
    images = iter(source)
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            if piece.strip():
                parts.append(text_part(piece.strip()))
        else:
            media = next(images, None)
            if media is not None:
                parts.append(image_part(media))
    if not _PLACEHOLDER.search(prompt):
        parts += [image_part(m) for m in source]
    return parts


# --------------------------------------------------------------------------------------------------- catalogue


@functools.cache
def _read(family: str, path: str) -> str:
    return resources.files("rrbench.prompts").joinpath("data", family, path).read_text(encoding="utf-8")


def _load_family(family: str) -> list[PromptSpec]:
    record = json.loads(_read(family, "prompts.json"))
    shared = record.get("source", {})
    specs = []
    for item in record["prompts"]:
        item = dict(item)
        source = {**shared, **item.pop("source", {})}
        if "system_file" in item:
            item["system"] = _read(family, item.pop("system_file"))
        specs.append(PromptSpec(
            source=source, user=tuple(item.pop("user")),
            images={k: tuple(v) for k, v in item.pop("images", {}).items()}, **item,
        ))
    return specs


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, PromptSpec]:
    """Every prompt by key (``id@version``), and by id for its newest version."""
    from rrbench.models import _rationalrewards_format as own

    folder = resources.files("rrbench.prompts").joinpath("data")
    specs = [s for entry in sorted(folder.iterdir(), key=lambda e: e.name)
             if entry.is_dir() and entry.joinpath("prompts.json").is_file() for s in _load_family(entry.name)]
    specs += own.own_prompts()
    out: dict[str, PromptSpec] = {}
    for spec in specs:
        if spec.kind not in KINDS or spec.answer not in ANSWERS:
            raise ValueError(f"prompt {spec.key}: kind {spec.kind!r} / answer {spec.answer!r} unknown")
        out[spec.key] = spec
        latest = out.get(spec.id)
        if latest is None or latest.version <= spec.version:
            out[spec.id] = spec
    return out


@functools.lru_cache(maxsize=1)
def digest() -> str:
    """A hash of every prompt's content and assembly: part of a VLM judge's fingerprint (its cache identity)."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(k for k in catalogue() if "@" in k):
        spec = catalogue()[key]
        texts = [_read(spec.family, seg["file"]) if "file" in seg else json.dumps(seg, sort_keys=True)
                 for seg in spec.user]
        h.update(json.dumps([key, spec.system, texts, spec.images, spec.variables, spec.builder is not None],
                            sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def get(key: str) -> PromptSpec:
    """A prompt by ``id@version`` (or ``id`` for its newest version); an unknown key is a user error."""
    spec = catalogue().get(key)
    if spec is None:
        raise UserError(f"unknown prompt {key!r} (known: {', '.join(sorted(families()))} families; see "
                        "`rrbench ls prompts`)")
    return spec


def families() -> set[str]:
    return {s.family for s in catalogue().values()}


def prompt_kind(key: str) -> str | None:
    spec = catalogue().get(key)
    return None if spec is None else spec.kind


def answer_format(key: str | None) -> str | None:
    spec = catalogue().get(key) if key else None
    return None if spec is None else spec.answer


def select(family: str, kind: str, generation: str, variant: str | None = None) -> PromptSpec:
    """The prompt of a family for a kind of judgement (``pairwise-t2i``, ``verdict-edit-3pair``, ...)."""
    name = f"{family}/{kind}-{generation}" + (f"-{variant}" if variant else "")
    spec = catalogue().get(name)
    if spec is None:
        have = sorted({s.id for s in catalogue().values() if s.family == family})
        if not have:
            raise UserError(f"unknown prompt family {family!r} (known: {', '.join(sorted(families()))})")
        raise UserError(f"prompt family {family!r} has no {kind} prompt for {generation}"
                        f"{' ' + variant if variant else ''} (it has: {', '.join(have)})")
    return spec
