"""`imagereward`: ImageReward v1.0 (Xu et al. 2023, "ImageReward: Learning and Evaluating Human Preferences for
Text-to-Image Generation", NeurIPS 2023, arXiv 2304.05977).

Architecture (THUDM/ImageReward, ``ImageReward/ImageReward.py`` and ``models/BLIP``): BLIP's ViT-L/16 image encoder
(``blip.visual_encoder``, a timm-style ViT: width 1024, depth 24, 16 heads, LayerNorm eps 1e-6) and BLIP's "med"
BERT-base text encoder with cross-attention to the image tokens in every layer (``blip.text_encoder``, sized by
``med_config.json``, ``encoder_width`` set to the ViT width). The [CLS] state of the text encoder goes through an MLP
``768-1024-128-64-16-1`` with dropouts and *no* activations (the ReLUs are commented out in the release), and the
score is ``(mlp(cls) - 0.16717362830052426) / 1.0333394966054072``.

We run it on transformers' BLIP modules: the med text encoder's key names are exactly those of
``BlipTextModel`` (a BERT with ``crossattention`` blocks), so ``blip.text_encoder.*`` loads as is; the timm ViT keys
are renamed to ``BlipVisionModel``'s (:data:`VIT_RENAMES`, same qkv layout). ``blip.vision_proj`` and
``blip.text_proj`` (ITC projections) are in the checkpoint but unused by the score.

Released layout (hub ``THUDM/ImageReward``): ``ImageReward.pt`` (a plain state dict) and ``med_config.json``; the
tokenizer is ``bert-base-uncased`` plus the special tokens BLIP adds (``[DEC]`` as bos, ``[ENC]``), fetched
separately by the release, hence ``-M tokenizer=`` (a folder or hub id; by default ``bert-base-uncased``, or the
checkpoint folder itself when it holds a tokenizer). Text: padded to 35 tokens, truncated. Image: resize the short
side to 224 (bicubic), centre crop 224, CLIP normalisation. For editing tasks the edited image is scored against
the instruction, like any text-to-image scorer; the source image is not shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rrbench.doctor import FileNeed
from rrbench.models._base import RewardModel, decode_candidates
from rrbench.registry import require, reward_model
from rrbench.types import Judgement, Query, UserError

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

HUB_ID = "THUDM/ImageReward"
CHECKPOINT = "ImageReward.pt"
MED_CONFIG = "med_config.json"
TOKENIZER_ID = "bert-base-uncased"
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_LENGTH = 35
SCORE_MEAN = 0.16717362830052426
SCORE_STD = 1.0333394966054072
MLP_SIZES = (1024, 128, 64, 16, 1)
VIT_LAYER_NORM_EPS = 1e-6  # BLIP models/vit.py: partial(nn.LayerNorm, eps=1e-6)
VIT_HEAD_DIM = 64  # ViT-B (768 / 12) and ViT-L (1024 / 16): the head count is not stored in the state dict

# timm ViT names (BLIP models/vit.py) -> transformers BlipVisionModel names.
VIT_RENAMES = (
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
)


def vit_key(key: str) -> str:
    for pattern, replacement in VIT_RENAMES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    raise UserError(f"unknown BLIP ViT weight {key!r} in {CHECKPOINT}")


def preprocess(img: PILImage.Image) -> torch.Tensor:
    """ImageReward's ``_transform(224)``: the torchvision ops themselves, so every rounding matches."""
    transforms = require("torchvision.transforms", "transformers")
    pipeline = transforms.Compose([
        transforms.Resize(IMAGE_SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(IMAGE_SIZE),
        transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD),
    ])
    return pipeline(img.convert("RGB"))


def mlp_head() -> torch.nn.Sequential:
    """The released MLP, module for module, so ``mlp.layers.{0,2,4,6,7}`` keys land (dropouts at 1, 3, 5)."""
    nn = require("torch", "transformers").nn
    a, b, c, d, e = MLP_SIZES
    return nn.Sequential(nn.Linear(768, a), nn.Dropout(0.2), nn.Linear(a, b), nn.Dropout(0.2), nn.Linear(b, c),
                         nn.Dropout(0.1), nn.Linear(c, d), nn.Linear(d, e))


class ImageRewardNet:
    """BLIP vision + med text encoder + MLP, loaded from the released state dict."""

    def __init__(self, state: dict[str, Any], med: dict[str, Any], device: str, dtype: torch.dtype) -> None:
        transformers = require("transformers", "transformers")
        vision_state = {vit_key(k[len("blip.visual_encoder."):]): v for k, v in state.items()
                        if k.startswith("blip.visual_encoder.")}
        text_state = {k[len("blip.text_encoder."):]: v for k, v in state.items() if k.startswith("blip.text_encoder.")}
        mlp_state = {k[len("mlp.layers."):]: v for k, v in state.items() if k.startswith("mlp.layers.")}
        vision_config = _vision_config(transformers, vision_state)
        self.vision = transformers.BlipVisionModel(vision_config)
        self.text = _text_model(transformers, med, vision_config.hidden_size)
        self.mlp = mlp_head()
        for module, sub, ignore in ((self.vision, vision_state, ()), (self.text, text_state, ("position_ids",)),
                                    (self.mlp, mlp_state, ())):
            _load(module, sub, ignore)
        self.vision.to(device=device, dtype=dtype).eval()
        self.text.to(device=device, dtype=dtype).eval()
        self.mlp.to(device=device).float().eval()  # the release casts the [CLS] features to float32 for the MLP
        self.device, self.dtype = device, dtype

    def rewards(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            image = self.vision(pixel_values=pixels.to(self.device, self.dtype)).last_hidden_state
            image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=self.device)
            text = self.text(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                             encoder_hidden_states=image, encoder_attention_mask=image_mask, is_decoder=False)
            raw = self.mlp(text.last_hidden_state[:, 0, :].float()).squeeze(-1)
            return ((raw - SCORE_MEAN) / SCORE_STD).cpu()


