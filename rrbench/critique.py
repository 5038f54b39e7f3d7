"""The critic's request and answer formats, for code that makes or checks critiques (``training/``'s PARROT).

A critique made for training must be asked and read exactly as rrbench asks and reads it at evaluation time, or the
student learns another format than the one it is judged in. This module is that one place, public:

* ``critic_messages``: the chat messages ``rationalrewards-8b`` (and any critic with the same prompt family) sends
  for a pairwise or pointwise critique, images placed where the prompt places them (``{"type": "image", "media":
  Media}`` parts between text parts);
* ``parse_critique``: the parser rrbench applies to the answer (per-aspect scores, N/A, winners, refined request);
* ``critique_judgement``: that parse as a ``Judgement`` (aggregated scores, or the parse failure);
* ``pairwise_sum`` and ``ASPECTS``: the paper's sum rule and aspect names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rrbench import prompts
from rrbench.models._rationalrewards_format import (
    ALL_ASPECTS,
    EDIT_ASPECTS,
    T2I_ASPECTS,
    Parsed,
    judgement_from,
    pairwise_sum,
    pairwise_verdict,
    parse_pairwise,
    parse_pointwise,
)
from rrbench.types import Judgement, Media, UserError

ASPECTS = {"t2i": T2I_ASPECTS, "edit": EDIT_ASPECTS}
KINDS = ("pairwise", "pointwise")

__all__ = ["ALL_ASPECTS", "ASPECTS", "KINDS", "Parsed", "critic_messages", "critique_judgement", "pairwise_sum",
           "pairwise_verdict", "parse_critique", "prompt_key"]


def _spec(kind: str, generation: str, family: str) -> prompts.PromptSpec:
    if kind not in KINDS:
        raise UserError(f"critique kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return prompts.select(family, kind, generation)


def prompt_key(kind: str, generation: str, family: str = "rationalrewards") -> str:
    """The catalogue key (id@version) of the prompt ``critic_messages`` renders: record it with what it made."""
    return _spec(kind, generation, family).key


def critic_messages(prompt: str, candidates: Sequence[Media], source: Sequence[Media] = (), *, kind: str,
                    generation: str, family: str = "rationalrewards",
                    variables: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The critic's request: two candidates for ``pairwise``, one for ``pointwise``; ``source`` for edits."""
    want = 2 if kind == "pairwise" else 1
    if len(candidates) != want:
        raise UserError(f"a {kind} critique takes {want} candidate image(s), not {len(candidates)}")
    return _spec(kind, generation, family).render(prompt, candidates, source, variables)


def parse_critique(text: str, generation: str, pairwise: bool) -> Parsed:
    """rrbench's reading of a critique (``Parsed.error`` says why an answer is unusable)."""
    return parse_pairwise(text, generation) if pairwise else parse_pointwise(text, generation)


def critique_judgement(text: str, generation: str, pairwise: bool, na: str = "drop") -> Judgement:
    """The critique as rrbench scores it: pairwise sums (N/A policy ``na``) or the pointwise mean, or the failure."""
    return judgement_from(parse_critique(text, generation, pairwise), None, na)
