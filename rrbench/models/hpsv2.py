"""`hpsv2` and `hpsv2.1`: Human Preference Score v2 and v2.1 (Wu et al. 2023, "Human Preference Score v2: A Solid
Benchmark for Evaluating Human Preferences of Text-to-Image Synthesis", arXiv 2306.09341). One family, two
checkpoints of the same architecture, so both are registered here.

The model is open_clip's ViT-H-14 fine-tuned on HPDv2. Score, as ``hpsv2/img_score.py`` computes it: the cosine
similarity of the normalised image and text features (``image_features @ text_features.T``, diagonal), with no
logit scale, so scores lie in [-1, 1] (typically 0.2-0.35).

Released layout (hub ``xswu/HPSv2``, named by ``hpsv2/utils.py`` ``hps_version_map``): ``HPS_v2_compressed.pt``
and ``HPS_v2.1_compressed.pt``, each a ``torch.save`` dict whose ``"state_dict"`` is the strict state dict of
open_clip's ``CLIP`` (``model.load_state_dict(checkpoint['state_dict'])``). ``-M path=`` is that folder, a hub id
in the cache, or the ``.pt`` file itself. The tokenizer is open_clip's CLIP BPE, which the release does not ship
(nor does the hpsv2 wheel); we read the same vocabulary from ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``
(``-M tokenizer=``, or the checkpoint folder when it holds one). Context 77 tokens, truncated keeping end-of-text.
open_clip cleans text with ftfy and ``html.unescape`` before lower-casing; the transformers tokenizer lower-cases
and collapses whitespace only, which differs only for HTML entities or broken unicode.

We run it as a transformers ``CLIPModel`` after renaming the open_clip keys (``to_transformers``):

================================================  ===============================================================
open_clip (``CLIP`` with a ``VisionTransformer``)  transformers ``CLIPModel``
================================================  ===============================================================
``visual.conv1.weight``                            ``vision_model.embeddings.patch_embedding.weight``
``visual.class_embedding``                         ``vision_model.embeddings.class_embedding``
``visual.positional_embedding``                    ``vision_model.embeddings.position_embedding.weight``
``visual.ln_pre.*`` / ``visual.ln_post.*``         ``vision_model.pre_layrnorm.*`` / ``vision_model.post_layernorm.*``
``visual.transformer.resblocks.N.*``               ``vision_model.encoder.layers.N.*`` (block names below)
``visual.proj`` (width x embed, ``x @ proj``)      ``visual_projection.weight`` (transposed)
``token_embedding.weight``                         ``text_model.embeddings.token_embedding.weight``
``positional_embedding``                           ``text_model.embeddings.position_embedding.weight``
``transformer.resblocks.N.*``                      ``text_model.encoder.layers.N.*``
``ln_final.*``                                     ``text_model.final_layer_norm.*``
``text_projection`` (width x embed)                ``text_projection.weight`` (transposed)
``logit_scale``                                    ``logit_scale`` (unused by the score)
block ``ln_1`` / ``ln_2``                          ``layer_norm1`` / ``layer_norm2``
block ``attn.in_proj_weight`` / ``_bias``          ``self_attn.{q,k,v}_proj.weight`` / ``.bias`` (rows split in 3)
block ``attn.out_proj.*``                          ``self_attn.out_proj.*``
block ``mlp.c_fc.*`` / ``mlp.c_proj.*``            ``mlp.fc1.*`` / ``mlp.fc2.*``
================================================  ===============================================================

Both towers compute the same function: pre-LN blocks, exact GELU (ViT-H-14 does not use QuickGELU and HPSv2 passes
``force_quick_gelu=False``), LayerNorm eps 1e-5, the class token after ``ln_post`` for the image, the end-of-text
position after ``ln_final`` for the text under a causal mask (open_clip takes ``argmax`` of the token ids, the
end-of-text token being the largest id; transformers takes its first occurrence, the same place). Sizes are read
from the weights; head counts are not stored, so they come from ``ViT-H-14.json`` head widths (vision 80, text
1024 / 16 = 64). Image: ``ResizeMaxSize(224)`` (long side to 224, bicubic, black padding to a square), OpenAI CLIP
mean/std (``pad`` in ``_clip``). The release scores under CUDA autocast (float16); we default to float32
(``-M dtype=`` to change).

For editing tasks the edited image is scored against the instruction text; the source image is not shown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench.doctor import FileNeed
from rrbench.models import _clip
from rrbench.models._base import RewardModel
from rrbench.registry import require, reward_model
from rrbench.types import UserError

if TYPE_CHECKING:
    import torch

HUB_ID = "xswu/HPSv2"
CHECKPOINTS = {"hpsv2": "HPS_v2_compressed.pt", "hpsv2.1": "HPS_v2.1_compressed.pt"}
TOKENIZER_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
VISION_HEAD_WIDTH = 80  # open_clip model_configs/ViT-H-14.json: vision_cfg.head_width
TEXT_HEAD_WIDTH = 64  # ViT-H-14.json text_cfg: width 1024 / heads 16
LAYER_NORM_EPS = 1e-5  # open_clip's LayerNorm is torch.nn.LayerNorm with its default eps
ACTIVATION = "gelu"  # nn.GELU: ViT-H-14 has no quick_gelu and HPSv2 passes force_quick_gelu=False

# Whole-key renames, open_clip -> transformers.
RENAMES = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight", "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight", "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
# Residual blocks: open_clip ``[visual.]transformer.resblocks.N.<name>`` -> ``<tower>.encoder.layers.N.<name>``.
BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
BLOCK_RENAMES = {
    "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
IN_PROJ = {"attn.in_proj_weight": "weight", "attn.in_proj_bias": "bias"}  # nn.MultiheadAttention's fused q, k, v


def to_transformers(state: dict[str, torch.Tensor], checkpoint: str) -> dict[str, torch.Tensor]:
    """The open_clip state dict under transformers ``CLIPModel`` names (see the table in the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in RENAMES:
            out[RENAMES[key]] = value
        elif key in TRANSPOSED:  # open_clip computes x @ proj; nn.Linear computes x @ weight.T
            out[TRANSPOSED[key]] = value.t().contiguous()
        elif (match := BLOCK.match(key)) and match[3] in IN_PROJ:
            stem = f"{'vision_model' if match[1] else 'text_model'}.encoder.layers.{match[2]}.self_attn"
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"{stem}.{name}_proj.{IN_PROJ[match[3]]}"] = part.contiguous()
        elif match and match[3] in BLOCK_RENAMES:
            tower = "vision_model" if match[1] else "text_model"
            out[f"{tower}.encoder.layers.{match[2]}.{BLOCK_RENAMES[match[3]]}"] = value
        else:
            raise UserError(f"unknown open_clip weight {key!r} in {checkpoint} (expected an open_clip ViT-H-14 CLIP)")
    return out


