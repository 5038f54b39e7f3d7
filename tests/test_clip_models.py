"""The CLIP-family scorers (clipscore, pickscore, hpsv2, hpsv2.1, laion-aesthetic) on tiny random-weight
checkpoints in their released layouts (see ``tests/fixtures/tiny_clip.py``).

Each score is checked against a computation written from the release's own code: transformers' full CLIP forward
(``logits_per_image``) for CLIPScore and PickScore, open_clip's ``VisionTransformer`` / ``TextTransformer`` forward
on the raw HPS state dict (``nn.MultiheadAttention`` semantics, causal mask, argmax pooling) for HPSv2, and the
aesthetic repo's numpy ``normalized`` + MLP for the LAION predictor. Preprocessing is checked against pipelines
written here from each reference with its constants.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rrbench import cli, registry
from rrbench.models import _clip, clipscore, hpsv2, laion_aesthetic, pickscore
from rrbench.types import Media, Query, UserError
from tests.conftest import rrbench
from tests.fixtures import tiny_clip

NAMES = ("clipscore", "pickscore", "hpsv2", "hpsv2.1", "laion-aesthetic")


@dataclass(frozen=True)
class Checkpoints:
    clip: Path
    pick: Path
    pick_processor: Path
    hps: Path
    hps_tokenizer: Path
    aesthetic: Path

    def args(self, name: str) -> dict[str, str]:
        """The -M arguments that point a model at its tiny checkpoint."""
        return {
            "clipscore": {"path": str(self.clip)},
            "pickscore": {"path": str(self.pick), "processor": str(self.pick_processor)},
            "hpsv2": {"path": str(self.hps), "tokenizer": str(self.hps_tokenizer)},
            "hpsv2.1": {"path": str(self.hps), "tokenizer": str(self.hps_tokenizer)},
            "laion-aesthetic": {"path": str(self.aesthetic)},
        }[name]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    root = tmp_path_factory.mktemp("tiny-clip")
    pick, processor = tiny_clip.build_pickscore(root)
    hps, tokenizer = tiny_clip.build_hps(root)
    return Checkpoints(tiny_clip.build_clipscore(root), pick, processor, hps, tokenizer,
                       tiny_clip.build_aesthetic(root))


@pytest.fixture(scope="module")
def models(checkpoints: Checkpoints) -> dict[str, Any]:
    out = {}
    for name in NAMES:
        model = registry.get("model", name).build(device="cpu", **checkpoints.args(name))
        asyncio.run(model.astart())
        out[name] = model
    return out


def _media(seed: int, size: tuple[int, int] = (300, 200)) -> Media:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return Media.from_bytes(buffer.getvalue())


def _queries(n: int = 4) -> list[Query]:
    prompts = ["a photo of a cat", "an astronaut with a red rocket in the blue sky", "a cup of coffee",
               "coins on a table", "make it grayscale", "the camera man", "flip the image", "chelsea on the sofa"]
    return [Query(prompts[i % 8], (_media(20 + i, (180 + 23 * i, 240 - 9 * i)),)) for i in range(n)]


# ----------------------------------------------------------------------------------------------- constants


def test_constants_match_the_releases() -> None:
    # OpenAI clip/clip.py _transform Normalize(...); open_clip constants.py OPENAI_DATASET_MEAN/STD;
    # preprocessor_config.json of openai/clip-vit-large-patch14 and laion/CLIP-ViT-H-14-laion2B-s32B-b79K.
    assert _clip.CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert _clip.CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    assert _clip.CONTEXT_LENGTH == 77  # open_clip context_length; PickScore card max_length=77
    # torchmetrics functional/multimodal/clip_score.py: 100 * cosine, clipped at 0, openai/clip-vit-large-patch14.
    assert clipscore.WEIGHT == 100.0 and clipscore.HUB_ID == "openai/clip-vit-large-patch14"
    assert clipscore.CLIPScore.transform_mode == "crop-floor"
    # PickScore_v1 model card: processor laion/CLIP-ViT-H-14-laion2B-s32B-b79K, model yuvalkirstain/PickScore_v1.
    assert (pickscore.HUB_ID, pickscore.PROCESSOR_ID) == ("yuvalkirstain/PickScore_v1",
                                                          "laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    assert pickscore.PickScore.transform_mode == "crop-floor"
    # HPSv2 hpsv2/utils.py hps_version_map; open_clip model_configs/ViT-H-14.json (head_width 80, text 1024 / 16).
    assert hpsv2.CHECKPOINTS == {"hpsv2": "HPS_v2_compressed.pt", "hpsv2.1": "HPS_v2.1_compressed.pt"}
    assert hpsv2.HUB_ID == "xswu/HPSv2" and hpsv2.VISION_HEAD_WIDTH == 80 and hpsv2.TEXT_HEAD_WIDTH == 64
    assert hpsv2.ACTIVATION == "gelu" and hpsv2.LAYER_NORM_EPS == 1e-5
    assert hpsv2.HPSv2.transform_mode == "pad"  # create_model_and_transforms(light_augmentation=True)
    # improved-aesthetic-predictor simple_inference.py: MLP(768), Linear 1024-128-64-16-1, dropouts 0.2, 0.2, 0.1.
    assert laion_aesthetic.HEAD == "sac+logos+ava1-l14-linearMSE.pth"
    assert laion_aesthetic.MLP_SIZES == (1024, 128, 64, 16, 1) and laion_aesthetic.DROPOUTS == (0.2, 0.2, 0.1)
    assert laion_aesthetic.CLIP_ID == "openai/clip-vit-large-patch14"  # clip.load("ViT-L/14")
    assert laion_aesthetic.LaionAesthetic.transform_mode == "crop-round"  # clip/clip.py _transform


def test_ls_models_names_extra_and_paper() -> None:
    papers = {"clipscore": "arXiv 2104.08718", "pickscore": "arXiv 2305.01569", "hpsv2": "arXiv 2306.09341",
              "hpsv2.1": "arXiv 2306.09341", "laion-aesthetic": "arXiv 2210.08402"}
    for name, paper in papers.items():
        entry = registry.get("model", name)
        assert entry.extra == "transformers" and entry.info["paper"] == paper


# ----------------------------------------------------------------------------------------------- preprocessing

# 303 x 200: the short side goes to 224, the long one to int(224 * 303 / 200) = 339; the crop leaves 115 columns,
# so torchvision's int(round(57.5)) = 58 and transformers' 115 // 2 = 57 differ by one.
ODD = (303, 200)


def _normalise(img: Image.Image) -> np.ndarray:
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    return (pixels - mean) / std


def test_crop_round_is_openai_clips_transform() -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    img = _media(1, ODD).image()
    reference = transforms.Compose([  # clip/clip.py _transform(224)
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])(img)
    got = _clip.ImageTransform(224, "crop-round")(img)
    assert got.shape == (3, 224, 224)
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)
    by_hand = _normalise(img.resize((339, 224), Image.Resampling.BICUBIC).crop((58, 0, 282, 224)))
    np.testing.assert_allclose(got.numpy().transpose(1, 2, 0), by_hand, atol=1e-5)


def test_crop_floor_is_transformers_clip_image_processor() -> None:
    img = _media(2, ODD).image()
    got = _clip.ImageTransform(224, "crop-floor")(img).numpy().transpose(1, 2, 0)
    by_hand = _normalise(img.resize((339, 224), Image.Resampling.BICUBIC).crop((57, 0, 281, 224)))
    np.testing.assert_allclose(got, by_hand, atol=1e-5)
    from transformers import CLIPImageProcessorPil  # the PIL processor the references ran, as transformers 5 ships it

    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    reference = processor(images=[img], return_tensors="pt")["pixel_values"][0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(got, reference, atol=1e-4)


def test_pad_is_hpsv2s_resize_max_size() -> None:
    tf = pytest.importorskip("torchvision.transforms.functional")
    img = _media(3, ODD).image()
    got = _clip.ImageTransform(224, "pad")(img)
    # open_clip transform.py ResizeMaxSize(224, fill=0): scale = 224 / 303, new (h, w) = (round(147.85), 224)
    resized = tf.resize(img, [148, 224], tf.InterpolationMode.BICUBIC)
    padded = tf.pad(resized, padding=[0, 38, 0, 38], fill=0)  # pad_h = 76: [left, top, right, bottom]
    reference = tf.normalize(tf.to_tensor(padded), (0.48145466, 0.4578275, 0.40821073),
                             (0.26862954, 0.26130258, 0.27577711))
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)
    black = (np.zeros(3, np.float32) - np.array(_clip.CLIP_MEAN, np.float32)) / np.array(_clip.CLIP_STD, np.float32)
    np.testing.assert_allclose(got[:, 0, 0].numpy(), black, atol=1e-6)  # the padding is black before normalising
    # a square image already at the size is left as is; a non-square one at the size is still padded
    square = _clip.ImageTransform(32, "pad")(Image.new("RGB", (32, 32), (255, 0, 0)))
    tall = _clip.ImageTransform(32, "pad")(Image.new("RGB", (20, 32), (255, 0, 0)))
    assert square.shape == tall.shape == (3, 32, 32) and float(tall[0, 0, 0]) < 0 < float(tall[0, 0, 16])


def test_text_is_truncated_to_77_tokens_keeping_end_of_text(models: dict[str, Any]) -> None:
    encoder = models["hpsv2"].encoder
    long_prompt = "a photo of a cat " * 40
    ids = encoder.tokenizer([long_prompt], padding=True, truncation=True, max_length=_clip.CONTEXT_LENGTH)["input_ids"]
    assert len(ids[0]) == 77 and ids[0][-1] == encoder.tokenizer.eos_token_id
    (score,) = models["hpsv2"].score([Query(long_prompt, (_media(5),))])
    assert score.ok  # position embeddings hold 77 tokens: a longer prompt would fail if not truncated


# ----------------------------------------------------------------------------------------------- scores


def _pixels(model: Any, queries: list[Query]) -> torch.Tensor:
    return torch.stack([model.transform(q.candidates[0].image()) for q in queries])


def _clip_logits(model: Any, queries: list[Query], prompts: list[str]) -> torch.Tensor:
    """transformers' full CLIP forward: logits_per_image = logit_scale.exp() * cos (the diagonal pairs them)."""
    encoder = model.encoder
    text = encoder.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = encoder.model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                            pixel_values=_pixels(model, queries))
    return out.logits_per_image.diagonal()


