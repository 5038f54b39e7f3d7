"""`prompt-enhancer`: the paper's "blind prompt enhancer", a refine baseline that rewrites the prompt as text only.

An LLM or VLM is asked to make the benchmark prompt (for editing tasks, the editing instruction) more detailed and
explicit without changing its meaning. It never sees an image: neither the generated one nor, for edits, the source,
so its gain over the base set is what a better-worded request buys without any critique. It gives no aspect scores
(``refiner_only``), and its rewrite depends only on the prompt, so the regenerated image keeps its seed.

It always rewrites the benchmark prompt, never an earlier round's rewrite, so it cannot drift from the task. With the
default greedy decoding (``-M temperature=0.0``) the rewrite is a function of the prompt: reproducible and cacheable,
and a second ``--rounds`` round asks for the same rewrite again. ``-M max_tokens=1024`` leaves room for a long prompt;
an answer cut there is kept and flagged ``truncated``.

The model is reached as the VLM judges reach theirs (rrbench/models/_vlm.py): an OpenAI-compatible server given with
``--base-url`` (``-M served_model=`` names the model there, ``--api-key-env`` its key's variable), a vLLM server
rrbench starts (``-M serve=true``), vLLM or transformers in-process. The default weights are Qwen3-VL-8B-Instruct,
the backbone of RationalRewards-8B, so the enhancer and the critic differ in what they see, not in the model (the paper
does not name the model of its enhancer). In-process engines load a vision-language checkpoint; serve a text-only LLM
and pass ``--base-url`` to use one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from rrbench import redact
from rrbench.backends._base import Backend, BackendError, Completion, Message
from rrbench.models._base import RewardModel
from rrbench.models._vlm import REMOTE, VLMJudge
from rrbench.registry import reward_model
from rrbench.types import FailureKind, Judgement, Query, UserError

WEIGHTS = "Qwen/Qwen3-VL-8B-Instruct"
# Bump when the instructions or the reading of answers change: the fingerprint (and so the response cache) follows.
INSTRUCTIONS_VERSION = "1"

SYSTEM = {
    "t2i": "You rewrite prompts for a text-to-image model. You are given the text of a prompt only; you never see an "
           "image.",
    "edit": "You rewrite instructions for an image-editing model. You are given the text of an editing instruction "
            "only; you never see the image it applies to.",
}
ASK = {
    "t2i": "Rewrite this text-to-image prompt to be more detailed and explicit: state every object, count, colour, "
           "attribute, position, piece of text to render and style it asks for. Keep its meaning: add nothing that "
           "contradicts it or changes what is asked. Answer with the rewritten prompt only, without any preamble, "
           "quotes or explanation.",
    "edit": "Rewrite this image-editing instruction to be more detailed and explicit: state exactly what to change, "
            "where, and what the result should look like, and that everything else stays as it is. Keep its "
            "meaning: add nothing that contradicts it or changes what is asked. Answer with the rewritten "
            "instruction only, without any preamble, quotes or explanation.",
}
CRITIQUE_ONLY = ("mode", "aggregation", "na", "max_pixels", "prompt")
LABEL = {"t2i": "Prompt:", "edit": "Instruction:"}
# A reasoning model's thoughts before its answer (Qwen3 "thinking" checkpoints): not part of the rewrite.
_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


def instructions_digest() -> str:
    """A hash of every instruction this module sends, so an edited instruction never reuses cached rewrites."""
    blob = json.dumps([INSTRUCTIONS_VERSION, SYSTEM, ASK, LABEL], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rewrite_messages(prompt: str, generation: str) -> list[Message]:
    """The chat that asks for a rewrite of ``prompt``: text parts only, never an image."""
    # The prompt is appended, never formatted in: braces in a benchmark prompt are text, not placeholders.
    ask = f"{ASK[generation]}\n\n{LABEL[generation]}\n{prompt}"
    return [{"role": "system", "content": SYSTEM[generation]},
            {"role": "user", "content": [{"type": "text", "text": ask}]}]


def answer_text(raw: str) -> str:
    """The rewrite in a model's answer: without a leading reasoning block, stripped of surrounding whitespace."""
    return _THINK.sub("", raw, count=1).strip()


