"""Task groups: `rrbench run --task GROUP` runs every member as an ordinary run and prints one line per member.

End to end with groups of `sanity` variants registered by a test plug-in (tests/plugins/sanity_groups.py) and the
weight-free baselines; the built-in groups are only resolved, never run (their datasets are not here).
Hand-known values: `sanity` balances the correct image's position, so `always-first` scores exactly 50%; its labels
are never ties, so `constant` (every pair a tie) scores 0%.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rrbench import registry
from rrbench.groups import Planned, expand
from rrbench.leaderboard.tables import TABLE1
from rrbench.registry import GroupMember
from tests.conftest import PLUGINS, rrbench
from tests.test_task_genai_bench import ROWS, T2I_IMAGES, t2i_columns, write_parquet

GROUPS = str(Path(__file__).parent / "plugins" / "sanity_groups.py")
CLASH = str(Path(__file__).parent / "plugins" / "clashing_group.py")


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{PLUGINS},{GROUPS}"}


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads((p / "run.json").read_text()) for p in sorted(out.iterdir())}


def _summary(stdout: str, group: str) -> list[str]:
    """The summary table's data lines (after its heading and the two header lines)."""
    lines = stdout.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"task group {group}: "))
    return [x for x in lines[start + 3:] if x.strip()]


def test_a_group_runs_each_member_as_an_ordinary_run(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity-pair", "--model", "always-first,constant", "-T", "n=8", "-T", "size=64",
                   "--quiet", "--output", str(out), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = _records(out)
    assert len(records) == 4
    settings = sorted((r["spec"]["model"], r["spec"]["task"], json.dumps(r["spec"]["task_args"], sort_keys=True))
                      for r in records.values())
    assert settings == sorted((model, "sanity", json.dumps({"n": 8, "size": 64, "variant": variant}, sort_keys=True))
                              for model in ("always-first", "constant") for variant in ("t2i", "edit"))
    assert all(r["status"] == "complete" and r["counts"]["recorded"] == 8 for r in records.values())
    assert "task group sanity-pair: 4 runs" in done.stdout
    rows = _summary(done.stdout, "sanity-pair")
    assert len(rows) == 4
    for name, record in records.items():
        (row,) = [r for r in rows if r.endswith(str(out / name))]
        cells = row.split()
        value = "50.00" if record["spec"]["model"] == "always-first" else "0.00"
        variant = record["spec"]["task_args"]["variant"]
        assert cells[:7] == ["sanity", "(n=8,", "size=64,", f"variant={variant})", record["spec"]["model"],
                             "complete", "accuracy"]
        assert cells[7] == value and "full" in cells


def test_a_failing_member_is_said_and_the_others_still_run(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "GenAI-Bench"
    write_parquet(data / "image_generation" / "test_v1-00000-of-00001.parquet", t2i_columns(ROWS), T2I_IMAGES)
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity-and-genai", "--model", "always-first", "--data", str(data), "--quiet",
                   "--output", str(out), env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rrbench: error: sanity x always-first: sanity is embedded and takes no --data"]
    genai = [r for r in _records(out).values() if r["spec"]["task"] == "genai-bench-t2i"]
    assert [r["status"] for r in genai] == ["complete"]
    rows = _summary(done.stdout, "sanity-and-genai")
    assert rows[0].split()[:5] == ["sanity", "(n=8,", "size=64)", "always-first", "error"]
    assert rows[0].endswith("(the error is above)")
    assert rows[1].split()[:3] == ["genai-bench-t2i", "always-first", "complete"]
    assert f"partial: {len(ROWS)} of 1,735" in rows[1]


def test_ctrl_c_stops_the_whole_group(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "rrbench.cli", "run", "--task", "sanity-pair", "--model", "sleepy", "-M",
           "delay=0.02", "-T", "n=60", "--concurrency", "2", "--quiet", "--output", str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(p.read_bytes().count(b"\n") for p in out.glob("*/samples.jsonl")) < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    (record,) = _records(out).values()  # the second member never started
    assert record["status"] == "interrupted" and record["spec"]["task_args"]["variant"] == "t2i"
    assert "task group sanity-pair: 1 runs" in stdout.decode()


@pytest.mark.parametrize(("args", "message"), [
    (("-T", "k=2"), "task group 'sanity-pair': member 'sanity' has no argument 'k' (-T; accepts: size, variant, n, "
                    "seed)"),
    (("-T", "variant=edit"), "task group 'sanity-pair' fixes variant=t2i for 'sanity'; -T variant=edit conflicts"),
])
def test_bad_group_arguments_are_one_line_before_anything_runs(args: tuple[str, ...], message: str, tmp_path: Path,
                                                               env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity-pair", "--model", "always-first", *args, "--output", str(out),
                   env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not out.exists()


def test_a_group_named_like_a_task_is_an_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "RRBENCH_PLUGINS": f"{PLUGINS},{CLASH}"}
    done = rrbench("run", "--task", "sanity", "--model", "always-first", "--output", str(tmp_path / "runs"),
                   env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("rrbench: error: 'sanity' is both a task (rrbench.tasks.sanity) and a task group "
                                   "(rrbench_plugin_clashing_group); rename one of them")


def test_ls_lists_groups_with_their_members(tmp_path: Path, env: dict[str, str]) -> None:
    done = rrbench("ls", "groups", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.split()[0] == "sanity-pair")
    assert line.endswith("tasks: sanity (variant=t2i), sanity (variant=edit)")
    everything = rrbench("ls", env=env, cwd=tmp_path)
    assert "task groups (--task GROUP runs every member):" in everything.stdout
    assert any(x.split()[:1] == ["rationalrewards-table1"] for x in everything.stdout.splitlines())


def test_builtin_groups_resolve_to_their_members() -> None:
    groups = {g.name: g for g in registry.groups()}
    assert groups["genai-bench"].members == (GroupMember("genai-bench-t2i"), GroupMember("genai-bench-edit"))
    assert groups["mmrb2"].members == (GroupMember("mmrb2-t2i"), GroupMember("mmrb2-edit"))
    assert expand(["rationalrewards-table1"], {}) == [
        Planned("mmrb2-t2i", {}, "rationalrewards-table1"), Planned("mmrb2-edit", {}, "rationalrewards-table1"),
        Planned("editreward-bench", {"k": 2}, "rationalrewards-table1"),
        Planned("genai-bench-t2i", {}, "rationalrewards-table1"),
        Planned("genai-bench-edit", {}, "rationalrewards-table1")]
    # the Table 1 group runs exactly the settings of the leaderboard's paper-layout columns
    table1 = [(p.task, p.task_args) for p in expand(["rationalrewards-table1"], {})]
    assert table1 == [(task, args) for _, task, args, _ in TABLE1]
    tasks = {e.name for e in registry.entries("task")}
    assert not set(groups) & tasks
    for group in groups.values():
        assert {m.task for m in group.members} <= tasks, group.name