def test_clipscore_is_100_cosine_clipped_at_zero(models: dict[str, Any], checkpoints: Checkpoints) -> None:
    model, queries = models["clipscore"], _queries(8)
    got = np.array([j.scores[0] for j in model.score(queries)])
    cosine = (_clip_logits(model, queries, [q.prompt for q in queries]) / model.encoder.logit_scale).numpy()
    np.testing.assert_allclose(got, np.maximum(100 * cosine, 0), atol=1e-3)
    assert (cosine < 0).any() and (cosine > 0).any()  # both sides of the clip are exercised
    paper = clipscore.clipscore(path=str(checkpoints.clip), w=2.5, prefix="A photo depicts", device="cpu")
    asyncio.run(paper.astart())
    got = np.array([j.scores[0] for j in paper.score(queries)])
    cosine = (_clip_logits(model, queries, [f"A photo depicts {q.prompt}" for q in queries])
              / model.encoder.logit_scale).numpy()
    np.testing.assert_allclose(got, np.maximum(2.5 * cosine, 0), atol=1e-4)


def test_pickscore_is_the_logit_scaled_cosine(models: dict[str, Any]) -> None:
    model, queries = models["pickscore"], _queries(4)
    got = [j.scores[0] for j in model.score(queries)]
    expected = _clip_logits(model, queries, [q.prompt for q in queries]).tolist()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert abs(model.encoder.logit_scale - 100.0) < 0.01  # the checkpoint's logit_scale = ln 100, exponentiated


