"""A reward model that is a vision-language model behind a backend: prompt -> chat -> parse -> Judgement.

Shared by the RationalRewards family and the generic judges. The engine is chosen from the arguments:
``--base-url`` (OpenAI-compatible HTTP, e.g. a vLLM server or Gemini's endpoint) or local weights run by
transformers in-process. Weights are resolved per generation kind (text-to-image or editing), since the
RationalRewards family ships one checkpoint for each.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rrbench.backends._base import Backend, BackendError, Completion, Message, Sampling
from rrbench.models import _rationalrewards_format as rr
from rrbench.models._base import RewardModel
from rrbench.types import DataError, FailureKind, Judgement, Query, UserError, Verdict

PROMPT_VERSION = "rrbench-critic-prompt/1"
MODES = ("pairwise", "pointwise", "verdict")


def resolve_weights(ref: str) -> str:
    """A local folder, or a hub id already in the local Hugging Face cache; otherwise fail fast with the fix."""
    if Path(ref).is_dir():
        return str(Path(ref).resolve())
    if Path(ref).exists() or ref.startswith((".", "/")):
        raise UserError(f"weights folder not found: {ref}")
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(ref, local_files_only=True))
    except Exception:
        raise UserError(
            f"weights for {ref} are not in the local cache; fetch them once with `hf download {ref}` "
            "or pass -M path=DIR (or serve them and pass --base-url)"
        ) from None


class VLMJudge(RewardModel):
    """``weights`` maps a generation kind ("t2i", "edit") to a hub id or folder; ``path`` overrides both."""

    is_async = True

    def __init__(
        self,
        name: str,
        weights: dict[str, str],
        *,
        mode: str,
        aggregation: str | None = None,
        na: str = "drop",
        temperature: float = 0.1,
        max_tokens: int = 2048,
        batch_size: int = 4,
        concurrency: int = 32,
        device: str = "auto",
        dtype: str = "auto",
        max_pixels: int | None = None,
        base_urls: Sequence[str] = (),
        api_key_env: str | None = None,
        served_model: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise UserError(f"-M mode must be one of {', '.join(MODES)}, not {mode!r}")
        if na not in ("drop", "2.5"):
            raise UserError(f"-M na must be 'drop' or '2.5', not {na!r}")
        if aggregation is not None and aggregation not in rr.AGGREGATIONS:
            raise UserError(f"unknown aggregation {aggregation!r} (known: {', '.join(rr.AGGREGATIONS)})")
        super().__init__(weights=weights, mode=mode, aggregation=aggregation, na=na, temperature=temperature,
                         max_tokens=max_tokens, max_pixels=max_pixels, served_model=served_model)
        self.name = name  # type: ignore[misc]
        self.weights = weights
        self.mode = mode
        self.aggregation, self.na = aggregation, na
        self.sampling = Sampling(temperature=temperature, max_tokens=max_tokens)
        self.base_urls = list(base_urls)
        self.api_key_env = api_key_env
        self.served_model = served_model
        self.device, self.dtype, self.max_pixels, self.http_concurrency = device, dtype, max_pixels, concurrency
        http = bool(self.base_urls)
        self.batch_size = 1 if http else batch_size
        self.concurrency = concurrency if http else 1
        self._backends: dict[str, Backend] = {}

    @property
    def pairwise(self) -> bool:  # type: ignore[override]
        return self.mode in ("pairwise", "verdict")

    def fingerprint(self) -> str:
        # What decides the answer: weights, decoding, prompt and parser versions. Not the URL it is served at.
        blob = json.dumps([self.name, self.config, PROMPT_VERSION, rr.PARSER_VERSION], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        engines = {g: b.describe() for g, b in self._backends.items()}
        return {**super().describe(), "prompt_version": PROMPT_VERSION, "parser_version": rr.PARSER_VERSION,
                "aggregations": rr.AGGREGATIONS, "engines": engines}

    # ------------------------------------------------------------------------------------------------ engines
    def _backend(self, generation: str) -> Backend:
        backend = self._backends.get(generation)
        if backend is None:
            backend = self._make_backend(generation)
            self._backends[generation] = backend
        return backend

    def _make_backend(self, generation: str) -> Backend:
        ref = self.weights.get(generation) or self.weights.get("t2i") or next(iter(self.weights.values()))
        if self.base_urls:
            from rrbench.backends.openai_http import OpenAIHTTPBackend

            return OpenAIHTTPBackend(self.base_urls, self.served_model or ref, api_key_env=self.api_key_env,
                                     concurrency=self.http_concurrency, max_pixels=self.max_pixels)
        from rrbench.backends.transformers_backend import TransformersBackend

        return TransformersBackend(resolve_weights(ref), device=self.device, dtype=self.dtype,
                                   max_pixels=self.max_pixels)

    async def astart(self, generation: str = "t2i") -> None:
        # Resolving weights, loading them, or reading the API key fails here, before any sample, with the fix.
        await self._backend(generation).start()

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.close()

    # ------------------------------------------------------------------------------------------------ judging
    async def acompare(self, queries: Sequence[Query]) -> list[Judgement]:
        if self.mode == "verdict":
            return await self._ask(queries, self._verdict_messages, self._verdict_judgement)
        return await self._ask(queries, self._pairwise_messages, self._critique_judgement(rr.parse_pairwise))

    async def ascore(self, queries: Sequence[Query]) -> list[Judgement]:
        return await self._ask(queries, self._pointwise_messages, self._critique_judgement(rr.parse_pointwise))

    async def _ask(
        self,
        queries: Sequence[Query],
        build: Callable[[Query], Sequence[Message]],
        read: Callable[[Query, Completion], Judgement],
    ) -> list[Judgement]:
        by_generation: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_generation.setdefault(q.generation, []).append(i)
        out: list[Judgement | None] = [None] * len(queries)
        for generation, indices in by_generation.items():
            answers = await self._chat(self._backend(generation), [queries[i] for i in indices], build, read)
            for i, answer in zip(indices, answers, strict=True):
                out[i] = answer
        return [j for j in out if j is not None]

    async def _chat(
        self, backend: Backend, queries: list[Query], build: Callable[[Query], Sequence[Message]],
        read: Callable[[Query, Completion], Judgement],
    ) -> list[Judgement]:
        prepared: list[tuple[Query, Sequence[Message] | Judgement]] = []
        for q in queries:
            try:
                prepared.append((q, build(q)))
            except DataError as exc:
                prepared.append((q, Judgement.failed(FailureKind.DATA, str(exc))))
        to_send = [(q, m) for q, m in prepared if not isinstance(m, Judgement)]
        try:
            if self.base_urls:
                results = await asyncio.gather(*(backend.chat(m, self.sampling) for _, m in to_send),
                                               return_exceptions=True)
            else:
                results = list(await backend.chat_batch([m for _, m in to_send], self.sampling))
        except BackendError as exc:
            results = [exc] * len(to_send)
        answers = iter(results)
        return [m if isinstance(m, Judgement) else self._judge(q, next(answers), read) for q, m in prepared]

    @staticmethod
    def _judge(query: Query, result: Any, read: Callable[[Query, Completion], Judgement]) -> Judgement:
        if isinstance(result, BackendError):
            return Judgement.failed(result.kind, str(result))
        if isinstance(result, UserError):
            raise result
        if isinstance(result, BaseException):
            return Judgement.failed(FailureKind.ERROR, f"{type(result).__name__}: {result}")
        completion: Completion = result
        if not completion.text.strip():
            return Judgement.failed(FailureKind.EMPTY, "the model returned no text", raw=completion.text)
        judgement = read(query, completion)
        if completion.finish_reason == "length" and judgement.failure is not None:
            # Cut off before the answer was complete: say so rather than blaming the parser.
            return Judgement.failed(FailureKind.TRUNCATED, f"max_tokens={completion.usage.get('completion_tokens')}"
                                    f" reached; {judgement.failure_detail}", raw=completion.text)
        return _with_usage(judgement, completion)

    # ------------------------------------------------------------------------------------------------ prompts
    def _pairwise_messages(self, q: Query) -> Sequence[Message]:
        return rr.build_pairwise(q.prompt, q.candidates[0], q.candidates[1], q.source, q.generation)

    def _pointwise_messages(self, q: Query) -> Sequence[Message]:
        return rr.build_pointwise(q.prompt, q.candidates[0], q.source, q.generation)

    def _verdict_messages(self, q: Query) -> Sequence[Message]:
        return rr.build_verdict_prompt(q.prompt, q.candidates[0], q.candidates[1], q.source, q.generation)

    def _critique_judgement(self, parse: Callable[[str, str], rr.Parsed]) -> Callable[[Query, Completion], Judgement]:
        def read(q: Query, completion: Completion) -> Judgement:
            return rr.judgement_from(parse(completion.text, q.generation), self.aggregation, self.na)

        return read

    @staticmethod
    def _verdict_judgement(q: Query, completion: Completion) -> Judgement:
        verdict = rr.parse_verdict(completion.text)
        if verdict is None:
            return Judgement.failed(FailureKind.PARSE, "no [[A>B]]-style verdict found", raw=completion.text)
        scores = {Verdict.A: (1.0, 0.0), Verdict.B: (0.0, 1.0)}.get(verdict, (0.5, 0.5))
        return Judgement(scores=scores, verdict=verdict, raw=completion.text, rationale=completion.text)


def _with_usage(judgement: Judgement, completion: Completion) -> Judgement:
    import dataclasses

    return dataclasses.replace(judgement, usage=dict(completion.usage) or None, latency_s=completion.latency_s)
