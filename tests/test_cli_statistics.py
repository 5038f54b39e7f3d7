"""`rrbench compare` and `rrbench show` as a user types them, on runs judged in both presentation orders.

A position-biased judge (always-first) shown each pair both ways is right exactly once per sample: credit 1/2 on
every sample, which McNemar cannot see and a bootstrap would call certain. Expected numbers come from the
per-trial credits each run logged in samples.jsonl and the binomial formula, not from the metrics code.
"""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import pytest

from tests.conftest import rrbench


def _per_sample_credit(run_dir: Path) -> dict[str, float]:
    lines = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {d["id"]: sum(d["correct"]) / len(d["correct"]) for d in lines}


def _two_sided_p(k: int, n: int) -> float:
    low = min(k, n - k)
    return min(1.0, 2 * sum(comb(n, i) for i in range(low + 1)) / 2**n)


@pytest.fixture
def both_orders(tmp_path: Path, cli_env: dict[str, str]) -> dict[str, Path]:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity", "--model", "always-first,classical-iqa", "-T", "n=24", "--order", "both",
                   "--quiet", "--output", str(out), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    dirs = [p for p in out.iterdir() if (p / "run.json").exists()]
    return {m: next(d for d in dirs if f"__{m}__" in d.name) for m in ("always-first", "classical-iqa")}


def test_compare_with_half_credits_uses_the_sign_test_and_prints_its_counts(
    both_orders: dict[str, Path], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    a, b = _per_sample_credit(both_orders["always-first"]), _per_sample_credit(both_orders["classical-iqa"])
    assert set(a.values()) == {0.5}  # the premise: every sample half right
    b_better = sum(1 for k in a if b[k] > a[k])
    a_better = sum(1 for k in a if b[k] < a[k])
    done = rrbench("compare", str(both_orders["always-first"]), str(both_orders["classical-iqa"]),
                   env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("accuracy") and "excluded" in x)
    cells = line.split()
    assert "exact sign test" in line and "McNemar" not in line
    assert "24" in cells  # the bootstrap's samples: all paired
    assert str(b_better + a_better) in cells and f"{b_better}/{a_better}" in cells  # the test's samples
    assert f"{_two_sided_p(b_better, b_better + a_better):.4g}" in cells


def test_show_prints_samples_units_and_the_interval_method(
    both_orders: dict[str, Path], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    done = rrbench("show", str(both_orders["always-first"]), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header = next(x for x in done.stdout.splitlines() if x.startswith("metric"))
    assert "CI method" in header and " n " in header and "units" in header
    line = next(x for x in done.stdout.splitlines() if x.startswith("accuracy") and "excluded" in x)
    # 24 samples, 48 trials, each sample exactly half right: an exact interval on 24 clusters, not [50, 50]
    assert "cluster-exact" in line and " 24 " in line and "48 trials" in line and "[50.00, 50.00]" not in line
