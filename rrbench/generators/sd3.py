"""`sd3.5-medium`, `sd3.5-large`: Stable Diffusion 3.5 text-to-image through diffusers'
``StableDiffusion3Pipeline`` (docs/generators.md).

The defaults are the pipeline's (28 steps, guidance 7.0, classifier-free guidance with an empty negative prompt);
Stability's model cards suggest 40 steps / 4.5 (Medium) and 28 steps / 3.5 (Large): pass them with ``-G`` to follow
the cards. The T5 encoder reads at most ``max_sequence_length`` (256) tokens.
"""

from __future__ import annotations

from typing import Any

from rrbench.generators._base import Generator
from rrbench.generators._diffusers import DiffusersGenerator, Options
from rrbench.registry import generator


class SD35Medium(DiffusersGenerator):
    name = "sd3.5-medium"
    pipeline_class = "StableDiffusion3Pipeline"
    hub_id = "stabilityai/stable-diffusion-3.5-medium"


class SD35Large(SD35Medium):
    name = "sd3.5-large"
    hub_id = "stabilityai/stable-diffusion-3.5-large"


@generator("sd3.5-medium", description="Stable Diffusion 3.5 Medium text-to-image (diffusers "
           "StableDiffusion3Pipeline; 28 steps, guidance 7.0)", extra="diffusers")
def sd35_medium(path: str = SD35Medium.hub_id, revision: str | None = None, dtype: str = "auto",
                device: str = "auto", cpu_offload: bool = False, batch_size: int = 1, steps: int | None = None,
                guidance: float | None = None, width: int = 1024, height: int = 1024,
                negative_prompt: str | None = None, lora: str | None = None, lora_scale: float = 1.0,
                **call: Any) -> Generator:
    """None takes the pipeline's default; other ``-G`` keys go to ``StableDiffusion3Pipeline.__call__``."""
    options = Options(path, revision, dtype, device, cpu_offload, batch_size, lora, lora_scale)
    return SD35Medium(options, dict(steps=steps, guidance=guidance, width=width, height=height,
                                    negative_prompt=negative_prompt, **call))


@generator("sd3.5-large", description="Stable Diffusion 3.5 Large text-to-image (diffusers "
           "StableDiffusion3Pipeline; 28 steps, guidance 7.0)", extra="diffusers")
def sd35_large(path: str = SD35Large.hub_id, revision: str | None = None, dtype: str = "auto",
               device: str = "auto", cpu_offload: bool = False, batch_size: int = 1, steps: int | None = None,
               guidance: float | None = None, width: int = 1024, height: int = 1024,
               negative_prompt: str | None = None, lora: str | None = None, lora_scale: float = 1.0,
               **call: Any) -> Generator:
    """None takes the pipeline's default; other ``-G`` keys go to ``StableDiffusion3Pipeline.__call__``."""
    options = Options(path, revision, dtype, device, cpu_offload, batch_size, lora, lora_scale)
    return SD35Large(options, dict(steps=steps, guidance=guidance, width=width, height=height,
                                   negative_prompt=negative_prompt, **call))
