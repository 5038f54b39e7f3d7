"""Shared by the RL tests: a tiny Flux pipeline folder, a prompt file, a tiny RL config, and the ``brightness``
reward (tests/plugins/rl_rewards.py) registered in this process and named for subprocesses."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PLUGINS

RL_PLUGIN = str(Path(__file__).parent / "plugins" / "rl_rewards.py")
PROMPTS = ["a photo of a cat", "a red dog on the sofa", "a blue cup of coffee", "an astronaut in the sky",
           "a green rocket", "the black cat at night", "a painting of a dog", "a red cup", "a blue sky",
           "a photo of a green sofa", "a rocket in the night sky", "a cat on the cup"]


def register_rewards() -> None:
    """The ``brightness`` reward in this process (once)."""
    if "rrbench_plugin_rl_rewards" not in sys.modules:
        from rrbench.registry import _import_plugin

        _import_plugin(RL_PLUGIN, "tests")


def plugin_env() -> dict[str, str]:
    """The environment of a subprocess that needs the test reward models."""
    return {**os.environ, "RRBENCH_PLUGINS": f"{PLUGINS},{RL_PLUGIN}", "PYTHONUNBUFFERED": "1"}


def build_rl_flux(out: Path) -> Path:
    """tests.tiny_diffusers' Flux with one VAE latent channel (transformer ``in_channels`` 4): 64 latent numbers
    per 16-px image, the smallest pipeline the loop runs on. Measured: its random VAE's group norms leave the mean
    pixel value almost independent of the latents (an SGD step of lr 1 moves it by ~1e-6), so ``brightness`` is
    no learnable reward for NFT on it; the NFT learning-signal tests use a toy flow (test_rl_nft.ToyFlow) and, on
    this pipeline, ``red_minus_blue``, which the latents move (measured: corr 0.41 with the mean latent)."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    from tests.tiny_diffusers import SEED, build_flux

    build_flux(out)
    torch.manual_seed(SEED)
    FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                           num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                           guidance_embeds=True, axes_dims_rope=[4, 4, 8]).save_pretrained(out / "transformer")
    torch.manual_seed(SEED)
    AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1, latent_channels=1,
                  norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                  scaling_factor=1.5035, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2).save_pretrained(out / "vae")
    return out


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rl_flux(tmp_path_factory.mktemp("tiny-flux") / "pipe")


def prompt_file(folder: Path, prompts: list[str] = PROMPTS) -> Path:
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i:02d}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    return path


def tiny_config(pipe: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    """A whole RL config (as YAML would give it) sized for two CPU cores: 16 px, 4 steps, rank 4."""
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "algorithm": "nft", "seed": 0, "output_dir": str(out / "run"),
        "generator": {"name": "flux-dev", "path": str(pipe), "resolution": 16, "max_sequence_length": 8},
        "lora": {"rank": 4, "alpha": 4, "init_scale": 0.0},
        "reward": {"model": "brightness", "batch_size": 16},
        "reward_retry": {"retries": 1, "pause_s": 0.0},
        "data": {"file": str(prompt_file(out)), "heldout": 4},
        "sampling": {"group_size": 4, "groups_per_epoch": 2, "steps": 4, "batch_size": 8},
        "train": {"epochs": 2, "lr": 1e-3, "batch_size": 8, "save_every": 1, "ema_decay": 0.0},
        "nft": {"kl": 0.0},
    }
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config))
    return path


