"""The run store under faults: garbage in the sample log, a full disk, a corrupt response cache, a second writer with
--no-resume, file permissions, hand-edited numbers in run.json, and outputs that would overwrite their inputs.

The log tests use the public API on real files (hypothesis draws the garbage); everything else goes through the CLI
in subprocesses, as a user would meet it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rrbench.runner import summarize
from rrbench.store import REJECTED, RunDir, dumps_record, iter_log, load_results
from rrbench.types import FailureKind, Judgement, Label, Prediction, Protocol, SampleResult, Trial
from tests.conftest import PLUGINS, rrbench

PROTOCOL = Protocol(id="t", tie_policy="exact", metrics=("accuracy",))


# --------------------------------------------------------------------------------------------------- the log


@st.composite
def results(draw: st.DrawFn) -> list[SampleResult]:
    """A clean log's records: pairs with winners or ties, scores, a few failures and label-skipped samples."""
    out = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["win", "tie", "failed", "skipped"]))
        label = Label.tie(original="tie") if kind == "tie" else Label.win(draw(st.integers(0, 1)), "A")
        meta = {"category": draw(st.sampled_from(["a", "b"]))}
        trials: tuple[Trial, ...]
        if kind == "failed":
            failure = draw(st.sampled_from(list(FailureKind)))
            trials = (Trial((0, 1), (Judgement.failed(failure, "x"),), None, failure),)
        elif kind == "skipped":
            label, trials = Label.unknown("sideways"), ()
        else:
            scores = tuple(draw(st.floats(0, 1)) for _ in range(2))
            order = draw(st.sampled_from([(0, 1), (1, 0)]))
            trials = (Trial(order, (Judgement(scores=scores),), Prediction(scores)),)
        candidates = ({"key": f"sha256:{i}a"}, {"key": f"sha256:{i}b"})
        out.append(SampleResult(f"s{i}", label, trials, meta=meta, skipped="unknown_label" if kind == "skipped"
                                else None, correct=(None,) * len(trials), latency_s=0.5, prompt=f"prompt {i} é",
                                candidates=candidates))
    return out


# Well-formed JSON with the right id, but not a record: each one must neither count nor replace the real record.
WRONG_TYPES: list[Callable[[dict[str, Any]], None]] = [
    lambda r: r.update(id=7),
    lambda r: r.update(label="A"),
    lambda r: r.update(label={"kind": "nope"}),
    lambda r: r.update(label={"kind": "winner", "winner": 5}),
    lambda r: r.update(trials="x"),
    lambda r: r.update(trials=[{"order": "01", "judgements": []}]),
    lambda r: r.update(trials=[{"order": [0, 0], "judgements": [], "prediction": None}]),
    lambda r: r.update(trials=[{"order": [0, 1], "judgements": [{"scores": ["high"]}], "prediction": None}]),
    lambda r: r.update(trials=[{"order": [0, 1], "judgements": [], "prediction": {"scores": [1], "verdict": "C"}}]),
    lambda r: r.update(trials=[{"order": [0, 1], "judgements": [], "failure": "bogus", "prediction": None}]),
    lambda r: r.update(latency_s="slow"),
    lambda r: r.update(meta=[]),
    lambda r: r.update(correct=["yes"]),
    lambda r: r.update(skipped=3),
    lambda r: r.pop("label"),
]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "label", "x", "trials"]),
                                                                 inner, max_size=3),
    max_leaves=6,
)


