"""vLLM in-process: ``vllm.LLM.chat`` on a batch of conversations, in a worker thread.

No server and no HTTP: the highest-throughput engine for a single machine, since vLLM batches the whole batch
continuously. Images go in as PIL images (``image_pil`` parts), so nothing is re-encoded. ``engine_args`` are
``vllm serve``-style flags ("--enforce-eager --dtype float32") turned into ``LLM(...)`` keyword arguments, so one
``-M vllm_args=`` works for both vLLM engines.
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


class VLLMInProcessBackend(Backend):
    name = "vllm"

    def __init__(self, path: str, options: ServerOptions, *, max_pixels: int | None = None) -> None:
        self.path = path
        self.options = options
        self.max_pixels = max_pixels
        self._llm: Any = None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": self.path, "options": self.options.__dict__,
                "max_pixels": self.max_pixels}

    def llm_kwargs(self) -> dict[str, Any]:
        return {
            "model": self.path,
            "max_model_len": self.options.max_model_len,
            "limit_mm_per_prompt": {"image": self.options.images_per_prompt},
            "tensor_parallel_size": self.options.tensor_parallel_size,
            **engine_kwargs(self.options.extra_args),
        }

    async def start(self) -> None:
        if self._llm is None:
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        vllm = require("vllm", "vllm")
        self._llm = vllm.LLM(**self.llm_kwargs())

    async def close(self) -> None:
        self._llm = None

    async def chat_batch(self, conversations: Sequence[Sequence[Message]], sampling: Sampling) -> list[Completion]:
        await self.start()
        return await asyncio.to_thread(self._generate, conversations, sampling)

    def _generate(self, conversations: Sequence[Sequence[Message]], sampling: Sampling) -> list[Completion]:
        vllm = require("vllm", "vllm")
        params = vllm.SamplingParams(
            temperature=sampling.temperature, max_tokens=sampling.max_tokens, top_p=sampling.top_p or 1.0,
            seed=sampling.seed, stop=list(sampling.stop) or None, logprobs=sampling.logprobs,
        )
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
