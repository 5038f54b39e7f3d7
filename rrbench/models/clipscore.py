"""`clipscore`: CLIPScore (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning", EMNLP 2021, arXiv 2104.08718) on CLIP ViT-L/14, as torchmetrics computes it.

Score: ``max(w * cos(E_image, E_text), 0)`` with ``w = 100`` by default, torchmetrics'
``CLIPScore`` / ``clip_score`` (``src/torchmetrics/functional/multimodal/clip_score.py``, default model
``openai/clip-vit-large-patch14``), the convention of most text-to-image papers. ``-M w=2.5 -M prefix="A photo
depicts"`` gives the paper's CLIP-S formula (``w * max(cos, 0)``, the same thing for w > 0; the paper used ViT-B/32,
so pass that checkpoint with ``-M path=`` for its exact numbers). A prefix gets a trailing space, as in the paper's
code. The embeddings are the projected class / end-of-text tokens, L2-normalised.

Released layout (hub ``openai/clip-vit-large-patch14``, transformers format): ``config.json``,
``model.safetensors`` or ``pytorch_model.bin``, and the tokenizer files (``tokenizer.json`` / ``vocab.json`` +
``merges.txt``). Text: CLIP BPE, truncated to 77 tokens keeping the end-of-text token (torchmetrics cuts longer
captions after tokenising, dropping it; this matters only past 77 tokens). Image: the short side to 224 (bicubic),
centre crop 224 with transformers' offset, OpenAI CLIP mean/std (``crop-floor`` in ``_clip``); the size is read
from ``vision_config.image_size``.

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

HUB_ID = "openai/clip-vit-large-patch14"
WEIGHT = 100.0  # torchmetrics: 100 * cos; the CLIPScore paper's w is 2.5


class CLIPScore(_clip.ClipFamilyModel):
    name = "clipscore"
    transform_mode = "crop-floor"

    def __init__(self, path: str, w: float, prefix: str, device: str, dtype: str, batch_size: int) -> None:
        super().__init__(path=path, device=device, dtype=dtype, batch_size=batch_size, w=w, prefix=prefix)
        self.w = w
        self.prefix = prefix if not prefix or prefix.endswith(" ") else prefix + " "
        self.encoder: _clip.DualEncoder | None = None

    def needs(self) -> list[FileNeed]:
        """The files ``load`` reads (``rrbench doctor`` checks the same list)."""
        return [FileNeed("weights", self.path, "path", (("config.json",), _clip.WEIGHT_FILES, _clip.TOKENIZER_FILES),
                         f"hf download {HUB_ID}")]

    def load(self, device: str, dtype: torch.dtype) -> int:
        transformers = require("transformers", "transformers")
        folder = self.needs()[0].resolve()
        model = transformers.CLIPModel.from_pretrained(folder)
        self.encoder = _clip.DualEncoder(model, _clip.load_tokenizer(str(folder)), device, dtype)
        return int(model.config.vision_config.image_size)

    def rewards(self, pixels: torch.Tensor, prompts: list[str]) -> list[float]:
        assert self.encoder is not None
        cosine = self.encoder.cosine(pixels, [self.prefix + p for p in prompts])
        return (self.w * cosine).clamp(min=0.0).tolist()


@reward_model("clipscore", description="CLIPScore: max(100 * cos, 0) of CLIP ViT-L/14 image and prompt embeddings",
              extra="transformers", paper="arXiv 2104.08718")
def clipscore(path: str = HUB_ID, w: float = WEIGHT, prefix: str = "", device: str = "auto", dtype: str = "float32",
              batch_size: int = 32) -> RewardModel:
    _clip.check_options("clipscore", device, dtype, batch_size)
    if isinstance(w, bool) or not isinstance(w, int | float) or w <= 0:
        raise UserError(f"clipscore: w must be a positive number, got {w!r}")
    if not isinstance(prefix, str):
        raise UserError(f"clipscore: prefix must be text, got {prefix!r}")
    return CLIPScore(path=path, w=float(w), prefix=prefix, device=device, dtype=dtype, batch_size=batch_size)
