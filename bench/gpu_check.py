"""The parts of bench/gpu_check.sh: each runs one bench script (or the critic check here) and writes its table row.

    python bench/gpu_check.py parts --mode full|smoke          # "name timeout_s" per line, for the shell script
    python bench/gpu_check.py run PART --mode M --out FILE     # one part -> FILE (JSON row)
    python bench/gpu_check.py table DIR --mode M               # every part's row in one table; exit 1 if any failed

Every figure is a ratio against a baseline measured in the same run (rrbench against the raw library loop, or the
model against the card's matmul rate). Full mode builds every model at its released size with random weights
(bench/gpu_configs.py), on the GPU; smoke mode runs the same code paths on the CPU with the tiny test models.
Each bench script is run as a child with ``--json``; a bench that misses its own target still gives its numbers
(its exit code is not this script's business: the table shows the ratio beside the target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
FAILED, SKIPPED = "FAILED", "skipped"
PAPER_CRITIC_S = 0.4  # the RationalRewards paper's seconds per critique of an 8B critic


@dataclass
class Row:
    figure: str
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    unit: str = ""
    baseline_name: str = ""
    target: str = ""
    memory: str = ""
    note: str = ""
    status: str = "ok"  # ok | FAILED | skipped
    reason: str = ""


class PartError(Exception):
    """A part could not produce its figure; the message is the one-line reason in its row."""


# ------------------------------------------------------------------------------------------------ helpers


def last_json(stdout: str) -> dict[str, Any]:
    """The last JSON object a bench printed (one line, or indented over several)."""
    lines = stdout.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                return dict(json.loads("\n".join(lines[start:])))
    raise PartError("the bench printed no JSON result")


class GpuMemory:
    """Peak device memory in use while a part runs (nvidia-smi every 0.5 s): covers child processes and vLLM."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                self.peak_mb = max([self.peak_mb, *(float(x) for x in out.split())])

    def __enter__(self) -> GpuMemory:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def bench(script: str, args: list[str], timeout_s: float) -> tuple[dict[str, Any], float]:
    """Run bench/SCRIPT with ``--json``; its result and its peak RSS in MB (wait4: the child and what it waited for)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        # a session of its own, killed as a whole: rrbench's children finish their work on SIGTERM, and a bench's
        # grandchildren must not outlive its timeout
        proc = subprocess.Popen([sys.executable, str(BENCH / script), *args, "--json"], cwd=ROOT, env=env,
                                stdout=out, stderr=err, text=True, start_new_session=True)
        fired = threading.Event()

        def out_of_time() -> None:
            fired.set()
            kill_group(proc.pid)

        timer = threading.Timer(timeout_s, out_of_time)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            kill_group(proc.pid)
        if fired.is_set():
            raise PartError(f"{script} timed out after {timeout_s:.0f} s")
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    sys.stderr.write(stderr[-20000:])
    try:
        return last_json(stdout), usage.ru_maxrss / 1024
    except PartError:
        tail = [line for line in stderr.strip().splitlines() if line.strip()]
        raise PartError(f"{script} exited {proc.returncode}: {tail[-1][:160] if tail else 'no output'}") from None


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# ------------------------------------------------------------------------------------------------ parts


def clip_part(smoke: bool, timeout_s: float) -> Row:
    args = (["--device", "cpu", "--dtype", "float32", "--batch", "2", "--vision-layers", "1", "--text-layers", "1",
             "--iters", "2", "--matmul-n", "256"] if smoke else ["--device", "cuda", "--dtype", "bfloat16"])
    r, _ = bench("clip_throughput.py", args, timeout_s)
    return Row("scalar RM (PickScore CLIP-H) images/s", r["images_per_s"], r["matmul_bound_images_per_s"],
               r["ratio"], "images/s", "matmul-bound", "none (< 0.5 at batch 64: look)",
               note=f"{r['device']}, {r['dtype']}, batch {r['batch']}, matmul {r['matmul_tflops']:.1f} TFLOP/s")


def generation_part(smoke: bool, timeout_s: float) -> Row:
    args = (["--images", "4", "--rounds", "1", "--size", "32", "--steps", "2"] if smoke else
            ["--pipeline", "flux-dev", "--device", "cuda", "--dtype", "bfloat16", "--images", "6", "--rounds", "1",
             "--size", "1024", "--steps", "12"])
    with GpuMemory() as gpu:
        r, rss = bench("generation.py", ["--only", "loops", *args], timeout_s)
    return Row("generation images/s, rrbench generate vs raw diffusers (FLUX.1-dev size)" if not smoke else
               "generation images/s, rrbench generate vs raw diffusers (tiny Flux)", r["rate_rrbench"],
               r["rate_raw"], r["loop_ratio"], "images/s", "raw FluxPipeline loop", ">= 0.95",
               memory(gpu, rss), f"{r['images']} images per loop, same bytes: {r['same_bytes']}")


def sft_part(smoke: bool, timeout_s: float) -> Row:
    args = (["--steps", "3", "--batch", "1", "--rows", "8", "--reps", "1"] if smoke else
            ["--model-size", "8b", "--steps", "4", "--batch", "1", "--rows", "8", "--reps", "1"])
    with GpuMemory() as gpu:
        r, rss = bench("parrot.py", ["--only", "sft", *args], timeout_s)
    s = r["sft"]
    value, base = s["rrbench_median_step_s"]["median"], s["trl_median_step_s"]["median"]
    mem = memory(gpu, rss)
    if s.get("rrbench_peak_gpu_mb") is not None:
        mem = f"torch peak {s['rrbench_peak_gpu_mb']:.0f} MB (TRL {s['trl_peak_gpu_mb']:.0f} MB)"
    return Row(f"SFT step, rrbench-train sft vs bare TRL ({'tiny' if smoke else '8B-size'} Qwen3-VL)", value, base,
               s["ratio_median_step_s"], "s/step", "bare TRL SFTTrainer", "<= 1.05", mem,
               f"{s['precision']}, batch {s['batch']}, {s['steps']} steps (first dropped), "
               f"{s['trainable_parameters']:,} trainable")


def nft_part(smoke: bool, timeout_s: float) -> Row:
    args = ["--reps", "1", "--steps-per-rep", "1", "--micro", "1", "--batch", "2", "--steps", "2", "--size", "32",
            "--latency", "0.0"]
    if not smoke:
        help_text = subprocess.run([sys.executable, str(BENCH / "rl.py"), "--help"], capture_output=True, text=True,
                                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
        if "--pipeline" not in help_text:
            raise PartError("bench/rl.py has no full-size mode yet (needs --pipeline flux-dev --device cuda --dtype "
                            "bfloat16, as bench/generation.py)")
        args = ["--pipeline", "flux-dev", "--device", "cuda", "--dtype", "bfloat16", "--reps", "1",
                "--steps-per-rep", "2", "--micro", "1", "--batch", "4", "--steps", "8", "--size", "512",
                "--latency", "0.0"]
    with GpuMemory() as gpu:
        r, rss = bench("rl.py", args, timeout_s)
    t = r["trainer"]
    if not t.get("measured"):
        raise PartError(f"bench/rl.py measured no trainer step: {t.get('why', '?')[:160]}")
    return Row(f"NFT step, rrbench-train rl vs bare diffusers ({'tiny' if smoke else 'FLUX.1-dev-size'} Flux, LoRA)",
               t["median_step_s"]["instant"], t["bare_step_s"]["bare+nft"], t["overhead"]["bare+nft"], "s/step",
               "bare sampling + the same passes (old, reference, LoRA fwd/bwd)", "none", memory(gpu, rss),
               f"instant reward; with the critic: {t['ratio']:.2f}x; against sampling + LoRA fwd/bwd alone: "
               f"{t['overhead']['bare']:.2f}x")


def memory(gpu: GpuMemory, rss_mb: float) -> str:
    return f"GPU peak {gpu.peak_mb:.0f} MB" if gpu.peak_mb else f"peak RSS {rss_mb:.0f} MB"


# ------------------------------------------------------------------------------------------------ critic (vLLM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vllm_python(smoke: bool) -> str:
    """RRBENCH_VLLM_PYTHON, or this Python if it imports vllm (a GPU machine's environment)."""
    python = os.environ.get("RRBENCH_VLLM_PYTHON")
    if python:
        if not Path(python).exists():
            raise PartError(f"RRBENCH_VLLM_PYTHON={python} does not exist")
        return python
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        if subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True, timeout=120).returncode == 0:
            return sys.executable
    if smoke:
        raise SkipPart("RRBENCH_VLLM_PYTHON is not set (scripts/setup-vllm-cpu.sh builds vLLM's CPU build)")
    raise PartError("no vLLM: install it or set RRBENCH_VLLM_PYTHON")


