"""The judge-images protocol: a judge scores each image a generator made for a sample (or a folder holds).

Each image is one pointwise request (the prompt, the source images of an edit, the image) and one trial whose
``order`` is the image's index. An image that was not made (its generation failed) or cannot be had (missing from the
folder, not an image) is that trial's failure, never skipped, so coverage says what was judged.

Images come from an ``ImageSource``: a generation run directory (``rrbench generate``'s) or a folder in the task's
official output layout (``--images DIR``, e.g. another lab's images). Its ``identity`` enters the run spec, so
judging other images is another run, and judging the same images with another judge never makes an image.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench.protocols.pairwise import shown_variables
from rrbench.record import read_run_dict
from rrbench.store import RUN_JSON, load_results
from rrbench.types import (
    DataError,
    FailureKind,
    Judgement,
    Media,
    Prediction,
    Protocol,
    Query,
    Sample,
    SampleResult,
    Task,
    Trial,
    UserError,
)

if TYPE_CHECKING:
    from rrbench.dispatch import Dispatcher

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PROBE_SAMPLES = 8  # the samples whose images must be in an --images folder before a run starts
INLINE_CHECK_BYTES = 4 * 2**20  # images up to this size are checked on the event loop (_small)


@dataclass(frozen=True)
class Image:
    """Image ``index`` of a sample in a source: its media, or why there is none (a failure kind and detail)."""

    index: int
    entry: Mapping[str, Any]  # what the record keeps: index, seed, key, path (relative to the source's root)
    media: Media | None = None
    failure: FailureKind | None = None
    detail: str = ""


def own_layout(sample: Sample, index: int) -> str:
    """rrbench's layout: ``<sample id>_<index>.png``, the id made safe for any file system."""
    return f"{safe_name(sample.id)}_{index}.png"


def safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"
    if name != text:  # two ids that differ only in unsafe characters must not share a file
        name += "-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return name


class ImageSource:
    """Where a judge run's images come from."""

    root: Path

    def identity(self) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def images(self, sample: Sample, n: int) -> list[Image]:
        raise NotImplementedError

    async def fetch(self, sample: Sample, n: int) -> list[Image]:
        """``images``, once they exist: a source that is still being made (a generation stage running beside this
        judge, rrbench refine) waits for the sample's images here."""
        return self.images(sample, n)

    def seen(self, sample: Sample, n: int) -> None:
        """The run met this sample (judged now or before): its images belong to the task."""

    def finish(self) -> list[str]:
        """Problems with the source as a whole once every sample was met (e.g. files no sample names)."""
        return []


class RunSource(ImageSource):
    """The images of a generation run directory, as its sample log lists them."""

    def __init__(self, path: Path) -> None:
        self.root = path.resolve()
        record = read_run_dict(path)
        if not isinstance(record.get("generator"), dict):
            raise UserError(f"--images {path}: not a generation run (its run.json names no generator)")
        self.record = record
        self._by_id = {r.sample_id: r for r in load_results(path)}

    def identity(self) -> str:
        return f"run:{self.record.get('spec_hash')}"

    def describe(self) -> dict[str, Any]:
        out = {"kind": "generation-run", "path": str(self.root), "spec_hash": self.record.get("spec_hash"),
               "task": self.record.get("task"), "generator": self.record.get("generator"),
               "status": self.record.get("status")}
        if isinstance(self.record.get("refine"), dict):  # a test-time refine set: the leaderboard's "+PT" row
            out["refine"] = self.record["refine"]
        return out

    def images(self, sample: Sample, n: int) -> list[Image]:
        return run_images(self.root, self._by_id.get(sample.id), n)


def run_images(root: Path, result: SampleResult | None, n: int) -> list[Image]:
    """The ``n`` images of a sample as a generation run's record lists them (``result``; None: not in the run)."""
    listed = {e.get("index"): e for e in (result.candidates if result else ()) if isinstance(e, Mapping)}
    out = []
    for i in range(n):
        entry = listed.get(i)
        if entry is None:
            out.append(Image(i, {"index": i}, failure=FailureKind.DATA,
                             detail=f"image {i} of this sample is not in the generation run {root}"))
        elif "failure" in entry:
            out.append(Image(i, dict(entry), failure=_kind(entry["failure"]),
                             detail=f"image {i} was not generated: {entry.get('detail', '')}"))
        elif not isinstance(entry.get("path"), str):  # a refine round's image that was not made again
            out.append(Image(i, dict(entry), failure=FailureKind.DATA,
                             detail=f"image {i} was not made in the generation run {root}"))
        else:
            out.append(Image(i, dict(entry), Media.from_path(root / entry["path"], root=root)))
    return out


