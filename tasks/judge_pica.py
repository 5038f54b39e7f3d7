"""PICA-Bench's own judge (PICAEval, ``PicaEval_gpt.py``): one yes/no question per annotated region of the edited image.

Official code: github.com/Andrew0613/PICABench at commit ``0514acd`` (``COMMIT``); file:line references below are to
that commit. For every QA pair of a case (``annotated_qa_pairs``: question, answer Yes/No, box on a 1024-px canvas)
the GPT evaluator, in its default mode ``crop_box_and_resize`` (``PicaEval_gpt.py:532``):

* image: opens the edited image as RGB, resizes it so the long edge is 1024 (``int()`` of each side times 1024/long,
  Lanczos; unchanged when already 1024, :95-103), crops the box with 20 px on every side clamped to the image
  (:106-115; Pillow rounds the float corners half to even), resizes the crop to a 1024 long edge again (:150-151),
  saves it as a JPEG of quality 90 (:154), reads that file back as RGB, applies the resize once more (a no-op unless
  the first one truncated to 1023 px) and sends it as a JPEG of quality 90 declared ``image/jpeg`` (:213-232, 328).
  Any error in the crop (a box outside the image, a missing box) falls back to the whole resized image (:156-158,
  316): ``sent_image``;
* request: one user message, the question followed by the JSON instruction (:235-242), then the image (:250-256);
  no temperature, no token limit (:259-262). The official code calls the Responses API; rrbench's judges send the
  same content through Chat Completions (docs/tasks/pica-bench.md);
* parse (``parse``): the stripped answer (:264); JSON first (the text from the first ``{`` to the last ``}``, then
  every regex match of an object with "answer" and "explanation", :170-190), where an answer that is not a string,
  or a value that is not an object, ends the JSON stage (the outer ``except``, :188); then a leading "yes"/"no",
  then a word "yes", then a word "no", else the first 10 characters (or "Unknown" for nothing, :193-203); the JSON
  answer is normalised (yes/y/true -> Yes, no/n/false -> No, after lower-casing and dropping trailing dots, :161-167);
* correctness: ground truth and answer compared lower-cased, stripped, trailing dots dropped (:338-340);
* failure rule: a call that fails 5 times (exponential back-off) returns "Error: all attempts failed" (:245-271),
  which reads as "Error: all" and counts **wrong**; the case stays in the average. Here a transport failure after
  rrbench's own retries is the same wrong answer, and the image's trial is marked failed so that a resumed run asks
  that question again (the answers that came back are served from the cache).

``answers`` writes what ``PicaEval_gpt.py`` writes (:566-574): ``meta_info_gpt_output_1024_crop_box_and_resize.json``
(the meta_info items with each QA's model_answer, model_response, model_explanation, is_correct, visualization_path,
viz_mode) and its summary ``..._analysis_...json`` (:576-581, computed by ``tasks.metric_pica.official_summary``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from rrbench.backends._base import image_part, text_part, user_message
from rrbench.protocols.official import Ask, BenchmarkJudge, Judged
from rrbench.types import (
    ChatQuery,
    DataError,
    FailureKind,
    Judgement,
    Media,
    Sample,
    SampleResult,
    UserError,
    open_image,
)

REPOSITORY = "https://github.com/Andrew0613/PICABench"
COMMIT = "0514acddffccce9612cafc528a3334881af9a72c"
VIZ_MODE = "crop_box_and_resize"  # the default --viz_mode (PicaEval_gpt.py:532)
QA_TYPE = "annotated_qa"  # the qa_type of a list of QA pairs (PicaEval_gpt.py:310)
OUTPUT_FILE = f"meta_info_gpt_output_1024_{VIZ_MODE}.json"  # PicaEval_gpt.py:566-572, for meta_info.json
ANALYSIS_FILE = f"meta_info_gpt_analysis_1024_{VIZ_MODE}.json"  # PicaEval_gpt.py:578-579


def _constants() -> dict[str, Any]:
    text = resources.files("rrbench.prompts").joinpath("data/pica/picaeval.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_DATA = _constants()
JSON_INSTRUCTION: str = _DATA["json_instruction"]
FAILED_RESPONSE: str = _DATA["failed_call_response"]
PADDING: int = _DATA["padding"]
LONG_EDGE: int = _DATA["long_edge"]
QUALITY: int = _DATA["jpeg_quality"]
# An object holding "answer" then "explanation" (PicaEval_gpt.py:29), tried after the outermost braces.
JSON_PATTERN = re.compile(r"\{[^{}]*\"answer\"[^{}]*\"explanation\"[^{}]*\}", re.IGNORECASE | re.DOTALL)


# --------------------------------------------------------------------------------------------------- parse


@dataclass(frozen=True)
class Parsed:
    """What the official rule reads from one answer: the answer string (Yes, No or anything else), the explanation,
    and which step read it (``json``, ``prefix``, ``word`` or ``none``)."""

    answer: str
    explanation: str
    rule: str


def normalise(answer: str) -> str:
    """PicaEval_gpt.py:161-167: yes/y/true -> Yes, no/n/false -> No (lower-cased, stripped, trailing dots off)."""
    key = answer.lower().strip().rstrip(".")
    if key in ("yes", "y", "true"):
        return "Yes"
    if key in ("no", "n", "false"):
        return "No"
    return answer.strip()


def read_json(response: str) -> tuple[str, str] | None:
    """PicaEval_gpt.py:170-190: (answer, explanation) from the first JSON candidate with a non-empty answer."""
    text = response.strip()
    candidates: list[str] = []
    start, end = text.find("{"), text.rfind("}") + 1
    if start != -1 and end > start:
        candidates.append(text[start:end])
    candidates.extend(JSON_PATTERN.findall(text))
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        except Exception:  # RecursionError, an over-long integer: the official outer except ends the JSON stage
            return None
        # data.get(...).strip() raises on a non-object or a non-string value: again the outer except (:188)
        if not isinstance(data, dict):
            return None
        answer, explanation = data.get("answer", ""), data.get("explanation", "")
        if not isinstance(answer, str) or not isinstance(explanation, str):
            return None
        if answer.strip():
            return normalise(answer.strip()), explanation.strip()
    return None


def read_words(response: str) -> tuple[str, str]:
    """PicaEval_gpt.py:193-203: a leading yes/no, else the word yes, else the word no, else the first 10 chars."""
    lower = response.lower().strip()
    if lower.startswith("yes"):
        return "Yes", "prefix"
    if lower.startswith("no"):
        return "No", "prefix"
    if re.search(r"\byes\b", lower):
        return "Yes", "word"
    if re.search(r"\bno\b", lower):
        return "No", "word"
    return (response[:10] if response else "Unknown"), "none"


def parse(response: str) -> Parsed:
    """The official reading of one (already stripped) answer (PicaEval_gpt.py:206-210)."""
    found = read_json(response)
    if found is not None:
        return Parsed(found[0], found[1], "json")
    answer, rule = read_words(response)
    return Parsed(answer, "", rule)


def is_correct(truth: str, answer: str) -> bool:
    """PicaEval_gpt.py:338-340."""
    return truth.lower().strip().rstrip(".") == answer.lower().strip().rstrip(".")


# --------------------------------------------------------------------------------------------------- image


def resize_long_edge(image: Any) -> Any:
    """PicaEval_gpt.py:95-103: the long edge to 1024 (sides truncated by int()), Lanczos; as is when already 1024."""
    from PIL import Image

    width, height = image.size
    long_edge = max(width, height)
    if long_edge == LONG_EDGE:
        return image
    scale = float(LONG_EDGE) / long_edge
    return image.resize((int(width * scale), int(height * scale)), Image.Resampling.LANCZOS)


def crop_box(image: Any, box: Any) -> Any:
    """PicaEval_gpt.py:106-115: the box plus the padding on each side, clamped to the image. Raises as the official
    code does (a missing box, a box past the image's edge): the caller falls back to the whole image."""
    x, y = box.get("x", 0), box.get("y", 0)
    width, height = box.get("width", 0), box.get("height", 0)
    left, top = max(0, x - PADDING), max(0, y - PADDING)
    right, bottom = min(image.size[0], x + width + PADDING), min(image.size[1], y + height + PADDING)
    return image.crop((left, top, right, bottom))


def jpeg(image: Any) -> bytes:
    """PicaEval_gpt.py:154 and 213-218: RGB, JPEG quality 90, Pillow's other defaults."""
    buffer = io.BytesIO()
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def rgb(data: bytes, what: str) -> Any:
    """Image.open(...).convert("RGB") as the official code decodes (alpha dropped, not composited), within
    rrbench's pixel limit."""
    with open_image(data, what) as img:
        try:
            return img.convert("RGB")
        except Exception as exc:
            raise DataError(f"corrupt image {what}: {type(exc).__name__}: {exc}") from None


def sent_image(full: Any, box: Any) -> tuple[bytes, bool]:
    """The JPEG bytes sent for one question, given the edited image already resized (``resize_long_edge``), and
    whether they are the crop (True) or the whole-image fallback (PicaEval_gpt.py:139-158, 221-232, 316)."""
    try:
        crop = resize_long_edge(crop_box(full, box))
        saved = jpeg(crop)  # the visualization file
        reread = resize_long_edge(rgb(saved, "visualization"))
        return jpeg(reread), True
    except Exception:  # the official except (:156) covers every step of the crop
        return jpeg(full), False


# --------------------------------------------------------------------------------------------------- data


def askable(qas: Any) -> list[tuple[int, Mapping[str, Any]]]:
    """(position, QA) of the pairs the official code asks: those with a question and an answer (:310-314)."""
    if not isinstance(qas, list):
        return []
    return [(i, qa) for i, qa in enumerate(qas) if isinstance(qa, Mapping) and qa.get("question") and qa.get("answer")]


def meta_item(sample: Sample) -> dict[str, Any]:
    """The sample's ``meta_info.json`` entry as prepare_meta_info.py:62-91 builds it, for an image at
    ``{index:05d}.jpg`` next to the file (:150-155: the output folder is the save folder, so the bare name)."""
    meta = sample.meta
    index = int(meta["index"])
    return {
        "index": index,
        "input_path": f"input_img/{index:05d}.jpg",
        "output_path": f"{index:05d}.jpg",
        "edit_instruction": meta.get("edit_instruction", ""),
        "physics_category": meta.get("physics_category", "unknown"),
        "physics_law": meta.get("physics_law", "unknown"),
        "edit_operation": meta.get("edit_operation", "unknown"),
        "difficulty": meta.get("difficulty", "unknown"),
        "annotated_qa_pairs": meta.get("annotated_qa_pairs", []),
        "edit_area": meta.get("edit_area", "unknown"),
    }


def dump(items: Any) -> bytes:
    """json.dump(..., ensure_ascii=False, indent=2) to a UTF-8 file, as every official script writes."""
    return json.dumps(items, ensure_ascii=False, indent=2).encode("utf-8")


# --------------------------------------------------------------------------------------------------- judge


class PicaJudge(BenchmarkJudge):
    """PICAEval with GPT (``PicaEval_gpt.py``), default mode ``crop_box_and_resize``."""

    id = "picaeval-gpt"
    version = "1"
    official = ("gpt-5",)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "source": {"repository": REPOSITORY, "commit": COMMIT, "file": "PicaEval_gpt.py",
                       "prompt": "PicaEval_gpt.py:235-242", "data": "rrbench/prompts/data/pica/picaeval.json"},
            "request": "one per QA pair: user message [question + JSON instruction, image]; no system message",
            "decoding": {"temperature": None, "max_tokens": None, "api": "chat completions (official: Responses)"},
            "image": (f"edited image RGB, long edge {LONG_EDGE} (Lanczos, int sides); crop box +{PADDING} px clamped; "
                      f"long edge {LONG_EDGE}; JPEG q{QUALITY}, re-read, resized, JPEG q{QUALITY} as image/jpeg; "
                      "whole resized image if the crop fails"),
            "parse": "JSON answer (outermost braces, then regex), else leading yes/no, else \\byes\\b, else \\bno\\b",
            "failure": f"a failed call reads as {FAILED_RESPONSE!r}: counted wrong, the case stays in the average",
            "aggregation": "mean over cases of correct/asked x 100 (metric pica-accuracy)",
        }

    async def judge(self, sample: Sample, image: Media, ask: Ask, seed: int) -> Judged:
        pairs = askable(sample.meta.get("annotated_qa_pairs"))
        if not pairs:
            return Judged((), None, FailureKind.DATA, "no QA pair with a question and an answer (PicaEval_gpt.py:313)")
        try:
            full = resize_long_edge(rgb(image.read_bytes(), image.describe()))
        except DataError as exc:
            return Judged((), None, FailureKind.DATA, str(exc))
        calls = await asyncio.gather(*(self._ask(sample, i, qa, full, ask) for i, qa in pairs))
        failed = next((j.failure for j in calls if j.failure is not None), None)
        right = sum(1 for j in calls if j.aspects and j.aspects[0].get("correct") == 1.0)
        # A failed call is already counted wrong in ``right``; the trial is marked failed so a resume asks again.
        return Judged(tuple(calls), right / len(calls), failed,
                      "" if failed is None else "a call failed: counted wrong (PicaEval_gpt.py:271)")

    async def _ask(self, sample: Sample, index: int, qa: Mapping[str, Any], full: Any, ask: Ask) -> Judgement:
        data, cropped = sent_image(full, qa.get("box", {}))
        media = Media.from_bytes(data, format="jpeg")
        query = ChatQuery((user_message(text_part(str(qa["question"]) + JSON_INSTRUCTION), image_part(media)),),
                          temperature=None, max_tokens=None, generation="edit", sample_id=sample.id,
                          name=f"qa-{index}")
        judgement = await ask(query)
        response = FAILED_RESPONSE if judgement.failure is not None else (judgement.raw or "").strip()
        parsed = parse(response)
        correct = is_correct(str(qa["answer"]), parsed.answer)
        flags = (*judgement.flags, f"read:{parsed.rule}", "crop" if cropped else "whole-image")
        if judgement.failure is not None:
            flags += ("call-failed",)
        return dataclasses.replace(judgement, aspects=({"qa": float(index), "correct": 1.0 if correct else 0.0},),
                                   rationale=parsed.explanation or None, flags=flags)

    def answers(self, results: Sequence[SampleResult], samples: Mapping[str, Sample]) -> Mapping[str, bytes]:
        from rrbench.tasks.metric_pica import official_summary

        items = [item for item in (_answered(r, samples.get(r.sample_id)) for r in results) if item is not None]
        items.sort(key=lambda item: int(item["index"]))
        for position, item in enumerate(items):
            for qa in item["annotated_qa_pairs"]:
                if qa.pop("__crop", False):
                    name = f"{position:04d}_{QA_TYPE}_{qa.pop('__qa'):03d}_{VIZ_MODE}.jpg"  # PicaEval_gpt.py:118-120
                    qa["visualization_path"] = f"visualization_annotated_qa_{VIZ_MODE}/{name}"
                    qa["viz_mode"] = VIZ_MODE
                qa.pop("__qa", None)
        if not items:
            raise UserError("no judged PICA-Bench case in this run: nothing to export")
        return {OUTPUT_FILE: dump(items), ANALYSIS_FILE: dump(official_summary(items))}


def _answered(result: SampleResult, sample: Sample | None) -> dict[str, Any] | None:
    """The sample's output item (its meta_info entry with the model's answers merged in, PicaEval_gpt.py:434-451),
    or None when no question of it was asked (its image missing: prepare_meta_info.py:186-189 leaves it out)."""
    if sample is None or not result.trials:
        return None
    item = json.loads(json.dumps(meta_item(sample)))  # a deep copy the answers are merged into
    calls = {int(j.aspects[0]["qa"] or 0): j for j in result.trials[0].judgements if j.aspects and "qa" in j.aspects[0]}
    if not calls and askable(item["annotated_qa_pairs"]):
        return None
    qas = item["annotated_qa_pairs"]
    for index, judgement in calls.items():
        response = FAILED_RESPONSE if judgement.failure is not None else (judgement.raw or "").strip()
        parsed = parse(response)
        qa = qas[index]
        qa.update(model_answer=parsed.answer, model_response=response, model_explanation=parsed.explanation,
                  is_correct=is_correct(str(qa["answer"]), parsed.answer))
        qa["__crop"], qa["__qa"] = "crop" in judgement.flags, index
    return item
