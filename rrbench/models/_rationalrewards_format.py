"""What the RationalRewards critic is asked and how its answers become numbers.

Three parts, kept apart from any backend so they can be tested on text alone and reused by training code:

- prompt builders (pointwise, pairwise, and the GenAI-Bench 4-way verdict prompt for generic judges);
- a tolerant parser of the critic's markdown answer: it never raises, it records what it had to repair as
  ``flags`` and why it gave up as ``error``, because a run must count a bad answer, not crash on it;
- named, versioned aggregations from aspect scores to one reward, since the paper, its RL code and a fairer
  N/A policy disagree and every reported number must say which one it used.

The module registers nothing (leading underscore); ``rationalrewards.py`` builds the reward model on top of it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rrbench.backends._base import image_part, text_part, user_message
from rrbench.types import DataError, FailureKind, Judgement, Media, UserError, Verdict

PARSER_VERSION = "rationalrewards-parse/1"

T2I_ASPECTS = ("Text Faithfulness", "Physical and Visual Quality", "Text Rendering")
EDIT_ASPECTS = ("Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering")
ALL_ASPECTS = EDIT_ASPECTS  # the union: every t2i aspect is also an editing aspect

SCORE_MIN, SCORE_MAX = 1.0, 4.0
CANDIDATES = ("A", "B")

AspectScores = dict[str, float | None]


def aspects_for(generation: str) -> tuple[str, ...]:
    if generation == "t2i":
        return T2I_ASPECTS
    if generation == "edit":
        return EDIT_ASPECTS
    raise ValueError(f"unknown generation {generation!r}: expected 't2i' or 'edit'")


# ============================================================================================== prompts

_ASPECT_RUBRIC = {
    "Text Faithfulness": (
        "Does the image do what the request asks? Check every object, count, attribute, colour, spatial relation, "
        "action and style named in the request; for an edit, check that the requested change was made."
    ),
    "Image Faithfulness": (
        "For edits only: is everything the request did not ask to change preserved from the source image "
        "(identity, layout, background, lighting, style)? Unrequested changes lower this score."
    ),
    "Physical and Visual Quality": (
        "Is the image plausible and well made? Look for distorted anatomy, broken objects, impossible physics, "
        "lighting or perspective errors, artefacts, blur, noise and visible seams."
    ),
    "Text Rendering": (
        "If the request asks for written text in the image: is it present, spelled exactly, legible and well "
        "placed? Score N/A when the request asks for no text at all."
    ),
}

_SCALE = (
    "Score each aspect with a number from 1 to 4 (decimals such as 3.5 are allowed):\n"
    "4 = fully satisfies the aspect, no visible problem;\n"
    "3 = minor problems that a careful viewer notices;\n"
    "2 = clear problems that hurt the result;\n"
    "1 = fails the aspect.\n"
    "Write N/A instead of a number only when the aspect does not apply (for example Text Rendering when no "
    "text is requested)."
)


def _rubric(generation: str) -> str:
    lines = [f"{k}. {name}: {_ASPECT_RUBRIC[name]}" for k, name in enumerate(aspects_for(generation), 1)]
    return "Aspects:\n" + "\n".join(lines) + "\n\n" + _SCALE


def _task_line(generation: str, pairwise: bool) -> str:
    what = "edited image" if generation == "edit" else "generated image"
    if pairwise:
        return f"You are an expert critic of image generation. Compare two candidate {what}s, Image A and Image B."
    return f"You are an expert critic of image generation. Judge the {what} against the user request."


def _source_parts(source: Sequence[Media], generation: str) -> list[dict[str, Any]]:
    """The source image(s) of an edit come first and are labelled, so the critic never confuses them."""
    if generation != "edit":
        return []
    if not source:
        raise DataError("an editing judgement needs the source image, and the sample has none")
    parts: list[dict[str, Any]] = []
    for k, media in enumerate(source, 1):
        label = "Source image (before editing):" if len(source) == 1 else f"Source image {k} (before editing):"
        parts += [text_part(label), image_part(media)]
    return parts


def _pointwise_format(generation: str) -> str:
    blocks = [
        f"{k}. {name}:\n## Justification: <your reasoning>\n## Score: <1-4 or N/A>"
        for k, name in enumerate(aspects_for(generation), 1)
    ]
    return (
        "Answer in exactly this format:\n"
        "# User Request Analysis\n<what the request asks for, point by point>\n"
        "# Detailed Judgement\n" + "\n".join(blocks) + "\n"
        "# Summary: <the main strengths and weaknesses in two or three sentences>\n"
        "# User Request Refinement:\n"
        "## Refinement Comments: <how the request could be made clearer for the generator>\n"
        "## Refined Request: <the improved request, ready to be given to the generator>"
    )


def _pairwise_format(generation: str) -> str:
    blocks = [
        f"{k}. {name}:\n## Justification: <your reasoning>\n## Score A: <1-4 or N/A>\n## Score B: <1-4 or N/A>\n"
        "## Winner: <Image A, Image B, tie or N/A>"
        for k, name in enumerate(aspects_for(generation), 1)
    ]
    return (
        "Answer in exactly this format:\n"
        "# User Request Analysis\n<what the request asks for, point by point>\n"
        "# Detailed Judgement\n" + "\n".join(blocks) + "\n"
        "# Summary: <which image is better overall and why, in two or three sentences>"
    )


def build_pointwise(prompt: str, candidate: Media, source: Sequence[Media], generation: str) -> list[dict[str, Any]]:
    """One user message: task, labelled source (edits), the candidate, the request, rubric and answer format."""
    what = "Edited image (to judge):" if generation == "edit" else "Generated image (to judge):"
    parts = [
        text_part(_task_line(generation, pairwise=False)),
        *_source_parts(source, generation),
        text_part(what),
        image_part(candidate),
        text_part(f"User request: {prompt}\n\n{_rubric(generation)}\n\n{_pointwise_format(generation)}"),
    ]
    return [user_message(*parts)]


def build_pairwise(
    prompt: str, a: Media, b: Media, source: Sequence[Media], generation: str
) -> list[dict[str, Any]]:
    """Like ``build_pointwise`` with two labelled candidates and per-aspect scores for both plus a winner."""
    parts = [
        text_part(_task_line(generation, pairwise=True)),
        *_source_parts(source, generation),
        text_part("Image A:"),
        image_part(a),
        text_part("Image B:"),
        image_part(b),
        text_part(f"User request: {prompt}\n\n{_rubric(generation)}\n\n{_pairwise_format(generation)}"),
    ]
    return [user_message(*parts)]


# ============================================================================================== parsed form


@dataclass(frozen=True)
class Parsed:
    """One critic answer, read.

    ``aspects`` has one dict per candidate (one for pointwise, A then B for pairwise): aspect -> score, where
    None means the critic said N/A and an absent key means the aspect could not be read (flagged ``missing:``).
    ``winners`` (pairwise) maps aspect -> "A", "B", "tie", or None for N/A. ``error`` is set when the answer is
    unusable; the other fields then hold whatever could be read.

    Flags (pairwise ones end in ``:A``/``:B`` where they concern one candidate): ``clamped:<aspect>`` (a score
    outside 1-4 was clamped), ``missing:<aspect>``, ``duplicate:<aspect or section>`` (the first copy is kept),
    ``unexpected:<aspect>`` (not an aspect of this generation; ignored), ``unlabelled-score:<aspect>`` (pairwise
    ``Score:`` without A/B; ignored), ``labelled-score:<aspect>`` (pointwise ``Score A:``; ignored),
    ``missing-winner:<aspect>``, ``unreadable-winner:<aspect>``, ``winner-mismatch:<aspect>`` (the winner
    contradicts the two scores).
    """

    generation: str
    pairwise: bool
    aspects: tuple[AspectScores, ...]
    winners: dict[str, str | None] = field(default_factory=dict)
    analysis: str | None = None
    rationale: str | None = None
    refinement_comments: str | None = None
    refined_request: str | None = None
    flags: tuple[str, ...] = ()
    error: str | None = None
    raw: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


# ============================================================================================== line reading

# Markdown emphasis and code marks carry no meaning for the parser; they are removed before matching, never from
# the text kept for the rationale or the refined request.
_NOISE = re.compile(r"[*_`]+")
_LEAD = re.compile(r"^\s*(?:>\s*)*(#*)\s*(?:[-+•]\s+)?")
_NUMBER_PREFIX = re.compile(r"^(?:\(?\d{1,2}[.):]\s*)")
# A number may carry an exponent (2.5e1 is 25, not 2.5); NaN and infinities are recognised so that they fail the
# answer instead of being skipped over to the next number or read as a missing aspect.
_NUM = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
_NOT_A_NUMBER = r"[-+]?\b(?:nan|inf(?:inity)?)\b"
_VALUE = re.compile(
    rf"(?P<na>\bn\s*/\s*a\b|\bna\b|\bnot\s+applicable\b)|(?P<bad>{_NOT_A_NUMBER})|(?P<num>{_NUM})", re.I
)
_VALUE_AT_START = re.compile(
    rf"^\s*[\[(]?\s*(?:n\s*/\s*a\b|na\b|not\s+applicable\b|{_NOT_A_NUMBER}|{_NUM})", re.I
)
_PURE_VALUE = re.compile(
    rf"^[\[(]?\s*(?:n\s*/\s*a|na|not\s+applicable|{_NOT_A_NUMBER}|{_NUM}(?:\s*(?:/|out\s+of)\s*4(?:\.0)?)?)"
    r"\s*[\])]?\s*\.?$",
    re.I,
)
NOT_A_NUMBER = math.nan  # what parse_value returns for a value that is written but is no finite number
_SEP = r"\s*(?::|-|–|—|=)?\s*"

_SECTIONS = {
    "analysis": r"user\s+request\s+analysis",
    "judgement": r"detailed\s+judge?ments?",
    "summary": r"summary",
    "refinement": r"user\s+request\s+refinement",
    "comments": r"refinement\s+comments?",
    "refined": r"refined\s+(?:user\s+)?(?:request|prompt|instruction)",
}
_SECTION_RE = {
    name: re.compile(rf"^{pat}\s*(?P<sep>:|$|\s-\s)\s*(?P<rest>.*)$", re.I) for name, pat in _SECTIONS.items()
}
_ASPECT_RE = {
    name: re.compile(
        r"^" + r"\s+".join(re.escape(w) if w != "and" else r"(?:and|&)" for w in name.lower().split())
        + r"\s*(?P<sep>:|-|–|—|\(|$)\s*(?P<rest>.*)$",
        re.I,
    )
    for name in ALL_ASPECTS
}
_FIELD_RE = {
    "justification": re.compile(rf"^(?:justification|reasoning|rationale){_SEP}(?P<rest>.*)$", re.I),
    "winner": re.compile(rf"^(?:winner|better\s+image|preferred){_SEP}(?P<rest>.*)$", re.I),
    "score_ab": re.compile(
        r"^(?:score\s*(?:for|of)?\s*\(?\s*(?:image\s*)?(?P<l1>[ab])\)?|(?:image\s*)?(?P<l2>[ab])\s*score)"
        rf"(?![a-z]){_SEP}(?P<rest>.*)$",
        re.I,
    ),
    "score": re.compile(rf"^(?:score|rating){_SEP}(?P<rest>.*)$", re.I),
}


@dataclass(frozen=True)
class _Line:
    raw: str
    clean: str  # emphasis removed, leading quote/list/# marks removed
    hashes: bool  # the line was a markdown heading
    numbered: bool
    body: str  # clean without the leading "k." number


def _read_line(raw: str) -> _Line:
    text = _NOISE.sub("", raw)
    lead = _LEAD.match(text)
    hashes = bool(lead and lead.group(1))
    clean = text[lead.end():].strip() if lead else text.strip()
    number = _NUMBER_PREFIX.match(clean)
    body = clean[number.end():].strip() if number else clean
    return _Line(raw, clean, hashes, bool(number), body)


def parse_value(text: str) -> tuple[bool, float | None]:
    """(found, value): value None with found True means N/A; NaN means a value that is no finite number (``nan``,
    ``inf``, ``1e999``), which fails the answer. The first score-like token wins."""
    match = _VALUE.search(_NOISE.sub("", text))
    if match is None:
        return False, None
    if match.group("na"):
        return True, None
    if match.group("bad"):
        return True, NOT_A_NUMBER
    value = float(match.group("num"))  # the pattern only matches valid floats; a huge exponent gives inf
    return True, value if math.isfinite(value) else NOT_A_NUMBER


# ============================================================================================== parser state


@dataclass
class _State:
    generation: str
    pairwise: bool
    required: tuple[str, ...]
    scores: list[AspectScores]
    winners: dict[str, str | None] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    aspect: str | None = None  # the aspect block we are in
    seen_aspects: set[str] = field(default_factory=set)
    skip_aspect: bool = False  # a duplicate or unexpected aspect block: its fields are ignored
    section: str | None = None  # the text section we are collecting
    pending: str | None = None  # a field whose value is expected on the next line: "score", "A", "B", "winner"
    not_numbers: list[str] = field(default_factory=list)  # score values written as NaN, inf or beyond float range

    def flag(self, text: str) -> None:
        if text not in self.flags:
            self.flags.append(text)


def _match_section(line: _Line) -> tuple[str, str] | None:
    for name, pattern in _SECTION_RE.items():
        match = pattern.match(line.body)
        if match:
            rest = match.group("rest").strip()
            return name, _raw_rest(line.raw) if rest and match.group("sep") == ":" else rest
    return None


def _raw_rest(raw: str) -> str:
    """Text after a heading's colon, emphasis kept: ``# Summary: **Strong** image`` keeps its bold word.

    A run of marks right after the colon and before a space closes the heading (``**Summary:** text``).
    """
    rest = raw.split(":", 1)[1]
    return re.sub(r"^\s*[*_`]+(?=\s|$)", "", rest).strip()


def _match_aspect(line: _Line) -> tuple[str, str] | None:
    """An aspect heading, told apart from a sentence that merely starts with the aspect's name.

    It counts when marked as a heading (a ``#`` or a ``k.`` number) or when what follows the name is empty or a
    bare score (``Text Rendering: N/A``); "Text Faithfulness: strong overall" inside a summary stays text.
    """
    for name, pattern in _ASPECT_RE.items():
        match = pattern.match(line.body)
        if not match:
            continue
        rest = match.group("rest").strip()
        if match.group("sep") == "(":
            rest = ""  # "Text Rendering (weight ...)": a qualifier, not a value
        if line.hashes or line.numbered or not rest or _PURE_VALUE.match(rest):
            return name, rest
    return None


def _enter_aspect(state: _State, name: str, rest: str) -> None:
    state.section, state.pending = None, None
    state.aspect = name
    state.skip_aspect = False
    if name not in state.required:
        state.flag(f"unexpected:{name}")
        state.skip_aspect = True
    elif name in state.seen_aspects:
        state.flag(f"duplicate:{name}")  # the first block wins: later ones are usually a restart or a loop
        state.skip_aspect = True
    state.seen_aspects.add(name)
    if rest and _PURE_VALUE.match(rest) and not state.pairwise:
        _set_value(state, "score", rest)


def _enter_section(state: _State, name: str, rest: str) -> None:
    state.aspect, state.pending = None, None
    if name in state.texts:
        state.flag(f"duplicate:{name}")
        state.section = None  # keep the first: a second copy is a model repeating itself
        return
    state.section = name
    state.texts[name] = [rest] if rest else []


def _field(state: _State, line: _Line) -> bool:
    """Handle a ``Score``/``Score A``/``Winner``/``Justification`` line of the current aspect block."""
    if state.aspect is None:
        return False
    for kind, pattern in _FIELD_RE.items():
        match = pattern.match(line.body)
        if not match:
            continue
        if kind == "justification":
            state.pending = None
            return True
        key = kind
        if kind == "score_ab":
            key = (match.group("l1") or match.group("l2")).upper()
        rest = match.group("rest").strip()
        if state.skip_aspect:
            return True
        if rest:
            _set_value(state, key, rest)
        else:
            state.pending = key  # "## Score:" with the value on the next line
        return True
    return False


def _set_value(state: _State, key: str, text: str) -> None:
    assert state.aspect is not None
    state.pending = None
    if key == "winner":
        _set_winner(state, text)
        return
    if key == "score" and state.pairwise:
        state.flag(f"unlabelled-score:{state.aspect}")
        return
    if key in CANDIDATES and not state.pairwise:
        state.flag(f"labelled-score:{state.aspect}")
        return
    index = CANDIDATES.index(key) if state.pairwise else 0
    found, value = parse_value(text)
    if not found:
        return
    target = state.scores[index]
    if state.aspect in target:
        return  # a second score line inside one block: keep the first, as for duplicate blocks
    if value is not None and math.isnan(value):
        who = f" of Image {key}" if state.pairwise else ""
        state.not_numbers.append(f"{state.aspect}{who}: {_NOISE.sub('', text).strip()[:40]!r}")
        return
    target[state.aspect] = _clamp(state, value, key)


def _clamp(state: _State, value: float | None, key: str) -> float | None:
    if value is None or SCORE_MIN <= value <= SCORE_MAX:
        return value
    state.flag(f"clamped:{state.aspect}" + (f":{key}" if state.pairwise else ""))
    return min(max(value, SCORE_MIN), SCORE_MAX)


_WINNER_WORDS = (
    (re.compile(r"^(?:n\s*/\s*a|na|not\s+applicable|none|neither)\b", re.I), None),
    # the released prompt's own "It's a tie" (any apostrophe, or "it is a tie")
    (re.compile(r"^(?:it(?:['\u2019]?s|\s+is)\s+a\s+)?(?:tie|equal|both|same|draw)", re.I), "tie"),
    (re.compile(r"^(?:image\s*)?a\b", re.I), "A"),
    (re.compile(r"^(?:image\s*)?b\b", re.I), "B"),
)


def _read_winner(text: str) -> tuple[bool, str | None]:
    value = _NOISE.sub("", text).strip().strip("[]()\"'.").strip()
    for pattern, winner in _WINNER_WORDS:
        if pattern.match(value):
            return True, winner
    return False, None


def _set_winner(state: _State, text: str) -> None:
    assert state.aspect is not None
    found, winner = _read_winner(text)
    if found:
        state.winners.setdefault(state.aspect, winner)
    else:
        state.flag(f"unreadable-winner:{state.aspect}")


def _pending_value(state: _State, line: _Line) -> bool:
    """The value of a field given alone on the next line (``## Score:`` then ``3``)."""
    if state.pending is None or not line.clean:
        return False
    key = state.pending
    looks_right = _read_winner(line.clean)[0] if key == "winner" else _VALUE_AT_START.match(line.clean)
    if looks_right:
        _set_value(state, key, line.clean)
        return True
    state.pending = None
    return False


def _feed(state: _State, raw: str) -> None:
    line = _read_line(raw)
    if _pending_value(state, line):
        return
    section = _match_section(line)
    if section is not None:
        _enter_section(state, *section)
        return
    aspect = _match_aspect(line)
    if aspect is not None:
        _enter_aspect(state, *aspect)
        return
    if _field(state, line):
        return
    if line.hashes and state.section is not None:
        state.section = None  # an unknown markdown heading ends a text section
        return
    if state.section is not None:
        state.texts[state.section].append(raw.rstrip())


# ============================================================================================== parser


def _text(state: _State, name: str) -> str | None:
    lines = state.texts.get(name)
    if not lines:
        return None
    text = "\n".join(lines).strip()
    return _unwrap(text) or None


def _unwrap(text: str) -> str:
    """Drop emphasis or quotes wrapped around a whole value (``**A red cat.**``) but keep inner marks."""
    for mark in ("**", "__", "*", "_", '"', "`"):
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
            return text[len(mark):-len(mark)].strip()
    return text


def _refined(state: _State) -> str | None:
    text = _text(state, "refined")
    if text is not None and _PURE_VALUE.match(text) and not re.search(r"\d", text):
        return None  # "N/A": the critic proposes no refinement
    if text is not None and text.lower().strip(".") in ("none", "no refinement needed"):
        return None
    return text


def _check_missing(state: _State) -> str | None:
    """Flag missing aspects; an answer with no aspect score at all for some candidate is unusable.

    A failed answer gets its reason, not a list of every aspect it lacks.
    """
    for index, scores in enumerate(state.scores):
        if not scores:
            who = f" for Image {CANDIDATES[index]}" if state.pairwise else ""
            return f"no aspect score could be read{who} (expected {', '.join(state.required)})"
    for index, scores in enumerate(state.scores):
        suffix = f":{CANDIDATES[index]}" if state.pairwise else ""
        for name in state.required:
            if name not in scores:
                state.flag(f"missing:{name}{suffix}")
    return None


def _check_winners(state: _State) -> None:
    for name in state.required:
        if name not in state.winners:
            if name in state.scores[0] or name in state.scores[1]:
                state.flag(f"missing-winner:{name}")
            continue
        a, b = state.scores[0].get(name), state.scores[1].get(name)
        if a is None or b is None:
            continue
        implied = "A" if a > b else "B" if b > a else "tie"
        if state.winners[name] != implied:
            state.flag(f"winner-mismatch:{name}")


def _parse(text: object, generation: str, pairwise: bool) -> Parsed:
    raw = text if isinstance(text, str) else ""
    empty = Parsed(generation, pairwise, _blank(pairwise), raw=raw)
    if generation not in ("t2i", "edit"):
        return _with_error(empty, f"unknown generation {generation!r}")
    if not isinstance(text, str) or not text.strip():
        return _with_error(empty, "empty response")
    state = _State(generation, pairwise, aspects_for(generation), [{} for _ in empty.aspects])
    for line in text.splitlines():
        _feed(state, line)
    # A score that is no number is never skipped, guessed or read as a tie: the whole answer is unusable.
    error = f"score is not a number: {'; '.join(state.not_numbers)}" if state.not_numbers else _check_missing(state)
    if pairwise and error is None:
        _check_winners(state)
    return Parsed(
        generation=generation,
        pairwise=pairwise,
        aspects=tuple(state.scores),
        winners=dict(state.winners),
        analysis=_text(state, "analysis"),
        rationale=_text(state, "summary"),
        refinement_comments=_text(state, "comments"),
        refined_request=_refined(state),
        flags=tuple(state.flags),
        error=error,
        raw=raw,
    )


def _blank(pairwise: bool) -> tuple[AspectScores, ...]:
    return tuple({} for _ in range(2 if pairwise else 1))


def _with_error(parsed: Parsed, error: str) -> Parsed:
    return Parsed(parsed.generation, parsed.pairwise, parsed.aspects, error=error, raw=parsed.raw)


def _guarded(text: object, generation: str, pairwise: bool) -> Parsed:
    # The parser is meant to be total; this guard only turns a bug of ours into a recorded parse failure
    # instead of killing a long run.
    try:
        return _parse(text, generation, pairwise)
    except Exception as exc:  # pragma: no cover - exercised only if the parser has a bug
        raw = text if isinstance(text, str) else ""
        return Parsed(generation, pairwise, _blank(pairwise), error=f"parser bug: {type(exc).__name__}: {exc}", raw=raw)


def parse_pointwise(text: str, generation: str) -> Parsed:
    return _guarded(text, generation, pairwise=False)


def parse_pairwise(text: str, generation: str) -> Parsed:
    return _guarded(text, generation, pairwise=True)


# ============================================================================================== aggregations

AGGREGATIONS: dict[str, str] = {
    "pairwise-sum/v1": (
        "pairwise: sum the aspect scores of each candidate and compare (equal sums = tie); N/A policy 'drop' "
        "(default: an aspect N/A for either candidate is left out for both) or '2.5' (the paper: N/A counts 2.5)"
    ),
    "pointwise-mean/v1": "pointwise: r = (mean of the non-N/A aspect scores - 1) / 3, in [0, 1]; none if all N/A",
    "rl-edit/v1": (
        "pointwise, the authors' RL code for editing: like pointwise-mean/v1 over Text Faithfulness, Physical and "
        "Visual Quality and Text Rendering only (Image Faithfulness left out)"
    ),
}
NA_POLICIES = ("drop", "2.5")
_NA_VALUE = 2.5
_RL_EDIT_ASPECTS = ("Text Faithfulness", "Physical and Visual Quality", "Text Rendering")


def pairwise_sum(a: Mapping[str, float | None], b: Mapping[str, float | None], na: str = "drop") -> tuple[float, float]:
    """``pairwise-sum/v1``. Under ``drop``, aspects missing or N/A for either candidate are left out for both: a
    score is never invented. Under ``2.5`` (the RationalRewards paper's ``scoring.py``, ``extract_numeric_score``
    lines 25-29) an N/A or unreadable aspect counts 2.5, as the authors' fallback does, for either candidate."""
    if na not in NA_POLICIES:
        raise UserError(f"unknown N/A policy {na!r}: expected one of {', '.join(NA_POLICIES)}")
    if na == "drop":
        pairs = [(a[k], b[k]) for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None]
    else:
        pairs = [(a.get(k), b.get(k)) for k in a.keys() | b.keys()]
    sum_a = sum(_NA_VALUE if va is None else va for va, _ in pairs)
    sum_b = sum(_NA_VALUE if vb is None else vb for _, vb in pairs)
    return float(sum_a), float(sum_b)


def pairwise_verdict(score_a: float, score_b: float) -> Verdict:
    return Verdict.A if score_a > score_b else Verdict.B if score_b > score_a else Verdict.TIE


def pointwise_mean(aspects: Mapping[str, float | None]) -> float | None:
    """``pointwise-mean/v1``: the mean 1-4 score mapped linearly onto [0, 1]."""
    values = [v for v in aspects.values() if v is not None]
    if not values:
        return None
    return (sum(values) / len(values) - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)


def rl_edit(aspects: Mapping[str, float | None]) -> float | None:
    """``rl-edit/v1``: ``pointwise-mean/v1`` restricted to the aspects the authors' editing RL reward used."""
    return pointwise_mean({k: v for k, v in aspects.items() if k in _RL_EDIT_ASPECTS})


_POINTWISE = {"pointwise-mean/v1": pointwise_mean, "rl-edit/v1": rl_edit}


NO_EVIDENCE = "no-comparable-aspect"


def judgement_from(parsed: Parsed, aggregation: str | None = None, na: str = "drop") -> Judgement:
    """An rrbench Judgement from a parsed answer; ``aggregation`` defaults to the one that fits its kind."""
    aggregation = _checked(aggregation, parsed.pairwise)
    if parsed.error is not None:
        return Judgement.failed(FailureKind.PARSE, parsed.error, raw=parsed.raw)
    critique = Judgement(
        aspects=tuple(dict(a) for a in parsed.aspects), rationale=parsed.rationale,
        refined_prompt=parsed.refined_request, raw=parsed.raw, flags=parsed.flags,
    )
    return _scored(critique, aggregation, na)


def is_critique(judgement: Judgement) -> bool:
    """Whether a judgement holds a critic's aspect scores (other models may record measures of their own as
    aspects, e.g. classical-iqa's sharpness: those are no critique and are never re-aggregated)."""
    return bool(judgement.aspects) and all(set(a) <= set(ALL_ASPECTS) for a in judgement.aspects)


def reaggregate(judgement: Judgement, aggregation: str | None, na: str = "drop") -> Judgement:
    """The same critique under another aggregation or N/A policy, from its recorded aspect scores.

    Judgements without critique aspects (a verdict judge, a scalar model, a failure before parsing) are returned
    unchanged.
    """
    if not is_critique(judgement):
        return judgement
    return _scored(judgement, _checked(aggregation, len(judgement.aspects) == 2), na)


def _checked(aggregation: str | None, pairwise: bool) -> str:
    aggregation = aggregation or ("pairwise-sum/v1" if pairwise else "pointwise-mean/v1")
    if aggregation not in AGGREGATIONS:
        raise UserError(f"unknown aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
    if (aggregation == "pairwise-sum/v1") != pairwise:
        kind = "pairwise" if pairwise else "pointwise"
        raise UserError(f"aggregation {aggregation!r} does not apply to a {kind} answer")
    return aggregation


def _scored(critique: Judgement, aggregation: str, na: str) -> Judgement:
    """Scores (or the all-N/A failure) for a critique whose aspects are known."""
    flags = tuple(f for f in critique.flags if f != NO_EVIDENCE)
    if len(critique.aspects) == 2:
        a, b = critique.aspects
        if na == "drop" and not any(a[k] is not None and b[k] is not None for k in a.keys() & b.keys()):
            flags += (NO_EVIDENCE,)  # the sums are 0 and 0: a tie made of no evidence
        return dataclasses.replace(critique, scores=pairwise_sum(a, b, na), flags=flags, failure=None,
                                   failure_detail=None)
    reward = _POINTWISE[aggregation](critique.aspects[0])
    if reward is None:
        # Every aspect the aggregation reads is N/A: no reward exists, and 0 or 0.5 would be a made-up one.
        return dataclasses.replace(critique, scores=(), flags=flags, failure=FailureKind.PARSE,
                                   failure_detail=f"every aspect used by {aggregation} is N/A")
    return dataclasses.replace(critique, scores=(reward,), flags=flags, failure=None, failure_detail=None)


# ============================================================================================== 4-way verdicts

_VERDICT = re.compile(
    r"\[\[\s*(?:(?P<ab>A\s*>>?\s*B|B\s*<<?\s*A)|(?P<ba>B\s*>>?\s*A|A\s*<<?\s*B)"
    r"|A\s*=\s*B(?:\s*=\s*(?P<kind>good|bad))?)\s*\]\]",
    re.I,
)


def parse_verdict(text: str) -> Verdict | None:
    """The GenAI-Bench 4-way answer; the last bracketed verdict wins (judges often quote the options first)."""
    if not isinstance(text, str):
        return None
    matches = list(_VERDICT.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    if last.group("ab"):
        return Verdict.A
    if last.group("ba"):
        return Verdict.B
    kind = (last.group("kind") or "").lower()
    return {"good": Verdict.BOTH_GOOD, "bad": Verdict.BOTH_BAD}.get(kind, Verdict.TIE)


_LEFT_RIGHT = re.compile(r"\[\[\s*(left|right)\s*>\s*(left|right)\s*\]\]", re.I)


def parse_left_right(text: str) -> Verdict | None:
    """EditReward-Bench's K=3/4 answer ``[[Left>Right]]``/``[[Right>Left]]`` (the last one wins); Left is shown
    first (A). Falls back to the 4-way reading for judges that answer ``[[A>B]]`` anyway."""
    if not isinstance(text, str):
        return None
    found = [m for m in _LEFT_RIGHT.finditer(text) if m.group(1).lower() != m.group(2).lower()]
    if found:
        return Verdict.A if found[-1].group(1).lower() == "left" else Verdict.B
    return parse_verdict(text)


def parse_json_verdict(text: str) -> Verdict | None:
    """MMRB2's judge answer: a JSON object (in a code fence or not) whose ``better_response`` is "A" or "B".

    Lenient: spaces and case are ignored here; the official rule (``tasks/rule_mmrb2.py``) compares exactly."""
    import json_repair

    if not isinstance(text, str):
        return None
    body = re.sub(r"\n?```\s*$", "", re.sub(r"^```(?:json)?\s*\n?", "", text.strip()).strip())
    try:
        data = json_repair.loads(body)
    except Exception:
        return None
    value = data.get("better_response") if isinstance(data, dict) else None
    choice = value.strip().upper() if isinstance(value, str) else None
    return {"A": Verdict.A, "B": Verdict.B}.get(choice or "")


def read_verdict(answer: str, text: str) -> Verdict | None:
    """rrbench's lenient reading of a verdict answer, by the answer format its prompt asked for."""
    if answer == "mmrb2-json":
        return parse_json_verdict(text)
    if answer == "editreward":
        return parse_left_right(text)
    return parse_verdict(text)


def _verdict_instructions(prompt: str, generation: str) -> str:
    task = "edit the source image as instructed" if generation == "edit" else "generate an image from the prompt"
    keep = " Also check that the edit leaves the rest of the source image unchanged." if generation == "edit" else ""
    return (
        f"Two AI models were asked to {task}. User request: {prompt}\n\n"
        "Compare Image A and Image B: how faithfully each follows the request and how good it looks (plausible "
        f"anatomy and physics, no artefacts, correct text if text was asked for).{keep} Explain briefly, then end "
        "with exactly one verdict in double brackets:\n"
        "[[A>B]] if Image A is better, [[B>A]] if Image B is better, [[A=B=Good]] if both are equally good, "
        "[[A=B=Bad]] if both are equally bad."
    )


def build_verdict_prompt(
    prompt: str, a: Media, b: Media, source: Sequence[Media], generation: str
) -> list[dict[str, Any]]:
    """The prompt generic judges answer with one GenAI-Bench verdict (``parse_verdict`` reads it)."""
    aspects_for(generation)  # reject an unknown generation early
    parts = [
        *_source_parts(source, generation),
        text_part("Image A:"),
        image_part(a),
        text_part("Image B:"),
        image_part(b),
        text_part(_verdict_instructions(prompt, generation)),
    ]
    return [user_message(*parts)]


# ============================================================================================== catalogue entries

OWN_VERSION = "1"  # rrbench-critic-prompt/1: the wording above


def own_prompts() -> list[Any]:
    """rrbench's own prompts as catalogue entries (family ``rrbench``): named alternatives to the released ones."""
    from rrbench.prompts import PromptSpec

    source = {"repo": "rrbench", "path": "rrbench/models/_rationalrewards_format.py", "licence": "Apache-2.0"}
    specs = []
    for generation in ("t2i", "edit"):
        builders: dict[str, Any] = {
            "verdict": lambda p, c, s, v, g=generation: build_verdict_prompt(p, c[0], c[1], s, g),
            "pairwise": lambda p, c, s, v, g=generation: build_pairwise(p, c[0], c[1], s, g),
            "pointwise": lambda p, c, s, v, g=generation: build_pointwise(p, c[0], s, g),
        }
        for kind, build in builders.items():
            answer = "brackets" if kind == "verdict" else "critique"
            specs.append(PromptSpec(id=f"rrbench/{kind}-{generation}", version=OWN_VERSION, kind=kind, answer=answer,
                                    generation=generation, source=source, builder=build))
    return specs
