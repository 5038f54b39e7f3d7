"""Thin adapters over diffusers pipelines: what the RL loop needs from a generator (encode, velocity, sample, decode,
LoRA), one file per pipeline family, named as rrbench's ``@generator``s. See algorithm.Adapter."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rrbench import UserError

if TYPE_CHECKING:
    import torch

    from rrbench_train.rl.algorithm import Adapter
    from rrbench_train.rl.config import RLConfig

# rrbench generator name -> (module, class, kind)
SUPPORTED = {
    "flux-dev": ("rrbench_train.rl.adapters.flux", "FluxAdapter", "t2i"),
    "flux-kontext-dev": ("rrbench_train.rl.adapters.flux_kontext", "FluxKontextAdapter", "edit"),
}
# rrbench generators the RL loop has no adapter for yet
NOT_YET = ("sd3.5-medium", "sd3.5-large", "qwen-image", "qwen-image-edit", "qwen-image-edit-2509")


def check_generator(name: str) -> str:
    """The generator's kind (t2i | edit), or one line saying what is supported."""
    supported = ", ".join(SUPPORTED)
    if name in NOT_YET:
        raise UserError(f"generator '{name}' is not supported by rrbench-train rl yet (supported: {supported})")
    if name not in SUPPORTED:
        raise UserError(f"unknown generator {name!r} for rrbench-train rl (supported: {supported}; "
                        f"`rrbench ls generators` lists rrbench's)")
    return SUPPORTED[name][2]


def build_adapter(config: RLConfig, device: torch.device) -> Adapter:
    check_generator(config.generator.name)
    module, cls, _ = SUPPORTED[config.generator.name]
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:  # diffusers or peft not installed
        raise UserError(f"generator '{config.generator.name}' needs diffusers and peft ({exc}); "
                        "pip install 'rrbench[diffusers,train]'") from None
    adapter: Adapter = getattr(imported, cls)(config, device)
    return adapter
