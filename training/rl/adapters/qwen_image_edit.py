"""`qwen-image-edit`, `qwen-image-edit-2509`: Qwen-Image-Edit over diffusers' ``QwenImageEditPipeline`` and
``QwenImageEditPlusPipeline`` components.

As Qwen-Image (qwen_image.py), plus the source image (the first of a sample's sources), twice, as the pipelines use
it: the Qwen2.5-VL text encoder sees it with the instruction (Edit: resized to about 1024² pixels; 2509: to about
384², "Picture 1:" template), and its VAE latents (normalised and packed like the target's) are appended to the
image tokens of every denoiser call, with their own ``img_shapes`` entry; the prediction for the source tokens is
dropped. The VAE sees the source center-cropped to a square at the training resolution (the trainer's
data.square), so a batch stacks and the source costs as many tokens as the target, as in flux_kontext.py (the
pipelines resize it to about 1024² at inference).
The instruction's embedding holds the VL image tokens (about 1400 for Edit's 1024² view, 200 for 2509's), hence the
larger ``max_sequence_length`` defaults; a longer one is refused rather than cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rrbench import DataError
from rrbench_train.rl.adapters.qwen_image import NEGATIVE_PROMPT, QwenImageAdapter
from rrbench_train.rl.algorithm import Conditions

if TYPE_CHECKING:
    import torch
    from PIL import Image


class QwenImageEditAdapter(QwenImageAdapter):
    name = "qwen-image-edit"
    pipeline_class: ClassVar[str] = "QwenImageEditPipeline"
    default_max_sequence_length: ClassVar[int] = 2048  # the template, ~1400 VL image tokens, the instruction
    truncate: ClassVar[bool] = False
    vl_area: ClassVar[int] = 1024 * 1024  # the pipeline shows the VL encoder its calculated ~1024² image

    def encode(self, prompts: Sequence[str], sources: Sequence[Sequence[Image.Image]] | None) -> Conditions:
        import torch

        if sources is None or len(sources) != len(prompts) or any(not s for s in sources):
            raise DataError(f"generator '{self.name}' edits an image: every sample needs a source image")
        images = [s[0].convert("RGB") for s in sources]
        keys = [_digest(image) for image in images]
        texts = [self._edit_text(p, image, key) for p, image, key in zip(prompts, images, keys, strict=True)]
        negatives = ([self._edit_text(NEGATIVE_PROMPT, image, key) for image, key in zip(images, keys, strict=True)]
                     if self.guidance > 1 else None)
        cond = self.text_conditions(texts, negatives)
        latents = torch.cat([self.cached(("source", key), lambda image=image: self._source(image))
                             for image, key in zip(images, keys, strict=True)])
        return Conditions({**cond.batched, "image_latents": latents})

    def _edit_text(self, prompt: str, image: Image.Image, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        def make() -> tuple[torch.Tensor, torch.Tensor]:
            return self.pad(*self.pipe.encode_prompt(prompt=[prompt], image=self.vl_image(image), device=self.device))

        out: tuple[torch.Tensor, torch.Tensor] = self.cached(("prompt", prompt, key), make)
        return out

    def vl_image(self, image: Image.Image) -> Any:
        """The source as the pipeline shows it to the VL text encoder."""
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

        width, height, _ = calculate_dimensions(self.vl_area, image.width / image.height)
        return self.pipe.image_processor.resize(image, height, width)

    def _source(self, image: Image.Image) -> torch.Tensor:
        """Packed, normalised VAE latents ``[1, M, 4·z]`` of the source at the training resolution."""
        pipe, res = self.pipe, self.config.generator.resolution
        pixels = pipe.image_processor.preprocess(image, res, res).unsqueeze(2).to(self.device, pipe.vae.dtype)
        latent = pipe._encode_vae_image(image=pixels, generator=None).float()  # the mode, then (z − mean)/std
        h, w = latent.shape[3:]
        packed: torch.Tensor = pipe._pack_latents(latent, 1, self.channels, h, w)
        return packed

    def model_input(self, x: torch.Tensor, cond: Conditions) -> tuple[torch.Tensor, list[list[tuple[int, int, int]]]]:
        import torch

        side = self.latent_hw // 2
        return (torch.cat([x, cond.batched["image_latents"].to(x.dtype)], dim=1),
                [[(1, side, side), (1, side, side)]] * x.shape[0])


class QwenImageEdit2509Adapter(QwenImageEditAdapter):
    name = "qwen-image-edit-2509"
    pipeline_class: ClassVar[str] = "QwenImageEditPlusPipeline"
    default_max_sequence_length: ClassVar[int] = 1024  # the template, ~200 VL image tokens, the instruction
    vl_area: ClassVar[int] = 384 * 384  # the Plus pipeline's CONDITION_IMAGE_SIZE

    def vl_image(self, image: Image.Image) -> Any:
        return [super().vl_image(image)]  # a list: the Plus pipeline's "Picture 1:" template


def _digest(image: Image.Image) -> str:
    """A source's identity for the caches (rows load their images afresh every epoch)."""
    return hashlib.sha1(image.tobytes() + repr((image.size, image.mode)).encode()).hexdigest()
