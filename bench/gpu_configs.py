"""Full-size random-weight checkpoints for bench/gpu_check.sh, built from known architecture numbers (no download).

Each builder writes a folder in the released layout, so the same loading code runs as on the real weights; the
weights are random (only speed and memory are measured). Tokenizers and processors come from the tiny test fixtures
(their ids are small, so they index the full-size vocabularies); the special-token ids in each config are taken from
those tokenizers, never from the released ones.

Where the numbers come from (the models' config.json files on the Hugging Face hub, cross-checked against
re-implementations of the same configs read through the search tool):

* FLUX.1-dev (black-forest-labs/FLUX.1-dev): transformer/config.json = 19 double + 38 single blocks, 24 heads of
  128, joint_attention_dim 4096, pooled_projection_dim 768, in_channels 64, guidance_embeds, axes_dims_rope
  [16, 56, 56] (also sglang's FluxArchConfig); vae/config.json = channels [128, 256, 512, 512], 2 layers per block,
  16 latent channels, scaling 0.3611, shift 0.1159, no quant convs (also BFL's flux-dev ae_params); scheduler =
  flow matching, shift 3.0 with dynamic shifting 0.5-1.15 over 256-4096 tokens; text_encoder =
  CLIP ViT-L/14's text tower (768 wide, 12 layers, 12 heads, MLP 3072, quick_gelu); text_encoder_2 = T5 v1.1 XXL's
  encoder (d_model 4096, d_ff 10240, 64 heads of 64, 24 layers, gated-gelu, vocab 32128).
* Qwen3-VL-8B-Instruct (Qwen/Qwen3-VL-8B-Instruct): text 4096 wide, 36 layers, 32 heads / 8 KV heads of 128,
  MLP 12288, vocab 151936, rope theta 5e6 with interleaved mrope sections [24, 20, 20]; vision 27 blocks, 1152
  wide, 16 heads, MLP 4304, patch 16, merge 2, out 4096, deepstack layers [8, 16, 24], 2304 position embeddings.
* CLIP ViT-H/14 (PickScore_v1): in bench/clip_throughput.py itself (VISION, TEXT).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FLUX_TRANSFORMER: dict[str, Any] = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=[16, 56, 56])
FLUX_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=16,
    norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
    use_post_quant_conv=False, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
FLUX_SCHEDULER: dict[str, Any] = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                      base_image_seq_len=256, max_image_seq_len=4096)
CLIP_L_TEXT: dict[str, Any] = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                   num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
                                   hidden_act="quick_gelu")
T5_XXL: dict[str, Any] = dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
                              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                              relative_attention_max_distance=128, is_gated_act=True, dense_act_fn="gelu_new")
QWEN3_VL_8B_TEXT: dict[str, Any] = dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20],
                     "mrope_interleaved": True})
QWEN3_VL_8B_VISION: dict[str, Any] = dict(
    depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16, spatial_merge_size=2,
    temporal_patch_size=2, out_hidden_size=4096, num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
    hidden_act="gelu_pytorch_tanh")


def _random_init(module: Any) -> Any:
    """Normal(0, 0.02) weights: fast on the GPU, and small enough that activations stay finite through the layers."""
    import torch

    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0.0, 0.02)
    return module


def build_flux_dev(out: Path, device: str = "cuda", dtype: str = "bfloat16") -> Path:
    """A FluxPipeline folder at FLUX.1-dev's size (about 12B + 4.7B + 0.1B parameters), random weights.

    Built on ``device`` in ``dtype`` (a 12B model initialised on the CPU takes minutes) and saved in ``dtype``."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from tests.fixtures.tiny_clip import write_tokenizer
    from tests.tiny_diffusers import t5_text

    torch_dtype = getattr(torch, dtype)
    clip_tokenizer = write_tokenizer(out / "tokenizer")
    _, t5_tokenizer = t5_text(d_model=32)  # only its tokenizer: whole words and characters, ids < 32128
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    torch.manual_seed(0)
    try:
        with torch.device(device):
            transformer = _random_init(FluxTransformer2DModel(**FLUX_TRANSFORMER))
            vae = AutoencoderKL(**FLUX_VAE)
            clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, bos_token_id=clip_tokenizer.bos_token_id,
                                                eos_token_id=clip_tokenizer.eos_token_id,
                                                pad_token_id=clip_tokenizer.pad_token_id, **CLIP_L_TEXT))
            t5 = _random_init(T5EncoderModel(T5Config(pad_token_id=0, eos_token_id=1, **T5_XXL)))
    finally:
        torch.set_default_dtype(previous)
    scheduler = FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER)
    pipe: Any = FluxPipeline(transformer=transformer, vae=vae, scheduler=scheduler, text_encoder=clip,
                             tokenizer=clip_tokenizer, text_encoder_2=t5, tokenizer_2=t5_tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out)
    return out


def qwen3vl_8b_config(tiny: Path) -> dict[str, Any]:
    """Qwen3-VL-8B's config.json with the special-token ids of the tiny fixture's tokenizer (in ``tiny``)."""
    small = json.loads((tiny / "config.json").read_text())
    text = {**small["text_config"], **QWEN3_VL_8B_TEXT}
    config = {**small, "text_config": text, "vision_config": {**small["vision_config"], **QWEN3_VL_8B_VISION},
              "tie_word_embeddings": False}
    config.pop("torch_dtype", None)
    config["dtype"] = "bfloat16"
    return config


def build_qwen3vl_8b(out: Path, weights: bool, device: str = "cuda", max_pixels: int = 1024 * 1024) -> Path:
    """A Qwen3-VL folder at 8B size: the tiny fixture's tokenizer, processor and chat template, the 8B config.

    ``weights=False`` writes no weights (vLLM's ``--load-format dummy`` makes them); ``weights=True`` saves random
    bf16 weights (about 17 GB) built on ``device``, for transformers-based training."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from tests.fixtures.tiny_qwen3vl import build

    build(out)
    config = qwen3vl_8b_config(out)
    for name in ("preprocessor_config.json", "processor_config.json"):  # realistic images: 512 px -> 256 tokens
        path = out / name
        if path.exists():
            data = json.loads(path.read_text())
            node = data.get("image_processor", data)
            node["max_pixels"] = max_pixels
            if isinstance(node.get("size"), dict) and "longest_edge" in node["size"]:
                node["size"]["longest_edge"] = max_pixels
            path.write_text(json.dumps(data, indent=2))
    for stale in out.glob("*.safetensors*"):
        stale.unlink()
    if not weights:
        (out / "config.json").write_text(json.dumps(config, indent=2))
        return out
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    torch.manual_seed(0)
    try:
        with torch.device(device):
            model = _random_init(Qwen3VLForConditionalGeneration(Qwen3VLConfig(**config)))
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = config.get("eos_token_id")
    model.save_pretrained(out)
    del model
    return out

