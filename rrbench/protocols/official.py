"""A generation benchmark's own judge protocol, run by any generic VLM judge.

UniGenBench++, ImgEdit, GEdit-Bench and PICA-Bench each score images with their own judge: their own prompts (one
request per image, two, or one per question), their own decoding and image handling (a resize, a crop, a MIME type
that does not match the bytes), their own parse rule and their own failure rule (re-ask then drop, drop silently,
substitute a random number, count wrong). Each benchmark writes that once, as a ``BenchmarkJudge`` next to its task
(``tasks/judge_<benchmark>.py``); this module runs it:

* ``BenchmarkJudge.judge(sample, image, ask, seed)`` builds the official requests (``ChatQuery``), sends each with
  ``ask`` (the dispatcher: response cache, concurrency, retries of transport failures) and applies the official
  parse and failure rules to the raw answers, giving a ``Judged``: every call's judgement (raw answer, what the rule
  read from it in ``aspects``, what happened in ``flags``), the image's official score, or the failure that the
  official rule drops the image for;
* ``BenchmarkJudgeStep`` makes one trial per image of it, exactly as the reward-model step does, so coverage,
  resume and the report treat both alike; the task's metrics aggregate the trials as the official scorer does.

The judge model is whichever ``--model`` runs: a generic VLM judge (``RewardModel.generic_judge``) answers the
official requests; the task names its official judge, and a run by any other records itself as a substitute
(``judge_record``). A reward model with its own scores (RationalRewards, PickScore) cannot answer them: a run of it
on such a task uses the task's ``-rm`` protocol (the model's own per-image scores), named as such.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rrbench.generators._base import image_seed
from rrbench.protocols.judge_images import ImageSource, JudgeImagesStep
from rrbench.types import (
    ChatQuery,
    FailureKind,
    Judgement,
    Media,
    Prediction,
    Protocol,
    Sample,
    SampleResult,
    Task,
    Trial,
    UserError,
)

if TYPE_CHECKING:
    from rrbench.dispatch import Dispatcher
    from rrbench.models._base import RewardModel

MODE = "official"  # Protocol.mode of a benchmark's own judge protocol
Ask = Callable[[ChatQuery], Awaitable[Judgement]]


@dataclass(frozen=True)
class Judged:
    """One image under a benchmark's own judge: every call made (in order), the image's official score, or why the
    official rule leaves the image out (``failure``; the score is then None)."""

    judgements: tuple[Judgement, ...]
    score: float | None
    failure: FailureKind | None = None
    detail: str = ""


class BenchmarkJudge:
    """A benchmark's official judge protocol. Subclasses set the class attributes and implement ``judge``.

    ``official``: the rrbench model names of the benchmark's own judge (the first is the one its published numbers
    use; others are official alternatives the benchmark ships, e.g. an offline judge model). ``describe`` is what
    run.json records: prompt sources (repository, commit, file, lines), decoding, image handling, parse and failure
    rules, and the version of this implementation.
    """

    id: str = ""
    version: str = "1"
    official: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "official_judges": list(self.official)}

    def answers(self, results: Sequence[SampleResult], samples: Mapping[str, Sample]) -> Mapping[str, bytes]:
        """The judge run's raw answers in the files the benchmark's official scorer reads (relative path -> bytes),
        for ``rrbench export JUDGE_RUN DIR``: the official scorer then runs on rrbench's answers as they are."""
        raise UserError(f"{self.id}: no official answer file format to export")

    def for_protocol(self, protocol: Protocol) -> BenchmarkJudge:
        """The judge of one of the task's official protocols (a benchmark may ship several requests): itself."""
        return self

    async def judge(self, sample: Sample, image: Media, ask: Ask, seed: int) -> Judged:
        """Judge one image (a readable one: a missing or corrupt image never gets here). ``seed`` is the image's own
        (run seed, sample id, image index): what an official rule draws at random is drawn from it."""
        raise NotImplementedError


class BenchmarkJudgeStep(JudgeImagesStep):
    """One trial per image, judged by the task's own judge protocol through the run's generic VLM judge."""

    def __init__(self, task: Task, protocol: Protocol, dispatcher: Dispatcher, source: ImageSource,
                 seed: int) -> None:
        super().__init__(task, protocol, dispatcher, source)
        if not isinstance(task.judge, BenchmarkJudge):
            raise UserError(f"task '{task.name}' has no judge protocol of its own")
        self.judge: BenchmarkJudge = task.judge.for_protocol(protocol)
        self.seed = seed

    async def _judge(self, sample: Sample, index: int, media: Media) -> Trial:
        judged = await self.judge.judge(sample, media, self.dispatcher.chat, image_seed(self.seed, sample.id, index))
        order = (index,)
        if judged.failure is not None or judged.score is None:
            kind = judged.failure or FailureKind.PARSE
            calls = judged.judgements or (Judgement.failed(kind, judged.detail or "no score"),)
            return Trial(order, calls, None, kind)
        return Trial(order, judged.judgements, Prediction((judged.score,)))


def is_official(protocol: Protocol) -> bool:
    return protocol.mode == MODE


def resolved(protocol: Protocol, task: Task, model: RewardModel, model_name: str, named: bool) -> Protocol:
    """The protocol a judge run of a generation task uses: the task's own judge protocol for a generic VLM judge;
    for a reward model that cannot answer its requests, the task's reward-model protocol (``-rm``), unless the user
    named the official one (then one line saying why not)."""
    if not is_official(protocol) or model.can_chat:
        return protocol
    fallback = next((p for p in task.alternatives.values() if not is_official(p)), None)
    why = (f"'{model_name}' is a reward model with its own scores, not a general VLM judge: it cannot answer "
           f"{task.name}'s own judge prompts")
    if named or fallback is None:
        hint = f"; score with its own scores under --protocol {fallback.id}" if fallback is not None else ""
        raise UserError(f"{why} (use a VLM judge such as --model {', '.join(official_judges(task)) or 'gpt-4.1'}"
                        f"{hint})")
    return fallback


def official_judges(task: Task) -> tuple[str, ...]:
    return task.judge.official if isinstance(task.judge, BenchmarkJudge) else ()


def judge_record(task: Task, protocol: Protocol, model_name: str, model: RewardModel) -> dict[str, Any] | None:
    """run.json's ``judge``: who judged a benchmark that has its own judge protocol, under which protocol, and
    whether the numbers are the benchmark's (its official judge under its official protocol) or a substitute's.
    None for any other task (its protocol is the task's one way of scoring)."""
    if not task.generative or not isinstance(task.judge, BenchmarkJudge):
        return None
    out: dict[str, Any] = {"model": model_name}
    served = getattr(model, "served_model", None)
    if served:
        out["served_model"] = served
    if not is_official(protocol):
        out.update(protocol="reward-model", note="the judge's own scores, not the benchmark's judge protocol")
        return out
    judge = task.judge.for_protocol(protocol)
    out.update(protocol="official", official_judges=list(judge.official), substitute=model_name not in judge.official,
               judge_protocol=judge.describe())
    return out


def is_substitute(record: Mapping[str, Any]) -> bool:
    """Whether a judge run's numbers come from another judge than the benchmark's own (run.json ``judge``)."""
    judge = record.get("judge")
    return isinstance(judge, Mapping) and bool(judge.get("substitute"))
