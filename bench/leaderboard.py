"""Leaderboard build time over many run directories.

What: wall time of `rrbench leaderboard RUNS --out OUT` (in this process, imports done beforehand) over N run
directories: real runs of the `sanity` task (t2i and edit, four judges, one judged in both orders, one critic-shaped)
copied N times with distinct judges, spec hashes and metric values spread over the preference tasks, so every
table and column is exercised. Timed: tables only (`--plots none`, the target); with `--plots`, also the summary
plots (the command's default) and every plot (`--plots all`: one aspect figure per critic run). Plots grow with
the number of distinct judges (one row per judge in a task's accuracy figure), so they are reported, not held to
the target.

    python bench/leaderboard.py [--runs 1000] [--repeat 3] [--plots] [--json]

Target: < 5 s for 1,000 run directories (tables in every format). The plots' times are printed beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rrbench import cli
from rrbench.runner import integrity

# the toy-critic judge (a test plug-in) writes aspects and rationales, so critic plots have something to draw
os.environ["RRBENCH_PLUGINS"] = str(Path(__file__).resolve().parents[1] / "tests" / "plugins" / "critic_models.py")

TASKS = (("mmrb2-t2i", {}), ("mmrb2-edit", {}), ("editreward-bench", {"k": 2}), ("genai-bench-t2i", {}),
         ("genai-bench-edit", {}), ("sanity", {}), ("sanity", {"variant": "edit"}))


def seed_runs(root: Path) -> list[Path]:
    """Real runs to copy: four judges on sanity t2i and edit, always-first also in both orders."""
    for variant in ("t2i", "edit"):
        base = ["run", "--task", "sanity", "-T", f"variant={variant}", "-T", "n=64", "-T", "size=64",
                "--output", str(root), "--quiet", "--no-cache"]
        quietly([*base, "--model", "always-first,constant,random,toy-critic"])
        quietly([*base, "--model", "always-first", "--order", "both"])
    return sorted(p for p in root.iterdir() if (p / "run.json").exists())


def clone(seeds: list[Path], out: Path, n: int) -> None:
    rng = random.Random(0)
    for i in range(n):
        src = seeds[i % len(seeds)]
        task, args = TASKS[i % len(TASKS)]
        record = json.loads((src / "run.json").read_text())
        record["spec"] = {**record["spec"], "task": task, "task_args": args, "model": f"judge-{i // 7:04d}"}
        record["spec_hash"] = f"{i:064x}"
        record["task"] = {**record["task"], "name": task}
        shift = rng.uniform(-0.2, 0.2)  # move value and CI together, so each record stays consistent
        for m in record["metrics"]["overall"]:
            for key in ("value", "ci_low", "ci_high"):
                if m.get(key) is not None:
                    m[key] = min(1.0, max(0.0, m[key] + shift))
        dst = out / f"{task}__judge-{i:04d}__{i:010x}"
        dst.mkdir(parents=True)
        shutil.copy(src / "samples.jsonl", dst / "samples.jsonl")
        # Sealed as the runner seals what it writes: the leaderboard trusts a sealed record and recomputes only an
        # unsealed (hand-edited) one from its log; the normal case is what this figure measures.
        record["integrity"] = integrity(record, dst / "samples.jsonl")
        (dst / "run.json").write_text(json.dumps(record))


def quietly(args: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # the command's summary lines would bury the figures
        assert cli.main(args) == 0


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    quietly(args)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plots", action="store_true",
                        help="also time the summary plots and every plot (several minutes at 1,000 runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clone(seed_runs(root / "seed"), root / "runs", args.runs)
        base = ["leaderboard", str(root / "runs"), "--out", str(root / "lb"), "--reported", "none"]
        timed([*base, "--no-plots"])  # warm-up: imports, registry, page cache
        tables = min(timed([*base, "--no-plots"]) for _ in range(args.repeat))
        summary = timed([*base, "--plots", "summary"]) if args.plots else None
        everything = timed([*base, "--plots", "all"]) if args.plots else None
    ok = tables < 5.0
    if args.json:
        print(json.dumps({"runs": args.runs, "tables_s": tables, "summary_plots_s": summary,
                          "all_plots_s": everything, "pass": ok}))
        return 0 if ok else 1
    plots = f"; with summary plots {summary:.2f} s; with every plot {everything:.2f} s" if args.plots else ""
    print(f"\n{args.runs} run directories: tables in every format {tables:.2f} s (best of {args.repeat}; target < 5 s: "
          f"{'PASS' if ok else 'FAIL'}){plots}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
