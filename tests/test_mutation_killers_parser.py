"""The RationalRewards critic's aggregations and parser branches that the corpus leaves open (docs/mutation.md:
rrbench/models/_rationalrewards_format.py). Expected numbers are worked out in the comments: ``pairwise-sum/v1``
adds each candidate's aspect scores; ``pointwise-mean/v1`` maps the mean 1-4 score to (mean - 1) / 3; ``rl-edit/v1``
is that mean over Text Faithfulness, Physical and Visual Quality and Text Rendering.
"""

from __future__ import annotations

import pytest

from rrbench.models import _rationalrewards_format as rr
from rrbench.types import FailureKind, Judgement, Verdict

TF, IF, PVQ, TR = "Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering"


def _pairwise_answer(rows: dict[str, tuple[str, str, str]]) -> str:
    lines = ["# Detailed Judgement"]
    for k, (aspect, (a, b, winner)) in enumerate(rows.items(), 1):
        lines += [f"{k}. {aspect}:", "## Justification: looked closely.", f"## Score A: {a}", f"## Score B: {b}",
                  f"## Winner: {winner}"]
    return "\n".join([*lines, "# Summary: done."])


def _pointwise_answer(rows: dict[str, str]) -> str:
    lines = ["# Detailed Judgement"]
    for k, (aspect, score) in enumerate(rows.items(), 1):
        lines += [f"{k}. {aspect}:", "## Justification: fine.", f"## Score: {score}"]
    return "\n".join([*lines, "# Summary: done."])


def test_the_aspects_of_each_generation() -> None:
    assert rr.aspects_for("t2i") == (TF, PVQ, TR)
    assert rr.aspects_for("edit") == (TF, IF, PVQ, TR)
    with pytest.raises(ValueError, match="unknown generation"):
        rr.aspects_for("video")


def test_text_rendering_decides_a_t2i_pair() -> None:
    # A: 3 + 3 + 4 = 10, B: 3 + 3 + 1 = 7
    text = _pairwise_answer({TF: ("3", "3", "tie"), PVQ: ("3", "3", "tie"), TR: ("4", "1", "Image A")})
    parsed = rr.parse_pairwise(text, "t2i")
    assert parsed.ok and parsed.flags == ()
    assert parsed.winners == {TF: "tie", PVQ: "tie", TR: "A"}
    judgement = rr.judgement_from(parsed)
    assert judgement.scores == (10.0, 7.0)
    assert rr.pairwise_verdict(*judgement.scores) is Verdict.A


def test_text_rendering_counts_in_an_edit_pair() -> None:
    # A: 2 + 2 + 2 + 4 = 10, B: 2 + 2 + 2 + 1 = 7
    text = _pairwise_answer({TF: ("2", "2", "tie"), IF: ("2", "2", "tie"), PVQ: ("2", "2", "tie"),
                             TR: ("4", "1", "A")})
    assert rr.judgement_from(rr.parse_pairwise(text, "edit")).scores == (10.0, 7.0)


def test_text_rendering_counts_in_the_pointwise_mean() -> None:
    # t2i: mean(4, 4, 1) = 3 -> 2/3; without Text Rendering it would be 1
    parsed = rr.parse_pointwise(_pointwise_answer({TF: "4", PVQ: "4", TR: "1"}), "t2i")
    assert parsed.ok and parsed.aspects == ({TF: 4.0, PVQ: 4.0, TR: 1.0},)
    assert rr.judgement_from(parsed).scores == (pytest.approx(2 / 3),)


def test_text_rendering_counts_in_rl_edit() -> None:
    # edit: pointwise-mean(4, 4, 4, 1) = 3.25 -> 0.75; rl-edit(4, 4, 1) = 3 -> 2/3
    parsed = rr.parse_pointwise(_pointwise_answer({TF: "4", IF: "4", PVQ: "4", TR: "1"}), "edit")
    assert rr.judgement_from(parsed).scores == (pytest.approx(0.75),)
    assert rr.judgement_from(parsed, "rl-edit/v1").scores == (pytest.approx(2 / 3),)
    assert rr.rl_edit({TF: 4.0, IF: 1.0, PVQ: 4.0, TR: 1.0}) == pytest.approx(2 / 3)


