"""CLIP-H scoring throughput against the card's matrix-product rate (the issue-5 GPU check).

What: images per second of rrbench's `pickscore` scoring path (``DualEncoder``: vision tower, text tower over the
distinct prompts, projections, cosine) on a PickScore-size CLIP ViT-H/14 with random weights, at one batch size and
dtype, on pixels already preprocessed (the check is about the model, not JPEG decoding). Beside it: the matrix
products of one such batch, counted by ``torch.utils.flop_counter`` on the same forward, divided by the rate a
large square matmul reaches on this device in the same dtype. The printed ratio is (matmul-only time) / (measured
time): 1.0 would mean the forward runs at the card's matmul rate; attention softmax, layer norms, GELU and launch
overheads keep it lower.

    python bench/clip_throughput.py                                   # GPU: batch 64, bfloat16, real CLIP-H sizes
    python bench/clip_throughput.py --device cpu --dtype float32 --batch 4 --vision-layers 2 --text-layers 2

Target: none fixed (the issue asks for the figure); below 0.5 on a GPU at batch 64 deserves a look.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from rrbench.models import _clip, hpsv2

# PickScore_v1's config.json (a CLIP ViT-H/14): vision 1280 wide, 32 layers, 16 heads, MLP 5120, patch 14, 224 px;
# text 1024 wide, 24 layers, 16 heads, MLP 4096, 77 positions; projection 1024.
BOS, EOS = 49406, 49407
VISION = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120, patch_size=14,
              image_size=224, hidden_act="gelu")
TEXT = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
            max_position_embeddings=77, vocab_size=49408, hidden_act="gelu", bos_token_id=BOS, eos_token_id=EOS,
            pad_token_id=1)


class Tokens:
    """Stands in for the CLIP tokenizer: 20-token prompts (the benchmark prompts' typical length), ending in EOS."""

    def __call__(self, prompts: list[str], **_: Any) -> dict[str, torch.Tensor]:
        seeds = [torch.Generator().manual_seed(zlib.crc32(p.encode())) for p in prompts]
        ids = torch.stack([torch.randint(0, 49000, (20,), generator=g) for g in seeds])
        ids[:, 0], ids[:, -1] = BOS, EOS
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def build(args: argparse.Namespace) -> _clip.DualEncoder:
    import transformers

    config = transformers.CLIPConfig(vision_config={**VISION, "num_hidden_layers": args.vision_layers},
                                     text_config={**TEXT, "num_hidden_layers": args.text_layers},
                                     projection_dim=1024, logit_scale_init_value=4.6052)
    with hpsv2._skip_init():  # random init of a ViT-H takes long and the values do not matter here
        model = transformers.CLIPModel(config)
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.02)
    return _clip.DualEncoder(model, Tokens(), args.device, getattr(torch, args.dtype))


def matmul_rate(device: str, dtype: torch.dtype, n: int, seconds: float = 2.0) -> float:
    """FLOP/s of an n x n x n matmul, best of repeated timed bursts."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sync(device)
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - start))
    return best


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def score_batch(encoder: _clip.DualEncoder, pixels: torch.Tensor, prompts: list[str]) -> list[float]:
    return (encoder.logit_scale * encoder.cosine(pixels, prompts)).tolist()  # PickScore.rewards


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=_clip.DTYPES)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vision-layers", type=int, default=VISION["num_hidden_layers"])
    parser.add_argument("--text-layers", type=int, default=TEXT["num_hidden_layers"])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--matmul-n", type=int, default=8192)
    parser.add_argument("--json", action="store_true", help="print one JSON object (bench/gpu_check.py reads it)")
    args = parser.parse_args()

    encoder = build(args)
    pixels = torch.randn(args.batch, 3, 224, 224)
    prompts = [f"prompt {i // 2}" for i in range(args.batch)]  # pairwise tasks: two images per prompt
    with FlopCounterMode(display=False) as counter:
        score_batch(encoder, pixels, prompts)
    flops = counter.get_total_flops()
    for _ in range(2):  # warm-up: kernels, allocator
        score_batch(encoder, pixels, prompts)
    sync(args.device)
    start = time.perf_counter()
    for _ in range(args.iters):
        score_batch(encoder, pixels, prompts)  # .tolist() synchronises, as the real scorer does
    elapsed = (time.perf_counter() - start) / args.iters
    rate = matmul_rate(args.device, getattr(torch, args.dtype), args.matmul_n)
    ideal = flops / rate
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    if args.json:
        print(json.dumps({"device": name, "dtype": args.dtype, "batch": args.batch,
                          "images_per_s": args.batch / elapsed, "matmul_bound_images_per_s": args.batch / ideal,
                          "ratio": ideal / elapsed,
                          "matmul_tflops": rate / 1e12, "batch_tflop": flops / 1e12}))
        return 0
    print(f"device {name}, {args.dtype}, batch {args.batch}, layers vision {args.vision_layers} "
          f"text {args.text_layers}")
    print(f"matmul rate ({args.matmul_n}^3): {rate / 1e12:.1f} TFLOP/s")
    print(f"matrix products per batch: {flops / 1e12:.3f} TFLOP -> {ideal * 1e3:.1f} ms at that rate")
    print(f"measured: {elapsed * 1e3:.1f} ms per batch = {args.batch / elapsed:.0f} images/s")
    print(f"ratio (matmul-only time / measured time): {ideal / elapsed:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
