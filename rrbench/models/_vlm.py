"""A reward model that is a vision-language model behind a backend: prompt -> chat -> parse -> Judgement.

Shared by the RationalRewards family and the generic judges. Weights are resolved per generation kind
(text-to-image or editing), since the RationalRewards family ships one checkpoint for each. The engine
(``-M engine=``) is one of:

- ``http``: an OpenAI-compatible server given with ``--base-url`` (vLLM, Gemini's or OpenAI's endpoint);
- ``vllm-serve``: a vLLM server rrbench starts and stops itself (``-M serve=true``);
- ``vllm``: vLLM in-process (``vllm.LLM.chat``);
- ``transformers``: transformers in-process, CPU or GPU;
- ``auto`` (default): ``http`` if a base URL is given, else ``vllm-serve`` if vLLM is installed, else
  ``transformers``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rrbench import prompts, redact
from rrbench.backends._base import Backend, BackendError, Completion, Message, Sampling
from rrbench.models import _rationalrewards_format as rr
from rrbench.models._base import RewardModel
from rrbench.types import ChatQuery, DataError, FailureKind, Judgement, Query, Sample, UserError

MODES = ("pairwise", "pointwise", "verdict")
# 2: top_p/top_k from the checkpoint's generation config in every engine (in-process vLLM forced top_p=1 before)
DECODING_VERSION = "2"
OFFICIAL = "official"  # -M prompt=official: the task's own judge prompt (verdict mode), the released critic prompts
ENGINES = ("auto", "http", "vllm-serve", "vllm", "transformers")
REMOTE = ("http", "vllm-serve")  # engines answered one request at a time, many in flight
# A transformers checkpoint: one file or shards with their index (what transformers and vLLM load).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class EngineOptions:
    """The ``-M`` settings of how the model is run, shared by every VLM judge."""

    engine: str = "auto"
    serve: bool | None = None  # true: start a vLLM server (= engine vllm-serve); false: never start one
    # The authors' vLLM server (start_server.sh): every benchmark prompt they scored fits, images and all.
    max_model_len: int = 40960
    images_per_prompt: int = 16
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    vllm_args: str = ""  # extra `vllm serve` flags, e.g. "--enforce-eager --gpu-memory-utilization 0.85"
    timeout_s: float = 600.0
    max_retries: int = 4
    # None: the checkpoint's generation_config.json decides, in every engine (the authors' vLLM evaluation).
    top_p: float | None = None
    top_k: int | None = None

    def __post_init__(self) -> None:
        # parse() cannot type-check fields whose default is None
        if self.top_p is not None:
            if isinstance(self.top_p, bool) or not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
                raise UserError(f"-M top_p must be a number in (0, 1], got {self.top_p!r}")
            object.__setattr__(self, "top_p", float(self.top_p))  # `-M top_p=1` arrives as an int
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < -1):
            raise UserError(f"-M top_k must be an integer >= -1 (0 or -1: off), got {self.top_k!r}")

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> EngineOptions:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise UserError(f"unknown model argument {unknown[0]!r} (-M; engine settings: {', '.join(known)})")
        for key, value in args.items():
            default = known[key].default
            if default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)
            ):
                raise UserError(f"-M {key} must be a {type(default).__name__}, got {value!r}")
        options = cls(**args)
        if options.engine not in ENGINES:
            raise UserError(f"-M engine must be one of {', '.join(ENGINES)}, not {options.engine!r}")
        return options

    def resolve(self, has_base_url: bool) -> str:
        """The engine this run uses; contradictions are user errors, not silent choices."""
        engine = self.engine
        if self.serve:
            if engine not in ("auto", "vllm-serve"):
                raise UserError(f"-M serve=true starts a vLLM server; it contradicts -M engine={engine}")
            engine = "vllm-serve"
        if has_base_url and engine not in ("auto", "http"):
            raise UserError(f"--base-url sends requests to a server; it contradicts -M engine={engine}")
        if engine == "http" and not has_base_url:
            raise UserError("-M engine=http needs --base-url URL")
        if engine != "auto":
            return engine
        if has_base_url:
            return "http"
        from rrbench.backends.vllm_server import vllm_python

        return "vllm-serve" if self.serve is None and vllm_python() else "transformers"


def resolve_weights(ref: str, flag: str = "path", served: bool = False) -> str:
    """A local folder, or a hub id already in the local Hugging Face cache; otherwise fail fast with the fix.

    ``flag`` is the ``-M`` key that names this folder; ``served``: the model can also be reached over HTTP."""
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
            f"or pass -M {flag}=DIR" + (" (or serve them and pass --base-url)" if served else "")
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
        batch_size: int | None = None,
        concurrency: int = 32,
        device: str = "auto",
        dtype: str = "auto",
        max_pixels: int | None = None,
        base_urls: Sequence[str] = (),
        api_key_env: str | None = None,
        served_model: str | None = None,
        engine: Mapping[str, Any] | None = None,
        prompt: str = OFFICIAL,
        critic_prompts: str = "rationalrewards",
        generic: bool = False,
    ) -> None:
        if mode not in MODES:
            raise UserError(f"-M mode must be one of {', '.join(MODES)}, not {mode!r}")
        if isinstance(na, int | float):
            na = f"{na:g}"  # `-M na=2.5` arrives as a number
        if na not in rr.NA_POLICIES:
            raise UserError(f"-M na must be 'drop' or '2.5', not {na!r}")
        if aggregation is not None and aggregation not in rr.AGGREGATIONS:
            raise UserError(f"unknown aggregation {aggregation!r} (known: {', '.join(rr.AGGREGATIONS)})")
        options = EngineOptions.parse(engine or {})
        self.prompt_family = _prompt_family(prompt, critic_prompts)
        self.critic_prompts = critic_prompts
        super().__init__(weights=weights, mode=mode, aggregation=aggregation, na=na, temperature=temperature,
                         max_tokens=max_tokens, max_pixels=max_pixels, served_model=served_model,
                         prompt=prompt, **dict(engine or {}))
        self.name = name  # type: ignore[misc]
        self.generic_judge = generic  # answers any benchmark's own prompts (achat); not part of the fingerprint
        self.weights = weights
        self.mode = mode
        self.aggregation, self.na = aggregation, na
        self.sampling = Sampling(temperature=temperature, max_tokens=max_tokens, top_p=options.top_p,
                                 top_k=options.top_k)
        self.base_urls = list(base_urls)
        self.api_key_env = api_key_env
        self.served_model = served_model
        self.device, self.dtype, self.max_pixels, self.http_concurrency = device, dtype, max_pixels, concurrency
        self.options = options
        self.engine = options.resolve(bool(self.base_urls))
        remote = self.engine in REMOTE
        # vLLM schedules a large batch continuously; transformers pads a batch to its longest prompt
        self.batch_size = 1 if remote else batch_size or (64 if self.engine == "vllm" else 4)
        self.concurrency = concurrency if remote else 1
        self._backends: dict[str, Backend] = {}
        self._prompts_used: dict[str, dict[str, Any]] = {}
        self._scrub: redact.Scrubber | None = None

    @property
    def pairwise(self) -> bool:  # type: ignore[override]
        return self.mode in ("pairwise", "verdict")

    def fingerprint(self) -> str:
        # What decides the answer: weights, decoding, the prompts' text and the parser version. Not the URL it is
        # served at. The catalogue digest covers every prompt file, so an edited prompt never reuses old answers.
        blob = json.dumps([self.name, self.config, prompts.digest(), rr.PARSER_VERSION, DECODING_VERSION],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        engines = {g: b.describe() for g, b in self._backends.items()}
        return {**super().describe(), "prompt": self.prompt_family or OFFICIAL, "prompts": dict(self._prompts_used),
                "parser_version": rr.PARSER_VERSION, "aggregations": rr.AGGREGATIONS, "engine": self.engine,
                "engines": engines}

    # ------------------------------------------------------------------------------------------------ engines
    def _backend(self, generation: str) -> Backend:
        backend = self._backends.get(generation)
        if backend is None:
            backend = self._make_backend(generation)
            self._backends[generation] = backend
        return backend

    def _make_backend(self, generation: str) -> Backend:
        ref = self.weights.get(generation) or self.weights.get("t2i") or next(iter(self.weights.values()))
        http_args: dict[str, Any] = {"api_key_env": self.api_key_env, "concurrency": self.http_concurrency,
                     "max_pixels": self.max_pixels, "timeout_s": self.options.timeout_s,
                     "max_retries": self.options.max_retries}
        if self.engine == "http":
            from rrbench.backends.openai_http import OpenAIHTTPBackend

            return OpenAIHTTPBackend(self.base_urls, self.served_model or ref, **http_args)
        server = self._server_options()
        if self.engine == "vllm-serve":
            from rrbench.backends.vllm_server import ManagedVLLMBackend

            return ManagedVLLMBackend(resolve_weights(ref, served=True), self.served_model or ref, server, self.workdir,
                                      {k: v for k, v in http_args.items() if k != "api_key_env"})
        if self.engine == "vllm":
            from rrbench.backends.vllm_inprocess import VLLMInProcessBackend

            return VLLMInProcessBackend(resolve_weights(ref, served=True), server, max_pixels=self.max_pixels)
        from rrbench.backends.transformers_backend import TransformersBackend

        return TransformersBackend(resolve_weights(ref, served=True), device=self.device, dtype=self.dtype,
                                   max_pixels=self.max_pixels)

    def _server_options(self) -> Any:
        from rrbench.backends.vllm_server import ServerOptions

        o = self.options
        return ServerOptions(max_model_len=o.max_model_len, images_per_prompt=o.images_per_prompt,
                             tensor_parallel_size=o.tensor_parallel_size, data_parallel_size=o.data_parallel_size,
                             extra_args=o.vllm_args)

    async def astart(self, generation: str = "t2i") -> None:
        # Resolving weights, loading them, reading the API key, or a --base-url where nothing listens fails here,
        # before any sample, with the fix.
        self._check_prompts(generation)
        backend = self._backend(generation)
        await backend.start()
        if self.engine == "http":
            from rrbench.backends.openai_http import OpenAIHTTPBackend

            assert isinstance(backend, OpenAIHTTPBackend)
            await backend.check_reachable()

    def prepare(self, sample: Sample, generation: str) -> None:
        # Only a backend already started: one is never made from the loader thread. Candidates and sources are what
        # a judge request carries (references go to benchmark judges only).
        backend = self._backends.get(generation)
        if backend is not None:
            for media in (*sample.source, *sample.candidates):
                backend.warm(media)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.close()

    def checks(self, generation: str | None = None, network: bool = True) -> list[Any]:
        """`rrbench doctor --model` and `rrbench run`'s start-up check: what this judge needs on this machine, each
        with its fix (its engine's extras are doctor's). ``generation``: the task's kind; None checks every kind.
        ``network=False`` (run's check): no request to a server; the run probes it itself when it starts."""
        from rrbench.doctor import Check, reachable

        out = [Check("ok", "engine", f"{self.engine} (-M engine=auto|http|vllm-serve|vllm|transformers)")]
        if self.engine == "http":
            if self.api_key_env:
                ok = bool(os.environ.get(self.api_key_env))
                out.append(Check("ok" if ok else "FAIL", "API key", f"${self.api_key_env} is "
                                 f"{'set' if ok else 'not set'}", f"export {self.api_key_env}=..."))
            for url in self.base_urls if network else ():
                ok, detail = reachable(url, self.api_key_env)
                out.append(Check("ok" if ok else "FAIL", "server", f"{redact.redact_url(url)}: {detail}",
                                 "start the server, or check --base-url"))
            return out
        kinds = sorted(self.weights) if generation is None else [generation]
        for kind in kinds:
            out.append(dataclasses.replace(self.weights_need(kind).check(), name=f"weights ({kind})"))
        return out

    def weights_need(self, generation: str) -> Any:
        """The checkpoint folder a local engine loads for one generation kind (``_make_backend``'s choice)."""
        from rrbench.doctor import FileNeed

        ref = self.weights.get(generation) or self.weights.get("t2i") or next(iter(self.weights.values()))
        fetch = f"hf download REPO_ID --local-dir {ref}" if Path(ref).exists() else f"hf download {ref}"
        return FileNeed("weights", ref, "path", (("config.json",), WEIGHT_FILES), fetch, served=True)

    # ------------------------------------------------------------------------------------------------ judging
    async def acompare(self, queries: Sequence[Query]) -> list[Judgement]:
        return await self._ask(queries, "verdict" if self.mode == "verdict" else "pairwise")

    async def ascore(self, queries: Sequence[Query]) -> list[Judgement]:
        return await self._ask(queries, "pointwise")

    async def _ask(self, queries: Sequence[Query], kind: str) -> list[Judgement]:
        by_generation: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_generation.setdefault(q.generation, []).append(i)
        out: list[Judgement | None] = [None] * len(queries)
        for generation, indices in by_generation.items():
            answers = await self._chat(self._backend(generation), [queries[i] for i in indices], kind)
            for i, answer in zip(indices, answers, strict=True):
                out[i] = answer
        return [j for j in out if j is not None]

    async def _chat(self, backend: Backend, queries: list[Query], kind: str) -> list[Judgement]:
        prepared: list[tuple[Query, prompts.PromptSpec, Sequence[Message] | Judgement]] = []
        for q in queries:
            spec = self.prompt_for(q, kind)
            try:
                prepared.append((q, spec, spec.render(q.prompt, q.candidates, q.source, dict(q.variables))))
            except DataError as exc:
                prepared.append((q, spec, Judgement.failed(FailureKind.DATA, str(exc), prompt=spec.key)))
        to_send = [m for _, _, m in prepared if not isinstance(m, Judgement)]
        try:
            if self.engine in REMOTE:
                results = await asyncio.gather(*(backend.chat(m, self.sampling) for m in to_send),
                                               return_exceptions=True)
            else:
                results = list(await backend.chat_batch(to_send, self.sampling))
        except BackendError as exc:
            results = [exc] * len(to_send)
        answers = iter(results)
        return [m if isinstance(m, Judgement) else self._judge(q, spec, next(answers)) for q, spec, m in prepared]

    def _judge(self, query: Query, spec: prompts.PromptSpec, result: Any) -> Judgement:
        judgement = self._answer(query, spec, result)
        # Stored as it is (sample log, cache): no secret a server echoed, no megabytes of text (rrbench/redact.py)
        judgement = redact.clean(judgement, self._scrubber())
        return dataclasses.replace(judgement, prompt=spec.key)

    def _answer(self, query: Query, spec: prompts.PromptSpec, result: Any) -> Judgement:
        if isinstance(result, BackendError):
            return Judgement.failed(result.kind, str(result))
        if isinstance(result, UserError):
            raise result
        if isinstance(result, BaseException):
            return Judgement.failed(FailureKind.ERROR, f"{type(result).__name__}: {result}")
        completion: Completion = result
        if not completion.text.strip():
            return Judgement.failed(FailureKind.EMPTY, "the model returned no text", raw=completion.text)
        judgement = self._read(query, spec, completion.text)
        if completion.finish_reason == "length" and judgement.failure is not None:
            # Cut off before the answer was complete: say so rather than blaming the parser.
            return Judgement.failed(FailureKind.TRUNCATED, f"max_tokens={completion.usage.get('completion_tokens')}"
                                    f" reached; {judgement.failure_detail}", raw=completion.text)
        return _with_usage(judgement, completion)

    def _read(self, query: Query, spec: prompts.PromptSpec, text: str) -> Judgement:
        if spec.kind == "verdict":
            verdict = rr.read_verdict(spec.answer, text)
            if verdict is None:
                return Judgement.failed(FailureKind.PARSE, f"no verdict found ({spec.answer} answer expected)",
                                        raw=text)
            # A verdict is a verdict: no made-up scores that a score-threshold rule could turn into a tie.
            return Judgement(verdict=verdict, raw=text, rationale=text)
        parse = rr.parse_pairwise if spec.kind == "pairwise" else rr.parse_pointwise
        return rr.judgement_from(parse(text, query.generation), self.aggregation, self.na)

    async def achat(self, queries: Sequence[ChatQuery]) -> list[Judgement]:
        """A benchmark's own requests, sent as built (its decoding, its images): the raw answers, unparsed."""
        out: list[Judgement] = []
        for q in queries:  # the dispatcher sends one at a time to a server; in-process engines get their batch
            backend = self._backend(q.generation)
            sampling = dataclasses.replace(self.sampling, temperature=q.temperature, max_tokens=q.max_tokens)
            try:
                if self.engine in REMOTE:
                    result: Any = await backend.chat(q.messages, sampling)
                else:
                    result = (await backend.chat_batch([q.messages], sampling))[0]
            except (BackendError, DataError) as exc:
                result = exc
            except UserError:
                raise
            except Exception as exc:  # an engine's own fault is this request's, recorded
                result = exc
            out.append(self._raw(result))
        return out

    def _raw(self, result: Any) -> Judgement:
        if isinstance(result, BackendError):
            judgement = Judgement.failed(result.kind, str(result))
        elif isinstance(result, DataError):
            judgement = Judgement.failed(FailureKind.DATA, str(result))
        elif isinstance(result, BaseException):
            judgement = Judgement.failed(FailureKind.ERROR, f"{type(result).__name__}: {result}")
        else:
            flags = ("truncated",) if result.finish_reason == "length" else ()
            judgement = _with_usage(Judgement(raw=result.text, flags=flags), result)
        return redact.clean(judgement, self._scrubber())

    def _scrubber(self) -> redact.Scrubber:
        """The secrets of the environment as the run found them (built once: reading every variable per answer
        costs more than a request to a fast server)."""
        if self._scrub is None:
            self._scrub = redact.Scrubber.from_env(self.api_key_env, self.base_urls)
        return self._scrub

    # ------------------------------------------------------------------------------------------------ prompts
    def prompt_for(self, query: Query, kind: str) -> prompts.PromptSpec:
        """The prompt this judge sends for a query: the task's own judge prompt for verdicts (``-M prompt=official``,
        the default), the released critic prompts for critiques, or the family named by ``-M prompt=``."""
        family = self.prompt_family
        if kind == "verdict" and family is None:
            spec = prompts.get(query.judge_prompt) if query.judge_prompt else prompts.select("rrbench", kind,
                                                                                                query.generation)
        else:
            spec = prompts.select(family or self.critic_prompts, kind, query.generation)
        if spec.key not in self._prompts_used:
            self._prompts_used[spec.key] = spec.describe()
        return spec

    def _check_prompts(self, generation: str) -> None:
        """A prompt family without the prompt this mode needs fails at start, not on every sample."""
        kind = "verdict" if self.mode == "verdict" else self.mode
        if kind != "verdict" or self.prompt_family is not None:
            prompts.select(self.prompt_family or self.critic_prompts, kind, generation)


def _prompt_family(prompt: str, critic_prompts: str) -> str | None:
    """None for ``official``; else a known family name (checked now, so a typo is one line before any sample)."""
    if prompt == OFFICIAL:
        return None
    known = prompts.families()
    if prompt not in known:
        raise UserError(f"-M prompt must be 'official' or a prompt family ({', '.join(sorted(known))}), not {prompt!r}")
    return prompt


def _with_usage(judgement: Judgement, completion: Completion) -> Judgement:
    return dataclasses.replace(judgement, usage=dict(completion.usage) or None, latency_s=completion.latency_s)
