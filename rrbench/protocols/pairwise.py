"""The pairwise protocol: which requests a sample becomes, and how answers map back to the sample's order.

Two modes: ``pairwise`` sends both candidates in one request (the judge sees them side by side, as the
RationalRewards paper evaluated); ``pointwise`` scores each candidate alone and compares the scores. The order
policy decides how candidates are shown: ``fixed`` (dataset order), ``swapped`` (reversed), ``both`` (two trials,
one per order, as MMRB2 does) or ``random`` (seeded per sample). Each trial records the order it used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from rrbench.models._base import RewardModel
from rrbench.types import FailureKind, Judgement, Prediction, Query, Sample, Trial, UserError, Verdict

_SWAP = {Verdict.A: Verdict.B, Verdict.B: Verdict.A}


def resolve_mode(requested: str, model: RewardModel, n_candidates: int = 2) -> str:
    """'auto' follows the model's own preference; an impossible request is a user error, said up front."""
    if requested == "auto":
        return "pairwise" if model.pairwise and model.can_compare and n_candidates == 2 else "pointwise"
    if requested == "pairwise" and not model.can_compare:
        raise UserError(f"model '{model.name}' cannot judge pairs natively; use -M mode=pointwise or --mode auto")
    if requested == "pointwise" and not model.can_score:
        raise UserError(f"model '{model.name}' cannot score single images; it only judges pairs")
    return requested


def trial_orders(n_candidates: int, policy: str, seed: int, sample_id: str) -> list[tuple[int, ...]]:
    identity = tuple(range(n_candidates))
    reverse = tuple(reversed(identity))
    if policy == "fixed" or n_candidates < 2:
        return [identity]
    if policy == "swapped":
        return [reverse]
    if policy == "both":
        return [identity, reverse]
    if policy == "random":
        # Seeded by (run seed, sample id) so a sample's order never depends on --limit or on scheduling.
        digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
        return [reverse if digest[0] & 1 else identity]
    raise UserError(f"unknown order policy {policy!r}")


@dataclass(frozen=True)
class Request:
    """One call to the model: ``op`` is 'compare' (all candidates at once) or 'score' (one candidate)."""

    op: str
    query: Query


def plan(sample: Sample, mode: str, order: tuple[int, ...], generation: str, judge_prompt: str | None = None,
         prompt_vars: Sequence[str] = ()) -> list[Request]:
    shown = tuple(sample.candidates[i] for i in order)
    if mode == "pairwise":
        variables = shown_variables(sample, prompt_vars, order)
        query = Query(sample.prompt, shown, sample.source, generation, sample.id, judge_prompt, variables)
        return [Request("compare", query)]
    return [Request("score", Query(sample.prompt, (m,), sample.source, generation, sample.id)) for m in shown]


def shown_variables(sample: Sample, names: Sequence[str], order: tuple[int, ...]) -> tuple[tuple[str, str], ...]:
    """The sample fields a judge prompt fills in, as shown: a comparison type ``AvsC`` names the candidates in the
    order they appear, so a reversed trial reads ``CvsA``. A missing field is left out (the prompt then fails that
    sample with a data error naming it)."""
    out = []
    for name in names:
        value = sample.meta.get(name)
        if value is None:
            continue
        text = str(value)
        if name == "comparison_type" and order[:1] != (0,) and len(text) == 4 and text[1:3] == "vs":
            text = f"{text[3]}vs{text[0]}"
        out.append((name, text))
    return tuple(out)


def assemble(order: tuple[int, ...], mode: str, judgements: Sequence[Judgement]) -> Trial:
    """Map the shown-order answers back to the sample's candidate indices."""
    failed = next((j for j in judgements if j.failure is not None), None)
    if failed is not None:
        return Trial(order, tuple(judgements), None, failed.failure)
    pairwise = mode == "pairwise"
    prediction = _from_pairwise(order, judgements[0]) if pairwise else _from_pointwise(order, judgements)
    if prediction is None:
        detail = Judgement.failed(FailureKind.PARSE, "judgement carries neither scores nor a verdict")
        return Trial(order, (*judgements, detail), None, FailureKind.PARSE)
    return Trial(order, tuple(judgements), prediction)


def _from_pairwise(order: tuple[int, ...], judgement: Judgement) -> Prediction | None:
    scores: list[float | None] = [None] * len(order)
    for shown_pos, score in enumerate(judgement.scores):
        scores[order[shown_pos]] = score
    verdict = judgement.verdict
    if verdict is not None and order[0] != 0:
        verdict = _SWAP.get(verdict, verdict)  # tie kinds do not depend on the order
    if verdict is None and not any(s is not None for s in scores):
        return None
    return Prediction(tuple(scores), verdict)


def _from_pointwise(order: tuple[int, ...], judgements: Sequence[Judgement]) -> Prediction | None:
    scores: list[float | None] = [None] * len(order)
    for shown_pos, judgement in enumerate(judgements):
        scores[order[shown_pos]] = judgement.scores[0] if judgement.scores else None
    if any(s is None for s in scores):
        return None
    return Prediction(tuple(scores))
