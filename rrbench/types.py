"""Core nouns shared by every part of rrbench.

They are frozen dataclasses so that a sample or a judgement cannot change after it was recorded, and each one
has a JSON form (``to_json`` / ``from_json``) because the run directory is the source of truth: metrics,
rescoring and leaderboards are recomputed from what was written, never from objects in memory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    AUTH = "auth"  # the server refused the API key (401/403): never retried; a run with no success stops at once
    TRUNCATED = "truncated"
    EMPTY = "empty"
    PARSE = "parse"
    DATA = "data"  # the sample's own data is broken (corrupt image, missing field)
    ERROR = "error"  # the model raised; the message is recorded
    OOM = "oom"  # a generator ran out of memory on this sample
    INVALID_IMAGE = "invalid_image"  # a generator returned NaN or an all-black image


class UserError(Exception):
    """A mistake of the user's (bad name, bad argument, missing path): one line, exit code 2, no traceback."""


class DataError(Exception):
    """A fault in one sample's data: recorded as a per-sample failure, and the run goes on."""


# --------------------------------------------------------------------------------------------------- Media

_FORMATS = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"RIFF": "webp", b"GIF8": "gif"}

# What one image may cost (docs/reliability.md, "Untrusted data"). Both are checked before the cost is paid: the
# file size from its status before it is opened, the pixel count from the header before any pixel is decoded.
MAX_IMAGE_BYTES = 64 * 2**20
MAX_IMAGE_PIXELS = 64_000_000  # below Pillow's own bomb limit (about 89 MP), which only warns up to twice that
MAX_BYTES_ENV = "RRBENCH_MAX_IMAGE_BYTES"
MAX_PIXELS_ENV = "RRBENCH_MAX_IMAGE_PIXELS"
# The Pillow plug-ins tried on dataset bytes: the raster formats datasets ship (AVIF and HEIF where a plug-in for
# them is installed). Others are never tried: EPS runs Ghostscript, and dozens of rarely used parsers add nothing.
DECODABLE = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF", "HEIF")


def sniff_format(data: bytes) -> str | None:
    for magic, fmt in _FORMATS.items():
        if data.startswith(magic):
            return fmt
    return None


def image_limits() -> tuple[int, int]:
    """(bytes per image file, pixels per decoded image): the defaults, or $RRBENCH_MAX_IMAGE_BYTES / _PIXELS."""
    return _limit(MAX_BYTES_ENV, MAX_IMAGE_BYTES), _limit(MAX_PIXELS_ENV, MAX_IMAGE_PIXELS)


def _limit(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"${name} must be a positive whole number, got {text!r}")
    return value


def shown(text: str, limit: int | None = 160) -> str:
    """``text`` fit for a one-line message and a UTF-8 record: control characters, NUL and lone surrogates escaped
    (a dataset names its paths, and a surrogate cannot be written as UTF-8), and cut after ``limit`` characters."""
    out = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return out if limit is None or len(out) <= limit else f"{out[:limit]}... ({len(text):,} characters)"


