"""GEdit-Bench's own judge: VIEScore ``tie`` with GPT-4.1, as GEdit-Bench/test_gedit_score.py runs it.

Official code: github.com/stepfun-ai/Step1X-Edit at ``COMMIT``, folder ``GEdit-Bench/`` (cited below by file and
line). Per edited image (test_gedit_score.py:18-59, viescore/__init__.py:52-101):

* images: the source is ``<key>_SRCIMG.png`` (test_gedit_score.py:25,33), which the generation example writes from
  the row's ``input_image`` with ``input_image.save(path)`` (generate_image_example.py:48,53): ``source_png`` makes
  those bytes. The edited image is opened, ``.convert("RGB").resize(source.size)`` (PIL's default resampling,
  test_gedit_score.py:34). Each image is then ``load_image``-ed (``ImageOps.exif_transpose``, ``convert("RGB")``,
  mllm_tools/openai.py:71-72) and saved as JPEG with PIL's defaults, declared ``image/jpeg`` (openai.py:27-38,
  115-119): ``judge_images``.
* two requests, each one user message whose content is the text first, then the images (openai.py:103-126):
  SC = SC prompt with ``<instruction>`` replaced by the instruction, source, edited (viescore/__init__.py:46,61,64);
  PQ = PQ prompt, edited only (__init__.py:47,65-66). Model ``gpt-4.1`` (``--backbone gpt4o``,
  __init__.py:18-20), ``max_tokens`` 1400, no temperature (openai.py:129-138).
* parse (viescore/utils.py:154-235, ``parse_answer``): text between two ``||V^=^V||``; else from the first ``{`` to
  the last ``}``; else, on a re-ask only, a random integer 0-10 (one number: ``score = [guess]``); else a bare
  ``[a, b]`` list; else a bare integer 0-10 (Python's ``int()`` of the whole answer); else unreadable. A JSON body
  that does not load goes through ``fix_json`` (utils.py:8-29) and is returned as that loads, unchecked.
* failure rule: while either answer is unreadable, **both** requests are asked again (__init__.py:76-82), and from
  the second round on the random guess applies (``tries > max_tries = 1``, __init__.py:75,78). The guess is drawn
  here from ``random.Random`` seeded by the image's seed, the round and the call, recorded in the call's aspects
  (``guess``) and flagged ``gedit-guessed``. Then SC = min(SC scores), PQ = min(PQ scores), O = sqrt(SC * PQ)
  (__init__.py:91-95); any exception there (no ``score`` key, an empty list, strings, a negative product) retries
  the whole image with a fresh ``evaluate`` (test_gedit_score.py:31-59), whose first round again does not guess.

Where rrbench must differ, and says so in ``describe()``:

* the official loops are unbounded (``while``) or 10,000 tries with sleeps; here ``MAX_ROUNDS`` rounds of two
  requests in all, after which the image has no score (a ``parse`` failure), as an image whose retries ran out is
  left out of the CSV (test_gedit_score.py:57-59, 140-142);
* a transport failure (HTTP error, timeout) ends the image with that failure kind, to be asked again on resume.
  Officially an API error whose body is JSON reads as an empty answer (openai.py:147-167), which is unreadable,
  so it is re-asked and then guessed; a connection error retries the image;
* a score that is not a finite real number after ``min`` (``true``, ``NaN``) is a ``parse`` failure; officially it
  would be written to the CSV as it is.

Each call's judgement keeps the raw answer; ``aspects`` holds what the rule read (``score_1``..., ``min``,
``guess``) and ``flags`` say which call it was (``gedit-sc``, ``gedit-pq``), whether it was guessed and whether its
round gave the image's scores (``gedit-final``). ``answers()`` writes the CSV files calculate_statistics.py reads.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from rrbench.backends._base import image_part, text_part, user_message
from rrbench.protocols.official import Ask, BenchmarkJudge, Judged
from rrbench.types import ChatQuery, DataError, FailureKind, Judgement, Media, Sample, SampleResult

REPOSITORY = "https://github.com/stepfun-ai/Step1X-Edit"
COMMIT = "570eba6ebda0c45c013983a483afbf2fd12bfcbc"
DELIMITER = "||V^=^V||"  # viescore/utils.py:165
MAX_TOKENS = 1400  # mllm_tools/openai.py:137
MAX_ROUNDS = 5  # rrbench's cap on rounds of (SC, PQ) requests per image; official: unbounded (see the docstring)
GROUPS = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
          "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")  # test_gedit_score.py:14
# The official scorer's file names (test_gedit_score.py:79,101,145,162; calculate_statistics.py:31,137), for a
# model folder named MODEL_NAME and the gpt4o backbone.
MODEL_NAME = "rrbench"
BACKBONE = "gpt4o"
CSV_FIELDS = ("source_image", "edited_image", "instruction", "sementics_score", "quality_score", "intersection_exist",
              "instruction_language")  # test_gedit_score.py:147 (the misspelling is the official column name)
FLAG_SC, FLAG_PQ, FLAG_FINAL, FLAG_GUESSED = "gedit-sc", "gedit-pq", "gedit-final", "gedit-guessed"


def _prompts() -> dict[str, str]:
    text = resources.files("rrbench.prompts").joinpath("data/gedit/viescore_tie.json").read_text("utf-8")
    return dict(json.loads(text))


_P = _prompts()
# viescore/__init__.py:41,46-47: the tie task's prompts, joined with newlines.
SC_PROMPT = "\n".join([_P["_context_no_delimit"], _P["_prompts_0shot_two_image_edit_rule"],
                       _P["_prompts_0shot_tie_rule_SC"]])
PQ_PROMPT = "\n".join([_P["_context_no_delimit"], _P["_prompts_0shot_rule_PQ"]])


# --------------------------------------------------------------------------------------------------- parse rule


def fix_json(text: str) -> str:
    """viescore/utils.py:8-29: quote bare keys, wrap numeric values in a list, quote other values."""
    fixed = re.sub(r"(\w+):", r'"\1":', text)

    def value(match: re.Match[str]) -> str:
        key, val, comma = match.groups()
        val = val.strip()
        if re.match(r"^-?\d+(\.\d+)?$", val):
            val = f"[{val}]"
        elif not re.match(r"^(true|false|null)$", val, re.IGNORECASE):
            val = f'"{val}"'
        return f"{key}: {val}{comma}"

    return re.sub(r'(".*?"):(.*?)(,|})', value, fixed)


def _int_0_to_10(text: str) -> bool:
    """utils.py:101-106: Python's int() of the whole answer (spaces and a sign allowed) within 0..10."""
    try:
        return 0 <= int(text) <= 10
    except ValueError:
        return False


