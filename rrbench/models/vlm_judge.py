"""Generic VLM judges: Qwen3-VL (local weights or a vLLM server), Gemini and OpenAI models (their endpoints).

Two judging modes, chosen with `-M mode=`: `verdict` (default), a categorical answer to the benchmark's own
VLM-as-judge prompt (GenAI-Bench's 4-way ``[[A>B]]`` template, MMRB2's JSON judge prompt, EditReward-Bench's
templates; rrbench's own 4-way prompt where a benchmark has none, or with ``-M prompt=rrbench``); and
`pairwise` / `pointwise`, the RationalRewards critique with 1-4 aspect scores (the released prompts by default).
API judges read their key from the environment variable named by `--api-key-env` (default GEMINI_API_KEY or
OPENAI_API_KEY); `--base-url` replaces the default endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rrbench.models._base import RewardModel
from rrbench.models._vlm import VLMJudge
from rrbench.registry import reward_model

GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta/openai"
OPENAI_URL = "https://api.openai.com/v1"

# name -> (weights or served model id, default endpoint, default key variable, extra)
JUDGES: dict[str, tuple[str, str | None, str | None, str]] = {
    "qwen3-vl-8b": ("Qwen/Qwen3-VL-8B-Instruct", None, None, "transformers"),
    "qwen3-vl-32b": ("Qwen/Qwen3-VL-32B-Instruct", None, None, "transformers"),
    "gemini-2.5-pro": ("gemini-2.5-pro", GEMINI_URL, "GEMINI_API_KEY", "api"),
    "gemini-2.5-flash": ("gemini-2.5-flash", GEMINI_URL, "GEMINI_API_KEY", "api"),
    "gemini-3-pro": ("gemini-3-pro-preview", GEMINI_URL, "GEMINI_API_KEY", "api"),
    "gpt-4.1": ("gpt-4.1", OPENAI_URL, "OPENAI_API_KEY", "api"),
    "gpt-4o": ("gpt-4o", OPENAI_URL, "OPENAI_API_KEY", "api"),
    "gpt-5": ("gpt-5", OPENAI_URL, "OPENAI_API_KEY", "api"),
    # Served with vLLM (-M serve=true, or --base-url of a running server): the offline judges of the generation
    # benchmarks (PICA-Bench's alternative, UniGenBench++'s EvalModels, ImgEdit's fine-tuned judge).
    "qwen2.5-vl-72b": ("Qwen/Qwen2.5-VL-72B-Instruct", None, None, "transformers"),
    "unigenbench-evalmodel-72b": ("CodeGoat24/UniGenBench-EvalModel-qwen-72b-v1", None, None, "transformers"),
    "unigenbench-evalmodel-32b": ("CodeGoat24/UniGenBench-EvalModel-qwen3vl-32b-v1", None, None, "transformers"),
    # Released as the folder ImgEdit_judge/ of the dataset repo sysuyy/ImgEdit: -M path=DIR, or serve it.
    "imgedit-judge": ("ImgEdit_judge", None, None, "transformers"),
}


def _factory(name: str) -> Callable[..., RewardModel]:
    ref, url, key_env, _ = JUDGES[name]

    def build(
        path: str | None = None,
        mode: str = "verdict",
        aggregation: str | None = None,
        na: str = "drop",
        temperature: float = 0.0,
        max_tokens: int = 4096,
        batch_size: int | None = None,
        concurrency: int = 16,
        device: str = "auto",
        dtype: str = "auto",
        max_pixels: int | None = None,
        served_model: str | None = None,
        base_urls: list[str] | None = None,
        api_key_env: str | None = None,
        prompt: str = "official",
        **engine: Any,
    ) -> RewardModel:
        weights = {"t2i": path or ref, "edit": path or ref}
        endpoint = base_urls or ([url] if url else [])
        extra: dict[str, Any] = {"served_model": served_model or (ref if url else None)}
        return VLMJudge(
            name, weights, mode=mode, aggregation=aggregation, na=na, temperature=temperature,
            max_tokens=max_tokens, batch_size=batch_size, concurrency=concurrency, device=device, dtype=dtype,
            max_pixels=max_pixels, base_urls=endpoint, api_key_env=api_key_env or key_env, engine=engine,
            prompt=prompt, generic=True, **extra,
        )

    build.__name__ = name.replace("-", "_").replace(".", "_")
    return build


for _name, (_ref, _url, _key, _extra) in JUDGES.items():
    reward_model(_name, description=f"generic VLM judge {_ref} (benchmark judge prompts, GenAI-Bench 4-way "
                                       "verdict, or critique)",
                 extra=_extra)(_factory(_name))
