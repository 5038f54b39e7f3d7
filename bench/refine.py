"""Test-time refine: how much of the critic's time the overlap of critique and generation hides.

What: ``rrbench refine`` runs a generation stage and the critique of its images side by side (the critic critiques
sample i while the generator makes sample i+1). Against a critic of fixed latency and a generator of fixed latency,
this script times, side by side in one run:

- sequential: ``rrbench generate`` (the base set), then the critique alone (``rrbench run --protocol
  refine-critique --images GEN_DIR``, the very stage refine runs, as an ordinary judge run), each in a fresh folder;
- refine: ``rrbench refine`` with the same task, generator, critic and seed, in a fresh folder.

Each stage's time is its run.json ``stats.wall_s``. Refine's generation + critique part is the longer of its base
and critique stages (they start together; the critique ends last). Hidden fraction of the critic's time =
(generation alone + critique alone - refine's generation + critique) / critique alone. The last image's critique
can never overlap, so the best possible is about 1 - 1/images (with a slower critic: (1 - 1/images) x G / L).

The critic: tests/judge_server.py's ``ScriptedJudge`` (a real OpenAI-compatible HTTP server on 127.0.0.1, in this
process) answering RationalRewards pointwise critiques after ``L`` seconds, one request at a time (``--slots``: a
single-GPU server busy with one critique), reached by ``--critic rationalrewards-8b --base-url URL``; every run
uses a fresh response cache and ``--no-cache``, so each critique is really asked. The generator: ``bench-painter``,
registered by this file as a plug-in (``RRBENCH_PLUGINS``): the offline painter, one image per call, sleeping ``G``
seconds first. Task ``sanity-gen`` (one image per prompt), judge ``sanity-gen-judge``.

By default the critic keeps every image (refine's round 1 regenerates nothing), so the comparison is exact;
``--regenerate`` makes the critic ask for every image again, and round 1's regeneration + its critique is compared
with the same sequential times (it makes as many images at the same latency: an estimate, said so).

Cases: ``G:L`` pairs; the target applies where the critic is faster (L < G); the other case shows what happens when
it is slower (the critic sets the pace and the generator's time is what gets hidden). Repetitions alternate the
order (sequential first, then refine first) so drift of a shared machine cancels out.

Target: the median hidden fraction >= 0.80 where the critic is faster than the generator.

GPU: an 8B-size critic (random weights, vLLM) in seconds per image against the paper's ~0.4 s needs a GPU; this
script does not measure it (bench/README.md says whether one was lent).

    python bench/refine.py [--images 24] [--cases 0.2:0.1,0.1:0.2] [--reps 3] [--slots 1] [--regenerate] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench.generators._base import Generated, ImageRequest
from rrbench.generators.painter import Painter
from rrbench.registry import generator

ROOT = Path(__file__).resolve().parent.parent
HIDDEN_TARGET = 0.80
GENERATOR = "bench-painter"
CRITIC = "rationalrewards-8b"
JUDGE = "sanity-gen-judge"
TASK = ["--task", "sanity-gen", "-T", "images_per_prompt=1"]


# --------------------------------------------------------------------------------------------------- generator


class SlowPainter(Painter):
    """The offline painter at a generator's pace: ``latency`` seconds per image, one image per call."""

    name = GENERATOR
    batch_size = 1

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = float(latency)

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        time.sleep(self.latency * len(requests))  # a GPU's forward pass: the GIL is free meanwhile
        return super().generate(requests)


@generator(GENERATOR, description="painter that takes LATENCY seconds per image, one at a time (bench/refine.py)")
def bench_painter(latency: float = 0.2) -> SlowPainter:
    return SlowPainter(latency)


# --------------------------------------------------------------------------------------------------- critic


def critique(prompt: str, keep: bool) -> str:
    """A RationalRewards pointwise critique; the refined request is the prompt itself (the painter reads it)."""
    faithful = "4" if keep else "2"
    return "\n".join([
        "# User Request Analysis", f"The user asks for: {prompt}", "# Detailed Judgement",
        "1. Text Faithfulness:", "## Justification: The objects are there.", f"## Score: {faithful}",
        "2. Physical and Visual Quality:", "## Justification: Clean shapes.", "## Score: 3.5",
        "3. Text Rendering:", "## Justification: As asked.", "## Score: N/A",
        "# Summary: A plain image.", "# User Request Refinement:",
        "## Refinement Comments: None needed.", f"## Refined Request: {prompt}",
    ])


