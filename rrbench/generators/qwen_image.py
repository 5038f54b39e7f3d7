"""`qwen-image`: Qwen-Image text-to-image through diffusers' ``QwenImagePipeline`` (docs/generators.md).

Qwen-Image is not guidance-distilled: its guidance is true classifier-free guidance (``true_cfg_scale``, 4.0), and
diffusers runs it only when a negative prompt is given; without one ``true_cfg_scale`` is silently unused. The
default negative prompt is therefore a single space, as in Qwen's own examples, and settings record ``true_cfg``
(whether CFG runs). ``-G negative_prompt=null`` turns CFG off.
"""

from __future__ import annotations

from typing import Any

from rrbench.generators._base import Generator
from rrbench.generators._diffusers import DiffusersGenerator, Options
from rrbench.registry import generator

CFG_NEGATIVE = " "  # Qwen's examples pass a single space when there is nothing to steer away from


class QwenImage(DiffusersGenerator):
    name = "qwen-image"
    pipeline_class = "QwenImagePipeline"
    hub_id = "Qwen/Qwen-Image"


@generator("qwen-image", description="Qwen-Image text-to-image (diffusers QwenImagePipeline; 50 steps, true CFG 4.0)",
           extra="diffusers")
def qwen_image(path: str = QwenImage.hub_id, revision: str | None = None, dtype: str = "auto", device: str = "auto",
               cpu_offload: bool = False, batch_size: int = 1, steps: int | None = None,
               true_cfg_scale: float | None = None, width: int = 1024, height: int = 1024,
               negative_prompt: str | None = CFG_NEGATIVE, lora: str | None = None, lora_scale: float = 1.0,
               **call: Any) -> Generator:
    """None takes the pipeline's default; other ``-G`` keys go to ``QwenImagePipeline.__call__`` once checked."""
    options = Options(path, revision, dtype, device, cpu_offload, batch_size, lora, lora_scale)
    return QwenImage(options, dict(steps=steps, true_cfg_scale=true_cfg_scale, width=width, height=height,
                                   negative_prompt=negative_prompt, **call))
