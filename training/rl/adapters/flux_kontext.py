"""`flux-kontext-dev`: FLUX.1 Kontext editing over diffusers' ``FluxKontextPipeline`` components.

As Flux T2I (flux.py), plus the source image: VAE-encoded once per sample, packed, and appended to the image tokens
of every denoiser call with position ids whose first axis is 1 (the pipeline's layout); the prediction for the
source tokens is dropped. The trainer hands the source center-cropped to a square at the training resolution
(data.square, as the released trainer's PromptImageDataset), so a batch stacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rrbench import DataError
from rrbench_train.rl.adapters.flux import FluxAdapter
from rrbench_train.rl.algorithm import Conditions

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rrbench_train.rl.config import RLConfig


class FluxKontextAdapter(FluxAdapter):
    name = "flux-kontext-dev"
    pipeline_class: ClassVar[str] = "FluxKontextPipeline"
    default_guidance: ClassVar[float] = 2.5  # the released Kontext trainer's, in sampling and training

    def __init__(self, config: RLConfig, device: torch.device) -> None:
        import torch

        super().__init__(config, device)
        source_ids = self._img_ids.clone()
        source_ids[..., 0] = 1
        self._pair_ids = torch.cat([self._img_ids, source_ids])

    def encode(self, prompts: Sequence[str], sources: Sequence[Sequence[Image.Image]] | None) -> Conditions:
        import torch

        if sources is None or len(sources) != len(prompts) or any(not s for s in sources):
            raise DataError(f"generator '{self.name}' edits an image: every sample needs a source image")
        text = super().encode(prompts, None)
        with torch.no_grad():
            latents = torch.cat([self._source(s[0]) for s in sources])
        return Conditions({**text.batched, "image_latents": latents}, {**text.shared, "img_ids": self._pair_ids})

    def _source(self, image: Image.Image) -> torch.Tensor:
        pipe, res = self.pipe, self.config.generator.resolution
        pixels = pipe.image_processor.preprocess(image.convert("RGB"), res, res).to(self.device, pipe.vae.dtype)
        latent = pipe.vae.encode(pixels).latent_dist.mode()
        latent = (latent - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
        hw = latent.shape[-1]
        return pipe._pack_latents(latent.float(), 1, self.channels, hw, hw)

    def model_input(self, x: torch.Tensor, cond: Conditions) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        return torch.cat([x, cond.batched["image_latents"].to(x.dtype)], dim=1), cond.shared["img_ids"]
