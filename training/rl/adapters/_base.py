"""What every diffusers adapter shares (see algorithm.Adapter): loading the pipeline from a local folder, the two LoRA
adapters on its denoiser, switching between them, per-seed noise and a cache of encoded prompts. Each family's file
(flux.py, sd3.py, qwen_image.py, ...) adds its encoding, its denoiser call and its latent layout.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rrbench import UserError
from rrbench_train.rl.algorithm import OLD, TRAINED

if TYPE_CHECKING:
    import torch

    from rrbench_train.rl.config import RLConfig

# The attention projections of the MM-DiT denoisers (Flux, SD3, Qwen-Image): image and text streams of the joint
# blocks (and Flux's single blocks, which have no add_* projections). Flux's and Qwen-Image's released LoRA recipes,
# and Flow-GRPO's SD3.5 one.
ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
CACHE_SIZE = 4096  # encoded prompts kept (a group repeats its prompt K times; epochs revisit it)


class PipelineAdapter:
    """Loads ``pipeline_class`` from ``generator.path``, freezes ``components`` on the device, and puts the
    ``default`` and ``old`` LoRA adapters on the transformer."""

    name: str = ""
    pipeline_class: ClassVar[str] = ""
    components: ClassVar[tuple[str, ...]] = ()  # frozen parts moved to the device (encoders, VAE)
    default_targets: ClassVar[tuple[str, ...]] = ATTENTION_TARGETS  # lora.targets when the config names none
    default_max_sequence_length: ClassVar[int] = 512  # generator.max_sequence_length when the config names none

    def __init__(self, config: RLConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.dtype = _dtype(config.generator.dtype, device)
        self.pipe = load_pipeline(self.pipeline_class, config, self.dtype)
        self.pipe.set_progress_bar_config(disable=True)
        for part in self.components:
            module = getattr(self.pipe, part)
            module.requires_grad_(False)
            module.to(device)
        self.transformer = self.pipe.transformer
        self.transformer.requires_grad_(False)
        self.transformer.to(device)
        if config.generator.gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        add_lora(self.transformer, config)
        self.train_model: Any = self.transformer  # the trainer puts accelerate's (DDP) wrapper here
        self.max_sequence_length = config.generator.max_sequence_length or self.default_max_sequence_length
        self._cache: dict[Hashable, Any] = {}
        self._active: str | None = TRAINED  # the adapter peft has active now (add_lora leaves default)
        self._lora_params = [(param, f".{TRAINED}." in name) for name, param in self.transformer.named_parameters()
                             if "lora_" in name]

    def cached(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()`` once per key, without gradients (encoded prompts and sources)."""
        import torch

        if key not in self._cache:
            if len(self._cache) > CACHE_SIZE:
                self._cache.clear()
            with torch.no_grad():
                self._cache[key] = make()
        return self._cache[key]

    def seeded_noise(self, seeds: Sequence[int], shape: tuple[int, ...],
                     layout: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> torch.Tensor:
        """One float32 ``randn(shape)`` per seed from its own CPU generator (what the pipeline draws with
        ``generator=torch.Generator("cpu").manual_seed(seed)``), put in the denoiser's layout, stacked."""
        import torch

        out = []
        for seed in seeds:
            gen = torch.Generator("cpu").manual_seed(int(seed) % 2**63)
            out.append(layout(torch.randn(shape, generator=gen, dtype=torch.float32)))
        return torch.cat(out).to(self.device)

    def denoise(self, lora: str | None, **inputs: Any) -> torch.Tensor:
        """The transformer's first output with the named adapter, under autocast to the compute dtype."""
        import torch

        model = self.train_model if lora == TRAINED else self.transformer
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        self.activate(lora)
        with autocast:
            out: torch.Tensor = model(**inputs, return_dict=False)[0]
        return out

    def activate(self, lora: str | None) -> None:
        """Make the named adapter the active one (None: every adapter disabled, the reference). Switching is lazy,
        only when another adapter is asked for: peft's set_adapter walks every module of the denoiser, and a
        rollout makes steps × forwards with ``old`` in a row. Whatever is active, exactly ``default``'s LoRA
        parameters require gradients: set_adapter and disable_adapters flip ``requires_grad``, which must neither
        leak into the optimizer nor cut a ``default`` graph still waiting for its backward (GRPO's loss asks the
        reference after the trained forward)."""
        if lora == self._active:
            return
        if self._active is None:
            self.transformer.enable_adapters()
        if lora is None:
            self.transformer.disable_adapters()
        else:
            self.transformer.set_adapter(lora)
        for param, trained in self._lora_params:
            param.requires_grad_(trained)
        self._active = lora

    def trainable(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return ((n, p) for n, p in self.transformer.named_parameters() if "lora_" in n and f".{TRAINED}." in n)

    def lora_pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(self.transformer.named_parameters())
        for name, param in self.trainable():
            yield param, params[name.replace(f".{TRAINED}.", f".{OLD}.")]


# ------------------------------------------------------------------------------------------------ shared


def shifted_sigmas(scheduler: Any, steps: int, tokens: int) -> torch.Tensor:
    """The Flux / Qwen-Image pipelines' schedule: σ = linspace(1, 1/steps, steps) shifted by a copy of the
    scheduler (by ``mu`` from the image's token count when it shifts dynamically), then 0. float32, on the CPU."""
    import numpy as np
    import torch
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift  # Qwen-Image's is a copy of it

    scheduler = copy.deepcopy(scheduler)
    extra: dict[str, Any] = {}
    if scheduler.config.get("use_dynamic_shifting", False):
        extra["mu"] = calculate_shift(tokens, scheduler.config.get("base_image_seq_len", 256),
                                      scheduler.config.get("max_image_seq_len", 4096),
                                      scheduler.config.get("base_shift", 0.5), scheduler.config.get("max_shift", 1.15))
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist(), device="cpu", **extra)
    return torch.as_tensor(scheduler.sigmas, dtype=torch.float32)


def _dtype(name: str, device: torch.device) -> torch.dtype:
    import torch

    if name == "auto":  # bf16 is what the released checkpoints train in; CPUs are slow at it
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if name not in table:
        raise UserError(f"config generator.dtype must be auto, bf16, fp16 or fp32, got {name!r}")
    return table[name]


def load_pipeline(pipeline_class: str, config: RLConfig, dtype: torch.dtype) -> Any:
    """The pipeline from a local folder or the local hub cache (never a download), of the expected class."""
    import diffusers

    ref = config.generator.path
    if not ref:
        raise UserError(f"config generator.path: name the {pipeline_class} folder (or a cached hub id)")
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(ref, revision=config.generator.revision, local_files_only=True))
        except Exception:  # huggingface_hub has several "not cached" errors
            raise UserError(f"generator.path {ref}: no such folder, and not in the local Hugging Face cache "
                            f"(fetch it once with `hf download {ref}`)") from None
    try:
        found = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{folder} is not a diffusers pipeline folder (no readable model_index.json)") from None
    if found != pipeline_class:
        raise UserError(f"{folder} holds a {found} pipeline; generator '{config.generator.name}' needs a "
                        f"{pipeline_class} folder")
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # a training log wants no per-component bars
    transformers.utils.logging.disable_progress_bar()
    return getattr(diffusers, pipeline_class).from_pretrained(folder, local_files_only=True, dtype=dtype)


