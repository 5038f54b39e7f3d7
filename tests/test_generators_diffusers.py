"""The diffusers generators through the plug-in API (registry -> build -> start -> generate) on tiny random-weight
pipelines built offline (tests/tiny_diffusers.py): sizes, seeding and batch invariance, settings, LoRA, bad input and
per-image failures. Faults are injected with hooks on the real tiny modules, keyed on the request's prompt."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from rrbench import cli, registry
from rrbench.generators._base import Generated, Generator, ImageRequest
from rrbench.generators._diffusers import DiffusersGenerator, sha256_file
from rrbench.types import FailureKind, Media, UserError
from tests import tiny_diffusers

# generator -> (tiny folder, -G settings that keep a CPU call short, the size they ask for)
FAMILIES: dict[str, tuple[str, dict[str, Any], tuple[int, int]]] = {
    "flux-dev": ("flux", {"width": 48, "height": 32}, (48, 32)),
    "sd3.5-medium": ("sd3", {"width": 48, "height": 32}, (48, 32)),
    "sd3.5-large": ("sd3", {"width": 32, "height": 48}, (32, 48)),
    "qwen-image": ("qwen-image", {"width": 64, "height": 32}, (64, 32)),
    # Kontext: no snapping of the source to ~1024² (the tiny VAE downsamples only 2x), output area = the size
    "flux-kontext-dev": ("flux-kontext", {"width": 48, "height": 32, "max_area": 48 * 32, "auto_resize": False},
                         (48, 32)),
    "qwen-image-edit": ("qwen-image-edit", {"width": 64, "height": 32}, (64, 32)),
    "qwen-image-edit-2509": ("qwen-image-edit-plus", {"width": 64, "height": 32}, (64, 32)),
}
EDIT = {"flux-kontext-dev", "qwen-image-edit", "qwen-image-edit-2509"}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A tiny pipeline folder per family, built once per session and only when a test asks for it."""
    built: dict[str, Path] = {}

    def folder(kind: str) -> Path:
        if kind not in built:
            built[kind] = tiny_diffusers.BUILDERS[kind](tmp_path_factory.mktemp(kind))
        return built[kind]

    return folder


@pytest.fixture(scope="session")
def sources() -> tuple[Media, Media]:
    """Two real photographs (scikit-image), small, as PNG bytes: the images to edit."""
    from skimage import data

    def png(pixels: Any) -> Media:
        buffer = io.BytesIO()
        Image.fromarray(pixels).resize((40, 30)).save(buffer, format="PNG")
        return Media.from_bytes(buffer.getvalue())

    return png(data.chelsea()), png(data.astronaut())


def build(tiny: Callable[[str], Path], name: str, **overrides: Any) -> DiffusersGenerator:
    kind, settings, _ = FAMILIES[name]
    generator = registry.get("generator", name).build(**{"path": str(tiny(kind)), "steps": 2, **settings,
                                                         **overrides})
    assert isinstance(generator, DiffusersGenerator)
    return generator


def requests(sources: Sequence[Media], *seeds: int, prompt: str = "a photo of a cat") -> list[ImageRequest]:
    return [ImageRequest(f"s{seed}", 0, seed, prompt, tuple(sources)) for seed in seeds]


def pngs(results: Sequence[Generated]) -> list[bytes]:
    assert all(r.ok for r in results), [(r.failure, r.detail) for r in results]
    return [r.png for r in results if r.png is not None]


def one_line_error(call: Callable[[], Any]) -> str:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_makes_pngs_of_the_requested_size(tiny: Callable[[str], Path], sources: tuple[Media, Media],
                                                      name: str) -> None:
    generator = build(tiny, name, batch_size=3)
    generator.start()
    batch = [*requests(sources[:1], 1, 2), *requests(sources[:1], 1, prompt="a red rocket in the blue sky")]
    first, second, third = pngs(generator.generate(batch))
    for png in (first, second, third):
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == FAMILIES[name][2]
        assert len(image.getcolors(maxcolors=4096) or ()) > 10  # an image, not a flat colour
    assert first != second  # another seed, another image
    assert first != third  # another prompt, another image
    assert generator.kinds == (("edit",) if name in EDIT else ("t2i",))


