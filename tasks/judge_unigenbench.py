"""UniGenBench++'s own judge protocol (github CodeGoat24/UniGenBench, eval/src/eval_common.py at ``COMMIT``).

One request per image (``unigenbench``, the Gemini script ``gemini_{en,zh}_eval.py``): a single user message whose
text is the official template filled with the prompt, the testpoint list (Python's ``str(list)``), the fixed
definition of each testpoint and the prompt's own testpoint descriptions (``build_system_prompt``, lines 201-225),
then the image: the file's bytes as they are, declared with the MIME type its name suggests (``guess_type``,
lines 191-198); ``max_tokens=4096`` and no temperature (lines 299-309). ``unigenbench-offline`` is the EvalModel
script (``offline_model_{en,zh}_eval.py`` -> ``vllm_request.py``): the image first, re-encoded as JPEG quality 95
from ``convert("RGB")`` and declared ``image/jpeg``, then the same text; ``max_tokens=4096`` and ``do_sample: False``
(vllm_request.py:53-58, 78-98, 111-116), which the OpenAI-compatible vLLM server does not know: no temperature is
sent, so the server's default decoding applies (docs/tasks/unigenbench.md).

Parse (``parse_evaluation_response``, lines 228-258): the first ``<analysis>...</analysis>`` and ``<score>...
</score>`` (regex, DOTALL), each stripped and read with ``ast.literal_eval``; both must have as many elements as the
image has testpoints. Failure rule (lines 296-330): any unreadable answer, and any exception of the call (the whole
``client.chat.completions.create`` is inside ``try``), uses one of ``max_retries + 1 = 11`` asks (``--max_retries``
default 10, line 626); after the last the image gets no ``result_json`` and the scorer skips it (it leaves the
denominator). Re-asks here are ``ChatQuery(attempt=k)``, so the response cache never answers a re-ask with the
first answer. Quirks reproduced:

* the scorer reads the score list back from ``json.dumps(result_json)`` with ``ast.literal_eval`` (lines 593, 403):
  an answer whose literals hold ``True``/``False``/``None``/NaN is parsed (not re-asked) but then skipped by the
  scorer, as is a score that is not a list (a string of the right length passes the parse; line 407 then fails);
* a testpoint counts as passed only when its score ``== 1`` (line 418): ``1``, ``1.0`` pass, ``"1"`` or ``2`` fail;
* an answer that makes the official pipeline raise (``len()`` of a number, line 251; a literal that
  ``literal_eval`` rejects with TypeError; a set or bytes that ``json.dumps`` cannot write, line 593) stops the
  official run; a resumed run asks for that image again, so here it is an unreadable answer that is asked again.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import io
import json
import mimetypes
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
    Protocol,
    Sample,
    SampleResult,
    Trial,
    UserError,
    open_image,
)

REPOSITORY = "https://github.com/CodeGoat24/UniGenBench"
COMMIT = "49d0bcebb0b9418d975d3957c2fee10f34811d14"
LANGS = ("en", "zh")
MAX_RETRIES = 10  # eval_common.py:493 and :626 (--max_retries); eval/eval_gemini.sh MAX_RETRIES=10
ASKS = MAX_RETRIES + 1  # for attempt in range(max_retries + 1), eval_common.py:297 and :354
MAX_TOKENS = 4096  # eval_common.py:308; vllm_request.py:115
JPEG_QUALITY = 95  # vllm_request.py:57
DEFAULT_SUFFIX = ".png"  # eval_common.py:491 (image_suffix)
STOP = (FailureKind.AUTH, FailureKind.DATA)  # the same request cannot succeed: no point in asking 11 times
_ANALYSIS = re.compile(r"<analysis>(.*?)</analysis>", re.DOTALL)  # eval_common.py:237
_SCORE = re.compile(r"<score>(.*?)</score>", re.DOTALL)  # eval_common.py:238


# --------------------------------------------------------------------------------------------------- prompt


@functools.cache
def _data(name: str) -> Any:
    """One of the verbatim official constants in rrbench/prompts/data/unigenbench/ (source.json says where)."""
    files = resources.files("rrbench.prompts").joinpath("data", "unigenbench", name)
    return json.loads(files.read_text(encoding="utf-8"))


def language(lang: str) -> Mapping[str, str]:
    """LANG_CONFIGS[lang] (eval_common.py:163-184): CSV columns, JSON keys and the two section headers."""
    if lang not in LANGS:
        raise UserError(f"unigenbench: lang must be one of {', '.join(LANGS)}, got {lang!r}")
    config: Mapping[str, str] = _data("languages.json")[lang]
    return config


def build_prompt(prompt: str, testpoints: Sequence[str], descriptions: Sequence[str], lang: str) -> str:
    """The official request text (build_system_prompt, eval_common.py:201-225); DataError for a testpoint the
    official definitions lack (the official code raises ValueError there, line 210)."""
    config, definitions = language(lang), _data("explanations.json")[lang]
    unknown = [p for p in testpoints if p not in definitions]
    if unknown:
        raise DataError(f"testpoint {unknown[0]!r} has no official definition ({lang})")
    explanation = f"{config['checkpoint_header']}:\u300c"
    explanation += "".join(f"\n{point}: {definitions[point]}" for point in testpoints) + "\n\u300d"
    described = f"{config['checkpoint_desc_header']}:\u300c"
    described += "".join(f"\n{point}: {descriptions[i]}" for i, point in enumerate(testpoints)) + "\n\u300d"
    template: str = _data("templates.json")[lang]
    # {testpoint} is the list itself: str.format writes Python's repr, ['Style', 'World Knowledge']
    return template.format(prompt=prompt, testpoint=list(testpoints), explanation=explanation,
                           test_explanation=described)


# --------------------------------------------------------------------------------------------------- parse


class Unreadable(Exception):
    """An answer the official loop asks again for; ``crash``: the official pipeline would have raised instead."""

    def __init__(self, reason: str, crash: bool = False) -> None:
        super().__init__(reason)
        self.crash = crash


def parse_answer(text: str | None, n_points: int) -> tuple[Any, Any]:
    """(analysis, score) as ``parse_evaluation_response`` reads them (eval_common.py:228-258), else Unreadable."""
    if text is None:
        raise Unreadable("no answer text")
    analysis_match, score_match = _ANALYSIS.search(text), _SCORE.search(text)
    if analysis_match is None or score_match is None:
        raise Unreadable("<analysis> or <score> tags not found")
    try:
        analysis = ast.literal_eval(analysis_match.group(1).strip())
        score = ast.literal_eval(score_match.group(1).strip())
    except (ValueError, SyntaxError) as exc:
        raise Unreadable(f"not a Python literal: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # only ValueError and SyntaxError are caught officially (line 247): the run stops
        raise Unreadable(f"literal_eval raised {type(exc).__name__}: {exc}", crash=True) from None
    try:
        mismatch = n_points != len(analysis) or n_points != len(score)  # line 251, short-circuit and all
    except TypeError as exc:
        raise Unreadable(f"len() raised TypeError: {exc}", crash=True) from None
    if mismatch:
        raise Unreadable(f"length mismatch: {n_points} testpoints")
    return analysis, score


def result_json(prompt: str, testpoints: Sequence[str], analysis: Any, score: Any) -> dict[str, Any]:
    """The official ``result_json`` of a readable answer (eval_common.py:321-326)."""
    return {"prompt": prompt, "testpoint": list(testpoints), "analysis": analysis, "score": score}


def result_text(result: Mapping[str, Any] | None) -> str:
    """The CSV cell the official run writes (eval_common.py:593); Unreadable(crash) where json.dumps raises."""
    try:
        return json.dumps(result, ensure_ascii=False, indent=4)
    except (TypeError, ValueError, RecursionError) as exc:
        raise Unreadable(f"json.dumps raised {type(exc).__name__}: {exc}", crash=True) from None


def scored(cell: str) -> list[Any] | None:
    """The score list ``calculate_scores`` reads back from a ``result_json`` cell (eval_common.py:401-407), or None
    where it skips the row (JSON true/false/null/NaN are no Python literals; a score that is not a list)."""
    try:
        value = ast.literal_eval(cell)["score"]
    except Exception:  # the scorer's own try/except Exception around the row, line 421
        return None
    return value if isinstance(value, list) else None


def credits(scores: Sequence[Any]) -> list[float]:
    """1.0 where the score ``== 1`` (eval_common.py:418), else 0.0."""
    return [1.0 if value == 1 else 0.0 for value in scores]


# --------------------------------------------------------------------------------------------------- judge


@dataclass(frozen=True)
class Case:
    """What one image is judged on: the prompt text, its testpoints and their per-prompt descriptions."""

    prompt: str
    testpoints: tuple[str, ...]
    descriptions: tuple[str, ...]

    @classmethod
    def of(cls, sample: Sample) -> Case:
        if "broken" in sample.meta:
            raise DataError(f"unigenbench sample {sample.id}: {sample.meta['broken']}")
        points, descs = sample.meta.get("testpoint"), sample.meta.get("test_desc")
        if not isinstance(points, list | tuple) or not isinstance(descs, list | tuple) or len(points) != len(descs):
            raise DataError(f"unigenbench sample {sample.id} has no testpoints with descriptions")
        return cls(sample.prompt, tuple(map(str, points)), tuple(map(str, descs)))


def declared(image: Media) -> Media:
    """The image as the Gemini script sends it: its bytes untouched, the MIME type guessed from the file name."""
    mime = mimetypes.guess_type(image.path or f"x{DEFAULT_SUFFIX}")[0] or ""
    subtype = mime.removeprefix("image/") if mime.startswith("image/") else image.format
    return dataclasses.replace(image, format=subtype)


def jpeg95(image: Media) -> Media:
    """The image as vllm_request.py sends it: ``Image.open(...).convert("RGB")``, JPEG quality 95 (lines 53-58)."""
    with open_image(image.read_bytes(), image.describe()) as opened:
        try:
            rgb = opened.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"corrupt image {image.describe()}: {exc}") from exc
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
    return Media.from_bytes(out.getvalue(), format="jpeg")


class UniGenBenchJudge(BenchmarkJudge):
    """UniGenBench++'s judge: the Gemini request (default) or the offline EvalModel request."""

    version = "1"

    def __init__(self, lang: str, offline: bool = False) -> None:
        language(lang)
        self.lang, self.offline = lang, offline
        self.id = "unigenbench-offline" if offline else "unigenbench"
        self.official = (("unigenbench-evalmodel-32b", "unigenbench-evalmodel-72b") if offline
                         else ("gemini-2.5-pro",))

    def for_protocol(self, protocol: Protocol) -> UniGenBenchJudge:
        """The judge of a protocol: ``unigenbench-offline`` sends the EvalModel script's request."""
        return UniGenBenchJudge(self.lang, offline=protocol.options.get("request") == "offline")

    def describe(self) -> dict[str, Any]:
        script = "offline_model_%s_eval.py + vllm_request.py" if self.offline else "gemini_%s_eval.py"
        return {
            **super().describe(),
            "source": {"repository": REPOSITORY, "commit": COMMIT, "script": f"eval/src/{script % self.lang}",
                       "prompt": "eval_common.py:112-156 (template), 30-105 (definitions), 201-225 (filled)"},
            "request": ("one user message: image, then text" if self.offline
                        else "one user message: text, then image"),
            "image": ("convert('RGB') -> JPEG quality 95, declared image/jpeg (vllm_request.py:53-58, 81)"
                      if self.offline else "file bytes unchanged, MIME from the file name (eval_common.py:191-198)"),
            "decoding": {"max_tokens": MAX_TOKENS, "temperature": "not sent" + (
                " (do_sample=False in the payload is no vLLM OpenAI field)" if self.offline else "")},
            "parse": "first <analysis>/<score>, ast.literal_eval, both as long as the testpoints "
                     "(eval_common.py:228-258)",
            "failure_rule": f"{ASKS} asks (parse failures and call errors alike, eval_common.py:296-330); then "
                            "the image is dropped from the denominator",
            "aggregation": "per dimension: testpoints scored == 1 / testpoints, pooled over images; primary "
                           "dimension = text before the first '-' (trailing space kept, eval_common.py:409-411); "
                           "overall = mean of the primary dimensions (leaderboard convention)",
            "lang": self.lang,
        }

    def query(self, case: Case, image: Media, sample_id: str, attempt: int) -> ChatQuery:
        text = text_part(build_prompt(case.prompt, case.testpoints, case.descriptions, self.lang))
        parts = (image_part(image), text) if self.offline else (text, image_part(image))
        return ChatQuery((user_message(*parts),), temperature=None, max_tokens=MAX_TOKENS, generation="t2i",
                         sample_id=sample_id, attempt=attempt, name="testpoints")

    async def judge(self, sample: Sample, image: Media, ask: Ask, seed: int) -> Judged:
        try:
            case = Case.of(sample)
        except DataError as exc:  # a row whose testpoints cannot be read: each image a data failure, never asked
            return Judged((Judgement.failed(FailureKind.DATA, str(exc)),), None, FailureKind.DATA, str(exc))
        sent = jpeg95(image) if self.offline else declared(image)
        calls: list[Judgement] = []
        for attempt in range(ASKS):
            answer = await ask(self.query(case, sent, sample.id, attempt))
            if answer.failure in STOP:
                return Judged((*calls, answer), None, answer.failure, answer.failure_detail or "")
            if answer.failure is not None:  # a call error uses one of the asks (eval_common.py:311-316)
                calls.append(answer)
                continue
            judged = self._read(case, answer, calls)
            if judged is not None:
                return judged
        kind = FailureKind.PARSE if any(c.raw is not None for c in calls) else (calls[-1].failure or FailureKind.ERROR)
        return Judged(tuple(calls), None, kind,
                      f"no readable answer in {ASKS} asks: the official code drops this image (eval_common.py:330)")

    def _read(self, case: Case, answer: Judgement, calls: list[Judgement]) -> Judged | None:
        """The image's outcome from a readable answer (None: unreadable, recorded in ``calls``; ask again)."""
        try:
            analysis, score = parse_answer(answer.raw, len(case.testpoints))
            cell = result_text(result_json(case.prompt, case.testpoints, analysis, score))
        except Unreadable as exc:
            flag = "official-crash" if exc.crash else "unreadable"
            calls.append(dataclasses.replace(answer, failure=FailureKind.PARSE, failure_detail=str(exc),
                                             flags=(*answer.flags, flag)))
            return None
        back = scored(cell)
        if back is None:
            calls.append(dataclasses.replace(answer, flags=(*answer.flags, "scorer-skips")))
            return Judged(tuple(calls), None, FailureKind.PARSE, "read, but calculate_scores skips this row: its "
                          "result_json does not read back as a Python literal with a score list "
                          "(eval_common.py:401-407, 421)")
        passed = credits(back)
        aspects = {f"{i}:{point}": credit for i, (point, credit) in enumerate(zip(case.testpoints, passed,
                                                                                   strict=True))}
        score = sum(passed) / len(passed)
        calls.append(dataclasses.replace(answer, aspects=(aspects,), scores=(score,), flags=(*answer.flags, "read")))
        return Judged(tuple(calls), score)

    def answers(self, results: Sequence[SampleResult], samples: Mapping[str, Sample]) -> Mapping[str, bytes]:
        """``results/rrbench_<variant>.csv``: the official run's result CSV (eval_common.py:588-604), which
        ``eval/src/calculate_score.py --result_csv`` scores as it scores its own."""
        by_variant: dict[str, list[list[str]]] = {}
        made = {r.sample_id: r for r in results}
        for sample in samples.values():  # the official rows follow the prompt file (pool.imap keeps task order)
            result = made.get(sample.id)
            if result is None or "broken" in sample.meta:
                continue
            case = Case.of(sample)
            for trial in sorted(result.trials, key=lambda t: t.order):
                row = self._row(sample, case, trial)
                if row is not None:
                    by_variant.setdefault(str(sample.meta.get("variant", self.lang)), []).append(row)
        return {f"results/rrbench_{variant}.csv": _csv(rows) for variant, rows in by_variant.items()}

    def _row(self, sample: Sample, case: Case, trial: Trial) -> list[str] | None:
        """One image's row; None for an image that was never asked about (missing, unreadable: the official run
        refuses to start without it, eval_common.py:553)."""
        asked = [j for j in trial.judgements if j.failure is not FailureKind.DATA]
        if not asked:
            return None
        output = asked[-1].raw if asked[-1].failure in (None, FailureKind.PARSE) else None
        cell = "null"  # json.dumps(None): a row the scorer skips
        if output is not None and trial.failure in (None, FailureKind.PARSE):
            try:
                analysis, score = parse_answer(output, len(case.testpoints))
                cell = result_text(result_json(case.prompt, case.testpoints, analysis, score))
            except Unreadable:
                pass
        index = int(sample.meta["index"])
        return [str(index), case.prompt, str(list(case.testpoints)), output or "", cell,
                f"{index}_{trial.order[0]}{DEFAULT_SUFFIX}"]


def _csv(rows: list[list[str]]) -> bytes:
    """pandas' ``to_csv(index=False)``: minimal quoting, ``\\n`` line ends, None as an empty field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "prompt", "testpoint", "output", "result_json", "img_path"])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")