class SkipPart(Exception):
    """Smoke mode only: the part cannot run on this machine; the message says why."""


@contextlib.contextmanager
def vllm_server(python: str, model: Path, smoke: bool, log: Path) -> Iterator[str]:
    port = free_port()
    flags = (["--max-model-len", "1024", "--enforce-eager"] if smoke else
             ["--max-model-len", "8192", "--load-format", "dummy", "--gpu-memory-utilization", "0.85",
              "--limit-mm-per-prompt", '{"image": 1}'])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("w") as sink:
        proc = subprocess.Popen([python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                                 "--served-model-name", "critic", "--host", "127.0.0.1", "--port", str(port),
                                 "--seed", "0", *flags], stdout=sink, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while True:
                if proc.poll() is not None:
                    tail = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
                    raise PartError(f"vLLM exited {proc.returncode}: {tail[-1][:160] if tail else ''}")
                with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
                if time.monotonic() > deadline:
                    raise PartError("vLLM did not become healthy in 600 s")
                time.sleep(1)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)  # well inside the shell's 10 s grace before its SIGKILL
            kill_group(proc.pid)  # its engine processes too
            proc.wait()


def critic_conversations(n: int, smoke: bool) -> list[list[dict[str, Any]]]:
    """Pointwise RationalRewards critiques of sanity-gen-size photographs (full); a short text request (smoke: the
    CPU build serves a text-only model, see tests/test_vllm.py)."""
    import rrbench
    from rrbench import critique

    if smoke:
        return [[{"role": "user", "content": f"score the image {i}: a cat photo with noise"}] for i in range(n)]
    task = rrbench.build_task("sanity", n=n, size=512)
    return [critique.critic_messages(s.prompt, s.candidates[:1], s.source, kind="pointwise", generation="t2i")
            for s in task.load(None)]


