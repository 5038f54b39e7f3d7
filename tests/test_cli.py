"""End-to-end tests of the `rrbench` command, run as a user would: a subprocess, real files, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import rrbench


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if (p / "run.json").exists())


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def _values(record: dict) -> list[tuple]:
    return [(m["metric"], m["failure_policy"], m["value"], m["ci_low"], m["ci_high"]) for m in
            record["metrics"]["overall"]]


def test_demo_run_writes_records_prints_categories_and_a_rerun_makes_no_model_calls(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    args = ("run", "--task", "sanity", "--model", "classical-iqa", "-T", "n=48", "--output", str(tmp_path / "runs"))
    first = rrbench(*args, env=cli_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = _run_dirs(tmp_path / "runs")
    record = _record(run_dir)
    assert record["status"] == "complete"
    assert record["schema_version"] == 1 and len(record["spec_hash"]) == 64
    assert record["provenance"]["rrbench"] and "python" in record["provenance"]
    assert record["counts"]["recorded"] == 48 and record["stats"]["model_calls"] == 96
    lines = _lines(run_dir)
    assert len(lines) == 48 and len({line["id"] for line in lines}) == 48
    assert "quality:blur" in first.stdout and "faithfulness" in first.stdout  # per-category table
    assert "accuracy" in first.stdout and "95% CI" in first.stdout

    again = rrbench(*args, env=cli_env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _record(run_dir)["stats"]["model_calls"] == 0
    assert "0 model calls" in again.stdout
    assert len(_lines(run_dir)) == 48
    assert _values(_record(run_dir)) == _values(record)


def test_run_without_arguments_is_the_demo(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("run", "--quiet", env=cli_env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = _run_dirs(tmp_path / "runs")
    assert run_dir.name.startswith("sanity__classical-iqa__")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--task", "nope", "--model", "random"), "unknown task 'nope'"),
        (("--task", "sanity", "--model", "randon"), "unknown model 'randon'; did you mean random"),
        (("--task", "sanity", "--model", "random", "-T", "colour=red"), "has no argument 'colour'"),
        (("--task", "sanity", "--model", "random", "-T", "size"), "-T expects key=value"),
        (("--task", "sanity", "--model", "random", "-T", "variant=video"), "variant"),
        (("--task", "sanity", "--model", "random", "--data", "/no/such/path"), "--data path does not exist"),
        (("--task", "sanity", "--model", "random", "--limit", "0"), "--limit must be a positive number"),
        (("--task", "sanity", "--model", "random", "--tie-policy", "coin"), "unknown tie policy"),
        (("--task", "sanity", "--model", "random", "--config", "/no/file.yaml"), "--config file not found"),
        (("--task", "sanity", "--model", "random", "--protocol", "nope"), "has no protocol 'nope'"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, cli_env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    done = rrbench("run", *args, "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists() or not _run_dirs(tmp_path / "runs")


def test_ls_lists_every_kind(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("ls", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0
    for name in ("sanity", "classical-iqa", "random", "constant", "always-first", "accuracy", "sleepy"):
        assert name in done.stdout
    tasks = rrbench("ls", "tasks", env=cli_env, cwd=tmp_path)
    assert "sanity" in tasks.stdout and "classical-iqa" not in tasks.stdout


def _kill_midway(cmd: list[str], env: dict[str, str], cwd: Path, samples: Path, at: int, sig: int) -> int:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if samples.exists() and samples.read_bytes().count(b"\n") >= at:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    return proc.returncode


def test_sigkill_halfway_then_resume_gives_one_line_per_sample_and_identical_metrics(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    common = ["run", "--task", "sanity", "--model", "sleepy", "-M", "delay=0.01", "-T", "n=60", "--quiet"]
    clean = rrbench(*common, "--output", str(tmp_path / "clean"), "--no-cache", env=cli_env, cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    (clean_dir,) = _run_dirs(tmp_path / "clean")

    out = tmp_path / "killed"
    run_dir = out / clean_dir.name  # same spec -> same directory name
    cmd = [sys.executable, "-m", "rrbench.cli", *common, "--output", str(out), "--concurrency", "4"]
    code = _kill_midway(cmd, cli_env, tmp_path, run_dir / "samples.jsonl", 25, signal.SIGKILL)
    assert code == -signal.SIGKILL
    kept = len(_lines(run_dir))
    assert 25 <= kept < 60

    resumed = rrbench(*common, "--output", str(out), env=cli_env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    ids = [line["id"] for line in _lines(run_dir)]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert _record(run_dir)["stats"]["new_samples"] == 60 - kept
    assert _values(_record(run_dir)) == _values(_record(clean_dir))


def test_ctrl_c_stops_cleanly_keeps_what_finished_and_resumes(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    common = ["run", "--task", "sanity", "--model", "sleepy", "-M", "delay=0.02", "-T", "n=60", "--output", str(out)]
    cmd = [sys.executable, "-m", "rrbench.cli", *common, "--concurrency", "2", "--quiet"]
    spec_dir_probe = out
    proc_samples = None
    # The directory name is only known once the run starts: wait for it, then for 10 finished samples.
    proc = subprocess.Popen(cmd, env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc_samples is None:
        dirs = _run_dirs(spec_dir_probe) if spec_dir_probe.exists() else []
        proc_samples = dirs[0] / "samples.jsonl" if dirs else None
        time.sleep(0.02)
    assert proc_samples is not None
    while time.monotonic() < deadline and (
        not proc_samples.exists() or proc_samples.read_bytes().count(b"\n") < 10
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode()
    run_dir = proc_samples.parent
    assert _record(run_dir)["status"] == "interrupted"
    kept = len(_lines(run_dir))
    assert 10 <= kept < 60
    resumed = rrbench(*common, env=cli_env, cwd=tmp_path)
    assert resumed.returncode == 0
    assert sorted(line["id"] for line in _lines(run_dir)) == sorted({line["id"] for line in _lines(run_dir)})
    assert len(_lines(run_dir)) == 60


def test_failures_are_recorded_by_kind_and_only_they_are_retried(tmp_path: Path, cli_env: dict[str, str]) -> None:
    calls = tmp_path / "calls.txt"
    env = {**cli_env, "RRBENCH_TEST_CALLS": str(calls)}
    args = ("run", "--task", "sanity", "--model", "sleepy", "-M", "fail=0.3", "-T", "n=40", "--quiet",
            "--output", str(tmp_path / "runs"))
    first = rrbench(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = _run_dirs(tmp_path / "runs")
    failed = {line["id"] for line in _lines(run_dir) if line.get("failure")}
    assert failed and all(line["failure"] == "timeout" for line in _lines(run_dir) if line.get("failure"))
    record = _record(run_dir)
    assert record["counts"]["failed_by_kind"] == {"timeout": len(failed)}
    excluded, wrong = record["metrics"]["overall"][:2]
    assert excluded["n_units"] == 40 - len(failed) and wrong["n_units"] == 40

    calls.unlink()
    healed = rrbench(*args, env={**env, "RRBENCH_TEST_HEAL": "1"}, cwd=tmp_path)
    assert healed.returncode == 0
    # only the failed samples' queries reach the model (their successful halves come from the cache)
    assert 0 < sum(int(x) for x in calls.read_text().split()) <= 2 * len(failed)
    assert _record(run_dir)["stats"]["new_samples"] == len(failed)
    lines = _lines(run_dir)
    assert len(lines) == 40 and not any(line.get("failure") for line in lines)


def test_a_model_that_always_errors_stops_the_run_with_exit_1(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "broken", "-T", "n=60", "--quiet",
                   "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 1
    assert "weights are garbage" in done.stdout + done.stderr
    (run_dir,) = _run_dirs(tmp_path / "runs")
    assert _record(run_dir)["status"] == "failed"


def test_config_manifest_and_replay_from_run_json(tmp_path: Path, cli_env: dict[str, str]) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("task: sanity\nmodel: random\ntask_args: {n: 12}\nseed: 3\n")
    done = rrbench("run", "--config", str(manifest), "--quiet", "--output", str(tmp_path / "a"),
                   env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = _run_dirs(tmp_path / "a")
    assert _record(run_dir)["spec"]["seed"] == 3
    replay = rrbench("run", "--config", str(run_dir / "run.json"), "--quiet", "--output", str(tmp_path / "b"),
                     env=cli_env, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    (replayed,) = _run_dirs(tmp_path / "b")
    assert replayed.name == run_dir.name
    assert _values(_record(replayed)) == _values(_record(run_dir))


def test_rescore_writes_a_new_run_pointing_to_its_source(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    assert rrbench("run", "--task", "sanity", "--model", "constant", "-T", "n=10", "--quiet", "--output", str(out),
                   env=cli_env, cwd=tmp_path).returncode == 0
    (src,) = _run_dirs(out)
    assert _record(src)["metrics"]["overall"][0]["value"] == 0.0  # every pair a predicted tie: wrong under exact
    done = rrbench("rescore", str(src), "--tie-policy", "tie-calibrated", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    new = [d for d in _run_dirs(out) if d != src]
    assert len(new) == 1
    record = _record(new[0])
    assert record["source_run"] == str(src.resolve())
    assert record["protocol"]["tie_policy"] == "tie-calibrated"
    assert record["stats"]["model_calls"] == 0
    assert len(_lines(new[0])) == 10
    shown = rrbench("show", str(new[0]), env=cli_env, cwd=tmp_path)
    assert shown.returncode == 0 and "rescored from" in shown.stdout
    missing = rrbench("show", str(tmp_path / "nope"), env=cli_env, cwd=tmp_path)
    assert missing.returncode == 2 and "not a run directory" in missing.stderr


def test_no_resume_moves_the_old_run_aside(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    args = ("run", "--task", "sanity", "--model", "random", "-T", "n=6", "--quiet", "--output", str(out))
    assert rrbench(*args, env=cli_env, cwd=tmp_path).returncode == 0
    assert rrbench(*args, "--no-resume", env=cli_env, cwd=tmp_path).returncode == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and any(".old-" in n for n in names)
    assert all(len(_lines(out / n)) == 6 for n in names)


def test_comma_lists_make_one_run_per_combination(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "random,always-first", "-T", "n=8", "--quiet",
                   "--order", "both", "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    dirs = _run_dirs(tmp_path / "runs")
    assert len(dirs) == 2
    first = next(d for d in dirs if "always-first" in d.name)
    record = _record(first)
    # always-first under both orders: right in exactly one order of every pair -> 50% of trials
    assert record["metrics"]["overall"][0]["value"] == 0.5 and record["metrics"]["overall"][0]["n_units"] == 16
    assert all(len(line["trials"]) == 2 for line in _lines(first))
    assert os.path.basename(str(first)).startswith("sanity__always-first__")


def test_compare_two_runs_on_the_same_samples(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    for model in ("classical-iqa", "always-first"):
        done = rrbench("run", "--task", "sanity", "--model", model, "-T", "n=24", "--quiet", "--output", str(out),
                       env=cli_env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    iqa = next(d for d in _run_dirs(out) if "classical-iqa" in d.name)
    first = next(d for d in _run_dirs(out) if "always-first" in d.name)
    done = rrbench("compare", str(first), str(iqa), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "24 common samples" in done.stdout and "McNemar" in done.stdout
    # the B-A difference printed equals the difference of the two runs' own accuracies
    acc = {d: _record(d)["metrics"]["overall"][0]["value"] for d in (iqa, first)}
    assert f"{100 * (acc[iqa] - acc[first]):+.2f}" in done.stdout


def test_ls_tasks_shows_protocol_and_size(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("ls", "tasks", env=cli_env, cwd=tmp_path)
    assert "protocol sanity-exact" in done.stdout and "192 samples" in done.stdout
    metrics = rrbench("ls", "metrics", env=cli_env, cwd=tmp_path)
    assert "tie-calibrated" in metrics.stdout and "genai-4way" in metrics.stdout
