"""`qwen-image-edit`, `qwen-image-edit-2509`: Qwen-Image-Edit through diffusers' ``QwenImageEditPipeline`` and
``QwenImageEditPlusPipeline`` (docs/generators.md).

Both resize the source image to about 1024² pixels for the VAE (the Plus pipeline shows the Qwen2.5-VL encoder a
384² copy) and, without ``width``/``height``, make an output of about 1024² pixels with the source's aspect ratio.
True CFG as ``qwen-image``: ``true_cfg_scale`` 4.0, run only with a negative prompt, a single space by default.
The Plus pipeline (2509) edits from every source image of a request (multi-image editing) and refuses batches;
rrbench calls every pipeline one image at a time anyway.
"""

from __future__ import annotations

from typing import Any

from rrbench.generators._base import Generator, ImageRequest
from rrbench.generators._diffusers import DiffusersEditGenerator, Options
from rrbench.generators.qwen_image import CFG_NEGATIVE
from rrbench.registry import generator


class QwenImageEdit(DiffusersEditGenerator):
    name = "qwen-image-edit"
    pipeline_class = "QwenImageEditPipeline"
    hub_id = "Qwen/Qwen-Image-Edit"


class QwenImageEdit2509(DiffusersEditGenerator):
    name = "qwen-image-edit-2509"
    pipeline_class = "QwenImageEditPlusPipeline"
    hub_id = "Qwen/Qwen-Image-Edit-2509"

    def source(self, request: ImageRequest) -> Any:
        super().source(request)  # the same error for a request without a source
        return [media.image() for media in request.source]


@generator("qwen-image-edit", description="Qwen-Image-Edit image editing (diffusers QwenImageEditPipeline; 50 steps, "
           "true CFG 4.0)", extra="diffusers")
def qwen_image_edit(path: str = QwenImageEdit.hub_id, revision: str | None = None, dtype: str = "auto",
                    device: str = "auto", cpu_offload: bool = False, batch_size: int = 1, steps: int | None = None,
                    true_cfg_scale: float | None = None, width: int | None = None, height: int | None = None,
                    negative_prompt: str | None = CFG_NEGATIVE, lora: str | None = None, lora_scale: float = 1.0,
                    **call: Any) -> Generator:
    """None takes the pipeline's default; other ``-G`` keys go to ``QwenImageEditPipeline.__call__``."""
    options = Options(path, revision, dtype, device, cpu_offload, batch_size, lora, lora_scale)
    return QwenImageEdit(options, dict(steps=steps, true_cfg_scale=true_cfg_scale, width=width, height=height,
                                       negative_prompt=negative_prompt, **call))


@generator("qwen-image-edit-2509", description="Qwen-Image-Edit-2509 (multi-)image editing (diffusers "
           "QwenImageEditPlusPipeline; 50 steps, true CFG 4.0)", extra="diffusers")
def qwen_image_edit_2509(path: str = QwenImageEdit2509.hub_id, revision: str | None = None, dtype: str = "auto",
                         device: str = "auto", cpu_offload: bool = False, batch_size: int = 1,
                         steps: int | None = None, true_cfg_scale: float | None = None, width: int | None = None,
                         height: int | None = None, negative_prompt: str | None = CFG_NEGATIVE,
                         lora: str | None = None, lora_scale: float = 1.0, **call: Any) -> Generator:
    """None takes the pipeline's default; other ``-G`` keys go to ``QwenImageEditPlusPipeline.__call__``."""
    options = Options(path, revision, dtype, device, cpu_offload, batch_size, lora, lora_scale)
    return QwenImageEdit2509(options, dict(steps=steps, true_cfg_scale=true_cfg_scale, width=width, height=height,
                                           negative_prompt=negative_prompt, **call))