async def _critic_rates(url: str, smoke: bool, n: int, concurrency: int, max_tokens: int, rounds: int
                        ) -> dict[str, list[float]]:
    import httpx

    from rrbench.backends._base import Sampling
    from rrbench.backends.openai_http import OpenAIHTTPBackend

    sampling = Sampling(temperature=0.0, max_tokens=max_tokens, seed=0)
    backend = OpenAIHTTPBackend([url], "critic", concurrency=concurrency, max_retries=0)
    await backend.start()
    convs = critic_conversations(n, smoke)
    bodies = [backend._body(c, sampling) for c in convs]  # the very bytes rrbench sends, encoded beforehand

    async def rrbench_side(count: int = n) -> int:
        done = await asyncio.gather(*(backend.chat(c, sampling) for c in convs[:count]))
        return sum(int(c.usage.get("completion_tokens", 0)) for c in done)

    async def raw_side(count: int = n) -> int:
        gate = asyncio.Semaphore(concurrency)

        async def one(body: bytes) -> int:
            async with gate:
                response = await client.post(f"{url}/chat/completions", content=body,
                                             headers={"Content-Type": "application/json"})
                response.raise_for_status()
                return int(response.json()["usage"]["completion_tokens"])

        return sum(await asyncio.gather(*(one(b) for b in bodies[:count])))

    rates: dict[str, list[float]] = {"rrbench": [], "raw": []}
    sides: dict[str, Callable[[], Any]] = {"rrbench": rrbench_side, "raw": raw_side}
    limits = httpx.Limits(max_connections=2 * concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600.0, limits=limits) as client:
        try:
            await raw_side(4)  # warm-up: the server's first batches, both clients' connections and imports
            await rrbench_side(4)
            for order in (["rrbench", "raw"], ["raw", "rrbench"]) * rounds:
                for side in order:
                    start = time.perf_counter()
                    tokens = await sides[side]()
                    rates[side].append(tokens / (time.perf_counter() - start))
        finally:
            await backend.close()
    return rates


def critic_part(smoke: bool, timeout_s: float) -> Row:
    python = vllm_python(smoke)
    n, concurrency, max_tokens, rounds = (8, 4, 16, 1) if smoke else (64, 32, 256, 1)
    with tempfile.TemporaryDirectory(prefix="rrbench-gpu-critic-") as tmp:
        work = Path(tmp)
        if smoke:
            from tests.fixtures.tiny_qwen3vl import build_text

            model = build_text(work / "tiny-qwen3")
        else:
            from bench.gpu_configs import build_qwen3vl_8b

            model = build_qwen3vl_8b(work / "qwen3vl-8b", weights=False)
        log = Path(os.environ.get("GPU_CHECK_DIR", tmp)) / "vllm-server.log"
        with GpuMemory() as gpu, vllm_server(python, model, smoke, log) as url:
            rates = asyncio.run(_critic_rates(url, smoke, n, concurrency, max_tokens, rounds))
    rr, raw = statistics.median(rates["rrbench"]), statistics.median(rates["raw"])
    per_image = max_tokens * concurrency / rr  # seconds one critique takes with `concurrency` in flight
    return Row(f"critic output tokens/s, vLLM ({'tiny text-only Qwen3, CPU build' if smoke else 'Qwen3-VL-8B size'})",
               rr, raw, rr / raw, "tokens/s", "raw httpx, same bodies", ">= 0.95",
               f"GPU peak {gpu.peak_mb:.0f} MB" if gpu.peak_mb else "",
               f"{n} critiques x {max_tokens} tokens at concurrency {concurrency}; ~{per_image:.2f} s per critique "
               f"(paper ~{PAPER_CRITIC_S} s)")


