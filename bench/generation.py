"""Generation: rrbench's loop against a raw diffusers loop on the same tiny Flux pipeline, and Ray sharding.

Three figures, each measured side by side in one run, every loop in a fresh process of its own:

(a) images/s of ``rrbench generate`` (the CLI in-process: sanity-gen prompts, ``flux-dev`` through GeneratorPool and
    GenerateStep, the content-addressed image store, the sample log) over a raw loop that calls ``FluxPipeline``
    with the same settings and seeds and saves each PNG. The rate is the steady state, from the first image written
    to the last (file times), so the interpreter's and the pipeline's start-up are left out; both start-ups are
    printed beside it, and so is the CPU time per image. Rounds alternate (rrbench, raw, raw, rrbench, ...) so that
    drift cancels, and both loops run with the same number of torch threads (``--threads``, default 1: on a shared
    2-core machine two OpenMP threads that wait on each other make either loop several times slower, at random).
    The raw loop's bytes are checked to equal rrbench's, so both did the same work. Target: >= 0.95x.
(b) peak RSS of rrbench's process beyond the raw loop's (``ru_maxrss`` of each). Target: < 200 MB.
(c) ``RayGeneratorPool`` with 2 single-thread actors against 1 (``torch.set_num_threads(1)`` in each), on one local
    Ray (2 CPUs); each time runs from the pool's creation (actors start, load the pipeline) to the last image, so
    start-up is in the figure and the workload amortises it (an untimed pool first pays Ray's one-time costs).
    Target: >= 1.6x. Printed beside it: the same speed-up after start-up, and the machine's own ceiling, two plain
    processes running the raw loop side by side against one (a VM's two vCPUs may give far less than 2x).

The pipeline is tests/tiny_diffusers.py's random-weight Flux, built once into a temporary folder.

    python bench/generation.py [--images 96] [--size 128] [--steps 8] [--rounds 3] [--threads 1]
                               [--ray-images 192] [--only loops|ray] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOOP_RATIO_TARGET = 0.95
RSS_TARGET_MB = 200.0
RAY_SPEEDUP_TARGET = 1.6
TASK = "sanity-gen"  # its prompts are plain English scenes; any text works for a random-weight Flux
IMAGES_PER_PROMPT = 2


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def steady_rate(times: list[float]) -> float:
    """Images per second between the first image written and the last (the first image's warm-up left out)."""
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0])


def generator_args(model: Path, size: int, steps: int) -> list[str]:
    return [f"path={model}", f"steps={steps}", f"width={size}", f"height={size}"]


def placement(job: dict[str, Any]) -> tuple[str, str]:
    """(device, dtype) of both loops: the CPU in fp32 unless the job names others (``--device``, ``--dtype``)."""
    return job.get("device", "cpu"), job.get("dtype", "float32")


# ------------------------------------------------------------------------------------------------ children


def child_rrbench(job: dict[str, Any]) -> dict[str, Any]:
    """``rrbench generate`` in this process; image times from the files the image store wrote."""
    import torch
    from diffusers import FluxPipeline  # noqa: F401  (imported before the clock starts, as in the raw loop)

    from rrbench.cli import main as rrbench_main

    torch.set_num_threads(job["threads"])  # process-wide: the generator's worker thread runs with it too
    started, cpu = time.perf_counter(), cpu_s()
    args = ["generate", "--task", TASK, "--generator", "flux-dev", "-T", f"images_per_prompt={IMAGES_PER_PROMPT}",
            "-T", f"n={job['prompts']}", "--output", job["out"], "--quiet", "--no-resume"]
    device, dtype = placement(job)
    for item in [*generator_args(Path(job["model"]), job["size"], job["steps"]), f"device={device}",
                 f"dtype={dtype}"]:
        args += ["-G", item]
    code = rrbench_main(args)
    wall, cpu = time.perf_counter() - started, cpu_s() - cpu
    run_dir = next(Path(job["out"]).glob("*/images")).parent
    entries = [json.loads(line) for line in (run_dir / "images" / "index.jsonl").read_text().splitlines()]
    files = {f"{e['id']}/{e['index']}": str(run_dir / e["path"]) for e in entries}
    times = [os.stat(p).st_mtime for p in files.values()]
    return {"exit": code, "wall_s": wall, "cpu_s": cpu, "files": files, "times": times, "peak_rss_mb": peak_rss_mb()}


