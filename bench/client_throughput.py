"""HTTP client throughput: rrbench's OpenAI-compatible client against a minimal raw async load generator.

Both clients send the same pairwise RationalRewards critique requests (two sanity-task photographs each, as data
URIs) to one real server on 127.0.0.1 with the same concurrency, in the same process, in rounds made of short
alternating blocks (raw, rrbench, rrbench, raw, ...) so drift of the server or the machine cancels out. rrbench's
side is
``OpenAIHTTPBackend.chat`` on the image messages, so its data-URI and JSON encoding are part of what is
measured; the raw side posts the identical request bytes (checked), encoded once beforehand, through a plain
``httpx.AsyncClient`` and a semaphore. Each request asks for one token of small images, so the server answers
as fast as it can and client overhead is what shows. Target: rrbench reaches >= 0.95x the raw request rate.

By default it builds the tiny random-weight Qwen3-VL checkpoint and starts ``transformers serve`` on it;
``--vllm-python`` starts vLLM's CPU server instead; ``--base-url`` uses a server already running.

``--instant`` (issue 19) measures the whole ``rrbench run`` instead: GenAI-Bench pairs of 512² PNGs (a local
copy in the public schema, bench/data_memory.py) judged by ``rationalrewards-8b`` at concurrency 32 against an
instant local server (bench/_instant.py), side by side with a raw async load generator posting the very bodies
rrbench sent (recorded in a first pass, encoded beforehand), each a child process, in alternating rounds; also
rrbench's peak RSS. Target: rrbench's request rate >= 0.9x the raw generator's; peak RSS flat in the pairs.

    python bench/client_throughput.py [--requests 200] [--concurrency 16] [--rounds 3] [--json]
    python bench/client_throughput.py --instant [--pairs 500] [--size 512] [--concurrency 32] [--rounds 2]
                                      [--order fixed|both] [--data DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import gc
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rrbench import registry
from rrbench.backends._base import Message, Sampling
from rrbench.backends.openai_http import OpenAIHTTPBackend
from rrbench.models._rationalrewards_format import build_pairwise
from rrbench.types import Media

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.95
INSTANT_TARGET = 0.9  # issue 19: rrbench run / raw pre-encoded generator, instant server, 2 cores
# a RationalRewards pairwise critique, parsed as rrbench parses the real model's (Image A wins)
PAIRWISE_ANSWER = "\n".join([
    "# User Request Analysis", "A photograph as asked.", "# Detailed Judgement",
    "1. Text Faithfulness:", "## Justification: A follows the request.", "## Score A: 4", "## Score B: 2",
    "## Winner: Image A", "2. Physical and Visual Quality:", "## Justification: both are clean.", "## Score A: 3",
    "## Score B: 3", "## Winner: tie", "3. Text Rendering:", "## Justification: no text.", "## Score A: N/A",
    "## Score B: N/A", "## Winner: N/A", "# Summary: Image A is better."])
SAMPLING = Sampling(temperature=0.0, max_tokens=1)  # one token: the server is as quick as it gets
Conversation = list[dict[str, Any]]


@dataclass
class Server:
    base_url: str  # ends in /v1
    model: str
    kind: str


@dataclass
class Result:
    server: str
    requests: int
    concurrency: int
    image_size: int
    body_bytes_mean: int
    pinning: str = "none"
    raw_rps: list[float] = field(default_factory=list)
    rrbench_rps: list[float] = field(default_factory=list)
    raw_cpu_ms: list[float] = field(default_factory=list)  # client CPU per request (this process)
    rrbench_cpu_ms: list[float] = field(default_factory=list)
    pipeline_pairs_per_s: float | None = None
    pipeline_calls: int | None = None

    @property
    def ratio(self) -> float:
        return statistics.median(self.rrbench_rps) / statistics.median(self.raw_rps)

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": "client_throughput", **asdict(self), "raw_median": statistics.median(self.raw_rps),
                "rrbench_median": statistics.median(self.rrbench_rps), "ratio": self.ratio, "target": TARGET,
                "pass": self.ratio >= TARGET}


# ============================================================================================== server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(client CPUs, server CPUs): one core for the clients, the rest for the server; None where it can't be."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else None


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"server did not become ready at {url}; its log ends:\n{tail}") from None
            time.sleep(0.3)


def served_model(base_url: str) -> str:
    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as response:
        return str(json.load(response)["data"][0]["id"])


def build_checkpoint(out: Path) -> Path:
    # A subprocess keeps torch out of this process: the clients measured here should not share it.
    done = subprocess.run([sys.executable, "-m", "tests.fixtures.tiny_qwen3vl", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"building the tiny checkpoint failed:\n{done.stderr[-2000:]}")
    return out


def server_command(checkpoint: Path, port: int, vllm_python: str | None) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if vllm_python:
        env["VLLM_CPU_KVCACHE_SPACE"] = "1"  # GiB: the tiny model needs next to nothing
        return [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
                "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--enforce-eager"], env
    # One OpenMP thread: on a small machine torch's spinning worker threads fight the server's own event loop
    # and the clients, and the request rate jumps between ~2.5 and ~18/s; with one it holds steady.
    env.setdefault("OMP_NUM_THREADS", "1")
    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    return [exe, "serve", str(checkpoint), "--host", "127.0.0.1", "--port", str(port), "--log-level", "error"], env


@contextlib.contextmanager
def serve(args: argparse.Namespace, server_cpus: set[int] | None) -> Iterator[Server]:
    if args.base_url:
        url = args.base_url.rstrip("/")
        yield Server(url, args.model or served_model(url), f"given: {url}")
        return
    with tempfile.TemporaryDirectory(prefix="rrbench-client-bench-") as tmp:
        checkpoint = build_checkpoint(Path(tmp) / "tiny-qwen3vl")
        port = free_port()
        cmd, env = server_command(checkpoint, port, args.vllm_python)
        log = Path(tmp) / "server.log"
        # vLLM binds its own CPU threads, so only transformers serve is pinned.
        pin = None if server_cpus is None or args.vllm_python else functools.partial(os.sched_setaffinity, 0,
                                                                                     server_cpus)
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=pin)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", proc, log, 900 if args.vllm_python else 180)
            kind = "vLLM CPU server" if args.vllm_python else "transformers serve"
            yield Server(f"http://127.0.0.1:{port}/v1", str(checkpoint), f"{kind}, tiny Qwen3-VL, 127.0.0.1")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# ============================================================================================== payloads


def conversations(n: int, size: int) -> list[Conversation]:
    """Pairwise critique prompts over real sanity-task photos, rendered once to bytes as a dataset's files are."""
    registry.load_plugins()
    task = registry.get("task", "sanity").build(size=size, n=n)
    out = []
    for sample in task.load(None):
        a, b = (Media.from_bytes(m.read_bytes(), m.format) for m in sample.candidates)
        out.append(build_pairwise(sample.prompt, a, b, (), "t2i"))
    return out