def test_an_edit_depends_on_its_source(tiny: Callable[[str], Path], sources: tuple[Media, Media]) -> None:
    generator = build(tiny, "flux-kontext-dev")
    cat, astronaut = (pngs(generator.generate(requests([source], 7)))[0] for source in sources)
    assert cat != astronaut


def test_kontext_output_follows_the_source_aspect_without_a_size(tiny: Callable[[str], Path],
                                                                  sources: tuple[Media, Media]) -> None:
    # 40x30 source, area 48*48: diffusers alone would make a square; rrbench passes the source's aspect ratio
    generator = build(tiny, "flux-kontext-dev", width=None, height=None, max_area=48 * 48)
    png = pngs(generator.generate(requests(sources[:1], 3)))[0]
    assert Image.open(io.BytesIO(png)).size == (52, 40)  # sqrt(2304 * 4/3) = 55.4, 41.6 -> multiples of 4


@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "sd3.5-large"])
def test_an_image_depends_on_its_seed_alone(tiny: Callable[[str], Path], sources: tuple[Media, Media],
                                            name: str) -> None:
    """Batch sizes 1, 2 and 3 and a second start() give byte-identical PNGs; different prompts in one batch too."""
    batch = [*requests(sources[:1], 11), *requests(sources[1:], 12, prompt="a red rocket in the blue sky"),
             *requests(sources[:1], 13, prompt="dog")]
    by_size = {}
    for size in (1, 2, 3):
        generator = build(tiny, name, batch_size=size)
        assert generator.batch_size == size
        made: list[bytes] = []
        for start in range(0, len(batch), size):
            made += pngs(generator.generate(batch[start:start + size]))
        by_size[size] = made
        generator.close()
    assert by_size[1] == by_size[2] == by_size[3]
    assert len(set(by_size[1])) == 3


def test_the_denoiser_sees_one_image_per_call(tiny: Callable[[str], Path]) -> None:
    """Batched calls change low bits (docs/generators.md); at these tiny sizes that rarely flips an 8-bit value, so
    the byte comparison above may miss a regression to batching, and this checks the cause directly."""
    generator = build(tiny, "flux-dev", batch_size=3)
    generator.start()
    batches: list[int] = []
    pipe = generator.pipe
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        assert len(pngs(generator.generate(requests([], 1, 2, 3)))) == 3
    finally:
        handle.remove()
    assert batches == [1] * 6  # 3 images x 2 steps


# ------------------------------------------------------------------------------------------- settings


def test_settings_hold_the_pipeline_defaults_and_the_overrides(tiny: Callable[[str], Path]) -> None:
    settings = build(tiny, "flux-dev", max_sequence_length=64).settings()
    assert settings["pipeline"] == "FluxPipeline"
    assert settings["steps"] == 2 and (settings["width"], settings["height"]) == (48, 32)  # -G overrides
    assert settings["guidance"] == 3.5 and settings["true_cfg_scale"] == 1.0  # FluxPipeline.__call__ defaults
    assert settings["max_sequence_length"] == 64 and settings["true_cfg"] is False
    assert settings["weights"] == {"path": str(tiny("flux").resolve())}
    assert (settings["dtype"], settings["device"], settings["images_per_call"]) == ("float32", "cpu", 1)
    assert settings["lora"] is None

    sd3 = registry.get("generator", "sd3.5-large").build().settings()
    assert (sd3["steps"], sd3["guidance"], sd3["max_sequence_length"]) == (28, 7.0, 256)
    assert sd3["weights"]["hub_id"] == "stabilityai/stable-diffusion-3.5-large" and sd3["weights"]["revision"] is None

    qwen = registry.get("generator", "qwen-image").build().settings()
    assert (qwen["steps"], qwen["true_cfg_scale"], qwen["negative_prompt"], qwen["true_cfg"]) == (50, 4.0, " ", True)
    qwen_off = registry.get("generator", "qwen-image").build(negative_prompt=None).settings()
    assert qwen_off["true_cfg"] is False and qwen_off["negative_prompt"] is None

    kontext = registry.get("generator", "flux-kontext-dev").build().settings()
    assert (kontext["max_area"], kontext["auto_resize"], kontext["width"]) == (1024**2, True, None)
    assert "_auto_resize" not in kontext


