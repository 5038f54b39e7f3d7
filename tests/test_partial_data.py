"""Partial data is said wherever a number is read: run.json's `data` record, `rrbench run`/`show`, the report page.

Real runs through the `rrbench` command: the embedded `sanity` task with the weight-free `always-first` baseline,
a 9-row GenAI-Bench copy in its public schema (1,735 pairs registered), and `sanity-pinned`, a test plug-in that
declares an official content fingerprint. Expected fingerprints are recomputed here from the documented formula
(sha256 over one JSON line `[id, original label]` per sample, in load order) with hashlib, not through rrbench.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from rrbench import registry
from tests.conftest import PLUGINS, rrbench
from tests.test_task_genai_bench import ROWS, T2I_IMAGES, t2i_columns, write_parquet

PINNED = str(Path(__file__).parent / "plugins" / "pinned_task.py")
SMALL = ("-T", "n=16", "-T", "size=64")


def _record(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


def _one_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").is_file() and "rescore" not in p.name]
    return run_dir


def _fingerprint(pairs: list[tuple[str, str | None]]) -> str:
    digest = hashlib.sha256()
    for sample_id, original in pairs:
        digest.update(json.dumps([sample_id, original], separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    return "sha256:" + digest.hexdigest()


def _sanity_labels(n: int, seed: int = 0) -> list[tuple[str, str | None]]:
    task = registry.get("task", "sanity").build(n=n, size=64, seed=seed)
    return [(s.id, s.label.original) for s in task.load(None)]


def _ok(done: Any) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def test_limit_below_the_task_size_is_partial_everywhere_it_is_read(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity", *SMALL, "--model", "always-first", "--limit", "5", "--quiet",
                   "--output", str(out), env=cli_env, cwd=tmp_path)
    _ok(done)
    run_dir = _one_run(out)
    assert _record(run_dir)["data"] == {
        "registered_size": 16, "size": 16, "expected": 5, "fingerprint": _fingerprint(_sanity_labels(16)[:5]),
        "partial": True, "reasons": ["--limit 5 below the task size"]}
    line = "PARTIAL: 5 of 16 samples (--limit 5 below the task size)"
    assert line in done.stdout.splitlines()
    shown = rrbench("show", str(run_dir), env=cli_env, cwd=tmp_path)
    _ok(shown)
    assert line in shown.stdout.splitlines()
    report = rrbench("report", str(run_dir), "--limit", "0", env=cli_env, cwd=tmp_path)
    _ok(report)
    assert f'<p class="banner" role="alert">{line}</p>' in (run_dir / "report.html").read_text()


def test_a_whole_run_is_not_partial_and_a_resume_keeps_its_fingerprint(tmp_path: Path,
                                                                         cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    args = ("run", "--task", "sanity", *SMALL, "--model", "always-first", "--quiet", "--output", str(out))
    first = rrbench(*args, env=cli_env, cwd=tmp_path)
    _ok(first)
    run_dir = _one_run(out)
    whole = {"registered_size": 16, "size": 16, "expected": 16, "fingerprint": _fingerprint(_sanity_labels(16)),
             "partial": False, "reasons": []}
    assert _record(run_dir)["data"] == whole
    assert "PARTIAL" not in first.stdout
    # A finished run resumed reads no data: the record stands. Half a log resumed streams every sample again
    # (finished ones are skipped after they are hashed), so the fingerprint is the whole data's.
    _ok(rrbench(*args, env=cli_env, cwd=tmp_path))
    assert _record(run_dir)["data"] == whole
    log = run_dir / "samples.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:8]))
    again = rrbench(*args, env=cli_env, cwd=tmp_path)
    _ok(again)
    assert _record(run_dir)["stats"]["new_samples"] == 8
    assert _record(run_dir)["data"] == whole


def test_local_copy_smaller_than_the_registered_dataset(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = tmp_path / "GenAI-Bench"
    write_parquet(data / "image_generation" / "test_v1-00000-of-00001.parquet", t2i_columns(ROWS), T2I_IMAGES)
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "genai-bench-t2i", "--data", str(data), "--model", "always-first", "--quiet",
                   "--output", str(out), env=cli_env, cwd=tmp_path)
    _ok(done)
    run_dir = _one_run(out)
    labels = [(f"{i:05d}", vote) for i, (_, _, vote) in enumerate(ROWS)]  # no pair_id column: ids by row number
    assert _record(run_dir)["data"] == {
        "registered_size": 1735, "size": len(ROWS), "expected": len(ROWS), "fingerprint": _fingerprint(labels),
        "partial": True, "reasons": ["local copy smaller than the registered dataset"]}
    line = f"PARTIAL: {len(ROWS)} of 1,735 samples (local copy smaller than the registered dataset)"
    assert line in done.stdout.splitlines()
    # a rescored run is the same data: it inherits the record, and says so too
    rescored = rrbench("rescore", str(run_dir), "--failure-policy", "excluded", env=cli_env, cwd=tmp_path)
    _ok(rescored)
    (new,) = [p for p in out.iterdir() if "rescore" in p.name]
    assert _record(new)["data"] == _record(run_dir)["data"]
    assert line in rescored.stdout.splitlines()


@pytest.mark.parametrize(("seed", "reasons"), [(0, []), (1, ["content differs from the registered dataset"])])
def test_content_other_than_the_declared_fingerprint_is_partial(seed: int, reasons: list[str], tmp_path: Path,
                                                                cli_env: dict[str, str]) -> None:
    # The official copy is seed 0's; seed 1 moves the correct image, so the same ids carry other labels.
    official = _fingerprint(_sanity_labels(8, seed=0))
    env = {**cli_env, "RRBENCH_PLUGINS": f"{PLUGINS},{PINNED}"}
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity-pinned", "-T", f"fingerprint={official}", "-T", f"seed={seed}",
                   "--model", "always-first", "--quiet", "--output", str(out), env=env, cwd=tmp_path)
    _ok(done)
    data = _record(_one_run(out))["data"]
    assert data["fingerprint"] == _fingerprint(_sanity_labels(8, seed=seed))
    assert (data["partial"], data["reasons"]) == (bool(reasons), reasons)
    assert ("PARTIAL: 8 of 8 samples (content differs from the registered dataset)" in done.stdout) == bool(reasons)


def test_a_record_from_before_the_data_record_is_judged_by_its_limit(tmp_path: Path,
                                                                     cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    _ok(rrbench("run", "--task", "sanity", *SMALL, "--model", "always-first", "--limit", "4", "--quiet",
                "--output", str(out), env=cli_env, cwd=tmp_path))
    run_dir = _one_run(out)
    record = _record(run_dir)
    del record["data"]
    (run_dir / "run.json").write_text(json.dumps(record))
    shown = rrbench("show", str(run_dir), env=cli_env, cwd=tmp_path)
    _ok(shown)
    assert "PARTIAL: 4 of 16 samples (--limit 4 below the task size)" in shown.stdout.splitlines()