class Critic:
    """The critic's behaviour, changed between runs: ``latency`` per request, ``slots`` requests at a time."""

    def __init__(self, slots: int, keep: bool) -> None:
        self.latency, self.keep = 0.0, keep
        self._slots = threading.BoundedSemaphore(slots)

    def answer(self, request: Any) -> str:
        match = re.search(r"User (?:Instruction|request): (.+)", request.text)
        with self._slots:
            time.sleep(self.latency)
        return critique(match.group(1).strip() if match else "A red circle in the center.", self.keep)


@contextmanager
def critic_server(critic: Critic) -> Iterator[str]:
    sys.path.insert(0, str(ROOT))
    from tests.judge_server import ScriptedJudge

    with ScriptedJudge(critic.answer) as server:
        yield server.url


# --------------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Case:
    gen_s: float
    critic_s: float

    @property
    def label(self) -> str:
        pace = "critic faster" if self.critic_s < self.gen_s else "critic slower"
        return f"G={self.gen_s:g} s, L={self.critic_s:g} s ({pace})"


def rrbench(args: list[str], cache: Path) -> float:
    """One rrbench command in a child process; its wall time in seconds."""
    env = {**os.environ, "RRBENCH_CACHE": str(cache),
           "RRBENCH_PLUGINS": ",".join(filter(None, [str(Path(__file__).resolve()),
                                                     os.environ.get("RRBENCH_PLUGINS")]))}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rrbench.cli", *args, "--quiet"], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"rrbench {args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return wall


def stages(out: Path) -> dict[str, float]:
    """The wall time of each stage in ``out``: gen, critique, regen, critique-regen (by what their specs say)."""
    specs = {}
    for path in out.glob("*/run.json"):
        record = json.loads(path.read_text())
        specs[record["spec_hash"]] = record
    regen = {h for h, r in specs.items() if (r["spec"].get("refine") or {}).get("stage") == "regenerate"}
    found: dict[str, float] = {}
    for record in specs.values():
        spec, wall = record["spec"], float(record["stats"]["wall_s"])
        stage = (spec.get("refine") or {}).get("stage")
        if spec.get("model") is None and stage is None:
            found["gen"] = wall
        elif stage == "regenerate":
            found["regen"] = wall
        elif spec.get("protocol") == "refine-critique":
            found["critique-regen" if spec["images"].removeprefix("run:") in regen else "critique"] = wall
    return found


def sequential(case: Case, images: int, url: str, root: Path) -> dict[str, float]:
    out, cache = root / "runs", root / "cache.sqlite"
    gen = ["--generator", GENERATOR, "-G", f"latency={case.gen_s}"]
    wall = rrbench(["generate", *TASK, "-T", f"n={images}", *gen, "--output", str(out)], cache)
    (gen_dir,) = list(out.iterdir())
    wall += rrbench(["run", *TASK, "-T", f"n={images}", "--images", str(gen_dir), "--model", CRITIC,
                     "--protocol", "refine-critique", "--base-url", url, "--no-cache", "--output", str(out)], cache)
    found = stages(out)
    return {"gen": found["gen"], "critique": found["critique"], "processes": wall}


def refine(case: Case, images: int, url: str, root: Path) -> dict[str, float]:
    out, cache = root / "runs", root / "cache.sqlite"
    wall = rrbench(["refine", *TASK, "-T", f"n={images}", "--generator", GENERATOR, "-G", f"latency={case.gen_s}",
                    "--critic", CRITIC, "--base-url", url, "--model", JUDGE, "--no-cache", "--output", str(out)],
                   cache)
    found = stages(out)
    result = {"pair": max(found["gen"], found["critique"]), "gen": found["gen"], "process": wall}
    if "regen" in found:
        result["pair1"] = max(found["regen"], found["critique-regen"])
    return result


def repetition(case: Case, critic: Critic, images: int, url: str, root: Path, rep: int) -> dict[str, Any]:
    """Sequential and refine, in alternating order; the hidden fraction of the critic's time."""
    critic.latency = case.critic_s
    order = ("sequential", "refine") if rep % 2 == 0 else ("refine", "sequential")
    got: dict[str, dict[str, float]] = {}
    for kind in order:
        where = root / f"{kind}-{rep}"
        got[kind] = (sequential if kind == "sequential" else refine)(case, images, url, where)
    seq, ref = got["sequential"], got["refine"]
    row = {"order": ",".join(k[:3] for k in order), "gen_alone_s": seq["gen"], "critique_alone_s": seq["critique"],
           "sequential_sum_s": seq["gen"] + seq["critique"], "refine_pair_s": ref["pair"],
           "refine_gen_s": ref["gen"],
           "hidden": (seq["gen"] + seq["critique"] - ref["pair"]) / seq["critique"],
           "critic_s_per_image": seq["critique"] / images, "refine_process_s": ref["process"],
           "sequential_processes_s": seq["processes"]}
    if "pair1" in ref:
        row["refine_round1_pair_s"] = ref["pair1"]
        row["hidden_round1_est"] = (seq["gen"] + seq["critique"] - ref["pair1"]) / seq["critique"]
    return row


# --------------------------------------------------------------------------------------------------- main


def parse_cases(text: str) -> list[Case]:
    cases = []
    for item in filter(None, text.split(",")):
        gen_s, _, critic_s = item.partition(":")
        cases.append(Case(float(gen_s), float(critic_s)))
    return cases


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--images", type=int, default=24, help="sanity-gen prompts, one image each")
    p.add_argument("--cases", default="0.2:0.1,0.1:0.2", help="G:L pairs, generator and critic seconds per image")
    p.add_argument("--reps", type=int, default=3, help="repetitions per case, alternating the order")
    p.add_argument("--slots", type=int, default=1, help="critiques the critic server works on at once")
    p.add_argument("--regenerate", action="store_true", help="the critic asks for every image again (round 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def summarize(case: Case, rows: list[dict[str, Any]]) -> dict[str, Any]:
    hidden = [r["hidden"] for r in rows]
    result = {"case": case.label, "gen_s": case.gen_s, "critic_s": case.critic_s, "hidden": spread(hidden),
              "critic_s_per_image": spread([r["critic_s_per_image"] for r in rows]),
              "rows": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]}
    if all("hidden_round1_est" in r for r in rows):
        result["hidden_round1_est"] = spread([r["hidden_round1_est"] for r in rows])
    if case.critic_s < case.gen_s:
        result["pass"] = statistics.median(hidden) >= HIDDEN_TARGET
    return result


def show(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(f"{args.images} images (sanity-gen, one per prompt), critic server with {args.slots} slot(s), "
          f"{args.reps} repetitions per case (order alternates); times are stage wall_s from run.json")
    head = ("rep  order    gen alone  critique alone  sum      refine gen+crit  (its gen)  hidden  critic s/img  "
            "refine process  seq processes")
    for result in results:
        best = (1 - 1 / args.images) * min(result["gen_s"], result["critic_s"]) / result["critic_s"]
        print(f"\n{result['case']}; best possible hidden about {best:.2f} (the last image's critique, or while "
              "the critic is slower the first image, cannot overlap)")
        print(head)
        for k, r in enumerate(result["rows"], 1):
            print(f"{k:<4} {r['order']:<8} {r['gen_alone_s']:>8.2f}s {r['critique_alone_s']:>14.2f}s "
                  f"{r['sequential_sum_s']:>7.2f}s {r['refine_pair_s']:>15.2f}s {r['refine_gen_s']:>9.2f}s "
                  f"{r['hidden']:>7.3f} "
                  f"{r['critic_s_per_image']:>12.3f} {r['refine_process_s']:>14.2f}s "
                  f"{r['sequential_processes_s']:>13.2f}s")
        h = result["hidden"]
        line = f"hidden fraction of critic time: median {h['median']:.3f} (spread {h['min']:.3f}-{h['max']:.3f})"
        if "pass" in result:
            line += f", target >= {HIDDEN_TARGET}: {'PASS' if result['pass'] else 'FAIL'}"
        else:
            line += " (no target: the critic sets the pace, the generator's time is what is hidden)"
        print(line)
        if "hidden_round1_est" in result:
            r1 = result["hidden_round1_est"]
            print(f"round 1 (regeneration + its critique, against the same sequential times, an estimate): median "
                  f"{r1['median']:.3f} (spread {r1['min']:.3f}-{r1['max']:.3f})")
        c = result["critic_s_per_image"]
        print(f"critic time per image, critique alone: median {c['median']:.3f} s (server latency "
              f"{result['critic_s']:g} s)")
    print("\n8B critic on a GPU (random weights, vLLM) vs the paper's ~0.4 s per image: not measured by this "
          "script (needs a GPU)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = parse_cases(args.cases)
    critic = Critic(args.slots, keep=not args.regenerate)
    rows: dict[Case, list[dict[str, Any]]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="rrbench-refine-bench-") as tmp, critic_server(critic) as url:
        for rep in range(args.reps):
            for c, case in enumerate(cases):
                rows[case].append(repetition(case, critic, args.images, url, Path(tmp) / f"case{c}", rep))
    results = [summarize(case, rows[case]) for case in cases]
    ok = all(r.get("pass", True) for r in results)
    if args.json:
        print(json.dumps({"images": args.images, "slots": args.slots, "regenerate": args.regenerate,
                          "cases": results, "gpu_critic": "not measured (needs a GPU)", "pass": ok}))
    else:
        show(args, results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
