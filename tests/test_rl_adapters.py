"""Every RL generator adapter (training/rl/adapters/) on a tiny random pipeline: its schedule and per-seed noise,
gradients reaching only the trained LoRA, its reference velocity equal to what the unmodified diffusers pipeline's
denoiser computes (captured from a real pipeline call), decoding, one NFT and one GRPO epoch through the trainer,
the saved LoRA in ``rrbench generate``, and a missing diffusers as one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from rrbench_train.rl.algorithm import OLD, TRAINED
from rrbench_train.rl.config import RLConfig, load_config
from tests import tiny_diffusers
from tests.rl_common import (
    build_rl_flux,
    generate,
    one_thread,
    plugin_env,
    register_rewards,
    tiny_config,
    write_config,
)

_one_thread = pytest.fixture(autouse=True)(one_thread)

# generator -> (tiny pipeline builder, resolution, config overrides). Qwen-Image's tiny VAE downsamples 16× and
# packs 2×2: 64 px is 4 image tokens. The editing embeddings hold the VL image tokens, hence a longer text limit.
ADAPTERS: dict[str, tuple[Callable[[Path], Path], int, dict[str, Any]]] = {
    "flux-dev": (build_rl_flux, 16, {}),
    "flux-kontext-dev": (tiny_diffusers.build_flux_kontext, 16, {}),
    "sd3.5-medium": (tiny_diffusers.build_sd3, 16, {}),
    "qwen-image": (tiny_diffusers.build_qwen_image, 64, {}),
    "qwen-image-edit": (tiny_diffusers.build_qwen_image_edit, 64, {"generator.max_sequence_length": 64}),
    "qwen-image-edit-2509": (tiny_diffusers.build_qwen_image_edit_plus, 64, {"generator.max_sequence_length": 64}),
}
EDIT = {"flux-kontext-dev", "qwen-image-edit", "qwen-image-edit-2509"}
PROMPTS = ["a photo of a cat", "a red dog on the sofa", "make it grayscale", "turn the sky into night"]


@pytest.fixture(scope="module")
def pipes(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Each generator's tiny pipeline folder, built once when first asked for."""
    built: dict[str, Path] = {}

    def folder(name: str) -> Path:
        if name not in built:
            built[name] = ADAPTERS[name][0](tmp_path_factory.mktemp(name) / "pipe")
        return built[name]

    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt file whose rows edit real photographs (scikit-image), square so a pipeline keeps their shape."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for stem, pixels in (("cat", data.chelsea()), ("astronaut", data.astronaut())):
        side = min(pixels.shape[:2])
        Image.fromarray(pixels[:side, :side]).resize((64, 64)).save(folder / f"{stem}.png")
    rows = [{"id": f"p{i}", "prompt": p, "source": [("cat.png", "astronaut.png")[i % 2]]}
            for i, p in enumerate(PROMPTS)]
    (folder / "edits.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def config_for(name: str, pipe: Path, out: Path, photos: Path, **values: Any) -> RLConfig:
    _, resolution, overrides = ADAPTERS[name]
    register_rewards()
    raw = tiny_config(pipe, out, **{"generator.name": name, "generator.resolution": resolution, "lora.rank": 2,
                                    "lora.alpha": 2, "lora.init_scale": 0.1, "sampling.steps": 2, **overrides,
                                    **values})
    if name in EDIT:
        raw["data"] = {"file": str(photos / "edits.jsonl"), "heldout": 0}
    return load_config(write_config(out / "config.yaml", raw))


def adapter_for(name: str, pipes: Callable[[str], Path], tmp_path: Path, photos: Path, **values: Any) -> Any:
    from rrbench_train.rl.adapters import build_adapter

    return build_adapter(config_for(name, pipes(name), tmp_path, photos, **values), torch.device("cpu"))


def sources_for(name: str, photos: Path, n: int) -> list[list[Image.Image]] | None:
    if name not in EDIT:
        return None
    return [[Image.open(photos / ("cat.png", "astronaut.png")[i % 2]).convert("RGB")] for i in range(n)]


# ------------------------------------------------------------------------------------------------ the adapter


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_schedule_noise_and_decoded_size(name: str, pipes: Callable[[str], Path], tmp_path: Path,
                                         photos: Path) -> None:
    adapter = adapter_for(name, pipes, tmp_path, photos)
    for steps in (2, 5):
        sigmas = adapter.sigmas(steps)
        assert sigmas.dtype == torch.float32 and sigmas.shape == (steps + 1,)
        assert 0.9 < float(sigmas[0]) <= 1.0 and float(sigmas[-1]) == 0.0
        assert bool((sigmas[1:] < sigmas[:-1]).all()), sigmas
    batch = adapter.noise([5, 6, 5])
    assert batch.dtype == torch.float32 and batch.shape[0] == 3
    assert torch.equal(batch[0], batch[2]) and not torch.equal(batch[0], batch[1])
    assert torch.equal(adapter.noise([6])[0], batch[1])  # a sample's noise ignores its batch
    assert abs(float(batch.std()) - 1.0) < 0.5
    images = adapter.decode(batch[:2])
    resolution = ADAPTERS[name][1]
    assert [(im.size, im.mode) for im in images] == [((resolution, resolution), "RGB")] * 2


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_gradients_reach_only_the_trained_adapter(name: str, pipes: Callable[[str], Path], tmp_path: Path,
                                                  photos: Path) -> None:
    adapter = adapter_for(name, pipes, tmp_path, photos)
    cond = adapter.encode(PROMPTS[:2], sources_for(name, photos, 2))
    x = adapter.noise([1, 2])
    with torch.no_grad():  # the other adapters run first, as in a loss: they must leave `default` trainable
        adapter.velocity(x, torch.tensor([0.5, 0.5]), cond, OLD)
        adapter.velocity(x, torch.tensor([0.5, 0.5]), cond, None)
    adapter.velocity(x, torch.tensor([0.7, 0.3]), cond, TRAINED).pow(2).mean().backward()
    with_grad = {n for n, p in adapter.transformer.named_parameters() if p.grad is not None}
    trained = {n for n, _ in adapter.trainable()}
    assert trained and all(".default." in n and "lora_" in n for n in trained)
    # not `old`, not the base; all of `default` but what cannot reach the image (the last block's text output)
    assert with_grad <= trained and len(with_grad) >= len(trained) - 2, trained - with_grad
    assert {n for n, p in adapter.transformer.named_parameters() if p.requires_grad} == trained
    assert any(float(p.grad.abs().sum()) > 0 for _, p in adapter.trainable() if p.grad is not None)


def pipeline_call(name: str, pipe: Any, prompt: str, source: Image.Image | None, resolution: int
                  ) -> dict[str, Any]:
    """The first denoiser call of the unmodified pipeline: the transformer's inputs and output, captured (two steps:
    Qwen-Image's terminal shift divides by zero with one)."""
    seen: dict[str, Any] = {}

    def hook(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not seen:
            seen.update(kwargs, output=output[0])

    handle = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
    common: dict[str, Any] = {"prompt": prompt, "height": resolution, "width": resolution, "num_inference_steps": 2,
                              "generator": torch.Generator("cpu").manual_seed(3), "output_type": "latent"}
    extras: dict[str, dict[str, Any]] = {
        "flux-dev": {"guidance_scale": 3.5, "max_sequence_length": 8},
        "flux-kontext-dev": {"image": source, "guidance_scale": 2.5, "max_sequence_length": 8,
                             "max_area": resolution**2, "_auto_resize": False},
        "sd3.5-medium": {"guidance_scale": 1.0, "max_sequence_length": 8},
        "qwen-image": {"true_cfg_scale": 1.0, "max_sequence_length": 8},
        "qwen-image-edit": {"image": source, "true_cfg_scale": 1.0},
        "qwen-image-edit-2509": {"image": source, "true_cfg_scale": 1.0},
    }
    extra = extras[name]
    with torch.no_grad():
        pipe(**common, **extra)
    handle.remove()
    return seen


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_the_reference_is_the_pipeline_s_denoiser_and_old_starts_as_default(
        name: str, pipes: Callable[[str], Path], tmp_path: Path, photos: Path) -> None:
    import diffusers

    # The edit pipelines give the VAE a ~1024² source whatever the output size; the adapter gives it the training
    # resolution: at 1024 px both see the same source.
    resolution = 1024 if name.startswith("qwen-image-edit") else ADAPTERS[name][1]
    adapter = adapter_for(name, pipes, tmp_path, photos, **{"generator.resolution": resolution})
    pipe = getattr(diffusers, adapter.pipeline_class).from_pretrained(pipes(name), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    source = Image.open(photos / "cat.png").convert("RGB").resize((resolution, resolution))
    seen = pipeline_call(name, pipe, PROMPTS[0], source, resolution)
    hidden = seen["hidden_states"]
    n = adapter.noise([0]).shape[1]
    x = hidden[:, :n] if name in EDIT else hidden
    sigma = seen["timestep"].float() / (1000.0 if name == "sd3.5-medium" else 1.0)  # SD3 takes σ·1000
    assert 0.9 < float(sigma[0]) <= 1.0
    cond = adapter.encode([PROMPTS[0]], [[source]] if name in EDIT else None)
    if name in EDIT:  # the source latents the pipeline appended
        torch.testing.assert_close(cond.batched["image_latents"], hidden[:, n:], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        reference = adapter.velocity(x, sigma, cond, None)
        old, trained = adapter.velocity(x, sigma, cond, OLD), adapter.velocity(x, sigma, cond, TRAINED)
    torch.testing.assert_close(reference, seen["output"][:, :n].float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(old, trained, rtol=0, atol=1e-6)
    assert float((trained - reference).abs().max()) > 1e-3  # init_scale 0.1: the LoRA moves it


# ------------------------------------------------------------------------------------------------ whole runs

_runs: dict[tuple[str, str], Path] = {}


def trained_run(name: str, algorithm: str, pipes: Callable[[str], Path], photos: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of ``algorithm`` (4 samples, 2 steps) through the trainer, once per module."""
    from rrbench_train.rl.trainer import train

    if (name, algorithm) not in _runs:
        out = tmp_path_factory.mktemp(f"{name}-{algorithm}")
        config = config_for(name, pipes(name), out, photos, **{
            "algorithm": algorithm, "sampling.group_size": 2, "sampling.groups_per_epoch": 2,
            "sampling.batch_size": 4, "train.batch_size": 4, "train.epochs": 1, "data.heldout": 0,
            "nft.kl": 0.1})
        assert train(config) == 0
        _runs[name, algorithm] = Path(config.output_dir)
    return _runs[name, algorithm]


@pytest.mark.parametrize("algorithm", ["nft", "grpo"])
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_one_epoch_trains_with_finite_losses(name: str, algorithm: str, pipes: Callable[[str], Path],
                                             photos: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = trained_run(name, algorithm, pipes, photos, tmp_path_factory)
    lines = [json.loads(x) for x in (run / "monitor.jsonl").read_text().splitlines()]
    (step,) = [x for x in lines if x["kind"] == "step"]
    assert step["step"] == 1 and math.isfinite(step["loss_total"]) and step["nan_steps"] == 0
    assert step["valid_samples"] == 4 and math.isfinite(step["grad_norm"]) and step["grad_norm"] > 0
    if algorithm == "grpo":  # the trained policy re-scores its own stored trajectory: sampling = training
        assert step["ratio_dev"] < 1e-4 and step["kl"] > 0
    assert (run / "checkpoints" / "step-000001" / "lora" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("name", ["sd3.5-medium", "qwen-image", "qwen-image-edit-2509"])
def test_the_saved_lora_loads_into_rrbench_generate(name: str, pipes: Callable[[str], Path], photos: Path,
                                                    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
                                                    ) -> None:
    lora = trained_run(name, "nft", pipes, photos, tmp_path_factory) / "checkpoints" / "step-000001" / "lora"
    variant = ["-T", "variant=edit"] if name in EDIT else []
    _, base = generate(tmp_path / "base", name, pipes(name), ADAPTERS[name][1], "-Gsteps=2", *variant)
    record, trained = generate(tmp_path / "rl", name, pipes(name), ADAPTERS[name][1], "-Gsteps=2", *variant,
                               f"-Glora={lora}")
    assert record["generator"]["settings"]["lora"]["format"] == "peft"
    images = [base, trained]
    assert images[0] != images[1]  # the trained LoRA (started at init_scale 0.1) changes the image of a seed


# ------------------------------------------------------------------------------------------------ no diffusers


def test_a_generator_without_diffusers_installed_is_one_line(tmp_path: Path, photos: Path) -> None:
    shim = tmp_path / "shim" / "diffusers"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError(\"No module named 'diffusers'\")\n")
    raw = tiny_config(tmp_path / "pipe", tmp_path, **{"generator.name": "sd3.5-medium"})
    write_config(tmp_path / "config.yaml", raw)
    env = {**plugin_env(), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(shim.parent), str(Path(__file__).parent.parent)])}
    done = subprocess.run([sys.executable, "-m", "rrbench_train.cli", "rl", "--config", str(tmp_path / "config.yaml")],
                          env=env, capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert "sd3.5-medium" in err[0] and "pip install 'rrbench[diffusers,train]'" in err[0], err


def test_edit_sources_are_center_cropped_for_generator_and_reward_alike(pipes: Callable[[str], Path], photos: Path,
                                                                         tmp_path: Path) -> None:
    """A 451 x 300 photograph reaches the adapter and the reward as its centered 300² square at the training
    resolution (the reference's PromptImageDataset), not stretched, and the same pixels for both."""
    import numpy as np
    from skimage import data

    from rrbench_train.rl.data import square
    from rrbench_train.rl.trainer import Trainer

    Image.fromarray(data.chelsea()).save(tmp_path / "wide.png")
    rows = [{"id": "w", "prompt": "Make the cat blue.", "source": ["wide.png"]},
            {"id": "v", "prompt": "Add a hat.", "source": ["wide.png"]}]
    (tmp_path / "wide.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = config_for("flux-kontext-dev", pipes("flux-kontext-dev"), tmp_path, photos, **{
        "sampling.group_size": 2, "sampling.groups_per_epoch": 1, "sampling.batch_size": 2, "train.batch_size": 2,
        "train.epochs": 1, "data.heldout": 0})
    config.data.file = str(tmp_path / "wide.jsonl")
    trainer = Trainer(config)
    seen: dict[str, list[Image.Image]] = {"adapter": [], "reward": []}
    encode, submit = trainer.adapter.encode, trainer.reward.submit

    def seen_by_adapter(prompts: Any, sources: Any) -> Any:
        seen["adapter"].extend(s[0] for s in sources or [])
        return encode(prompts, sources)

    def seen_by_reward(prompts: Any, images: Any, sources: Any, keys: Any) -> Any:
        seen["reward"].extend(s[0] for s in sources or [])
        return submit(prompts, images, sources, keys)

    trainer.adapter.encode = seen_by_adapter  # type: ignore[method-assign]
    trainer.reward.submit = seen_by_reward  # type: ignore[method-assign]
    try:
        assert trainer.run() == 0
    finally:
        trainer.reward.close()
    res = config.generator.resolution
    expected = np.asarray(square(Image.open(tmp_path / "wide.png").convert("RGB"), res))
    assert len(seen["adapter"]) == len(seen["reward"]) == 2
    for image in seen["adapter"] + seen["reward"]:
        assert image.size == (res, res) and np.array_equal(np.asarray(image), expected)
    wide = Image.open(tmp_path / "wide.png").convert("RGB")
    stretched = np.asarray(wide.resize((res, res), Image.Resampling.LANCZOS))
    assert not np.array_equal(expected, stretched)