def test_pairwise_sum_under_both_na_policies() -> None:
    a, b = {TF: 3.0, PVQ: None, TR: 1.0}, {TF: 2.0, PVQ: 4.0, TR: 2.0}
    assert rr.pairwise_sum(a, b) == (4.0, 4.0)  # PVQ dropped for both: 3 + 1 against 2 + 2
    assert rr.pairwise_sum(a, b, na="2.5") == (6.5, 8.0)  # A's N/A is 2.5: 3 + 2.5 + 1 against 2 + 4 + 2
    assert rr.pairwise_verdict(4.0, 4.0) is Verdict.TIE
    assert rr.pairwise_verdict(1.0, 2.0) is Verdict.B


def test_reaggregate_recomputes_from_recorded_aspects() -> None:
    pair = Judgement(aspects=({TF: 3.0, TR: None}, {TF: 2.0, TR: 4.0}), scores=(3.0, 2.0), flags=("x",))
    paper = rr.reaggregate(pair, None, na="2.5")
    assert paper.scores == (5.5, 6.0) and paper.flags == ("x",) and paper.failure is None
    single = Judgement(aspects=({TF: 4.0, IF: 1.0, PVQ: 4.0, TR: 1.0},), scores=(0.5,))
    assert rr.reaggregate(single, "rl-edit/v1").scores == (pytest.approx(2 / 3),)
    assert rr.reaggregate(single, None).scores == (pytest.approx(0.5),)
    not_a_critique = Judgement(aspects=({"sharpness": 0.3},), scores=(0.3,))
    assert rr.reaggregate(not_a_critique, "rl-edit/v1") is not_a_critique
    verdict_only = Judgement(verdict=Verdict.A)
    assert rr.reaggregate(verdict_only, None) is verdict_only


def test_reaggregate_drops_and_restores_the_no_evidence_flag() -> None:
    empty = Judgement(aspects=({TF: None}, {TF: 3.0}), scores=(0.0, 0.0), flags=(rr.NO_EVIDENCE,))
    assert rr.reaggregate(empty, None, na="2.5").flags == ()
    assert rr.reaggregate(empty, None, na="2.5").scores == (2.5, 3.0)
    assert rr.reaggregate(empty, None).flags == (rr.NO_EVIDENCE,)


def test_an_all_na_pointwise_answer_fails_with_its_reason() -> None:
    judgement = rr.reaggregate(Judgement(aspects=({TF: 4.0, IF: None, PVQ: None, TR: None},)), "rl-edit/v1")
    assert judgement.failure is None
    failed = rr.reaggregate(Judgement(aspects=({TF: None, IF: 4.0, PVQ: None, TR: None},)), "rl-edit/v1")
    assert failed.failure is FailureKind.PARSE and failed.scores == ()
    assert failed.failure_detail == "every aspect used by rl-edit/v1 is N/A"


def test_is_critique_needs_known_aspects() -> None:
    assert rr.is_critique(Judgement(aspects=({TF: 3.0},)))
    assert not rr.is_critique(Judgement(aspects=({TF: 3.0, "sharpness": 1.0},)))
    assert not rr.is_critique(Judgement(scores=(1.0,)))


def test_left_right_and_json_verdicts() -> None:
    assert rr.parse_left_right("I pick [[Left>Right]]") is Verdict.A
    assert rr.parse_left_right("[[left>right]] then [[Right>Left]]") is Verdict.B
    assert rr.parse_left_right("[[Left>Left]] [[B>A]]") is Verdict.B  # no valid Left/Right: the 4-way reading
    assert rr.parse_left_right(None) is None  # type: ignore[arg-type]
    assert rr.parse_json_verdict('```json\n{"better_response": " b "}\n```') is Verdict.B
    assert rr.parse_json_verdict('{"better_response": "tie"}') is None
    assert rr.parse_json_verdict("[1, 2]") is None
    assert rr.parse_json_verdict(None) is None  # type: ignore[arg-type]
    assert rr.read_verdict("mmrb2-json", '{"better_response": "A"}') is Verdict.A
    assert rr.read_verdict("editreward", "[[Right>Left]]") is Verdict.B
    assert rr.read_verdict("brackets", "[[A=B=Good]]") is Verdict.BOTH_GOOD