def garbage(draw: Callable[..., Any], lines: list[bytes], before: int) -> bytes:
    """One piece of garbage to put before line ``before`` of the clean log."""
    kind = draw(st.sampled_from(["bytes", "json", "wrong-types", "torn", "merged", "duplicate"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40)) + b"\n"  # any bytes: invalid UTF-8, NUL, stray newlines
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode() + b"\n"
    line = lines[draw(st.integers(0, len(lines) - 1))]
    if kind == "wrong-types":
        obj = json.loads(line)
        draw(st.sampled_from(WRONG_TYPES))(obj)
        return json.dumps(obj).encode() + b"\n"
    cut = line[: draw(st.integers(1, len(line) - 2))]
    if kind == "torn":
        return cut + b"\n"
    if kind == "merged":
        return cut  # no newline: the next record is written on the same line, after the torn one
    earlier = lines[:before]
    return draw(st.sampled_from(earlier)) if earlier else b""  # an exact duplicate of an earlier record


def write_log(folder: Path, data: bytes) -> RunDir:
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_bytes(data)
    return RunDir(folder)


def as_json(found: list[SampleResult]) -> list[dict[str, Any]]:
    return sorted((r.to_json() for r in found), key=lambda r: r["id"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), results())
def test_garbage_anywhere_in_the_log_loses_no_record_and_changes_no_number(data: st.DataObject,
                                                                             clean: list[SampleResult]) -> None:
    lines = [dumps_record(r.to_json()) for r in clean]
    garbled = b""
    for i, line in enumerate(lines):
        for _ in range(data.draw(st.integers(0, 2))):
            garbled += garbage(data.draw, lines, i)
        garbled += line
    if data.draw(st.booleans()):
        garbled += lines[-1][:-5]  # a torn last line, as a kill mid-write leaves it
    with tempfile.TemporaryDirectory() as tmp:
        want, got = write_log(Path(tmp) / "clean", b"".join(lines)), write_log(Path(tmp) / "garbled", garbled)
        assert as_json(load_results(got.path)) == as_json(load_results(want.path))
        assert [o["id"] for o in iter_log(got.samples)] == [i for i in (o["id"] for o in iter_log(got.samples))
                                                            if i in {r.sample_id for r in clean}]
        numbers = summarize(load_results(want.path), PROTOCOL, 0, len(clean))
        assert summarize(load_results(got.path), PROTOCOL, 0, len(clean)) == numbers
        # resume keeps every finished record once, byte for byte, and leaves a log the next resume finds clean
        assert got.prepare_resume() == want.prepare_resume()
        assert got.samples.read_bytes() == want.samples.read_bytes()
        assert got.prepare_resume() == want.prepare_resume() and got.log_unchanged
        rejected = got.path / REJECTED  # what looked like a record but was not one is kept aside, not destroyed
        if rejected.exists():
            assert all(b'"id"' in line for line in rejected.read_bytes().splitlines())


def test_a_wrongly_typed_record_never_stands_in_for_the_real_one(tmp_path: Path) -> None:
    real = SampleResult("a", Label.win(0, "A"), (Trial((0, 1), (Judgement(scores=(1.0, 0.0)),),
                                                         Prediction((1.0, 0.0))),))
    line = dumps_record(real.to_json())
    impostors = []
    for spoil in WRONG_TYPES:
        obj = json.loads(line)
        spoil(obj)
        impostors.append(json.dumps(obj).encode() + b"\n")
    run = write_log(tmp_path / "r", line + b"".join(impostors))  # every impostor comes later, and later lines win
    assert as_json(load_results(run.path)) == as_json([real])
    assert run.prepare_resume() == {"a"} and run.samples.read_bytes() == line
    assert len((run.path / REJECTED).read_bytes().splitlines()) == len(impostors)


def test_records_appended_after_a_torn_line_are_recovered(tmp_path: Path) -> None:
    a, b, c = (dumps_record(SampleResult(i, Label.win(0, "A")).to_json()) for i in "abc")
    run = write_log(tmp_path / "r", a + b[:20] + c)  # killed mid-write, then the next session appended
    assert [r.sample_id for r in load_results(run.path)] == ["a", "c"]
    assert run.prepare_resume() == {"a", "c"} and run.samples.read_bytes() == a + c


def test_invalid_utf8_and_huge_nesting_are_skipped(tmp_path: Path) -> None:
    a = dumps_record(SampleResult("a", Label.win(0, "A")).to_json())
    run = write_log(tmp_path / "r", b"\xff\xfe{\"id\":\"x\"}\n" + b"[" * 100_000 + b"\n" + a)
    assert [r.sample_id for r in load_results(run.path)] == ["a"]


# --------------------------------------------------------------------------------------------------- CLI helpers


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RRBENCH_CACHE": str(tmp_path / "cache.sqlite"), "RRBENCH_PLUGINS": PLUGINS,
            "PYTHONUNBUFFERED": "1"}