@dataclass(frozen=True)
class Parsed:
    """What ``mllm_output_to_dict`` returns (``False`` when unreadable; else whatever the JSON held), and the
    substituted random score if it guessed."""

    value: Any
    guess: int | None = None

    @property
    def readable(self) -> bool:
        return self.value is not False  # the official loop tests ``is False`` (__init__.py:76)


def parse_answer(text: str, give_up: bool, guess: Callable[[], int]) -> Parsed:
    """viescore/utils.py:154-235 on one answer; ``give_up`` is set from the second round on. May raise where the
    official function raises (a bare list json cannot load): the caller retries the image, as the official does."""
    if text == "rate_limit_exceeded":  # utils.py:161-162; evaluate then raises (__init__.py:84-86)
        return Parsed(text)
    if text.count(DELIMITER) == 2:
        start, end = text.find(DELIMITER) + len(DELIMITER), text.rfind(DELIMITER)
    else:
        start, end = text.find("{"), text.rfind("}") + 1
        if start == -1 or end == 0:
            return _no_json(text, give_up, guess)
    if start == -1 or end == -1 or start == end:
        return Parsed(False)
    body = text[start:end].strip().replace("\n", "")
    try:
        data = json.loads(body)
        if not isinstance(data["score"], list):
            data["score"] = [data["score"]]
    except Exception:  # the official bare ``except:`` (utils.py:224)
        try:
            return Parsed(json.loads(fix_json(body)))  # returned unchecked (utils.py:227-228)
        except Exception:
            return Parsed(False)
    return Parsed(data)


