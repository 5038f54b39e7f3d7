"""Shared parts of the CLIP-family scorers (``clipscore``, ``pickscore``, ``hpsv2``/``hpsv2.1``,
``laion-aesthetic``): image preprocessing that reproduces each release's reference transform, a batched dual
encoder on transformers' ``CLIPModel``, and the ``RewardModel`` plumbing (one broken image fails its own query;
each distinct prompt of a batch is encoded once, since pairwise tasks score two images per prompt).

Preprocessing references (all resample with PIL bicubic, then scale to [0, 1] and normalise with the OpenAI CLIP
mean and std, ``CLIP_MEAN`` / ``CLIP_STD``):

* ``crop-round``: OpenAI ``clip/clip.py`` ``_transform`` and open_clip's default eval transform: torchvision
  ``Resize(n)`` of the short side (long side ``int(n * long / short)``), ``CenterCrop(n)`` whose offset is
  ``int(round((h - n) / 2))``.
* ``crop-floor``: transformers' ``CLIPImageProcessor`` as torchmetrics' CLIPScore and the PickScore card call it
  (the PIL processor of their time): the same resize, centre-crop offset ``(h - n) // 2``.
* ``pad``: HPSv2's open_clip fork with ``light_augmentation=True`` (``ResizeMaxSize``): the long side to ``n``
  (``round(side * n / long)``), then black padding to ``n`` x ``n`` with ``pad // 2`` on the left and top. The
  reference skips the padding when the long side is already ``n`` (leaving a non-square tensor the ViT rejects); we
  always pad.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from rrbench.models._base import RewardModel, decode_candidates
from rrbench.registry import require
from rrbench.types import Judgement, Query, UserError

if TYPE_CHECKING:
    import torch

# OpenAI CLIP's normalisation (clip/clip.py _transform; open_clip constants OPENAI_DATASET_MEAN/STD; transformers
# OPENAI_CLIP_MEAN/STD, the values in the preprocessor_config.json of openai/clip-vit-large-patch14 and of
# laion/CLIP-ViT-H-14-laion2B-s32B-b79K).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_LENGTH = 77  # CLIP's text context (open_clip context_length, the PickScore card's max_length=77)
MODES = ("crop-round", "crop-floor", "pad")
DTYPES = ("float32", "bfloat16", "float16")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class ImageTransform:
    """One release's eval transform: PIL RGB image -> normalised float32 tensor (3, size, size)."""

    size: int
    mode: str

    def __call__(self, img: Image.Image) -> torch.Tensor:
        import torch

        img = self.pad(img) if self.mode == "pad" else self.crop(img)
        scaled = np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)
        normalised = (scaled - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32))

    def crop(self, img: Image.Image) -> Image.Image:
        n, (w, h) = self.size, img.size
        short, long = min(w, h), max(w, h)
        new_long = int(n * long / short)
        img = img.resize((n, new_long) if w <= h else (new_long, n), Image.Resampling.BICUBIC)
        w, h = img.size
        if self.mode == "crop-round":
            left, top = round((w - n) / 2.0), round((h - n) / 2.0)  # banker's rounding, as torchvision
        else:
            left, top = (w - n) // 2, (h - n) // 2
        return img.crop((left, top, left + n, top + n))

    def pad(self, img: Image.Image) -> Image.Image:
        n, (w, h) = self.size, img.size
        scale = n / float(max(w, h))
        new_w, new_h = round(w * scale), round(h * scale)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (n, n), (0, 0, 0))
        canvas.paste(img, ((n - new_w) // 2, (n - new_h) // 2))
        return canvas


def unit(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows; a zero row stays zero (the aesthetic predictor's ``normalized`` sets its norm to 1)."""
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.masked_fill(norm == 0, 1.0)


class DualEncoder:
    """A transformers ``CLIPModel`` and its tokenizer (None when only images are embedded)."""

    def __init__(self, model: Any, tokenizer: Any, device: str, dtype: torch.dtype) -> None:
        # read before the cast: exp of a bfloat16 logit_scale is off by about 1%
        scale = getattr(model, "logit_scale", None)
        self.logit_scale = float(scale.detach().float().exp().item()) if scale is not None else 1.0
        self.model = model.to(device=device, dtype=dtype).eval()
        self.tokenizer = tokenizer
        self.device, self.dtype = device, dtype

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings in float32: the projected, post-layer-normed class token."""
        import torch

        with torch.inference_mode():
            pooled = self.model.vision_model(pixel_values=pixels.to(self.device, self.dtype)).pooler_output
            return unit(self.model.visual_projection(pooled).float())

    def texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings in float32, one row per prompt; each distinct prompt is encoded once."""
        import torch

        distinct = list(dict.fromkeys(prompts))
        batch = self.tokenizer(distinct, padding=True, truncation=True, max_length=CONTEXT_LENGTH,
                               return_tensors="pt")
        with torch.inference_mode():
            pooled = self.model.text_model(input_ids=batch["input_ids"].to(self.device),
                                           attention_mask=batch["attention_mask"].to(self.device)).pooler_output
            embeds = unit(self.model.text_projection(pooled).float())
        row = {p: i for i, p in enumerate(distinct)}
        return embeds[[row[p] for p in prompts]]

    def cosine(self, pixels: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return (self.images(pixels) * self.texts(prompts)).sum(dim=-1)


class ClipFamilyModel(RewardModel):
    """Batched pointwise scoring; subclasses load weights (``load``) and turn a batch into scores (``rewards``)."""

    transform_mode: ClassVar[str] = "crop-round"

    def __init__(self, *, path: str, device: str, dtype: str, batch_size: int, **config: Any) -> None:
        super().__init__(path=path, dtype=dtype, **config)  # device and batch size never change a score
        self.path, self.device, self.dtype = path, device, dtype
        self.batch_size = batch_size
        self.transform: ImageTransform | None = None

    async def astart(self, generation: str = "t2i") -> None:
        if self.transform is not None:
            return
        torch = require("torch", "transformers")
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        self.transform = ImageTransform(self.load(device, getattr(torch, self.dtype)), self.transform_mode)

    def load(self, device: str, dtype: torch.dtype) -> int:
        """Load the weights; return the input image size the checkpoint expects."""
        raise NotImplementedError

    def rewards(self, pixels: torch.Tensor, prompts: list[str]) -> list[float]:
        raise NotImplementedError

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        import torch

        if self.transform is None:
            raise RuntimeError("astart() loads the weights before score()")
        pixels, ok, out = decode_candidates(queries, self.transform)
        if ok:
            prompts = [queries[i].prompt for i in ok]
            for i, value in zip(ok, self.rewards(torch.stack(pixels), prompts), strict=True):
                out[i] = Judgement(scores=(float(value),))
        return out


def check_options(model: str, device: str, dtype: str, batch_size: int) -> None:
    """The ``-M`` settings every CLIP-family factory shares, checked before anything loads."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"{model}: batch_size must be a positive integer, got {batch_size!r}")
    if dtype not in DTYPES:
        raise UserError(f"{model}: dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if not isinstance(device, str) or not device:
        raise UserError(f"{model}: device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def require_files(folder: Path, groups: Sequence[Sequence[str]], fetch: str) -> None:
    """Fail fast naming the folder, the missing file and the command that fetches it."""
    for names in groups:
        if not any((folder / name).is_file() for name in names):
            raise UserError(f"{folder} has no {' or '.join(names)} (fetch it with `{fetch}`)")


def load_tokenizer(folder: str) -> Any:
    transformers = require("transformers", "transformers")
    return transformers.AutoTokenizer.from_pretrained(folder)


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def resolve_file(ref: str, filename: str, fetch: str) -> Path:
    """A checkpoint file given directly, or ``filename`` inside a folder or a cached hub snapshot."""
    from rrbench.models._vlm import resolve_weights

    if Path(ref).is_file():
        return Path(ref).resolve()
    folder = Path(resolve_weights(ref)) if not Path(ref).is_dir() else Path(ref).resolve()
    require_files(folder, ((filename,),), fetch)
    return folder / filename
