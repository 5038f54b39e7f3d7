"""PARROT 1, ``rrbench-train anchor``: a teacher writes, for each human preference, the critique that explains it.

For every sample of an rrbench preference task with a strict human preference between two candidates, the teacher
(any generic VLM judge rrbench can build: a served Qwen3-VL, GPT-4.1, Gemini, a local server) receives the
student's own request (``rrbench.critique.critic_messages``: the same messages, images in the same places, that the
critic is evaluated with) followed by an anchoring text that states the preference (``prompts/anchor-*.txt``,
versioned data). Its answer, raw, is one record of a resumable stage directory.

* ``--kind pairwise``: one request per pair, "Image A is preferred" (A = the first candidate as the dataset orders
  them); the target is the winner letter.
* ``--kind pointwise``: the student's pointwise request shows one image, so each candidate of a pair is critiqued on
  its own, told whether it was the preferred or the rejected one; the target is the pair: the preferred item's
  mean score must exceed the rejected item's (the ``label`` filter reads both records of the pair).

Samples without a usable strict preference (ties, unknown labels, not two candidates, unreadable images) are
skipped and counted by reason; a dataset with none at all is a user error.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import itertools
import os
import re
import string
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import rrbench
from rrbench import ChatQuery, Judgement, Label, Media, Sample, UserError, critique
from rrbench_train.parrot.stage import StageDir, latest_records

KINDS = ("pairwise", "pointwise")
LETTERS = ("A", "B")
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif"}
PREFERENCE_KINDS = ("pair", "group", "ranking")  # TaskKind values with human preferences between given images


# ---------------------------------------------------------------------------------------------------- prompt files


@dataclass(frozen=True)
class PromptFile:
    """One versioned prompt file: ``<name>.txt`` whose name ends in ``-v<version>``; sections ``@@ <name>`` lines."""

    name: str
    sections: Mapping[str, str]
    sha256: str

    @property
    def key(self) -> str:
        version = self.name.rsplit("-", 1)[-1]
        return f"{self.name}.txt@{version}"

    def render(self, section: str = "", **values: str) -> str:
        template = self.sections.get(section)
        if template is None:
            raise UserError(f"prompt {self.name}.txt has no '@@ {section}' section")
        return string.Template(template).substitute(values).strip()


def load_prompt(name: str) -> PromptFile:
    """A prompt shipped in ``rrbench_train/parrot/prompts`` by name (``anchor-pairwise-v1``), or a ``.txt`` path."""
    path = Path(name)
    if path.suffix == ".txt" and path.is_file():
        text, stem = path.read_text(encoding="utf-8"), path.stem
    else:
        file = resources.files("rrbench_train.parrot") / "prompts" / f"{name}.txt"
        if not file.is_file():
            shipped = sorted(p.name.removesuffix(".txt") for p in (resources.files("rrbench_train.parrot") /
                                                                    "prompts").iterdir() if p.name.endswith(".txt"))
            raise UserError(f"unknown prompt {name!r} (shipped: {', '.join(shipped)}; or a path to a .txt file)")
        text, stem = file.read_text(encoding="utf-8"), name
    if not re.search(r"-v\d+$", stem):
        raise UserError(f"prompt file name {stem!r} must end in -v<version> (prompts are versioned data)")
    return PromptFile(stem, _sections(text), hashlib.sha256(text.encode()).hexdigest())


def _sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    current, lines = "", list[str]()
    for line in text.splitlines():
        header = re.fullmatch(r"@@\s*(\w+)\s*", line)
        if header:
            out[current] = "\n".join(lines)
            current, lines = header.group(1), []
        else:
            lines.append(line)
    out[current] = "\n".join(lines)
    return {k: v for k, v in out.items() if v.strip()}


# ---------------------------------------------------------------------------------------------------- labels


def strict_preference(sample: Sample) -> tuple[int | None, str]:
    """(index of the preferred of two candidates, "") or (None, the reason the sample cannot be anchored)."""
    label: Label = sample.label
    if len(sample.candidates) != 2:
        return None, "not-a-pair"
    kind = label.kind.value
    if kind == "winner":
        return (label.winner, "") if label.winner in (0, 1) else (None, "bad-label")
    if label.kind.is_tie:
        return None, "tie"
    values = label.ranks if kind == "ranking" else label.scores if kind == "scores" else None
    if values is None:
        return None, {"unknown": "unknown-label", "none": "no-label"}.get(kind, "bad-label")
    if len(values) != 2:
        return None, "bad-label"
    if values[0] == values[1]:
        return None, "tie"
    best = min if kind == "ranking" else max  # rank 1 is best; a higher human score is better
    return values.index(best(values)), ""


# ---------------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Item:
    """One request to the teacher: a pair (pairwise) or one candidate of a pair (pointwise), answer number k."""

    id: str
    sample: Sample
    preferred: int
    candidate: int | None  # pointwise: which candidate is critiqued
    k: int


def item_ids(sample_id: str, kind: str, n: int) -> Iterator[tuple[str, int | None, int]]:
    """(id, candidate, k) of each item of one sample; "#k" only when several answers are asked per pair."""
    for k in range(n):
        answer = f"#{k}" if n > 1 else ""
        if kind == "pairwise":
            yield f"{sample_id}{answer}", None, k
        else:
            for c in (0, 1):
                yield f"{sample_id}#cand{c}{answer}", c, k


def target_of(item: Item, kind: str, n: int) -> dict[str, Any]:
    if kind == "pairwise":
        return {"winner": LETTERS[item.preferred], "preferred": item.preferred, "rejected": 1 - item.preferred}
    assert item.candidate is not None
    answer = f"#{item.k}" if n > 1 else ""
    pair = [f"{item.sample.id}#cand{c}{answer}" for c in (0, 1)]
    return {"candidate": item.candidate, "preferred": item.candidate == item.preferred, "pair": pair}


def store_image(media: Media, folder: Path) -> tuple[str, Media]:
    """The image's bytes, as given (never re-encoded), at ``images/<sha256>.<ext>``: its relative path, and a Media
    of those very bytes for the request (so what was sent is what was stored). DataError when unreadable."""
    loaded = media.loaded()
    data = loaded.read_bytes()
    fmt = loaded.format or rrbench.Media.from_bytes(data).format or "png"
    name = f"images/{loaded.sha256}.{EXTENSIONS.get(fmt, fmt)}"
    target = folder / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # a kill never leaves half an image under its final name
    # The checked, hashed media itself when its format is known: the request reuses its bytes and checks.
    return name, loaded if loaded.format == fmt else Media.from_bytes(data, fmt)


def teacher_messages(item: Item, kind: str, generation: str, shown: Sequence[Media], source: Sequence[Media],
                     prompt: PromptFile) -> tuple[dict[str, Any], ...]:
    """The student's request, then the anchoring text as the last part of the same user turn."""
    messages = critique.critic_messages(item.sample.prompt, shown, source, kind=kind, generation=generation)
    if kind == "pairwise":
        anchor = prompt.render(preferred=f"Image {LETTERS[item.preferred]}",
                               rejected=f"Image {LETTERS[1 - item.preferred]}")
    else:
        anchor = prompt.render("preferred" if item.candidate == item.preferred else "rejected")
    last = dict(messages[-1])
    content = last["content"]
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    last["content"] = [*parts, {"type": "text", "text": "\n\n" + anchor}]
    return (*messages[:-1], last)


