"""Core nouns shared by every part of rrbench.

They are frozen dataclasses so that a sample or a judgement cannot change after it was recorded, and each one
has a JSON form (``to_json`` / ``from_json``) because the run directory is the source of truth: metrics,
rescoring and leaderboards are recomputed from what was written, never from objects in memory.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image as PILImage

JSON = dict[str, Any]


class FailureKind(str, Enum):
    """Why a judgement has no usable answer. Never replaced by a silent default score."""

    HTTP = "http"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    TRUNCATED = "truncated"
    EMPTY = "empty"
    PARSE = "parse"
    DATA = "data"  # the sample's own data is broken (corrupt image, missing field)
    ERROR = "error"  # the model raised; the message is recorded


class UserError(Exception):
    """A mistake of the user's (bad name, bad argument, missing path): one line, exit code 2, no traceback."""


class DataError(Exception):
    """A fault in one sample's data: recorded as a per-sample failure, and the run goes on."""


# --------------------------------------------------------------------------------------------------- Media

_FORMATS = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"RIFF": "webp", b"GIF8": "gif"}


def sniff_format(data: bytes) -> str | None:
    for magic, fmt in _FORMATS.items():
        if data.startswith(magic):
            return fmt
    return None


@dataclass(frozen=True, eq=False)
class Media:
    """A reference to one image: a file, encoded bytes, or a deterministic recipe that renders it on demand.

    ``key`` identifies the content (sha256 of the bytes, or a versioned recipe id for generated images), so the
    response cache and the sample log never need the pixels. Decoding happens only when a model asks for it.
    """

    path: str | None = None
    data: bytes | None = field(default=None, repr=False)
    format: str | None = None
    recipe: str | None = None
    render: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_path(cls, path: str | Path) -> Media:
        return cls(path=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, format: str | None = None) -> Media:
        return cls(data=data, format=format or sniff_format(data))

    @classmethod
    def from_recipe(cls, recipe: str, render: Callable[[], bytes], format: str = "png") -> Media:
        return cls(recipe=recipe, render=render, format=format)

    def read_bytes(self) -> bytes:
        """The encoded image, exactly as stored (servers receive these bytes without re-encoding)."""
        if self.data is not None:
            return self.data
        if self.path is not None:
            try:
                return Path(self.path).read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read image {self.path}: {exc.strerror or exc}") from exc
        if self.render is not None:
            return self.render()
        raise DataError("media has neither bytes, path nor recipe")

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.read_bytes()).hexdigest()

    @cached_property
    def key(self) -> str:
        # A recipe is a promise of identical bytes (it is versioned), so hashing them is not needed.
        return f"recipe:{self.recipe}" if self.recipe else f"sha256:{self.sha256}"

    @property
    def mime(self) -> str:
        fmt = self.format or sniff_format(self.read_bytes()) or "png"
        return f"image/{fmt}"

    def image(self) -> PILImage.Image:
        """Decode to an RGB PIL image; a corrupt file raises DataError naming the image."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(self.read_bytes())) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"corrupt image {self.describe()}: {exc}") from exc

    def describe(self) -> str:
        return self.path or self.recipe or f"<{len(self.data or b'')} bytes>"

    def to_json(self) -> JSON:
        out: JSON = {"key": self.key}
        if self.path:
            out["path"] = self.path
        if self.format:
            out["format"] = self.format
        return out


# --------------------------------------------------------------------------------------------------- Labels


class LabelKind(str, Enum):
    WINNER = "winner"  # one candidate preferred (index in ``winner``)
    TIE = "tie"  # equally good, kind unspecified
    BOTH_GOOD = "both_good"
    BOTH_BAD = "both_bad"
    RANKING = "ranking"  # ``ranks``: 1 = best, equal numbers = tie
    SCORES = "scores"  # ``scores``: per-candidate human scores, higher = better
    UNKNOWN = "unknown"  # a label string the task's label map does not know: counted, never guessed

    @property
    def is_tie(self) -> bool:
        return self in (LabelKind.TIE, LabelKind.BOTH_GOOD, LabelKind.BOTH_BAD)


@dataclass(frozen=True)
class Label:
    """What humans said. ``original`` keeps the dataset's own string next to the normalised form."""

    kind: LabelKind
    winner: int | None = None
    ranks: tuple[float, ...] | None = None
    scores: tuple[float, ...] | None = None
    original: str | None = None

    @classmethod
    def win(cls, index: int, original: str | None = None) -> Label:
        return cls(LabelKind.WINNER, winner=index, original=original)

    @classmethod
    def tie(cls, kind: LabelKind = LabelKind.TIE, original: str | None = None) -> Label:
        if not kind.is_tie:
            raise ValueError(f"{kind} is not a tie kind")
        return cls(kind, original=original)

    @classmethod
    def unknown(cls, original: str | None) -> Label:
        return cls(LabelKind.UNKNOWN, original=original)

    def to_json(self) -> JSON:
        out: JSON = {"kind": self.kind.value}
        for name in ("winner", "ranks", "scores", "original"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Label:
        return cls(
            kind=LabelKind(obj["kind"]),
            winner=obj.get("winner"),
            ranks=tuple(obj["ranks"]) if obj.get("ranks") is not None else None,
            scores=tuple(obj["scores"]) if obj.get("scores") is not None else None,
            original=obj.get("original"),
        )


# --------------------------------------------------------------------------------------------------- Samples


@dataclass(frozen=True, eq=False)
class Sample:
    """One item of a task. ``id`` is stable across runs and versions of the data source."""

    id: str
    prompt: str
    candidates: tuple[Media, ...]
    label: Label
    source: tuple[Media, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def category(self) -> str | None:
        value = self.meta.get("category")
        return None if value is None else str(value)

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "source": [m.to_json() for m in self.source],
            "candidates": [m.to_json() for m in self.candidates],
            "label": self.label.to_json(),
            "meta": dict(self.meta),
        }


class TaskKind(str, Enum):
    PAIR = "pair"  # two candidates, one label (GenAI-Bench, MMRB2, ...)
    GROUP = "group"  # pairs that belong to groups scored all-or-nothing (EditReward-Bench K=3/4)
    RANKING = "ranking"  # K candidates with a human ranking (HPD, ImageRewardDB)
    GENERATION_T2I = "t2i"
    GENERATION_EDIT = "edit"


@dataclass(frozen=True)
class Protocol:
    """How numbers are produced from judgements. Every reported number names its protocol id."""

    id: str = "default"
    mode: str = "auto"  # "pairwise" (native), "pointwise" (score each, compare) or "auto" (model's preference)
    order: str = "fixed"  # fixed | swapped | both | random
    tie_policy: str = "exact"
    failure_policy: str = "excluded"  # excluded | wrong
    metrics: tuple[str, ...] = ("accuracy",)
    options: Mapping[str, Any] = field(default_factory=dict)  # per-metric knobs (epsilon grid, thresholds, ...)

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "mode": self.mode,
            "order": self.order,
            "tie_policy": self.tie_policy,
            "failure_policy": self.failure_policy,
            "metrics": list(self.metrics),
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Protocol:
        return cls(**{**obj, "metrics": tuple(obj.get("metrics", ("accuracy",)))})


@dataclass(frozen=True)
class TaskInfo:
    paper: str | None = None
    dataset: str | None = None
    revision: str | None = None
    license: str | None = None
    size: int | None = None
    homepage: str | None = None
    # The official copy's content fingerprint (rrbench.datarecord: sha256 over sample ids and original label
    # strings in load order); when set, a run whose data hashes otherwise is marked partial ("content differs").
    fingerprint: str | None = None


@dataclass(frozen=True, eq=False)
class Task:
    """A benchmark: where its samples come from and how it is scored by default.

    ``load(data, limit)`` yields samples lazily; ``data`` is a local copy given with ``--data`` (or None for the
    task's own source). ``size`` is the number of samples ``load`` will yield when known, for progress bars.
    """

    name: str
    version: str
    kind: TaskKind
    load: Callable[[Path | None], Iterator[Sample]]
    protocol: Protocol
    size: int | None = None
    info: TaskInfo = field(default_factory=TaskInfo)
    generation: str = "t2i"  # "t2i" or "edit": which prompt family a VLM judge must use
    alternatives: Mapping[str, Protocol] = field(default_factory=dict)
    # The sample count of a given data source, when it is cheap to know before loading (parquet metadata).
    count: Callable[[Path | None], int | None] | None = None
    # The benchmark's own VLM-as-judge prompt (a catalogue id, rrbench.prompts), which generic VLM judges answer
    # by default, and the sample ``meta`` fields it fills in besides the request.
    judge_prompt: str | None = None
    prompt_vars: tuple[str, ...] = ()

    def size_of(self, data: Path | None) -> int | None:
        return self.count(data) if self.count is not None else self.size


# --------------------------------------------------------------------------------------------------- Judging


@dataclass(frozen=True, eq=False)
class Query:
    """One request to a reward model: a prompt, optional source images and 1 (pointwise) or 2+ candidates.

    ``key`` is the exact request in canonical form: together with the model fingerprint it keys the cache.
    """

    prompt: str
    candidates: tuple[Media, ...]
    source: tuple[Media, ...] = ()
    generation: str = "t2i"
    sample_id: str = ""
    judge_prompt: str | None = None  # the task's official verdict prompt (catalogue id), for generic VLM judges
    variables: tuple[tuple[str, str], ...] = ()  # what that prompt fills in besides the request (sample fields)

    @property
    def pairwise(self) -> bool:
        return len(self.candidates) > 1

    @cached_property
    def key(self) -> str:
        parts = [self.generation, self.prompt, *(m.key for m in self.source), "|", *(m.key for m in self.candidates)]
        if self.judge_prompt or self.variables:
            # Only when set, so the keys (and cached answers) of queries that have neither stay as they were.
            parts += ["|", self.judge_prompt or "", *(f"{k}={v}" for k, v in self.variables)]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Verdict(str, Enum):
    """A categorical answer of a pairwise judge, in the order the candidates were shown."""

    A = "A"
    B = "B"
    TIE = "tie"
    BOTH_GOOD = "both_good"
    BOTH_BAD = "both_bad"


@dataclass(frozen=True)
class Judgement:
    """A model's answer to one Query.

    ``scores`` holds one score per candidate of the query (in the shown order); ``verdict`` is set by judges
    that answer categorically. ``aspects`` has one mapping per candidate; ``None`` as an aspect score means
    "not applicable", which is not a failure. A failed judgement has ``failure`` set and no scores.
    """

    scores: tuple[float | None, ...] = ()
    verdict: Verdict | None = None
    aspects: tuple[Mapping[str, float | None], ...] = ()
    rationale: str | None = None
    refined_prompt: str | None = None
    raw: str | None = None
    failure: FailureKind | None = None
    failure_detail: str | None = None
    flags: tuple[str, ...] = ()
    usage: Mapping[str, int] | None = None
    latency_s: float | None = None
    prompt: str | None = None  # the catalogue key (id@version) of the prompt a VLM judge answered

    @classmethod
    def failed(cls, kind: FailureKind, detail: str, raw: str | None = None, prompt: str | None = None) -> Judgement:
        return cls(failure=kind, failure_detail=detail, raw=raw, prompt=prompt)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_json(self) -> JSON:
        out: JSON = {}
        if self.scores:
            out["scores"] = list(self.scores)
        if self.verdict is not None:
            out["verdict"] = self.verdict.value
        if self.aspects:
            out["aspects"] = [dict(a) for a in self.aspects]
        for name in ("rationale", "refined_prompt", "raw", "failure_detail", "latency_s", "prompt"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.failure is not None:
            out["failure"] = self.failure.value
        if self.flags:
            out["flags"] = list(self.flags)
        if self.usage:
            out["usage"] = dict(self.usage)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Judgement:
        return cls(
            scores=tuple(obj.get("scores", ())),
            verdict=Verdict(obj["verdict"]) if obj.get("verdict") else None,
            aspects=tuple(obj.get("aspects", ())),
            rationale=obj.get("rationale"),
            refined_prompt=obj.get("refined_prompt"),
            raw=obj.get("raw"),
            failure=FailureKind(obj["failure"]) if obj.get("failure") else None,
            failure_detail=obj.get("failure_detail"),
            flags=tuple(obj.get("flags", ())),
            usage=obj.get("usage"),
            latency_s=obj.get("latency_s"),
            prompt=obj.get("prompt"),
        )


@dataclass(frozen=True)
class Prediction:
    """A judge's answer mapped back to the sample's own candidate order.

    ``scores`` are per original candidate (None where a pairwise verdict gave none); ``verdict`` is the
    categorical answer when the judge gave one (``A`` = candidate 0, ``B`` = candidate 1).
    """

    scores: tuple[float | None, ...] = ()
    verdict: Verdict | None = None

    def to_json(self) -> JSON:
        out: JSON = {"scores": list(self.scores)}
        if self.verdict is not None:
            out["verdict"] = self.verdict.value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Prediction:
        return cls(
            scores=tuple(obj.get("scores", ())),
            verdict=Verdict(obj["verdict"]) if obj.get("verdict") else None,
        )


@dataclass(frozen=True)
class Trial:
    """One presentation of a sample to the judge: ``order[i]`` is the original index shown at position i.

    ``prediction`` is None when any judgement of the trial failed; ``failure`` then names the first kind.
    """

    order: tuple[int, ...]
    judgements: tuple[Judgement, ...]
    prediction: Prediction | None
    failure: FailureKind | None = None

    def to_json(self) -> JSON:
        out: JSON = {
            "order": list(self.order),
            "judgements": [j.to_json() for j in self.judgements],
            "prediction": self.prediction.to_json() if self.prediction else None,
        }
        if self.failure is not None:
            out["failure"] = self.failure.value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Trial:
        pred = obj.get("prediction")
        return cls(
            order=tuple(obj["order"]),
            judgements=tuple(Judgement.from_json(j) for j in obj.get("judgements", ())),
            prediction=Prediction.from_json(pred) if pred else None,
            failure=FailureKind(obj["failure"]) if obj.get("failure") else None,
        )


@dataclass(frozen=True)
class SampleResult:
    """Everything recorded for one sample: one line of ``samples.jsonl``.

    ``skipped`` names why a sample was not judged at all (for example an unknown label); such samples count
    as label-skipped, not as failures. ``correct`` is the per-trial correctness under the run's protocol, kept
    for humans reading the log; metrics always recompute it from the predictions.
    """

    sample_id: str
    label: Label
    trials: tuple[Trial, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    correct: tuple[float | None, ...] = ()
    latency_s: float = 0.0
    prompt: str | None = None
    candidates: tuple[JSON, ...] = ()
    source: tuple[JSON, ...] = ()

    @property
    def failure(self) -> FailureKind | None:
        for trial in self.trials:
            if trial.failure is not None:
                return trial.failure
        return None

    @property
    def category(self) -> str | None:
        value = self.meta.get("category")
        return None if value is None else str(value)

    def to_json(self) -> JSON:
        out: JSON = {
            "id": self.sample_id,
            "label": self.label.to_json(),
            "meta": dict(self.meta),
            "prompt": self.prompt,
            "source": list(self.source),
            "candidates": list(self.candidates),
            "trials": [t.to_json() for t in self.trials],
            "correct": list(self.correct),
            "latency_s": round(self.latency_s, 6),
        }
        failure = self.failure
        if failure is not None:
            out["failure"] = failure.value
        if self.skipped:
            out["skipped"] = self.skipped
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SampleResult:
        return cls(
            sample_id=obj["id"],
            label=Label.from_json(obj["label"]),
            trials=tuple(Trial.from_json(t) for t in obj.get("trials", ())),
            meta=obj.get("meta", {}),
            skipped=obj.get("skipped"),
            correct=tuple(obj.get("correct", ())),
            latency_s=obj.get("latency_s", 0.0),
            prompt=obj.get("prompt"),
            candidates=tuple(obj.get("candidates", ())),
            source=tuple(obj.get("source", ())),
        )
