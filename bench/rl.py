"""Diffusion RL: how much of the reward's time the background reward hides, and what the trainer adds.

What, side by side in one run, repetitions alternating the order (drift of a shared machine cancels out). The
critic is the scripted RationalRewards-format server (tests/judge_server.py: real HTTP on 127.0.0.1, each critique
answered after ``L`` seconds, in a process of its own as a vLLM server is; reached by rrbench's client as
``rationalrewards-8b base_urls=[URL]``); the instant reward is the in-process ``constant`` model. Torch runs one
thread (``--threads``): the sampler stands in for a GPU, and the machine's other core is left to the reward client
and the server, as a GPU machine leaves its CPUs to them.

1. **The trainer (the target).** ``rrbench_train.rl.trainer.train`` (NFT) on the tiny random-weight Flux
   (tests/tiny_diffusers.py) with each reward; step time = the spacing of the monitor's per-step lines
   (monitor.jsonl), the first step left out. Ratio = median step with the critic / with the instant reward, target
   <= 1.1x: each micro-batch is judged while the next samples, and the last one while NFT's old-policy and
   reference passes run.
2. **The reward module alone (a diagnostic).** A bare loop: sample M micro-batches with ``FluxPipeline.__call__``,
   ``Reward.submit`` each as soon as it is decoded, wait for every reward, then one LoRA forward/backward per
   micro-batch. Nothing runs while the last micro-batch is judged, so its floor is about 1 + L / step time; what
   it adds above the floor is the reward client's CPU beside the sampler.
3. **Trainer overhead vs bare diffusers.** The trainer's step (instant reward) against the bare work it wraps:
   ``FluxPipeline`` sampling of the same images, the same LoRA forward/backward passes (the trainer's LoRA targets,
   the same token counts) and one optimizer step ("bare"); and the same plus NFT's two no-grad forwards per
   micro-batch ("bare+nft": the old policy's and the reference's velocities), so what is left is the trainer's own
   bookkeeping.

Full size (bench/gpu_check.sh's NFT row): ``--pipeline flux-dev --device cuda --dtype bfloat16`` runs all three at
FLUX.1-dev's size with random weights (bench/gpu_configs.py), LoRA 64/128 on the trainer's attention targets,
gradient checkpointing and 512 text tokens, as training/rl/presets/flux-dev-t2i.yaml trains; the bare loop keeps
its LoRA in float32 under autocast, as the trainer does. ``--device cpu`` (the default) hides every GPU from this
process, so the trainer's accelerate picks the CPU too.

    python bench/rl.py [--reps 3] [--steps-per-rep 3] [--latency L] [--micro 8] [--batch 4] [--steps 8]
                       [--size 64] [--threads 1] [--pipeline tiny|flux-dev] [--device cpu|cuda]
                       [--dtype float32|bfloat16] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rrbench_train.rl.reward import Reward, RewardConfig  # noqa: E402
from tests import tiny_diffusers  # noqa: E402
from tests.judge_server import ScriptedJudge  # noqa: E402
from tests.refine_critic import PVQ, TF, TR, answer  # noqa: E402

CRITIQUE = answer({TF: 3, PVQ: 4, TR: "N/A"}, None)
TRAINER = ROOT / "training" / "rl" / "trainer.py"
# (rank, alpha) of the LoRA, bare loop and trainer alike: the tiny pipeline keeps the test-size one; FLUX.1-dev the
# paper's 64/128 (training/rl/presets/flux-dev-t2i.yaml)
LORA = {"tiny": (4, 4), "flux-dev": (64, 128)}
NFT_NO_GRAD_FORWARDS = 2  # per micro-batch: v_old, and v_ref (the KL term; nft.kl > 0 by default)
TEXT_TOKENS = {"tiny": 32, "flux-dev": 512}  # FLUX.1-dev's T5 length: a full-size step pays for its text tokens


def _reply(latency: float, request: Any) -> str:
    time.sleep(latency)
    return CRITIQUE


def _serve(latency: float, conn: Any) -> None:
    """The child process: the scripted critic until the parent closes its end of the pipe."""
    with ScriptedJudge(functools.partial(_reply, latency)) as server:
        conn.send(server.url)
        with contextlib.suppress(EOFError):
            conn.recv()


@contextmanager
def critic(latency: float) -> Iterator[str]:
    """The scripted critic in a process of its own, as a vLLM server is: in this process its HTTP thread would
    take the GIL from the sampler, which no real deployment does."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(latency, child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the scripted critic did not start in 60 s")
        yield parent.recv()
    finally:
        parent.close()
        process.join(10)
        if process.is_alive():
            process.kill()