# ---------------------------------------------------------------------------------------------------- the stage


@dataclass
class Counts:
    samples_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    asked: int = 0
    resumed: int = 0


class Anchor:
    """One anchoring stage: reads the task, asks the teacher, records each answer as it comes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._info: dict[str, Any] | None = None
        self.kind: str = args.kind
        self.n: int = args.candidates
        if self.kind not in KINDS:
            raise UserError(f"--kind must be pairwise or pointwise, not {self.kind!r}")
        if self.n < 1 or args.concurrency < 1:
            raise UserError("--candidates and --concurrency must be at least 1")
        self.task = rrbench.build_task(args.task, **assignments(args.task_args, "-T"))
        if self.task.kind.value not in PREFERENCE_KINDS:
            raise UserError(f"task '{args.task}' is a {self.task.kind.value} benchmark without human preferences "
                            "between given images; anchor needs a preference task")
        self.generation: str = self.task.generation or "t2i"
        self.prompt = load_prompt(args.prompt or f"anchor-{self.kind}-v1")
        if self.data is not None and not self.data.exists():
            raise UserError(f"--data path does not exist: {self.data}")
        runtime = {k: v for k, v in (("base_urls", args.base_urls), ("api_key_env", args.api_key_env)) if v}
        self.teacher = rrbench.build_model(args.teacher, **assignments(args.model_args, "-M"), **runtime)
        if not self.teacher.can_chat:
            raise UserError(f"teacher '{args.teacher}' answers no free chat requests; use a generic VLM judge "
                            "(`rrbench ls models`: qwen3-vl-32b, gpt-4.1, gemini-2.5-pro, ...)")
        self.counts = Counts()
        self.refused = False

    @property
    def data(self) -> Path | None:
        return Path(self.args.data) if self.args.data else None

    def stage(self) -> StageDir:
        args = self.args
        config = {"task": args.task, "task_args": assignments(args.task_args, "-T"), "limit": args.limit,
                  "teacher": args.teacher, "teacher_args": assignments(args.model_args, "-M"), "kind": self.kind,
                  "candidates": self.n, "generation": self.generation, "prompt": self.prompt.key,
                  "prompt_sha256": self.prompt.sha256, "temperature": args.temperature,
                  "max_tokens": args.max_tokens, "student_prompt": self.student_prompt}
        info = self.task.info
        inputs = {"task": {"name": self.task.name, "version": self.task.version, "dataset": info.dataset,
                           "revision": info.revision, "data": str(self.data.resolve()) if self.data else None}}
        name = f"{args.task}-{args.teacher}-{self.kind}"
        return StageDir(Path(args.out), "anchor", name, config, inputs)

    @property
    def student_prompt(self) -> str:
        return critique.prompt_key(self.kind, self.generation)

    def items(self, done: set[str]) -> Iterator[Item]:
        """Every item still to ask, sample by sample; skipped samples are counted by reason."""
        for index, sample in enumerate(self.task.load(self.data)):
            if self.args.limit is not None and index >= self.args.limit:
                return
            self.counts.samples_read += 1
            preferred, reason = strict_preference(sample)
            if preferred is None:
                self.counts.skipped[reason] += 1
                continue
            for item_id, candidate, k in item_ids(sample.id, self.kind, self.n):
                if item_id in done:
                    self.counts.resumed += 1
                    continue
                yield Item(item_id, sample, preferred, candidate, k)

    async def run(self) -> dict[str, Any]:
        stage = self.stage()
        done = {r["id"] for r in latest_records(stage.path) if "answer" in r}
        items = self.items(done)
        first = next(items, None)
        if first is None and self.counts.samples_read == 0:
            raise UserError(f"task '{self.args.task}' yielded no samples")
        if first is None and not self.counts.resumed:
            # Said before anything is created or any server is contacted: nothing here could be anchored.
            raise UserError(f"task '{self.args.task}' has no sample with a usable strict preference "
                            f"({self.counts.samples_read} read, skipped: {_reasons(self.counts.skipped)})")
        stage.open()
        status = "failed"
        try:
            if first is not None:
                await self.teacher.astart(self.generation)
                try:
                    await self._ask_all(stage, itertools.chain([first], items))
                finally:
                    await self.teacher.aclose()
            status = "stopped" if self.refused else "done"
        finally:
            record = stage.finish(status, self._final_counts(stage), teacher=self._teacher_info())
        if self.refused:
            raise UserError("the teacher's server refused the API key (--api-key-env, or the model's default "
                            "variable); finished items are kept, rerun to resume")
        return {"path": str(stage.path), **record}

    async def _ask_all(self, stage: StageDir, items: Iterator[Item]) -> None:
        gate = asyncio.Semaphore(self.args.concurrency)
        pending: set[asyncio.Task[None]] = set()
        for item in items:
            await gate.acquire()
            if self.refused:  # the server refused the API key: every further request would be refused too
                break
            job = asyncio.create_task(self._ask(stage, item))
            pending.add(job)
            job.add_done_callback(functools.partial(_settled, pending, gate))
        if pending:
            await asyncio.gather(*pending)

    async def _ask(self, stage: StageDir, item: Item) -> None:
        record = self._record(item, stage.path)
        if "failure" not in record:
            query = ChatQuery(messages=record.pop("_messages"), temperature=self.args.temperature,
                              max_tokens=self.args.max_tokens, generation=self.generation, sample_id=item.id,
                              attempt=item.k, name=f"anchor-{self.kind}")
            self.counts.asked += 1
            (answer,) = await self.teacher.achat([query])
            record.update(_answer_fields(answer))
            self.refused = self.refused or answer.failure is rrbench.FailureKind.AUTH
        stage.append(record)

    def _record(self, item: Item, folder: Path) -> dict[str, Any]:
        sample = item.sample
        shown = sample.candidates if item.candidate is None else (sample.candidates[item.candidate],)
        record: dict[str, Any] = {
            "id": item.id, "sample_id": sample.id, "task": self.task.name, "generation": self.generation,
            "kind": self.kind, "prompt": sample.prompt, "label": sample.label.to_json(),
            "target": target_of(item, self.kind, self.n), "teacher": self._teacher_info(),
            "student_prompt": self.student_prompt}
        try:
            stored = [store_image(m, folder) for m in shown]
            sources = [store_image(m, folder) for m in sample.source]
        except rrbench.DataError as exc:
            return {**record, "failure": {"kind": "data", "detail": str(exc)}}
        record["images"] = {"candidates": [p for p, _ in stored], "source": [p for p, _ in sources]}
        record["_messages"] = teacher_messages(item, self.kind, self.generation, [m for _, m in stored],
                                               [m for _, m in sources], self.prompt)
        return record

    def _teacher_info(self) -> dict[str, Any]:
        if self._info is None:  # the same for every record: computed once (a fingerprint hashes the config)
            self._info = {"model": self.args.teacher, "fingerprint": self.teacher.fingerprint(),
                          "prompt": self.prompt.key}
        return dict(self._info)

    def _final_counts(self, stage: StageDir) -> dict[str, Any]:
        latest = latest_records(stage.path)
        failed = Counter(r["failure"]["kind"] for r in latest if "answer" not in r and "failure" in r)
        skipped = dict(sorted(self.counts.skipped.items()))
        answered = sum(1 for r in latest if "answer" in r)
        return {"samples_read": self.counts.samples_read, "skipped": skipped,
                "usable_samples": self.counts.samples_read - sum(skipped.values()), "items": len(latest),
                "asked": self.counts.asked, "resumed": self.counts.resumed, "answered": answered,
                "failed": dict(sorted(failed.items()))}


def _settled(pending: set[asyncio.Task[None]], gate: asyncio.Semaphore, job: asyncio.Task[None]) -> None:
    pending.discard(job)
    gate.release()


def _answer_fields(answer: Judgement) -> dict[str, Any]:
    if answer.failure is not None:
        return {"failure": {"kind": answer.failure.value, "detail": answer.failure_detail or ""}}
    text = answer.raw or ""
    if not text.strip():
        return {"failure": {"kind": "empty", "detail": "the teacher returned no text"}}
    out: dict[str, Any] = {"answer": text, "usage": dict(answer.usage or {})}
    if answer.flags:
        out["flags"] = list(answer.flags)
    return out


def _reasons(skipped: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"


def assignments(items: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """``-T n=10`` style arguments, read as ``rrbench run`` reads its -T/-M (``rrbench.parse_value``: YAML scalars,
    ``[lists]`` and ``{mappings}``, anything else as text)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = rrbench.parse_value(text)
    return out