def test_an_aspect_heading_with_a_qualifier_in_brackets() -> None:
    text = "\n".join(["Text Faithfulness:", "Score: 3", "Physical and Visual Quality:", "Score: 3",
                      "Text Rendering (only when text is asked for)", "Score: 1"])
    parsed = rr.parse_pointwise(text, "t2i")
    assert parsed.aspects == ({TF: 3.0, PVQ: 3.0, TR: 1.0},) and parsed.flags == ()


def test_a_repeated_section_keeps_the_first_copy_only() -> None:
    text = _pointwise_answer({TF: "3", PVQ: "3", TR: "N/A"}) + "\n# Summary: second.\nmore of the second"
    parsed = rr.parse_pointwise(text, "t2i")
    assert parsed.rationale == "done."
    assert "duplicate:summary" in parsed.flags


def test_a_score_that_is_no_number_fails_the_answer_and_says_which() -> None:
    text = _pairwise_answer({TF: ("nan", "3", "B"), PVQ: ("3", "3", "tie"), TR: ("N/A", "N/A", "N/A")})
    parsed = rr.parse_pairwise(text, "t2i")
    assert parsed.error == "score is not a number: Text Faithfulness of Image A: 'nan'"
    point = rr.parse_pointwise(_pointwise_answer({TF: "inf", PVQ: "3", TR: "2"}), "t2i")
    assert point.error == "score is not a number: Text Faithfulness: 'inf'"


@pytest.mark.parametrize("written", ["None.", "No refinement needed", "N/A"])
def test_no_refined_request_when_the_critic_proposes_none(written: str) -> None:
    answer = _pointwise_answer({TF: "3", PVQ: "3", TR: "2"})
    text = f"{answer}\n# User Request Refinement:\n## Refined Request: {written}"
    assert rr.parse_pointwise(text, "t2i").refined_request is None
    kept = f"{answer}\n## Refined Request: A cat, none of the dogs."
    assert rr.parse_pointwise(kept, "t2i").refined_request == "A cat, none of the dogs."


def test_a_score_line_without_a_number_is_no_score_and_no_na() -> None:
    parsed = rr.parse_pointwise(_pointwise_answer({TF: "excellent", PVQ: "3", TR: "2"}), "t2i")
    assert parsed.ok and TF not in parsed.aspects[0]
    assert "missing:Text Faithfulness" in parsed.flags


def test_a_value_expected_on_the_next_line_is_given_up_at_other_text() -> None:
    # "## Score:" then prose: the score is missing, and a number further down is not taken for it
    text = "\n".join(["1. Text Faithfulness:", "## Score:", "see below", "3", "2. Physical and Visual Quality:",
                      "## Score: 3", "3. Text Rendering:", "## Score: N/A"])
    parsed = rr.parse_pointwise(text, "t2i")
    assert parsed.aspects == ({PVQ: 3.0, TR: None},)
    assert "missing:Text Faithfulness" in parsed.flags
    later = "\n".join(["1. Text Faithfulness:", "## Score:", "", "3.5"])  # a blank line in between is fine
    assert rr.parse_pointwise(later, "t2i").aspects == ({TF: 3.5},)


@pytest.mark.parametrize("wrapped", ["_A cat on a mat._", "**A cat on a mat.**", '"A cat on a mat."'])
def test_marks_wrapped_around_the_whole_refined_request_are_removed(wrapped: str) -> None:
    text = _pointwise_answer({TF: "3", PVQ: "3", TR: "2"}) + f"\n## Refined Request: {wrapped}"
    assert rr.parse_pointwise(text, "t2i").refined_request == "A cat on a mat."
