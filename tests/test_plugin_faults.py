"""Plug-ins that misbehave (tests/plugins/faulty.py), through the real CLI in subprocesses.

What must hold: whatever a model or task plug-in raises (BaseException subclasses included) fails that call's samples
as ``error`` and the run goes on, never hangs; KeyboardInterrupt and SystemExit raised by a plug-in stop the run as
Ctrl-C does (exit 130, status interrupted, data kept, no traceback); a call that never returns fails as ``timeout``
at its deadline (--call-timeout) and Ctrl-C stops a run stuck in one at the first press; a plug-in whose factory,
start or sample count raises is one line naming it (exit 2); a loader that raises ends the run cleanly with the
samples so far kept (exit 2); a sample whose text cannot be encoded is that sample's failure; a run that ends with
samples missing is ``incomplete`` and exits non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rrbench.tasks.sanity import sanity
from tests.conftest import PLUGINS, rrbench

FAULTY = str(Path(__file__).parent / "plugins" / "faulty.py")
N = 6
IDS = [s.id for s in sanity(size=32, n=N).load(None)]
CHOSEN = [IDS[1], IDS[4]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RRBENCH_CACHE": str(tmp_path / "cache.sqlite"), "RRBENCH_PLUGINS": f"{PLUGINS},{FAULTY}",
            "PYTHONUNBUFFERED": "1"}


def run(tmp_path: Path, env: dict[str, str], *args: str, task: str = "sanity") -> subprocess.CompletedProcess[str]:
    extra = ["-T", f"n={N}", "-T", "size=32"] if task == "sanity" else []
    return rrbench("run", "--task", task, *extra, *args, "--quiet", "--output", str(tmp_path / "runs"),
                   env=env, cwd=tmp_path)


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    err = done.stderr.strip()
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def only_run(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def log(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "samples.jsonl").read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "a sample recorded twice"
    return {r["id"]: r for r in records}


def record(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


# --------------------------------------------------------------------------------------------------- model calls


@pytest.mark.parametrize("model", ["faulty", "faulty-async"])
@pytest.mark.parametrize("fault", ["boom", "generator-exit", "runtime", "cancelled", "recursion"])
def test_whatever_a_model_raises_fails_its_samples_and_the_run_goes_on(
    tmp_path: Path, env: dict[str, str], model: str, fault: str
) -> None:
    # batch_size 4: the raising call also holds innocent samples, which the retry one by one must save
    done = run(tmp_path, env, "--model", model, "-M", f"fault={fault}", "-M", f"at={','.join(CHOSEN)}",
               "-M", "batch_size=4", "--concurrency", "4")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    run_dir = only_run(tmp_path)
    lines = log(run_dir)
    assert sorted(lines) == sorted(IDS)
    failed = {sid: r for sid, r in lines.items() if r.get("failure")}
    assert sorted(failed) == sorted(CHOSEN)
    name = {"generator-exit": "GeneratorExit", "cancelled": "CancelledError", "recursion": "RecursionError",
            "boom": "Boom", "runtime": "RuntimeError"}[fault]
    for r in failed.values():
        assert r["failure"] == "error"
        details = [j.get("failure_detail", "") for t in r["trials"] for j in t["judgements"]]
        assert any(d.startswith(name) for d in details), details
    rec = record(run_dir)
    assert rec["status"] == "complete" and rec["counts"]["failed_by_kind"] == {"error": 2}


@pytest.mark.parametrize("answer", ["not-judgement", "short", "none"])
def test_a_model_that_answers_with_the_wrong_things_fails_those_samples(
    tmp_path: Path, env: dict[str, str], answer: str
) -> None:
    done = run(tmp_path, env, "--model", "faulty", "-M", f"answer={answer}", "-M", f"at={CHOSEN[0]}")
    assert done.returncode == 0, done.stderr
    lines = log(only_run(tmp_path))
    assert len(lines) == N and [sid for sid, r in lines.items() if r.get("failure")] == [CHOSEN[0]]
    assert lines[CHOSEN[0]]["failure"] == "error"


@pytest.mark.parametrize("model", ["faulty", "faulty-async"])
@pytest.mark.parametrize("fault", ["keyboard", "system-exit"])
def test_keyboard_interrupt_or_system_exit_in_a_model_stops_the_run_like_ctrl_c(
    tmp_path: Path, env: dict[str, str], model: str, fault: str
) -> None:
    args = ["--model", model, "-M", f"fault={fault}", "-M", f"at={IDS[3]}", "--concurrency", "1"]
    done = run(tmp_path, env, *args)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "raised by a plug-in" in done.stdout
    run_dir = only_run(tmp_path)
    rec = record(run_dir)
    lines = log(run_dir)
    assert rec["status"] == "interrupted" and not any(r.get("failure") for r in lines.values())
    assert set(IDS[:3]) <= set(lines) and IDS[3] not in lines  # what finished is kept; the interrupted one is not
    healed = run(tmp_path, {**env, "RRBENCH_TEST_HEAL": "1"}, *args)
    assert healed.returncode == 0, healed.stderr
    assert sorted(log(run_dir)) == sorted(IDS) and record(run_dir)["status"] == "complete"


# --------------------------------------------------------------------------------------------------- hung calls


def test_a_call_that_never_returns_fails_as_timeout_at_its_deadline(tmp_path: Path, env: dict[str, str]) -> None:
    done = run(tmp_path, env, "--model", "hang", "-M", f"at={IDS[2]}", "--call-timeout", "1")
    assert done.returncode == 0, done.stderr  # and the process exits: the stuck thread is not waited for
    run_dir = only_run(tmp_path)
    lines = log(run_dir)
    assert sorted(lines) == sorted(IDS)
    assert {sid: r.get("failure") for sid, r in lines.items() if r.get("failure")} == {IDS[2]: "timeout"}
    rec = record(run_dir)
    assert rec["status"] == "complete" and rec["counts"]["failed_by_kind"] == {"timeout": 1}
    assert rec["stats"]["abandoned_calls"] >= 1


def test_ctrl_c_stops_a_run_stuck_in_an_in_process_call_at_the_first_press(
    tmp_path: Path, env: dict[str, str]
) -> None:
    mark = tmp_path / "hanging"
    args = [sys.executable, "-m", "rrbench.cli", "run", "--task", "sanity", "-T", f"n={N}", "-T", "size=32",
            "--model", "hang", "-M", f"at={IDS[2]}", "-M", f"mark={mark}", "--concurrency", "1", "--quiet",
            "--output", str(tmp_path / "runs")]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mark.exists(), proc.communicate(timeout=10)
        proc.send_signal(signal.SIGINT)  # once: the default deadline (600 s) is far away
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_dir = only_run(tmp_path)
    assert record(run_dir)["status"] == "interrupted"
    assert sorted(log(run_dir)) == sorted(IDS[:2])  # the samples before the stuck one are kept


def test_call_timeout_must_be_a_number_of_seconds(tmp_path: Path, env: dict[str, str]) -> None:
    assert "--call-timeout must be" in one_line(run(tmp_path, env, "--model", "sleepy", "--call-timeout", "-1"), 2)
    assert "invalid float value" in one_line(run(tmp_path, env, "--model", "sleepy", "--call-timeout", "x"), 2)


# --------------------------------------------------------------------------------------------------- building


@pytest.mark.parametrize("fault", ["runtime", "boom"])
def test_a_model_factory_that_raises_is_one_line_naming_it(tmp_path: Path, env: dict[str, str], fault: str) -> None:
    err = one_line(run(tmp_path, env, "--model", "bad-factory", "-M", f"fault={fault}"), 2)
    assert "model 'bad-factory'" in err and "failed to build" in err and "faulty.py" in err
    assert ("RuntimeError: weights are garbage" if fault == "runtime" else "Boom: kaboom") in err


def test_a_task_factory_or_count_that_raises_is_one_line_naming_it(tmp_path: Path, env: dict[str, str]) -> None:
    err = one_line(run(tmp_path, env, "--model", "sleepy", "-T", "build_fault=runtime", task="faulty-task"), 2)
    assert "task 'faulty-task'" in err and "RuntimeError: weights are garbage" in err
    err = one_line(run(tmp_path, env, "--model", "sleepy", "-T", "count_fault=boom", task="faulty-task"), 2)
    assert "task 'faulty-task'" in err and "Boom: kaboom" in err


@pytest.mark.parametrize("fault", ["runtime", "boom"])
def test_a_model_whose_start_raises_is_one_line_naming_it(tmp_path: Path, env: dict[str, str], fault: str) -> None:
    err = one_line(run(tmp_path, env, "--model", "bad-start", "-M", f"fault={fault}"), 2)
    assert "model 'bad-start' failed to start" in err


@pytest.mark.parametrize("fault", ["keyboard", "system-exit"])
def test_an_interrupt_raised_while_a_plug_in_is_built_exits_130(tmp_path: Path, env: dict[str, str],
                                                                 fault: str) -> None:
    done = run(tmp_path, env, "--model", "bad-factory", "-M", f"fault={fault}")
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr


def test_rrbench_debug_shows_the_traceback_of_a_plug_in_failure(tmp_path: Path, env: dict[str, str]) -> None:
    done = run(tmp_path, {**env, "RRBENCH_DEBUG": "1"}, "--model", "bad-factory")
    assert done.returncode == 2 and "Traceback" in done.stderr and "faulty.py" in done.stderr


# --------------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("fault", ["runtime", "boom"])
def test_a_loader_that_raises_stops_cleanly_keeping_the_samples_so_far(tmp_path: Path, env: dict[str, str],
                                                                       fault: str) -> None:
    args = ["--model", "sleepy", "-T", "raise_at=5", "-T", f"fault={fault}"]
    err = one_line(run(tmp_path, env, *args, task="faulty-task"), 2)
    assert "task 'faulty-task' stopped loading after 5 samples" in err
    run_dir = only_run(tmp_path)
    assert len(log(run_dir)) == 5  # every sample yielded before the fault was judged and recorded
    rec = record(run_dir)
    assert rec["status"] == "failed" and "stopped loading" in rec["error"] and rec["counts"]["missing"] == 3
    healed = run(tmp_path, {**env, "RRBENCH_TEST_HEAL": "1"}, *args, task="faulty-task")
    assert healed.returncode == 0, healed.stderr
    assert len(log(run_dir)) == 8 and record(run_dir)["stats"]["new_samples"] == 3


def test_a_loader_interrupt_exits_130_and_keeps_the_samples(tmp_path: Path, env: dict[str, str]) -> None:
    done = run(tmp_path, env, "--model", "sleepy", "-T", "raise_at=4", "-T", "fault=keyboard", "--concurrency", "1",
               task="faulty-task")
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    run_dir = only_run(tmp_path)
    # As on Ctrl-C, the sample in flight (the fourth) is given up; the three that finished are kept.
    assert record(run_dir)["status"] == "interrupted" and sorted(log(run_dir)) == sorted(IDS[:3])


def test_a_loader_that_yields_junk_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    err = one_line(run(tmp_path, env, "--model", "sleepy", "-T", "junk_at=3", task="faulty-task"), 2)
    assert "yielded a dict after 3 samples, not a Sample" in err
    assert len(log(only_run(tmp_path))) == 3


# --------------------------------------------------------------------------------------------------- samples


def test_text_that_cannot_be_encoded_is_that_samples_failure(tmp_path: Path, env: dict[str, str]) -> None:
    done = run(tmp_path, env, "--model", "sleepy", "-T", "text=surrogate", "-T", "text_at=2", task="faulty-task")
    assert done.returncode == 0, done.stderr
    run_dir = only_run(tmp_path)
    raw = (run_dir / "samples.jsonl").read_bytes()
    raw.decode("utf-8")  # the log stays valid UTF-8: the surrogate is written as a JSON escape
    lines = log(run_dir)
    assert len(lines) == 8
    (failed,) = [r for r in lines.values() if r.get("failure")]
    assert failed["failure"] == "data" and failed["prompt"].endswith("\udc80 end")
    assert "UnicodeEncodeError" in failed["trials"][0]["judgements"][0]["failure_detail"]
    # every reader copes with the record
    for args in (["show", str(run_dir)], ["rescore", str(run_dir), "--tie-policy", "ties-excluded"],
                 ["report", str(run_dir), "--out", str(tmp_path / "page.html")]):
        shown = rrbench(*args, env=env, cwd=tmp_path)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, (args, shown.stderr)
    resumed = run(tmp_path, env, "--model", "sleepy", "-T", "text=surrogate", "-T", "text_at=2", task="faulty-task")
    assert resumed.returncode == 0 and len(log(run_dir)) == 8  # retried, failed again, still recorded once


def test_a_nul_in_a_prompt_is_judged_and_recorded(tmp_path: Path, env: dict[str, str]) -> None:
    done = run(tmp_path, env, "--model", "sleepy", "-T", "text=nul", "-T", "text_at=2", task="faulty-task")
    assert done.returncode == 0, done.stderr
    lines = log(only_run(tmp_path))
    assert len(lines) == 8 and any("\x00" in (r.get("prompt") or "") for r in lines.values())


def test_numeric_sample_ids_are_recorded_as_text_and_resume(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(tmp_path, env, "--model", "sleepy", "-T", "int_ids=true", task="faulty-task").returncode == 0
    again = run(tmp_path, env, "--model", "sleepy", "-T", "int_ids=true", task="faulty-task")
    assert again.returncode == 0, again.stderr
    run_dir = only_run(tmp_path)
    assert sorted(log(run_dir)) == [str(1000 + i) for i in range(8)]
    assert record(run_dir)["stats"]["new_samples"] == 0


def test_a_run_that_ends_with_samples_missing_is_incomplete_and_exits_non_zero(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = run(tmp_path, env, "--model", "sleepy", "-T", "claim=10", task="faulty-task")  # says 10, yields 8
    assert done.returncode == 1, done.stderr
    assert "run incomplete" in done.stderr and "Traceback" not in done.stderr
    rec = record(only_run(tmp_path))
    assert rec["status"] == "incomplete" and rec["counts"]["missing"] == 2
    assert "finished_at" not in rec