def one_thread() -> Iterator[None]:
    """Two threads on two busy cores made each tiny matmul ~100x slower (measured): the RL tests use one. Test files
    make it an autouse fixture of their own."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generate(out: Path, generator: str, pipe: Path, size: int, *options: str) -> tuple[dict[str, Any], list[bytes]]:
    """``rrbench generate`` of 2 sanity-gen prompts (one image each) at ``size`` px: its run.json and its images'
    pixels, after checking every image was made. ``options``: more flags (``-Glora=...``, ``-Gsteps=...``)."""
    from PIL import Image

    from rrbench import cli

    args = ["generate", "--task", "sanity-gen", "--generator", generator, f"-Gpath={pipe}", f"-Gwidth={size}",
            f"-Gheight={size}", "--limit", "2", "-T", "images_per_prompt=1", "--output", str(out), "--quiet",
            *options]
    assert cli.main(args) == 0
    (run_dir,) = out.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["counts"]["failed"] == 0
    paths = sorted(run_dir.rglob("*.png"))
    assert len(paths) == 2
    return record, [Image.open(p).tobytes() for p in paths]


# ------------------------------------------------------------------------------- the learning-signal tests


def shuffled_reward(config: Any, seed: int) -> Any:
    """The config's own reward with each batch's results permuted: the same values, unrelated to the images (the
    control run of the learning-signal tests)."""
    import concurrent.futures as cf

    import torch

    from rrbench_train.rl.reward import Reward, RewardConfig, RewardResult

    class Shuffled(Reward):
        def submit(self, prompts: Sequence[str], images: Sequence[Any], sources: Sequence[Sequence[Any]] | None,
                   keys: Sequence[str]) -> cf.Future[list[RewardResult]]:
            perm = torch.randperm(len(images), generator=gen).tolist()
            out: cf.Future[list[RewardResult]] = cf.Future()
            inner = super().submit(prompts, images, sources, keys)
            inner.add_done_callback(lambda f: out.set_result([f.result()[i] for i in perm]))
            return out

    gen = torch.Generator().manual_seed(seed)
    return Shuffled(RewardConfig.from_dict({"generation": "t2i", **config.reward}))


def heldout_red_minus_blue(trainer: Any, seeds_per_row: int = 8) -> float:
    """Mean red − blue of the trained adapter's ODE images on the held-out rows, several fixed seeds each."""
    import numpy as np

    from rrbench_train.rl.nft import ode_sample

    prompts = [r.prompt for r in trainer.heldout_rows for _ in range(seeds_per_row)]
    x0 = ode_sample(trainer.adapter, trainer.adapter.encode(prompts, None), list(range(len(prompts))),
                    trainer.config.sampling.steps, "default")
    pixels = [np.asarray(im.convert("RGB"), dtype=np.float64) / 255 for im in trainer.adapter.decode(x0)]
    return float(np.mean([p[..., 0].mean() - p[..., 2].mean() for p in pixels]))


def learnt_and_control(config_for: Callable[[str], Any]) -> tuple[float, float, float]:
    """Held-out red − blue (start, after training, after the same training on shuffled rewards): one trainer run
    per config ``config_for("learnt")`` and ``config_for("control")``."""
    from rrbench_train.rl.trainer import Trainer

    results = {}
    for name in ("learnt", "control"):
        config = config_for(name)
        trainer = Trainer(config, shuffled_reward(config, seed=1) if name == "control" else None)
        try:
            before = heldout_red_minus_blue(trainer)
            trainer.run()
            results[name] = (before, heldout_red_minus_blue(trainer))
        finally:
            trainer.reward.close()
    return results["learnt"][0], results["learnt"][1], results["control"][1]


def loss_with(algorithm: Any, adapter: Any, rollout: Any, advantages: Any, step: int, unit: int,
              prepared: Any) -> tuple[Any, dict[str, float], list[Any]]:
    """One loss and its backward from fresh gradients: (per-sample losses, statistics, the trained gradients)."""
    for _, param in adapter.trainable():
        param.grad = None
    per, stats = algorithm.loss(adapter, rollout, advantages, step=step, unit=unit, prepared=prepared)
    per.sum().backward()
    return per.detach(), stats, [p.grad.clone() for _, p in adapter.trainable() if p.grad is not None]


def assert_prepared_is_inline(algorithm: Any, adapter: Any, rollout: Any, advantages: Any, step: int,
                              unit: int) -> dict[str, Any]:
    """The loss from ``prepare``'s result equals the loss computing it itself, bit for bit: losses, statistics,
    gradients; ``prepare`` keeps no graph. Returns what it prepared."""
    import torch

    inline = loss_with(algorithm, adapter, rollout, advantages, step, unit, None)
    prepared = algorithm.prepare(adapter, rollout, step, unit)
    assert not any(t.requires_grad for t in prepared.values())
    ahead = loss_with(algorithm, adapter, rollout, advantages, step, unit, prepared)
    assert torch.equal(inline[0], ahead[0]) and inline[1] == ahead[1] and inline[1]["kl"] > 0
    assert len(inline[2]) == len(ahead[2]) > 0
    assert all(torch.equal(a, b) for a, b in zip(inline[2], ahead[2], strict=True))
    return dict(prepared)
