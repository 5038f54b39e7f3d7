"""The pairwise protocol: which requests a sample becomes, and how answers map back to the sample's order.

Two modes: ``pairwise`` sends both candidates in one request (the judge sees them side by side, as the
RationalRewards paper evaluated); ``pointwise`` scores each candidate alone and compares the scores. The order
policy decides how candidates are shown: ``fixed`` (dataset order), ``swapped`` (reversed), ``both`` (two trials,
one per order, as MMRB2 does) or ``random`` (seeded per sample). Each trial records the order it used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rrbench import metrics
from rrbench.models import _rationalrewards_format as rr
from rrbench.models._base import RewardModel
from rrbench.types import (
    FailureKind,
    Judgement,
    Label,
    LabelKind,
    Prediction,
    Protocol,
    Query,
    Sample,
    SampleResult,
    Task,
    TaskKind,
    Trial,
    UserError,
    Verdict,
)

if TYPE_CHECKING:
    from rrbench.dispatch import Dispatcher

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


def resolved(protocol: Protocol, task: Task, model: RewardModel) -> Protocol:
    """The protocol with ``mode: auto`` replaced by the mode the model is asked in, so run.json says how."""
    if protocol.mode == "auto" and task.kind in (TaskKind.PAIR, TaskKind.GROUP):
        return dataclasses.replace(protocol, mode=resolve_mode("auto", model, 2))
    return protocol


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


# --------------------------------------------------------------------------------------------------- the step


class PairwiseStep:
    """Judge one preference sample: its trials (one per presentation order) through the dispatcher, each mapped
    back to the sample's own candidate order; a sample whose label the task does not know is recorded unjudged."""

    def __init__(self, task: Task, protocol: Protocol, model: RewardModel, dispatcher: Dispatcher, seed: int) -> None:
        self.task, self.protocol, self.model, self.dispatcher, self.seed = task, protocol, model, dispatcher, seed

    async def run(self, sample: Sample) -> SampleResult:
        start = time.perf_counter()
        if sample.label.kind is LabelKind.UNKNOWN:
            return self._result(sample, (), "unknown_label", start)
        return self._result(sample, await self._judge(sample), None, start)

    async def _judge(self, sample: Sample) -> tuple[Trial, ...]:
        n = len(sample.candidates)
        mode = resolve_mode(self.protocol.mode, self.model, n)
        orders = trial_orders(n, self.protocol.order, self.seed, sample.id)
        task = self.task
        plans = [(order, plan(sample, mode, order, task.generation, task.judge_prompt, task.prompt_vars))
                 for order in orders]
        # Identical requests within a sample (pointwise scoring in both orders) are sent once.
        unique = {(r.op, r.query.key): r for _, requests in plans for r in requests}
        answers = await asyncio.gather(*(self.dispatcher.submit(r.op, r.query) for r in unique.values()))
        answers = [protocol_scores(a, self.protocol, self.model) for a in answers]
        by_key = dict(zip(unique, answers, strict=True))
        return tuple(
            assemble(order, mode, [by_key[(r.op, r.query.key)] for r in requests]) for order, requests in plans
        )

    def _result(self, sample: Sample, trials: tuple[Trial, ...], skipped: str | None, start: float) -> SampleResult:
        credit = [trial_credit(sample.label, t, self.task.kind, self.protocol.tie_policy, sample.meta) for t in trials]
        return SampleResult(
            sample_id=sample.id,
            label=sample.label,
            trials=trials,
            meta=sample.meta,
            skipped=skipped,
            correct=tuple(credit),
            latency_s=time.perf_counter() - start,
            prompt=sample.prompt,
            candidates=tuple(m.to_json() for m in sample.candidates),
            source=tuple(m.to_json() for m in sample.source),
        )


def protocol_scores(judgement: Judgement, protocol: Protocol, model: RewardModel | None) -> Judgement:
    """A critique's scores under the protocol's N/A rule (``options.na``, e.g. the paper's 2.5), from its aspects.

    The model's own ``-M na`` gives the scores it returns; a protocol that defines its own rule (the RationalRewards
    paper counts N/A as 2.5) recomputes them from the recorded aspect scores, so the protocol's number is its own."""
    na = protocol.options.get("na")
    if na is None or not rr.is_critique(judgement):
        return judgement
    return rr.reaggregate(judgement, getattr(model, "aggregation", None), str(na))


def trial_credit(label: Label, trial: Trial, kind: TaskKind, tie_policy: str,
                 meta: Mapping[str, Any] | None = None) -> float | None:
    """Per-trial correctness kept in the log for people reading it; metrics recompute it from the trials.

    Calibrated rules are shown at their neutral knob (epsilon 0, threshold 0, tie split 0): the value the metric
    chooses on the whole run is in its ``extra``."""
    if kind not in (TaskKind.PAIR, TaskKind.GROUP):
        return None
    return metrics.pair_credit(label, trial, tie_policy, meta=meta)
