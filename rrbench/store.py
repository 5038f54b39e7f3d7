"""Run directories, the append-only sample log, and the persistent response cache.

A run directory holds ``run.json`` (rewritten atomically) and ``samples.jsonl`` (one line per finished sample,
appended as each sample completes, so a crash loses only what was in flight). Resume reads the log, drops torn and
malformed lines and failed samples, rewrites it atomically, and appends the retries: the finished log has exactly
one line per sample.

A line is a record only if it ends with its newline and is a well-formed sample record (``parse_line``): garbage,
invalid UTF-8, a torn line in the middle, JSON that is not a sample record or has the wrong types are skipped by
every reader and never hide the records around them. A record appended after a torn line, on the same line, is
recovered. Well-formed lines that fail the record check are copied to ``samples.jsonl.rejected`` before a rewrite
drops them, so a resume never destroys anything that looked like a record.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rrbench.types import FailureKind, LabelKind, SampleResult, UserError, Verdict

RUN_JSON = "run.json"
SAMPLES = "samples.jsonl"
REJECTED = "samples.jsonl.rejected"
LOCK = ".lock"

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import (single-threaded): changing the umask later would race other threads
FILE_MODE = 0o666 & ~_UMASK  # what open() gives a new file: run.json and rewritten logs match samples.jsonl


class StoreError(UserError):
    """A run file could not be written (full disk, quota, file-size limit, permissions): one line, exit 2."""


def write_error(path: Path, exc: OSError) -> StoreError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason += "; free some space (or raise the limit) and run the same command again to resume"
    return StoreError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def atomic_text(path: Path, *, mode: int | None = None, errors: str = "strict") -> Iterator[IO[str]]:
    """A text file written next to ``path``, fsynced and renamed onto it when the block ends: readers see the old
    or the new file, never half of one; on an error nothing is left behind. ``mode``: the file's permissions
    (mkstemp makes it private; pages and tables meant to be shared pass 0o644, run files ``FILE_MODE``)."""
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
    """run.json and its kin: atomic, with the permissions of the run's other files; a failed write (a full disk)
    leaves the previous file as it was and says so in one line."""
    try:
        with atomic_text(path, mode=FILE_MODE) as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
    except OSError as exc:
        raise write_error(path, exc) from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"not a run directory (no {path.name}): {path.parent}") from None
    except (OSError, ValueError) as exc:  # ValueError: invalid JSON or invalid UTF-8
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return obj


# --------------------------------------------------------------------------------------------------- the log


def iter_log(path: Path) -> Iterator[dict[str, Any]]:
    """The well-formed records of a sample log, in order; torn, corrupt and malformed lines are skipped."""
    for _, obj in _scan(path):
        yield obj


def load_results(run_dir: Path) -> list[SampleResult]:
    """The latest record of each sample in a run's log (later lines win)."""
    latest: dict[str, dict[str, Any]] = {}
    for _, obj in _scan(run_dir / SAMPLES):
        latest[obj["id"]] = obj
    out = []
    for obj in latest.values():
        with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):  # well_formed checked all this
            out.append(SampleResult.from_json(obj))
    return out


