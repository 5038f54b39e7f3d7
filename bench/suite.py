"""`make bench`: every performance figure of rrbench in one table, each measured side by side in one run.

Runs, one after another in fresh processes (so one benchmark's memory or threads never colour the next):

* overhead.py: pipeline pairs/s and peak RSS with an instant in-process model (2,000 `sanity` pairs at 512x512);
* client_throughput.py: rrbench's HTTP client against a raw async load generator on the same real server
  (`transformers serve` of the tiny Qwen3-VL), as a ratio;
* resume_rescore.py: a no-op resume of a finished 10,000-pair run (time ratio to the first run, model calls) and
  `rescore` of it;
* leaderboard.py: building the tables from 1,000 run directories.

Each script is also runnable on its own (see bench/README.md). Exit code 0 when every target is met.

    python bench/suite.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Figure:
    name: str
    target: str
    value: Callable[[dict[str, Any]], str]
    ok: Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Bench:
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    figures: tuple[Figure, ...]


BENCHES = (
    Bench("overhead.py", ("--pairs", "2000", "--size", "512"), ("--pairs", "500", "--size", "128"), (
        Figure("pipeline throughput, instant model (pairs/s)", ">= 500",
               lambda r: f"{r['pairs_per_s']:.0f}", lambda r: r["pairs_per_s"] >= 500),
        Figure("pipeline peak RSS (MB)", "< 1024", lambda r: f"{r['peak_rss_mb']:.0f}",
               lambda r: r["peak_rss_mb"] < 1024),
    )),
    Bench("client_throughput.py", ("--requests", "200", "--rounds", "3"), ("--requests", "64", "--rounds", "1"), (
        Figure("HTTP client rate / raw httpx rate, same server", ">= 0.95", lambda r: f"{r['ratio']:.3f}",
               lambda r: r["ratio"] >= 0.95),
    )),
    Bench("resume_rescore.py", ("--pairs", "10000"), ("--pairs", "2000"), (
        Figure("resume of a finished run / first run (time)", "<= 0.25",
               lambda r: f"{r['resume_ratio']:.3f} ({r['resume_s']:.2f} s / {r['first_s']:.2f} s)",
               lambda r: r["resume_ratio"] <= 0.25),
        Figure("resume of a finished run: model calls", "0", lambda r: str(r["resume_model_calls"]),
               lambda r: r["resume_model_calls"] == 0),
        Figure("rescore --tie-policy (samples/s)", ">= 2000",
               lambda r: f"{r['rescore_rate']:.0f} ({r['rescore_s']:.2f} s for {r['pairs']})",
               lambda r: r["rescore_rate"] >= 2000),
    )),
    Bench("leaderboard.py", ("--runs", "1000"), ("--runs", "200", "--repeat", "1"), (
        Figure("leaderboard tables from 1,000 run directories (s)", "< 5", lambda r: f"{r['tables_s']:.2f}",
               lambda r: r["tables_s"] < 5.0),
    )),
)


def run(bench: Bench, quick: bool) -> tuple[dict[str, Any] | None, str, float]:
    """The script's JSON result (None if it produced none), its stderr tail, and its wall time."""
    args = bench.quick_args if quick else bench.args
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / bench.script), *args, "--json"], capture_output=True,
                          text=True, timeout=1800)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else None
    return result, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "", wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run, not the targets' sizes")
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    for bench in BENCHES:
        print(f"running {bench.script} ...", file=sys.stderr, flush=True)
        result, err, wall = run(bench, args.quick)
        print(f"  done in {wall:.0f} s", file=sys.stderr, flush=True)
        for figure in bench.figures:
            if result is None:
                rows.append((figure.name, "no result: " + err[:60], figure.target, "FAIL"))
            else:
                rows.append((figure.name, figure.value(result), figure.target, "PASS" if figure.ok(result) else "FAIL"))
    print(table(rows, ("figure", "measured", "target", "")))
    if args.quick:
        print("(--quick: smaller sizes than the targets are defined for)")
    return 0 if all(r[3] == "PASS" for r in rows) else 1


def table(rows: list[tuple[str, str, str, str]], header: tuple[str, ...]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
