"""ImgEdit-Bench Basic's own judge (github.com/PKU-YuanGroup/ImgEdit, commit 547185d, ``Benchmark/Basic/``).

The request, as ``basic_bench.py`` builds it (lines 23-50):

* the rubric of the sample's edit type from ``prompts.json`` with ``<edit_prompt>`` replaced by the instruction
  (``prompt.replace('<edit_prompt>', edit_prompt)``, line 37; the rubrics are kept verbatim in
  ``rrbench/prompts/data/imgedit/``);
* one user message: that text, the original image, the edited image (lines 42-48), each sent as
  ``data:image/png;base64,`` of the file's bytes as they are (``image_to_base64``, lines 14-17; lines 46-47): no
  resize, no re-encoding, and the original, a JPEG, is declared ``image/png`` (line 46). The extract and style
  rubrics speak of one and of three images, but the code always sends these two;
* ``model="gpt-4o"``, no temperature, no max_tokens (lines 39-50).

The parse (``step1_get_avgscore.py`` lines 4-13): every line of the answer (``str.splitlines``), stripped and split
on ``': '``, that gives exactly two parts whose right part ``isdigit()`` adds ``int(right)``; the image's score is
``round(mean, 2)``. Any line counts, whatever its name, and a value outside 1-5 is taken as it is (flagged here as
``out_of_range``). An answer with no such line has no score: step1 leaves the key out (lines 18-20), so the image
drops out of every mean silently; rrbench records it as a ``parse`` failure of that image (flag ``no_score``) and
excludes it, as step1 does. A right part that ``isdigit()`` accepts but ``int()`` does not (a superscript digit)
makes step1 raise; rrbench records that image as a ``parse`` failure (flag ``official_crash``).

Failures. In ``basic_bench.py`` a failed API call raises (line 55) and a missing image gives ``{"error": ...}``
(line 29, then ``response.choices`` fails, line 65); both end as ``results[key] = {"error": str(e)}`` (line 85)
in result.json, on which step1 crashes (``entry.splitlines()`` on a dict, line 5). There is no retry (the tenacity
decorator is commented out, line 22). rrbench retries transport failures as for every judge, records what is
left as the image's failure by kind (http, timeout, data ...), excludes it from the means, and counts it.

Judges: the script calls gpt-4o; the numbers papers publish for ImgEdit (and those the RationalRewards paper
compares with) are, by those papers' accounts, GPT-4.1's. Both are official here (neither is marked a substitute);
the repository itself only ever names gpt-4o (basic_bench.py:40, basic_bench_readme.md:55).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from rrbench.backends._base import image_part, text_part, user_message
from rrbench.protocols.official import Ask, BenchmarkJudge, Judged
from rrbench.types import ChatQuery, FailureKind, Judgement, Media, Sample, SampleResult

REPO = "PKU-YuanGroup/ImgEdit"
COMMIT = "547185d12c08267a862b94248576e1746e479937"
PROMPT_FOLDER = "imgedit"
PLACEHOLDER = "<edit_prompt>"
DECLARED_FORMAT = "png"  # basic_bench.py:46-47 labels both images image/png, whatever their bytes are
LOW, HIGH = 1, 5  # the rubrics' scale; step1 does not enforce it
RESULT_JSON = "result.json"  # what basic_bench.py writes (line 87) and step1 reads

# Flags recorded on a judgement, read by the metrics and the report.
NO_SCORE, OUT_OF_RANGE, OFFICIAL_CRASH = "no_score", "out_of_range", "official_crash"


# --------------------------------------------------------------------------------------------------- prompts


def _data(name: str) -> str:
    return resources.files("rrbench.prompts").joinpath("data", PROMPT_FOLDER, name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def source() -> dict[str, Any]:
    """Where the rubrics come from (repository, commit, file, line and sha256 of each)."""
    loaded: dict[str, Any] = json.loads(_data("source.json"))
    return loaded


@functools.lru_cache(maxsize=1)
def rubrics() -> dict[str, str]:
    """Edit type -> its rubric from prompts.json, verbatim (prompts.json's key order)."""
    return {edit_type: _data(entry["file"]) for edit_type, entry in source()["rubrics"].items()}


def request_text(edit_type: str, instruction: str) -> str:
    """The text part of the request (basic_bench.py:36-37): the rubric with the placeholder replaced."""
    return rubrics()[edit_type].replace(PLACEHOLDER, instruction)


# --------------------------------------------------------------------------------------------------- parse


@dataclass(frozen=True)
class Reading:
    """What step1_get_avgscore.py reads from one answer: the (name, value) of each counted line, in order, and why
    step1 would raise on the answer, if it would."""

    lines: tuple[tuple[str, int], ...]
    crash: str | None = None

    @property
    def score(self) -> float | None:
        """step1's per-image score (lines 11-13): round(mean, 2), or None where it leaves the image out."""
        if self.crash is not None or not self.lines:
            return None
        values = [value for _, value in self.lines]
        return round(sum(values) / len(values), 2)

    @property
    def out_of_range(self) -> bool:
        return any(not LOW <= value <= HIGH for _, value in self.lines)


def read_answer(answer: str) -> Reading:
    """The official parse of one answer (step1_get_avgscore.py:5-10), line for line."""
    counted: list[tuple[str, int]] = []
    for line in answer.splitlines():
        parts = line.strip().split(": ")
        if len(parts) == 2 and parts[1].isdigit():
            try:
                counted.append((parts[0], int(parts[1])))
            except ValueError:  # isdigit() accepts superscripts that int() refuses: step1 stops with a traceback
                return Reading(tuple(counted), f"step1 would raise on int({parts[1]!r})")
    return Reading(tuple(counted))


def _aspects(reading: Reading) -> dict[str, float | None]:
    """The counted lines by name; a name seen again is numbered, as each line counts on its own."""
    out: dict[str, float | None] = {}
    for name, value in reading.lines:
        key, n = name, 1
        while key in out:
            n += 1
            key = f"{name} ({n})"
        out[key] = float(value)
    return out


# --------------------------------------------------------------------------------------------------- judge


class ImgEditJudge(BenchmarkJudge):
    """One request per edited image: rubric text, original image, edited image; step1's parse and drop rule."""

    id = "imgedit-basic"
    version = "1"
    official = ("gpt-4.1", "gpt-4o")

    def describe(self) -> dict[str, Any]:
        src = source()
        return {
            **super().describe(),
            "source": {"repository": src["repository"], "commit": src["commit"],
                       "files": {"request": "Benchmark/Basic/basic_bench.py:23-50",
                                 "rubrics": f"{src['file']} (sha256 {src['file_sha256']})",
                                 "parse": "Benchmark/Basic/step1_get_avgscore.py:4-21",
                                 "aggregation": "Benchmark/Basic/step2_typescore.py:5-18"}},
            "script_model": "gpt-4o",
            "request": "one user message: rubric of the edit type with <edit_prompt> replaced, original image, "
                       "edited image",
            "decoding": {"temperature": "not sent", "max_tokens": "not sent"},
            "images": "file bytes as they are (no resize, no re-encoding), both declared image/png (the original "
                      "is a JPEG: basic_bench.py:46)",
            "parse": "each line stripped and split on ': '; two parts with an isdigit() right part add int(right); "
                     "score = round(mean, 2); values outside 1-5 kept (flag out_of_range)",
            "failure": "no counted line: the image is dropped (step1:18-20), recorded as a parse failure (flag "
                       "no_score); failed calls and missing images: the official result.json holds an error dict "
                       "step1 crashes on; rrbench excludes such images and counts them by kind",
            "rubrics": {k: v["sha256"] for k, v in src["rubrics"].items()},
        }

    def query(self, sample: Sample, image: Media) -> ChatQuery:
        """The official request for one edited image (``sample.meta["edit_type"]`` has a rubric)."""
        original = dataclasses.replace(sample.source[0], format=DECLARED_FORMAT)
        edited = dataclasses.replace(image, format=DECLARED_FORMAT)
        text = request_text(str(sample.meta["edit_type"]), sample.prompt)
        message = user_message(text_part(text), image_part(original), image_part(edited))
        return ChatQuery((message,), temperature=None, max_tokens=None, generation="edit", sample_id=sample.id)

    async def judge(self, sample: Sample, image: Media, ask: Ask, seed: int) -> Judged:
        edit_type = sample.meta.get("edit_type")
        if edit_type not in rubrics():
            return Judged((), None, FailureKind.DATA, f"edit type {edit_type!r} has no rubric in prompts.json")
        if not sample.source:
            return Judged((), None, FailureKind.DATA, "the sample has no original image")
        judgement = await ask(self.query(sample, image))
        if judgement.failure is not None:
            return Judged((judgement,), None, judgement.failure, judgement.failure_detail or "")
        return read_judgement(judgement)

    def answers(self, results: Sequence[SampleResult], samples: Mapping[str, Sample]) -> Mapping[str, bytes]:
        """``result.json`` as basic_bench.py writes it (key -> the answer's content, ``json.dump(indent=4)``, line
        89). Keys are in the order rrbench's metrics read the results (sorted ids; the official order is whatever
        order the threads finished in), so step2 sums the scores in the same order and gives the same bits. Images
        without an answer (failed call, missing image) are left out: the official file would hold
        ``{"error": ...}`` for them, on which step1 crashes; so are answers step1 would crash on (flag
        ``official_crash``), which rrbench excludes too."""
        out: dict[str, str] = {}
        for result in sorted(results, key=lambda r: r.sample_id):
            answer = answer_of(result)
            if answer is not None:
                out[result.sample_id] = answer
        return {RESULT_JSON: json.dumps(out, indent=4).encode("utf-8")}


def read_judgement(judgement: Judgement) -> Judged:
    """The judged image from the judge's raw answer: what step1 read, stored in the judgement, and its score."""
    reading = read_answer(judgement.raw or "")
    score = reading.score
    flags = judgement.flags + ((OUT_OF_RANGE,) if reading.out_of_range else ())
    if reading.crash is not None:
        flags += (OFFICIAL_CRASH,)
    elif score is None:
        flags += (NO_SCORE,)
    recorded = dataclasses.replace(judgement, aspects=(_aspects(reading),), scores=() if score is None else (score,),
                                   flags=flags)
    if reading.crash is not None:
        return Judged((recorded,), None, FailureKind.PARSE, reading.crash)
    if score is None:
        return Judged((recorded,), None, FailureKind.PARSE, "no 'name: digits' line: step1 drops the image")
    return Judged((recorded,), score)


def answer_of(result: SampleResult) -> str | None:
    """The judge's answer to a sample's (only) image, or None when there is none (the call failed, no image) or
    step1 would crash on it."""
    for trial in result.trials:
        for judgement in trial.judgements:
            if judgement.failure is None and judgement.raw is not None and OFFICIAL_CRASH not in judgement.flags:
                return judgement.raw
    return None