@dataclass(frozen=True, eq=False)
class Media:
    """A reference to one image: a file, encoded bytes, or a deterministic recipe that renders it on demand.

    ``key`` identifies the content (sha256 of the bytes, or a versioned recipe id for generated images), so the
    response cache and the sample log never need the pixels. Decoding happens only when a model asks for it.

    A file named by a dataset is untrusted: with ``root`` (the dataset's own folder) it is read only when its real
    path is inside that folder and it is a regular file within the size limit, and decoding stops at the pixel limit.
    Anything else is a DataError, which the runner records as the sample's ``data`` failure.
    """

    path: str | None = None
    data: bytes | None = field(default=None, repr=False)
    format: str | None = None
    recipe: str | None = None
    render: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    root: str | None = None  # the folder ``path`` must stay inside; None for paths rrbench or the user chose
    # (data, its sha256) once computed by ``loaded``: kept across ``dataclasses.replace`` (a judge relabelling the
    # MIME type), and used only while ``data`` is that very object, so replaced bytes are hashed afresh.
    digest: tuple[bytes, str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_path(cls, path: str | Path, root: str | Path | None = None) -> Media:
        """An image file, checked now without opening it: a path that may not be read (outside ``root``, missing, a
        link loop, a FIFO, device or folder, over the size limit, a NUL in its name) gives a media that fails with
        the reason when a model reads it, and whose key needs no read."""
        text = os.fspath(path)
        media = cls(path=text, root=None if root is None else os.fspath(root))
        try:
            _resolve(text, media.root)
        except DataError as exc:
            return cls.unavailable(f"unreadable/{shown(text)}", str(exc))
        return media

    @classmethod
    def from_bytes(cls, data: bytes, format: str | None = None) -> Media:
        return cls(data=data, format=format or sniff_format(data))

    @classmethod
    def from_recipe(cls, recipe: str, render: Callable[[], bytes], format: str = "png") -> Media:
        return cls(recipe=recipe, render=render, format=format)

    @classmethod
    def unavailable(cls, key: str, message: str) -> Media:
        """An image that cannot be had: reading it raises DataError(message), so its sample is recorded as a ``data``
        failure and the run goes on; ``key`` (a recipe id) stands in for the content hash."""
        return cls(recipe=key, render=functools.partial(_unavailable, message))  # no format: there are no bytes

    def read_bytes(self) -> bytes:
        """The encoded image, exactly as stored (servers receive these bytes without re-encoding)."""
        if self.data is not None:
            return self.data
        if self.path is not None:
            return _read_file(self.path, self.root)
        if self.render is not None:
            return self.render()
        raise DataError("media has neither bytes, path nor recipe")

    @cached_property
    def sha256(self) -> str:
        if self.digest is not None and self.digest[0] is self.data:
            return self.digest[1]
        return hashlib.sha256(self.read_bytes()).hexdigest()

    @cached_property
    def key(self) -> str:
        # A recipe is a promise of identical bytes (it is versioned), so hashing them is not needed.
        if self.recipe:
            return f"recipe:{self.recipe}"
        try:
            return f"sha256:{self.sha256}"
        except DataError:
            if self.path is None:
                raise
            # The file changed after from_path checked it (removed, swapped for a link or a FIFO, grown): a key that
            # names the path lets the request be built, and the read that follows fails as the sample's data failure.
            return f"unreadable:{shown(self.path, None)}"

    @property
    def mime(self) -> str:
        fmt = self.format or sniff_format(self.read_bytes()) or "png"
        return f"image/{fmt}"

    def image(self) -> PILImage.Image:
        """Decode to an RGB PIL image (``to_rgb``): DataError naming the image when it is corrupt or over the pixel
        limit (checked from the header, before any pixel is decoded)."""
        return decode_image(self.read_bytes(), self.describe())

    def loaded(self) -> Media:
        """This image with its bytes read once, checked (header, pixel limit, and the file's own checksums where
        its format has them, e.g. every PNG chunk's CRC) and hashed: what is then sent, hashed again or decoded
        never reads the file a second time. DataError naming the image when it cannot be had or is corrupt.

        Cheaper than decoding: a judge that forwards the bytes (a benchmark's own protocol) never needs pixels."""
        data = self.read_bytes()
        verify_image(data, self.describe())
        return dataclasses.replace(self, data=data, render=None, digest=(data, hashlib.sha256(data).hexdigest()))

    def describe(self) -> str:
        return shown(self.path or self.recipe or f"<{len(self.data or b'')} bytes>")

    def to_json(self) -> JSON:
        out: JSON = {"key": self.key}
        if self.path:
            out["path"] = shown(self.path, None)
        if self.format:
            out["format"] = self.format
        return out


def _unavailable(message: str) -> bytes:
    raise DataError(message)


def _resolve(path: str, root: str | None) -> tuple[str, os.stat_result]:
    """The real path of an image file and its status, or DataError saying why it may not be read.

    Nothing is opened here: opening a FIFO blocks, and opening some devices has effects of its own.
    """
    name = shown(path)
    if "\x00" in path:
        raise DataError(f"image path {name} contains a NUL character")
    try:
        os.fsencode(path)
        real = os.path.realpath(path)
    except (UnicodeError, ValueError, OSError) as exc:
        raise DataError(f"image path {name} cannot be used: {exc}") from None
    if root is not None and not _inside(real, root):
        raise DataError(f"image path {name} leads outside the dataset folder {shown(root)}")
    try:
        status = os.stat(real)
    except OSError as exc:
        raise DataError(f"cannot read image {name}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(status.st_mode):
        raise DataError(f"image {name} is not a regular file ({file_kind(status.st_mode)})")
    cap = image_limits()[0]
    if status.st_size > cap:
        raise DataError(f"image {name} has {status.st_size:,} bytes, over the limit of {cap:,} (${MAX_BYTES_ENV})")
    return real, status


def _inside(real: str, root: str) -> bool:
    top = os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for messages."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file"))
    return next((name for test, name in kinds if test(mode)), "not a file")


_OPEN_FLAGS = os.O_RDONLY | sum(getattr(os, flag, 0) for flag in ("O_NONBLOCK", "O_NOFOLLOW", "O_CLOEXEC", "O_BINARY"))