def _open_clip_features(state: dict[str, torch.Tensor], pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.forward (transformer.py / model.py) on the raw state dict: normalised features' cosine."""
    def ln(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], state[p + "weight"], state[p + "bias"], 1e-5)

    def tower(x: torch.Tensor, prefix: str, heads: int, mask: torch.Tensor | None) -> torch.Tensor:
        x = x.transpose(0, 1)  # NLD -> LND, as open_clip's Transformer runs nn.MultiheadAttention
        layers = len({k.split(".")[2 + prefix.count(".")] for k in state if k.startswith(prefix + "transformer.")})
        for i in range(layers):
            p = f"{prefix}transformer.resblocks.{i}."
            h = ln(x, p + "ln_1.")
            x = x + F.multi_head_attention_forward(
                h, h, h, h.shape[-1], heads, state[p + "attn.in_proj_weight"], state[p + "attn.in_proj_bias"],
                None, None, False, 0.0, state[p + "attn.out_proj.weight"], state[p + "attn.out_proj.bias"],
                training=False, need_weights=False, attn_mask=mask)[0]
            h = ln(x, p + "ln_2.")
            h = F.linear(F.gelu(F.linear(h, state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"])),
                         state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])
            x = x + h
        return x.transpose(0, 1)

    v = "visual."
    width = state[v + "class_embedding"].shape[0]
    x = F.conv2d(pixels, state[v + "conv1.weight"], stride=state[v + "conv1.weight"].shape[-1])
    x = x.reshape(x.shape[0], width, -1).permute(0, 2, 1)
    x = torch.cat([state[v + "class_embedding"].expand(x.shape[0], 1, -1), x], dim=1)
    x = x + state[v + "positional_embedding"]
    x = ln(tower(ln(x, v + "ln_pre."), v, width // 80, None), v + "ln_post.")
    image = F.normalize(x[:, 0] @ state[v + "proj"], dim=-1)
    context = ids.shape[1]
    causal = torch.full((context, context), float("-inf")).triu(1)
    t = state["token_embedding.weight"][ids] + state["positional_embedding"][:context]
    t = ln(tower(t, "", state["token_embedding.weight"].shape[1] // 64, causal), "ln_final.")
    text = F.normalize(t[torch.arange(t.shape[0]), ids.argmax(dim=-1)] @ state["text_projection"], dim=-1)
    return (image * text).sum(-1)


@pytest.mark.parametrize("name", ["hpsv2", "hpsv2.1"])
def test_hpsv2_matches_open_clips_forward_on_the_raw_checkpoint(
    name: str, models: dict[str, Any], checkpoints: Checkpoints
) -> None:
    model, queries = models[name], _queries(4)
    got = [j.scores[0] for j in model.score(queries)]
    state = torch.load(checkpoints.hps / hpsv2.CHECKPOINTS[name], weights_only=True)["state_dict"]
    ids = model.encoder.tokenizer([q.prompt for q in queries], truncation=True, max_length=77)["input_ids"]
    padded = torch.tensor([row + [0] * (77 - len(row)) for row in ids])  # open_clip pads to 77 with 0
    with torch.no_grad():
        expected = _open_clip_features(state, _pixels(model, queries), padded).tolist()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert max(got) - min(got) > 1e-2 and all(-1 <= s <= 1 for s in got)


def test_hpsv2_and_hpsv21_read_their_own_checkpoints(models: dict[str, Any]) -> None:
    queries = _queries(2)
    assert models["hpsv2"].score(queries)[0].scores != models["hpsv2.1"].score(queries)[0].scores


def test_open_clip_key_mapping_rejects_unknown_weights(checkpoints: Checkpoints) -> None:
    state = torch.load(checkpoints.hps / "HPS_v2_compressed.pt", weights_only=True)["state_dict"]
    mapped = hpsv2.to_transformers(state, "x.pt")
    assert mapped["visual_projection.weight"].shape == state["visual.proj"].shape[::-1]
    q, k, v = (mapped[f"text_model.encoder.layers.1.self_attn.{n}_proj.weight"] for n in "qkv")
    torch.testing.assert_close(torch.cat([q, k, v]), state["transformer.resblocks.1.attn.in_proj_weight"])
    with pytest.raises(UserError, match=re.escape("unknown open_clip weight 'visual.attn_pool.query'")):
        hpsv2.to_transformers({**state, "visual.attn_pool.query": torch.zeros(1)}, "x.pt")


def test_laion_aesthetic_is_the_release_mlp_on_normalised_embeddings(
    models: dict[str, Any], checkpoints: Checkpoints
) -> None:
    model, queries = models["laion-aesthetic"], _queries(4)
    got = [j.scores[0] for j in model.score(queries)]
    encoder = model.encoder
    with torch.no_grad():
        pooled = encoder.model.vision_model(pixel_values=_pixels(model, queries)).pooler_output
        features = encoder.model.visual_projection(pooled).numpy()  # clip's encode_image
    l2 = np.atleast_1d(np.linalg.norm(features, 2, -1))  # simple_inference.py normalized()
    l2[l2 == 0] = 1
    x = torch.from_numpy(features / np.expand_dims(l2, -1)).float()
    state = torch.load(checkpoints.aesthetic / laion_aesthetic.HEAD, weights_only=True)
    for index in (0, 2, 4, 6, 7):  # Linear layers only: the release has no activations between them
        x = F.linear(x, state[f"layers.{index}.weight"], state[f"layers.{index}.bias"])
    np.testing.assert_allclose(got, x.squeeze(-1).tolist(), rtol=1e-4, atol=1e-4)
    prompts_ignored = model.score([Query("something else entirely", queries[0].candidates)])
    assert prompts_ignored[0].scores == pytest.approx((got[0],), abs=1e-5)


# ----------------------------------------------------------------------------------------------- batching, failures


@pytest.mark.parametrize("name", NAMES)
def test_batch_sizes_1_and_8_agree(name: str, models: dict[str, Any]) -> None:
    queries = _queries(8)
    model = models[name]
    batched = [j.scores[0] for j in model.score(queries)]
    single = [model.score([q])[0].scores[0] for q in queries]
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    assert len({round(float(s), 4) for s in batched}) >= 6  # the inputs move the score


def test_corrupt_image_fails_only_its_query(models: dict[str, Any]) -> None:
    for model in models.values():
        out = model.score([Query("a cat", (Media.from_bytes(b"\x89PNG broken"),)), Query("a cat", (_media(3),))])
        assert out[0].failure is not None and out[1].ok


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("clipscore", {}, "has no config.json"),
    ("pickscore", {}, "has no config.json"),
    ("hpsv2", {}, "has no HPS_v2_compressed.pt (fetch it with `hf download xswu/HPSv2 HPS_v2_compressed.pt`)"),
    ("hpsv2.1", {}, "has no HPS_v2.1_compressed.pt"),
    ("laion-aesthetic", {}, "has no sac+logos+ava1-l14-linearMSE.pth (fetch it with `curl -LO"),
])
def test_missing_checkpoint_fails_at_start_naming_the_fix(
    name: str, kwargs: dict[str, str], message: str, tmp_path: Path
) -> None:
    model = registry.get("model", name).build(path=str(tmp_path), device="cpu", **kwargs)
    with pytest.raises(UserError) as info:
        asyncio.run(model.astart())
    assert str(tmp_path) in str(info.value) and message in str(info.value)


def test_unknown_hub_id_and_absent_path_fail_fast(checkpoints: Checkpoints) -> None:
    with pytest.raises(UserError, match="not in the local cache; fetch them once with `hf download no-org/no-hps`"):
        asyncio.run(hpsv2.hpsv2(path="no-org/no-hps", device="cpu").astart())
    # the fix names the -M key of the missing folder, and no --base-url (these models run in-process only)
    with pytest.raises(UserError) as info:
        asyncio.run(pickscore.pickscore(path=str(checkpoints.pick), processor="no-org/no-proc", device="cpu").astart())
    assert "or pass -M processor=DIR" in str(info.value) and "--base-url" not in str(info.value)
    with pytest.raises(UserError, match="laion-aesthetic needs -M path="):
        asyncio.run(laion_aesthetic.laion_aesthetic(device="cpu").astart())
    with pytest.raises(UserError, match="batch_size must be a positive integer"):
        clipscore.clipscore(batch_size=0)
    with pytest.raises(UserError, match="dtype must be one of"):
        pickscore.pickscore(dtype="int8")


# ----------------------------------------------------------------------------------------------- end to end


def _run_args(name: str, variant: str, checkpoints: Checkpoints, out: Path) -> list[str]:
    model_args = [f"{k}={v}" for k, v in checkpoints.args(name).items()] + ["device=cpu", "batch_size=8"]
    return ["run", "--task", "sanity", "--model", name, *(x for a in model_args for x in ("-M", a)), "-T", "n=4",
            "-T", "size=64", "-T", f"variant={variant}", "--quiet", "--output", str(out)]


def _check_run(out: Path) -> None:
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["counts"]["recorded"] == 4 and record["counts"]["failed"] == 0
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(len(line["trials"][0]["prediction"]["scores"]) == 2 for line in lines)


def test_sanity_run_end_to_end_from_the_console(tmp_path: Path, cli_env: dict[str, str],
                                                checkpoints: Checkpoints) -> None:
    done = rrbench(*_run_args("hpsv2", "t2i", checkpoints, tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _check_run(tmp_path / "runs")


# The same command line through rrbench.cli.main in this process: a fresh interpreter costs about 10 s of torch and
# transformers imports on the 2-core CI machine, so only the run above pays it.
@pytest.mark.parametrize(("name", "variant"), [("clipscore", "t2i"), ("pickscore", "edit"), ("hpsv2.1", "edit"),
                                               ("laion-aesthetic", "t2i")])
def test_sanity_run_end_to_end(name: str, variant: str, tmp_path: Path, checkpoints: Checkpoints,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(_run_args(name, variant, checkpoints, tmp_path / "runs")) == 0, capsys.readouterr().err
    _check_run(tmp_path / "runs")


def test_missing_checkpoint_is_a_user_error_on_the_command_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code = cli.main(["run", "--task", "sanity", "--model", "hpsv2", "-M", f"path={tmp_path / 'empty'}", "-T", "n=2",
                     "--output", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "has no HPS_v2_compressed.pt" in err and "hf download" in err
