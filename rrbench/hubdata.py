"""Rows of a public dataset, streamed: from a local copy (``--data``) or the Hugging Face hub, by the same code.

A hub dataset is fetched (or found in the local cache) as a snapshot folder at a pinned revision, and then read
exactly as a local copy is: parquet files in the dataset's own layout (``<config>/<split>-*.parquet``,
``data/<split>-*.parquet``, ...), or a JSON / JSON-lines file. Parquet is read one record batch at a time and
image cells stay encoded bytes until a model decodes them, so memory does not grow with the dataset.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench.registry import require
from rrbench.types import Media, UserError, file_kind, image_limits

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
    image_limits()  # a malformed $RRBENCH_MAX_IMAGE_* is one line now, not a failure per image later
    if data is None:
        data = _snapshot(source)
        origin = f"{source.dataset}@{data.name}"
    else:
        origin = str(data)
    kind = _kind_of_data(data)
    files = (data,) if kind == "file" else _split_files(data, source)
    root = data.parent if kind == "file" else data
    return Rows(files=files, root=root, size=_count(files), origin=origin)


def _kind_of_data(data: Path) -> str:
    """Whether ``data`` is a "file" or a "folder"; anything else (missing, a link loop, a FIFO or a device) is
    refused in one line, before anything opens it."""
    try:
        mode = data.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"--data path does not exist: {data}") from None
    except OSError as exc:
        raise UserError(f"cannot read --data {data}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    raise UserError(f"--data {data} is {file_kind(mode)}, not a dataset file or folder")


# Hub snapshots read in this process: dataset id -> the commit actually read (a pin, or whatever the cache held).
# The runner records them in run.json, so a run without a pinned revision still says which data it scored.
SNAPSHOTS: dict[str, dict[str, str | None]] = {}


def _snapshot(source: Source) -> Path:
    """The snapshot folder, from the local cache or the hub; offline or an unreachable hub fails within seconds
    with one line (rrbench.hubaccess: HF_HUB_OFFLINE, a short probe of the endpoint, no retry storms)."""
    from rrbench import hubaccess

    hub = require("huggingface_hub", "datasets")
    patterns = list(source.files) or ["*.parquet", "**/*.parquet", "*.json", "*.jsonl", "**/*.json*"]
    path = hubaccess.snapshot(hub, source.dataset, source.revision, patterns, source.fetch_hint())
    SNAPSHOTS[source.dataset] = {"requested": source.revision, "commit": Path(path).name}
    return Path(path)


def _split_files(folder: Path, source: Source) -> tuple[Path, ...]:
    """The files of one config and split in a folder laid out as on the hub."""
    if source.files:
        # Entries may be glob patterns (hub file names carry content hashes), as snapshot_download's patterns are.
        found = regular_files((p for f in source.files for p in sorted(folder.glob(f))), skip_folders=False)
        if not found:
            raise UserError(f"{folder} has none of {', '.join(source.files)} ({source.dataset}'s layout)")
        return _complete(tuple(found))
    # Only a .cache folder *inside* the copy is skipped: the copy itself may well live below ~/.cache (the hub's).
    parquet = regular_files(sorted(p for p in folder.rglob("*.parquet") if ".cache" not in p.relative_to(folder).parts))
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


def regular_files(paths: Iterable[Path], skip_folders: bool = True) -> list[Path]:
    """The data files found by a search, each checked before anything opens it: a folder named like a data file is
    skipped (Spark writes ``x.parquet/part-*.parquet``; the search finds the parts), and a FIFO (opening it would
    block), a device or socket, a link loop or an unreadable entry is refused in one line."""
    out = []
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(mode) and skip_folders:
            continue
        if not stat.S_ISREG(mode):
            raise UserError(f"{path} is {file_kind(mode)}, not a data file; remove it from the dataset folder")
        out.append(path)
    return out


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
    pa = require("pyarrow", "datasets")
    pq = require("pyarrow.parquet", "datasets")
    # A footer that reads fine says nothing of the pages: garbled ones fail while a run is under way, as ArrowInvalid
    # (a ValueError), OSError (thrift, snappy) or invalid UTF-8 in a string column. Only the reading is guarded, so
    # an error of whoever consumes the rows is never reported as a corrupt file.
    errors = (OSError, ValueError, pa.ArrowException)
    done = 0
    try:
        # pyarrow's default pre_buffer=True keeps every byte range it has read until the file is closed, so memory
        # grew with the file (4.2 GB peak for 5,000 pairs at 512x512, bench/data_memory.py); a buffered stream
        # reads each column chunk in 1 MiB pieces and lets a row group go once it is consumed.
        batches = pq.ParquetFile(file, pre_buffer=False, buffer_size=1 << 20).iter_batches(batch_size=BATCH_ROWS)
    except errors as exc:
        raise UserError(f"cannot read {file}: {_first_line(exc)}") from None
    while True:
        try:
            batch = next(batches, None)
            rows = [] if batch is None else batch.to_pylist()
        except errors as exc:
            raise UserError(f"{file} is corrupt after row {done:,} ({_first_line(exc)}); fetch it again") from None
        if batch is None:
            return
        done += len(rows)
        yield from rows


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _json_rows(file: Path) -> Iterator[dict[str, Any]]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{file} is not UTF-8 text: {exc}") from None
    try:
        if file.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
            rows = loaded if isinstance(loaded, list) else loaded.get("data", loaded.get("rows"))
    except (ValueError, AttributeError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise UserError(f"{file} is not valid JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(rows, list):
        raise UserError(f"{file}: expected a list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):  # the tasks look up columns by name
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(row), "a number")
            raise UserError(f"{file}: row {i} is {kind}, not an object with the dataset's fields")
        yield row


def media(value: Any, root: Path, what: str) -> Media:
    """An image cell as stored: HF ``Image`` struct ({bytes, path}), raw bytes, or a path relative to ``root``.

    A path must lead to a file inside ``root`` (``confinement``): an absolute path or ``..`` that leaves it, or a
    link out of it, is the sample's data failure, and the file is never opened.
    """
    if isinstance(value, dict):
        if value.get("bytes"):
            return Media.from_bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, bytes | bytearray) and value:
        return Media.from_bytes(bytes(value))
    if isinstance(value, str) and value:
        return Media.from_path(root / value, root=confinement(root))
    return missing(f"missing/{what}", f"{what}: no image (got {type(value).__name__})")


def confinement(root: Path) -> Path:
    """The folder a dataset's image paths must stay inside: its own root, or, for a hub snapshot (whose files are
    links into the repository's ``blobs/``), that dataset's folder in the hub cache."""
    for folder in (root, *root.parents):
        if folder.parent.name == "snapshots" and (folder.parent.parent / "blobs").is_dir():
            return folder.parent.parent
    return root


def missing(key: str, message: str) -> Media:
    """An image that is not there: it fails with ``message`` when a model reads it, so the sample is recorded as a
    data failure and the run goes on (a recipe needs no bytes for its key)."""
    return Media.unavailable(key, message)


def column(row: dict[str, Any], name: str, source: Source) -> Any:
    """A required column; its absence means the data is in another schema, which is the user's to fix."""
    try:
        return row[name]
    except KeyError:
        raise UserError(f"{source.dataset}: column {name!r} missing (columns: {', '.join(sorted(row))}); "
                        "is --data a copy of this dataset in its public schema?") from None
