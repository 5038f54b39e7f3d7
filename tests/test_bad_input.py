"""The bad-input catalogue: every user mistake gives one line on stderr and exit code 2 (no traceback), or, when
the fault is in one sample's data, a failure recorded for that sample while the run goes on.

Mistakes already covered elsewhere are listed here by name so the catalogue is complete in one place:
unknown task/model, bad -T, missing --data, bad --limit/--tie-policy/--config/--protocol (test_cli.py);
unwritable output and a second writer on one run directory at the RunDir level (test_store.py); missing model
weights and flags a model does not take (test_vlm_judge.py); leaderboard and report inputs (test_leaderboard.py,
test_report.py); malformed dataset rows per task (test_task_*.py); plug-ins that raise, hang or yield junk
(test_plugin_faults.py); outputs that would overwrite their inputs, a full disk, a corrupt response cache, --no-resume
against a running writer (test_store_faults.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rrbench import cli
from tests.conftest import PLUGINS
from tests.test_task_genai_bench import ROWS, T2I_IMAGES, t2i_columns, write_parquet

GENAI = ("image_generation", "test_v1-00000-of-00001.parquet")


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()  # drop what the test's own set-up printed (datasets' progress bars)
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _genai(folder: Path, edit: Callable[[dict[str, list[object]]], None] | None = None, rows: int = 4) -> Path:
    columns = t2i_columns(ROWS[:rows])
    if edit is not None:
        edit(columns)
    write_parquet(folder.joinpath(*GENAI), columns, T2I_IMAGES)
    return folder


@pytest.mark.parametrize(("argv", "message"), [
    # argparse mistakes: one line naming the fix, not a usage block
    (["run", "--order", "sideways"], "argument --order: invalid choice: 'sideways'"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["ls", "metric"], "invalid choice: 'metric'"),
    (["run", "--limit", "ten"], "argument --limit: invalid int value: 'ten'"),
    # names and arguments
    (["run", "--task", "sanity", "--model", "random", "-M", "colour=red"], "model 'random' has no argument 'colour'"),
    (["run", "--task", "sanity", "--model", "clipscore", "-M", "batch_size=abc"], "batch_size must be a positive"),
    (["run", "--task", "sanity", "--model", "random", "-M", "seed"], "-M expects key=value"),
    (["run", "--task", "sanity", "--model", "random", "-T", "n=abc"], "n must be a positive integer"),
    (["run", "--task", "sanity", "--model", "random", "--concurrency", "0"], "--concurrency must be at least 1"),
    (["run", "--task", "sanity", "--model", "random", "--call-timeout", "-5"], "--call-timeout must be a number"),
    (["run", "--task", "sanity", "--model", "random", "--call-timeout", "nan"], "--call-timeout must be a number"),
    (["run", "--task", "sanity", "--model", "random", "--failure-policy", "ignore"], "invalid choice: 'ignore'"),
    (["rescore", "/nonexistent", "--tie-policy", "exact"], "not a run directory (no run.json): /nonexistent"),
    (["show", "/nonexistent"], "not a run directory"),
    (["compare", "/nonexistent", "/nonexistent"], "not a run directory"),
    (["doctor", "--model", "nope"], "unknown model 'nope'"),
    # secrets and servers
    (["run", "--task", "sanity", "--model", "gpt-4o", "-T", "n=2"], "OPENAI_API_KEY is not set"),
    (["run", "--task", "sanity", "--model", "qwen3-vl-8b", "--base-url", "http://127.0.0.1:9/v1", "-T", "n=2"],
     "cannot reach http://127.0.0.1:9/v1"),
])
def test_mistakes_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    extra = ["--output", str(tmp_path / "runs"), "--quiet"] if argv[0] == "run" and len(argv) > 2 else []
    assert message in _one_line_error(capsys, argv + extra)


def test_data_that_is_not_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run", "--task", "genai-bench-t2i", "--model", "random", "--output", str(tmp_path / "runs"), "--quiet"]
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "notes.txt", tmp_path / "empty"):
        assert "no parquet file with TIGER-Lab/GenAI-Bench's columns" in _one_line_error(
            capsys, [*base, "--data", str(data)])
    wrong = _genai(tmp_path / "wrong", lambda c: c.pop("vote_type"))
    assert "column 'vote_type' missing" in _one_line_error(capsys, [*base, "--data", str(wrong)])
    empty = _genai(tmp_path / "no-rows", rows=0)
    assert "has no samples in" in _one_line_error(capsys, [*base, "--data", str(empty)])
    # none of these start-ups left a run directory (nor the runs/ folder) behind, let alone a "complete" empty run
    assert not (tmp_path / "runs").exists()


def test_faults_in_one_sample_are_recorded_and_the_run_goes_on(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def spoil(columns: dict[str, list[object]]) -> None:
        columns["left_image"][1] = {"bytes": b"\x89PNG\r\n\x1a\n broken", "path": None}  # corrupt image bytes
        columns["vote_type"][2] = "sidevote"  # a label string GenAI-Bench does not have

    data = _genai(tmp_path / "spoilt", spoil)
    out = tmp_path / "runs"
    assert cli.main(["run", "--task", "genai-bench-t2i", "--model", "classical-iqa", "--data", str(data),
                     "--output", str(out), "--quiet"]) == 0
    (run_dir,) = out.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["counts"] | {"failed_by_kind": None} == {"expected": 4, "recorded": 4, "failed": 1,
                                                            "failed_by_kind": None, "label_skipped": 1, "missing": 0}
    assert record["counts"]["failed_by_kind"] == {"data": 1}
    lines = {x["id"]: x for x in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}
    assert len(lines) == 4
    assert [x["failure"] for x in lines.values() if x.get("failure")] == ["data"]
    assert [x["label"]["original"] for x in lines.values() if x.get("skipped")] == ["sidevote"]


def test_output_that_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = _one_line_error(capsys, ["run", "--task", "sanity", "--model", "random", "-T", "n=2", "--quiet",
                                   "--output", str(blocker / "runs")])
    assert "cannot write run directory" in err and "Not a directory" in err


def test_two_runs_on_the_same_output_at_once(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The second process is refused in one line; the first finishes untouched, every sample once."""
    args = [sys.executable, "-m", "rrbench.cli", "run", "--task", "sanity", "--model", "sleepy", "-M", "delay=0.25",
            "-T", "n=16", "-T", "size=32", "--concurrency", "1", "--quiet", "--output", str(tmp_path / "runs")]
    env = {**cli_env, "RRBENCH_PLUGINS": PLUGINS}
    first = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "runs").glob("*/samples.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    _, err = first.communicate(timeout=120)
    assert second.returncode == 2 and "another rrbench process is writing" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1 and "Traceback" not in second.stderr
    assert first.returncode == 0, err
    (log,) = (tmp_path / "runs").glob("*/samples.jsonl")
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 16
