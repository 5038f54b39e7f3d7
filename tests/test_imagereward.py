"""ImageReward on a tiny random-weight checkpoint in the released layout (ImageReward.pt + med_config.json).

The loader runs the checkpoint on transformers' BLIP modules after renaming keys; here an independent forward pass,
written straight from BLIP's vit.py / med.py and ImageReward.py on the raw state dict, must give the same scores.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rrbench.models import imagereward as ir
from rrbench.types import Media, Query
from tests.conftest import rrbench
from tests.fixtures.tiny_reward_vlms import build_imagereward


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_imagereward(tmp_path_factory.mktemp("imagereward"))


@pytest.fixture(scope="module")
def model(checkpoint: tuple[Path, Path]) -> ir.ImageReward:
    m = ir.imagereward(path=str(checkpoint[0]), tokenizer=str(checkpoint[1]), device="cpu")
    asyncio.run(m.astart())
    assert isinstance(m, ir.ImageReward)
    return m


def _media(seed: int, size: tuple[int, int] = (300, 200)) -> Media:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return Media.from_bytes(buffer.getvalue())


def test_constants_match_the_release() -> None:
    # THUDM/ImageReward ImageReward/ImageReward.py: _transform(224), Normalize(...), mean/std, max_length=35, MLP(768).
    assert ir.IMAGE_SIZE == 224 and ir.MAX_LENGTH == 35
    assert ir.CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert ir.CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    assert ir.SCORE_MEAN == 0.16717362830052426 and ir.SCORE_STD == 1.0333394966054072
    assert ir.MLP_SIZES == (1024, 128, 64, 16, 1)
    assert ir.VIT_LAYER_NORM_EPS == 1e-6  # BLIP models/vit.py


def test_preprocessing_is_short_side_224_bicubic_centre_crop_clip_norm() -> None:
    img = _media(1, (300, 200)).image()
    short = img.resize((336, 224), Image.Resampling.BICUBIC)  # short side to 224, long side int(224 * 300 / 200)
    crop = np.asarray(short.crop((56, 0, 280, 224)), dtype=np.float32) / 255.0  # round((336 - 224) / 2) = 56
    expected = (crop - np.array(ir.CLIP_MEAN, np.float32)) / np.array(ir.CLIP_STD, np.float32)
    got = ir.preprocess(img).numpy().transpose(1, 2, 0)
    assert got.shape == (224, 224, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_tokenizer_pads_to_35_with_blip_special_tokens(model: ir.ImageReward, checkpoint: tuple[Path, Path]) -> None:
    batch = model.tokenizer(["a photo of a cat"], padding="max_length", truncation=True, max_length=35)
    assert len(batch["input_ids"][0]) == 35 and batch["input_ids"][0][0] == model.tokenizer.cls_token_id
    vocab = len((checkpoint[1] / "vocab.txt").read_text().split())
    assert model.tokenizer.bos_token == "[DEC]"  # BLIP init_tokenizer: [DEC] = 30522, [ENC] = 30523 on bert-base
    assert model.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [vocab, vocab + 1]


def _reference(state: dict[str, Any], med: dict[str, Any], pixels: torch.Tensor, ids: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """ImageReward.score written from the release (timm ViT, med BertModel in 'multimodal' mode, MLP, normalise)."""
    def lin(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, state[name + ".weight"], state[name + ".bias"])

    def ln(x: torch.Tensor, name: str, eps: float) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], state[name + ".weight"], state[name + ".bias"], eps)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = q.shape
        split = [t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2) for t in (q, k, v)]
        scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(d // heads) + bias
        return (scores.softmax(-1) @ split[2]).transpose(1, 2).reshape(b, n, d)

    v = "blip.visual_encoder."
    x = F.conv2d(pixels, state[v + "patch_embed.proj.weight"], state[v + "patch_embed.proj.bias"], stride=16)
    x = torch.cat([state[v + "cls_token"].expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], 1)
    x = x + state[v + "pos_embed"]
    width, blocks = x.shape[-1], len({k.split(".")[3] for k in state if k.startswith(v + "blocks.")})
    for i in range(blocks):
        p = f"{v}blocks.{i}."
        h = ln(x, p + "norm1", 1e-6)
        q, k, val = lin(h, p + "attn.qkv").chunk(3, dim=-1)
        x = x + lin(attend(q, k, val, width // 64, torch.zeros(())), p + "attn.proj")
        x = x + lin(F.gelu(lin(ln(x, p + "norm2", 1e-6), p + "mlp.fc1")), p + "mlp.fc2")
    image = ln(x, v + "norm", 1e-6)
    t, heads, eps = "blip.text_encoder.", med["num_attention_heads"], med["layer_norm_eps"]
    y = state[t + "embeddings.word_embeddings.weight"][ids] + state[t + "embeddings.position_embeddings.weight"][
        : ids.shape[1]]
    y = ln(y, t + "embeddings.LayerNorm", eps)
    self_bias = (1.0 - mask[:, None, None, :].float()) * -10000.0
    for i in range(med["num_hidden_layers"]):
        p = f"{t}encoder.layer.{i}."
        a = attend(lin(y, p + "attention.self.query"), lin(y, p + "attention.self.key"),
                   lin(y, p + "attention.self.value"), heads, self_bias)
        y = ln(lin(a, p + "attention.output.dense") + y, p + "attention.output.LayerNorm", eps)
        c = attend(lin(y, p + "crossattention.self.query"), lin(image, p + "crossattention.self.key"),
                   lin(image, p + "crossattention.self.value"), heads, torch.zeros(()))
        y = ln(lin(c, p + "crossattention.output.dense") + y, p + "crossattention.output.LayerNorm", eps)
        y = ln(lin(F.gelu(lin(y, p + "intermediate.dense")), p + "output.dense") + y, p + "output.LayerNorm", eps)
    z = y[:, 0, :]
    for index in (0, 2, 4, 6, 7):  # Linear layers only: the release has no activations between them
        z = lin(z, f"mlp.layers.{index}")
    return ((z.squeeze(-1) - 0.16717362830052426) / 1.0333394966054072)


def test_scores_match_an_independent_forward_of_the_release(model: ir.ImageReward,
                                                            checkpoint: tuple[Path, Path]) -> None:
    state = torch.load(checkpoint[0] / "ImageReward.pt", weights_only=True)
    med = json.loads((checkpoint[0] / "med_config.json").read_text())
    prompts = ["a photo of a cat", "an astronaut with a red rocket in the blue sky"]
    queries = [Query(p, (_media(i),)) for i, p in enumerate(prompts)]
    got = [j.scores[0] for j in model.score(queries)]
    pixels = torch.stack([ir.preprocess(q.candidates[0].image()) for q in queries])
    text = model.tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    with torch.no_grad():
        expected = _reference(state, med, pixels, text["input_ids"], text["attention_mask"]).tolist()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert abs(got[0] - got[1]) > 1e-3  # the weights are not degenerate: inputs move the score


def test_batch_sizes_1_and_8_agree(model: ir.ImageReward) -> None:
    queries = [Query(f"a photo of a cat {'and a rocket ' * i}", (_media(10 + i, (200 + 17 * i, 240)),))
               for i in range(8)]
    batched = [j.scores[0] for j in model.score(queries)]
    single = [model.score([q])[0].scores[0] for q in queries]
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    assert len({round(float(s), 4) for s in batched}) == 8


def test_corrupt_image_fails_only_its_query(model: ir.ImageReward) -> None:
    out = model.score([Query("a cat", (Media.from_bytes(b"\x89PNG broken"),)), Query("a cat", (_media(3),))])
    assert out[0].failure is not None and out[1].ok


def test_sanity_run_end_to_end(tmp_path: Path, cli_env: dict[str, str], checkpoint: tuple[Path, Path]) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "imagereward", "-M", f"path={checkpoint[0]}",
                   "-M", f"tokenizer={checkpoint[1]}", "-M", "device=cpu", "-M", "batch_size=8", "-T", "n=4",
                   "-T", "size=64", "--quiet", "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").exists()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["counts"]["recorded"] == 4 and record["counts"]["failed"] == 0


def test_missing_checkpoint_fails_fast_with_the_fix(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "empty").mkdir()
    done = rrbench("run", "--task", "sanity", "--model", "imagereward", "-M", f"path={tmp_path / 'empty'}",
                   "-T", "n=2", "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 2 and "has no ImageReward.pt" in done.stderr and "hf download" in done.stderr
