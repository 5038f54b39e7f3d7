"""Shared loader and forward pass of the Qwen-VL scalar reward models (HPSv3, EditReward).

Both come from the same training code (HPSv3's ``Qwen2VLRewardModelBT``; EditReward's multi-head copy of it):

* the tokenizer of the base model gets one extra special token ``<|Reward|>`` and the embeddings are resized to
  ``len(tokenizer)``; the checkpoint's embedding matrix therefore has that many rows, and we read the size from it;
* a head ``Linear(H, 1024) - ReLU - Dropout(0.05) - Linear(1024, 16) - ReLU - Linear(16, 2)`` in float32 reads the
  last hidden state at the ``<|Reward|>`` token; its two outputs are (mu, sigma) of the score distribution and
  the released inference reads mu;
* each image is first resized to exactly 256 * 28 * 28 pixels (``min_pixels = max_pixels``) with qwen-vl-utils'
  ``smart_resize`` and bicubic resampling, then goes through the base model's processor and chat template;
* the released forward hands the language model ``inputs_embeds`` without ``input_ids`` or ``image_grid_thw``, so
  the rotary positions are the plain sequential ones from ``attention_mask.cumsum(-1) - 1`` (transformers 4.5x
  ``get_rope_index`` fallback), not Qwen's 3-D M-RoPE. The weights were trained that way; we pass those positions
  explicitly so the scores match.

The checkpoint is one state dict of the whole wrapper (``model.*``, ``lm_head.*`` and the head keys), saved with the
transformers >= 4.52 key layout (``model.language_model.*``, ``model.visual.*``); older names are mapped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench.doctor import FileNeed
from rrbench.registry import require
from rrbench.types import UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

REWARD_TOKEN = "<|Reward|>"
IMAGE_FACTOR = 28  # qwen-vl-utils IMAGE_FACTOR: patch 14 x spatial merge 2
IMAGE_PIXELS = 256 * 28 * 28  # min_pixels = max_pixels in both released configs (200704)
MAX_RATIO = 200  # qwen-vl-utils MAX_RATIO
# Suffix appended to the instruction when use_special_tokens is true (HPSv3 data_collator_qwen.py, EditReward
# data_collator_qwen_edit.py: the same string).
PROMPT_WITH_SPECIAL_TOKEN = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"
HEAD_SIZES = (1024, 16)  # rm_head_kwargs=None in both released configs: the default "ranknet" head


def smart_resize(height: int, width: int, factor: int = IMAGE_FACTOR, min_pixels: int = IMAGE_PIXELS,
                 max_pixels: int = IMAGE_PIXELS) -> tuple[int, int]:
    """qwen-vl-utils' ``smart_resize``: sides divisible by ``factor``, pixel count within the bounds, aspect kept."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"aspect ratio above {MAX_RATIO}: {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def fit_image(img: PILImage.Image) -> PILImage.Image:
    """The image as qwen-vl-utils' ``fetch_image`` hands it to the processor (bicubic, as in its ``resize``)."""
    from PIL import Image

    height, width = smart_resize(img.height, img.width)
    return img.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)


def pick_device(name: str) -> str:
    torch = require("torch", "transformers")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def pick_dtype(name: str, device: str) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU (the released configs run bf16) and float32 on the CPU."""
    torch = require("torch", "transformers")
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise UserError(f"-M dtype must be auto, float32, bfloat16 or float16, not {name!r}")
    return dtype


def reward_head(hidden: int) -> torch.nn.Sequential:
    """The default ``ranknet`` head; its indices (0, 3, 5) are the checkpoint's key names."""
    nn = require("torch", "transformers").nn
    return nn.Sequential(
        nn.Linear(hidden, HEAD_SIZES[0]), nn.ReLU(), nn.Dropout(0.05),
        nn.Linear(HEAD_SIZES[0], HEAD_SIZES[1]), nn.ReLU(), nn.Linear(HEAD_SIZES[1], 2),
    )


def modern_key(key: str) -> str:
    """Map the pre-4.52 Qwen-VL key layout (``visual.*``, ``model.layers.*``) to the current one."""
    if key.startswith("visual."):
        return "model." + key
    if key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
        return "model.language_model." + key[len("model."):]
    return key