class FolderSource(ImageSource):
    """A folder of images in the task's official layout (or rrbench's), made anywhere."""

    def __init__(self, path: Path, task: Task) -> None:
        if not path.is_dir():
            raise UserError(f"--images {path}: no such folder")
        self.root = path.resolve()
        self.layout = task.layout or own_layout
        self.companions = task.layout_companions if task.layout is not None else None
        self.files = sorted(_image_files(self.root))
        if not self.files:
            raise UserError(f"--images {path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
        self._named: set[str] = set()

    def identity(self) -> str:
        listing = hashlib.sha256()
        for name in self.files:  # names, sizes and times: other files (or the same ones changed) are other images
            try:
                stat = (self.root / name).stat()
            except OSError:  # a broken link or a file gone meanwhile: its image fails when read, the name counts
                stat = (self.root / name).lstat()
            listing.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return f"dir:{listing.hexdigest()}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "folder", "path": str(self.root), "files": len(self.files),
                "layout": "official" if self.layout is not own_layout else "rrbench"}

    def images(self, sample: Sample, n: int) -> list[Image]:
        out = []
        for i in range(n):
            name = self.layout(sample, i)
            entry = {"index": i, "path": name}
            if not (self.root / name).is_file():
                out.append(Image(i, entry, failure=FailureKind.DATA, detail=f"missing image {name} in {self.root}"))
            else:
                out.append(Image(i, entry, Media.from_path(self.root / name, root=self.root)))
        return out

    def seen(self, sample: Sample, n: int) -> None:
        self._named.update(self.layout(sample, i) for i in range(n))
        if self.companions is not None:
            self._named.update(self.companions(sample))

    def probe(self, samples: Iterable[Sample], n: int) -> None:
        """A folder holding none of the files the first samples name is in another layout (or is the wrong
        folder): one line now, instead of a run that records every image as missing."""
        names = {self.layout(sample, i) for sample in samples for i in range(n)}
        if names and not names.intersection(self.files):
            raise UserError(f"--images {self.root}: none of the {len(names)} images the task's first samples name "
                            f"is there (e.g. {sorted(names)[0]}); is the folder in the task's output layout "
                            "(see `rrbench export --layout official`)?")

    def finish(self) -> list[str]:
        extra = [f for f in self.files if f not in self._named]
        if not extra:
            return []
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        return [f"{len(extra)} image file(s) in {self.root} belong to no sample of the task: {shown}"]


def _image_files(root: Path) -> list[str]:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                out.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return out


def _kind(value: Any) -> FailureKind:
    try:
        return FailureKind(value)
    except ValueError:
        return FailureKind.ERROR


def open_source(text: str, task: Task, data: Path | None = None) -> ImageSource:
    """``--images``: a generation run directory (it has a run.json) or a folder of images, checked against the
    task's first samples."""
    path = Path(text)
    if (path / RUN_JSON).is_file():
        return RunSource(path)
    source = FolderSource(path, task)
    source.probe(itertools.islice(task.load(data), PROBE_SAMPLES), task.images_per_prompt)
    return source


class JudgeImagesStep:
    def __init__(self, task: Task, protocol: Protocol, dispatcher: Dispatcher, source: ImageSource) -> None:
        self.task, self.protocol, self.dispatcher, self.source = task, protocol, dispatcher, source

    async def run(self, sample: Sample) -> SampleResult:
        start = time.perf_counter()
        images = await self.source.fetch(sample, self.task.images_per_prompt)
        judged = await asyncio.gather(*(self._trial(sample, image) for image in images))
        return SampleResult(
            sample_id=sample.id, label=sample.label, trials=tuple(trial for trial, _ in judged), meta=sample.meta,
            latency_s=time.perf_counter() - start, prompt=sample.prompt,
            candidates=tuple(dict(image.entry) | key for image, (_, key) in zip(images, judged, strict=True)),
            source=tuple(m.to_json() for m in sample.source),
        )

    async def _trial(self, sample: Sample, image: Image) -> tuple[Trial, dict[str, Any]]:
        """The image's trial, and its content key for the record."""
        media = await readable(image)
        if isinstance(media, Trial):
            return media, (_key(image) if image.media is not None else {})
        return await self._judge(sample, image.index, media), {"key": media.key}

    async def _judge(self, sample: Sample, index: int, media: Media) -> Trial:
        """Image ``index`` (readable) judged: here the reward model's own score of it."""
        order = (index,)
        variables = shown_variables(sample, self.task.prompt_vars, (0,))
        query = Query(sample.prompt, (media,), sample.source, self.task.generation, sample.id,
                      self.task.judge_prompt, variables)
        judgement = await self.dispatcher.submit("score", query)
        if judgement.failure is not None:
            return Trial(order, (judgement,), None, judgement.failure)
        if not judgement.scores or judgement.scores[0] is None:
            failed = Judgement.failed(FailureKind.PARSE, "the judge gave this image no score")
            return Trial(order, (judgement, failed), None, FailureKind.PARSE)
        return Trial(order, (judgement,), Prediction((judgement.scores[0],)))


async def readable(image: Image) -> Media | Trial:
    """The image read, checked and hashed once (nothing after this, the request or the cache key, reads the file
    again), or the failed trial saying why: no image was made, or its file is missing or corrupt."""
    order = (image.index,)
    if image.media is None:
        kind = image.failure or FailureKind.DATA
        return Trial(order, (Judgement.failed(kind, image.detail),), None, kind)
    try:
        return image.media.loaded() if _small(image.media) else await asyncio.to_thread(image.media.loaded)
    except DataError as exc:
        return Trial(order, (Judgement.failed(FailureKind.DATA, str(exc)),), None, FailureKind.DATA)


def _small(media: Media) -> bool:
    """Whether an image is checked on the event loop rather than in a thread. For an image of a few megabytes the
    work (read, header, checksums, sha256) takes about a millisecond, less than what a worker thread costs the loop
    in GIL hand-offs (measured: 235 vs 155 requests/s judging 512 px PNGs, bench/generation_judging.py); a big file
    or a rendered recipe goes to a thread so the loop never stalls on it."""
    if media.data is not None:
        return len(media.data) <= INLINE_CHECK_BYTES
    if media.path is None:
        return False
    try:
        return os.stat(media.path).st_size <= INLINE_CHECK_BYTES
    except OSError:
        return True  # it fails at once when read


def _key(image: Image) -> dict[str, Any]:
    if image.media is None:
        return {}
    try:
        return {"key": image.media.key}
    except DataError:
        return {}