def _no_json(text: str, give_up: bool, guess: Callable[[], int]) -> Parsed:
    """utils.py:181-212: no braces. The guess comes first, so a re-asked bare list or number is guessed over."""
    if give_up:
        value = guess()
        return Parsed({"score": [value], "reasoning": f"guess_if_cannot_parse | {text}"}, value)
    listed = text[text.find("["):text.rfind("]") + 1]
    if re.match(r"^\[\d+, ?\d+\]$", listed):
        scores = json.loads(listed)
        return Parsed({"score": scores if isinstance(scores, list) else [scores]})
    if _int_0_to_10(text):
        return Parsed({"score": [int(text)]})
    return Parsed(False)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aspects_of(parsed: Parsed) -> dict[str, float | None]:
    """What the rule read from one answer, for the run log: each numeric score, their min, the guess."""
    out: dict[str, float | None] = {}
    scores = parsed.value.get("score") if isinstance(parsed.value, dict) else None
    if isinstance(scores, list):
        out.update({f"score_{i + 1}": float(s) for i, s in enumerate(scores) if _number(s)})
        if scores and all(_number(s) for s in scores):
            out["min"] = float(min(scores))
    if parsed.guess is not None:
        out["guess"] = float(parsed.guess)
    return out


def image_scores(sc: Parsed, pq: Parsed) -> tuple[float, float, float] | None:
    """__init__.py:91-95 on two readable answers: (SC, PQ, O), or None where the official code raises (and retries
    the image). A result that is not a finite real number is None too (rrbench's rule, see the docstring)."""
    try:
        sc_score, pq_score = min(sc.value["score"]), min(pq.value["score"])
        overall = math.sqrt(sc_score * pq_score)
    except Exception:  # test_gedit_score.py:51: any exception retries the image
        return None
    if not (_number(sc_score) and _number(pq_score) and _number(overall)):
        return None
    return float(sc_score), float(pq_score), float(overall)


# --------------------------------------------------------------------------------------------------- images


def source_png(media: Media) -> bytes:
    """``<key>_SRCIMG.png``: the row's ``input_image`` decoded and saved as PNG (generate_image_example.py:53)."""
    from PIL import Image

    with Image.open(io.BytesIO(media.read_bytes())) as image:
        out = io.BytesIO()
        image.save(out, format="PNG")
    return out.getvalue()


def _jpeg(image: Any) -> bytes:
    """openai.py:71-72 then 27-38: exif_transpose, RGB, JPEG with PIL's default quality."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def judge_images(source: bytes, edited: bytes) -> tuple[bytes, bytes]:
    """The two JPEGs the judge sees: source, and the edited image resized to the source's size
    (test_gedit_score.py:33-34)."""
    from PIL import Image

    with Image.open(io.BytesIO(source)) as raw, Image.open(io.BytesIO(edited)) as made:
        resized = made.convert("RGB").resize((raw.size[0], raw.size[1]))
        return _jpeg(raw), _jpeg(resized)


# --------------------------------------------------------------------------------------------------- judge


def guess_for(seed: int, round_: int, name: str) -> int:
    """The official ``random.randint(0, 10)`` (utils.py:187), drawn reproducibly from the image's seed."""
    return random.Random(f"gedit-guess/{seed}/{round_}/{name}").randint(0, 10)


def _parse(judgement: Judgement, give_up: bool, seed: int, round_: int, name: str) -> Parsed:
    return parse_answer(judgement.raw or "", give_up, functools.partial(guess_for, seed, round_, name))


