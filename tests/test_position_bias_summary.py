"""Position bias where results are read: `rrbench run` and `rrbench show` of a run judged in both orders print how
often the two orders agree and how often the image shown first wins.

`always-first` on the embedded `sanity` task gives hand-known values: it picks the first image shown in every
trial (100% first-position wins), so its two orders never agree (0%), and it is right with A shown first exactly
on the samples whose human winner is A (counted here from samples.jsonl).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import rrbench

ARGS = ("--task", "sanity", "-T", "n=16", "-T", "size=64", "--model", "always-first", "--quiet")


def test_both_orders_print_agreement_and_first_position_wins(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    done = rrbench("run", *ARGS, "--order", "both", "--output", str(out), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = list(out.iterdir())
    lines = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    a_wins = sum(line["label"]["winner"] == 0 for line in lines)
    expected = (f"position bias: the two orders agree on 0.00% of 16 samples; the image shown first wins 100.00% of "
                f"32 trials with a winner (50% = no bias); right with A shown first {100 * a_wins / 16:.2f}% of 16, "
                f"with B shown first {100 * (16 - a_wins) / 16:.2f}% of 16")
    assert expected in done.stdout.splitlines()
    shown = rrbench("show", str(run_dir), env=cli_env, cwd=tmp_path)
    assert shown.returncode == 0 and expected in shown.stdout.splitlines()


def test_one_order_prints_no_position_bias(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("run", *ARGS, "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout and "position bias" not in done.stdout