def test_a_passed_through_setting_reaches_the_pipeline(tiny: Callable[[str], Path]) -> None:
    request = requests([], 5)
    default = pngs(build(tiny, "flux-dev").generate(request))
    shorter = pngs(build(tiny, "flux-dev", max_sequence_length=16).generate(request))
    assert default != shorter


def test_a_changed_setting_changes_the_fingerprint(tiny: Callable[[str], Path]) -> None:
    assert build(tiny, "flux-dev").fingerprint() != build(tiny, "flux-dev", steps=3).fingerprint()
    assert build(tiny, "flux-dev").fingerprint() == build(tiny, "flux-dev").fingerprint()


# ------------------------------------------------------------------------------------------- LoRA


@pytest.fixture(scope="session")
def loras(tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One LoRA for the tiny Flux transformer (rank 4, alpha 8) as a PEFT folder and as a diffusers file (which
    carries no alpha, so diffusers takes alpha = rank), and a LoRA of the tiny Qwen-Image transformer."""
    from diffusers import FluxTransformer2DModel, QwenImageTransformer2DModel

    out = tmp_path_factory.mktemp("loras")
    flux = FluxTransformer2DModel.from_pretrained(tiny("flux") / "transformer")
    model = tiny_diffusers.peft_lora(flux, ["to_q", "to_k", "to_v", "to_out.0"], rank=4, alpha=8)
    qwen = QwenImageTransformer2DModel.from_pretrained(tiny("qwen-image") / "transformer")
    foreign = tiny_diffusers.peft_lora(qwen, ["img_mod.1", "txt_mod.1"])
    return {"peft": tiny_diffusers.write_peft_folder(model, out / "peft"),
            "file": tiny_diffusers.write_diffusers_lora(model, out / "file"),
            "qwen": tiny_diffusers.write_diffusers_lora(foreign, out / "qwen", "QwenImagePipeline")}


def test_a_lora_changes_the_image_and_is_recorded(tiny: Callable[[str], Path], loras: dict[str, Path]) -> None:
    request = requests([], 21)
    base = pngs(build(tiny, "flux-dev").generate(request))
    peft = build(tiny, "flux-dev", lora=str(loras["peft"]))
    file = build(tiny, "flux-dev", lora=str(loras["file"]), lora_scale=2.0)
    off = build(tiny, "flux-dev", lora=str(loras["file"]), lora_scale=0.0)
    with_peft, with_file, with_off = (pngs(g.generate(request)) for g in (peft, file, off))
    assert with_peft != base
    assert with_file == with_peft  # alpha/rank 8/4 from the PEFT config = scale 2 on the alpha-less file
    assert with_off == base
    recorded = peft.settings()["lora"]
    assert recorded["format"] == "peft" and recorded["path"] == str(loras["peft"].resolve())
    assert recorded["sha256"] == hashlib.sha256((loras["peft"] / "adapter_model.safetensors").read_bytes()).hexdigest()
    recorded = file.settings()["lora"]
    assert recorded["format"] == "diffusers"
    assert recorded["sha256"] == hashlib.sha256(loras["file"].read_bytes()).hexdigest()
    assert file.settings()["lora_scale"] == 2.0
    assert peft.fingerprint() != build(tiny, "flux-dev").fingerprint()


def test_a_lora_that_does_not_fit_is_refused(tiny: Callable[[str], Path], loras: dict[str, Path],
                                             tmp_path: Path) -> None:
    def start(lora: Path) -> str:
        return one_line_error(build(tiny, "flux-dev", lora=str(lora)).start)

    assert "does not fit this FluxPipeline" in start(loras["qwen"])
    assert "img_mod.1" in start(loras["qwen"])
    assert "is not a LoRA" in start(tiny("flux") / "transformer" / "diffusion_pytorch_model.safetensors")
    garbage = tmp_path / "lora.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    assert "is not a safetensors file" in start(garbage)
    assert start(tmp_path / "missing.safetensors").startswith(f"LoRA not found: {tmp_path / 'missing.safetensors'}")
    half = tmp_path / "half"
    half.mkdir()
    (half / "adapter_config.json").write_text("{}")
    assert "has no adapter_model.safetensors" in start(half)


def test_a_lora_with_keys_for_missing_modules_is_refused(tiny: Callable[[str], Path], loras: dict[str, Path],
                                                        tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(loras["file"]))
    some = next(k for k in state if k.endswith("lora_A.weight"))
    for key in (some, some.replace("lora_A", "lora_B")):  # a copy for an 8th block, which this model lacks
        state[key.replace("transformer_blocks.0", "transformer_blocks.7")] = state[key].clone()
    save_file(state, str(tmp_path / "partial.safetensors"))
    message = one_line_error(build(tiny, "flux-dev", lora=str(tmp_path / "partial.safetensors")).start)
    assert "does not fit this FluxPipeline" in message and "transformer_blocks.7" in message


# ------------------------------------------------------------------------------------------- bad input


def test_missing_weights_name_the_path_and_the_fetch_command(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    missing = tmp_path / "FLUX.1-dev"
    message = one_line_error(build(tiny, "flux-dev", path=str(missing)).start)
    assert message.startswith(f"pipeline folder not found: {missing}")
    assert f"`hf download black-forest-labs/FLUX.1-dev --local-dir {missing}`" in message
    assert "-G path=" in message
    message = one_line_error(build(tiny, "qwen-image", path="nobody/not-cached").start)
    assert "nobody/not-cached is not in the local Hugging Face cache" in message
    assert "`hf download nobody/not-cached`" in message and "-G path=DIR" in message
    message = one_line_error(build(tiny, "flux-dev", path=str(tmp_path)).start)
    assert message.startswith(f"{tmp_path} has no model_index.json")
    assert build(tiny, "flux-dev", path=str(missing)).needs()[0].check().status == "FAIL"
    assert build(tiny, "flux-dev").needs()[0].check().status == "ok"


def test_a_cached_hub_id_loads_and_records_its_commit(tiny: Callable[[str], Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--rrbench-test--tiny-flux"
    shutil.copytree(tiny("flux"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    generator = build(tiny, "flux-dev", path="rrbench-test/tiny-flux")
    assert generator.settings()["weights"] == {"hub_id": "rrbench-test/tiny-flux", "revision": commit}
    assert pngs(generator.generate(requests([], 1)))
    other = build(tiny, "flux-dev", path="rrbench-test/tiny-flux", revision="v2")
    assert "`hf download rrbench-test/tiny-flux --revision v2`" in one_line_error(other.start)


def test_a_folder_missing_a_component_file_is_a_user_error(tiny: Callable[[str], Path], tmp_path: Path) -> None:
    broken = tmp_path / "flux"
    shutil.copytree(tiny("flux"), broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    message = one_line_error(build(tiny, "flux-dev", path=str(broken)).start)
    assert message.startswith(f"cannot load FluxPipeline from {broken}: ")
    assert message.endswith(f"(fetch it with `hf download black-forest-labs/FLUX.1-dev --local-dir {broken}`)")


def test_a_folder_of_another_pipeline_is_a_user_error(tiny: Callable[[str], Path]) -> None:
    message = one_line_error(build(tiny, "flux-dev", path=str(tiny("sd3"))).start)
    assert message.startswith(f"{tiny('sd3')} holds a StableDiffusion3Pipeline pipeline; generator 'flux-dev' "
                              "needs a FluxPipeline")


@pytest.mark.parametrize(("args", "expected"), [
    ({"foo": 1}, "generator 'flux-dev' has no argument 'foo' (-G; FluxPipeline takes: "),
    ({"prompt": "x"}, "-G prompt cannot be set; rrbench sets it for each image"),
    ({"generator": 3}, "-G generator cannot be set"),
    ({"num_inference_steps": 3}, "use -G steps= rather than -G num_inference_steps="),
    ({"dtype": "int8"}, "-G dtype must be auto, bf16, fp16 or fp32"),
    ({"batch_size": 0}, "-G batch_size must be a positive integer"),
    ({"lora_scale": "high"}, "-G lora_scale must be a number"),
    ({"sigmas": {1, 2}}, "-G sigmas must be a JSON value"),
    ({"steps": "many"}, "-G steps must be a positive integer, got 'many'"),
    ({"width": 0}, "-G width must be a positive integer, got 0"),
    ({"max_sequence_length": 1.5}, "-G max_sequence_length must be a positive integer"),
    ({"guidance": "high"}, "-G guidance must be a number, got 'high'"),
    ({"negative_prompt": 3}, "-G negative_prompt must be text"),
])
def test_bad_settings_fail_at_build(args: dict[str, Any], expected: str) -> None:
    entry = registry.get("generator", "flux-dev")
    assert expected in one_line_error(lambda: entry.build(**args))


def test_unknown_keys_are_checked_against_each_pipeline() -> None:
    kontext = registry.get("generator", "flux-kontext-dev")
    sd3 = registry.get("generator", "sd3.5-medium")
    assert kontext.build(max_area=512**2).settings()["max_area"] == 512**2
    assert "has no argument 'max_area'" in one_line_error(lambda: sd3.build(max_area=512**2))
    assert sd3.build(skip_guidance_layers=[7, 8, 9]).settings()["skip_guidance_layers"] == [7, 8, 9]
    assert "use -G auto_resize=" in one_line_error(lambda: kontext.build(_auto_resize=False))
    assert "-G auto_resize must be true or false" in one_line_error(lambda: kontext.build(auto_resize="no"))


def test_a_gpu_setting_without_a_gpu_is_a_user_error(tiny: Callable[[str], Path]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert "cpu_offload=true needs a GPU" in one_line_error(build(tiny, "flux-dev", cpu_offload=True).start)
    assert "-G device=cuda, and torch sees no GPU" in one_line_error(build(tiny, "flux-dev", device="cuda").start)


def test_kinds_are_checked_both_ways() -> None:
    edit = registry.get("generator", "qwen-image-edit").build()
    t2i = registry.get("generator", "flux-dev").build()
    edit.check_kind("edit")
    t2i.check_kind("t2i")
    assert "generator 'qwen-image-edit' makes edit images" in one_line_error(lambda: edit.check_kind("t2i"))
    assert "needs an image-editing generator" in one_line_error(lambda: t2i.check_kind("edit"))


def test_listing_generators_imports_neither_torch_nor_diffusers() -> None:
    code = ("import sys; from rrbench import registry; names = [e.name for e in registry.entries('generator')]; "
            "assert 'flux-dev' in names and 'qwen-image-edit-2509' in names, names; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------------------- failures


class Faults:
    """Hooks on the tiny pipeline's own modules that misbehave for chosen prompts only: the transformer's
    pre-hook recognises a request by its prompt embedding (computed by the same pipeline), then raises or
    poisons that image's denoiser output or VAE decode."""

    def __init__(self, pipe: Any, effects: dict[str, str]) -> None:
        self.armed: str | None = None
        with torch.no_grad():  # as inside the pipeline: with autograd on, the encoders round differently
            self.targets = {effect: pipe.encode_prompt(prompt=prompt, prompt_2=None, max_sequence_length=512)[0]
                            for prompt, effect in effects.items()}
        self.handles = [
            pipe.transformer.register_forward_pre_hook(self.recognise, with_kwargs=True),
            pipe.transformer.register_forward_hook(self.denoiser),
            pipe.vae.decoder.register_forward_hook(self.decoder),
        ]

    def recognise(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        embeds = kwargs["encoder_hidden_states"]
        self.armed = next((e for e, t in self.targets.items() if t.shape == embeds.shape and torch.equal(t, embeds)),
                          None)
        if self.armed == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        if self.armed == "oom-runtime":
            raise RuntimeError("CUDA error: out of memory (injected)")
        if self.armed == "error":
            raise ValueError("injected fault")

    def denoiser(self, module: Any, args: Any, output: Any) -> Any:
        return (torch.full_like(output[0], float("nan")),) if self.armed == "nan" else None

    def decoder(self, module: Any, args: Any, output: torch.Tensor) -> Any:
        return torch.full_like(output, -1.0) if self.armed == "black" else None  # -1 decodes to 0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.fixture
def faulty(tiny: Callable[[str], Path]) -> Iterator[Callable[[dict[str, str]], Generator]]:
    made: list[Faults] = []

    def make(effects: dict[str, str]) -> Generator:
        generator = build(tiny, "flux-dev", batch_size=8)
        generator.start()
        made.append(Faults(generator.pipe, effects))
        return generator

    yield make
    for faults in made:
        faults.remove()


def test_a_failing_image_never_fails_its_batch_mates(tiny: Callable[[str], Path],
                                                     faulty: Callable[[dict[str, str]], Generator]) -> None:
    prompts = ["a photo of a cat", "oom", "a red rocket", "memory", "nan", "black", "boom", "dog"]
    effects = {"oom": "oom", "memory": "oom-runtime", "nan": "nan", "black": "black", "boom": "error"}
    batch = [ImageRequest(f"s{i}", 0, 100 + i, prompt) for i, prompt in enumerate(prompts)]
    results = faulty(effects).generate(batch)
    assert [r.failure for r in results] == [None, FailureKind.OOM, None, FailureKind.OOM,
                                            FailureKind.INVALID_IMAGE, FailureKind.INVALID_IMAGE,
                                            FailureKind.ERROR, None]
    assert results[1].detail is not None and results[1].detail.startswith("out of memory: CUDA out of memory.")
    assert results[4].detail is not None and "NaN or inf" in results[4].detail
    assert results[5].detail == "the pipeline returned an all-black image"
    assert results[6].detail == "ValueError: injected fault"
    clean = build(tiny, "flux-dev").generate([batch[0], batch[2], batch[7]])
    assert [results[0].png, results[2].png, results[7].png] == pngs(clean)  # batch-mates untouched


def test_an_unreadable_or_missing_source_is_that_image_s_data_failure(tiny: Callable[[str], Path],
                                                                      sources: tuple[Media, Media]) -> None:
    generator = build(tiny, "flux-kontext-dev", batch_size=3)
    broken = Media.from_bytes(b"\x89PNG\r\n\x1a\n not really", format="png")
    batch = [*requests(sources[:1], 1), *requests([broken], 2), *requests([], 3)]
    results = generator.generate(batch)
    assert [r.failure for r in results] == [None, FailureKind.DATA, FailureKind.DATA]
    assert results[2].detail == "generator 'flux-kontext-dev' edits an image, and sample s3 has none"


# --------------------------------------------------------------------------------------------------- through the CLI


def _cli_args(name: str, folder: Path, out: Path, *extra: str) -> list[str]:
    _, settings, _ = FAMILIES[name]
    flags = [f"-G{k}={json.dumps(v)}" for k, v in settings.items()]
    variant = ["-T", "variant=edit"] if name in EDIT else []
    return ["generate", "--task", "sanity-gen", *variant, "--generator", name, f"-Gpath={folder}", "-Gsteps=2",
            *flags, "--limit", "2", "-T", "images_per_prompt=1", "--output", str(out), "--quiet", *extra]


@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "sd3.5-large"])  # sd3.5-large: SD3's folder again
def test_rrbench_generate_end_to_end_with_each_family(name: str, tiny: Callable[[str], Path], tmp_path: Path) -> None:
    assert cli.main(_cli_args(name, tiny(FAMILIES[name][0]), tmp_path)) == 0
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["counts"]["failed"] == 0
    assert record["generator"]["settings"]["steps"] == 2
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    for line in lines:
        (image,) = line["candidates"]
        with Image.open(run_dir / image["path"]) as img:
            assert (img.format, img.size) == ("PNG", FAMILIES[name][2])


def test_a_lora_given_on_the_command_line_changes_the_images_and_is_recorded(
        tiny: Callable[[str], Path], loras: dict[str, Path], tmp_path: Path) -> None:
    folder = tiny("flux")
    assert cli.main(_cli_args("flux-dev", folder, tmp_path / "base")) == 0
    assert cli.main(_cli_args("flux-dev", folder, tmp_path / "lora", f"-Glora={loras['peft']}")) == 0
    (base,), (tuned,) = (tmp_path / "base").iterdir(), (tmp_path / "lora").iterdir()

    def keys(run_dir: Path) -> list[str]:
        lines = (run_dir / "samples.jsonl").read_text().splitlines()
        return sorted(json.loads(x)["candidates"][0]["key"] for x in lines)

    assert set(keys(base)).isdisjoint(keys(tuned))
    lora = json.loads((tuned / "run.json").read_text())["generator"]["settings"]["lora"]
    assert lora["format"] == "peft" and lora["sha256"] == sha256_file(loras["peft"] / "adapter_model.safetensors")
    assert cli.main(_cli_args("flux-dev", folder, tmp_path / "bad", f"-Glora={tmp_path / 'nowhere'}")) == 2