def reward_config(kind: str, url: str) -> dict[str, Any]:
    if kind == "critic":
        return {"model": "rationalrewards-8b", "model_args": {"base_urls": [url], "max_retries": 0}}
    return {"model": "constant", "model_args": {"value": 0.5}}


# ------------------------------------------------------------------------------------ 1. the reward overlap


class Loop:
    """The Flux pipeline on ``--device`` in ``--dtype``, its transformer with a LoRA, and one step of the
    sample -> reward -> train loop."""

    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        import torch
        from diffusers import FluxPipeline
        from peft import LoraConfig

        torch.set_num_threads(args.threads)
        self.torch, self.args = torch, args
        self.device, self.dtype = torch.device(args.device), getattr(torch, args.dtype)
        self.text_tokens = TEXT_TOKENS[args.pipeline]
        self.pipe = FluxPipeline.from_pretrained(folder, dtype=self.dtype).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        transformer = self.pipe.transformer
        rank, alpha = LORA[args.pipeline]
        from rrbench_train.rl.adapters.flux import FluxAdapter

        targets = list(FluxAdapter.default_targets)  # the trainer's own targets: the overhead compares the same work
        if args.pipeline != "tiny":  # and its checkpointing at full size
            transformer.enable_gradient_checkpointing()
        transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets))
        params = [p for p in transformer.parameters() if p.requires_grad]
        for param in params:  # float32 LoRA as the trainer's (bf16 updates of lr x grad vanish)
            param.data = param.data.float()
        self.optimizer = torch.optim.AdamW(params, lr=1e-4)
        self.prompts = [f"a red circle beside tree number {i:02d}." for i in range(args.batch)]

    def sample(self, micro: int) -> list[Any]:
        a = self.args
        generator = [self.torch.Generator().manual_seed(micro * 100 + i) for i in range(a.batch)]
        with self.torch.no_grad():
            out = self.pipe(self.prompts, num_inference_steps=a.steps, height=a.size, width=a.size,
                            guidance_scale=3.5, max_sequence_length=self.text_tokens, generator=generator)
        return list(out.images)

    def train(self, no_grad_forwards: int = 0) -> None:
        """One LoRA forward/backward per micro-batch on packed latents of the sampled size (after
        ``no_grad_forwards`` forwards without gradients of the same inputs), one optimizer step."""
        torch, a, t = self.torch, self.args, self.pipe.transformer
        # packed 2x2 latent patches at the sampled size (the tiny VAE downsamples by 2, FLUX.1-dev's by 8)
        tokens = (a.size // self.pipe.vae_scale_factor // 2) ** 2
        channels, text_len = t.config.in_channels, self.text_tokens
        dev, dt = self.device, self.dtype
        # autocast as the trainer's denoiser call: float32 LoRA weights meet the base model's dtype
        autocast = torch.autocast(dev.type, dtype=dt, enabled=dt != torch.float32)
        for micro in range(a.micro):
            gen = torch.Generator(dev).manual_seed(micro)
            hidden = torch.randn(a.batch, tokens, channels, generator=gen, device=dev, dtype=dt)
            text = torch.randn(a.batch, text_len, t.config.joint_attention_dim, generator=gen, device=dev, dtype=dt)
            pooled = torch.randn(a.batch, t.config.pooled_projection_dim, generator=gen, device=dev, dtype=dt)
            inputs = {"hidden_states": hidden, "encoder_hidden_states": text, "pooled_projections": pooled,
                      "timestep": torch.full((a.batch,), 0.5, device=dev, dtype=dt),
                      "img_ids": torch.zeros(tokens, 3, device=dev), "txt_ids": torch.zeros(text_len, 3, device=dev),
                      "guidance": torch.full((a.batch,), 3.5, device=dev), "return_dict": False}
            with autocast:
                for _ in range(no_grad_forwards):
                    with torch.no_grad():
                        t(**inputs)
                out = t(**inputs)[0]
            out.float().pow(2).mean().backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def step(self, reward: Reward, step: int) -> tuple[float, float]:
        """(step seconds, seconds spent waiting for rewards after the last micro-batch was sampled)."""
        start = time.perf_counter()
        futures = []
        for micro in range(self.args.micro):
            images = self.sample(step * self.args.micro + micro)
            keys = [f"{step}-{micro}-{i}" for i in range(len(images))]
            futures.append(reward.submit(self.prompts, images, None, keys))
        waited = time.perf_counter()
        results = [r for f in futures for r in f.result()]
        waited = time.perf_counter() - waited
        assert all(r.ok for r in results), [r.failure for r in results if not r.ok]
        self.train()
        return time.perf_counter() - start, waited


def half_a_micro_batch(loop: Loop) -> float:
    """Half of one micro-batch's sampling time (after a warm-up): a critic that much faster than sampling."""
    loop.sample(0)
    return round(0.5 * _timed(lambda: loop.sample(0)), 4)


def overlap(args: argparse.Namespace, loop: Loop, url: str) -> dict[str, Any]:
    rewards = {kind: Reward(RewardConfig.from_dict(reward_config(kind, url))) for kind in ("instant", "critic")}
    times: dict[str, list[float]] = {kind: [] for kind in rewards}
    waits: dict[str, list[float]] = {kind: [] for kind in rewards}
    try:
        for reward in rewards.values():  # warm-up: first calls, the HTTP client, the allocator
            loop.step(reward, 0)
        sample_s = _timed(lambda: loop.sample(0))
        for rep in range(args.reps):
            order = list(rewards) if rep % 2 == 0 else list(reversed(rewards))
            for kind in order:
                for k in range(args.steps_per_rep):
                    seconds, waited = loop.step(rewards[kind], 1 + rep * args.steps_per_rep + k)
                    times[kind].append(seconds)
                    waits[kind].append(waited)
    finally:
        for reward in rewards.values():
            reward.close()
    med = {kind: statistics.median(v) for kind, v in times.items()}
    return {"micro_batch_sample_s": sample_s, "latency_s": args.latency,
            "step_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "median_step_s": med, "median_wait_after_sampling_s": {k: statistics.median(v) for k, v in waits.items()},
            "ratio": med["critic"] / med["instant"], "floor": 1 + args.latency / med["instant"],
            "sequential_estimate": 1 + args.micro * args.latency / med["instant"]}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------ 2 + 3. the trainer


def trainer_config(args: argparse.Namespace, folder: Path, reward: dict[str, Any], out: Path) -> dict[str, Any]:
    return {
        "algorithm": "nft", "seed": 0, "output_dir": str(out),
        "generator": {"name": "flux-dev", "path": str(folder), "resolution": args.size,
                      "max_sequence_length": TEXT_TOKENS[args.pipeline], "dtype": args.dtype,
                      "gradient_checkpointing": args.pipeline != "tiny"},
        "lora": {"rank": LORA[args.pipeline][0], "alpha": LORA[args.pipeline][1]},
        "reward": reward,
        "data": {"task": "sanity-gen", "task_args": {"n": 8, "images_per_prompt": 1}},
        "sampling": {"group_size": args.batch, "groups_per_epoch": args.micro, "steps": args.steps,
                     "batch_size": args.batch},
        "train": {"epochs": args.steps_per_rep + 1, "batch_size": args.batch, "save_every": 10_000},
    }


def trainer_steps(args: argparse.Namespace, folder: Path, reward: dict[str, Any], work: Path) -> list[float]:
    """One trainer run in this process (``rrbench_train.rl.trainer.train``); its step times from monitor.jsonl."""
    import yaml

    from rrbench_train.rl.config import load_config
    from rrbench_train.rl.trainer import train

    out = Path(tempfile.mkdtemp(dir=work))
    config = out / "config.yaml"
    config.write_text(yaml.safe_dump(trainer_config(args, folder, reward, out / "run")))
    code = train(load_config(config))
    release()  # this run's pipeline, before the next run loads its own
    if code != 0:
        raise RuntimeError(f"the trainer returned {code}")
    lines = [json.loads(t) for p in (out / "run").rglob("monitor.jsonl") for t in p.read_text().splitlines()]
    stamps = sorted(float(line["time"]) for line in lines if line.get("kind") == "step")
    if len(stamps) < 2:
        raise RuntimeError(f"the trainer logged {len(stamps)} steps to monitor.jsonl: no step times")
    return [b - a for a, b in itertools.pairwise(stamps)]


def trainer_part(args: argparse.Namespace, folder: Path, url: str, work: Path, bare: dict[str, float]
                 ) -> dict[str, Any]:
    if not TRAINER.exists():
        return {"measured": False, "why": "training/rl/trainer.py does not exist yet"}
    times: dict[str, list[float]] = {"instant": [], "critic": []}
    try:
        if args.pipeline == "tiny":  # warm-up: imports, first allocations (full size: the first step of each run,
            trainer_steps(args, folder, reward_config("instant", url), work)  # left out anyway, is enough)
        for rep in range(args.reps):
            for kind in (["instant", "critic"] if rep % 2 == 0 else ["critic", "instant"]):
                times[kind] += trainer_steps(args, folder, reward_config(kind, url), work)
    except Exception as exc:  # the trainer is being written beside this script: say why, keep part 1's numbers
        return {"measured": False, "why": f"the trainer did not run: {type(exc).__name__}: {str(exc)[:300]}"}
    med = {kind: statistics.median(v) for kind, v in times.items()}
    return {"measured": True, "step_s": times, "median_step_s": med, "ratio": med["critic"] / med["instant"],
            "bare_step_s": bare, "overhead": {k: med["instant"] / v for k, v in bare.items()}}


def bare_step(args: argparse.Namespace, loop: Loop) -> dict[str, float]:
    """Median seconds of a bare step: sampling the same images with FluxPipeline, the same forward/backward passes,
    one optimizer step ("bare"); and the same plus NFT's forwards without gradients (the old policy's velocity,
    and the reference's for the KL term: "bare+nft"), so what the trainer adds beyond that is its bookkeeping."""

    def step(no_grad_forwards: int) -> None:
        for micro in range(args.micro):
            loop.sample(micro)
        loop.train(no_grad_forwards)

    step(0)  # at least three timings: one alone is at the mercy of a stall on a shared machine (CI saw 3 s for 0.03)
    times: dict[str, list[float]] = {"bare": [], "bare+nft": []}
    for rep in range(max(3, args.reps * args.steps_per_rep)):
        for name in (["bare", "bare+nft"] if rep % 2 == 0 else ["bare+nft", "bare"]):
            times[name].append(_timed(lambda n=name: step(NFT_NO_GRAD_FORWARDS if n == "bare+nft" else 0)))
    return {name: statistics.median(v) for name, v in times.items()}


def release() -> None:
    """Free dropped pipelines now: at full size two of them do not fit one card beside each other."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps-per-rep", type=int, default=3)
    parser.add_argument("--latency", type=float, default=None,
                        help="seconds per critique at the server (default: half of one micro-batch's sampling time, "
                             "measured first: a critic faster than sampling, the case the overlap is for)")
    parser.add_argument("--micro", type=int, default=8, help="sampling micro-batches per step")
    parser.add_argument("--batch", type=int, default=4, help="images per micro-batch")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pipeline", choices=("tiny", "flux-dev"), default="tiny",
                        help="tiny: tests/tiny_diffusers.py's Flux; flux-dev: FLUX.1-dev's size, random weights "
                             "(bench/gpu_configs.py; a GPU)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="the bare loop's and the trainer's device")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="the pipeline's dtype, bare loop and trainer alike")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the sampler and trainer (default 1: the other core is the reward "
                             "client's and the critic server's, as a GPU leaves the CPUs to them; more threads "
                             "make the 2-core machine's contention, not the overlap, the measured thing)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.device == "cpu":  # the trainer's accelerate takes any GPU it sees: hide them, and tell accelerate too
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # (nothing has asked torch about CUDA yet)
        os.environ["ACCELERATE_USE_CPU"] = "true"
    else:
        import torch

        if not torch.cuda.is_available():  # else the trainer would quietly run on the CPU beside a failed loop
            parser.error("--device cuda: torch sees no GPU")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.pipeline == "flux-dev":
            from bench.gpu_configs import build_flux_dev

            folder = build_flux_dev(work / "flux-dev", device=args.device, dtype=args.dtype)
        else:
            folder = tiny_diffusers.build_flux(work / "flux")
        loop = Loop(folder, args)  # one load serves parts 1 and 3
        if args.latency is None:
            args.latency = half_a_micro_batch(loop)
        with critic(args.latency) as url:
            result: dict[str, Any] = {"overlap": overlap(args, loop, url)}
            bare = bare_step(args, loop)
            del loop
            release()
            result["trainer"] = trainer_part(args, folder, url, work, bare)
            result["bare_step_s"] = bare
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    o = result["overlap"]
    print(f"{args.pipeline} Flux on {args.device} ({args.dtype})")
    print(f"reward module alone (diagnostic): {args.micro} micro-batches x {args.batch} images, {args.steps} steps "
          f"at {args.size} px; one micro-batch samples in {o['micro_batch_sample_s']:.3f} s; critic latency "
          f"{args.latency} s")
    for kind in ("instant", "critic"):
        print(f"  {kind:8s} step median {o['median_step_s'][kind]:.3f} s, waiting for rewards after sampling "
              f"{o['median_wait_after_sampling_s'][kind]:.3f} s  ({o['step_s'][kind]})")
    print(f"  ratio critic/instant {o['ratio']:.3f} (floor ~{o['floor']:.3f}: nothing hides the last micro-batch's "
          f"critique; judged after sampling instead: ~{o['sequential_estimate']:.3f})")
    t = result["trainer"]
    bare_line = (f"bare diffusers step {bare['bare']:.3f} s (sampling + LoRA fwd/bwd), {bare['bare+nft']:.3f} s "
                 f"with NFT's {NFT_NO_GRAD_FORWARDS} no-grad forwards per micro-batch")
    if not t["measured"]:
        print(f"trainer: not measured ({t['why']}); {bare_line}")
    else:
        print(f"trainer: step median instant {t['median_step_s']['instant']:.3f} s, critic "
              f"{t['median_step_s']['critic']:.3f} s, ratio {t['ratio']:.3f} (target <= 1.1)")
        print(f"  {bare_line}; trainer overhead {t['overhead']['bare']:.3f}x and {t['overhead']['bare+nft']:.3f}x")
    if args.device == "cpu":
        print("GPU: not measured here (--pipeline flux-dev --device cuda --dtype bfloat16; bench/gpu_check.sh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
