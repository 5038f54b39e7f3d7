"""Tiny random-weight diffusers pipelines in the released folder layouts, built offline and deterministically.

Each ``build_*`` writes a ``save_pretrained`` folder (``model_index.json`` + one sub-folder per component) that
``<Pipeline>.from_pretrained`` loads exactly as it loads the released weights, so the real loading and calling code
runs. The tokenizers are made here (no hub): CLIP's byte-level BPE from ``tests.fixtures.tiny_clip``, a T5 unigram
vocabulary written out in code, and a byte-level BPE with Qwen's special tokens for the Qwen2.5-VL text encoder.

Sizes are chosen for speed on two CPU cores at 32×32 and 2 steps, keeping the couplings the pipelines assume:
Flux T5 ``d_model`` = ``joint_attention_dim``, CLIP hidden = ``pooled_projection_dim``, transformer ``in_channels``
= 4 × VAE latent channels; SD3 ``pooled_projection_dim`` = 2 × CLIP projection; Qwen-Image text hidden =
``joint_attention_dim``, ``axes_dims_rope`` summing to the head dim. The editing pipelines resize every condition
image to about 1024² before the VAE encodes it, so the Qwen-Image VAE downsamples 16× (four stages, not the released
three: 64×64 latents) and has no residual blocks in its encoder (the full-resolution 3-D convolutions were most of a
CPU call): it encodes a 1024² image in about 0.4 s.

    python -m tests.tiny_diffusers flux OUT_DIR
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.tiny_clip import write_tokenizer as write_clip_tokenizer

WORDS = ["a", "photo", "of", "the", "cat", "dog", "on", "sofa", "red", "blue", "green", "rocket", "astronaut", "sky",
         "cup", "coffee", "make", "it", "grayscale", "flip", "image", "bad", "quality", "blurry", "painting", "poison",
         "black", "nan", "oom", "boom", "fine", "edit", "turn", "into", "night"]
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# The text the Qwen-Image pipelines wrap every prompt in (their prompt templates): learnt by the tiny BPE so that a
# prompt stays a few dozen tokens long.
QWEN_TEMPLATE_TEXT = (
    "system Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships "
    "of the objects and background: Describe the key features of the input image (color, shape, size, texture, "
    "objects, background), then explain how the user's text instruction should alter or modify the image. Generate "
    "a new image that meets the user's requirements while maintaining consistency with the original input where "
    "appropriate. user assistant Picture 1:"
)
SEED = 0


# --------------------------------------------------------------------------------------------- text encoders


def clip_text(folder: Path, projection: bool, hidden: int = 32, projection_dim: int = 32) -> tuple[Any, Any]:
    """A CLIP text encoder (with projection for SD3, pooled hidden state for Flux) and its tokenizer."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = write_clip_tokenizer(folder)
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                            projection_dim=projection_dim, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
    return model.eval(), tokenizer


def t5_text(d_model: int) -> tuple[Any, Any]:
    """A T5 encoder with a unigram vocabulary of whole words and single characters (SentencePiece's layout)."""
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    chars = sorted(set("".join(WORDS)) | set("abcdefghijklmnopqrstuvwxyz0123456789.,'"))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -5.0) for w in WORDS] + [(c, -10.0) for c in chars] + [(f"▁{c}", -9.0) for c in chars]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=16, d_ff=2 * d_model, num_layers=2,
                      num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(SEED)
    return T5EncoderModel(config).eval(), tokenizer