def raw_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] != "image":
        return part
    media: Media = part["media"]
    uri = f"data:{media.mime};base64,{base64.b64encode(media.read_bytes()).decode()}"
    return {"type": "image_url", "image_url": {"url": uri}}


def raw_body(model: str, conversation: Sequence[Message]) -> bytes:
    """The OpenAI request as a plain client writes it, in httpx's own JSON form so the bytes match rrbench's."""
    messages = [{"role": m["role"], "content": [raw_part(p) for p in m["content"]]} for m in conversation]
    body = {"model": model, "messages": messages, "temperature": SAMPLING.temperature,
            "max_tokens": SAMPLING.max_tokens}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


# ============================================================================================== clients


async def run_raw(client: httpx.AsyncClient, url: str, bodies: Sequence[bytes], concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)
    headers = {"content-type": "application/json"}

    async def one(body: bytes) -> None:
        async with slots:
            try:
                response = await client.post(url, content=body, headers=headers)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # The server closed a keep-alive connection as it was reused (uvicorn drops idle ones after 5 s,
                # httpx keeps them 5 s: a race while the other client's block runs); send once more.
                response = await client.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"raw client: HTTP {response.status_code}: {response.text[:200]}")

    await asyncio.gather(*(one(b) for b in bodies))


async def run_rrbench(backend: OpenAIHTTPBackend, convs: Sequence[Conversation]) -> None:
    await asyncio.gather(*(backend.chat(c, SAMPLING) for c in convs))


