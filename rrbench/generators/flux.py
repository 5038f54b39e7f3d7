"""`flux-dev`: FLUX.1-dev text-to-image through diffusers' ``FluxPipeline`` (docs/generators.md).

FLUX.1-dev is guidance-distilled: ``guidance`` (3.5 by default) is an input of the transformer, not classifier-free
guidance, so one denoiser pass per step. Its pipeline also offers true CFG (``-G true_cfg_scale=`` above 1 together
with ``-G negative_prompt=``), off by default.
"""

from __future__ import annotations

from typing import Any

from rrbench.generators._base import Generator
from rrbench.generators._diffusers import DiffusersGenerator, Options
from rrbench.registry import generator


class FluxDev(DiffusersGenerator):
    name = "flux-dev"
    pipeline_class = "FluxPipeline"
    hub_id = "black-forest-labs/FLUX.1-dev"


@generator("flux-dev", description="FLUX.1-dev text-to-image (diffusers FluxPipeline; 28 steps, guidance 3.5)",
           extra="diffusers")
def flux_dev(path: str = FluxDev.hub_id, revision: str | None = None, dtype: str = "auto", device: str = "auto",
             cpu_offload: bool = False, batch_size: int = 1, steps: int | None = None, guidance: float | None = None,
             width: int = 1024, height: int = 1024, negative_prompt: str | None = None, lora: str | None = None,
             lora_scale: float = 1.0, **call: Any) -> Generator:
    """None takes the pipeline's default; other ``-G`` keys go to ``FluxPipeline.__call__`` once checked."""
    options = Options(path, revision, dtype, device, cpu_offload, batch_size, lora, lora_scale)
    return FluxDev(options, dict(steps=steps, guidance=guidance, width=width, height=height,
                                 negative_prompt=negative_prompt, **call))