def read_state_dict(folder: str, names: Sequence[str]) -> tuple[Path, dict[str, torch.Tensor]]:
    """The first of ``names`` found in ``folder`` (safetensors or a torch pickle of tensors)."""
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            break
    else:
        raise UserError(f"{folder} has none of {', '.join(names)} (the released checkpoint file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        torch = require("torch", "transformers")
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if "model" in state and isinstance(state["model"], Mapping):  # the released loaders accept this wrapping too
        state = dict(state["model"])
    return path, {modern_key(k): v for k, v in state.items()}


@dataclass
class RewardVLM:
    """A loaded backbone + its reward heads, ready to score."""

    model: Any  # Qwen2VLForConditionalGeneration or Qwen2_5_VLForConditionalGeneration
    processor: Any
    heads: Mapping[str, torch.nn.Module]
    reward_id: int
    device: str

    def rewards(self, texts: Sequence[str], images: Sequence[PILImage.Image], head: str) -> torch.Tensor:
        """(mu, sigma) per text, read at its ``<|Reward|>`` token; images are already fitted, in prompt order."""
        import torch

        batch = self.processor(text=list(texts), images=list(images), padding=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        mask = batch["attention_mask"]
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        with torch.inference_mode():
            hidden = self.model.model(
                input_ids=batch["input_ids"], attention_mask=mask, pixel_values=batch["pixel_values"],
                image_grid_thw=batch["image_grid_thw"], position_ids=positions.unsqueeze(0).expand(3, -1, -1),
                use_cache=False,
            ).last_hidden_state
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            at = _last_index(batch["input_ids"] == self.reward_id)
            return self.heads[head](hidden[rows, at].float()).cpu()

    def chat(self, content: list[dict[str, str]]) -> str:
        """One user turn through the base model's chat template, with the generation prompt (as released)."""
        messages = [{"role": "user", "content": content}]
        return str(self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def _last_index(hits: torch.Tensor) -> torch.Tensor:
    """Per row, the position of the last ``<|Reward|>``: a prompt that quotes the token must not shift the read."""
    import torch

    index = torch.arange(hits.shape[1], device=hits.device).expand_as(hits)
    last = torch.where(hits, index, -1).max(dim=1).values
    if bool((last < 0).any()):
        raise RuntimeError(f"a prompt lost its {REWARD_TOKEN} token")
    return last


def needs(path: str, base: str | None, files: Sequence[str], hub_id: str, base_id: str) -> list[FileNeed]:
    """The reward checkpoint (one of ``files``), and the base model whose processor and config it is built on:
    ``-M base=``, else the checkpoint folder when it holds a ``config.json``, else the released base."""
    checkpoint = FileNeed("checkpoint", path, "path", (tuple(files),), f"hf download {hub_id}")
    folder = checkpoint.locate()
    base_ref = base or (str(folder) if folder and (folder / "config.json").is_file() else base_id)
    return [checkpoint, FileNeed("base model", base_ref, "base", (("config.json",),), f"hf download {base_ref}")]


def load(base: str, checkpoint: str, files: Sequence[str], model_class: str, head_names: Sequence[str],
         device: str, dtype: str) -> RewardVLM:
    """Build the base architecture sized from the checkpoint, load every weight strictly, add the reward token."""
    torch = require("torch", "transformers")
    transformers = require("transformers", "transformers")
    path, state = read_state_dict(checkpoint, files)
    processor = transformers.AutoProcessor.from_pretrained(base, padding_side="right")
    processor.tokenizer.padding_side = "right"
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    reward_id = int(processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN))
    config = transformers.AutoConfig.from_pretrained(base)
    rows = _embedding_rows(state, path)
    config.text_config.vocab_size = rows
    if reward_id >= rows:
        raise UserError(f"{path}: {rows} embedding rows cannot hold {REWARD_TOKEN} (id {reward_id}); "
                        f"is {base} the base model this checkpoint was trained from?")
    on, torch_dtype = pick_device(device), pick_dtype(dtype, pick_device(device))
    with _no_init(transformers), torch.device(on):
        model = getattr(transformers, model_class)._from_config(config, dtype=torch_dtype)
        heads = {n: reward_head(config.text_config.hidden_size).float() for n in head_names}
    _load_strict(model, heads, state, path, tied=bool(getattr(config, "tie_word_embeddings", False)))
    model.eval()
    for head in heads.values():
        head.eval()
    return RewardVLM(model, processor, heads, reward_id, on)


def _embedding_rows(state: Mapping[str, torch.Tensor], path: Path) -> int:
    key = "model.language_model.embed_tokens.weight"
    if key not in state:
        raise UserError(f"{path} has no {key}: not a Qwen-VL reward checkpoint")
    return int(state[key].shape[0])


def _no_init(transformers: Any) -> Any:
    """Skip random initialisation: every weight is overwritten by the checkpoint (7B of them on a GPU)."""
    for where in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            return __import__(where, fromlist=["no_init_weights"]).no_init_weights()
        except (ImportError, AttributeError):
            continue
    import contextlib

    return contextlib.nullcontext()


def _load_strict(model: Any, heads: Mapping[str, torch.nn.Module], state: Mapping[str, torch.Tensor],
                 path: Path, tied: bool) -> None:
    """Every checkpoint key must land and every model weight must come from it, as in the released strict load."""
    head_state = {k: v for k, v in state.items() if k.split(".")[0] in ("rm_head", "rm_heads")}
    body = {k: v for k, v in state.items() if k not in head_state}
    result = model.load_state_dict(body, strict=False)
    missing = [k for k in result.missing_keys if not (tied and k == "lm_head.weight")]
    unexpected = list(result.unexpected_keys)
    for name, head in heads.items():
        prefix = f"{name}."
        sub = {k[len(prefix):]: v for k, v in head_state.items() if k.startswith(prefix)}
        head_missing, head_unexpected = head.load_state_dict(sub, strict=False)
        missing += [prefix + k for k in head_missing]
        unexpected += [prefix + k for k in head_unexpected]
    unexpected += [k for k in head_state if not k.startswith(tuple(f"{n}." for n in heads))]
    if missing or unexpected:
        raise UserError(f"{path} does not match the model: missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}")
