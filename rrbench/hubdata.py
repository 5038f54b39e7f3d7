"""Rows of a public dataset, streamed: from a local copy (``--data``) or the Hugging Face hub, by the same code.

A hub dataset is fetched (or found in the local cache) as a snapshot folder at a pinned revision, and then read
exactly as a local copy is: parquet files in the dataset's own layout (``<config>/<split>-*.parquet``,
``data/<split>-*.parquet``, ...), or a JSON / JSON-lines file. Parquet is read one record batch at a time and
image cells stay encoded bytes until a model decodes them, so memory does not grow with the dataset.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench.registry import require
from rrbench.types import DataError, Media, UserError

BATCH_ROWS = 16  # parquet rows decoded at once: a few images each, so a few MB


@dataclass(frozen=True)
class Source:
    """Where a task's rows live on the hub."""

    dataset: str
    split: str
    config: str | None = None
    revision: str | None = None  # a commit sha; None only where no pin is known (the snapshot's is recorded)
    files: tuple[str, ...] = ()  # explicit files or glob patterns inside the repo (only these are fetched)

    def fetch_hint(self) -> str:
        rev = f" --revision {self.revision}" if self.revision else ""
        only = " --include " + " ".join(f"'{f}'" for f in self.files) if self.files else ""
        return f"hf download {self.dataset} --repo-type dataset{rev}{only} --local-dir DIR, then pass --data DIR"


@dataclass(frozen=True)
class Rows:
    """A re-iterable stream of row dicts; ``root`` resolves relative image paths; ``size`` is the row count."""

    files: tuple[Path, ...]
    root: Path
    size: int | None
    origin: str

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for file in self.files:
            if file.suffix == ".parquet":
                yield from _parquet_rows(file)
            else:
                yield from _json_rows(file)


def open_rows(source: Source, data: Path | None) -> Rows:
    """The rows of ``source``'s split, from ``data`` (a file or folder) or from the hub snapshot."""
    if data is None:
        data = _snapshot(source)
        origin = f"{source.dataset}@{data.name}"
    else:
        origin = str(data)
    if not data.exists():
        raise UserError(f"--data path does not exist: {data}")
    files = (data,) if data.is_file() else _split_files(data, source)
    root = data.parent if data.is_file() else data
    return Rows(files=files, root=root, size=_count(files), origin=origin)


# Hub snapshots read in this process: dataset id -> the commit actually read (a pin, or whatever the cache held).
# The runner records them in run.json, so a run without a pinned revision still says which data it scored.
SNAPSHOTS: dict[str, dict[str, str | None]] = {}


def _snapshot(source: Source) -> Path:
    hub = require("huggingface_hub", "datasets")
    patterns = list(source.files) or ["*.parquet", "**/*.parquet", "*.json", "*.jsonl", "**/*.json*"]
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        path = hub.snapshot_download(source.dataset, repo_type="dataset", revision=source.revision,
                                     allow_patterns=patterns, local_files_only=offline)
    except Exception as exc:  # offline, not cached, no such repo or revision: all fixed the same way
        raise UserError(f"cannot get dataset {source.dataset} ({type(exc).__name__}); "
                        f"fetch it once: {source.fetch_hint()}") from None
    SNAPSHOTS[source.dataset] = {"requested": source.revision, "commit": Path(path).name}
    return Path(path)


def _split_files(folder: Path, source: Source) -> tuple[Path, ...]:
    """The files of one config and split in a folder laid out as on the hub."""
    if source.files:
        # Entries may be glob patterns (hub file names carry content hashes), as snapshot_download's patterns are.
        found = [p for f in source.files for p in sorted(folder.glob(f))]
        if not found:
            raise UserError(f"{folder} has none of {', '.join(source.files)} ({source.dataset}'s layout)")
        return _complete(tuple(found))
    parquet = sorted(p for p in folder.rglob("*.parquet") if ".cache" not in p.parts)
    if not parquet:
        raise UserError(f"no parquet files under {folder}; expected {source.dataset}'s layout "
                        f"({source.config or 'data'}/{source.split}-*.parquet)")
    if source.config:
        in_config = [p for p in parquet if source.config in p.relative_to(folder).parts[:-1]]
        nested = any(len(p.relative_to(folder).parts) > 1 for p in parquet)
        if not in_config and nested:  # other configs' folders only: never read one config as another
            folders = sorted({p.relative_to(folder).parts[0] for p in parquet})
            raise UserError(f"config {source.config!r} not found under {folder} (found: {', '.join(folders)})")
        parquet = in_config or parquet
    chosen = [p for p in parquet if _is_split(p, source.split)]
    if not chosen:
        splits = sorted({p.name.split("-")[0].split(".")[0] for p in parquet})
        raise UserError(f"split {source.split!r} not found under {folder} (found: {', '.join(splits)})")
    return _complete(tuple(chosen))


