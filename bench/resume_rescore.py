"""Resume of a finished run and rescore, against the first run, side by side in one process.

What: a 10,000-pair `sanity` run (64x64, the in-process `instant` model of bench/overhead.py, no cache) is timed;
then the same spec is run again (a resume of a finished run: it must read the log, find every sample done and
make zero model calls), then `rrbench rescore --tie-policy ties-excluded` recomputes its metrics from the log.
Printed: each wall time, the ratios resume/first and rescore/first, and the model calls of the resume.

    python bench/resume_rescore.py [--pairs 10000] [--json]

Targets: resume makes 0 model calls and takes <= 0.25 of the first run; rescore handles >= 2,000 samples/s (it
reads, re-credits and rewrites the log and recomputes every metric with bootstrap CIs, as a first run's end does,
so its ratio to the first run is printed for information: with an instant model both are mostly that work).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from overhead import Instant

from rrbench import registry
from rrbench.rescore import rescore
from rrbench.runner import Runner
from rrbench.spec import RunSpec
from rrbench.store import NullCache, RunDir

RESUME_TARGET, RESCORE_RATE = 0.25, 2000.0


def run_once(spec: RunSpec, out: Path) -> tuple[float, Any]:
    task = registry.get("task", "sanity").build(**spec.task_args)
    runner = Runner(spec, task, Instant(), RunDir(out / spec.dirname()), NullCache(), progress_enabled=False)
    start = time.perf_counter()
    outcome = runner.run()
    return time.perf_counter() - start, outcome


def measure(pairs: int) -> dict[str, Any]:
    registry.load_plugins()
    spec = RunSpec(task="sanity", model="instant", task_args={"size": 64, "n": pairs})
    with tempfile.TemporaryDirectory() as tmp:
        first, outcome = run_once(spec, Path(tmp))
        resume, again = run_once(spec, Path(tmp))
        start = time.perf_counter()
        rescore(outcome.run_dir, tie_policy="ties-excluded")
        rescored = time.perf_counter() - start
        lines = sum(1 for _ in (outcome.run_dir / "samples.jsonl").open())
    return {"pairs": pairs, "first_s": first, "resume_s": resume, "rescore_s": rescored,
            "resume_ratio": resume / first, "rescore_ratio": rescored / first, "rescore_rate": pairs / rescored,
            "resume_model_calls": again.model_calls, "resume_new_samples": again.new_samples, "log_lines": lines}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    r = measure(args.pairs)
    ok = (r["resume_model_calls"] == 0 and r["log_lines"] == args.pairs and r["resume_ratio"] <= RESUME_TARGET
          and r["rescore_rate"] >= RESCORE_RATE)
    if args.json:
        print(json.dumps({**r, "pass": ok}))
    else:
        print(f"first run: {r['pairs']} pairs in {r['first_s']:.2f} s")
        print(f"resume of the finished run: {r['resume_s']:.2f} s = {r['resume_ratio']:.3f} of the first "
              f"(target <= {RESUME_TARGET}), {r['resume_model_calls']} model calls, {r['resume_new_samples']} new")
        print(f"rescore --tie-policy ties-excluded: {r['rescore_s']:.2f} s = {r['rescore_rate']:.0f} samples/s "
              f"(target >= {RESCORE_RATE:.0f}); {r['rescore_ratio']:.2f} of the first run")
        print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