def child_raw(job: dict[str, Any]) -> dict[str, Any]:
    """The loop a user would write: one FluxPipeline call per image with its own CPU generator, then save the PNG."""
    import torch
    from diffusers import FluxPipeline

    torch.set_num_threads(job["threads"])
    started, cpu = time.perf_counter(), cpu_s()
    device, dtype = placement(job)
    pipe = FluxPipeline.from_pretrained(job["model"], torch_dtype=getattr(torch, dtype), local_files_only=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    out = Path(job["out"])
    files, times = {}, []
    for sample_id, index, seed, prompt in job["items"]:
        generator = torch.Generator("cpu").manual_seed(seed)
        image = pipe(prompt=prompt, height=job["size"], width=job["size"], num_inference_steps=job["steps"],
                     guidance_scale=3.5, generator=[generator]).images[0]
        path = out / f"{sample_id}_{index}.png"
        image.save(path, format="PNG")
        files[f"{sample_id}/{index}"] = str(path)
        times.append(os.stat(path).st_mtime)
    return {"exit": 0, "wall_s": time.perf_counter() - started, "cpu_s": cpu_s() - cpu, "files": files,
            "times": times, "peak_rss_mb": peak_rss_mb()}


def child_ray(job: dict[str, Any]) -> dict[str, Any]:
    """One local Ray; a pool of 1 actor and one of 2 in turn (2, 1, 1, 2 ...), each timed from its creation."""
    import asyncio

    import ray

    from rrbench.generators._base import ImageRequest
    from rrbench.generators._ray import LOCAL_OBJECT_STORE_BYTES, RayGeneratorPool

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=LOCAL_OBJECT_STORE_BYTES, configure_logging=False)
    requests = [ImageRequest(s, i, seed, prompt) for s, i, seed, prompt in job["items"]]
    args = {"path": job["model"], "steps": job["steps"], "width": job["size"], "height": job["size"]}

    async def run_warm_up(asked: list[ImageRequest], args: dict[str, Any]) -> None:
        pool = RayGeneratorPool("flux-dev", args, shards=1)
        try:
            await asyncio.gather(*(pool.submit(r) for r in asked))
        finally:
            await pool.aclose()

    async def run(shards: int) -> tuple[float, float, list[bytes | None]]:
        started = time.perf_counter()
        pool = RayGeneratorPool("flux-dev", args, shards=shards)
        try:
            await pool.astart()
            ready = time.perf_counter()
            made = await asyncio.gather(*(pool.submit(r) for r in requests))
        finally:
            await pool.aclose()
        return time.perf_counter() - started, time.perf_counter() - ready, [m.png for m in made]

    asyncio.run(run_warm_up(requests[:1], args))  # Ray's one-time costs (first workers, runtime env), untimed
    walls: dict[int, list[float]] = {1: [], 2: []}
    loops: dict[int, list[float]] = {1: [], 2: []}
    images: dict[int, list[bytes | None]] = {}
    for shards in [2, 1, 1, 2][: 2 * job["rounds"]]:
        wall, loop, images[shards] = asyncio.run(run(shards))
        walls[shards].append(wall)
        loops[shards].append(loop)
    ray.shutdown()
    same = images[1] == images[2] and all(images[1])
    return {"exit": 0, "wall_1": statistics.median(walls[1]), "wall_2": statistics.median(walls[2]),
            "loop_1": statistics.median(loops[1]), "loop_2": statistics.median(loops[2]), "same_bytes": same,
            "images": len(requests)}


