"""`pickscore`: PickScore v1 (Kirstain et al. 2023, "Pick-a-Pic: An Open Dataset of User Preferences for
Text-to-Image Generation", NeurIPS 2023, arXiv 2305.01569).

A CLIP ViT-H/14 fine-tuned on Pick-a-Pic. Score, as the model card's ``calc_probs`` computes it before its softmax:
``logit_scale.exp() * cos(E_image, E_text)`` with the checkpoint's own ``logit_scale`` (about 100), so typical
scores are around 20. The embeddings are ``get_image_features`` / ``get_text_features`` (the projected class and
end-of-text tokens), L2-normalised.

Released layout (hub ``yuvalkirstain/PickScore_v1``, transformers format): ``config.json`` and
``model.safetensors`` / ``pytorch_model.bin``, no processor; the card loads the processor of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (``-M processor=``, a folder or hub id; the checkpoint folder itself is
used when it holds a tokenizer). Text: CLIP BPE, ``padding=True, truncation=True, max_length=77``. Image: that
processor's ``CLIPImageProcessor``: the short side to 224 (bicubic), centre crop 224 with transformers' offset,
OpenAI CLIP mean/std (``crop-floor`` in ``_clip``); the size is read from ``vision_config.image_size``.

For editing tasks the edited image is scored against the instruction text; the source image is not shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rrbench.doctor import FileNeed
from rrbench.models import _clip
from rrbench.models._base import RewardModel
from rrbench.registry import require, reward_model
from rrbench.types import UserError

if TYPE_CHECKING:
    import torch

HUB_ID = "yuvalkirstain/PickScore_v1"
PROCESSOR_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScore(_clip.ClipFamilyModel):
    name = "pickscore"
    transform_mode = "crop-floor"

    def __init__(self, path: str, processor: str | None, device: str, dtype: str, batch_size: int) -> None:
        super().__init__(path=path, device=device, dtype=dtype, batch_size=batch_size, processor=processor)
        self.processor_ref = processor
        self.encoder: _clip.DualEncoder | None = None

    def needs(self) -> list[FileNeed]:
        """The files ``load`` reads (``rrbench doctor`` checks the same list): the checkpoint, and the tokenizer of
        ``-M processor=``, else of the checkpoint folder when it holds one, else of the card's processor."""
        weights = FileNeed("weights", self.path, "path", (("config.json",), _clip.WEIGHT_FILES),
                           f"hf download {HUB_ID}")
        folder = weights.locate()
        processor = self.processor_ref or (str(folder) if folder and _clip.has_tokenizer(folder) else PROCESSOR_ID)
        return [weights, FileNeed("processor", processor, "processor", (_clip.TOKENIZER_FILES,),
                                  f"hf download {processor}")]

    def load(self, device: str, dtype: torch.dtype) -> int:
        transformers = require("transformers", "transformers")
        folder, tokenizer_folder = (need.resolve() for need in self.needs())
        model = transformers.CLIPModel.from_pretrained(folder)
        self.encoder = _clip.DualEncoder(model, _clip.load_tokenizer(str(tokenizer_folder)), device, dtype)
        return int(model.config.vision_config.image_size)

    def rewards(self, pixels: torch.Tensor, prompts: list[str]) -> list[float]:
        assert self.encoder is not None
        return (self.encoder.logit_scale * self.encoder.cosine(pixels, prompts)).tolist()


@reward_model("pickscore", description="PickScore v1: logit_scale * cos of a Pick-a-Pic fine-tuned CLIP ViT-H/14",
              extra="transformers", paper="arXiv 2305.01569")
def pickscore(path: str = HUB_ID, processor: str | None = None, device: str = "auto", dtype: str = "float32",
              batch_size: int = 16) -> RewardModel:
    _clip.check_options("pickscore", device, dtype, batch_size)
    if processor is not None and not isinstance(processor, str):
        raise UserError(f"pickscore: processor must be a folder or hub id, got {processor!r}")
    return PickScore(path=path, processor=processor, device=device, dtype=dtype, batch_size=batch_size)