def clip_config(state: dict[str, torch.Tensor], tokenizer: Any, checkpoint: str) -> Any:
    """A ``CLIPConfig`` sized from the open_clip weights (ViT-H-14 in the release, smaller ones in tests)."""
    transformers = require("transformers", "transformers")
    try:
        width_v = int(state["visual.class_embedding"].shape[0])
        width_t = int(state["token_embedding.weight"].shape[1])
        patch = int(state["visual.conv1.weight"].shape[-1])
        grid = math.isqrt(int(state["visual.positional_embedding"].shape[0]) - 1)
        vision = dict(hidden_size=width_v, num_hidden_layers=_depth(state, "visual.transformer.resblocks."),
                      intermediate_size=int(state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                      num_attention_heads=_heads(width_v, VISION_HEAD_WIDTH, checkpoint), image_size=grid * patch,
                      patch_size=patch, hidden_act=ACTIVATION, layer_norm_eps=LAYER_NORM_EPS)
        text = dict(hidden_size=width_t, num_hidden_layers=_depth(state, "transformer.resblocks."),
                    intermediate_size=int(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                    num_attention_heads=_heads(width_t, TEXT_HEAD_WIDTH, checkpoint),
                    vocab_size=int(state["token_embedding.weight"].shape[0]),
                    max_position_embeddings=int(state["positional_embedding"].shape[0]), hidden_act=ACTIVATION,
                    layer_norm_eps=LAYER_NORM_EPS, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        embed = int(state["text_projection"].shape[1])
    except KeyError as exc:
        raise UserError(f"{checkpoint} has no {exc.args[0]!r}: not an open_clip ViT CLIP state dict") from None
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=embed)


def _depth(state: dict[str, Any], prefix: str) -> int:
    return 1 + max(int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix))


def _heads(width: int, head_width: int, checkpoint: str) -> int:
    if width % head_width:
        raise UserError(f"{checkpoint}: width {width} is not a multiple of ViT-H-14's head width {head_width}")
    return width // head_width


def read_state(file: Path) -> dict[str, torch.Tensor]:
    torch = require("torch", "transformers")
    checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{file} has no 'state_dict' (the HPSv2 release saves {{'state_dict': ...}})")
    return state


def build_model(state: dict[str, torch.Tensor], tokenizer: Any, checkpoint: str) -> Any:
    transformers = require("transformers", "transformers")
    config = clip_config(state, tokenizer, checkpoint)
    with _skip_init():  # every weight is overwritten: random init of a ViT-H would take seconds for nothing
        model = transformers.CLIPModel(config)
    result = model.load_state_dict(to_transformers(state, checkpoint), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"{checkpoint} does not match open_clip's CLIP: missing {sorted(result.missing_keys)[:3]}, "
                        f"unexpected {sorted(result.unexpected_keys)[:3]}")
    return model


def _skip_init() -> Any:
    for module in ("transformers.initialization", "transformers.modeling_utils"):  # v5, v4
        context: Callable[[], Any] | None = getattr(require(module, "transformers"), "no_init_weights", None)
        if context is not None:
            return context()
    import contextlib

    return contextlib.nullcontext()


class HPSv2(_clip.ClipFamilyModel):
    transform_mode = "pad"

    def __init__(self, name: str, path: str, tokenizer: str | None, device: str, dtype: str, batch_size: int) -> None:
        super().__init__(path=path, device=device, dtype=dtype, batch_size=batch_size, tokenizer=tokenizer)
        self.name = name  # type: ignore[misc]
        self.checkpoint = CHECKPOINTS[name]
        self.tokenizer_ref = tokenizer
        self.encoder: _clip.DualEncoder | None = None

    def needs(self) -> list[FileNeed]:
        """The files ``load`` reads (``rrbench doctor`` checks the same list): the ``.pt`` checkpoint, and the
        tokenizer of ``-M tokenizer=``, else of the checkpoint's folder when it holds one, else of ViT-H-14's."""
        checkpoint = FileNeed("checkpoint", self.path, "path", ((self.checkpoint,),),
                              f"hf download {HUB_ID} {self.checkpoint}", file_ok=True)
        folder = checkpoint.locate()
        ref = self.tokenizer_ref or (str(folder) if folder and _clip.has_tokenizer(folder) else TOKENIZER_ID)
        return [checkpoint, FileNeed("tokenizer", ref, "tokenizer", (_clip.TOKENIZER_FILES,), f"hf download {ref}")]

    def load(self, device: str, dtype: torch.dtype) -> int:
        file, tokenizer_folder = (need.resolve() for need in self.needs())
        tokenizer = _clip.load_tokenizer(str(tokenizer_folder))
        model = build_model(read_state(file), tokenizer, file.name)
        self.encoder = _clip.DualEncoder(model, tokenizer, device, dtype)
        return int(model.config.vision_config.image_size)

    def rewards(self, pixels: torch.Tensor, prompts: list[str]) -> list[float]:
        assert self.encoder is not None
        return self.encoder.cosine(pixels, prompts).tolist()


def _factory(name: str, path: str, tokenizer: str | None, device: str, dtype: str, batch_size: int) -> RewardModel:
    _clip.check_options(name, device, dtype, batch_size)
    if tokenizer is not None and not isinstance(tokenizer, str):
        raise UserError(f"{name}: tokenizer must be a folder or hub id, got {tokenizer!r}")
    return HPSv2(name, path=path, tokenizer=tokenizer, device=device, dtype=dtype, batch_size=batch_size)


@reward_model("hpsv2", description="HPS v2: cosine of an HPDv2 fine-tuned open_clip ViT-H-14 (HPS_v2_compressed.pt)",
              extra="transformers", paper="arXiv 2306.09341")
def hpsv2(path: str = HUB_ID, tokenizer: str | None = None, device: str = "auto", dtype: str = "float32",
          batch_size: int = 16) -> RewardModel:
    return _factory("hpsv2", path, tokenizer, device, dtype, batch_size)


@reward_model("hpsv2.1", description="HPS v2.1: cosine of an HPDv2 fine-tuned open_clip ViT-H-14 "
              "(HPS_v2.1_compressed.pt)", extra="transformers", paper="arXiv 2306.09341")
def hpsv2_1(path: str = HUB_ID, tokenizer: str | None = None, device: str = "auto", dtype: str = "float32",
            batch_size: int = 16) -> RewardModel:
    return _factory("hpsv2.1", path, tokenizer, device, dtype, batch_size)