def lora_targets(config: RLConfig) -> list[str]:
    """``lora.targets``, or the generator's own default (its adapter's ``default_targets``)."""
    if config.lora.targets is not None:
        return list(config.lora.targets)
    from rrbench_train.rl.adapters import adapter_class

    return list(adapter_class(config.generator.name).default_targets)


def lora_config(config: RLConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha, target_modules=lora_targets(config),
                      init_lora_weights=True)


def add_lora(transformer: Any, config: RLConfig) -> None:
    """``default`` (trained) and ``old`` (sampler) adapters, equal at the start, in float32 whatever the base
    dtype (bf16 LoRA updates of 1e-4 × lr vanish). A fresh LoRA has B = 0 (the base model); ``init_scale`` > 0
    draws B at random, seeded, so tests start away from the reference."""
    import torch

    torch.manual_seed(config.seed)
    try:
        transformer.add_adapter(lora_config(config), adapter_name=TRAINED)
        with warnings.catch_warnings():  # peft warns that a second adapter is a second adapter: it is meant
            warnings.simplefilter("ignore", UserWarning)
            transformer.add_adapter(lora_config(config), adapter_name=OLD)
    except ValueError as exc:
        raise UserError(f"config lora.targets {lora_targets(config)}: {' '.join(str(exc).split())[:200]}") from None
    params = dict(transformer.named_parameters())
    with torch.no_grad():
        for name, param in params.items():
            if "lora_" in name:
                param.data = param.data.float()
                if config.lora.init_scale > 0 and "lora_B" in name and f".{TRAINED}." in name:
                    param.normal_(0.0, config.lora.init_scale)
        for name, param in params.items():
            if "lora_" in name and f".{TRAINED}." in name:
                params[name.replace(f".{TRAINED}.", f".{OLD}.")].copy_(param)
    transformer.set_adapter(TRAINED)
    for name, param in transformer.named_parameters():
        param.requires_grad_("lora_" in name and f".{TRAINED}." in name)