def child_plain(job: dict[str, Any]) -> dict[str, Any]:
    """The raw loop, one torch thread, its clock started only when every plain process is loaded (a barrier of
    files): what two processes get from this machine without Ray, the ceiling for (c)."""
    import torch
    from diffusers import FluxPipeline

    torch.set_num_threads(1)
    pipe = FluxPipeline.from_pretrained(job["model"], torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def make(seed: int, prompt: str) -> None:
        pipe(prompt=prompt, height=job["size"], width=job["size"], num_inference_steps=job["steps"],
             guidance_scale=3.5, generator=[torch.Generator("cpu").manual_seed(seed)])

    make(0, "warm up")
    Path(job["ready"]).touch()
    while not Path(job["go"]).exists():
        time.sleep(0.01)
    started = time.perf_counter()
    for _, _, seed, prompt in job["items"]:
        make(seed, prompt)
    return {"exit": 0, "loop_s": time.perf_counter() - started}


CHILDREN = {"rrbench": child_rrbench, "raw": child_raw, "ray": child_ray, "plain": child_plain}


def start(kind: str, job: dict[str, Any], workdir: Path) -> subprocess.Popen[str]:
    job_file = workdir / f"job-{kind}-{time.monotonic_ns()}.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, __file__, "--child", kind, str(job_file)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(kind: str, child: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{kind} loop failed ({child.returncode}):\n{err[-3000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def spawn(kind: str, job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    return result(kind, start(kind, job, workdir))


def ceiling(model: Path, items: list[list[Any]], args: argparse.Namespace, workdir: Path) -> float:
    """Images/s of two plain processes side by side over one alone, each making the same number of images."""
    def together(count: int) -> float:
        name = f"plain-{time.monotonic_ns()}"
        jobs = [{"model": str(model), "size": args.size, "steps": args.steps, "items": items[k::count],
                 "ready": str(workdir / f"{name}-{k}.ready"), "go": str(workdir / f"{name}.go")} for k in range(count)]
        children = [start("plain", job, workdir) for job in jobs]
        while not all(Path(job["ready"]).exists() for job in jobs):
            if any(c.poll() is not None for c in children):
                break
            time.sleep(0.05)
        (workdir / f"{name}.go").touch()
        return len(items) / max(result("plain", c)["loop_s"] for c in children)

    return together(2) / together(1)


# ------------------------------------------------------------------------------------------------ parent


def work_items(prompts: int) -> list[list[Any]]:
    """(sample id, image index, seed, prompt) of every image rrbench generate makes for the first prompts."""
    from rrbench import registry
    from rrbench.generators._base import image_seed

    task = registry.get("task", TASK).build(images_per_prompt=IMAGES_PER_PROMPT, n=prompts)
    seed_of = task.seed_of or image_seed
    items = []
    for sample in task.load(None):
        items += [[sample.id, i, int(seed_of(0, sample.id, i)), sample.prompt] for i in range(IMAGES_PER_PROMPT)]
    return items


def loops(args: argparse.Namespace, model: Path, workdir: Path) -> dict[str, Any]:
    prompts = args.images // IMAGES_PER_PROMPT
    items = work_items(prompts)
    runs: dict[str, list[dict[str, Any]]] = {"rrbench": [], "raw": []}
    order = ["rrbench", "raw", "raw", "rrbench"] * args.rounds
    for n, kind in enumerate(order[: 2 * args.rounds]):
        out = workdir / f"{kind}-{n}"
        out.mkdir()
        job = {"model": str(model), "size": args.size, "steps": args.steps, "prompts": prompts, "items": items,
               "out": str(out), "threads": args.threads, "device": args.device, "dtype": args.dtype}
        runs[kind].append(spawn(kind, job, workdir))
    first_rr, first_raw = runs["rrbench"][0], runs["raw"][0]
    same = first_rr["exit"] == 0 and set(first_rr["files"]) == set(first_raw["files"]) and all(
        Path(first_rr["files"][k]).read_bytes() == Path(first_raw["files"][k]).read_bytes() for k in first_raw["files"])
    rate = {k: statistics.median(steady_rate(r["times"]) for r in v) for k, v in runs.items()}
    wall = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu_s"] for r in v) / len(items) for k, v in runs.items()}
    return {"images": len(items), "rate_rrbench": rate["rrbench"], "rate_raw": rate["raw"],
            "loop_ratio": rate["rrbench"] / rate["raw"], "wall_rrbench_s": wall["rrbench"], "wall_raw_s": wall["raw"],
            "cpu_per_image_rrbench_s": cpu["rrbench"], "cpu_per_image_raw_s": cpu["raw"],
            "rss_rrbench_mb": rss["rrbench"], "rss_raw_mb": rss["raw"], "rss_extra_mb": rss["rrbench"] - rss["raw"],
            "same_bytes": same}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96, help="images per loop (rrbench vs raw)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each loop (alternating)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of both loops (equal, so OpenMP contention on a shared machine is no "
                             "part of the ratio)")
    parser.add_argument("--ray-images", type=int, default=192, help="images per Ray pool (1 and 2 actors)")
    parser.add_argument("--only", choices=("loops", "ray"), help="only (a) and (b), or only (c)")
    parser.add_argument("--pipeline", choices=("tiny", "flux-dev"), default="tiny",
                        help="tiny: tests/tiny_diffusers.py's Flux; flux-dev: FLUX.1-dev's size, random weights "
                             "(bench/gpu_configs.py; a GPU)")
    parser.add_argument("--device", default="cpu", help="both loops' device (cuda for --pipeline flux-dev)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="both loops' dtype")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(Path(args.child[1]).read_text()))))
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.tiny_diffusers import build_flux

    with tempfile.TemporaryDirectory(prefix="rrbench-bench-gen-") as tmp:
        workdir = Path(tmp)
        if args.pipeline == "flux-dev":
            from bench.gpu_configs import build_flux_dev

            model = build_flux_dev(workdir / "flux-dev", device=args.device, dtype=args.dtype)
        else:
            model = build_flux(workdir / "tiny-flux")
        r = loops(args, model, workdir) if args.only != "ray" else {}
        if args.only != "loops":
            items = work_items(args.ray_images // IMAGES_PER_PROMPT)
            ray = spawn("ray", {"model": str(model), "size": args.size, "steps": args.steps, "items": items,
                                "rounds": 1}, workdir)
            r["ray_ceiling"] = ceiling(model, items[: max(8, len(items) // 4)], args, workdir)
            r.update(ray_images=ray["images"], ray_wall_1=ray["wall_1"], ray_wall_2=ray["wall_2"],
                     ray_speedup=ray["wall_1"] / ray["wall_2"], ray_loop_speedup=ray["loop_1"] / ray["loop_2"],
                     ray_same_bytes=ray["same_bytes"])
    checks: dict[str, bool] = {}
    if args.only != "ray":
        checks["loop"] = r["loop_ratio"] >= LOOP_RATIO_TARGET and r["same_bytes"]
        checks["rss"] = r["rss_extra_mb"] < RSS_TARGET_MB
    if args.only != "loops":
        checks["ray"] = r["ray_speedup"] >= RAY_SPEEDUP_TARGET and r["ray_same_bytes"]
    ok = all(checks.values())
    if args.json:
        print(json.dumps({**r, "pass": ok}))
        return 0 if ok else 1
    verdict = {True: "PASS", False: "FAIL"}
    print(f"{args.pipeline} Flux on {args.device} ({args.dtype}), {args.size}x{args.size}, {args.steps} steps")
    if "loop" in checks:
        print(f"(a) {r['images']} images per loop, {args.rounds} rounds each, {args.threads} torch thread(s); steady "
              f"images/s: rrbench {r['rate_rrbench']:.2f}, raw diffusers {r['rate_raw']:.2f} -> {r['loop_ratio']:.3f}x "
              f"(target >= {LOOP_RATIO_TARGET}); same bytes: {r['same_bytes']}  {verdict[checks['loop']]}")
        print(f"    whole process after imports: rrbench {r['wall_rrbench_s']:.1f} s, raw {r['wall_raw_s']:.1f} s "
              "(start-up, run.json and metrics included)")
        print(f"    CPU per image, same span: rrbench {r['cpu_per_image_rrbench_s'] * 1e3:.0f} ms, raw "
              f"{r['cpu_per_image_raw_s'] * 1e3:.0f} ms")
        print(f"(b) peak RSS: rrbench {r['rss_rrbench_mb']:.0f} MB, raw {r['rss_raw_mb']:.0f} MB -> "
              f"+{r['rss_extra_mb']:.0f} MB (target < {RSS_TARGET_MB:.0f})  {verdict[checks['rss']]}")
    if "ray" in checks:
        print(f"(c) Ray, {r['ray_images']} images from pool creation: 1 actor {r['ray_wall_1']:.1f} s, 2 actors "
              f"{r['ray_wall_2']:.1f} s -> {r['ray_speedup']:.2f}x (target >= {RAY_SPEEDUP_TARGET}); after start-up "
              f"{r['ray_loop_speedup']:.2f}x; same bytes: {r['ray_same_bytes']}  {verdict[checks['ray']]}")
        print(f"    this machine's ceiling: two plain processes side by side (no Ray, one thread each) make "
              f"{r['ray_ceiling']:.2f}x the images/s of one")
    print(verdict[ok])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