def run_args(out: Path, n: int = 40, *extra: str) -> list[str]:
    return ["run", "--task", "sanity", "-T", f"n={n}", "-T", "size=32", "--model", "sleepy", "--quiet",
            "--output", str(out), *extra]


def one_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    err = done.stderr.strip()
    assert done.returncode == code, (done.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def only_run(folder: Path) -> Path:
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def lines_of(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_bytes().splitlines()]


# --------------------------------------------------------------------------------------------------- full disk


def test_a_full_disk_is_one_line_and_leaves_run_json_whole(tmp_path: Path, env: dict[str, str]) -> None:
    """A file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG) stands in for a full disk."""

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    args = [sys.executable, "-m", "rrbench.cli", *run_args(tmp_path / "runs", 60, "--no-cache")]
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          preexec_fn=small_files)
    err = one_line(done)
    assert "cannot write" in err and "samples.jsonl" in err and "File too large" in err
    run_dir = only_run(tmp_path / "runs")
    record = json.loads((run_dir / "run.json").read_text())  # whole: the last version written, or the new one
    log = (run_dir / "samples.jsonl").read_bytes()
    assert log.endswith(b"\n") and len(log) <= 16_000  # the failed write was cut back: no half record
    kept = lines_of(run_dir)
    assert record["status"] == "failed" and record["counts"]["recorded"] == len(kept) > 0
    again = rrbench(*run_args(tmp_path / "runs", 60, "--no-cache"), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    ids = [line["id"] for line in lines_of(run_dir)]
    assert len(ids) == len(set(ids)) == 60
    assert json.loads((run_dir / "run.json").read_text())["stats"]["new_samples"] == 60 - len(kept)


# --------------------------------------------------------------------------------------------------- the cache


@pytest.mark.parametrize("page", [3, 6, 12, 18])
def test_a_cache_with_corrupt_pages_is_refused_at_start_or_bypassed(tmp_path: Path, env: dict[str, str],
                                                                    page: int) -> None:
    cache = tmp_path / "cache.sqlite"
    assert rrbench(*run_args(tmp_path / "first", 200), env=env, cwd=tmp_path).returncode == 0
    assert cache.stat().st_size > (page + 1) * 4096
    with cache.open("r+b") as fh:
        fh.seek(page * 4096)
        fh.write(os.urandom(4096))
    done = rrbench(*run_args(tmp_path / "second", 200), env=env, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    if done.returncode == 2:
        assert "cannot open response cache" in one_line(done)
    else:
        assert done.returncode == 0, done.stderr
        warnings = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(warnings) <= 1 and all("response cache" in w for w in warnings), warnings
        assert len(lines_of(only_run(tmp_path / "second"))) == 200


# --------------------------------------------------------------------------------------------------- one writer


def test_no_resume_respects_the_one_writer_lock(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    slow = [sys.executable, "-m", "rrbench.cli", *run_args(out, 12, "-M", "delay=0.2", "-M", "batch_size=1",
                                                             "--concurrency", "1")]
    first = subprocess.Popen(slow, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("*/samples.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.02)
        second = rrbench(*slow[3:], "--no-resume", env=env, cwd=tmp_path)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert "another rrbench process is writing" in one_line(second)
    assert first.returncode == 0, err
    run_dir = only_run(out)  # not moved aside under the first one's feet
    assert len(lines_of(run_dir)) == 12 and not list(out.glob("*.old-*"))
    fresh = rrbench(*slow[3:], "--no-resume", env=env, cwd=tmp_path)  # now it may
    assert fresh.returncode == 0, fresh.stderr
    (old,) = out.glob("*.old-*")
    assert len(lines_of(old)) == 12 and len(lines_of(run_dir)) == 12


# --------------------------------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_run_files_share_the_permissions_open_gives(tmp_path: Path, env: dict[str, str], umask: int) -> None:
    def with_umask() -> None:
        os.umask(umask)

    args = [sys.executable, "-m", "rrbench.cli", *run_args(tmp_path / "runs", 8, "-M", "fail=0.5")]
    for _ in range(2):  # the second session rewrites the log (failed samples are retried)
        done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              preexec_fn=with_umask)
        assert done.returncode == 0, done.stderr
        run_dir = only_run(tmp_path / "runs")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.iterdir() if p.name != ".lock"}
        assert modes == {"run.json": 0o666 & ~umask, "samples.jsonl": 0o666 & ~umask}, modes
    rescored = subprocess.run([sys.executable, "-m", "rrbench.cli", "rescore", str(run_dir), "--tie-policy",
                               "ties-excluded"], env=env, cwd=tmp_path, capture_output=True, text=True,
                              preexec_fn=with_umask)
    assert rescored.returncode == 0, rescored.stderr
    (out,) = (tmp_path / "runs").glob("*.rescore-*")
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o666 & ~umask}


# --------------------------------------------------------------------------------------------------- run.json


def _edit(run_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = run_dir / "run.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, indent=2))


def _spoil_numbers(record: dict[str, Any]) -> None:
    record["counts"].update(recorded=999, failed=0, failed_by_kind={}, missing=0)
    for metric in record["metrics"]["overall"]:
        metric["value"] = 0.123


def test_hand_edited_counts_in_run_json_are_never_trusted_over_the_log(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    assert rrbench(*run_args(out, 30, "-M", "fail=0.2"), env=env, cwd=tmp_path).returncode == 0
    run_dir = only_run(out)
    truth = json.loads((run_dir / "run.json").read_text())
    assert truth["counts"]["failed"] > 0
    _edit(run_dir, _spoil_numbers)

    shown = rrbench("show", str(run_dir), env=env, cwd=tmp_path)
    assert shown.returncode == 0 and "do not match samples.jsonl" in shown.stderr
    assert "999" not in shown.stdout and f"{truth['counts']['recorded']}/30 samples recorded" in shown.stdout

    rescored = rrbench("rescore", str(run_dir), "--failure-policy", "wrong", env=env, cwd=tmp_path)
    assert rescored.returncode == 0, rescored.stderr
    (copy,) = out.glob("*.rescore-*")
    assert json.loads((copy / "run.json").read_text())["counts"] == truth["counts"]

    resumed = rrbench(*run_args(out, 30, "-M", "fail=0.2"), env={**env, "RRBENCH_TEST_HEAL": "1"}, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # heals the failures: the numbers are the log's, not the edit's
    after = json.loads((run_dir / "run.json").read_text())
    assert after["counts"]["recorded"] == 30 and after["counts"]["failed"] == 0

    _edit(run_dir, _spoil_numbers)  # a finished run resumed with nothing to do: the edit is caught too
    again = rrbench(*run_args(out, 30, "-M", "fail=0.2"), env={**env, "RRBENCH_TEST_HEAL": "1"}, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    fixed = json.loads((run_dir / "run.json").read_text())
    assert (fixed["counts"], fixed["metrics"]) == (after["counts"], after["metrics"])
    assert fixed["stats"]["new_samples"] == 0
    shown = rrbench("show", str(run_dir), env=env, cwd=tmp_path)
    assert shown.returncode == 0 and shown.stderr == ""  # sealed again: nothing to say


def test_show_counts_a_sample_removed_from_the_log(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    assert rrbench(*run_args(out, 10), env=env, cwd=tmp_path).returncode == 0
    run_dir = only_run(out)
    log = run_dir / "samples.jsonl"
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[1:]))
    shown = rrbench("show", str(run_dir), env=env, cwd=tmp_path)
    assert shown.returncode == 0 and "9/10 samples recorded" in shown.stdout and "status incomplete" in shown.stdout


def test_a_garbled_run_json_is_rebuilt_from_the_log_on_resume(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    assert rrbench(*run_args(out, 10), env=env, cwd=tmp_path).returncode == 0
    run_dir = only_run(out)
    (run_dir / "run.json").write_bytes(b'{"status": "complete", "coun')
    done = rrbench(*run_args(out, 10), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["counts"]["recorded"] == 10


# --------------------------------------------------------------------------------------------------- outputs


def test_no_output_may_overwrite_an_input(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    assert rrbench(*run_args(out, 6), env=env, cwd=tmp_path).returncode == 0
    run_dir = only_run(out)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}

    def refused(*args: str, cwd: Path = tmp_path) -> str:
        return one_line(rrbench(*args, env=env, cwd=cwd))

    assert "one of the run's own files" in refused("report", str(run_dir), "--out", str(run_dir / "samples.jsonl"))
    assert "one of the run's own files" in refused("report", str(run_dir), "--out", str(run_dir / "run.json"))
    assert "inside the run being rescored" in refused("rescore", str(run_dir), "--tie-policy", "ties-excluded",
                                                      "--output", str(run_dir))
    assert "inside the run being rescored" in refused("rescore", ".", "--tie-policy", "ties-excluded",
                                                      "--output", "sub", cwd=run_dir)
    assert "which this build reads runs from" in refused("leaderboard", str(out), "--out", str(out))
    assert "inside the run directory" in refused("leaderboard", str(out), "--out", str(run_dir / "lb"))
    assert "holds the run directory" in refused("leaderboard", str(run_dir), "--out", str(out))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before

    beside = rrbench("rescore", ".", "--tie-policy", "ties-excluded", env=env, cwd=run_dir)  # `rescore .`: beside
    assert beside.returncode == 0, beside.stderr
    assert [p.name for p in run_dir.iterdir() if p.is_dir()] == []
    assert len(list(out.glob(f"{run_dir.name}.rescore-*"))) == 1


def test_a_leaderboard_rebuild_keeps_files_it_did_not_write_and_drops_its_own_stale_ones(
    tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "runs"
    for model in ("random", "always-first"):
        done = rrbench("run", "--task", "sanity", "-T", "n=6", "-T", "size=32", "--model", model, "--quiet",
                       "--output", str(out), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    board = tmp_path / "board"
    args = ["leaderboard", str(out), "--out", str(board), "--no-plots", "--reported", "none"]
    assert rrbench(*args, env=env, cwd=tmp_path).returncode == 0
    (board / "notes.txt").write_text("mine")
    (board / "stale.md").write_text("old table")
    manifest = json.loads((board / "manifest.json").read_text())
    manifest["files"].append("stale.md")  # as if an earlier build had written it
    (board / "manifest.json").write_text(json.dumps(manifest))
    assert rrbench(*args, env=env, cwd=tmp_path).returncode == 0
    assert (board / "notes.txt").read_text() == "mine" and not (board / "stale.md").exists()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    shutil.rmtree(sorted(out.iterdir())[0])  # a vanished run's rows go, the rest stays
    assert rrbench(*args, env=env, cwd=tmp_path).returncode == 0
    assert sorted(json.loads((board / "manifest.json").read_text())["files"]) == sorted(
        str(p.relative_to(board)) for p in board.rglob("*") if p.is_file() and p.name not in (
            "manifest.json", "notes.txt"))