def log_digest(path: Path) -> str | None:
    """sha256 of the log's bytes (None when there is no log): what run.json's numbers were computed from."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _scan(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            parsed = parse_line(raw)
            if parsed is not None:
                yield parsed


def parse_line(raw: bytes) -> tuple[bytes, dict[str, Any]] | None:
    """(the record's bytes, its JSON) for a line holding a well-formed record, else None.

    A line without its newline was cut by a kill (or a full disk) and is never a record, even when it parses. A
    line that does not parse may be a torn line with a whole record appended after it: the record is recovered from
    where it starts (rrbench writes every record as ``{"id":...``)."""
    if not raw.endswith(b"\n"):
        return None
    found = _record(raw)
    if found is not None:
        return raw, found
    start = raw.find(_RECORD_START, 1)
    while start > 0:
        found = _record(raw[start:])
        if found is not None:
            return raw[start:], found
        start = raw.find(_RECORD_START, start + 1)
    return None


_RECORD_START = b'{"id":'


def _record(raw: bytes) -> dict[str, Any] | None:
    obj = _json_object(raw)
    return obj if obj is not None and well_formed(obj) else None


def _finished(obj: Mapping[str, Any]) -> bool:
    """No trial failed (SampleResult.failure is None), read from a well-formed record's JSON."""
    return not any(trial.get("failure") for trial in obj.get("trials", []))


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw.decode("utf-8"))  # strict UTF-8: json.loads(bytes) would guess UTF-16/32 on garbage
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def well_formed(obj: Mapping[str, Any]) -> bool:
    """A sample record with the types every reader relies on: a garbage line that happens to be JSON with an ``id``
    must not enter the numbers (or crash them), and must not stand in for the sample's real record."""
    try:
        return (
            isinstance(obj.get("id"), str)
            and _label(obj.get("label"))
            and isinstance(obj.get("meta", {}), dict)
            and _optional(obj.get("skipped"), str)
            and _optional(obj.get("prompt"), str)
            and _number(obj.get("latency_s", 0.0))
            and _list_of(obj.get("correct", []), lambda c: c is None or _number(c))
            and _list_of(obj.get("candidates", []), lambda c: isinstance(c, dict))
            and _list_of(obj.get("source", []), lambda c: isinstance(c, dict))
            and _trials(obj.get("trials", []), obj["label"], len(obj.get("candidates", [])))
            and _optional(obj.get("failure"), str)
        )
    except (TypeError, ValueError, AttributeError, KeyError):
        return False


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _list_of(value: Any, check: Any) -> bool:
    return isinstance(value, list) and all(check(v) for v in value)


def _enum(value: Any, kind: Any) -> bool:
    return value is None or (isinstance(value, str) and value in _VALUES[kind])


_VALUES = {kind: frozenset(e.value for e in kind) for kind in (FailureKind, LabelKind, Verdict)}


def _label(label: Any) -> bool:
    if not isinstance(label, dict) or not _enum(label.get("kind"), LabelKind) or label.get("kind") is None:
        return False
    return (
        (label.get("winner") is None or _index(label["winner"]))
        and (label.get("ranks") is None or _list_of(label["ranks"], _number))
        and (label.get("scores") is None or _list_of(label["scores"], _number))
        and isinstance(label.get("original"), str | int | float | bool | type(None))
    )


def _trials(trials: Any, label: Mapping[str, Any], candidates: int) -> bool:
    """Each trial's order a permutation of the candidates, its answers well typed; the label's winner one of them."""
    if not _list_of(trials, lambda t: isinstance(t, dict)):
        return False
    if label.get("kind") == LabelKind.NONE.value:
        return all(_image_trial(t, candidates) for t in trials)
    sizes = {candidates} if candidates else set()
    for trial in trials:
        order = trial.get("order")
        if not _list_of(order, _index) or sorted(order) != list(range(len(order))):
            return False
        sizes.add(len(order))
        prediction = trial.get("prediction")
        if prediction is not None and not (
            isinstance(prediction, dict)
            and _list_of(prediction.get("scores", []), lambda s: s is None or _number(s))
            and len(prediction.get("scores", [])) in (0, len(order))
            and _enum(prediction.get("verdict"), Verdict)
        ):
            return False
        if not (_list_of(trial.get("judgements", []), _judgement) and _enum(trial.get("failure"), FailureKind)):
            return False
    if len(sizes) > 1:
        return False
    n = sizes.pop() if sizes else None
    winner = label.get("winner")
    return not n or winner is None or winner < n


def _image_trial(trial: Mapping[str, Any], candidates: int) -> bool:
    """A generation record's trial: one image (``order`` its index among the candidates), its answers well typed."""
    order = trial.get("order")
    prediction = trial.get("prediction")
    return (
        isinstance(order, list) and len(order) == 1 and _index(order[0]) and order[0] < candidates
        and (prediction is None or (isinstance(prediction, dict)
                                    and _list_of(prediction.get("scores", []), lambda s: s is None or _number(s))))
        and _list_of(trial.get("judgements", []), _judgement) and _enum(trial.get("failure"), FailureKind)
    )


def _judgement(j: Any) -> bool:
    return (
        isinstance(j, dict)
        and _list_of(j.get("scores", []), lambda s: s is None or _number(s))
        and _enum(j.get("verdict"), Verdict)
        and _list_of(j.get("aspects", []), _aspects)
        and all(_optional(j.get(k), str) for k in ("rationale", "refined_prompt", "raw", "failure_detail", "prompt"))
        and _enum(j.get("failure"), FailureKind)
        and _list_of(j.get("flags", []), lambda f: isinstance(f, str))
        and _optional(j.get("usage"), dict)
        and (j.get("latency_s") is None or _number(j["latency_s"]))
    )


def _aspects(a: Any) -> bool:
    return isinstance(a, dict) and all(isinstance(k, str) and (v is None or _number(v)) for k, v in a.items())


class RunDir:
    """One run's directory, held under an exclusive lock while a process writes to it."""

    def __init__(self, path: Path, *, fresh: bool = False) -> None:
        self.path = path
        self.fresh = fresh  # --no-resume: an existing directory is moved aside, under its lock, by acquire()
        self.moved_to: Path | None = None
        self._lock_fh: IO[str] | None = None
        self._log: IO[bytes] | None = None
        self.log_unchanged = False  # set by prepare_resume: the log held exactly the finished samples
        self.log_sha256: str | None = None  # set by prepare_resume: the digest of the log it left

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    def acquire(self) -> None:
        """Take the one-writer lock (made with the directory). With ``fresh``, an existing directory is first locked
        and then moved aside (``<dir>.old-<time>``), so a writer at work in it is never moved under its feet."""
        for _ in range(5):
            if self.fresh and self.moved_to is None and self.path.exists():
                self.moved_to = self._move_aside()
            self._lock_fh = self._take_lock(self.path)
            if self._lock_fh is not None:
                return
        raise UserError(f"another rrbench process keeps moving {self.path}; wait for it or use --output")

    def _take_lock(self, path: Path) -> IO[str] | None:
        """The lock of ``path``; None when the directory was moved away between the open and the lock (the lock
        then belongs to the moved directory: try again)."""
        try:
            path.mkdir(parents=True, exist_ok=True)
            fh = (path / LOCK).open("a")
        except OSError as exc:
            raise UserError(f"cannot write run directory {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise UserError(f"another rrbench process is writing {path}; wait for it or use --output") from None
        try:
            here = os.stat(path / LOCK)
        except OSError:
            here = None
        held = os.fstat(fh.fileno())
        if here is None or (here.st_dev, here.st_ino) != (held.st_dev, held.st_ino):
            fh.close()
            return None
        return fh

    def _move_aside(self) -> Path:
        lock = self._take_lock(self.path)
        if lock is None:
            return self._move_aside()
        try:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            target = self.path.with_name(f"{self.path.name}.old-{stamp}")
            n = 1
            while target.exists():
                n += 1
                target = self.path.with_name(f"{self.path.name}.old-{stamp}-{n}")
            try:
                self.path.rename(target)
            except OSError as exc:
                raise UserError(f"cannot move {self.path} aside: {exc.strerror or exc}") from None
            return target
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()

    def release(self) -> None:
        self.close_log()
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def prepare_resume(self) -> set[str]:
        """Keep the finished, successful samples (their ids are returned); the log is rewritten with exactly
        those, one line each, unless it already is exactly that (``self.log_unchanged``), as after a finished
        run: then resuming neither rewrites nor re-serialises anything. The latest record of a sample decides; a
        torn, corrupt or malformed line decides nothing and is dropped."""
        latest: dict[str, tuple[bytes, bool]] = {}  # id -> (record line, finished)
        rejected: list[bytes] = []
        digest = hashlib.sha256()
        clean = True
        if self.samples.exists():
            with self.samples.open("rb") as fh:
                for raw in fh:
                    digest.update(raw)
                    parsed = parse_line(raw)
                    if parsed is None or parsed[0] is not raw:  # torn, corrupt, or a record recovered from a line
                        clean = False
                        if parsed is None and _looks_like_a_record(raw):
                            rejected.append(raw)
                    if parsed is None:
                        continue
                    line, obj = parsed
                    finished = _finished(obj)
                    clean = clean and finished and obj["id"] not in latest
                    latest[obj["id"]] = (line, finished)
        kept = {sid: line for sid, (line, finished) in latest.items() if finished}
        self.log_unchanged = clean
        if rejected:
            self._keep_rejected(rejected)
        if clean:
            self.log_sha256 = digest.hexdigest() if self.samples.exists() else None
        else:
            self.log_sha256 = self._rewrite_log(kept.values())
        return set(kept)

    def _keep_rejected(self, lines: list[bytes]) -> None:
        """Lines that parse as JSON objects with an id but fail the record check: dropped from the log, kept here."""
        path = self.path / REJECTED
        try:
            with path.open("ab") as fh:
                fh.writelines(line if line.endswith(b"\n") else line + b"\n" for line in lines)
        except OSError as exc:
            raise write_error(path, exc) from None

    def _rewrite_log(self, lines: Iterable[bytes]) -> str:
        digest = hashlib.sha256()
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".samples.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    for raw in lines:  # the original bytes: what was recorded is kept exactly
                        fh.write(raw)
                        digest.update(raw)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, FILE_MODE)
                os.replace(tmp, self.samples)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise write_error(self.samples, exc) from None
        return digest.hexdigest()

    def open_log(self) -> None:
        try:
            # Unbuffered: each record is one write() of its whole line, and a failed one is cut back (append).
            self._log = self.samples.open("ab", buffering=0)
        except OSError as exc:
            raise write_error(self.samples, exc) from None

    def append(self, result: SampleResult) -> None:
        """One line, in the OS before this returns: a SIGKILL loses nothing that finished. A write that fails
        (a full disk) is cut back to the last whole line, so the log never holds half a record."""
        assert self._log is not None, "open_log() first"
        data = dumps_record(result.to_json())
        fd = self._log.fileno()
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise write_error(self.samples, exc) from None

    def close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._log.fileno())
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None


