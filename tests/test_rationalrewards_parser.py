"""The RationalRewards critic format: a hand-written corpus of answers, fuzzing, aggregations and 4-way verdicts.

Each corpus case in ``tests/data/rationalrewards_corpus.json`` holds an answer (as a list of lines) and the parse
a person expects from it: aspect scores per candidate ("N/A" for not applicable, an absent key for unreadable),
winners, the exact set of flags, and optionally the summary, refined request, or the failure reason.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrbench.models import _rationalrewards_format as rr
from rrbench.types import DataError, FailureKind, Media, UserError, Verdict

CORPUS = json.loads((Path(__file__).parent / "data" / "rationalrewards_corpus.json").read_text())
CASES = CORPUS["cases"]
TF, IF, PVQ, TR = rr.EDIT_ASPECTS[0], rr.EDIT_ASPECTS[1], rr.EDIT_ASPECTS[2], rr.EDIT_ASPECTS[3]


def _expected_scores(obj: dict[str, Any]) -> dict[str, float | None]:
    return {k: None if v == "N/A" else float(v) for k, v in obj.items()}


def _parse(case: dict[str, Any]) -> rr.Parsed:
    parse = rr.parse_pairwise if case["kind"] == "pairwise" else rr.parse_pointwise
    return parse("\n".join(case["lines"]), case["generation"])


# --------------------------------------------------------------------------------------------------- corpus


def test_corpus_is_big_and_versioned() -> None:
    assert len(CASES) >= 50
    assert CORPUS["parser_version"] == rr.PARSER_VERSION, "parser changed: re-check the corpus and bump both"
    assert sum("error" in c for c in CASES) >= 8
    assert sum(c["kind"] == "pairwise" for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(case: dict[str, Any]) -> None:
    parsed = _parse(case)
    if "error" in case:
        assert parsed.error is not None and case["error"] in parsed.error, parsed
        assert not parsed.ok
    else:
        assert parsed.error is None, parsed.error
        assert [dict(a) for a in parsed.aspects] == [_expected_scores(a) for a in case["aspects"]]
    assert sorted(parsed.flags) == case["flags"]
    if "winners" in case:
        assert parsed.winners == {k: None if v == "N/A" else v for k, v in case["winners"].items()}
    for name in ("refined_request", "rationale", "analysis", "refinement_comments"):
        if name in case:
            assert getattr(parsed, name) == case[name], name
    assert parsed.raw == "\n".join(case["lines"])


def test_unknown_generation_is_a_parse_error_not_an_exception() -> None:
    parsed = rr.parse_pointwise("1. Text Faithfulness:\n## Score: 3", "video")
    assert parsed.error is not None and "video" in parsed.error


# --------------------------------------------------------------------------------------------------- fuzzing

_HEADINGS = [
    "# User Request Analysis", "# Detailed Judgement", "1. Text Faithfulness:", "2. Image Faithfulness:",
    "Physical and Visual Quality:", "### 4. Text Rendering", "## Justification:", "## Score:", "## Score A:",
    "**Score B:**", "## Winner:", "# Summary:", "# User Request Refinement:", "## Refinement Comments:",
    "## Refined Request:", "N/A", "3.5", "__4__", "-7", "1e999", "9" * 400, "Image A", "tie", "", "\r", "**", "#",
]
_structured = st.lists(
    st.one_of(st.sampled_from(_HEADINGS), st.text(max_size=30)), max_size=40
).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), _structured), generation=st.sampled_from(["t2i", "edit", "bogus"]))
def test_parsers_never_raise(text: str, generation: str) -> None:
    for parse in (rr.parse_pointwise, rr.parse_pairwise):
        parsed = parse(text, generation)
        assert parsed.raw == text
        assert (parsed.error is None) == parsed.ok
        for scores in parsed.aspects:
            for value in scores.values():
                assert value is None or (1.0 <= value <= 4.0 and math.isfinite(value))
        if parsed.ok:
            judgement = rr.judgement_from(parsed)
            assert judgement.raw == text
    rr.parse_verdict(text)


def test_parser_tolerates_non_string_input() -> None:
    parsed = rr.parse_pointwise(None, "t2i")  # type: ignore[arg-type]
    assert parsed.error == "empty response"
    assert rr.parse_verdict(None) is None  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- aggregations


def test_aggregations_are_named_and_versioned() -> None:
    assert set(rr.AGGREGATIONS) == {"pairwise-sum/v1", "pointwise-mean/v1", "rl-edit/v1"}
    assert all(name.split("/")[-1].startswith("v") for name in rr.AGGREGATIONS)


def test_pairwise_sum_drop_and_paper_policies() -> None:
    a = {TF: 3.0, PVQ: 4.0, TR: None}
    b = {TF: 2.0, PVQ: 3.5, TR: 4.0}
    # drop: Text Rendering is N/A for A, so it leaves both sums: 3 + 4 = 7 against 2 + 3.5 = 5.5
    assert rr.pairwise_sum(a, b) == (7.0, 5.5)
    assert rr.pairwise_sum(a, b, na="drop") == (7.0, 5.5)
    # paper: N/A counts 2.5, so A = 3 + 4 + 2.5 = 9.5 and B = 2 + 3.5 + 4 = 9.5, a tie
    assert rr.pairwise_sum(a, b, na="2.5") == (9.5, 9.5)
    assert rr.pairwise_verdict(*rr.pairwise_sum(a, b, na="2.5")) is Verdict.TIE
    assert rr.pairwise_verdict(*rr.pairwise_sum(a, b)) is Verdict.A


def test_pairwise_sum_policy_can_flip_the_winner() -> None:
    a = {TF: 3.0, TR: None}
    b = {TF: 2.0, TR: 4.0}
    assert rr.pairwise_sum(a, b) == (3.0, 2.0)  # A wins when the N/A aspect is dropped
    assert rr.pairwise_sum(a, b, na="2.5") == (5.5, 6.0)  # B wins when N/A is worth 2.5
    assert rr.pairwise_verdict(5.5, 6.0) is Verdict.B


def test_pairwise_sum_drop_never_invents_a_missing_score() -> None:
    a = {TF: 3.0, PVQ: 2.0}
    b = {TF: 1.0}  # PVQ unreadable for B: left out for both under "drop"
    assert rr.pairwise_sum(a, b) == (3.0, 1.0)
    # The paper's rule is the authors' fallback (modular_rm_eval/scoring.py lines 25-29): an N/A *or unreadable*
    # score counts 2.5, so B's missing PVQ is 2.5: A = 3 + 2, B = 1 + 2.5.
    assert rr.pairwise_sum(a, b, na="2.5") == (5.0, 3.5)


def test_pairwise_sum_rejects_unknown_policy() -> None:
    with pytest.raises(UserError, match="N/A policy"):
        rr.pairwise_sum({}, {}, na="zero")


def test_pointwise_mean_hand_worked() -> None:
    assert rr.pointwise_mean({TF: 4.0, PVQ: 4.0, TR: 4.0}) == 1.0
    assert rr.pointwise_mean({TF: 1.0, PVQ: 1.0}) == 0.0
    # mean(4, 3.5) = 3.75 -> (3.75 - 1) / 3 = 0.91666...
    assert rr.pointwise_mean({TF: 4.0, PVQ: 3.5, TR: None}) == pytest.approx(2.75 / 3)
    # mean(2, 3, 2.5) = 2.5 -> 0.5
    assert rr.pointwise_mean({TF: 2.0, PVQ: 3.0, TR: 2.5}) == pytest.approx(0.5)
    assert rr.pointwise_mean({TF: None, TR: None}) is None
    assert rr.pointwise_mean({}) is None


def test_rl_edit_leaves_image_faithfulness_out() -> None:
    aspects = {TF: 4.0, IF: 1.0, PVQ: 3.0, TR: None}
    # rl-edit: mean(4, 3) = 3.5 -> 2.5 / 3; pointwise-mean: mean(4, 1, 3) = 8/3 -> (8/3 - 1) / 3 = 5/9
    assert rr.rl_edit(aspects) == pytest.approx(2.5 / 3)
    assert rr.pointwise_mean(aspects) == pytest.approx(5 / 9)
    assert rr.rl_edit({IF: 4.0, TR: None}) is None


def _corpus(case_id: str) -> rr.Parsed:
    return _parse(next(c for c in CASES if c["id"] == case_id))


def test_judgement_from_pointwise() -> None:
    parsed = _corpus("t2i-canonical")
    judgement = rr.judgement_from(parsed)
    assert judgement.ok
    assert judgement.scores == (pytest.approx(2.75 / 3),)  # TF 4, PVQ 3.5, TR N/A
    assert judgement.aspects == ({TF: 4.0, PVQ: 3.5, TR: None},)
    assert judgement.rationale == "A faithful image with a little blur."
    assert judgement.refined_prompt == "A red cat sitting on a blue velvet sofa,\nsharp focus, soft daylight."
    assert judgement.raw == parsed.raw


def test_judgement_from_edit_both_aggregations() -> None:
    parsed = _corpus("edit-canonical")  # TF 3.5, IF 4, PVQ 3, TR N/A
    assert rr.judgement_from(parsed).scores == (pytest.approx((10.5 / 3 - 1) / 3),)
    assert rr.judgement_from(parsed, "rl-edit/v1").scores == (pytest.approx((3.25 - 1) / 3),)


def test_judgement_from_pairwise_and_flags() -> None:
    parsed = _corpus("pair-na-one-side")  # A: 3, 4, N/A   B: 3, 2, 2
    assert rr.judgement_from(parsed).scores == (7.0, 5.0)
    assert rr.judgement_from(parsed, "pairwise-sum/v1", na="2.5").scores == (9.5, 7.0)
    clamped = rr.judgement_from(_corpus("pair-clamp"))
    assert clamped.scores == (7.0, 4.0)
    assert "clamped:Text Faithfulness:A" in clamped.flags


def test_judgement_from_parse_failure() -> None:
    parsed = _corpus("t2i-garbage")
    judgement = rr.judgement_from(parsed)
    assert judgement.failure is FailureKind.PARSE
    assert judgement.failure_detail is not None and "no aspect score" in judgement.failure_detail
    assert judgement.raw == parsed.raw and not judgement.scores


def test_judgement_from_all_na_is_a_failure_not_a_made_up_score() -> None:
    judgement = rr.judgement_from(_corpus("edit-all-na"))
    assert judgement.failure is FailureKind.PARSE and not judgement.scores
    assert judgement.aspects == ({TF: None, IF: None, PVQ: None, TR: None},)


def test_judgement_from_pairwise_all_na_is_flagged() -> None:
    text = "1. Text Faithfulness:\nScore A: N/A\nScore B: 3\n2. Physical and Visual Quality:\nScore A: N/A\nScore B: 1"
    judgement = rr.judgement_from(rr.parse_pairwise(text, "t2i"))
    assert judgement.scores == (0.0, 0.0) and "no-comparable-aspect" in judgement.flags


def test_judgement_from_rejects_wrong_aggregation() -> None:
    with pytest.raises(UserError, match="unknown aggregation"):
        rr.judgement_from(_corpus("t2i-canonical"), "mean")
    with pytest.raises(UserError, match="does not apply"):
        rr.judgement_from(_corpus("t2i-canonical"), "pairwise-sum/v1")
    with pytest.raises(UserError, match="does not apply"):
        rr.judgement_from(_corpus("pair-canonical"), "rl-edit/v1")


# --------------------------------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Image A is sharper. [[A>B]]", Verdict.A),
        ("[[B>A]]", Verdict.B),
        ("Much better: [[A>>B]]", Verdict.A),
        ("[[B>>A]]", Verdict.B),
        ("Both are lovely. [[A=B=Good]]", Verdict.BOTH_GOOD),
        ("[[a=b=bad]]", Verdict.BOTH_BAD),
        ("[[A=B]]", Verdict.TIE),
        ("[[ A > B ]]", Verdict.A),
        ("Options: [[A>B]], [[B>A]], [[A=B=Good]], [[A=B=Bad]].\nMy verdict: [[B>A]]", Verdict.B),
        ("[[A>B]] at first, but on reflection [[A=B=Bad]]", Verdict.BOTH_BAD),
        ("A>B", None),
        ("[A>B]", None),
        ("[[C>A]]", None),
        ("", None),
    ],
)
def test_parse_verdict(text: str, expected: Verdict | None) -> None:
    assert rr.parse_verdict(text) is expected


# --------------------------------------------------------------------------------------------------- prompts


def _img(tag: bytes) -> Media:
    return Media.from_bytes(b"\x89PNG" + tag)


def _kinds(messages: list[dict[str, Any]]) -> list[str]:
    (message,) = messages
    assert message["role"] == "user"
    return [p["text"] if p["type"] == "text" else f"<img {p['media'].data[4:].decode()}>" for p in message["content"]]


def test_build_pointwise_t2i_format_and_rubric() -> None:
    parts = _kinds(rr.build_pointwise("a red cat", _img(b"c"), [], "t2i"))
    assert "<img c>" in parts
    text = parts[-1]
    assert "User request: a red cat" in text
    for heading in ("# User Request Analysis", "# Detailed Judgement", "1. Text Faithfulness:",
                    "3. Text Rendering:", "## Justification:", "## Score:", "# Summary:",
                    "# User Request Refinement:", "## Refinement Comments:", "## Refined Request:"):
        assert heading in text
    assert "Image Faithfulness" not in text and "N/A" in text


def test_build_pointwise_edit_puts_labelled_source_first() -> None:
    parts = _kinds(rr.build_pointwise("add a hat", _img(b"out"), [_img(b"src")], "edit"))
    assert parts.index("<img src>") < parts.index("<img out>")
    assert "Source image" in parts[parts.index("<img src>") - 1]
    assert "2. Image Faithfulness:" in parts[-1]
    with pytest.raises(DataError):
        rr.build_pointwise("add a hat", _img(b"out"), [], "edit")


def test_build_pairwise_labels_and_format() -> None:
    parts = _kinds(rr.build_pairwise("a fox", _img(b"a"), _img(b"b"), [_img(b"s")], "edit"))
    assert parts.index("<img s>") < parts.index("<img a>") < parts.index("<img b>")
    assert parts[parts.index("<img a>") - 1] == "Image A:" and parts[parts.index("<img b>") - 1] == "Image B:"
    for heading in ("## Score A:", "## Score B:", "## Winner:", "4. Text Rendering:"):
        assert heading in parts[-1]


def test_built_format_round_trips_through_the_parser() -> None:
    """A model that fills the template literally must be parsed: the prompt and the parser agree."""
    template = _kinds(rr.build_pairwise("x", _img(b"a"), _img(b"b"), [], "t2i"))[-1].split("exactly this format:\n")[1]
    filled = template.replace("<1-4 or N/A>", "3").replace("<Image A, Image B, tie or N/A>", "tie")
    parsed = rr.parse_pairwise(filled, "t2i")
    assert parsed.ok and parsed.flags == ()
    assert parsed.aspects == ({TF: 3.0, PVQ: 3.0, TR: 3.0},) * 2


def test_build_verdict_prompt() -> None:
    parts = _kinds(rr.build_verdict_prompt("a fox", _img(b"a"), _img(b"b"), [], "t2i"))
    assert parts[:4] == ["Image A:", "<img a>", "Image B:", "<img b>"]
    for option in ("[[A>B]]", "[[B>A]]", "[[A=B=Good]]", "[[A=B=Bad]]"):
        assert option in parts[-1]
    with pytest.raises(ValueError, match="generation"):
        rr.build_verdict_prompt("a fox", _img(b"a"), _img(b"b"), [], "video")


@pytest.mark.parametrize("text", ["It's a tie", "it’s a tie.", "It is a tie", "[It's a tie]", "Tie"])
def test_the_released_prompts_own_tie_wording_is_a_tie(text: str) -> None:
    from rrbench.models._rationalrewards_format import _read_winner

    assert _read_winner(text) == (True, "tie")