Job = Callable[[slice], Awaitable[None]]  # sends the requests of one slice of the payloads


async def timed(job: Job, part: slice) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of one block."""
    gc.collect()  # a collection owed by the previous block should not land in this one
    cpu, wall = time.process_time(), time.perf_counter()
    await job(part)
    return time.perf_counter() - wall, time.process_time() - cpu


async def one_round(jobs: Sequence[tuple[str, Job]], n: int, block: int, result: Result) -> None:
    """Every payload once per client, in blocks alternating A B B A A B ...: a slowdown of the shared machine
    lasting seconds then hits both clients alike instead of one whole pass."""
    wall, cpu = dict.fromkeys(("raw", "rrbench"), 0.0), dict.fromkeys(("raw", "rrbench"), 0.0)
    for k, first in enumerate(range(0, n, block)):
        for name, job in jobs if k % 2 == 0 else jobs[::-1]:
            w, c = await timed(job, slice(first, first + block))
            wall[name] += w
            cpu[name] += c
    for name in wall:
        getattr(result, f"{name}_rps").append(n / wall[name])
        getattr(result, f"{name}_cpu_ms").append(1000 * cpu[name] / n)


async def check_identical(backend: OpenAIHTTPBackend, convs: Sequence[Conversation],
                          bodies: Sequence[bytes]) -> None:
    """The comparison is void unless rrbench sends the raw side's bytes: its body for each conversation is checked,
    then the warm-up requests go out."""
    for conv, body in zip(convs, bodies, strict=True):
        if backend._body(conv, SAMPLING) != body:
            raise SystemExit("rrbench and the raw generator send different bytes; the comparison would be void")
    await run_rrbench(backend, convs)


async def compare(server: Server, args: argparse.Namespace, result: Result) -> None:
    convs = conversations(args.requests, args.size)
    bodies = [raw_body(server.model, c) for c in convs]
    result.body_bytes_mean = sum(map(len, bodies)) // len(bodies)
    url = f"{server.base_url}/chat/completions"
    backend = OpenAIHTTPBackend([server.base_url], server.model, concurrency=args.concurrency)
    async with httpx.AsyncClient(timeout=600) as client:
        try:
            warm = min(args.warmup, len(convs))
            await check_identical(backend, convs[:warm], bodies[:warm])
            await run_raw(client, url, bodies[:warm], args.concurrency)
            await run_rrbench(backend, convs[:warm])
            jobs: list[tuple[str, Job]] = [
                ("raw", lambda part: run_raw(client, url, bodies[part], args.concurrency)),
                ("rrbench", lambda part: run_rrbench(backend, convs[part])),
            ]
            for r in range(args.rounds):
                await one_round(jobs if r % 2 == 0 else jobs[::-1], len(convs), args.block, result)
                if not args.json:
                    print(f"round {r + 1}: raw {result.raw_rps[-1]:7.2f} req/s   rrbench {result.rrbench_rps[-1]:7.2f}"
                          f" req/s   ratio {result.rrbench_rps[-1] / result.raw_rps[-1]:.3f}", flush=True)
        finally:
            await backend.close()


def pipeline(server: Server, args: argparse.Namespace) -> tuple[float, int]:
    """Pairs per second and model calls through the whole `rrbench run` path (cache off; sample log, metrics).

    Its images are the task's recipes, rendered as the runner reads them, so it is not the same workload as the
    comparison above: informative only. Every answer is one token, so none parses: the run records failures.
    """
    from rrbench.runner import Runner
    from rrbench.session import build
    from rrbench.spec import RunSpec
    from rrbench.store import NullCache, RunDir

    spec = RunSpec(task="sanity", model="rationalrewards-8b", task_args={"size": args.size, "n": args.requests},
                   model_args={"served_model": server.model, "max_tokens": SAMPLING.max_tokens,
                               "temperature": SAMPLING.temperature, "concurrency": args.concurrency})
    task, model = build(spec, {"base_urls": [server.base_url]})
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(spec, task, model, RunDir(Path(tmp) / spec.dirname()), NullCache(),
                        concurrency=args.concurrency, progress_enabled=False)
        start = time.perf_counter()
        outcome = runner.run()
        return args.requests / (time.perf_counter() - start), outcome.model_calls


# ============================================================================================== instant


def instant(args: argparse.Namespace) -> dict[str, Any]:
    """The whole ``rrbench run`` against the raw pre-encoded generator, instant server, child processes."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _instant import run_raw, run_rrbench, start_server, stop
    from data_memory import write_dataset

    with tempfile.TemporaryDirectory(prefix="rrbench-client-instant-") as tmp:
        root = Path(tmp)
        data = Path(args.data) if args.data else root / "data"
        if not args.data:
            write_dataset(data, args.pairs, args.size)
        run = ["--task", "genai-bench-t2i", "--data", str(data), "--model", "rationalrewards-8b",
               "-M", f"concurrency={args.concurrency}", "--order", args.order]
        bodies = root / "bodies"
        bodies.mkdir()
        server, url = start_server(PAIRWISE_ANSWER, bodies)  # recording pass: the bodies the raw side posts
        try:
            first = run_rrbench(run, url, root / "record")
        finally:
            stop(server)
        raw: list[dict[str, Any]] = []
        ours: list[dict[str, Any]] = []
        server, url = start_server(PAIRWISE_ANSWER, None)
        try:
            for r in range(args.rounds):  # raw, rrbench, rrbench, raw: drift of the machine cancels out
                raw.append(run_raw(bodies, url, args.concurrency, "pre"))
                ours += [run_rrbench(run, url, root / f"r{r}{k}") for k in "ab"]
                raw.append(run_raw(bodies, url, args.concurrency, "pre"))
                if not args.json:
                    print(f"round {r + 1}: raw {raw[-2]['rate']:.1f}, {raw[-1]['rate']:.1f} requests/s   rrbench "
                          f"{ours[-2]['rate']:.1f}, {ours[-1]['rate']:.1f}", flush=True)
        finally:
            stop(server)
    ratio = statistics.median(o["rate"] for o in ours) / statistics.median(r["rate"] for r in raw)
    rss = max(o["peak_rss_mb"] for o in [first, *ours])
    return {"benchmark": "client_throughput_instant", "pairs": first["counts"]["expected"], "size": args.size,
            "order": args.order,
            "concurrency": args.concurrency, "requests": first["requests"], "counts": first["counts"],
            "raw_rate": [round(r["rate"], 1) for r in raw], "rrbench_rate": [round(o["rate"], 1) for o in ours],
            "ratio": round(ratio, 3), "target": INSTANT_TARGET, "peak_rss_mb": round(rss, 1),
            "cpu_count": os.cpu_count(), "pass": ratio >= INSTANT_TARGET}


