"""Run directories, the append-only sample log, and the persistent response cache.

A run directory holds ``run.json`` (rewritten atomically) and ``samples.jsonl`` (one line per finished sample,
appended and flushed as each sample completes, so a crash loses only what was in flight). Resume reads the log,
drops a torn last line and failed samples, rewrites it atomically, and appends the retries: the finished log has
exactly one line per sample.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rrbench.types import SampleResult, UserError

RUN_JSON = "run.json"
SAMPLES = "samples.jsonl"
LOCK = ".lock"


@contextlib.contextmanager
def atomic_text(path: Path, *, mode: int | None = None, errors: str = "strict") -> Iterator[IO[str]]:
    """A text file written next to ``path``, fsynced and renamed onto it when the block ends: readers see the old
    or the new file, never half of one; on an error nothing is left behind. ``mode``: the file's permissions
    (mkstemp makes it private; pages and tables meant to be shared pass 0o644)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors=errors) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_text(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"not a run directory (no {path.name}): {path.parent}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return obj


def iter_log(path: Path) -> Iterator[dict[str, Any]]:
    """Complete lines of a sample log; a torn last line (the process was killed mid-write) is ignored."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            obj = _parse_line(raw)
            if obj is not None:
                yield obj


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """One log record, or None for a torn line (no newline: killed mid-write) or one that is not a record."""
    if not raw.endswith(b"\n"):
        return None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) and "id" in obj else None


def load_results(run_dir: Path) -> list[SampleResult]:
    """The latest record of each sample in a run's log (later lines win)."""
    latest: dict[str, dict[str, Any]] = {}
    for obj in iter_log(run_dir / SAMPLES):
        latest[obj["id"]] = obj
    return [SampleResult.from_json(obj) for obj in latest.values()]


class RunDir:
    """One run's directory, held under an exclusive lock while a process writes to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fh: IO[str] | None = None
        self._log: IO[bytes] | None = None
        self.log_unchanged = False  # set by prepare_resume: the log held exactly the finished samples

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    def acquire(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fh = (self.path / LOCK).open("w")
        except OSError as exc:
            raise UserError(f"cannot write run directory {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            raise UserError(f"another rrbench process is writing {self.path}; wait for it or use --output") from None

    def release(self) -> None:
        self.close_log()
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def prepare_resume(self) -> set[str]:
        """Keep the finished, successful samples (their ids are returned); the log is rewritten with exactly
        those, one line each, unless it already is exactly that (``self.log_unchanged``), as after a finished
        run: then resuming neither rewrites nor re-serialises anything."""
        kept: dict[str, bytes] = {}
        clean = True
        if self.samples.exists():
            with self.samples.open("rb") as fh:
                for raw in fh:
                    obj = _parse_line(raw)
                    if obj is None:  # a torn or corrupt line: dropped
                        clean = False
                        continue
                    sid = obj["id"]
                    clean = clean and sid not in kept and obj.get("failure") is None
                    if obj.get("failure") is None:
                        kept[sid] = raw
                    else:
                        kept.pop(sid, None)  # a later failure supersedes nothing finished; retry it
        self.log_unchanged = clean
        if not clean:
            self._rewrite_log(kept.values())
        return set(kept)

    def _rewrite_log(self, lines: Any) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".samples.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            for raw in lines:  # the original bytes: what was recorded is kept exactly
                fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.samples)

    def open_log(self) -> None:
        self._log = self.samples.open("ab")

    def append(self, result: SampleResult) -> None:
        assert self._log is not None, "open_log() first"
        self._log.write(_dumps(result.to_json()))
        self._log.flush()  # in the OS after each sample: a SIGKILL loses nothing that finished

    def close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.flush()
                os.fsync(self._log.fileno())
            self._log.close()
            self._log = None


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode()


# --------------------------------------------------------------------------------------------------- cache


def default_cache_path() -> Path:
    env = os.environ.get("RRBENCH_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rrbench" / "responses.sqlite"


class ResponseCache:
    """Judgements keyed by (model fingerprint, mode, exact request), in SQLite with WAL.

    WAL lets two runs read and write the same file at once; writes are batched into one transaction every
    ``flush_every`` entries or seconds because a commit per response would cost more than a fast model call.
    Only successful judgements are stored, so failures are always retried.
    """

    def __init__(self, path: Path, flush_every: int = 256, flush_seconds: float = 2.0) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open response cache {path}: {exc} (set --cache PATH or --no-cache)") from None
        self._pending: list[tuple[str, str, float]] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            for k, value, _ in reversed(self._pending):
                if k == key:
                    return dict(json.loads(value))
            return None
        return dict(json.loads(row[0]))

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._pending.append((key, json.dumps(value, separators=(",", ":")), time.time()))
        if len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._db.close()


class NullCache(ResponseCache):
    """--no-cache: the same interface, remembering nothing."""

    def __init__(self) -> None:
        self.path = Path(os.devnull)

    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
