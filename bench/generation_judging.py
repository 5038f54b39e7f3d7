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
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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


# --------------------------------------------------------------------------------------------------- server


SERVER = r'''
import asyncio, json, sys
from pathlib import Path
port, record = int(sys.argv[1]), sys.argv[2]
answer = json.dumps({"id": "x", "object": "chat.completion", "model": "judge", "choices": [{"index": 0,
    "message": {"role": "assistant", "content": sys.argv[3]}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
models = b'{"object": "list", "data": [{"id": "judge", "object": "model"}]}'
count = 0
def head(status, body):
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body
async def serve(reader, writer):
    global count
    try:
        while True:
            line = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for h in line.split(b"\r\n"):
                if h.lower().startswith(b"content-length:"):
                    length = int(h.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if line.startswith(b"GET"):
                writer.write(head("200 OK", models))
            else:
                count += 1
                if record != "-":
                    Path(record, f"{count:06d}.json").write_bytes(body)
                writer.write(head("200 OK", answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(record: Path | None) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(record or "-"), ANSWER],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, f"http://127.0.0.1:{port}/v1"


# --------------------------------------------------------------------------------------------------- clients


def run_rrbench(data: Path, images: Path, url: str, out: Path, concurrency: int) -> dict[str, Any]:
    """One rrbench judge run in a child process (fresh cache): its request rate and the child's peak RSS."""
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "RRBENCH_CACHE": str(out / "cache.sqlite")}
    command = [sys.executable, "-m", "rrbench.cli", "run", "--task", "unigenbench", "--data", str(data),
               "--images", str(images), "--model", "gpt-4.1", "-M", f"concurrency={concurrency}", "--base-url", url,
               "--output", str(out / "runs"), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"rrbench run failed ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
    (run,) = [p for p in (out / "runs").iterdir() if p.is_dir()]
    record = json.loads((run / "run.json").read_text())
    stats = record["stats"]
    return {"requests": stats["model_calls"], "loop_s": stats["wall_s"], "process_s": round(wall, 3),
            "rate": stats["model_calls"] / stats["wall_s"], "peak_rss_mb": usage.ru_maxrss / 1024,
            "counts": record["counts"]}


RAW = r'''
import asyncio, hashlib, json, sys, time
from pathlib import Path
import httpx
try:
    from pybase64 import b64decode, b64encode
except ImportError:
    from base64 import b64decode, b64encode
folder, url, concurrency, mode, images = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
bodies = [p.read_bytes() for p in sorted(folder.glob("*.json"))]
by_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in Path(images).iterdir()}
def split(body):
    """(before the image's base64, the image file, after it): the request rebuilt from the file at send time."""
    start = body.index(b";base64,") + 8
    end = body.index(b'"', start)
    return body[:start], by_sha[hashlib.sha256(b64decode(body[start:end])).hexdigest()], body[end:]
def build(job):
    before, path, after = job
    return before + b64encode(path.read_bytes()) + after
jobs = [split(b) for b in bodies] if mode == "build" else []
assert all(build(j) == b for j, b in zip(jobs, bodies)), "the rebuilt requests differ from rrbench's"
async def main():
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one(item):
            async with gate:
                body = build(item) if mode == "build" else item
                r = await client.post(url + "/chat/completions", content=body,
                                      headers={"content-type": "application/json", "authorization": "Bearer x"})
                r.raise_for_status()
                json.loads(r.content)["choices"][0]["message"]["content"]
        start = time.perf_counter()
        await asyncio.gather(*(one(x) for x in (jobs if mode == "build" else bodies)))
        return time.perf_counter() - start
wall = asyncio.run(main())
print(json.dumps({"requests": len(bodies), "loop_s": wall, "rate": len(bodies) / wall}))
'''


def run_raw(bodies: Path, url: str, concurrency: int, mode: str, images: Path) -> dict[str, Any]:
    """The raw generator in a child process. ``pre``: the recorded bodies, encoded beforehand, only posted;
    ``build``: each request rebuilt at send time from its image file (read, base64, spliced into the recorded
    text), the least any client must do per request."""
    done = subprocess.run([sys.executable, "-c", RAW, str(bodies), url, str(concurrency), mode, str(images)],
                          capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


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
        server, url = start_server(bodies)  # the recording pass: rrbench's own bodies, kept for the raw client
        try:
            first = run_rrbench(data, images, url, root / "record", args.concurrency)
        finally:
            server.terminate()
            server.wait()
        server, url = start_server(None)
        raw: dict[str, list[dict[str, Any]]] = {"build": [], "pre": []}
        ours: list[dict[str, Any]] = []
        try:
            for r in range(args.rounds):
                for mode in ("build", "pre"):
                    raw[mode].append(run_raw(bodies, url, args.concurrency, mode, images))
                ours.append(run_rrbench(data, images, url, root / f"r{r}a", args.concurrency))
                ours.append(run_rrbench(data, images, url, root / f"r{r}b", args.concurrency))
                for mode in ("pre", "build"):
                    raw[mode].append(run_raw(bodies, url, args.concurrency, mode, images))
        finally:
            server.terminate()
            server.wait()
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