_SHARD = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")


def _complete(files: tuple[Path, ...]) -> tuple[Path, ...]:
    """Refuse a split whose shards (``train-00000-of-00004.parquet``) are not all there: it would score a subset."""
    seen: dict[tuple[Path, str, int], set[int]] = {}
    for f in files:
        m = _SHARD.match(f.name)
        if m:
            seen.setdefault((f.parent, m["stem"], int(m["n"])), set()).add(int(m["i"]))
    for (parent, stem, n), got in seen.items():
        if len(got) != n:
            missing = sorted(set(range(n)) - got)
            raise UserError(f"{parent}: {stem} has {len(got)} of {n} shards (missing {stem}-{missing[0]:05d}-of-"
                            f"{n:05d}.parquet); the copy is incomplete")
    return files


def _is_split(path: Path, split: str) -> bool:
    name = path.name
    return name == f"{split}.parquet" or name.startswith(f"{split}-") or path.parent.name == split


def _count(files: Sequence[Path]) -> int | None:
    if not all(f.suffix == ".parquet" for f in files):
        return None
    pq = require("pyarrow.parquet", "datasets")
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except Exception as exc:
        raise UserError(f"not a readable parquet file: {files[0]} ({type(exc).__name__}: {exc})") from None


def _parquet_rows(file: Path) -> Iterator[dict[str, Any]]:
    pq = require("pyarrow.parquet", "datasets")
    try:
        # pyarrow's default pre_buffer=True keeps every byte range it has read until the file is closed, so memory
        # grew with the file (4.2 GB peak for 5,000 pairs at 512x512, bench/data_memory.py); a buffered stream
        # reads each column chunk in 1 MiB pieces and lets a row group go once it is consumed.
        reader = pq.ParquetFile(file, pre_buffer=False, buffer_size=1 << 20)
        for batch in reader.iter_batches(batch_size=BATCH_ROWS):
            yield from batch.to_pylist()
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc}") from None


def _json_rows(file: Path) -> Iterator[dict[str, Any]]:
    try:
        text = file.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        if file.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
            rows = loaded if isinstance(loaded, list) else loaded.get("data", loaded.get("rows"))
    except (ValueError, AttributeError) as exc:
        raise UserError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise UserError(f"{file}: expected a list of rows")
    yield from rows


def media(value: Any, root: Path, what: str) -> Media:
    """An image cell as stored: HF ``Image`` struct ({bytes, path}), raw bytes, or a path relative to ``root``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return Media.from_bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, bytes | bytearray) and value:
        return Media.from_bytes(bytes(value))
    if isinstance(value, str) and value:
        path = Path(value)
        return Media.from_path(path if path.is_absolute() else root / path)
    return missing(f"missing/{what}", f"{what}: no image (got {type(value).__name__})")


def missing(key: str, message: str) -> Media:
    """An image that is not there: it fails with ``message`` when a model reads it, so the sample is recorded as a
    data failure and the run goes on (a recipe needs no bytes for its key)."""
    return Media.from_recipe(key, functools.partial(_raise, message))


def _raise(message: str) -> bytes:
    raise DataError(message)


def column(row: dict[str, Any], name: str, source: Source) -> Any:
    """A required column; its absence means the data is in another schema, which is the user's to fix."""
    try:
        return row[name]
    except KeyError:
        raise UserError(f"{source.dataset}: column {name!r} missing (columns: {', '.join(sorted(row))}); "
                        "is --data a copy of this dataset in its public schema?") from None