def _looks_like_a_record(raw: bytes) -> bool:
    obj = _json_object(raw if raw.endswith(b"\n") else raw + b"\n")
    return obj is not None and "id" in obj


def dumps_record(obj: Any) -> bytes:
    """One log line: compact JSON, UTF-8 as is; text UTF-8 cannot hold (a lone surrogate from a dataset) is written
    as JSON escapes instead, so the line is still valid and reads back to the same text."""
    try:
        return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode()
    except UnicodeEncodeError:
        return (json.dumps(obj, separators=(",", ":"), ensure_ascii=True, default=str) + "\n").encode()


# --------------------------------------------------------------------------------------------------- publishing


def staging_dir(dest: Path) -> Path:
    """An empty hidden folder beside ``dest`` (same file system) to build a new version of it in. Leftovers of
    killed builds (their process gone) are removed first; readers of run folders skip hidden names."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.staging-"
    for old in dest.parent.glob(prefix + "*"):
        pid = old.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f"{prefix}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_dir(staged: Path, dest: Path) -> None:
    """Put the folder ``staged`` in place of ``dest`` in one step: a reader (or a kill) sees the old folder or the
    new one, never a mix. On Linux an existing ``dest`` is swapped atomically (renameat2 RENAME_EXCHANGE) and the
    old version removed after; elsewhere the old files are replaced one by one, each atomically."""
    mode = (dest.stat().st_mode & 0o7777) if dest.is_dir() else (0o777 & ~_UMASK)
    os.chmod(staged, mode)  # mkdtemp makes it private; the published folder keeps the old one's permissions
    if not dest.exists():
        os.rename(staged, dest)
        return
    if not dest.is_dir():
        raise UserError(f"{dest} exists and is not a folder")
    if _exchange(staged, dest):
        shutil.rmtree(staged, ignore_errors=True)  # now the old version
        return
    new = {item.relative_to(staged) for item in staged.rglob("*")}
    for name in sorted(new):  # no atomic swap here: file by file, each one atomic, then what is gone is removed
        target = dest / name
        if (staged / name).is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.replace(staged / name, target)
    for old in sorted(dest.rglob("*"), reverse=True):
        if old.relative_to(dest) not in new:
            if old.is_dir() and not old.is_symlink():
                with contextlib.suppress(OSError):
                    old.rmdir()
            else:
                old.unlink(missing_ok=True)
    shutil.rmtree(staged, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


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

    A cache file that cannot be opened is refused at start (one line); one that fails later (corrupt pages, a full
    disk) is bypassed for the rest of the run with one warning: the cache only saves calls, so the run goes on.
    """

    def __init__(self, path: Path, flush_every: int = 256, flush_seconds: float = 2.0) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False, isolation_level=None)
            self._open_schema()
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open response cache {path}: {exc} (delete it, or set --cache PATH or "
                            "--no-cache)") from None
        self._pending: list[tuple[str, str, float]] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.broken: str | None = None  # why the cache was given up on, once it was

    def _open_schema(self) -> None:
        """WAL mode and the table. Two processes opening a new cache at once can meet "database is locked" here
        without SQLite's busy timeout being consulted (switching the journal mode takes the lock at once), so the
        set-up is retried for as long as that timeout would have waited."""
        deadline = time.monotonic() + 30.0
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
                )
                self._db.execute("SELECT value FROM responses LIMIT 1").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def get(self, key: str) -> dict[str, Any] | None:
        if self.broken is not None:
            return None
        try:
            with self._lock:
                row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            self._give_up(exc)
            return None
        if row is None:
            for k, value, _ in reversed(self._pending):
                if k == key:
                    return dict(json.loads(value))
            return None
        try:
            value = json.loads(row[0])
        except (TypeError, ValueError):
            return None  # one unreadable entry: a miss, and the fresh answer replaces it
        return dict(value) if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.broken is not None:
            return
        self._pending.append((key, json.dumps(value, separators=(",", ":")), time.time()))
        if len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._pending or self.broken is not None:
            return
        rows, self._pending = self._pending, []
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            self._give_up(exc)
        self._last_flush = time.monotonic()

    def _give_up(self, exc: sqlite3.Error) -> None:
        self.broken = str(exc)
        self._pending = []
        print(f"warning: response cache {self.path} failed ({exc}); going on without it for this run "
              "(delete the file to start a new cache, or use --no-cache)", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(sqlite3.Error):
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


# --------------------------------------------------------------------------------------------------- images

IMAGES = "images"
IMAGE_INDEX = "index.jsonl"


class ImageStore:
    """The images of a generation run: each stored once, by content (``images/ab/<sha256>.png``), written to a
    temporary file and renamed, so a file there is always whole. ``images/index.jsonl`` says which request (sample,
    image index, seed, generator fingerprint) made which image, appended as each image is stored: a resume, even
    after a kill that lost the sample's record, finds every image already made and never makes one twice."""

    def __init__(self, run_dir: Path) -> None:
        self.root = run_dir / IMAGES
        self._made: dict[tuple[str, int, int, str], dict[str, str]] = {}
        self._lock = threading.Lock()
        for raw in _lines(self.root / IMAGE_INDEX):
            entry = _json_object(raw)
            if entry is not None and _index_entry(entry) and (run_dir / entry["path"]).is_file():
                self._made[(entry["id"], entry["index"], entry["seed"], entry["fingerprint"])] = {
                    "key": entry["key"], "path": entry["path"]}

    def made(self, sample_id: str, index: int, seed: int, fingerprint: str) -> dict[str, str] | None:
        """The stored image of this request (its ``key`` and ``path`` in the run directory), if one was made."""
        return self._made.get((sample_id, index, seed, fingerprint))

    def put(self, png: bytes, sample_id: str, index: int, seed: int, fingerprint: str) -> dict[str, str]:
        digest = hashlib.sha256(png).hexdigest()
        relative = f"{IMAGES}/{digest[:2]}/{digest}.png"
        path = self.root.parent / relative
        try:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".img.", suffix=".tmp")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(png)
                os.chmod(tmp, FILE_MODE)
                os.replace(tmp, path)
            entry: dict[str, Any] = {"id": sample_id, "index": index, "seed": seed, "fingerprint": fingerprint,
                                     "key": f"sha256:{digest}", "path": relative}
            with self._lock, (self.root / IMAGE_INDEX).open("ab", buffering=0) as fh:
                fh.write(dumps_record(entry))
        except OSError as exc:
            raise write_error(path, exc) from None
        self._made[(sample_id, index, seed, fingerprint)] = {"key": entry["key"], "path": relative}
        return {"key": entry["key"], "path": relative}


def _lines(path: Path) -> Iterator[bytes]:
    """The whole lines of a file (a line cut by a kill is not one)."""
    if not path.is_file():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if raw.endswith(b"\n"):
                yield raw


def _index_entry(entry: Mapping[str, Any]) -> bool:
    path = entry.get("path")
    return (
        isinstance(entry.get("id"), str) and _index(entry.get("index")) and isinstance(entry.get("seed"), int)
        and isinstance(entry.get("fingerprint"), str) and isinstance(entry.get("key"), str)
        and isinstance(path, str) and path.startswith(f"{IMAGES}/") and ".." not in path.split("/")
    )
