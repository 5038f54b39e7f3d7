"""The run store's resume and files, one behaviour per test, on real files (docs/mutation.md: rrbench/store.py).

Every expected log is written out by hand: which lines a resume keeps follows from the documented rule (a torn or
corrupt line is dropped, the latest record of a sample wins, a failed sample is retried, a log that already holds
exactly the finished samples is left alone).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from rrbench.store import (
    NullCache,
    ResponseCache,
    RunDir,
    atomic_text,
    default_cache_path,
    iter_log,
    load_results,
    read_json,
    write_json_atomic,
)
from rrbench.types import FailureKind, Judgement, Label, Prediction, SampleResult, Trial, UserError


def _line(sid: str, *, failure: str | None = None, latency: float = 0.0) -> bytes:
    """One log record as rrbench writes it (compact JSON, one line); a failed one carries its kind."""
    trial: dict = {"order": [0, 1], "judgements": [], "prediction": None if failure else {"scores": [1.0, 0.0]}}
    record: dict = {"id": sid, "label": {"kind": "winner", "winner": 0}, "trials": [trial], "latency_s": latency}
    if failure:
        trial["failure"] = failure
        record["failure"] = failure
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def _run_with_log(tmp_path: Path, *lines: bytes) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.acquire()
    run.samples.write_bytes(b"".join(lines))
    return run


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------------------------------- resume


def test_resume_keeps_finished_samples_and_retries_the_rest(tmp_path: Path) -> None:
    a, b_failed, c = _line("a"), _line("b", failure="timeout"), _line("c")
    run = _run_with_log(tmp_path, a, b_failed, c)
    assert run.prepare_resume() == {"a", "c"}
    assert run.log_unchanged is False
    assert run.samples.read_bytes() == a + c  # the finished lines, byte for byte, in their order
    run.release()


def test_a_later_failed_record_of_a_finished_sample_wins_and_is_retried(tmp_path: Path) -> None:
    a, a_failed, b = _line("a"), _line("a", failure="http"), _line("b")
    run = _run_with_log(tmp_path, a, a_failed, b)
    assert load_results(run.path)[0].failure is FailureKind.HTTP  # the latest record of "a" is its failure
    assert run.prepare_resume() == {"b"}
    assert run.samples.read_bytes() == b
    run.release()


def test_a_later_finished_record_wins_over_an_earlier_failure(tmp_path: Path) -> None:
    a_failed, a = _line("a", failure="rate_limited"), _line("a", latency=2.5)
    run = _run_with_log(tmp_path, a_failed, a)
    assert run.prepare_resume() == {"a"}
    assert run.samples.read_bytes() == a
    run.release()


def test_duplicates_keep_only_the_latest_record(tmp_path: Path) -> None:
    first, second, other = _line("a", latency=1.0), _line("a", latency=2.0), _line("b")
    run = _run_with_log(tmp_path, first, other, second)
    (latest,) = [r for r in load_results(run.path) if r.sample_id == "a"]
    assert latest.latency_s == 2.0
    assert run.prepare_resume() == {"a", "b"}
    assert run.log_unchanged is False  # two lines for one sample: rewritten to one
    assert sorted(run.samples.read_bytes().splitlines(keepends=True)) == sorted([second, other])
    run.release()


def test_a_torn_last_line_is_dropped_even_when_it_parses(tmp_path: Path) -> None:
    """A line without its newline was cut by a kill; whether or not its bytes happen to be valid JSON."""
    a, b = _line("a"), _line("b")
    run = _run_with_log(tmp_path, a, b[:-1])  # "b" complete but for its newline
    assert [o["id"] for o in iter_log(run.samples)] == ["a"]
    assert [r.sample_id for r in load_results(run.path)] == ["a"]
    assert run.prepare_resume() == {"a"}
    assert run.samples.read_bytes() == a
    run.release()


def test_corrupt_lines_anywhere_are_dropped_without_losing_records(tmp_path: Path) -> None:
    a, b = _line("a"), _line("b")
    junk = [b"garbage\n", b'"identity"\n', b"[1, 2]\n", b'{"no_id": 1}\n', b'{"id": "x", "torn\n']
    run = _run_with_log(tmp_path, junk[0], a, *junk[1:], b)
    assert [o["id"] for o in iter_log(run.samples)] == ["a", "b"]
    assert run.prepare_resume() == {"a", "b"}
    assert run.log_unchanged is False
    assert run.samples.read_bytes() == a + b
    run.release()


def test_a_clean_log_is_left_untouched(tmp_path: Path) -> None:
    import hashlib

    a, b = _line("a"), _line("b")
    run = _run_with_log(tmp_path, a, b)
    inode = run.samples.stat().st_ino
    assert run.prepare_resume() == {"a", "b"}
    assert run.log_unchanged is True
    assert run.log_sha256 == hashlib.sha256(a + b).hexdigest()  # the digest of the log it leaves
    assert run.samples.stat().st_ino == inode  # not replaced by a rewritten copy
    assert run.samples.read_bytes() == a + b
    run.release()


def test_resume_without_a_log_keeps_nothing_and_writes_nothing(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "deep" / "er" / "run")  # parents are made
    assert (run.log_unchanged, run.log_sha256) == (False, None)  # nothing is claimed before a resume looked
    run.acquire()
    assert run.prepare_resume() == set()
    assert run.log_unchanged is True
    assert not run.samples.exists()
    assert list(iter_log(run.samples)) == [] and load_results(run.path) == []
    run.release()


def test_a_rewritten_log_leaves_no_temporary_file(tmp_path: Path) -> None:
    import hashlib

    run = _run_with_log(tmp_path, _line("a"), _line("b", failure="parse"))
    run.prepare_resume()
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "samples.jsonl"]
    assert run.log_sha256 == hashlib.sha256(_line("a")).hexdigest()
    run.release()


def test_a_line_that_looks_like_a_record_but_is_not_one_is_kept_aside(tmp_path: Path) -> None:
    """Dropped from the log by the rewrite, but copied to samples.jsonl.rejected first; garbage is just dropped."""
    bad = (json.dumps(_record(id=5)) + "\n").encode()  # JSON with an id, failing the record check
    unnamed = b'{"label": {"kind": "winner"}}\n'  # JSON without an id: no record at all
    run = _run_with_log(tmp_path, _line("a"), bad, b"garbage\n", unnamed)
    assert run.prepare_resume() == {"a"}
    assert (run.path / "samples.jsonl.rejected").read_bytes() == bad
    run.release()


# --------------------------------------------------------------------------------------------------- appending


def _result(sid: str, meta: dict | None = None) -> SampleResult:
    trial = Trial((0, 1), (Judgement(scores=(1.0, 0.0)),), Prediction((1.0, 0.0)))
    return SampleResult(sid, Label.win(0), (trial,), meta=meta or {})


def test_each_appended_sample_is_in_the_file_before_the_log_is_closed(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.acquire()
    run.open_log()
    run.append(_result("é1", {"where": Path("/x/y")}))
    text = run.samples.read_bytes().decode()  # another reader, while the log is still open
    assert text.count("\n") == 1 and text.endswith("\n")
    assert '"id":"é1"' in text  # compact JSON, UTF-8 as is
    assert '"where":"/x/y"' in text  # a value JSON cannot hold is written as its text
    run.append(_result("b"))
    run.close_log()
    run.close_log()  # closing twice is harmless
    assert [r.sample_id for r in load_results(run.path)] == ["é1", "b"]
    run.release()


def test_appending_after_a_resume_extends_the_kept_lines(tmp_path: Path) -> None:
    a = _line("a")
    run = _run_with_log(tmp_path, a, _line("b", failure="timeout"))
    run.prepare_resume()
    run.open_log()
    run.append(_result("b"))
    run.close_log()
    lines = run.samples.read_bytes().splitlines(keepends=True)
    assert lines[0] == a and [json.loads(x)["id"] for x in lines] == ["a", "b"]
    run.release()


# --------------------------------------------------------------------------------------------------- the lock


def test_a_refused_writer_holds_no_file_and_can_release(tmp_path: Path) -> None:
    first, second = RunDir(tmp_path / "r"), RunDir(tmp_path / "r")
    first.acquire()
    before = _open_fds()
    with pytest.raises(UserError, match="another rrbench process"):
        second.acquire()
    assert _open_fds() == before
    second.release()  # nothing held: nothing to do, no error
    first.release()
    first.release()
    second.acquire()
    second.release()


def test_acquire_and_release_leave_no_open_file(tmp_path: Path) -> None:
    before = _open_fds()
    run = RunDir(tmp_path / "r")
    run.acquire()
    run.open_log()
    run.append(_result("a"))
    run.release()  # also closes the log
    assert _open_fds() == before


# --------------------------------------------------------------------------------------------------- files


def test_atomic_text_sets_the_mode_asked_for_and_is_private_otherwise(tmp_path: Path) -> None:
    shared, private = tmp_path / "shared.md", tmp_path / "private.json"
    with atomic_text(shared, mode=0o644) as fh:
        fh.write("x")
    with atomic_text(private) as fh:
        fh.write("y")
    assert (shared.stat().st_mode & 0o777, shared.read_text()) == (0o644, "x")
    assert (private.stat().st_mode & 0o777, private.read_text()) == (0o600, "y")


def test_atomic_text_keeps_the_old_file_on_an_error(tmp_path: Path) -> None:
    path = tmp_path / "table.md"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_text(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_atomic_text_passes_the_error_handler_on(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    with atomic_text(path, errors="replace") as fh:
        fh.write("a\ud800b")  # a lone surrogate cannot be encoded
    assert path.read_bytes() == b"a?b"
    with pytest.raises(UnicodeEncodeError), atomic_text(tmp_path / "strict.txt") as fh:
        fh.write("a\ud800b")


def test_write_json_atomic_layout(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json_atomic(path, {"b": 1, "a": [Path("p")]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    "p"\n  ]\n}\n'


def test_read_json_errors_are_one_line_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a run directory"):
        read_json(tmp_path / "run.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="cannot read"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(UserError, match="does not hold a JSON object"):
        read_json(tmp_path / "list.json")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "ok.json") == {"a": 1}


# --------------------------------------------------------------------------------------------------- cache


def test_cache_path_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RRBENCH_CACHE", str(tmp_path / "c.sqlite"))
    assert default_cache_path() == tmp_path / "c.sqlite"
    monkeypatch.delenv("RRBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "rrbench" / "responses.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "rrbench" / "responses.sqlite"


def test_cache_writes_in_batches_and_the_latest_value_wins(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.sqlite"
    writer = ResponseCache(path, flush_every=2, flush_seconds=1e9)
    reader = ResponseCache(path)
    writer.put("k", {"v": 1})
    writer.put("k", {"v": 2})  # the second entry fills the batch: both are written, the later one stands
    assert reader.get("k") == {"v": 2}
    writer.put("j", {"v": 3})
    assert writer.get("j") == {"v": 3}  # pending, seen by its own writer
    assert reader.get("j") is None  # not yet written
    writer.close()  # closing writes what is pending
    assert reader.get("j") == {"v": 3}
    reader.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_cache_pending_entries_latest_first(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite", flush_every=100, flush_seconds=1e9)
    cache.put("k", {"v": 1})
    cache.put("k", {"v": 2})
    assert cache.get("k") == {"v": 2}
    cache.close()


def test_cache_is_usable_from_another_thread(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite", flush_every=1)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            cache.put("k", {"v": 1})
            assert cache.get("k") == {"v": 1}
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []
    cache.close()


def test_an_unusable_cache_path_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot open response cache"):
        ResponseCache(tmp_path / "file" / "c.sqlite")


def test_null_cache_remembers_nothing() -> None:
    cache = NullCache()
    cache.put("k", {"v": 1})
    cache.flush()
    assert cache.get("k") is None
    assert cache.path == Path("/dev/null")
    cache.close()


# --------------------------------------------------------------------------------------------------- records


def test_a_record_appended_after_a_torn_line_is_recovered(tmp_path: Path) -> None:
    a, b = _line("a"), _line("b")
    run = _run_with_log(tmp_path, a[:25] + b)  # "a" cut mid-write, then "b" written on the same line
    assert [o["id"] for o in iter_log(run.samples)] == ["b"]
    assert run.prepare_resume() == {"b"}
    assert run.samples.read_bytes() == b
    run.release()


def _record(**changes: object) -> dict:
    record = json.loads(_line("x"))
    record.update(changes)
    return record


def _with_trial(**changes: object) -> dict:
    record = _record()
    record["trials"] = [{**record["trials"][0], **changes}]
    return record


@pytest.mark.parametrize("record", [
    _record(),
    _with_trial(prediction={"scores": [None, 0.5]}),  # a missing score is a recorded fact, not a malformed line
    _with_trial(prediction={"scores": []}, judgements=[{"scores": [None], "aspects": [{"Text Rendering": None}]}]),
    _record(label={"kind": "winner", "winner": 1}),
    _record(candidates=[{"key": "a"}, {"key": "b"}]),
    _record(correct=[None, 1.0]),  # a trial without a verdict has no correctness
], ids=["plain", "missing-score", "na-aspect", "winner-1", "candidates", "correct-none"])
def test_well_typed_records_are_read(tmp_path: Path, record: dict) -> None:
    run = _run_with_log(tmp_path, (json.dumps(record) + "\n").encode())
    assert [o["id"] for o in iter_log(run.samples)] == ["x"]
    run.release()


@pytest.mark.parametrize("record", [
    _record(id=5),
    _record(label={"kind": "best", "winner": 0}),
    _record(label={"kind": "winner", "winner": -1}),
    _record(label={"kind": "ranking", "ranks": ["first", 2]}),
    _record(label={"kind": "winner", "winner": 2}),  # two candidates shown: no third to win
    _record(latency_s="slow"),
    _with_trial(order=[0, 0]),
    _with_trial(prediction={"scores": [1.0, "high"]}),
    _with_trial(prediction={"scores": [1.0, 0.5, 0.2]}),
    _with_trial(prediction={"scores": [1.0, 0.0], "verdict": "C"}),
    _with_trial(judgements=[{"aspects": [{"Text Rendering": "good"}]}]),
    _with_trial(judgements=[{"scores": ["3"]}]),
    _with_trial(failure="meltdown"),
    _with_trial(judgements=[{"refined_prompt": 5}]),
    _with_trial(judgements=[{"prompt": ["genai-bench/verdict-t2i"]}]),
], ids=["id", "label-kind", "winner-negative", "ranks", "winner", "latency", "order", "score-type", "score-count",
        "verdict", "aspect", "judgement-score", "failure-kind", "refined-prompt", "prompt"])
def test_wrongly_typed_records_are_no_records(tmp_path: Path, record: dict) -> None:
    good = _line("x")
    run = _run_with_log(tmp_path, good, (json.dumps(record) + "\n").encode())
    assert [o["id"] for o in iter_log(run.samples)] == ["x"]  # the bad line never stands in for the real record
    assert [r.sample_id for r in load_results(run.path)] == ["x"]
    assert run.prepare_resume() == {"x"}
    assert run.samples.read_bytes() == good
    run.release()


def test_fresh_start_moves_the_old_directory_aside(tmp_path: Path) -> None:
    import datetime as dt

    old = RunDir(tmp_path / "run")
    old.acquire()
    old.samples.write_bytes(_line("a"))
    old.release()
    # an earlier move in this very second (or the next) already took the plain name: the suffix -2 comes next
    now = dt.datetime.now()
    stamps = [(now + dt.timedelta(seconds=d)).strftime("%Y%m%d-%H%M%S") for d in (0, 1)]
    for stamp in stamps:
        (tmp_path / f"run.old-{stamp}").mkdir()
    before = _open_fds()
    fresh = RunDir(tmp_path / "run", fresh=True)
    fresh.acquire()
    assert fresh.moved_to is not None and fresh.moved_to.name in {f"run.old-{stamp}-2" for stamp in stamps}
    assert _open_fds() == before + 1  # the new directory's lock only: the old one's was let go
    assert (fresh.moved_to / "samples.jsonl").read_bytes() == _line("a")
    assert not fresh.samples.exists() and fresh.prepare_resume() == set()
    fresh.release()
    again = RunDir(tmp_path / "run")
    again.acquire()  # no fresh start asked: nothing moves
    assert again.moved_to is None
    again.release()


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from rrbench.store import RunDir, StoreError
from rrbench.types import Label, Prediction, SampleResult, Trial

def result(sid, meta):
    return SampleResult(sid, Label.win(0), (Trial((0, 1), (), Prediction((1.0, 0.0))),), meta=meta)

run = RunDir(Path(sys.argv[1]))
run.acquire()
run.open_log()
run.append(result("a", {}))
size = run.samples.stat().st_size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
try:
    run.append(result("b", {"padding": "x" * 1000}))
except StoreError as exc:
    print("refused:", exc)
print("size", run.samples.stat().st_size == size)
"""


