"""Shared by the judging benchmarks (client_throughput.py --instant, generation_judging.py): an instant local
OpenAI-compatible server, a raw async load generator, and rrbench run as a child process with its peak RSS.

The server (a child process, asyncio streams, HTTP/1.1 keep-alive) answers every chat request at once with one
fixed answer, without parsing the body; with ``record`` it writes each body to ``record/NNNNNN.json`` (the
recording pass whose bodies the raw generator then posts). The raw generator is a child process too: a plain
``httpx.AsyncClient`` and a semaphore, the recorded bodies either posted as they are (``pre``: encoded beforehand)
or rebuilt at send time from their image files (``build``: read, base64, spliced into the recorded text, the least
any client must do per request).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

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


def start_server(answer: str, record: Path | None) -> tuple[subprocess.Popen[str], str]:
    """The instant server in a child process; (process, base URL ending in /v1)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(record or "-"), answer],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, f"http://127.0.0.1:{port}/v1"


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait()


def run_rrbench(args: Sequence[str], url: str, out: Path) -> dict[str, Any]:
    """``rrbench run ARGS --base-url URL`` in a child process with a fresh cache: its judging loop's request rate
    (model calls / run.json ``stats.wall_s``), the whole process's seconds, and the child's peak RSS (``wait4``)."""
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "RRBENCH_CACHE": str(out / "cache.sqlite")}
    command = [sys.executable, "-m", "rrbench.cli", "run", *args, "--base-url", url, "--output", str(out / "runs"),
               "--quiet"]
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
by_sha = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in Path(images).iterdir()} if mode == "build" else {}
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


def run_raw(bodies: Path, url: str, concurrency: int, mode: str, images: Path | None = None) -> dict[str, Any]:
    """The raw generator in a child process over the recorded bodies (``pre`` or ``build``, see above)."""
    done = subprocess.run([sys.executable, "-c", RAW, str(bodies), url, str(concurrency), mode, str(images or "-")],
                          capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))
