"""vLLM in-process: ``vllm.LLM.chat`` on a batch of conversations, in a worker thread.

No server and no HTTP: the highest-throughput engine for a single machine, since vLLM batches the whole batch
continuously. Images go in as PIL images (``image_pil`` parts), so nothing is re-encoded. ``engine_args`` are
``vllm serve``-style flags ("--enforce-eager --dtype float32") turned into ``LLM(...)`` keyword arguments, so one
``-M vllm_args=`` works for both vLLM engines.

Decoding starts from ``LLM.get_default_sampling_params()``, vLLM's reading of the checkpoint's
generation_config.json, exactly as vLLM's server fills in a request that leaves those fields unset: so this engine
and a served model decode alike, and alike the authors' evaluation, which sent only temperature and max_tokens.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Sequence
from typing import Any

from rrbench.backends._base import Backend, BackendError, Completion, Message, Sampling, fit_pixels
from rrbench.backends.vllm_server import ServerOptions
from rrbench.registry import require
from rrbench.types import DataError, FailureKind, UserError


def engine_kwargs(flags: str) -> dict[str, Any]:
    """``--max-num-seqs 8 --enforce-eager`` -> ``{"max_num_seqs": 8, "enforce_eager": True}``."""
    tokens = shlex.split(flags)
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise UserError(f"-M vllm_args: expected a --flag, got {token!r}")
        key = token[2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
            out[key] = _value(value)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[key] = _value(tokens[i + 1])
            i += 1
        else:
            out[key] = True
        i += 1
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)  # numbers, booleans, {"image": 3}
    except ValueError:
        return text


# What vLLM's chat server takes from the generation config when a request leaves it unset (its
# ChatCompletionRequest._DEFAULT_SAMPLING_PARAMS), temperature aside: rrbench always sets that.
GENERATION_CONFIG_FIELDS = ("top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")


class VLLMInProcessBackend(Backend):
    name = "vllm"

    def __init__(self, path: str, options: ServerOptions, *, max_pixels: int | None = None) -> None:
        self.path = path
        self.options = options
        self.max_pixels = max_pixels
        self._llm: Any = None
        self.generation_config: dict[str, Any] | None = None  # what vLLM read from the checkpoint
        self.decoding: dict[str, Any] | None = None  # the SamplingParams the answers were decoded with

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": self.path, "options": self.options.__dict__,
                "max_pixels": self.max_pixels, "generation_config": self.generation_config,
                "decoding": self.decoding}

    def llm_kwargs(self) -> dict[str, Any]:
        return {
            "model": self.path,
            "max_model_len": self.options.max_model_len,
            "limit_mm_per_prompt": self.options.mm_limits(),
            "tensor_parallel_size": self.options.tensor_parallel_size,
            **engine_kwargs(self.options.extra_args),
        }

    async def start(self) -> None:
        if self._llm is None:
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        vllm = require("vllm", "vllm")
        self._llm = vllm.LLM(**self.llm_kwargs())
        defaults = self._llm.get_default_sampling_params()
        self.generation_config = {k: getattr(defaults, k) for k in GENERATION_CONFIG_FIELDS}

    async def close(self) -> None:
        self._llm = None

    async def chat_batch(self, conversations: Sequence[Sequence[Message]], sampling: Sampling) -> list[Completion]:
        await self.start()
        return await asyncio.to_thread(self._generate, conversations, sampling.in_process())

    def sampling_params(self, sampling: Sampling) -> Any:
        """The checkpoint's defaults, overridden by what the request sets (top_p/top_k only when not None)."""
        vllm = require("vllm", "vllm")
        assert self.generation_config is not None, "start() reads the generation config"
        chosen = {"top_p": sampling.top_p, "top_k": sampling.top_k}
        fields = {**self.generation_config, **{k: v for k, v in chosen.items() if v is not None}}
        # A new SamplingParams rather than edits of the defaults, so vLLM's own checks and its greedy rule
        # (temperature 0 ignores top_p/top_k) run on the final values.
        params = vllm.SamplingParams(
            **fields, temperature=sampling.temperature, max_tokens=sampling.max_tokens, seed=sampling.seed,
            stop=list(sampling.stop) or None, logprobs=sampling.logprobs,
        )
        self.decoding = {k: getattr(params, k) for k in ("temperature", *GENERATION_CONFIG_FIELDS, "max_tokens",
                                                         "seed")}
        return params

    def _generate(self, conversations: Sequence[Sequence[Message]], sampling: Sampling) -> list[Completion]:
        params = self.sampling_params(sampling)
        start = time.perf_counter()
        outputs = self._llm.chat([self._to_vllm(c) for c in conversations], params, use_tqdm=False)
        latency = (time.perf_counter() - start) / max(1, len(conversations))
        return [self._completion(o, latency) for o in outputs]

    @staticmethod
    def _completion(output: Any, latency: float) -> Completion:
        choice = output.outputs[0]
        usage = {"prompt_tokens": len(output.prompt_token_ids or ()), "completion_tokens": len(choice.token_ids)}
        logprobs = [dict(step) for step in choice.logprobs] if choice.logprobs else None
        return Completion(text=choice.text, finish_reason=choice.finish_reason, usage=usage, logprobs=logprobs,
                          latency_s=latency)

    def _to_vllm(self, conversation: Sequence[Message]) -> list[dict[str, Any]]:
        out = []
        for message in conversation:
            content = message["content"]
            if isinstance(content, str):
                out.append({"role": message["role"], "content": content})
                continue
            parts = [self._part(p) for p in content]
            out.append({"role": message["role"], "content": parts})
        return out

    def _part(self, part: Any) -> dict[str, Any]:
        if part["type"] != "image":
            return {"type": "text", "text": part["text"]}
        try:
            image = part["media"].image()
        except DataError as exc:
            raise BackendError(FailureKind.DATA, str(exc)) from exc
        return {"type": "image_pil", "image_pil": fit_pixels(image, self.max_pixels)}
