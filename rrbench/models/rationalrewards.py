"""RationalRewards (arXiv 2604.11626): a critic that writes a multi-aspect critique before scoring.

`rationalrewards-8b` resolves to TIGER-Lab/RationalRewards-8B-T2I for text-to-image tasks and
TIGER-Lab/RationalRewards-8B-Edit for editing tasks (`-M path=DIR` overrides both), with the authors' decoding
(temperature 0.1). On preference tasks it judges pairwise by default, both images in one request, as the paper
evaluated; `-M mode=pointwise` scores each image with the pointwise prompt and compares. The aggregation and
the N/A policy (`-M aggregation=`, `-M na=drop|2.5`) are named, versioned and recorded in run.json.
"""

from __future__ import annotations

from typing import Any

from rrbench.models._base import RewardModel
from rrbench.models._vlm import VLMJudge
from rrbench.registry import reward_model

WEIGHTS = {"t2i": "TIGER-Lab/RationalRewards-8B-T2I", "edit": "TIGER-Lab/RationalRewards-8B-Edit"}


@reward_model(
    "rationalrewards-8b",
    description="RationalRewards critic (Qwen3-VL-8B): critique, 1-4 aspect scores, refined prompt",
    extra="transformers",
    paper="arXiv 2604.11626",
)
def rationalrewards_8b(
    path: str | None = None,
    mode: str = "pairwise",
    aggregation: str | None = None,
    na: str = "drop",
    temperature: float = 0.1,
    max_tokens: int = 20480,
    batch_size: int | None = None,
    concurrency: int = 32,
    device: str = "auto",
    dtype: str = "auto",
    max_pixels: int | None = None,
    served_model: str | None = None,
    base_urls: list[str] | None = None,
    api_key_env: str | None = None,
    prompt: str = "official",
    **engine: Any,
) -> RewardModel:
    weights = {"t2i": path, "edit": path} if path else dict(WEIGHTS)
    return VLMJudge(
        "rationalrewards-8b", weights, mode=mode, aggregation=aggregation, na=na, temperature=temperature,
        max_tokens=max_tokens, batch_size=batch_size, concurrency=concurrency, device=device, dtype=dtype,
        max_pixels=max_pixels, base_urls=base_urls or (), api_key_env=api_key_env, served_model=served_model,
        engine=engine, prompt=prompt,
    )
