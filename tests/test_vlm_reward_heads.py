"""HPSv3 and EditReward on tiny random-weight Qwen2-VL / Qwen2.5-VL checkpoints in the released layouts.

The reward read is checked against the released forward written out independently: image features scattered into
``inputs_embeds``, the language model run with ``input_ids=None`` (so sequential rotary positions), the head on the
``<|Reward|>`` token's last hidden state, mu taken.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from rrbench.models import _qwen_reward as qr
from rrbench.models import editreward as er
from rrbench.models import hpsv3 as hp
from rrbench.types import Media, Query, UserError
from tests.conftest import rrbench
from tests.fixtures.tiny_reward_vlms import build_editreward, build_hpsv3


@pytest.fixture(scope="module")
def hps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_hpsv3(tmp_path_factory.mktemp("hpsv3"))


@pytest.fixture(scope="module")
def edit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_editreward(tmp_path_factory.mktemp("editreward"))


def _media(seed: int, size: tuple[int, int] = (300, 200)) -> Media:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return Media.from_bytes(buffer.getvalue())


def _started(model: Any, generation: str = "t2i") -> Any:
    asyncio.run(model.astart(generation))
    return model


def test_preprocessing_constants_match_the_release() -> None:
    # HPSv3 inference.py / EditReward inference_edit.py: min_pixels = max_pixels = 256 * 28 * 28;
    # qwen-vl-utils vision_process.py: IMAGE_FACTOR = 28, MAX_RATIO = 200, smart_resize rounding.
    assert qr.IMAGE_PIXELS == 200704 and qr.IMAGE_FACTOR == 28 and qr.MAX_RATIO == 200
    assert qr.smart_resize(512, 512) == (448, 448)  # 504 * 504 > max: floor(512 / (512/448) / 28) * 28
    assert qr.smart_resize(200, 300) == (392, 560)  # below min: beta = sqrt(200704 / 60000), ceil each side
    assert qr.smart_resize(1080, 1920) == (336, 588)
    assert qr.fit_image(_media(0, (300, 200)).image()).size == (560, 392)
    # data_collator_qwen.py / data_collator_qwen_edit.py: prompt_with_special_token
    assert qr.PROMPT_WITH_SPECIAL_TOKEN == "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"


def test_prompt_templates_keep_the_released_text() -> None:
    text = hp.prompt_text("a {red} cat")
    assert text.startswith("\nYou are tasked with evaluating a generated image based on Visual Quality and Text")
    assert "\n**Visual Quality:**  \n" in text and "\n**Text Alignment:**  \n" in text and "the best. \n" in text
    assert text.endswith("Textual prompt - a {red} cat\n\n\n" + qr.PROMPT_WITH_SPECIAL_TOKEN)
    following, quality = er.prompt_texts("add a hat")
    assert "**Instruction Following & Semantic Fidelity**" in following and "**Visual Quality & Realism**" in quality
    for t in (following, quality):
        assert "\n**Inputs Provided:**  \n- Source Image (before editing)  \n" in t
        assert t.endswith("Text instruction - add a hat\n" + qr.PROMPT_WITH_SPECIAL_TOKEN)


def _released_forward(net: qr.RewardVLM, texts: list[str], images: list[Any], head: str) -> torch.Tensor:
    """Qwen2VLRewardModelBT.forward / _run_single_batch_through_model_and_head, as released."""
    batch = net.processor(text=texts, images=images, padding=True, return_tensors="pt")
    inner = net.model.model
    with torch.no_grad():
        embeds = inner.get_input_embeddings()(batch["input_ids"])
        image = inner.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
        image = image.pooler_output if hasattr(image, "pooler_output") else image
        mask = (batch["input_ids"] == net.model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, image.to(embeds.dtype))
        hidden = inner.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
        logits = net.heads[head](hidden.float())
        return logits[batch["input_ids"] == net.reward_id].view(len(texts), -1)


def test_hpsv3_reads_mu_at_the_reward_token_as_released(hps: tuple[Path, Path]) -> None:
    model = _started(hp.hpsv3(path=str(hps[0]), base=str(hps[1]), device="cpu"))
    queries = [Query("a photo of a cat", (_media(1),)), Query("a red rocket", (_media(2, (256, 256)),))]
    got = [j.scores[0] for j in model.score(queries)]
    net = model.net
    texts = [net.chat([{"type": "image"}, {"type": "text", "text": hp.prompt_text(q.prompt)}]) for q in queries]
    images = [qr.fit_image(q.candidates[0].image()) for q in queries]
    expected = _released_forward(net, texts, images, "rm_head")
    assert expected.shape == (2, 2)  # (mu, sigma) per image
    np.testing.assert_allclose(got, expected[:, 0].tolist(), rtol=1e-4, atol=1e-5)
    assert abs(got[0] - got[1]) > 1e-4


def test_hpsv3_batch_sizes_1_and_8_agree(hps: tuple[Path, Path]) -> None:
    model = _started(hp.hpsv3(path=str(hps[0]), base=str(hps[1]), device="cpu", batch_size=8))
    queries = [Query("a cat " * (1 + i), (_media(20 + i, (200 + 40 * i, 240)),)) for i in range(8)]
    batched = [j.scores[0] for j in model.score(queries)]
    single = [model.score([q])[0].scores[0] for q in queries]
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def _edit_queries(n: int) -> list[Query]:
    return [Query(f"make it blue {'please ' * i}", (_media(40 + i, (220 + 30 * i, 200)),),
                  source=(_media(60 + i),), generation="edit") for i in range(n)]


def test_editreward_averages_both_heads_on_source_and_edit(edit: tuple[Path, Path]) -> None:
    model = _started(er.editreward(path=str(edit[0]), base=str(edit[1]), device="cpu"), "edit")
    queries = _edit_queries(2)
    got = [j.scores[0] for j in model.score(queries)]
    net = model.net
    images = [qr.fit_image(m.image()) for q in queries for m in (q.source[0], q.candidates[0])]
    heads = []
    for index, head in enumerate(er.HEADS):
        texts = [net.chat([{"type": "image"}, {"type": "image"},
                           {"type": "text", "text": er.prompt_texts(q.prompt)[index]}]) for q in queries]
        heads.append(_released_forward(net, texts, images, head))
    expected = torch.stack(heads).mean(0)[:, 0]  # pooling_strategy "mean", then reward[0]
    np.testing.assert_allclose(got, expected.tolist(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(heads[0][:, 0], heads[1][:, 0])  # two heads, two prompts: both count


def test_editreward_batch_sizes_1_and_8_agree(edit: tuple[Path, Path]) -> None:
    model = _started(er.editreward(path=str(edit[0]), base=str(edit[1]), device="cpu", batch_size=8), "edit")
    queries = _edit_queries(8)
    batched = [j.scores[0] for j in model.score(queries)]
    single = [model.score([q])[0].scores[0] for q in queries]
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    missing = model.score([Query("x", (_media(1),), generation="edit")])[0]
    assert missing.failure is not None and "source image" in (missing.failure_detail or "")


def test_checkpoint_that_does_not_fit_is_a_user_error(hps: tuple[Path, Path], edit: tuple[Path, Path]) -> None:
    with pytest.raises(UserError, match="does not match"):  # EditReward's heads are not HPSv3's rm_head
        qr.load(str(edit[1]), str(edit[0]), ("model.safetensors",), "Qwen2_5_VLForConditionalGeneration",
                ("rm_head",), "cpu", "float32")
    with pytest.raises(UserError, match=r"has no HPSv3\.safetensors \(fetch it with `hf download MizzenAI/HPSv3`\)"):
        _started(hp.hpsv3(path=str(hps[1]), base=str(hps[1]), device="cpu"))


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    done = rrbench("run", "--task", "sanity", *args, "-M", "device=cpu", "-M", "dtype=float32", "-T", "n=2",
                   "-T", "size=64", "--quiet", "--output", str(tmp_path / "runs"), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").exists()]
    record: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    assert record["counts"]["recorded"] == 2 and record["counts"]["failed"] == 0
    return record


def test_sanity_runs_end_to_end(tmp_path: Path, cli_env: dict[str, str], hps: tuple[Path, Path],
                                edit: tuple[Path, Path]) -> None:
    _run(tmp_path / "hps", cli_env, "--model", "hpsv3", "-M", f"path={hps[0]}", "-M", f"base={hps[1]}")
    _run(tmp_path / "edit", cli_env, "--model", "editreward", "-M", f"path={edit[0]}", "-M", f"base={edit[1]}",
         "-T", "variant=edit")
    with pytest.raises(UserError, match="editreward scores an edit"):  # a t2i task has no source image
        _started(er.editreward(path=str(edit[0]), base=str(edit[1]), device="cpu"), "t2i")
