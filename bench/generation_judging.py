"""Judging a generation benchmark: rrbench's official-judge run against a raw async load generator, and its memory.

What: ``rrbench run --task unigenbench --images DIR --model gpt-4.1 --base-url URL`` (UniGenBench++'s own judge
protocol: one request per image, the official prompt, the image as a data URI) against an instant local server,
side by side with a raw load generator that posts the very same request bodies (recorded from rrbench's first pass,
held in memory, sent through a plain ``httpx.AsyncClient`` at the same concurrency). Both run as child processes,
in alternating rounds (raw, rrbench, rrbench, raw, ...), so drift of the machine cancels out. Each rrbench round
starts with an empty response cache. Also the peak RSS of the rrbench process over the whole run.

The server (a child process, asyncio streams, HTTP/1.1 keep-alive) answers every request at once with a fixed
official-format answer for three testpoints (every prompt of the synthetic copy has three), without parsing the
body; in the recording pass it writes each body to disk.

Data: a synthetic UniGenBench copy (``test_prompts_en.csv`` in the official schema, three testpoints per prompt
from the real dimension names) and ``prompts x 4`` PNGs in the official layout ``{index}_{j}.png``; nothing is
downloaded.

Targets: rrbench's request rate >= 0.95x the raw generator's; peak RSS < 1.5 GB for 2,400 images (600 prompts, as
UniGenBench++ en short).

    python bench/generation_judging.py [--prompts 600] [--size 512] [--rounds 2] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _instant import run_raw, run_rrbench, start_server, stop  # bench/ is not a package: its own folder

RATE_TARGET = 0.95
RSS_TARGET_MB = 1536.0
TESTPOINTS = ["Style", "Attribute - Color", "Relationship - Composition"]
ANSWER = ("<description><prompt>p</prompt><checkpoint>c</checkpoint>"
          "<analysis>['fine', 'fine', 'not quite']</analysis><score>[1, 1, 0]</score></description>")


# --------------------------------------------------------------------------------------------------- data


def write_copy(root: Path, prompts: int, size: int) -> tuple[Path, Path]:
    """``root/data/test_prompts_en.csv`` and ``root/images/{index}_{j}.png`` (4 per prompt, each distinct)."""
    import csv

    import numpy as np
    from PIL import Image

    data, images = root / "data", root / "images"
    data.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    with open(data / "test_prompts_en.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "prompt_en", "sub_dims_en"])
        for i in range(prompts):
            dims = {"Primary Categories": "Art", "Secondary Categories": "Graphic Art", "Subjects": "Scene",
                    "Sentence Structure": "Descriptive", "Testpoints": TESTPOINTS,
                    "Testpoint Description": [f"style {i}", f"colour {i}", f"layout {i}"]}
            writer.writerow([i, f"A picture number {i} of a red ball left of a blue cube, in watercolour.",
                             json.dumps(dims)])
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(prompts):
        for j in range(4):  # a gradient with a little noise: realistic PNG sizes, every image its own bytes
            pixels = (base[None, :, None] + rng.normal(0, 6, (size, size, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(images / f"{i}_{j}.png", compress_level=1)
    return data, images


# --------------------------------------------------------------------------------------------------- clients


def run_ours(data: Path, images: Path, url: str, out: Path, concurrency: int) -> dict[str, Any]:
    """One rrbench judge run of UniGenBench's official judge protocol (child process, fresh cache)."""
    return run_rrbench(["--task", "unigenbench", "--data", str(data), "--images", str(images), "--model", "gpt-4.1",
                        "-M", f"concurrency={concurrency}"], url, out)


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=600, help="prompts (x 4 images); 600 = UniGenBench++ en short")
    p.add_argument("--size", type=int, default=512, help="image side in pixels")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (raw, rrbench, rrbench, raw)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight, both clients")
    p.add_argument("--json", action="store_true", help="print one JSON object (for bench/suite.py)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rrbench-genjudge-") as tmp:
        root = Path(tmp)
        data, images = write_copy(root, args.prompts, args.size)
        bodies = root / "bodies"
        bodies.mkdir()
        server, url = start_server(ANSWER, bodies)  # the recording pass: rrbench's own bodies, for the raw client
        try:
            first = run_ours(data, images, url, root / "record", args.concurrency)
        finally:
            stop(server)
        server, url = start_server(ANSWER, None)
        raw: dict[str, list[dict[str, Any]]] = {"build": [], "pre": []}
        ours: list[dict[str, Any]] = []
        try:
            for r in range(args.rounds):
                for mode in ("build", "pre"):
                    raw[mode].append(run_raw(bodies, url, args.concurrency, mode, images))
                ours.append(run_ours(data, images, url, root / f"r{r}a", args.concurrency))
                ours.append(run_ours(data, images, url, root / f"r{r}b", args.concurrency))
                for mode in ("pre", "build"):
                    raw[mode].append(run_raw(bodies, url, args.concurrency, mode, images))
        finally:
            stop(server)
    rate = statistics.median(o["rate"] for o in ours)
    ratio = rate / statistics.median(r["rate"] for r in raw["build"])
    ratio_pre = rate / statistics.median(r["rate"] for r in raw["pre"])
    rss = max(o["peak_rss_mb"] for o in [first, *ours])
    result = {"images": args.prompts * 4, "size": args.size, "concurrency": args.concurrency,
              "raw_build_rate": [round(r["rate"], 1) for r in raw["build"]],
              "raw_pre_encoded_rate": [round(r["rate"], 1) for r in raw["pre"]],
              "rrbench_rate": [round(o["rate"], 1) for o in ours],
              "rrbench_process_s": [o["process_s"] for o in ours], "ratio": round(ratio, 3),
              "ratio_pre_encoded": round(ratio_pre, 3), "peak_rss_mb": round(rss, 1), "counts": first["counts"],
              "pass": ratio >= RATE_TARGET and rss < RSS_TARGET_MB}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['images']} images ({args.size} px), concurrency {args.concurrency}, {args.rounds} rounds")
        print(f"raw, each request built from its file:  {result['raw_build_rate']} requests/s")
        print(f"raw, bodies encoded beforehand:          {result['raw_pre_encoded_rate']} requests/s")
        print(f"rrbench:                                 {result['rrbench_rate']} requests/s "
              f"(whole process: {result['rrbench_process_s']} s)")
        print(f"rrbench / raw (built from files) = {ratio:.3f} (target >= {RATE_TARGET}) "
              f"{'PASS' if ratio >= RATE_TARGET else 'FAIL'}")
        print(f"rrbench / raw (pre-encoded bodies) = {ratio_pre:.3f} (no target here: the bar of issue 19's "
              "client work)")
        print(f"peak RSS of the rrbench run: {rss:.0f} MB (target < {RSS_TARGET_MB:.0f}) "
              f"{'PASS' if rss < RSS_TARGET_MB else 'FAIL'}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
