"""`sd3.5-medium`, `sd3.5-large`: Stable Diffusion 3.5 text-to-image over diffusers' ``StableDiffusion3Pipeline``
components (see algorithm.Adapter).

Latents are the VAE's own ``[B, C, h, w]`` (SD3's transformer patchifies inside), normalised as the pipeline does
((z − shift)·scale). Text: the pipeline's ``encode_prompt`` (two CLIP encoders and T5, padded to fixed lengths)
gives ``[B, 77 + L, D]`` embeddings and ``[B, 2·768]`` pooled projections. The transformer's timestep is σ·1000
(the scheduler's ``timesteps``, which the pipeline passes as they are), unlike Flux and Qwen-Image, whose
transformers take σ. The schedule is the pipeline's default ``set_timesteps(steps)`` (SD3.5's shift 3), then 0.

Guidance. SD3.5 is not guidance-distilled: its pipeline runs classifier-free guidance (7.0 by default; the model
cards say 3.5–4.5). The RL adapter defaults to **no CFG** (``generator.guidance`` 1.0, one denoiser pass per
velocity): DiffusionNFT is CFG-free (the paper trains and samples without CFG, and the released trainers run
Qwen-Image-Edit with ``true_cfg_scale`` 1), and one pass halves the cost of every rollout and training forward. With
``generator.guidance`` > 1 every velocity — sampling, training, the ``old`` and the reference — is the CFG mix
v_u + g·(v_c − v_u), v_u from the empty prompt (the pipeline's negative prompt), in one batched call: Flow-GRPO's
SD3.5-M recipe (CFG 4.5) needs the same guidance in sampling and training, which this gives. Evaluate a CFG-free
LoRA with ``rrbench generate --generator sd3.5-medium -G guidance=1`` (the pipeline's default is 7.0).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rrbench import UserError
from rrbench_train.rl.adapters._base import PipelineAdapter
from rrbench_train.rl.algorithm import TRAINED, Conditions

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rrbench_train.rl.config import RLConfig


class SD35MediumAdapter(PipelineAdapter):
    name = "sd3.5-medium"
    pipeline_class: ClassVar[str] = "StableDiffusion3Pipeline"
    components: ClassVar[tuple[str, ...]] = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")
    default_max_sequence_length: ClassVar[int] = 256  # the pipeline's (T5 tokens; CLIP's 77 come first)
    default_guidance: ClassVar[float] = 1.0  # CFG-free: see the module docstring

    def __init__(self, config: RLConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.guidance = config.generator.guidance if config.generator.guidance is not None else self.default_guidance
        res, patch = config.generator.resolution, self.transformer.config.patch_size
        self.latent_hw = res // self.pipe.vae_scale_factor
        if res % self.pipe.vae_scale_factor or self.latent_hw % patch:
            raise UserError(f"config generator.resolution must be a multiple of {self.pipe.vae_scale_factor * patch} "
                            f"for {self.name}, got {res}")
        self.channels = self.transformer.config.in_channels
        self.tokens = (self.latent_hw // patch) ** 2

    # -- conditions ----------------------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str], sources: Sequence[Sequence[Image.Image]] | None) -> Conditions:
        import torch

        embeds, pooled = zip(*(self._prompt(p) for p in prompts), strict=True)
        shared = {}
        if self.guidance > 1:
            shared["neg_prompt_embeds"], shared["neg_pooled"] = self._prompt("")  # the pipeline's negative prompt
        return Conditions({"prompt_embeds": torch.cat(embeds), "pooled": torch.cat(pooled)}, shared)

    def _prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        def make() -> tuple[torch.Tensor, torch.Tensor]:
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=[prompt], prompt_2=None, prompt_3=None, device=self.device, do_classifier_free_guidance=False,
                max_sequence_length=self.max_sequence_length)
            return embeds.float(), pooled.float()

        out: tuple[torch.Tensor, torch.Tensor] = self.cached(("prompt", prompt), make)
        return out

    # -- noise, schedule, velocity ------------------------------------------------------------------------
    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        return self.seeded_noise(seeds, (1, self.channels, self.latent_hw, self.latent_hw))

    def sigmas(self, steps: int) -> torch.Tensor:
        import torch
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        scheduler = copy.deepcopy(self.pipe.scheduler)
        extra: dict[str, Any] = {}
        if scheduler.config.get("use_dynamic_shifting", None):  # not SD3.5's, but the pipeline supports it
            extra["mu"] = calculate_shift(self.tokens, scheduler.config.get("base_image_seq_len", 256),
                                          scheduler.config.get("max_image_seq_len", 4096),
                                          scheduler.config.get("base_shift", 0.5),
                                          scheduler.config.get("max_shift", 1.16))
        scheduler.set_timesteps(steps, device="cpu", **extra)
        return torch.as_tensor(scheduler.sigmas, dtype=torch.float32).to(self.device)

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditions, lora: str | None = TRAINED
                 ) -> torch.Tensor:
        import torch

        embeds, pooled = cond.batched["prompt_embeds"], cond.batched["pooled"]
        cfg = self.guidance > 1
        if cfg:  # one call, unconditional half first (the pipeline's order)
            b = x.shape[0]
            embeds = torch.cat([cond.shared["neg_prompt_embeds"].expand(b, -1, -1), embeds])
            pooled = torch.cat([cond.shared["neg_pooled"].expand(b, -1), pooled])
            x, sigma = torch.cat([x, x]), torch.cat([sigma, sigma])
        out = self.denoise(lora, hidden_states=x.to(self.dtype), timestep=(sigma * 1000).to(self.dtype),
                           encoder_hidden_states=embeds.to(self.dtype), pooled_projections=pooled.to(self.dtype))
        out = out.float()
        if cfg:
            uncond, text = out.chunk(2)
            out = uncond + self.guidance * (text - uncond)
        return out

    # -- images -------------------------------------------------------------------------------------------
    def decode(self, x0: torch.Tensor) -> list[Image.Image]:
        import torch

        pipe = self.pipe
        with torch.no_grad():
            latents = x0.float() / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            image = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
        return list(pipe.image_processor.postprocess(image.float(), output_type="pil"))


class SD35LargeAdapter(SD35MediumAdapter):
    name = "sd3.5-large"