def _vision_config(transformers: Any, state: dict[str, Any]) -> Any:
    """ViT size read from the weights (ViT-L/16 at 224 in the release; smaller ones in tests)."""
    width = int(state["embeddings.class_embedding"].shape[-1])
    patch = int(state["embeddings.patch_embedding.weight"].shape[-1])
    grid = round((state["embeddings.position_embedding"].shape[1] - 1) ** 0.5)
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
    return transformers.BlipVisionConfig(
        hidden_size=width, intermediate_size=int(state["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=depth, num_attention_heads=max(1, width // VIT_HEAD_DIM), image_size=grid * patch,
        patch_size=patch, layer_norm_eps=VIT_LAYER_NORM_EPS, hidden_act="gelu",
    )


def _text_model(transformers: Any, med: dict[str, Any], vision_width: int) -> Any:
    from transformers.models.blip.modeling_blip_text import BlipTextModel

    if not med.get("add_cross_attention", False):
        raise UserError(f"{MED_CONFIG}: add_cross_attention must be true (ImageReward reads the image through it)")
    config = transformers.BlipTextConfig(
        vocab_size=med["vocab_size"], hidden_size=med["hidden_size"], intermediate_size=med["intermediate_size"],
        num_hidden_layers=med["num_hidden_layers"], num_attention_heads=med["num_attention_heads"],
        max_position_embeddings=med["max_position_embeddings"], layer_norm_eps=med["layer_norm_eps"],
        hidden_act=med["hidden_act"], pad_token_id=med.get("pad_token_id", 0), encoder_hidden_size=vision_width,
        is_decoder=True,  # transformers builds cross-attention only for a decoder; we call it bidirectionally
        bos_token_id=None, sep_token_id=None,
    )
    return BlipTextModel(config, add_pooling_layer=False)


def _load(module: Any, state: dict[str, Any], ignore: Sequence[str]) -> None:
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(tuple(ignore))]
    unexpected = [k for k in result.unexpected_keys if not k.endswith(tuple(ignore))]
    if missing or unexpected:
        raise UserError(f"{CHECKPOINT} does not match ImageReward: missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}")


def load_tokenizer(ref: str) -> Any:
    """bert-base-uncased with BLIP's ``init_tokenizer`` additions."""
    transformers = require("transformers", "transformers")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(ref)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


class ImageReward(RewardModel):
    name = "imagereward"

    def __init__(self, path: str, tokenizer: str | None, device: str, dtype: str, batch_size: int) -> None:
        super().__init__(path=path, tokenizer=tokenizer, dtype=dtype)  # device and batch size never change a score
        self.path, self.tokenizer_ref, self.device, self.dtype = path, tokenizer, device, dtype
        self.batch_size = batch_size
        self.net: ImageRewardNet | None = None
        self.tokenizer: Any = None

    def needs(self) -> list[FileNeed]:
        """The files ``astart`` reads (``rrbench doctor`` checks the same list): the checkpoint and its med config,
        and the tokenizer of ``-M tokenizer=``, else of the checkpoint folder when it holds one, else BERT's."""
        checkpoint = FileNeed("checkpoint", self.path, "path", ((CHECKPOINT,), (MED_CONFIG,)), f"hf download {HUB_ID}")
        folder = checkpoint.locate()
        ref = self.tokenizer_ref or (str(folder) if folder and (folder / "vocab.txt").is_file() else TOKENIZER_ID)
        return [checkpoint, FileNeed("tokenizer", ref, "tokenizer", (("vocab.txt", "tokenizer.json"),),
                                     f"hf download {ref}")]

    async def astart(self, generation: str = "t2i") -> None:
        if self.net is not None:
            return
        torch = require("torch", "transformers")
        folder, tokenizer_folder = (need.resolve() for need in self.needs())
        self.tokenizer = load_tokenizer(str(tokenizer_folder))
        state = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
        med = json.loads((folder / MED_CONFIG).read_text())
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        self.net = ImageRewardNet(state, med, device, getattr(torch, self.dtype))

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        import torch

        if self.net is None:
            raise RuntimeError("astart() loads the weights before score()")
        pixels, ok, out = decode_candidates(queries, preprocess)
        if ok:
            prompts = [queries[i].prompt for i in ok]
            text = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=MAX_LENGTH,
                                  return_tensors="pt")
            values = self.net.rewards(torch.stack(pixels), text["input_ids"], text["attention_mask"]).tolist()
            for i, value in zip(ok, values, strict=True):
                out[i] = Judgement(scores=(float(value),))
        return out


@reward_model("imagereward", description="ImageReward v1.0: BLIP ViT-L + cross-attention BERT + MLP, normalised score",
              extra="transformers", paper="arXiv 2304.05977")
def imagereward(path: str = HUB_ID, tokenizer: str | None = None, device: str = "auto", dtype: str = "float32",
                batch_size: int = 16) -> RewardModel:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"imagereward: batch_size must be a positive integer, got {batch_size!r}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"imagereward: dtype must be float32, bfloat16 or float16, not {dtype!r}")
    return ImageReward(path=path, tokenizer=tokenizer, device=device, dtype=dtype, batch_size=batch_size)
