"""`flux-dev`: FLUX.1 text-to-image over diffusers' ``FluxPipeline`` components (see algorithm.Adapter).

Latents are Flux's packed tokens ``[B, (h/2)(w/2), 4·c]``. FLUX.1-dev is guidance-distilled: the guidance value is
an input of the transformer (one pass per step, no CFG), used alike in sampling and training. The two LoRA adapters
live on the transformer itself (diffusers' ``add_adapter``), so the reference is ``disable_adapters()`` and nothing
is copied.
"""

from __future__ import annotations

import contextlib
import copy
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rrbench import UserError
from rrbench_train.rl.algorithm import OLD, TRAINED, Conditions

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from rrbench_train.rl.config import RLConfig


class FluxAdapter:
    name = "flux-dev"
    pipeline_class: ClassVar[str] = "FluxPipeline"
    default_guidance: ClassVar[float] = 3.5

    def __init__(self, config: RLConfig, device: torch.device) -> None:
        import torch

        self.config = config
        self.device = device
        self.dtype = _dtype(config.generator.dtype, device)
        self.pipe = load_pipeline(self.pipeline_class, config, self.dtype)
        self.pipe.set_progress_bar_config(disable=True)
        for part in ("vae", "text_encoder", "text_encoder_2"):
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
        self.guidance = config.generator.guidance if config.generator.guidance is not None else self.default_guidance
        res = config.generator.resolution
        self.latent_hw = 2 * (res // (self.pipe.vae_scale_factor * 2))
        self.channels = self.transformer.config.in_channels // 4
        self.tokens = (self.latent_hw // 2) ** 2
        self._img_ids = self.pipe._prepare_latent_image_ids(1, self.latent_hw // 2, self.latent_hw // 2, device,
                                                            torch.float32)
        self._prompts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    # -- conditions ----------------------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str], sources: Sequence[Sequence[Image.Image]] | None) -> Conditions:
        import torch

        embeds, pooled, text_ids = zip(*(self._prompt(p) for p in prompts), strict=True)
        return Conditions({"prompt_embeds": torch.cat(embeds), "pooled": torch.cat(pooled)},
                          {"txt_ids": text_ids[0], "img_ids": self._img_ids})

    def _prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prompt's T5/CLIP embeddings, kept: a group repeats its prompt K times, and epochs revisit it."""
        import torch

        if prompt not in self._prompts:
            if len(self._prompts) > 4096:
                self._prompts.clear()
            with torch.no_grad():
                embeds, pooled, text_ids = self.pipe.encode_prompt(
                    prompt=[prompt], prompt_2=None, device=self.device,
                    max_sequence_length=self.config.generator.max_sequence_length)
            self._prompts[prompt] = (embeds.float(), pooled.float(), text_ids.float())
        return self._prompts[prompt]

    # -- noise, schedule, velocity ------------------------------------------------------------------------
    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        import torch

        hw = self.latent_hw
        out = []
        for seed in seeds:
            gen = torch.Generator("cpu").manual_seed(int(seed) % 2**63)
            latent = torch.randn((1, self.channels, hw, hw), generator=gen, dtype=torch.float32)
            out.append(self.pipe._pack_latents(latent, 1, self.channels, hw, hw))
        return torch.cat(out).to(self.device)

    def sigmas(self, steps: int) -> torch.Tensor:
        import numpy as np
        import torch
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        scheduler = copy.deepcopy(self.pipe.scheduler)
        extra: dict[str, Any] = {}
        if scheduler.config.get("use_dynamic_shifting", False):  # FLUX.1's schedule depends on the image size
            extra["mu"] = calculate_shift(self.tokens, scheduler.config.get("base_image_seq_len", 256),
                                          scheduler.config.get("max_image_seq_len", 4096),
                                          scheduler.config.get("base_shift", 0.5),
                                          scheduler.config.get("max_shift", 1.15))
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist(), device="cpu", **extra)
        return torch.as_tensor(scheduler.sigmas, dtype=torch.float32).to(self.device)

    def model_input(self, x: torch.Tensor, cond: Conditions) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer's image tokens and their position ids (Kontext appends the source's)."""
        return x, cond.shared["img_ids"]

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditions, lora: str | None = TRAINED
                 ) -> torch.Tensor:
        import torch

        hidden, img_ids = self.model_input(x, cond)
        guidance = torch.full((x.shape[0],), self.guidance, device=x.device, dtype=torch.float32)
        model = self.train_model if lora == TRAINED else self.transformer
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        with self.using(lora), autocast:
            out = model(hidden_states=hidden.to(self.dtype), timestep=sigma.to(self.dtype), guidance=guidance,
                        pooled_projections=cond.batched["pooled"].to(self.dtype),
                        encoder_hidden_states=cond.batched["prompt_embeds"].to(self.dtype),
                        txt_ids=cond.shared["txt_ids"], img_ids=img_ids, return_dict=False)[0]
        return out[:, : x.shape[1]].float()

    @contextlib.contextmanager
    def using(self, lora: str | None) -> Iterator[None]:
        """Run with the named adapter (None: all disabled), then back to ``default``, trainable, ``old`` frozen:
        peft's set_adapter/enable_adapters flip ``requires_grad``, which must not leak into the optimizer."""
        if lora == TRAINED:
            yield
            return
        try:
            if lora is None:
                self.transformer.disable_adapters()
            else:
                self.transformer.set_adapter(lora)
            yield
        finally:
            if lora is None:
                self.transformer.enable_adapters()
            self.transformer.set_adapter(TRAINED)
            for name, param in self.transformer.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(f".{TRAINED}." in name)

    # -- images -------------------------------------------------------------------------------------------
    def decode(self, x0: torch.Tensor) -> list[Image.Image]:
        import torch

        pipe, res = self.pipe, self.config.generator.resolution
        with torch.no_grad():
            latents = pipe._unpack_latents(x0.float(), res, res, pipe.vae_scale_factor)
            latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            image = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
        return list(pipe.image_processor.postprocess(image.float(), output_type="pil"))

    # -- LoRA parameters ----------------------------------------------------------------------------------
    def trainable(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return ((n, p) for n, p in self.transformer.named_parameters() if "lora_" in n and f".{TRAINED}." in n)

    def lora_pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(self.transformer.named_parameters())
        for name, param in self.trainable():
            yield param, params[name.replace(f".{TRAINED}.", f".{OLD}.")]


# ------------------------------------------------------------------------------------------------ shared


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


def lora_config(config: RLConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha, target_modules=list(config.lora.targets),
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
        raise UserError(f"config lora.targets {config.lora.targets}: {' '.join(str(exc).split())[:200]}") from None
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
