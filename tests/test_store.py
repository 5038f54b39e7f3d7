from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from rrbench.store import ResponseCache, RunDir, iter_log, load_results
from rrbench.types import FailureKind, Judgement, Label, Prediction, SampleResult, Trial, UserError


def _result(sid: str, failure: FailureKind | None = None) -> SampleResult:
    judgement = Judgement.failed(failure, "x") if failure else Judgement(scores=(1.0, 0.0))
    trial = Trial((0, 1), (judgement,), None if failure else Prediction((1.0, 0.0)), failure)
    return SampleResult(sample_id=sid, label=Label.win(0, "A"), trials=(trial,))


def test_torn_last_line_is_ignored_and_dropped_on_resume(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.acquire()
    run.open_log()
    run.append(_result("a"))
    run.append(_result("b"))
    run.close_log()
    with run.samples.open("ab") as fh:
        fh.write(b'{"id": "c", "label"')  # killed mid-write
    assert [o["id"] for o in iter_log(run.samples)] == ["a", "b"]
    kept = run.prepare_resume()
    assert sorted(kept) == ["a", "b"]
    assert run.samples.read_bytes().count(b"\n") == 2
    assert run.samples.read_bytes().endswith(b"\n")
    run.release()


def test_resume_drops_failed_samples_so_retries_never_duplicate(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.acquire()
    run.open_log()
    for sid, failure in (("a", None), ("b", FailureKind.TIMEOUT), ("c", None)):
        run.append(_result(sid, failure))
    run.close_log()
    kept = run.prepare_resume()
    assert sorted(kept) == ["a", "c"]
    run.open_log()
    run.append(_result("b"))  # the retry succeeds
    run.close_log()
    ids = [json.loads(line)["id"] for line in run.samples.read_text().splitlines()]
    assert sorted(ids) == ["a", "b", "c"]
    assert {r.sample_id: r.failure for r in load_results(run.path)} == {"a": None, "b": None, "c": None}
    run.release()


def test_second_writer_on_the_same_run_directory_is_refused(tmp_path: Path) -> None:
    first, second = RunDir(tmp_path / "r"), RunDir(tmp_path / "r")
    first.acquire()
    with pytest.raises(UserError, match="another rrbench process"):
        second.acquire()
    first.release()
    second.acquire()  # free again once the first let go
    second.release()


def test_unwritable_output_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write run directory"):
        RunDir(blocker / "run").acquire()


def _writer(path: str, prefix: str, n: int) -> None:
    cache = ResponseCache(Path(path), flush_every=7)
    for i in range(n):
        cache.put(f"{prefix}{i}", {"scores": [i]})
        assert cache.get(f"{prefix}{i}") == {"scores": [i]}
    cache.close()


def test_cache_is_safe_for_two_processes_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p, 400)) for p in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = ResponseCache(Path(path))
    assert all(cache.get(f"{p}{i}") == {"scores": [i]} for p in "xy" for i in range(400))
    assert cache.get("z0") is None
    cache.close()


def test_resuming_a_finished_run_keeps_its_log_and_numbers(tmp_path: Path) -> None:
    """Nothing to do: the log is neither rewritten nor re-read into results, and the numbers stand as they were."""
    from rrbench import runner
    from rrbench.session import execute
    from rrbench.spec import RunSpec

    spec = RunSpec(task="sanity", model="random", task_args={"n": 8, "size": 32})
    assert execute(spec, tmp_path, quiet=True, no_cache=True) == 0
    (run_dir,) = tmp_path.iterdir()
    log = run_dir / "samples.jsonl"
    before, stamp = json.loads((run_dir / "run.json").read_text()), log.stat().st_mtime_ns
    assert execute(spec, tmp_path, quiet=True, no_cache=True) == 0
    after = json.loads((run_dir / "run.json").read_text())
    assert log.stat().st_mtime_ns == stamp  # not rewritten
    assert (after["counts"], after["metrics"]) == (before["counts"], before["metrics"])
    assert after["stats"]["new_samples"] == 0 and after["sessions"] == 2
    # uncommitted changes to rrbench (or no git at all) make the metrics be recomputed, never reused blindly
    assert runner._code_identity({"rrbench": "0.1.0", "git": {"commit": "abc", "dirty": True}}) is None
    assert runner._code_identity({"rrbench": "0.1.0", "git": {"commit": "abc", "dirty": False}}) == ("0.1.0", "abc")
