"""`flux-kontext-dev`: FLUX.1-Kontext-dev image editing through diffusers' ``FluxKontextPipeline``
(docs/generators.md).

Sizes. The pipeline snaps the source image to the nearest of its preferred ~1024² resolutions (``auto_resize``,
diffusers' ``_auto_resize``) and makes the output ``max_area`` pixels (1024² by default) with the aspect ratio of
``width``/``height``. When those are not given, rrbench passes the source image's own size, so the edit keeps the
source's aspect ratio (diffusers alone would make a 1024² square). For a 512-px run pass ``-G max_area=262144``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rrbench.generators._base import Generator, ImageRequest
from rrbench.generators._diffusers import RENAMED, DiffusersEditGenerator, Options
from rrbench.registry import generator


class FluxKontextDev(DiffusersEditGenerator):
    name = "flux-kontext-dev"
    pipeline_class = "FluxKontextPipeline"
    hub_id = "black-forest-labs/FLUX.1-Kontext-dev"
    renamed: ClassVar[Mapping[str, str]] = {**RENAMED, "_auto_resize": "auto_resize"}

    def inputs(self, request: ImageRequest) -> dict[str, Any]:
        inputs = super().inputs(request)
        width, height = inputs["image"].size
        inputs["width"], inputs["height"] = inputs.get("width") or width, inputs.get("height") or height
        return inputs


@generator("flux-kontext-dev", description="FLUX.1-Kontext-dev image editing (diffusers FluxKontextPipeline; 28 "
           "steps, guidance 3.5, 1024² output area)", extra="diffusers")
def flux_kontext_dev(path: str = FluxKontextDev.hub_id, revision: str | None = None, dtype: str = "auto",
                     device: str = "auto", cpu_offload: bool = False, batch_size: int = 1, steps: int | None = None,
                     guidance: float | None = None, width: int | None = None, height: int | None = None,
                     max_area: int | None = None, auto_resize: bool | None = None, negative_prompt: str | None = None,
                     lora: str | None = None, lora_scale: float = 1.0, **call: Any) -> Generator:
    """None takes the pipeline's default (width/height: the source image's); other ``-G`` keys go to
    ``FluxKontextPipeline.__call__`` once checked."""
    options = Options(path, revision, dtype, device, cpu_offload, batch_size, lora, lora_scale)
    return FluxKontextDev(options, dict(steps=steps, guidance=guidance, width=width, height=height,
                                        max_area=max_area, auto_resize=auto_resize, negative_prompt=negative_prompt,
                                        **call))
