"""bench/gpu_check.sh: its smoke mode runs every part on the CPU (tiny models) and prints one row per figure with a
finite number in each column; a part that fails or runs out of time says so in its row without stopping the others
and makes the exit code non-zero. The full mode needs a GPU (marked ``gpu``)."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("clip", "critic", "generation", "sft", "nft")
VLLM_SKIP = "skipped"  # the critic row in smoke mode without RRBENCH_VLLM_PYTHON, and only then


def run_check(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "bench/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by part: the cells between ' | '."""
    lines = [line for line in stdout.splitlines() if " | " in line]
    assert lines and lines[0].split(" | ")[0].strip() == "part", stdout
    return {cells[0]: cells for cells in ([c.strip() for c in line.split(" | ")] for line in lines[1:])}


def number(cell: str) -> float:
    return float(cell.split()[0])


@pytest.mark.slow
def test_smoke_mode_prints_every_figure_as_a_finite_ratio() -> None:
    done = run_check("--smoke")
    table = rows(done.stdout)
    assert set(table) == set(PARTS), done.stdout
    for part, cells in table.items():
        _, figure, value, baseline, ratio, *_ = cells
        if part == "critic" and not os.environ.get("RRBENCH_VLLM_PYTHON"):
            assert value == VLLM_SKIP and "RRBENCH_VLLM_PYTHON" in cells[-1], cells
            continue
        assert value not in ("FAILED", VLLM_SKIP), (part, cells, done.stderr[-3000:])
        measured, base, r = number(value), number(baseline), float(ratio)
        assert all(math.isfinite(x) and x > 0 for x in (measured, base, r)), cells
        assert r == pytest.approx(measured / base, rel=0.02), cells  # the ratio is rrbench over its baseline
        assert figure, cells
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def test_a_failed_part_and_a_part_out_of_time_say_why_in_their_rows_and_the_exit_code() -> None:
    # critic fails at once (no such vLLM); generation still runs after it, and is stopped at its timeout
    env = {"PARTS": "critic generation", "RRBENCH_VLLM_PYTHON": "/nonexistent/python", "GPU_CHECK_TIMEOUT_S": "20"}
    done = run_check("--smoke", env=env, timeout=120)
    table = rows(done.stdout)
    assert set(table) == {"critic", "generation"}, done.stdout
    assert table["critic"][2] == "FAILED", table
    assert table["critic"][-1] == "PartError: RRBENCH_VLLM_PYTHON=/nonexistent/python does not exist", table
    assert table["generation"][2] == "FAILED" and "timed out after" in table["generation"][-1], table
    assert done.returncode != 0
    left = subprocess.run(["pgrep", "-f", "rrbench-bench-gen-"], capture_output=True, text=True).stdout
    assert not left.strip(), f"a bench child outlived its timeout: {left}"


@pytest.mark.gpu
def test_full_mode_on_a_gpu() -> None:
    done = run_check(timeout=900)
    table = rows(done.stdout)
    assert set(table) == set(PARTS), done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