# ---------------------------------------------------------------------------------------------------- command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="an rrbench preference task (`rrbench ls tasks`)")
    p.add_argument("-T", dest="task_args", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    p.add_argument("--data", help="a local copy of the task's data (its public schema)")
    p.add_argument("--limit", type=int, help="read at most this many samples")
    p.add_argument("--teacher", required=True, help="a generic VLM judge (`rrbench ls models`): qwen3-vl-32b, ...")
    p.add_argument("-M", dest="model_args", action="append", metavar="KEY=VALUE", help="teacher argument")
    p.add_argument("--base-url", dest="base_urls", action="append", metavar="URL", help="the teacher's endpoint")
    p.add_argument("--api-key-env", help="environment variable holding the teacher's API key")
    p.add_argument("--kind", default="pairwise", choices=KINDS, help="the student's critique kind (default pairwise)")
    p.add_argument("--candidates", type=int, default=1, metavar="N", help="answers asked per pair (default 1)")
    p.add_argument("--prompt", help="anchoring prompt name or .txt path (default anchor-<kind>-v1)")
    p.add_argument("--temperature", type=float, default=0.7, help="teacher sampling temperature (default 0.7)")
    p.add_argument("--max-tokens", type=int, default=4096, help="teacher answer limit (default 4096)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    p.add_argument("--out", default="parrot", help="folder of stage directories (default ./parrot)")


def main(args: argparse.Namespace) -> int:
    result = asyncio.run(Anchor(args).run())
    c = result["counts"]
    print(f"{result['path']}: {c['answered']}/{c['items']} answered, failed {_reasons(c['failed'])}; "
          f"{c['samples_read']} samples read, skipped {_reasons(c['skipped'])}")
    return 0 if result["status"] == "done" else 1