def report_instant(result: dict[str, Any]) -> None:
    print(f"{result['pairs']} GenAI-Bench pairs ({result['size']} px PNGs), order {result['order']}: "
          f"{result['requests']} requests at concurrency {result['concurrency']}, instant local server, "
          f"{result['cpu_count']} CPUs")
    print(f"raw async generator, bodies encoded beforehand: {result['raw_rate']} requests/s")
    print(f"rrbench run (rationalrewards-8b):               {result['rrbench_rate']} requests/s")
    print(f"ratio rrbench/raw (medians): {result['ratio']:.3f}   (target >= {INSTANT_TARGET})  "
          f"{'PASS' if result['pass'] else 'FAIL'}")
    print(f"peak RSS of the rrbench run: {result['peak_rss_mb']:.0f} MB")


# ============================================================================================== report


def report(result: Result) -> None:
    print(f"server: {result.server}")
    print(f"{result.requests} requests x {len(result.raw_rps)} rounds, concurrency {result.concurrency}, "
          f"{result.image_size}x{result.image_size} images, {result.body_bytes_mean} bytes per request body")
    print(f"CPU pinning: {result.pinning}")
    # The CPU a client spends per request bounds what one core could drive; it shows client cost even where
    # the server, not the client, sets the request rate.
    for name, rps, cpu in (("raw httpx", result.raw_rps, result.raw_cpu_ms),
                           ("rrbench", result.rrbench_rps, result.rrbench_cpu_ms)):
        ms = statistics.median(cpu)
        print(f"{name + ':':11s} median {statistics.median(rps):7.2f} req/s   client CPU {ms:.2f} ms/request"
              f" (one core could drive ~{1000 / ms:.0f} req/s)")
    if result.pipeline_pairs_per_s is not None:
        print(f"rrbench run pipeline: {result.pipeline_pairs_per_s:.2f} pairs/s, {result.pipeline_calls} model calls"
              " (informative, no target)")
    verdict = "PASS" if result.ratio >= TARGET else "FAIL"
    print(f"ratio rrbench/raw: {result.ratio:.3f}   (target >= {TARGET})  {verdict}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per client per round")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (16; --instant: 32)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (3; --instant: 2)")
    parser.add_argument("--block", type=int, default=None,
                        help="requests per client between switches (default: 2 x concurrency)")
    parser.add_argument("--warmup", type=int, default=32,
                        help="requests per client before the first round (rrbench's are checked byte for byte)")
    parser.add_argument("--size", type=int, default=None,
                        help="image side in pixels (64: a quick server; --instant: 512)")
    parser.add_argument("--base-url", help="use this running server (…/v1) instead of starting one")
    parser.add_argument("--model", help="model name for --base-url (default: the first of its /models)")
    parser.add_argument("--vllm-python", metavar="PATH", help="python of a vLLM venv: start its CPU server")
    parser.add_argument("--no-pin", action="store_true", help="don't pin clients to one CPU, the server to the rest")
    parser.add_argument("--pipeline", action="store_true", help="also time the full `rrbench run` path")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    instant_group = parser.add_argument_group("--instant: the whole rrbench run against an instant local server")
    instant_group.add_argument("--instant", action="store_true", help="measure `rrbench run` end to end (issue 19)")
    instant_group.add_argument("--pairs", type=int, default=500, help="GenAI-Bench pairs in the local copy")
    instant_group.add_argument("--order", choices=("fixed", "both"), default="fixed", help="judge orders per pair")
    instant_group.add_argument("--data", help="a GenAI-Bench copy written before (bench/data_memory.py's layout)")
    args = parser.parse_args(argv)
    # the two modes' defaults (issue 19's setting for --instant: 512x512 PNGs, concurrency 32)
    for name, plain, whole in (("size", 64, 512), ("concurrency", 16, 32), ("rounds", 3, 2)):
        if getattr(args, name) is None:
            setattr(args, name, whole if args.instant else plain)
    args.block = args.block or 2 * args.concurrency
    if min(args.requests, args.concurrency, args.rounds, args.block, args.warmup) < 1:
        parser.error("--requests, --concurrency, --rounds, --block and --warmup must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.instant:
        result = instant(args)
        print(json.dumps(result)) if args.json else report_instant(result)
        return 0 if result["pass"] else 1
    # Pinned, the server's speed swings less with whatever the clients do on its cores (rounds of the raw client
    # against itself spread about half as much), and both clients get the same budget: one core.
    cpus = None if args.no_pin else split_cpus()
    with serve(args, cpus[1] if cpus else None) as server:
        pinning = "none"
        if cpus:
            os.sched_setaffinity(0, cpus[0])
            started = not args.base_url and not args.vllm_python
            pinning = f"clients on CPU {min(cpus[0])}" + (f", server on CPUs {sorted(cpus[1])}" if started else "")
        result = Result(server.kind, args.requests, args.concurrency, args.size, 0, pinning)
        asyncio.run(compare(server, args, result))
        if args.pipeline:
            result.pipeline_pairs_per_s, result.pipeline_calls = pipeline(server, args)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        report(result)
    return 0 if result.ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
