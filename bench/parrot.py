"""PARROT's own cost: anchoring against a raw async load generator, and SFT steps against a bare TRL script.

(a) Anchoring. ``rrbench-train anchor --task sanity --teacher gpt-4.1 --base-url URL`` (pairwise: one request per
pair, the critic's own request with its two images, then the anchoring text) against a local teacher that answers
every request at once with one fixed, valid RationalRewards critique: a child process on asyncio streams
(HTTP/1.1 keep-alive) that reads each body and never parses it, so the server costs the same for both clients. Side
by side, a raw async load generator (a plain ``httpx.AsyncClient`` and a semaphore, at the same concurrency, no
records, no image store, no retries) loads the same task and builds the very same request bodies from
``rrbench.critique.critic_messages`` + the anchoring prompt (base64 images, compact JSON) as it sends them. Before
timing, one recorded pass of each checks that the two send the same bodies byte for byte. Each side is a child
process; rounds alternate (anchor, raw, raw, anchor, ...). A side's rate is requests / the time of its anchoring
loop (anchor: ``Anchor.run()``, which also writes the stage directory and its content-addressed images; raw: task
load to last answer), imports and set-up excluded on both sides; each child's CPU time per request is printed too.
By default the clients run on CPU 0 and the server on the other CPUs.

(b) SFT step time. The tiny random-weight Qwen3-VL (tests/fixtures/tiny_qwen3vl.py) on a small build-sft dataset
(tests/fixtures/sft_data.py: scikit-image photographs, 1-3 images per row, pairwise and pointwise, t2i and edit),
fp32 on the CPU, the same hyper-parameters on both sides (batch, steps, lr, constant schedule, no warmup, no
gradient checkpointing, no data loader workers, seed, vision tower frozen): ``rrbench-train sft`` (its real command
in a child process) against a bare script that builds TRL's ``SFTTrainer`` itself. Both get the same step timer
(a ``TrainerCallback``; for rrbench-train it is added to the trainer ``sft._trainer`` builds), so a step is the time
from one ``on_step_end`` to the next (data loading, collation, the batch check, forward, backward, optimizer,
logging); the first step (warm-up) is dropped, model loading is never timed. Repetitions alternate the order.

Targets: anchoring >= 0.95x the raw generator's request rate; median SFT step time <= 1.05x the bare script's.

GPU: one SFT step at 8B size (random weights, the paper's settings) needs a GPU; this script does not measure it
(bench/README.md says whether one was lent).

    python bench/parrot.py [--only anchor|sft] [--pairs 200] [--size 64] [--concurrency 16] [--rounds 3]
                           [--steps 10] [--batch 2] [--reps 3] [--threads 1] [--no-pin] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
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
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RATE_TARGET = 0.95
STEP_TARGET = 1.05
TEACHER, SERVED = "gpt-4.1", "gpt-4.1"
TEMPERATURE, MAX_TOKENS = 0.7, 4096  # anchor's defaults, sent by both sides
KEY = "sk-bench"
ANSWER = "\n".join([
    "# User Request Analysis", "The request names one subject in a plain setting.", "# Detailed Judgement",
    "1. Text Faithfulness:", "## Justification: Image A shows the subject as asked; Image B drifts from it.",
    "## Score A: 4", "## Score B: 2", "## Winner: Image A",
    "2. Physical and Visual Quality:", "## Justification: Image A is sharp; Image B is blurred at the edges.",
    "## Score A: 3.5", "## Score B: 2.5", "## Winner: Image A",
    "3. Text Rendering:", "## Justification: No text is asked for.", "## Score A: N/A", "## Score B: N/A",
    "## Winner: N/A",
    "# Summary: Image A is better overall: it is sharper and closer to the request.", ""])
# the hyper-parameters both SFT sides use (rrbench-train's recipe keys; the bare script maps them)
TRAIN: dict[str, Any] = {
    "learning_rate": 1e-4, "lr_scheduler_type": "constant", "warmup_fraction": 0.0, "weight_decay": 1e-6,
    "num_train_epochs": 1, "image_max_pixels": None, "gradient_checkpointing": False, "save_steps": 100_000,
    "logging_steps": 1, "dataloader_num_workers": 0, "seed": 0, "freeze_vision": True, "precision": "fp32",
    "model_dtype": "float32",
}


# --------------------------------------------------------------------------------------------------- teacher server


async def _serve(port: int, record: str | None) -> None:
    answer = json.dumps({"id": "x", "object": "chat.completion", "model": SERVED, "choices": [{
        "index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200}}).encode()
    models = json.dumps({"object": "list", "data": [{"id": SERVED, "object": "model"}]}).encode()
    served, arrivals = 0, list[float]()

    def reply(body: bytes) -> bytes:
        return (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                .encode() + body)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served, arrivals
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /bench/arrivals"):  # the arrival times so far, then a fresh list
                    writer.write(reply(json.dumps(arrivals).encode()))
                    arrivals = []
                elif head.startswith(b"GET"):
                    writer.write(reply(models))
                else:
                    served += 1
                    arrivals.append(time.perf_counter())
                    if record:
                        Path(record, f"{served:06d}.json").write_bytes(body)
                    writer.write(reply(answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def teacher(cpus: set[int] | None, record: Path | None = None) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, __file__, "--child", "serve", "--port", str(port)]
    command += ["--record", str(record)] if record else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "the teacher did not start"
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------------- anchoring sides


def warm_up(url: str, size: int) -> None:
    """Both sides, before timing: what a first request pulls in (httpx's lazy imports, the task's image rendering)."""
    import httpx
    import pybase64  # noqa: F401

    import rrbench

    async def ask() -> None:
        async with httpx.AsyncClient() as client:
            (await client.get(f"{url}/models")).raise_for_status()

    asyncio.run(ask())
    for media in next(iter(rrbench.build_task("sanity", n=1, size=size).load(None))).candidates:
        media.loaded().read_bytes()


def anchor_side(url: str, pairs: int, size: int, concurrency: int, out: Path) -> dict[str, Any]:
    """``rrbench-train anchor`` in this process: requests / the time of ``Anchor.run()``."""
    from rrbench_train.parrot import anchor

    warm_up(url, size)

    parser = argparse.ArgumentParser()
    anchor.add_arguments(parser)
    args = parser.parse_args(["--task", "sanity", "-T", f"n={pairs}", "-T", f"size={size}", "--teacher", TEACHER,
                              "--base-url", url, "-M", "max_retries=0", "-M", f"concurrency={concurrency}",
                              "--concurrency", str(concurrency), "--out", str(out)])
    stage = anchor.Anchor(args)
    start, cpu = time.perf_counter(), time.process_time()
    result = asyncio.run(stage.run())
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    counts = result["counts"]
    if counts["answered"] != pairs or counts["asked"] != pairs:
        raise SystemExit(f"anchor answered {counts['answered']} of {pairs} pairs: {counts}")
    return {"requests": counts["asked"], "wall_s": wall, "cpu_s": cpu}


def raw_body(sample: Any, anchoring: Any) -> bytes:
    """The body anchor sends for this pair: the critic's messages, the anchoring text last, images as data URIs."""
    import pybase64

    from rrbench import critique

    messages = critique.critic_messages(sample.prompt, sample.candidates, sample.source, kind="pairwise",
                                        generation="t2i")
    winner = sample.label.winner
    text = anchoring.render(preferred=f"Image {'AB'[winner]}", rejected=f"Image {'AB'[1 - winner]}")
    wire = []
    for k, message in enumerate(messages):
        content = message["content"]
        parts: Any
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}] if k == len(messages) - 1 else content
        else:
            parts = [{"type": "image_url", "image_url": {
                "url": f"data:{p['media'].mime};base64,{pybase64.b64encode(p['media'].read_bytes()).decode()}"}}
                if p["type"] == "image" else {"type": "text", "text": p["text"]} for p in content]
        if k == len(messages) - 1:
            parts = [*parts, {"type": "text", "text": "\n\n" + text}]
        wire.append({"role": message["role"], "content": parts})
    body = {"model": SERVED, "messages": wire, "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def _raw(url: str, task: Any, anchoring: Any, concurrency: int) -> int:
    import httpx

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    gate, answered = asyncio.Semaphore(concurrency), 0

    async def post(client: httpx.AsyncClient, body: bytes) -> None:
        nonlocal answered
        try:
            response = await client.post(f"{url}/chat/completions", content=body, headers=headers)
            response.raise_for_status()
            answered += bool(json.loads(response.content)["choices"][0]["message"]["content"])
        finally:
            gate.release()

    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        jobs = []
        for sample in task.load(None):
            await gate.acquire()
            jobs.append(asyncio.create_task(post(client, raw_body(sample, anchoring))))
        await asyncio.gather(*jobs)
    return answered


def raw_side(url: str, pairs: int, size: int, concurrency: int) -> dict[str, Any]:
    """The raw generator in this process: requests / the time from the task's first sample to the last answer."""
    import rrbench
    from rrbench_train.parrot.anchor import load_prompt  # reads the versioned prompt file (data, not code)

    warm_up(url, size)
    task, anchoring = rrbench.build_task("sanity", n=pairs, size=size), load_prompt("anchor-pairwise-v1")
    start, cpu = time.perf_counter(), time.process_time()
    answered = asyncio.run(_raw(url, task, anchoring, concurrency))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if answered != pairs:
        raise SystemExit(f"the raw generator got {answered} answers for {pairs} pairs")
    return {"requests": answered, "wall_s": wall, "cpu_s": cpu}


def child(args: list[str], cpus: set[int] | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One child run of this script; its last stdout line is its JSON result."""
    done = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OPENAI_API_KEY": KEY, **(env or {})},
                          preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    if done.returncode != 0:
        raise SystemExit(f"child {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def check_bodies(args: argparse.Namespace, cpus: tuple[set[int], set[int]] | None, work: Path) -> int:
    """One recorded pass of each side: the multisets of request bodies must be equal, byte for byte."""
    seen: dict[str, Counter[str]] = {}
    for side in ("anchor", "raw"):
        record = work / f"bodies-{side}"
        record.mkdir()
        with teacher(cpus[1] if cpus else None, record) as url:
            child(side_args(side, url, args, work / f"check-{side}"), cpus[0] if cpus else None)
        seen[side] = Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in record.iterdir())
        shutil.rmtree(record)
    if seen["anchor"] != seen["raw"]:
        raise SystemExit(f"the raw generator's bodies differ from anchor's ({sum(seen['anchor'].values())} vs "
                         f"{sum(seen['raw'].values())} bodies, {len(seen['anchor'] & seen['raw'])} alike)")
    return sum(seen["anchor"].values())


def side_args(side: str, url: str, args: argparse.Namespace, out: Path) -> list[str]:
    return ["--child", side, "--url", url, "--pairs", str(args.pairs), "--size", str(args.size),
            "--concurrency", str(args.concurrency), "--out", str(out)]


def steady_rate(url: str) -> float:
    """Requests/s as the server saw them arrive, after the first 10% (the client's start-up is not throughput)."""
    with urllib.request.urlopen(f"{url.removesuffix('/v1')}/bench/arrivals", timeout=10) as response:
        arrivals = json.loads(response.read())
    skip = len(arrivals) // 10
    return (len(arrivals) - skip - 1) / (arrivals[-1] - arrivals[skip])


def anchoring(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cpus = split_cpus() if not args.no_pin else None
    checked = check_bodies(args, cpus, work)
    rows: dict[str, list[dict[str, Any]]] = {"anchor": [], "raw": []}
    with teacher(cpus[1] if cpus else None) as url:
        for rnd in range(args.rounds):
            order = ("anchor", "raw") if rnd % 2 == 0 else ("raw", "anchor")
            for side in order:
                got = child(side_args(side, url, args, work / f"{side}-{rnd}"), cpus[0] if cpus else None)
                rows[side].append({**got, "steady": steady_rate(url), "loop": got["requests"] / got["wall_s"],
                                   "cpu_ms": 1000 * got["cpu_s"] / got["requests"]})
                shutil.rmtree(work / f"{side}-{rnd}", ignore_errors=True)
    result: dict[str, Any] = {
        "pairs": args.pairs, "size": args.size, "concurrency": args.concurrency, "rounds": args.rounds,
        "bodies_checked": checked,
        "pinning": f"clients {sorted(cpus[0])}, server {sorted(cpus[1])}" if cpus else "none"}
    result.update(side_by_side(rows, "anchor", "raw", ("steady", "loop", "cpu_ms"), "per_round"))
    result["pass"] = result["ratio_steady"] >= RATE_TARGET
    return result


def side_by_side(rows: dict[str, list[dict[str, Any]]], ours: str, theirs: str, keys: tuple[str, ...], per: str
                 ) -> dict[str, Any]:
    """For each key: both sides' spreads, the ratio of their medians, and the spread of the per-round ratios."""
    out: dict[str, Any] = {}
    for key in keys:
        for side in (ours, theirs):
            out[f"{side}_{key}"] = spread([r[key] for r in rows[side]])
        out[f"ratio_{key}"] = round(out[f"{ours}_{key}"]["median"] / out[f"{theirs}_{key}"]["median"], 3)
        out[f"ratio_{key}_{per}"] = spread([a[key] / b[key] for a, b in zip(rows[ours], rows[theirs], strict=True)])
    return out


def split_cpus() -> tuple[set[int], set[int]] | None:
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else None


# --------------------------------------------------------------------------------------------------- SFT sides


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """The wall and CPU clocks at each optimizer step's end; a step is the interval between two ends."""

        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            self.ends = [(time.perf_counter(), time.process_time())]

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.ends.append((time.perf_counter(), time.process_time()))

    return StepTimer()


def steps_of(timer: Any) -> dict[str, list[float]]:
    """Each step's wall and CPU seconds; the first step (warm-up: allocations, first collation) is dropped."""
    pairs = list(zip(timer.ends, timer.ends[1:], strict=False))[1:]
    return {"wall": [b[0] - a[0] for a, b in pairs], "cpu": [b[1] - a[1] for a, b in pairs]}


def sft_rrbench_side(model: Path, data: Path, config: Path, out: Path) -> dict[str, Any]:
    """The real ``rrbench-train sft`` command in this process, with the step timer added to its trainer."""
    from rrbench_train import cli
    from rrbench_train.parrot import sft

    timer, build = step_timer(), sft._trainer

    def timed(*args: Any, **kwargs: Any) -> Any:
        trainer = build(*args, **kwargs)
        trainer.add_callback(timer)
        return trainer

    sft._trainer = timed
    code = cli.main(["sft", "--data", str(data), "--model", str(model), "--config", str(config),
                     "--output-dir", str(out), "--no-resume"])
    if code != 0:
        raise SystemExit(f"rrbench-train sft exited {code}")
    stage = json.loads((out / "stage.json").read_text())
    return {"steps": steps_of(timer), "global_step": stage["counts"]["global_step"],
            "batches_checked": stage["counts"]["batches_checked"],
            "trainable": stage["counts"]["trainable_parameters"], "peak_gpu_mb": peak_gpu_mb()}


def peak_gpu_mb() -> float | None:
    """Peak GPU memory this process allocated (torch's allocator), None on the CPU."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def sft_trl_side(model_dir: Path, data: Path, steps: int, batch: int, out: Path, recipe: dict[str, Any]
                 ) -> dict[str, Any]:
    """A bare TRL script: the processor, the model (vision tower frozen), the dataset, SFTConfig, SFTTrainer."""
    import datasets
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    cuda, bf16 = torch.cuda.is_available(), recipe["precision"] == "bf16"
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, recipe["model_dtype"]))
    for parameter in model.model.visual.parameters():
        parameter.requires_grad_(False)
    config = SFTConfig(
        output_dir=str(out), max_length=None, completion_only_loss=True, use_cpu=not cuda, report_to="none",
        bf16=bf16, fp16=False,  # said explicitly: SFTConfig's default bf16=True would autocast even on the CPU
        learning_rate=TRAIN["learning_rate"], lr_scheduler_type=TRAIN["lr_scheduler_type"], warmup_steps=0,
        weight_decay=TRAIN["weight_decay"], max_steps=steps, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, gradient_checkpointing=recipe["gradient_checkpointing"], save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0, seed=TRAIN["seed"], data_seed=TRAIN["seed"])
    timer = step_timer()
    trainer = SFTTrainer(model=model, args=config, train_dataset=datasets.load_from_disk(str(data)),
                         processing_class=processor, callbacks=[timer])
    trainer.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"steps": steps_of(timer), "global_step": trainer.state.global_step, "trainable": trainable,
            "peak_gpu_mb": peak_gpu_mb()}


# --model-size 8b (bench/gpu_check.sh on a GPU): Qwen3-VL-8B's size, random bf16 weights, gradient checkpointing as
# the paper; bf16 weights and optimizer state because the paper's fp32 master weights (8B x 16 bytes with Adam) do
# not fit one GPU.
TRAIN_8B = {**TRAIN, "precision": "bf16", "model_dtype": "bfloat16", "gradient_checkpointing": True}


def sft_inputs(work: Path, rows: int, model_size: str = "tiny") -> tuple[Path, Path]:
    """The tiny (or 8B-size) Qwen3-VL and a build-sft dataset of ``rows`` rows (every fifth record filtered out)."""
    sys.path.insert(0, str(ROOT))
    from rrbench_train import cli
    from tests.fixtures.sft_data import write_stages
    from tests.fixtures.tiny_qwen3vl import build

    if model_size == "8b":
        from bench.gpu_configs import build_qwen3vl_8b

        model = build_qwen3vl_8b(work / "qwen3vl-8b", weights=True)
    else:
        model = build(work / "tiny-qwen3vl")
    _, filtered = write_stages(work / "stages", rows * 5 // 4 + 1)
    with contextlib.redirect_stdout(sys.stderr):  # build-sft's summary line would break --json
        built_ok = cli.main(["build-sft", "--from", str(filtered)]) == 0
    if not built_ok:
        raise SystemExit("build-sft failed")
    (built,) = (work / "stages").glob("build-sft__*")
    return model, built / "dataset"


def sft_steps(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import yaml

    model, data = sft_inputs(work, args.rows, args.model_size)
    config = work / "recipe.yaml"
    train = TRAIN_8B if args.model_size == "8b" else TRAIN
    config.write_text(yaml.safe_dump({**train, "max_steps": args.steps, "effective_batch_size": args.batch,
                                      "per_device_train_batch_size": args.batch}))
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    common = ["--model-dir", str(model), "--data", str(data), "--steps", str(args.steps), "--batch",
              str(args.batch), "--threads", str(args.threads), "--model-size", args.model_size]
    rows: dict[str, list[dict[str, Any]]] = {"rrbench": [], "trl": []}
    for rep in range(args.reps):
        order = ("rrbench", "trl") if rep % 2 == 0 else ("trl", "rrbench")
        for side in order:
            out = work / f"sft-{side}-{rep}"
            extra = ["--config", str(config)] if side == "rrbench" else []
            got = child(["--child", f"sft-{side}", *common, *extra, "--out", str(out)], None, env)
            if got["global_step"] != args.steps:
                raise SystemExit(f"{side} ran {got['global_step']} of {args.steps} steps")
            rows[side].append({**got, "median_step_s": statistics.median(got["steps"]["wall"]),
                               "mean_step_s": statistics.fmean(got["steps"]["wall"]),
                               "median_cpu_s": statistics.median(got["steps"]["cpu"])})
            shutil.rmtree(out, ignore_errors=True)
    if len({r["trainable"] for side in rows.values() for r in side}) != 1:
        raise SystemExit(f"the two sides train different parameters: "
                         f"{[(s, r['trainable']) for s, v in rows.items() for r in v]}")
    result: dict[str, Any] = {"steps": args.steps, "batch": args.batch, "rows": args.rows, "reps": args.reps,
                              "threads": args.threads, "trainable_parameters": rows["trl"][0]["trainable"],
                              "batches_checked": rows["rrbench"][0]["batches_checked"], "model_size": args.model_size,
                              "precision": train["precision"]}
    for side in ("rrbench", "trl"):
        peaks = [r["peak_gpu_mb"] for r in rows[side] if r.get("peak_gpu_mb") is not None]
        result[f"{side}_peak_gpu_mb"] = max(peaks) if peaks else None
    result.update(side_by_side(rows, "rrbench", "trl", ("median_step_s", "mean_step_s", "median_cpu_s"), "per_rep"))
    result["pass"] = result["ratio_median_step_s"] <= STEP_TARGET
    return result


# --------------------------------------------------------------------------------------------------- main


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def show(result: dict[str, Any]) -> None:
    a = result.get("anchoring")
    if a:
        print(f"(a) anchoring: {a['pairs']} sanity pairs ({a['size']} px), concurrency {a['concurrency']}, "
              f"{a['rounds']} rounds alternating, instant local teacher; {a['bodies_checked']} request bodies "
              f"checked equal byte for byte; CPU pinning: {a['pinning']}")
        print("  side                  steady requests/s (server)   loop requests/s (client)   CPU ms/request")
        for side, label in (("anchor", "rrbench-train anchor"), ("raw", "raw httpx generator")):
            cells = [a[f"{side}_{key}"] for key in ("steady", "loop", "cpu_ms")]
            print(f"  {label:<21} " + "   ".join(f"{c['median']:7.1f} ({c['min']:.1f}-{c['max']:.1f})".ljust(24)
                                                   if k < 2 else f"{c['median']:.2f} ({c['min']:.2f}-{c['max']:.2f})"
                                                   for k, c in enumerate(cells)))
        for key, what in (("steady", "steady rate"), ("loop", "loop rate (start-up included)"),
                          ("cpu_ms", "CPU per request")):
            p = a[f"ratio_{key}_per_round"]
            line = f"  anchor/raw, {what}: {a[f'ratio_{key}']:.3f}x (per round {p['min']:.3f}-{p['max']:.3f})"
            if key == "steady":
                line += f", target >= {RATE_TARGET}: {'PASS' if a['pass'] else 'FAIL'}"
            print(line)
    s = result.get("sft")
    if s:
        print(f"(b) SFT step time: tiny Qwen3-VL, fp32 CPU, {s['threads']} thread(s), batch {s['batch']}, "
              f"{s['steps']} steps (first dropped), {s['rows']}-row build-sft dataset, {s['reps']} repetitions "
              f"alternating; {s['trainable_parameters']:,} trainable parameters on both sides (vision frozen); "
              f"rrbench-train checked {s['batches_checked']} batches")
        print("  side               median step (ms)        mean step (ms)          median step CPU (ms)")
        for side, label in (("rrbench", "rrbench-train sft"), ("trl", "bare TRL script")):
            cells = [s[f"{side}_{key}"] for key in ("median_step_s", "mean_step_s", "median_cpu_s")]
            print(f"  {label:<18} " + "  ".join(f"{1000 * c['median']:7.1f} ({1000 * c['min']:.1f}-"
                                                 f"{1000 * c['max']:.1f})".ljust(22) for c in cells))
        for key, what in (("median_step_s", "median step"), ("mean_step_s", "mean step"),
                          ("median_cpu_s", "median step CPU")):
            p = s[f"ratio_{key}_per_rep"]
            line = (f"  rrbench-train/TRL, {what}: {s[f'ratio_{key}']:.3f}x (per repetition {p['min']:.3f}-"
                    f"{p['max']:.3f})")
            if key == "median_step_s":
                line += f", target <= {STEP_TARGET}: {'PASS' if s['pass'] else 'FAIL'}"
            print(line)
    print(f"(c) 8B SFT step on a GPU (random weights, the paper's settings): {result['gpu']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--only", choices=("anchor", "sft"), help="run one part only")
    p.add_argument("--pairs", type=int, default=200, help="sanity pairs anchored per round (one request each)")
    p.add_argument("--size", type=int, default=64, help="sanity image size in pixels")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight, both anchoring sides")
    p.add_argument("--rounds", type=int, default=3, help="anchoring rounds (each side once per round)")
    p.add_argument("--no-pin", action="store_true", help="don't pin clients to CPU 0 and the server to the rest")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per SFT run")
    p.add_argument("--batch", type=int, default=2, help="per-device batch (no accumulation)")
    p.add_argument("--rows", type=int, default=24, help="rows of the SFT dataset")
    p.add_argument("--reps", type=int, default=3, help="SFT repetitions (each side once per repetition)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each SFT process")
    p.add_argument("--model-size", choices=("tiny", "8b"), default="tiny",
                   help="SFT model: the tiny Qwen3-VL, or Qwen3-VL-8B's size with random weights (a GPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    # internal: this script's child processes
    p.add_argument("--child", help=argparse.SUPPRESS)
    for name in ("--url", "--out", "--model-dir", "--data", "--config"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--record", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_child(args: argparse.Namespace) -> int:
    if args.child == "serve":
        asyncio.run(_serve(args.port, args.record))
        return 0
    if args.child == "anchor":
        result = anchor_side(args.url, args.pairs, args.size, args.concurrency, Path(args.out))
    elif args.child == "raw":
        result = raw_side(args.url, args.pairs, args.size, args.concurrency)
    else:
        import torch

        torch.set_num_threads(args.threads)
        if args.child == "sft-rrbench":
            result = sft_rrbench_side(Path(args.model_dir), Path(args.data), Path(args.config), Path(args.out))
        else:
            result = sft_trl_side(Path(args.model_dir), Path(args.data), args.steps, args.batch, Path(args.out),
                                  TRAIN_8B if args.model_size == "8b" else TRAIN)
    print(json.dumps(result))
    return 0


def gpu_note() -> str:
    try:
        import torch
    except ImportError:
        return "not measured (no torch)"
    if torch.cuda.is_available():
        return f"not measured by this script (a GPU is present: {torch.cuda.get_device_name(0)})"
    return "not measured: no GPU was lent to this session"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rrbench-parrot-bench-") as tmp:
        if args.only in (None, "anchor"):
            result["anchoring"] = anchoring(args, Path(tmp))
        if args.only in (None, "sft"):
            result["sft"] = sft_steps(args, Path(tmp))
    result["gpu"] = gpu_note()
    result["pass"] = all(part["pass"] for part in (result.get("anchoring"), result.get("sft")) if part)
    if args.json:
        print(json.dumps(result))
    else:
        show(result)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