# ------------------------------------------------------------------------------------------------ table

PARTS: dict[str, tuple[Callable[[bool, float], Row], int, int]] = {  # name: (part, full timeout, smoke timeout)
    "clip": (clip_part, 40, 150),
    "critic": (critic_part, 140, 150),
    "generation": (generation_part, 120, 150),
    "sft": (sft_part, 120, 150),
    "nft": (nft_part, 60, 150),
}
ORDER = tuple(PARTS)


def limit_s(name: str, smoke: bool) -> int:
    """The part's timeout; GPU_CHECK_TIMEOUT_S overrides every part's (the test of the timeout path uses it)."""
    _, full_s, smoke_s = PARTS[name]
    return int(os.environ.get("GPU_CHECK_TIMEOUT_S") or (smoke_s if smoke else full_s))


def run_part(name: str, smoke: bool, out: Path) -> int:
    part = PARTS[name][0]
    limit = max(1, limit_s(name, smoke) - 5)  # the shell's timeout is the hard stop; end the bench before it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop vLLM
    try:
        row = part(smoke, limit)
        if not finite(row.value, row.baseline, row.ratio):
            row.status, row.reason = FAILED, f"not a finite number: {row.value}, {row.baseline}, {row.ratio}"
    except SkipPart as exc:
        row = Row(name, status=SKIPPED, reason=str(exc)) if smoke else Row(name, status=FAILED, reason=str(exc))
    except Exception as exc:  # the row says why; the other parts go on
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        row = Row(name, status=FAILED, reason=f"{type(exc).__name__}: {first}")
    out.write_text(json.dumps(asdict(row)))
    return 0 if row.status != FAILED else 1


def load_row(name: str, folder: Path, smoke: bool) -> Row:
    path = folder / f"{name}.json"
    if path.exists():
        return Row(**json.loads(path.read_text()))
    timed_out = (folder / f"{name}.timeout").exists()
    reason = f"timed out after {limit_s(name, smoke)} s" if timed_out else "no result (crashed)"
    return Row(name, status=FAILED, reason=reason)


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table(folder: Path, smoke: bool, names: tuple[str, ...] = ORDER) -> tuple[str, bool]:
    rows = [load_row(name, folder, smoke) for name in names]
    header = ("part", "figure", "rrbench", "baseline", "ratio", "target", "memory", "notes")
    lines = []
    for name, r in zip(names, rows, strict=True):
        if r.status != "ok":
            lines.append((name, r.figure if r.figure != name else "", r.status, "", "", "", "", r.reason))
        else:
            lines.append((name, r.figure, f"{fmt(r.value)} {r.unit}", f"{fmt(r.baseline)} ({r.baseline_name})",
                          fmt(r.ratio), r.target, r.memory, r.note))
    widths = [max(len(c) for c in col) for col in zip(header, *lines, strict=True)]
    text = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [header, *lines]]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text), all(r.status != FAILED for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", choices=("parts", "run", "table"))
    parser.add_argument("target", nargs="?", help="run: the part; table: the folder of rows")
    parser.add_argument("--mode", choices=("full", "smoke"), default="full")
    parser.add_argument("--out", type=Path, help="run: where the row goes")
    parser.add_argument("--only", help="table: the parts that ran (space-separated; default all)")
    args = parser.parse_args()
    smoke = args.mode == "smoke"
    sys.path.insert(0, str(ROOT))
    if args.command == "parts":
        print("\n".join(f"{name} {limit_s(name, smoke)}" for name in ORDER))
        return 0
    if args.command == "run":
        return run_part(args.target, smoke, args.out)
    text, ok = table(Path(args.target), smoke, tuple(args.only.split()) if args.only else ORDER)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
