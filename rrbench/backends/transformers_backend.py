"""transformers in-process: AutoModelForImageTextToText + AutoProcessor, batched `generate`, CPU or GPU.

The model is loaded once in ``start`` (in a worker thread, so the event loop keeps serving progress and Ctrl-C)
and each batch of conversations is one left-padded ``generate`` call.

Sampling follows the checkpoint's generation config the way vLLM reads it (see ``Sampling``): top_p/top_k left
unset by the request come from generation_config.json, and where that file says nothing they are off (top_p 1,
no top-k), as in vLLM, rather than transformers' own fallback of top_k=50.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rrbench.backends._base import Backend, BackendError, Completion, Message, Sampling, fit_pixels
from rrbench.registry import require
from rrbench.types import DataError, FailureKind, UserError


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", max_pixels: int | None = None) -> None:
        self.path = path
        self.device = device
        self.dtype = dtype
        self.max_pixels = max_pixels
        self._model: Any = None
        self._processor: Any = None
        self.decoding: dict[str, Any] | None = None  # what the answers were decoded with

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": self.path, "device": self.device, "dtype": self.dtype,
                "max_pixels": self.max_pixels, "decoding": self.decoding}

    async def start(self) -> None:
        if self._model is None:
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        torch = require("torch", "transformers")
        transformers = require("transformers", "transformers")
        if not Path(self.path).exists() and "/" not in self.path:
            raise UserError(f"model weights not found at {self.path}; pass -M path=DIR or a hub id in the local cache")
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        dtype = {"auto": "auto", "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                 "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}.get(self.dtype)
        if dtype is None:
            raise UserError(f"unknown dtype {self.dtype!r} (auto, bf16, fp16, fp32)")
        try:
            self._processor = transformers.AutoProcessor.from_pretrained(self.path)
            self._model = transformers.AutoModelForImageTextToText.from_pretrained(self.path, dtype=dtype)
        except OSError as exc:
            raise UserError(f"cannot load weights from {self.path}: {str(exc).splitlines()[0]}") from None
        self._model.to(device).eval()
        self._processor.tokenizer.padding_side = "left"  # generation continues from the right end
        self.device = device

    async def close(self) -> None:
        self._model = None

    async def chat_batch(self, conversations: Sequence[Sequence[Message]], sampling: Sampling) -> list[Completion]:
        await self.start()
        return await asyncio.to_thread(self._generate, conversations, sampling.in_process())

    def _generate(self, conversations: Sequence[Sequence[Message]], sampling: Sampling) -> list[Completion]:
        torch = require("torch", "transformers")
        start = time.perf_counter()
        texts, images = [], []
        for conversation in conversations:
            hf_messages, conv_images = self._to_hf(conversation)
            texts.append(self._processor.apply_chat_template(hf_messages, tokenize=False, add_generation_prompt=True))
            images.extend(conv_images)
        inputs = self._processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        inputs = inputs.to(self._model.device)
        torch.manual_seed(sampling.seed or 0)  # sampled decoding reproducible per request seed
        kwargs = self.generate_kwargs(sampling)
        with torch.inference_mode():
            output = self._model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        latency = (time.perf_counter() - start) / len(conversations)
        return [self._completion(row, inputs, i, sampling, latency) for i, row in enumerate(new_tokens)]

    def generate_kwargs(self, sampling: Sampling) -> dict[str, Any]:
        """``generate`` arguments: sampled at any temperature above 0 (whatever the checkpoint's do_sample says,
        the request's temperature is the authors' choice), greedy at 0."""
        sampling = sampling.in_process()
        assert sampling.temperature is not None and sampling.max_tokens is not None
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens, "do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            config = self._model.generation_config
            top_p = sampling.top_p if sampling.top_p is not None else config.top_p
            top_k = sampling.top_k if sampling.top_k is not None else config.top_k
            # Passed explicitly even when unset, so generate() does not fall back to its own top_k=50.
            kwargs.update(temperature=sampling.temperature, top_p=1.0 if top_p is None else top_p,
                          top_k=max(0, top_k or 0))  # 0 (or vLLM's -1): no top-k cut
        self.decoding = {
            "do_sample": kwargs["do_sample"], "temperature": sampling.temperature,
            "top_p": kwargs.get("top_p", 1.0), "top_k": kwargs.get("top_k", 0),
            "repetition_penalty": self._model.generation_config.repetition_penalty or 1.0,
            "max_new_tokens": sampling.max_tokens, "seed": sampling.seed,
        }
        return kwargs

    def _completion(self, row: Any, inputs: Any, i: int, sampling: Sampling, latency: float) -> Completion:
        tokenizer = self._processor.tokenizer
        ids = row.tolist()
        pad = tokenizer.pad_token_id
        eos = self._model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        while ids and ids[-1] == pad and pad not in eos_ids:
            ids.pop()
        finished = bool(ids) and ids[-1] in eos_ids
        text = tokenizer.decode(ids, skip_special_tokens=True)
        prompt_tokens = int(inputs["attention_mask"][i].sum())
        return Completion(
            text=text,
            finish_reason="stop" if finished or len(ids) < (sampling.max_tokens or 0) else "length",
            usage={"prompt_tokens": prompt_tokens, "completion_tokens": len(ids)},
            latency_s=latency,
        )

    def _to_hf(self, conversation: Sequence[Message]) -> tuple[list[dict[str, Any]], list[Any]]:
        messages, images = [], []
        for message in conversation:
            content = message["content"]
            if isinstance(content, str):
                messages.append({"role": message["role"], "content": content})
                continue
            parts = []
            for part in content:
                if part["type"] == "image":
                    images.append(self._image(part["media"]))
                    parts.append({"type": "image"})
                else:
                    parts.append({"type": "text", "text": part["text"]})
            messages.append({"role": message["role"], "content": parts})
        return messages, images

    def _image(self, media: Any) -> Any:
        try:
            image = media.image()
        except DataError as exc:
            raise BackendError(FailureKind.DATA, str(exc)) from exc
        return fit_pixels(image, self.max_pixels)