def test_a_failed_append_is_cut_back_to_the_last_whole_line(tmp_path: Path) -> None:
    """A full disk (here a file-size limit) mid-record leaves the log as it was before that record."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused: cannot write" in done.stdout and "size True" in done.stdout
    assert [o["id"] for o in iter_log(tmp_path / "run" / "samples.jsonl")] == ["a"]


# --------------------------------------------------------------------------------------------------- publishing


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("atomic_swap", [True, False])
def test_publish_dir_replaces_the_folder_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               atomic_swap: bool) -> None:
    from rrbench import store

    if not atomic_swap:  # the file-by-file path of systems without renameat2
        monkeypatch.setattr(store, "_exchange", lambda a, b: False)
    dest = tmp_path / "lb"
    first = store.staging_dir(dest)
    (first / "a.md").write_text("1")
    (first / "old" / "deep").mkdir(parents=True)
    (first / "old" / "deep" / "x.md").write_text("x")
    (first / "keep").mkdir()
    (first / "keep" / "k.md").write_text("k1")
    store.publish_dir(first, dest)
    assert _tree(dest) == {"a.md": "1", "keep/k.md": "k1", "old/deep/x.md": "x"}
    os.chmod(dest, 0o750)
    second = store.staging_dir(dest)
    (second / "a.md").write_text("2")
    (second / "new").mkdir()
    (second / "new" / "b.md").write_text("b")
    (second / "keep").mkdir()  # a folder in both versions
    (second / "keep" / "k.md").write_text("k2")
    store.publish_dir(second, dest)
    assert _tree(dest) == {"a.md": "2", "keep/k.md": "k2", "new/b.md": "b"}
    assert not (dest / "old").exists()
    assert dest.stat().st_mode & 0o777 == 0o750  # the published folder keeps the old one's permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb"]  # no staging folder left behind


def test_publish_dir_refuses_to_replace_a_file(tmp_path: Path) -> None:
    from rrbench import store

    dest = tmp_path / "lb"
    dest.write_text("a file")
    staged = store.staging_dir(dest)
    with pytest.raises(UserError, match="exists and is not a folder"):
        store.publish_dir(staged, dest)


def test_staging_dir_removes_what_dead_builds_left_and_keeps_live_ones(tmp_path: Path) -> None:
    import subprocess
    import sys

    from rrbench import store

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    dead = tmp_path / f".lb.staging-{dead_pid}-abc"
    live = tmp_path / f".lb.staging-{os.getpid()}-def"
    other = tmp_path / ".lb.staging-notapid"
    for folder in (dead, live, other):
        folder.mkdir()
    staged = store.staging_dir(tmp_path / "lb")
    assert staged.parent == tmp_path and staged.name.startswith(f".lb.staging-{os.getpid()}-")
    assert not dead.exists() and live.exists() and other.exists()
    assert staged.stat().st_mode & 0o777 == 0o700  # private while it is being built


def test_a_lock_lost_to_a_directory_moved_each_time_is_one_line(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: another process moves the directory away between every open and lock."""
    run = RunDir(tmp_path / "run")
    monkeypatch.setattr(run, "_take_lock", lambda path: None)
    with pytest.raises(UserError, match="keeps moving"):
        run.acquire()


class _BrokenDB:
    """Fault injection: a cache file whose pages went bad after it was opened."""

    def execute(self, *args: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def executemany(self, *args: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def close(self) -> None:
        pass


def test_a_cache_failing_mid_run_is_given_up_with_one_warning(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite", flush_every=1)
    real = cache._db
    cache._db = _BrokenDB()  # type: ignore[assignment]
    cache.put("k", {"v": 1})  # the write fails: the cache is bypassed from now on
    assert cache.broken is not None and cache.get("k") is None
    cache.put("j", {"v": 2})
    cache.flush()
    cache.close()
    assert capsys.readouterr().err.count("warning: response cache") == 1
    real.close()
