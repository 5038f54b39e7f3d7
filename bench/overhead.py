"""Pipeline overhead: pairs per second through load -> judge -> predict -> persist with an instant model.

An in-process model that answers without touching pixels isolates rrbench's own cost (sample streaming,
batching, cache look-ups, prediction, the flushed append-only log, metrics with bootstrap CIs at the end).
Targets on the 2-core development machine: >= 500 pairs/s for 2,000 `sanity` pairs at 512x512 and < 1 GB peak RSS.

    python bench/overhead.py [--pairs 2000] [--size 512] [--cache]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rrbench import registry
from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.runner import Runner
from rrbench.spec import RunSpec
from rrbench.store import NullCache, ResponseCache, RunDir
from rrbench.types import Judgement, Query


class Instant(RewardModel):
    """Scores from the image identity (a hash of its recipe key): no decoding, no compute."""

    name = "instant"
    batch_size = 64

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [Judgement(scores=(hashlib.sha256(q.candidates[0].key.encode()).digest()[0] / 255,)) for q in queries]


@reward_model("instant", description="benchmark model: answers instantly from the image key")
def instant() -> RewardModel:
    return Instant()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cache", action="store_true", help="include the SQLite response cache (default: off)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()

    registry.load_plugins()
    rss_before = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        spec = RunSpec(task="sanity", model="instant", task_args={"size": args.size, "n": args.pairs})
        task = registry.get("task", "sanity").build(**spec.task_args)
        cache = ResponseCache(Path(tmp) / "cache.sqlite") if args.cache else NullCache()
        runner = Runner(spec, task, Instant(), RunDir(Path(tmp) / spec.dirname()), cache, progress_enabled=False)
        start = time.perf_counter()
        outcome = runner.run()
        wall = time.perf_counter() - start
        cache.close()
        lines = sum(1 for _ in (outcome.run_dir / "samples.jsonl").open())
    rate = args.pairs / wall
    peak = peak_rss_mb()
    ok = rate >= 500 and peak < 1024 and lines == args.pairs
    if args.json:
        print(json.dumps({"pairs": args.pairs, "size": args.size, "wall_s": wall, "pairs_per_s": rate,
                          "peak_rss_mb": peak, "log_lines": lines, "pass": ok}))
        return 0 if ok else 1
    print(f"pairs: {args.pairs} at {args.size}x{args.size} (cache {'on' if args.cache else 'off'}), "
          f"{lines} log lines, status {outcome.status}")
    print(f"wall time (incl. metrics + bootstrap CIs): {wall:.2f} s")
    print(f"throughput: {rate:.0f} pairs/s   (target >= 500)  {'OK' if rate >= 500 else 'BELOW TARGET'}")
    print(f"peak RSS: {peak:.0f} MB (at start {rss_before:.0f} MB)   (target < 1024)  "
          f"{'OK' if peak < 1024 else 'ABOVE TARGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