def _query(sample: Sample, name: str, text: str, images: Sequence[Media], attempt: int) -> ChatQuery:
    message = user_message(text_part(text), *(image_part(m) for m in images))
    return ChatQuery((message,), temperature=None, max_tokens=MAX_TOKENS, generation="edit", sample_id=sample.id,
                     attempt=attempt, name=name)


def _noted(judgement: Judgement, parsed: Parsed, flag: str) -> Judgement:
    flags = judgement.flags + (flag,) + ((FLAG_GUESSED,) if parsed.guess is not None else ())
    return dataclasses.replace(judgement, aspects=(aspects_of(parsed),), flags=flags)


def _final(judgement: Judgement) -> Judgement:
    return dataclasses.replace(judgement, flags=(*judgement.flags, FLAG_FINAL))


class GEditJudge(BenchmarkJudge):
    """VIEScore (tie) as GEdit-Bench runs it with GPT-4.1: SC and PQ per edited image, O = sqrt(SC * PQ)."""

    id = "gedit-bench-viescore"
    version = "1"
    official = ("gpt-4.1",)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "source": {"repository": REPOSITORY, "commit": COMMIT, "files": [
                "GEdit-Bench/test_gedit_score.py", "GEdit-Bench/viescore/__init__.py",
                "GEdit-Bench/viescore/utils.py", "GEdit-Bench/viescore/vie_prompts.py",
                "GEdit-Bench/viescore/mllm_tools/openai.py"]},
            "prompts": "rrbench/prompts/data/gedit/viescore_tie.json (vie_prompts.py:3-10,245-251,326-333,359-376)",
            "requests": "SC: [text, source, edited]; PQ: [text, edited]; one user message each (openai.py:103-126)",
            "decoding": {"max_tokens": MAX_TOKENS, "temperature": "not sent"},
            "images": "source = input_image saved as PNG; edited .convert('RGB').resize(source size, PIL default); "
                      "each exif_transpose + RGB + JPEG (PIL default quality), declared image/jpeg",
            "parse": "||V^=^V|| pair, else outermost {...} (+fix_json), else (re-ask only) random 0-10, else bare "
                     "[a, b], else bare int 0-10 (viescore/utils.py:154-235)",
            "failure": f"re-ask both while either is unreadable, guessing from round 2 (seeded per image and call); "
                       f"an exception in min/sqrt retries the image; at most {MAX_ROUNDS} rounds, then dropped "
                       f"(parse); transport failures end the image with their kind",
            "score": "SC = min(SC scores), PQ = min(PQ scores), O = sqrt(SC * PQ) (viescore/__init__.py:91-95)",
        }

    async def judge(self, sample: Sample, image: Media, ask: Ask, seed: int) -> Judged:
        try:
            source_jpeg, edited_jpeg = judge_images(source_png(_reference(sample)), image.read_bytes())
        except (DataError, OSError, ValueError, SyntaxError) as exc:  # PIL raises these for unreadable images
            return Judged((), None, FailureKind.DATA, f"cannot prepare the judge's images: {exc}")
        src, edited = Media.from_bytes(source_jpeg, "jpeg"), Media.from_bytes(edited_jpeg, "jpeg")
        sc_text = SC_PROMPT.replace("<instruction>", sample.prompt)
        calls: list[Judgement] = []
        give_up = False
        for round_ in range(MAX_ROUNDS):
            answers = []
            for name, text, images in (("sc", sc_text, (src, edited)), ("pq", PQ_PROMPT, (edited,))):
                judgement = await ask(_query(sample, name, text, images, round_))
                if judgement.failure is not None:
                    return Judged((*calls, judgement), None, judgement.failure, judgement.failure_detail or "")
                answers.append(judgement)
            try:
                sc, pq = (_parse(j, give_up, seed, round_, n) for j, n in zip(answers, ("sc", "pq"), strict=True))
            except Exception:  # raised inside the official parse: the image is retried (test_gedit_score.py:51)
                calls += answers
                give_up = False
                continue
            calls += [_noted(answers[0], sc, FLAG_SC), _noted(answers[1], pq, FLAG_PQ)]
            if not (sc.readable and pq.readable):
                give_up = True  # __init__.py:78: the next round of this evaluate may guess
                continue
            scores = image_scores(sc, pq)
            if scores is None:
                give_up = False  # a fresh evaluate(): its first round does not guess
                continue
            calls[-2:] = [_final(c) for c in calls[-2:]]
            return Judged(tuple(calls), scores[2])
        return Judged(tuple(calls), None, FailureKind.PARSE, f"no readable SC and PQ after {MAX_ROUNDS} rounds")

    def answers(self, results: Sequence[SampleResult], samples: Mapping[str, Sample]) -> Mapping[str, bytes]:
        """The per-group CSVs and the combined CSV of test_gedit_score.py:144-168, rows in sample order, under
        ``rrbench/gpt4o/eval_results_new/``: run ``calculate_statistics.py --save_path DIR --model_name rrbench``."""
        rows: dict[str, list[dict[str, Any]]] = {group: [] for group in GROUPS}
        for result in results:
            sample = samples.get(result.sample_id)
            for trial in result.trials:
                scores = final_scores(trial.judgements)
                if sample is None or scores is None or trial.prediction is None:
                    continue  # no score: officially not written (test_gedit_score.py:140-142)
                rows.setdefault(str(sample.meta.get("task_type")), []).append(_row(sample, scores))
        folder = f"{MODEL_NAME}/{BACKBONE}/eval_results_new"
        out = {f"{folder}/{MODEL_NAME}_{group}_gpt_score.csv": _csv(group_rows) for group, group_rows in rows.items()}
        out[f"{folder}/{MODEL_NAME}_combined_gpt_score.csv"] = _csv([r for g in rows.values() for r in g])
        return out