def _read_file(path: str, root: str | None) -> bytes:
    """A checked file's bytes, at most the size limit. The open cannot block (O_NONBLOCK) nor follow a link swapped
    in after the check (O_NOFOLLOW), and the opened file must be the one checked, still inside ``root``."""
    real, checked = _resolve(path, root)
    name = shown(path)
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        raise DataError(f"cannot read image {name}: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise DataError(f"image {name} changed while it was being opened")
        if root is not None and not _inside(_opened_path(fd) or real, root):
            raise DataError(f"image path {name} leads outside the dataset folder {shown(root)}")
        return _read_capped(fd, name, image_limits()[0])
    except OSError as exc:
        raise DataError(f"cannot read image {name}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _opened_path(fd: int) -> str | None:
    # Where the kernel says the open file is (Linux): a folder on the way swapped for a link after the check is
    # caught here. Elsewhere the checks before the open stand alone.
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _read_capped(fd: int, name: str, cap: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(1 << 20, cap + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:  # it grew after its size was checked
            raise DataError(f"image {name} has more than {cap:,} bytes, the limit (${MAX_BYTES_ENV})")
    return b"".join(chunks)


def open_image(data: bytes, what: str) -> PILImage.Image:
    """Encoded bytes opened lazily by Pillow (the header only), refused with DataError when the header declares more
    pixels than the limit or the bytes are no DECODABLE format. The caller decodes (load, convert, thumbnail)."""
    from PIL import Image, UnidentifiedImageError

    limit = image_limits()[1]
    Image.init()
    try:
        img = Image.open(io.BytesIO(data), formats=[f for f in DECODABLE if f in Image.OPEN])
    except UnidentifiedImageError:
        raise DataError(f"corrupt image {what}: not a readable image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning, under -W error
        raise DataError(f"image {what} is a decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow's parsers raise many kinds on hostile bytes (struct.error, IndexError, ...)
        raise DataError(f"corrupt image {what}: {type(exc).__name__}: {exc}") from None
    width, height = img.size
    if width * height > limit:
        img.close()
        raise DataError(f"image {what} has {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{limit:,} (${MAX_PIXELS_ENV}); not decoded")
    return img


def verify_image(data: bytes, what: str) -> None:
    """DataError unless ``data`` opens as an image within the pixel limit and passes its format's own integrity
    check (Pillow's ``verify``: a PNG's chunks and their CRCs to the end, without decompressing pixels)."""
    with open_image(data, what) as img:
        try:
            img.verify()
        except Exception as exc:  # truncated data, a bad checksum: the bytes' fault
            raise DataError(f"corrupt image {what}: {type(exc).__name__}: {exc}") from None


def decode_image(data: bytes, what: str) -> PILImage.Image:
    """RGB pixels of encoded bytes (``to_rgb``), within the pixel limit; DataError naming ``what`` otherwise."""
    with open_image(data, what) as img:
        try:
            return to_rgb(img)
        except Exception as exc:  # truncated data, a broken frame, a mode Pillow cannot convert: all the bytes' fault
            raise DataError(f"corrupt image {what}: {type(exc).__name__}: {exc}") from None


_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
WHITE = (255, 255, 255)


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """The current frame (the first, for an animated image) as 8-bit RGB, without saturating deep images:

    * 16-bit greyscale (``I;16*``) maps 0..65535 onto 0..255 (rounded v/257);
    * 32-bit integer (``I``) and float (``F``) greyscale: non-finite values count as 0; values within 0..1 (float
      only), else 0..255, else 0..65535, are scaled from the smallest of those ranges that holds them all; values
      below 0 or above 65535 are stretched from their own minimum and maximum;
    * transparency (an alpha channel, or a palette's or colour's tRNS) is composited on white;
    * every other mode (CMYK, YCbCr, LAB, HSV, 1, L, P, RGB) through Pillow's own conversion.
    """
    from PIL import Image

    if img.mode.startswith("I") or img.mode == "F":
        import numpy as np

        img = Image.fromarray(_grey8(np.asarray(img), img.mode), "L")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA") if img.mode != "La" else img.convert("RGBa").convert("RGBA")
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img.convert("RGB")


def _grey8(values: Any, mode: str) -> Any:
    import numpy as np

    if mode.startswith("I;16"):
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    # float64, scaled in place: float32 rounds 1e6 * 255 / 2e6 to 127.49999 (127, not 128).
    grey = np.nan_to_num(values.astype(np.float64), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(grey.min()), float(grey.max())) if grey.size else (0.0, 0.0)
    if low < 0 or high > 65535:
        grey -= low
        top = high - low
    else:
        top = next(t for t in (1.0, 255.0, 65535.0) if high <= t and (t > 1 or mode == "F"))
    grey *= 255.0 if top > 0 else 0.0
    grey /= top or 1.0  # multiplied first, so exact halves stay exact (100 * 255 / 200 = 127.5)
    return np.clip(np.rint(grey, out=grey), 0, 255, out=grey).astype(np.uint8)


# --------------------------------------------------------------------------------------------------- Labels


class LabelKind(str, Enum):
    WINNER = "winner"  # one candidate preferred (index in ``winner``)
    TIE = "tie"  # equally good, kind unspecified
    BOTH_GOOD = "both_good"
    BOTH_BAD = "both_bad"
    RANKING = "ranking"  # ``ranks``: 1 = best, equal numbers = tie
    SCORES = "scores"  # ``scores``: per-candidate human scores, higher = better
    UNKNOWN = "unknown"  # a label string the task's label map does not know: counted, never guessed
    NONE = "none"  # no human label: a generation task's prompt (its images are made, then judged)

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

    @classmethod
    def none(cls) -> Label:
        return cls(LabelKind.NONE)

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
    # Images only a generation benchmark's judge sees, never the generator (GEdit-Bench's judge compares the edit
    # with ``input_image`` while the generator edits ``input_image_raw``).
    reference: tuple[Media, ...] = ()

    @property
    def category(self) -> str | None:
        value = self.meta.get("category")
        return None if value is None else str(value)

    def to_json(self) -> JSON:
        out = {
            "id": self.id,
            "prompt": self.prompt,
            "source": [m.to_json() for m in self.source],
            "candidates": [m.to_json() for m in self.candidates],
            "label": self.label.to_json(),
            "meta": dict(self.meta),
        }
        if self.reference:
            out["reference"] = [m.to_json() for m in self.reference]
        return out


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
    # Generation tasks: how many images a generator makes per prompt (``-T images_per_prompt=N`` where the task
    # takes it), and the task's own seed convention for them, if its benchmark fixes one (else rrbench's
    # ``image_seed(run seed, sample id, index)``).
    images_per_prompt: int = 1
    seed_of: Callable[[int, str, int], int] | None = None
    # Where image ``j`` of a sample lies in the benchmark's official output layout (a relative path), for
    # ``--images FOLDER`` and ``rrbench export --layout official``; None: rrbench's own, ``<sample id>_<j>.png``.
    layout: Callable[[Sample, int], str] | None = None
    # A generation benchmark's own judge protocol (an ``rrbench.protocols.official.BenchmarkJudge``): its official
    # prompts, decoding, image handling, parse and failure rules, run by any generic VLM judge when the task's
    # protocol has mode ``official.MODE``. Typed loosely: types.py imports no protocol.
    judge: Any = None
    # Files an official output layout holds besides the images (PICA-Bench's meta_info.json), from the samples
    # exported: relative path -> bytes. ``rrbench export --layout official`` writes them next to the images.
    layout_files: Callable[[Sequence[Sample]], Mapping[str, bytes]] | None = None
    # The names of those files that sit beside one sample's images (GEdit-Bench's ``<key>_SRCIMG.png``), so that an
    # ``--images`` folder in the official layout does not report them as images of no sample.
    layout_companions: Callable[[Sample], Sequence[str]] | None = None

    @property
    def generative(self) -> bool:
        return self.kind in (TaskKind.GENERATION_T2I, TaskKind.GENERATION_EDIT)

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


@dataclass(frozen=True, eq=False)
class ChatQuery:
    """One request of a benchmark's own judge protocol (``rrbench.protocols.official``): chat messages exactly as the
    benchmark's official code builds them, sent as they are by any generic VLM judge.

    ``messages`` are OpenAI-style messages whose content is a string or a list of parts ``{"type": "text", "text"}``
    / ``{"type": "image", "media": Media}`` (the media's ``format`` is the MIME type the request declares, which an
    official script may get wrong on purpose: ImgEdit labels JPEG bytes ``image/png``). ``temperature`` and
    ``max_tokens`` None: not sent, as the official code leaves them to the server. ``attempt`` numbers an official
    re-ask of the same request (UniGenBench asks again after an unreadable answer), so a re-ask is a new request,
    never the cached answer of the first. ``name`` says which call of the protocol it is (``sc``, ``pq``, ``qa-2``).
    """

    messages: tuple[Mapping[str, Any], ...]
    temperature: float | None = None
    max_tokens: int | None = None
    generation: str = "t2i"
    sample_id: str = ""
    attempt: int = 0
    name: str = ""

    @cached_property
    def key(self) -> str:
        parts: list[str] = [self.generation, repr(self.temperature), repr(self.max_tokens), str(self.attempt),
                            self.name]
        for message in self.messages:
            parts.append(f"<{message.get('role', '')}>")
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
                continue
            for part in content or ():
                if part.get("type") == "image":
                    media: Media = part["media"]
                    parts.append(f"<image {media.key} {media.format or ''}>")
                else:
                    parts.append(str(part.get("text", "")))
        return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


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
