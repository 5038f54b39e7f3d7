"""`qwen-image`: Qwen-Image text-to-image over diffusers' ``QwenImagePipeline`` components (see algorithm.Adapter).

Latents are the pipeline's packed 2×2 patches ``[B, (h/2)(w/2), 4·z]`` of its 5-D VAE latents ``[B, z, 1, h, w]``
(one frame), in the VAE's normalised space ((z − latents_mean)/latents_std, undone by ``decode``), exactly as the
installed pipeline's ``prepare_latents`` / ``_pack_latents`` / ``_unpack_latents`` do. The transformer takes σ as its
timestep (the pipeline passes t/1000) and ``img_shapes`` per sample for its RoPE. The schedule is the pipeline's:
linspace(1, 1/steps) shifted by ``mu`` from the image's token count, then 0.

Text: the Qwen2.5-VL hidden states of the prompt template (``encode_prompt``), zero-padded to a fixed
``generator.max_sequence_length`` tokens with ``encoder_hidden_states_mask`` marking the real ones, so that the
conditions of any two batches stack (the trainer concatenates micro-batches); the mask keeps padding out of the
attention, and the text RoPE positions of the real tokens do not move, so the velocity is the unpadded one.
Longer prompts are cut there, as the pipeline cuts them.

Guidance: true CFG is off by default (``generator.guidance`` = ``true_cfg_scale`` = 1, one pass), as in the
released DiffusionNFT trainer (CFG-free). With ``generator.guidance`` > 1 every velocity is the pipeline's true-CFG
mix with the negative prompt " " (rrbench's default, Qwen's examples): v = v_n + g·(v_c − v_n), rescaled per token
to the norm of v_c, in one batched call — the same in sampling, training and the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rrbench import UserError
from rrbench_train.rl.adapters._base import PipelineAdapter, shifted_sigmas
from rrbench_train.rl.algorithm import TRAINED, Conditions

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rrbench_train.rl.config import RLConfig

NEGATIVE_PROMPT = " "  # rrbench's qwen-image default (Qwen's examples), for generator.guidance > 1


class QwenImageAdapter(PipelineAdapter):
    name = "qwen-image"
    pipeline_class: ClassVar[str] = "QwenImagePipeline"
    components: ClassVar[tuple[str, ...]] = ("vae", "text_encoder")
    default_max_sequence_length: ClassVar[int] = 512  # the pipeline's __call__ default
    default_guidance: ClassVar[float] = 1.0  # true_cfg_scale: CFG-free
    truncate: ClassVar[bool] = True  # longer prompts are cut (the T2I pipeline's behaviour); editing refuses them

    def __init__(self, config: RLConfig, device: torch.device) -> None:
        super().__init__(config, device)
        self.guidance = config.generator.guidance if config.generator.guidance is not None else self.default_guidance
        res, scale = config.generator.resolution, self.pipe.vae_scale_factor
        if res % (scale * 2):
            raise UserError(f"config generator.resolution must be a multiple of {scale * 2} for {self.name}, got {res}")
        self.latent_hw = 2 * (res // (scale * 2))
        self.channels = self.transformer.config.in_channels // 4
        self.tokens = (self.latent_hw // 2) ** 2

    # -- conditions ----------------------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str], sources: Sequence[Sequence[Image.Image]] | None) -> Conditions:
        return self.text_conditions([self._text(p) for p in prompts],
                                    [self._text(NEGATIVE_PROMPT) for _ in prompts] if self.guidance > 1 else None)

    def _text(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        def make() -> tuple[torch.Tensor, torch.Tensor]:
            return self.pad(*self.pipe.encode_prompt(prompt=[prompt], device=self.device,
                                                     max_sequence_length=self.max_sequence_length))

        out: tuple[torch.Tensor, torch.Tensor] = self.cached(("prompt", prompt), make)
        return out

    def pad(self, embeds: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[1, L, D]`` float32 embeddings and ``[1, L]`` mask, L = max_sequence_length."""
        import torch

        length, limit = embeds.shape[1], self.max_sequence_length
        if length > limit and not self.truncate:
            raise UserError(f"generator '{self.name}': a prompt and its source image encode to {length} tokens, more "
                            f"than generator.max_sequence_length {limit}; raise it")
        length = min(length, limit)
        padded = embeds.new_zeros((1, limit, embeds.shape[2]), dtype=torch.float32)
        padded[:, :length] = embeds[:, :length].float()
        full = torch.zeros((1, limit), dtype=torch.long, device=embeds.device)
        full[:, :length] = 1 if mask is None else mask[:, :length].long()
        return padded, full

    @staticmethod
    def text_conditions(texts: list[tuple[torch.Tensor, torch.Tensor]],
                        negatives: list[tuple[torch.Tensor, torch.Tensor]] | None) -> Conditions:
        import torch

        batched = {"prompt_embeds": torch.cat([t[0] for t in texts]), "prompt_mask": torch.cat([t[1] for t in texts])}
        if negatives is not None:
            batched["neg_prompt_embeds"] = torch.cat([t[0] for t in negatives])
            batched["neg_prompt_mask"] = torch.cat([t[1] for t in negatives])
        return Conditions(batched)

    # -- noise, schedule, velocity ------------------------------------------------------------------------
    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        hw, c = self.latent_hw, self.channels
        return self.seeded_noise(seeds, (1, 1, c, hw, hw), lambda t: self.pipe._pack_latents(t, 1, c, hw, hw))

    def sigmas(self, steps: int) -> torch.Tensor:
        return shifted_sigmas(self.pipe.scheduler, steps, self.tokens).to(self.device)

    def model_input(self, x: torch.Tensor, cond: Conditions) -> tuple[torch.Tensor, list[list[tuple[int, int, int]]]]:
        """The transformer's image tokens and ``img_shapes`` (editing appends the source's)."""
        return x, [[(1, self.latent_hw // 2, self.latent_hw // 2)]] * x.shape[0]

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditions, lora: str | None = TRAINED
                 ) -> torch.Tensor:
        import torch

        hidden, shapes = self.model_input(x, cond)
        embeds, mask = cond.batched["prompt_embeds"], cond.batched["prompt_mask"]
        cfg = self.guidance > 1
        if cfg:  # one call, conditional half first
            embeds = torch.cat([embeds, cond.batched["neg_prompt_embeds"]])
            mask = torch.cat([mask, cond.batched["neg_prompt_mask"]])
            hidden, sigma, shapes = torch.cat([hidden, hidden]), torch.cat([sigma, sigma]), shapes * 2
        out = self.denoise(lora, hidden_states=hidden.to(self.dtype), timestep=sigma.to(self.dtype),
                           encoder_hidden_states=embeds.to(self.dtype), encoder_hidden_states_mask=mask,
                           img_shapes=shapes)
        out = out[:, : x.shape[1]].float()
        if cfg:
            text, negative = out.chunk(2)
            mixed = negative + self.guidance * (text - negative)
            out = mixed * (text.norm(dim=-1, keepdim=True) / mixed.norm(dim=-1, keepdim=True))
        return out

    # -- images -------------------------------------------------------------------------------------------
    def decode(self, x0: torch.Tensor) -> list[Image.Image]:
        import torch

        pipe, res, vae = self.pipe, self.config.generator.resolution, self.pipe.vae
        with torch.no_grad():
            latents = pipe._unpack_latents(x0.float(), res, res, pipe.vae_scale_factor)
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
            std = torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
            image = vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0][:, :, 0]
        return list(pipe.image_processor.postprocess(image.float(), output_type="pil"))
