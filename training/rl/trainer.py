"""The RL loop, one optimizer step per epoch, on accelerate (one process or many; gloo on CPUs, NCCL on GPUs).

Per epoch: the sampler picks ``groups_per_epoch`` row keys (the same on every process); the global batch of
groups × K samples is split into contiguous shards, one per process; each process samples its shard in
micro-batches and submits each batch's images to the reward at once, so batch k is judged while batch k + 1 is
sampled, and the algorithm's advantage-free passes (NFT's old and reference velocities, GRPO's reference) run
while the last batch is judged; rewards are gathered, advantages computed over the global batch (failed rewards
masked), solved groups banned, and the algorithm's losses back-propagated in micro-batches into one optimizer step
over the ``default`` LoRA only. Then the old-policy update and the EMA, the monitor line, the checkpoint.

Faults: a non-finite loss or gradient skips the step (counted; ``train.max_nan_steps`` in a row stop the run with a
checkpoint); an epoch whose rewards mostly failed (a server down) waits for the reward to be healthy and asks again
``reward_retry.retries`` times, then stops with a checkpoint. Never a made-up reward.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench import UserError
from rrbench_train.rl import checkpoint
from rrbench_train.rl.adapters import build_adapter, check_generator
from rrbench_train.rl.algorithm import Adapter, Algorithm, Rollout, build_algorithm, derive_seed
from rrbench_train.rl.data import GroupSampler, Row, load_rows
from rrbench_train.rl.nft import banned_groups, ema_decay, group_advantages, ode_sample, soft_update

if TYPE_CHECKING:
    import torch

    from rrbench_train.rl.config import RLConfig
    from rrbench_train.rl.reward import Reward, RewardResult

STOPPED = 3  # exit status of a run stopped by a fault (after its checkpoint)
INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM at a step boundary (after its checkpoint), as a shell reports SIGINT


class TrainingStopped(UserError):
    """A fault stopped the run after its checkpoint was written (one line for the user)."""


class Interrupted(UserError):
    """Ctrl-C or SIGTERM stopped the run at a step boundary, after its checkpoint was written."""


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM (the loop stops after the step under way); a second signal
    raises KeyboardInterrupt at once. Outside the main thread (no handlers can be set there) the event stays unset."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def handle(signum: int, frame: object) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print(f"rrbench-train: {signal.Signals(signum).name}: stopping after this step with a checkpoint (again to "
              "stop at once)", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Sample:
    """One sample of the epoch's global batch."""

    group: int  # the group's position in the epoch (a key may come twice in one epoch: two groups)
    key: str
    index: int  # within the group
    seed: int