def qwen_tokenizer() -> Any:
    """A byte-level BPE with the Qwen2.5-VL special tokens, learnt from the prompt templates and a word list."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=QWEN_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([QWEN_TEMPLATE_TEXT, " ".join(WORDS)] * 20, trainer=trainer)
    return Qwen2Tokenizer(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                          additional_special_tokens=QWEN_SPECIAL[1:])


def qwen_vl_text(tokenizer: Any, hidden: int) -> Any:
    """A two-layer Qwen2.5-VL (text and vision) whose last hidden state is the Qwen-Image prompt embedding."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": [2, 2, 4]},
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 32, "num_heads": 2,
                       "out_hidden_size": hidden, "fullatt_block_indexes": [1], "window_size": 56},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(SEED)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def qwen_processor(tokenizer: Any) -> Any:
    """The Qwen2-VL processor, its image processor capped at 56×56 pixels so a condition image is a few tokens."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    return Qwen2VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor())


# ----------------------------------------------------------------------------------------------- pipelines


def _flux_parts(folder: Path) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    clip, clip_tokenizer = clip_text(folder / "tokenizer", projection=False)
    t5, t5_tokenizer = t5_text(d_model=32)
    torch.manual_seed(SEED)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=[4, 4, 8])
    torch.manual_seed(SEED)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    return {"transformer": transformer, "vae": vae, "scheduler": FlowMatchEulerDiscreteScheduler(),
            "text_encoder": clip, "tokenizer": clip_tokenizer, "text_encoder_2": t5, "tokenizer_2": t5_tokenizer}


def build_flux(out: Path) -> Path:
    from diffusers import FluxPipeline

    return _save(FluxPipeline(**_flux_parts(out)), out)


def build_flux_kontext(out: Path) -> Path:
    from diffusers import FluxKontextPipeline

    return _save(FluxKontextPipeline(**_flux_parts(out)), out)


def build_sd3(out: Path) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    clip, clip_tokenizer = clip_text(out / "tokenizer", projection=True)
    clip_2, clip_tokenizer_2 = clip_text(out / "tokenizer_2", projection=True)
    t5, t5_tokenizer = t5_text(d_model=64)
    torch.manual_seed(SEED)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=64, pooled_projection_dim=64)
    torch.manual_seed(SEED)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    pipe = StableDiffusion3Pipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                                    text_encoder=clip, tokenizer=clip_tokenizer, text_encoder_2=clip_2,
                                    tokenizer_2=clip_tokenizer_2, text_encoder_3=t5, tokenizer_3=t5_tokenizer)
    return _save(pipe, out)


def _qwen_image_parts(z_dim: int = 4, hidden: int = 32) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    tokenizer = qwen_tokenizer()
    torch.manual_seed(SEED)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=4 * z_dim, out_channels=z_dim, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=2,
                                              joint_attention_dim=hidden, axes_dims_rope=(8, 4, 4))
    torch.manual_seed(SEED)
    vae = AutoencoderKLQwenImage(base_dim=16, z_dim=z_dim, dim_mult=[1, 1, 1, 1, 1], num_res_blocks=0,
                                 temperal_downsample=[False, False, True, True], latents_mean=[0.0] * z_dim,
                                 latents_std=[1.0] * z_dim)
    scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=8192,
                                                max_shift=0.9, shift_terminal=0.02, use_dynamic_shifting=True,
                                                time_shift_type="exponential")
    return {"transformer": transformer, "vae": vae, "scheduler": scheduler,
            "text_encoder": qwen_vl_text(tokenizer, hidden), "tokenizer": tokenizer}


def build_qwen_image(out: Path) -> Path:
    from diffusers import QwenImagePipeline

    return _save(QwenImagePipeline(**_qwen_image_parts()), out)


def build_qwen_image_edit(out: Path) -> Path:
    from diffusers import QwenImageEditPipeline

    parts = _qwen_image_parts()
    return _save(QwenImageEditPipeline(**parts, processor=qwen_processor(parts["tokenizer"])), out)


def build_qwen_image_edit_plus(out: Path) -> Path:
    from diffusers import QwenImageEditPlusPipeline

    parts = _qwen_image_parts()
    return _save(QwenImageEditPlusPipeline(**parts, processor=qwen_processor(parts["tokenizer"])), out)


def _save(pipe: Any, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------- LoRAs


def peft_lora(transformer: Any, targets: list[str], rank: int = 4, alpha: int = 4, seed: int = SEED) -> Any:
    """``transformer`` wrapped by PEFT with a LoRA whose A and B are both random (a fresh PEFT LoRA has B = 0 and
    would change nothing), as a trainer leaves it."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)
    torch.manual_seed(seed)
    model = get_peft_model(transformer, config)
    with torch.no_grad():  # large enough to move a 2-step tiny image by more than a rounding step
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.5)
    return model


def write_peft_folder(model: Any, out: Path) -> Path:
    """The adapter folder a trainer writes: ``adapter_config.json`` + ``adapter_model.safetensors``."""
    model.save_pretrained(out)
    return out


def write_diffusers_lora(model: Any, out: Path, pipeline_class: str = "FluxPipeline") -> Path:
    """The same LoRA as one diffusers file (``save_lora_weights``: ``transformer.``-prefixed keys, no alpha)."""
    import diffusers
    from peft import get_peft_model_state_dict

    layers = {k.removeprefix("base_model.model."): v for k, v in get_peft_model_state_dict(model).items()}
    getattr(diffusers, pipeline_class).save_lora_weights(out, transformer_lora_layers=layers)
    return out / "pytorch_lora_weights.safetensors"


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "flux": build_flux, "flux-kontext": build_flux_kontext, "sd3": build_sd3, "qwen-image": build_qwen_image,
    "qwen-image-edit": build_qwen_image_edit, "qwen-image-edit-plus": build_qwen_image_edit_plus,
}

if __name__ == "__main__":
    print(BUILDERS[sys.argv[1]](Path(sys.argv[2])))
