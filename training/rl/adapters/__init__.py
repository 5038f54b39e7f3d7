"""Thin adapters over diffusers pipelines: what the RL loop needs from a generator (encode, velocity, sample, decode,
LoRA), one file per pipeline family, named as rrbench's ``@generator``s. See algorithm.Adapter."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rrbench import UserError

if TYPE_CHECKING:
    import torch

    from rrbench_train.rl.algorithm import Adapter
    from rrbench_train.rl.config import RLConfig

# rrbench generator name -> (module, class, kind)
SUPPORTED = {
    "flux-dev": ("rrbench_train.rl.adapters.flux", "FluxAdapter", "t2i"),
    "flux-kontext-dev": ("rrbench_train.rl.adapters.flux_kontext", "FluxKontextAdapter", "edit"),
    "sd3.5-medium": ("rrbench_train.rl.adapters.sd3", "SD35MediumAdapter", "t2i"),
    "sd3.5-large": ("rrbench_train.rl.adapters.sd3", "SD35LargeAdapter", "t2i"),
    "qwen-image": ("rrbench_train.rl.adapters.qwen_image", "QwenImageAdapter", "t2i"),
    "qwen-image-edit": ("rrbench_train.rl.adapters.qwen_image_edit", "QwenImageEditAdapter", "edit"),
    "qwen-image-edit-2509": ("rrbench_train.rl.adapters.qwen_image_edit", "QwenImageEdit2509Adapter", "edit"),
}
EXTRA = "pip install 'rrbench[diffusers,train]'"


def check_generator(name: str) -> str:
    """The generator's kind (t2i | edit), or one line saying what is supported."""
    if name not in SUPPORTED:
        raise UserError(f"unknown generator {name!r} for rrbench-train rl (supported: {', '.join(SUPPORTED)}; "
                        f"`rrbench ls generators` lists rrbench's)")
    return SUPPORTED[name][2]


def adapter_class(name: str) -> Any:
    """The adapter class of a generator (its module imports neither torch nor diffusers at import time)."""
    check_generator(name)
    module, cls, _ = SUPPORTED[name]
    return getattr(importlib.import_module(module), cls)


def build_adapter(config: RLConfig, device: torch.device) -> Adapter:
    cls = adapter_class(config.generator.name)
    try:
        adapter: Adapter = cls(config, device)
    except ImportError as exc:  # diffusers, transformers or peft missing (imported when the pipeline loads)
        raise UserError(f"generator '{config.generator.name}' needs diffusers, transformers and peft "
                        f"({' '.join(str(exc).split())[:160]}): {EXTRA}") from None
    return adapter