class Trainer:
    def __init__(self, config: RLConfig, reward: Reward | None = None) -> None:
        import torch
        from accelerate import Accelerator

        self.config = config
        self.show_progress = True
        self.kind = check_generator(config.generator.name)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        if config.global_batch % self.world:
            raise UserError(f"the global batch ({config.global_batch} = group_size × groups_per_epoch) must divide "
                            f"evenly over {self.world} processes")
        self.out = Path(config.output_dir)
        try:  # before any weight is loaded: a folder that cannot be written would lose the first checkpoint
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / f".write-check-{self.rank}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"config output_dir {self.out}: cannot write there ({exc.strerror or exc})") from None
        self.train_rows, self.heldout_rows = load_rows(config.data, config.seed, self.kind)
        self.rows = {r.key: r for r in [*self.train_rows, *self.heldout_rows]}
        self.sampler = GroupSampler([r.key for r in self.train_rows], config.seed)
        self.reward = reward if reward is not None else make_reward(config, self.kind)
        try:
            self._build(config)
        except BaseException:
            if reward is None:  # ours: its HTTP sessions and threads end with the failed start
                self.reward.close()
            raise

    def _build(self, config: RLConfig) -> None:
        """The generator, the algorithm, the optimizer, a checkpoint's state and the monitor."""
        import torch

        self.adapter: Adapter = build_adapter(config, self.accelerator.device)
        self.algorithm: Algorithm = build_algorithm(config)
        self.params = dict(self.adapter.trainable())
        optimizer = torch.optim.AdamW(list(self.params.values()), lr=config.train.lr,
                                      betas=(config.train.betas[0], config.train.betas[1]),
                                      weight_decay=config.train.weight_decay)
        transformer = self.adapter.transformer
        self.model, self.optimizer = self.accelerator.prepare(transformer, optimizer)
        self.adapter.train_model = self.model
        self.ema = {n: p.detach().clone() for n, p in self.params.items()} if config.train.ema_decay > 0 else None
        self.step, self.nan_steps, self.nan_in_row, self.epoch_retries = 0, 0, 0, 0
        self._resume()
        self.monitor = make_monitor(config, self.out, self.accelerator.is_main_process, self.step)

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> int:
        """Train until ``train.epochs`` (or ``max_steps`` more steps); 0, or raises TrainingStopped. A first Ctrl-C
        or SIGTERM (a cluster's preemption) finishes the step under way, checkpoints it and raises Interrupted; a
        second one interrupts at once (the last checkpoint stays)."""
        end = self.config.train.epochs if max_steps is None else min(self.config.train.epochs, self.step + max_steps)
        paces: list[float] = []
        with stop_signals() as asked:
            while self.step < end:
                started = time.monotonic()
                stats = self.epoch()
                self.step += 1
                if self.config.train.eval_every and self.step % self.config.train.eval_every == 0:
                    stats.update(self.heldout())
                self.monitor.log_step(self.step, stats)
                paces.append(time.monotonic() - started)
                self.progress(stats, end, paces)
                stop = self.reduce_sum(1.0 if asked.is_set() else 0.0) > 0  # every process stops at the same step
                if self.step % self.config.train.save_every == 0 or self.step == end or stop:
                    self.save()
                if stop and self.step < end:
                    raise Interrupted(f"stopped on a signal after step {self.step}, checkpoint "
                                      f"{checkpoint.checkpoint_dir(self.out, self.step)}; run the same command to "
                                      "resume")
        if self.step >= self.config.train.epochs:
            summary = self.monitor.finish()
            if self.show_progress and summary is not None:
                lora = checkpoint.checkpoint_dir(self.out, self.step) / checkpoint.LORA
                print(f"done: {self.step} steps; the LoRA for `rrbench generate -G lora=...`: {lora}; summary: "
                      f"{summary}", file=sys.stderr, flush=True)
        return 0

    def progress(self, stats: dict[str, float], end: int, paces: list[float]) -> None:
        """One console line per step (main process; ``show_progress = False`` silences it); the pace is the median of
        the recent steps, the first left out once there are others (it loads and compiles)."""
        if not self.show_progress or not self.accelerator.is_main_process:
            return
        from rrbench_train.rl.monitor import progress_line

        recent = paces[1:][-10:] or paces
        print(progress_line(self.step, end, stats, sorted(recent)[len(recent) // 2]), file=sys.stderr, flush=True)

    def epoch(self) -> dict[str, float]:
        import torch

        started = time.monotonic()
        samples = self.plan()
        local = self.shard(samples)
        rollouts, futures, submitted = self.sample(local)
        rollout = Rollout.cat(rollouts)
        prepared = self.prepare(rollout)  # while the last micro-batch's rewards are judged
        all_results = self.gather_objects(self.collect(futures, submitted))
        values = reward_values(all_results, samples, self.reward)
        std, clip = (self.config.nft.std, self.config.nft.adv_clip) if self.config.algorithm == "nft" else \
            (self.config.grpo.std, self.config.grpo.adv_clip)
        groups = torch.tensor([s.group for s in samples])
        advantages = group_advantages(values, groups, std, clip)
        self.ban(values, samples)
        lo = self.rank * len(local)
        stats = self.train_on(rollout, advantages[lo: lo + len(local)], prepared)
        stats.update(reward_stats(all_results))
        stats.update({"valid_samples": float((~torch.isnan(advantages)).sum()),
                      "banned": float(len(self.sampler.banned)),
                      "reward_epoch_retries": float(self.epoch_retries),  # whole-epoch re-asks after a pause
                      "nan_steps": float(self.nan_steps), "processes": float(self.world),
                      "epoch_s": time.monotonic() - started})
        return stats

    def plan(self) -> list[Sample]:
        """The epoch's global batch: groups × K, with per-sample seeds from (run seed, step, group, index)."""
        k = self.config.sampling.group_size
        keys = self.sampler.next(self.config.sampling.groups_per_epoch)
        return [Sample(g, key, i, derive_seed(self.config.seed, "sample", self.step, g, i))
                for g, key in enumerate(keys) for i in range(k)]

    def shard(self, samples: list[Sample]) -> list[Sample]:
        n = len(samples) // self.world
        return samples[self.rank * n: (self.rank + 1) * n]

    # -- sampling and rewards -----------------------------------------------------------------------------
    def sample(self, local: list[Sample]) -> tuple[list[Rollout], list[Any], list[Any]]:
        """Rollouts of the local samples in sampling micro-batches, each submitted to the reward as soon as it is
        decoded; the reward futures, and what was submitted (to ask again after a pause)."""
        import torch

        batch = self.config.sampling.batch_size
        rollouts, futures, submitted = [], [], []
        for start in range(0, len(local), batch):
            part = local[start: start + batch]
            rows = [self.rows[s.key] for s in part]
            sources = [r.images(self.config.generator.resolution) for r in rows] if self.kind == "edit" else None
            with torch.no_grad():
                cond = self.adapter.encode([r.prompt for r in rows], sources)
                rollout = self.algorithm.rollout(self.adapter, cond, [s.seed for s in part])
            args = ([r.prompt for r in rows], rollout.images, sources, [s.key for s in part])
            futures.append(self.reward.submit(*args))  # judged while the next batch samples
            submitted.append(args)
            rollouts.append(Rollout(rollout.x0, rollout.cond, rollout.seeds, [], rollout.latents, rollout.log_probs,
                                    rollout.sigmas))
        return rollouts, futures, submitted

    def chunks(self, n: int) -> list[list[int]]:
        """The training micro-batches of ``n`` local samples."""
        batch = self.config.train.batch_size
        return [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]

    def prepare(self, rollout: Rollout) -> list[list[dict[str, torch.Tensor]]]:
        """The algorithm's advantage-free work (no-grad forwards) per training micro-batch and unit: done while the
        last rewards are still being judged, so their latency hides behind it instead of idling the device."""
        import torch

        with torch.no_grad():
            return [[self.algorithm.prepare(self.adapter, rollout.select(index), self.step, unit)
                     for unit in range(self.algorithm.units)] for index in self.chunks(len(rollout))]

    def collect(self, futures: list[Any], submitted: list[Any]) -> list[RewardResult]:
        """The epoch's rewards; when most failed on any process, pause until the reward is healthy and ask again,
        then stop with a checkpoint."""
        retry = self.config.reward_retry
        self.epoch_retries = 0
        for attempt in range(retry.retries + 1):
            results = [r for f in futures for r in f.result()]
            failed = self.reduce_sum(float(sum(not r.ok for r in results)))
            rate = failed / self.config.global_batch
            if rate <= retry.max_failure_rate:
                return results
            self.epoch_retries += 1
            if attempt == retry.retries:
                break
            self.reward.wait_healthy(retry.pause_s, interval_s=max(retry.pause_s / 10, 0.05))
            futures = [self.reward.submit(*args) for args in submitted]
        kinds = sorted({str(r.failure) for r in results if not r.ok})
        self.save()
        raise TrainingStopped(f"the reward failed for {rate:.0%} of the epoch's images ({', '.join(kinds)}) after "
                              f"{retry.retries} retries; stopped at step {self.step} with checkpoint "
                              f"{checkpoint.checkpoint_dir(self.out, self.step)} (run the same command to resume)")

    def ban(self, values: torch.Tensor, samples: list[Sample]) -> None:
        if self.config.algorithm != "nft":
            return
        keys = [f"{s.group}\x00{s.key}" for s in samples]  # statistics per group, bans per row key
        solved = banned_groups(values, keys, self.config.nft.ban_std, self.config.nft.ban_mean)
        self.sampler.ban(str(k).split("\x00", 1)[1] for k in solved)

    # -- training -----------------------------------------------------------------------------------------
    def train_on(self, rollout: Rollout, advantages: torch.Tensor, prepared: list[list[dict[str, torch.Tensor]]]
                 ) -> dict[str, float]:
        import torch

        units = self.algorithm.units
        valid_global = self.reduce_sum(float((~torch.isnan(advantages)).sum()))
        if valid_global == 0:
            return {"skipped_no_signal": 1.0}
        scale = self.world / (valid_global * units)
        chunks = self.chunks(len(rollout))
        sums: dict[str, float] = {}
        total = torch.zeros((), device=self.accelerator.device)
        for c, index in enumerate(chunks):
            part, adv = rollout.select(index), advantages[index]
            for unit in range(units):
                last = c == len(chunks) - 1 and unit == units - 1
                with contextlib.nullcontext() if last else self.accelerator.no_sync(self.model):
                    per, stats = self.algorithm.loss(self.adapter, part, adv.to(part.x0.device), self.step, unit,
                                                     prepared[c][unit])
                    loss = per.sum() * scale
                    self.accelerator.backward(loss)
                total += loss.detach()
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + value / (len(chunks) * units)
        return {**self.reduce_mean(sums), **self.optimizer_step(total)}

    def optimizer_step(self, total: torch.Tensor) -> dict[str, float]:
        import torch

        grads = [p.grad for p in self.params.values() if p.grad is not None]
        finite = bool(torch.isfinite(total)) and all(bool(torch.isfinite(g).all()) for g in grads)
        finite = self.reduce_sum(0.0 if finite else 1.0) == 0
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self.nan_steps, self.nan_in_row = self.nan_steps + 1, self.nan_in_row + 1
            if self.nan_in_row >= self.config.train.max_nan_steps:
                self.step += 1  # this epoch is spent: a resumed run starts with the next one
                self.save()
                raise TrainingStopped(f"the loss was not finite in {self.nan_in_row} optimizer steps in a row (lr "
                                      f"{self.config.train.lr}); stopped at step {self.step} with checkpoint "
                                      f"{checkpoint.checkpoint_dir(self.out, self.step)}")
            return {"nan_skipped": 1.0, "loss_total": float("nan")}
        self.nan_in_row = 0
        norm = self.accelerator.clip_grad_norm_(list(self.params.values()), self.config.train.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats = self.algorithm.after_optimizer_step(self.adapter, self.step + 1)
        if self.ema is not None:
            decay = ema_decay(self.step + 1, self.config.train.ema_decay)
            soft_update(((p, self.ema[n]) for n, p in self.params.items()), decay)
            stats["ema_decay"] = decay
        return {**stats, "grad_norm": float(norm), "loss_total": float(self.reduce_sum(float(total)) / self.world)}

    # -- evaluation ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """The trained adapter holds the EMA inside the block (evaluation), its own weights after."""
        import torch

        if self.ema is None:
            yield
            return
        saved = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.ema[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(saved[n])

    def heldout(self) -> dict[str, float]:
        """The held-out rows, fixed seeds, the EMA weights: mean train reward, and the second judge's view."""
        rows = self.heldout_rows
        if not rows or not self.accelerator.is_main_process:
            return {}
        images, sources = evaluate_images(self.adapter, rows, self.config, self.kind, self.ema_weights())
        results = self.reward.submit([r.prompt for r in rows], images, sources, [r.key for r in rows]).result()
        out = {f"heldout/{k.split('/', 1)[1]}": v for k, v in reward_stats(results).items()}
        if self.monitor.config.heldout_judge is not None:
            out.update(self.monitor.heldout(self.step, [r.prompt for r in rows], images, sources,
                                            [r.value for r in results]))
        return out

    # -- state --------------------------------------------------------------------------------------------
    def save(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            from rrbench_train.rl.adapters.flux import lora_config

            named = dict(self.adapter.transformer.named_parameters())
            old = {n.replace(".default.", ".old."): named[n.replace(".default.", ".old.")].detach().clone()
                   for n in self.params}
            state = {"trained": {n: p.detach().cpu() for n, p in self.params.items()},
                     "old": {n: t.cpu() for n, t in old.items()}, "ema": self.ema,
                     "optimizer": self.optimizer.state_dict(), "sampler": self.sampler.state_dict(),
                     "algorithm": self.algorithm.state_dict(), "nan_steps": self.nan_steps,
                     "nan_in_row": self.nan_in_row, "config": self.config.to_dict()}
            checkpoint.save(self.out, self.step, state, (self.adapter.transformer,
                                                         lora_config(self.config), self.ema))
        self.accelerator.wait_for_everyone()

    def _resume(self) -> None:
        import torch

        folder = checkpoint.latest(self.out)
        if folder is None:
            return
        state = checkpoint.load(folder)
        checkpoint.check_compatible(folder, state.get("config"), self.config.to_dict())
        named = dict(self.adapter.transformer.named_parameters())
        with torch.no_grad():
            for n, t in [*state["trained"].items(), *state["old"].items()]:
                named[n].copy_(t)
        if self.ema is not None and state["ema"] is not None:
            self.ema = {n: t.to(self.accelerator.device) for n, t in state["ema"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.step, self.nan_steps, self.nan_in_row = int(state["step"]), int(state["nan_steps"]), 0

    # -- collectives --------------------------------------------------------------------------------------
    def reduce_sum(self, value: float) -> float:
        import torch

        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="sum")[0])

    def reduce_mean(self, stats: dict[str, float]) -> dict[str, float]:
        """Each statistic averaged over the processes (every process has the same keys and shard size)."""
        import torch

        if self.world == 1:
            return stats
        keys = sorted(stats)
        tensor = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
        summed = self.accelerator.reduce(tensor, reduction="sum")
        return {k: float(v) / self.world for k, v in zip(keys, summed.tolist(), strict=True)}

    def gather_objects(self, items: list[Any]) -> list[Any]:
        if self.world == 1:
            return items
        from accelerate.utils import gather_object

        return list(gather_object(items))


# ------------------------------------------------------------------------------------------------ helpers


def make_reward(config: RLConfig, kind: str) -> Reward:
    from rrbench_train.rl.reward import Reward, RewardConfig

    if not config.reward:
        raise UserError("config reward: name a reward model (reward.model: an rrbench reward model name)")
    block = {"generation": kind, **config.reward}
    return Reward(RewardConfig.from_dict(block))


def make_monitor(config: RLConfig, out: Path, is_main: bool, step: int) -> Any:
    from rrbench_train.rl.monitor import Monitor

    return Monitor(out, config.monitor, train_model=config.reward.get("model"), is_main=is_main,
                   resume_step=step)


def reward_stats(results: Sequence[RewardResult]) -> dict[str, float]:
    from rrbench_train.rl.monitor import reward_stats as stats

    return stats(results)


def reward_values(results: Sequence[RewardResult], samples: Sequence[Sample], reward: Reward) -> torch.Tensor:
    """One float per sample, NaN where the reward failed (never a number standing in for it)."""
    import torch

    config = getattr(reward, "config", None)
    if config is not None and getattr(config, "per_aspect_group_norm", False):
        from rrbench_train.rl.reward import group_normalized

        values = group_normalized(results, [f"{s.group}:{s.key}" for s in samples], config)
    else:
        values = [r.value if r.ok else None for r in results]
    return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float32)


def evaluate_images(adapter: Adapter, rows: Sequence[Row], config: RLConfig, kind: str,
                    weights: contextlib.AbstractContextManager[None] | None = None
                    ) -> tuple[list[Any], list[list[Any]] | None]:
    """Images of the trained adapter (ODE, fixed seeds per row) for evaluation; ``weights`` swaps in the EMA."""
    import torch

    images: list[Any] = []
    sources = [r.images(config.generator.resolution) for r in rows] if kind == "edit" else None
    batch = config.sampling.batch_size
    with weights or contextlib.nullcontext(), torch.no_grad():
        for start in range(0, len(rows), batch):
            part = rows[start: start + batch]
            cond = adapter.encode([r.prompt for r in part], None if sources is None else sources[start: start + batch])
            seeds = [derive_seed(config.seed, "heldout", r.key) for r in part]
            images += adapter.decode(ode_sample(adapter, cond, seeds, config.sampling.steps, "default"))
    return images, sources


def train(config: RLConfig, max_steps: int | None = None, reward: Reward | None = None, progress: bool = True) -> int:
    trainer = Trainer(config, reward)
    trainer.show_progress = progress
    try:
        return trainer.run(max_steps)
    finally:
        trainer.reward.close()