class PromptEnhancer(VLMJudge):
    """A VLM judge's engines with a rewrite request instead of a critique; answers ``score`` queries only."""

    refiner_only = True  # a rewrite, no aspect scores: refine regenerates every image it is given
    new_seed_on_refine = False  # the rewrite is the change; the seed stays so only the request differs
    acompare = RewardModel.acompare  # judges no pairs (can_compare stays False)

    def __init__(self, name: str, weights: dict[str, str], **options: Any) -> None:
        super().__init__(name, weights, **options)
        # A critique's settings (mode, aggregation, N/A policy, image size, prompt family) mean nothing to a rewrite:
        # kept out of run.json and of the fingerprint.
        self.config = {k: v for k, v in self.config.items() if k not in CRITIQUE_ONLY}

    def fingerprint(self) -> str:
        # Weights or served model, decoding and the instructions decide the rewrite; the URL serving it does not.
        blob = json.dumps([self.name, self.config, instructions_digest()], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        engines = {g: b.describe() for g, b in self._backends.items()}
        return {"name": self.name, "config": self.config, "fingerprint": self.fingerprint(), "engine": self.engine,
                "engines": engines, "instructions": {"version": INSTRUCTIONS_VERSION,
                                                     "digest": instructions_digest(), "system": SYSTEM, "ask": ASK}}

    def _check_prompts(self, generation: str) -> None:
        """Nothing to check: the instructions are this module's, not the prompt catalogue's."""

    async def ascore(self, queries: Sequence[Query]) -> list[Judgement]:
        """One rewrite per query (its image is never read), or the failure that request met."""
        out: list[Judgement | None] = [None] * len(queries)
        by_generation: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            if query.generation not in ASK:
                out[i] = Judgement.failed(FailureKind.DATA, f"no rewrite instruction for {query.generation!r} tasks")
            else:
                by_generation.setdefault(query.generation, []).append(i)
        for generation, indices in by_generation.items():
            chats = [rewrite_messages(queries[i].prompt, generation) for i in indices]
            results = await self._send(self._backend(generation), chats)
            for i, result in zip(indices, results, strict=True):
                out[i] = self._rewrite(result)
        return [j for j in out if j is not None]

    async def _send(self, backend: Backend, chats: list[list[Message]]) -> list[Any]:
        """Each chat's completion, or the exception its request ended with (one bad request fails only itself)."""
        try:
            if self.engine in REMOTE:
                return list(await asyncio.gather(*(backend.chat(c, self.sampling) for c in chats),
                                                 return_exceptions=True))
            return list(await backend.chat_batch(chats, self.sampling))
        except BackendError as exc:  # an in-process batch fails as a whole
            return [exc] * len(chats)

    def _rewrite(self, result: Any) -> Judgement:
        # Stored as it is (sample log, cache): no secret a server echoed, no megabytes of text (rrbench/redact.py).
        return redact.clean(_judgement(result), self._scrubber())


def _judgement(result: Any) -> Judgement:
    """A completion as a rewrite; a transport failure as its own kind; a missing API key stops the run."""
    if isinstance(result, UserError):
        raise result
    if isinstance(result, BackendError):
        return Judgement.failed(result.kind, str(result))
    if isinstance(result, BaseException):
        return Judgement.failed(FailureKind.ERROR, f"{type(result).__name__}: {result}")
    completion: Completion = result
    text = answer_text(completion.text)
    if not text:
        return Judgement.failed(FailureKind.EMPTY, "the model returned no rewrite", raw=completion.text)
    # A rewrite cut at max_tokens is still a request the generator can use; the flag lets the report count them.
    flags = ("truncated",) if completion.finish_reason == "length" else ()
    return Judgement(refined_prompt=text, raw=completion.text, flags=flags, usage=dict(completion.usage) or None,
                     latency_s=completion.latency_s)


@reward_model("prompt-enhancer", description="refine baseline: a blind text-only rewrite of the prompt by an LLM/VLM "
                                             "that never sees the image", extra="transformers")
def prompt_enhancer(
    path: str | None = None,
    served_model: str | None = None,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    batch_size: int | None = None,
    concurrency: int = 16,
    device: str = "auto",
    dtype: str = "auto",
    base_urls: list[str] | None = None,
    api_key_env: str | None = None,
    **engine: Any,
) -> RewardModel:
    """A text-only rewrite of the benchmark prompt (never the image) as the refined request, for `rrbench refine`.

    Weights: -M path= (default Qwen3-VL-8B-Instruct), or a server: --base-url URL -M served_model=NAME. Decoding:
    greedy (-M temperature=0.0), at most -M max_tokens=1024; other engine settings as the VLM judges'.
    docs/models/refiners.md has the instructions it sends."""
    ref = path or WEIGHTS
    return PromptEnhancer(
        "prompt-enhancer", {"t2i": ref, "edit": ref}, mode="pointwise", temperature=temperature,
        max_tokens=max_tokens, batch_size=batch_size, concurrency=concurrency, device=device, dtype=dtype,
        base_urls=base_urls or (), api_key_env=api_key_env, served_model=served_model, engine=engine,
    )
