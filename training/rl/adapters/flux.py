"""`flux-dev`: FLUX.1 text-to-image over diffusers' ``FluxPipeline`` components (see algorithm.Adapter).

Latents are Flux's packed tokens ``[B, (h/2)(w/2), 4·c]``. FLUX.1-dev is guidance-distilled: the guidance value is
an input of the transformer (one pass per step, no CFG), used alike in sampling and training. The transformer takes
σ itself as its timestep (it multiplies by 1000 inside). The two LoRA adapters live on the transformer itself
(diffusers' ``add_adapter``), so the reference is ``disable_adapters()`` and nothing is copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rrbench_train.rl.adapters._base import PipelineAdapter, shifted_sigmas
from rrbench_train.rl.adapters._base import lora_config as lora_config  # the trainer imports it from here
from rrbench_train.rl.algorithm import TRAINED, Conditions

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rrbench_train.rl.config import RLConfig


class FluxAdapter(PipelineAdapter):
    name = "flux-dev"
    pipeline_class: ClassVar[str] = "FluxPipeline"
    components: ClassVar[tuple[str, ...]] = ("vae", "text_encoder", "text_encoder_2")
    default_guidance: ClassVar[float] = 3.5

    def __init__(self, config: RLConfig, device: torch.device) -> None:
        import torch

        super().__init__(config, device)
        self.guidance = config.generator.guidance if config.generator.guidance is not None else self.default_guidance
        res = config.generator.resolution
        self.latent_hw = 2 * (res // (self.pipe.vae_scale_factor * 2))
        self.channels = self.transformer.config.in_channels // 4
        self.tokens = (self.latent_hw // 2) ** 2
        self._img_ids = self.pipe._prepare_latent_image_ids(1, self.latent_hw // 2, self.latent_hw // 2, device,
                                                            torch.float32)

    # -- conditions ----------------------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str], sources: Sequence[Sequence[Image.Image]] | None) -> Conditions:
        import torch

        embeds, pooled, text_ids = zip(*(self._prompt(p) for p in prompts), strict=True)
        return Conditions({"prompt_embeds": torch.cat(embeds), "pooled": torch.cat(pooled)},
                          {"txt_ids": text_ids[0], "img_ids": self._img_ids})

    def _prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prompt's T5/CLIP embeddings, kept."""
        def make() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            embeds, pooled, text_ids = self.pipe.encode_prompt(prompt=[prompt], prompt_2=None, device=self.device,
                                                               max_sequence_length=self.max_sequence_length)
            return embeds.float(), pooled.float(), text_ids.float()

        out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = self.cached(("prompt", prompt), make)
        return out

    # -- noise, schedule, velocity ------------------------------------------------------------------------
    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        hw, c = self.latent_hw, self.channels
        return self.seeded_noise(seeds, (1, c, hw, hw), lambda t: self.pipe._pack_latents(t, 1, c, hw, hw))

    def sigmas(self, steps: int) -> torch.Tensor:
        return shifted_sigmas(self.pipe.scheduler, steps, self.tokens).to(self.device)

    def model_input(self, x: torch.Tensor, cond: Conditions) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer's image tokens and their position ids (Kontext appends the source's)."""
        return x, cond.shared["img_ids"]

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditions, lora: str | None = TRAINED
                 ) -> torch.Tensor:
        import torch

        hidden, img_ids = self.model_input(x, cond)
        guidance = torch.full((x.shape[0],), self.guidance, device=x.device, dtype=torch.float32)
        out = self.denoise(lora, hidden_states=hidden.to(self.dtype), timestep=sigma.to(self.dtype),
                           guidance=guidance, pooled_projections=cond.batched["pooled"].to(self.dtype),
                           encoder_hidden_states=cond.batched["prompt_embeds"].to(self.dtype),
                           txt_ids=cond.shared["txt_ids"], img_ids=img_ids)
        return out[:, : x.shape[1]].float()

    # -- images -------------------------------------------------------------------------------------------
    def decode(self, x0: torch.Tensor) -> list[Image.Image]:
        import torch

        pipe, res = self.pipe, self.config.generator.resolution
        with torch.no_grad():
            latents = pipe._unpack_latents(x0.float(), res, res, pipe.vae_scale_factor)
            latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            image = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
        return list(pipe.image_processor.postprocess(image.float(), output_type="pil"))