def _reference(sample: Sample) -> Media:
    """The image the judge compares against: the row's ``input_image`` (the sample's reference)."""
    if not sample.reference:
        raise DataError(f"{sample.id}: no input_image to judge against")
    return sample.reference[0]


def final_scores(judgements: Sequence[Judgement]) -> tuple[float, float] | None:
    """(SC, PQ) of the round that gave the image its score, from the run log."""
    sc = next((j for j in judgements if FLAG_SC in j.flags and FLAG_FINAL in j.flags), None)
    pq = next((j for j in judgements if FLAG_PQ in j.flags and FLAG_FINAL in j.flags), None)
    if sc is None or pq is None or not sc.aspects or not pq.aspects:
        return None
    sc_min, pq_min = sc.aspects[0].get("min"), pq.aspects[0].get("min")
    return None if sc_min is None or pq_min is None else (sc_min, pq_min)


def guessed(judgements: Sequence[Judgement]) -> bool:
    """Whether the image's scores include a substituted random one."""
    return any(FLAG_GUESSED in j.flags and FLAG_FINAL in j.flags for j in judgements)


def _cell(value: float) -> str:
    # An integer score is written as Python writes an int (the usual case: "8"), not "8.0".
    return str(int(value)) if value.is_integer() else repr(value)


def _row(sample: Sample, scores: tuple[float, float]) -> dict[str, Any]:
    meta = sample.meta
    stem = f"fullset/{meta.get('task_type')}/{meta.get('language')}/{meta.get('key')}"
    return {"source_image": f"{stem}_SRCIMG.png", "edited_image": f"{stem}.png", "instruction": sample.prompt,
            "sementics_score": _cell(scores[0]), "quality_score": _cell(scores[1]),
            "intersection_exist": str(bool(meta.get("intersection_exist"))),
            "instruction_language": meta.get("language")}


def _csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(CSV_FIELDS))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
