"""The official tie/credit rules beside their tasks, one reading at a time (docs/mutation.md: tasks/rule_*.py and
tasks/_editreward_parse.py). Each expected reading is worked out by hand from the official scorer's rule quoted in
the rule file's docstring; tests/test_official_conformance.py checks the same rules end to end against a server.
"""

from __future__ import annotations

import pytest

from rrbench.metrics import pair_credit
from rrbench.metrics._core import MetricContext
from rrbench.metrics.pairs import accuracy
from rrbench.tasks._editreward_parse import comparison_types, read_2pair, read_npair
from rrbench.tasks.rule_editreward import group_k, letters, vote_from_class
from rrbench.tasks.rule_genai_4way import official_class, official_vote
from rrbench.tasks.rule_mmrb2 import official_class as mmrb2_class
from rrbench.tasks.rule_mmrb2 import official_judgement
from rrbench.types import FailureKind, Judgement, Label, LabelKind, Prediction, SampleResult, Trial, Verdict

A, B, TIE = Label.win(0), Label.win(1), Label.tie()
GOOD, BAD = Label.tie(LabelKind.BOTH_GOOD), Label.tie(LabelKind.BOTH_BAD)
SWAPPED = (1, 0)


def _answer(text: str, verdict: Verdict | None = Verdict.A, *, prompt: str | None = None,
            order: tuple[int, ...] = (0, 1)) -> Trial:
    """A verdict judge's trial: its raw answer (what official rules re-read) and its lenient verdict."""
    return Trial(order, (Judgement(verdict=verdict, raw=text, prompt=prompt),), Prediction((None, None), verdict))


# --------------------------------------------------------------------------------------------------- EditReward parse


@pytest.mark.parametrize(("text", "vote"), [
    ("[[A>B]]", "A>B"),
    ("[[B>A]]", "B>A"),
    ("[[A=B]]", "A=B"),
    ("[[A>>B]]", "Unknown"),  # the first pattern matches, holds no known vote, and nothing else applies
    ("[[B=A]]", "Unknown"),
    ("[[A==B]]", "A=B"),
    ("[[Image B>A]]", "B>A"),  # only the double-bracket pattern reads this one
    ("\\boxed{B>A}", "B>A"),
    ("so [a>b] it is", "A>B"),
    ("Final verdict: B>A", "B>A"),
    ("I think A > B.", "A>B"),
    ("Model B is better", "B>A"),
    ("a is better", "A>B"),
    ("Both are equal", "A=B"),
    ("The properties differ", "A=B"),  # "properties" holds "tie": the unanchored tie-word fallback
    ("No idea", "Unknown"),
    ("", "Unknown"),
])
def test_read_2pair(text: str, vote: str) -> None:
    assert read_2pair(text) == vote


@pytest.mark.parametrize(("text", "comparison", "k", "reading"), [
    ("[[Left>Right]]", "AvsC", 3, ("A>C", True)),
    ("[[Right>Left]]", "AvsC", 3, ("C>A", True)),
    ("[[C>A]]", "AvsC", 3, ("C>A", False)),
    ("pick [A>C] here", "AvsC", 3, ("A>C", False)),
    ("pick [Right>Left] here", "AvsC", 3, ("C>A", True)),
    ("verdict: c>a", "AvsC", 3, ("C>A", False)),
    ("C is better", "AvsC", 3, ("C>A", False)),
    ("A is better", "AvsC", 3, ("A>C", False)),
    ("the left image is better", "AvsC", 3, ("A>C", True)),
    ("Right is better", "BvsC", 3, ("C>B", True)),
    ("[[A=C]]", "AvsC", 3, ("Unknown", False)),
    ("[[Left>Right]]", "AvsZ", 3, ("Unknown", False)),  # not a comparison the scripts map Left/Right for
    ("C is better", "AvsZ", 3, ("Unknown", False)),
    ("[[D>B]]", "BvsD", 4, ("D>B", False)),
    ("[D>A]", "AvsC", 3, ("Unknown", False)),  # D is no letter of a 3-candidate group
    ("[[B>A and C>B]]", "AvsB", 3, ("B>A", False)),  # the first relation in the scripts' order
])
def test_read_npair(text: str, comparison: str, k: int, reading: tuple[str, bool]) -> None:
    assert read_npair(text, comparison, k) == reading


def test_comparison_types() -> None:
    assert comparison_types(3) == ("AvsB", "AvsC", "BvsC")
    assert comparison_types(4) == ("AvsB", "AvsC", "AvsD", "BvsC", "BvsD", "CvsD")


# --------------------------------------------------------------------------------------------------- editreward-exact


def test_group_k_and_letters_from_the_row() -> None:
    assert [group_k({"dataset": d}) for d in ("2pair", "3pair", "4pair")] == [2, 3, 4]
    assert [group_k({"group_size": s}) for s in (1, 3, 6, 10)] == [2, 3, 4, 2]
    assert group_k({"group_size": "3"}) == 2 and group_k({}) == 2
    assert letters({"comparison_type": "BvsD"}) == ("B", "D")
    assert letters({"comparison_type": "B-D"}) == ("A", "B") and letters({}) == ("A", "B")
    meta3 = {"dataset": "3pair", "comparison_type": "AvsC"}
    assert [vote_from_class(c, meta3) for c in (0, 1, "tie", "both_bad", "x")] == ["A>C", "C>A", "A=C", "A=C",
                                                                                  "unknown x"]
    assert vote_from_class(0, {"comparison_type": "AvsC"}) == "A>B"  # K=2 rows always read A and B


ROW2 = {"dataset": "2pair", "ranking": "A>B", "comparison_type": "AvsB"}


def test_editreward_exact_k2_reads_the_answer_in_the_shown_order() -> None:
    assert pair_credit(A, _answer("[[A>B]]"), "editreward-exact", meta=ROW2) == 1.0
    # shown reversed: "A>B" names the candidate shown first, the sample's B
    assert pair_credit(A, _answer("[[A>B]]", order=SWAPPED), "editreward-exact", meta=ROW2) == 0.0
    assert pair_credit(A, _answer("[[B>A]]", order=SWAPPED), "editreward-exact", meta=ROW2) == 1.0
    # an unreadable answer is a wrong comparison, not a failure
    assert pair_credit(A, _answer("no idea"), "editreward-exact", meta=ROW2) == 0.0
    assert pair_credit(A, _answer("[[A=B]]", order=SWAPPED), "editreward-exact",
                       meta={**ROW2, "ranking": "A=B"}) == 1.0


def test_editreward_exact_compares_the_ranking_string() -> None:
    assert pair_credit(A, Prediction((0.9, 0.1)), "editreward-exact", meta={**ROW2, "ranking": "B<A"}) == 0.0
    assert pair_credit(TIE, Prediction((0.5, 0.5)), "editreward-exact", meta={**ROW2, "ranking": "A=B=Good"}) == 0.0
    assert pair_credit(TIE, Prediction((0.5, 0.5)), "editreward-exact", meta={"dataset": "2pair"}) == 1.0
    assert pair_credit(B, Prediction((0.1, 0.9)), "editreward-exact", meta={"dataset": "2pair"}) == 1.0
    assert pair_credit(Label.unknown("?"), Prediction((0.1, 0.9)), "editreward-exact", meta=ROW2) is None


ROW3 = {"dataset": "3pair", "ranking": "A>C", "comparison_type": "AvsC"}
PROMPT3 = "editreward-bench/verdict-edit-3pair"


def test_editreward_exact_k3_left_right_follows_the_shown_order_and_letters_do_not() -> None:
    assert pair_credit(A, _answer("[[Left>Right]]", prompt=PROMPT3), "editreward-exact", meta=ROW3) == 1.0
    assert pair_credit(A, _answer("[[Left>Right]]", prompt=PROMPT3, order=SWAPPED), "editreward-exact",
                       meta=ROW3) == 0.0
    assert pair_credit(A, _answer("[[A>C]]", prompt=PROMPT3, order=SWAPPED), "editreward-exact", meta=ROW3) == 1.0
    assert pair_credit(A, _answer("[[C>A]]", prompt=PROMPT3), "editreward-exact", meta=ROW3) == 0.0


def test_editreward_exact_k3_answers_to_another_prompt_use_the_prediction() -> None:
    # rrbench's own verdict prompt names the shown images A and B: its reading is the recorded verdict
    trial = _answer("[[B>A]]", Verdict.A, prompt="rrbench/verdict-edit")
    assert pair_credit(A, trial, "editreward-exact", meta=ROW3) == 1.0
    group_row = {"group_size": 3, "comparison_type": "AvsC", "ranking": "A>C"}  # K from the group size
    assert pair_credit(A, _answer("[[Right>Left]]", prompt=PROMPT3), "editreward-exact", meta=group_row) == 0.0


def test_editreward_exact_keeps_a_group_whose_calls_partly_failed_as_wrong() -> None:
    failed = Trial((0, 1), (), None, None)
    rows = [SampleResult("a", A, (_answer("[[Left>Right]]", prompt=PROMPT3),), meta={**ROW3, "group": "g"}),
            SampleResult("b", A, (failed,), meta={**ROW3, "group": "g"})]
    from rrbench.metrics.pairs import group_accuracy

    tally = group_accuracy(rows, MetricContext("editreward-exact"))
    assert [u.credit for u in tally.units] == [0.0]


# --------------------------------------------------------------------------------------------------- editreward ties


def test_editreward_ties_reads_rankings_as_eval_bench_does() -> None:
    # get_pairwise_gt: "A=B" is read by letter positions (A first: A preferred); "B<A" likewise (B first)
    near = Prediction((0.55, 0.5))
    assert pair_credit(A, near, "editreward-ties", meta={"ranking": "A=B"}) == 1.0
    assert pair_credit(A, Prediction((0.5, 0.55)), "editreward-ties", meta={"ranking": "B<A"}) == 1.0
    assert pair_credit(TIE, near, "editreward-ties", meta={"ranking": "A=B=Good"}, knob=0.1) == 1.0
    assert pair_credit(TIE, near, "editreward-ties", meta={"ranking": "A=B=Good"}, knob=0.01) == 0.0
    # letters come from the comparison type: "C>A" for AvsC prefers the second candidate
    assert pair_credit(A, Prediction((0.1, 0.9)), "editreward-ties",
                       meta={"ranking": "C>A", "comparison_type": "AvsC"}) == 1.0
    assert pair_credit(A, near, "editreward-ties") == 1.0  # no ranking string: rrbench's own reading
    assert pair_credit(Label.unknown("?"), near, "editreward-ties", meta={"ranking": "A>B"}) is None


def test_editreward_without_ties_skips_human_ties_and_counts_model_ties_wrong() -> None:
    assert pair_credit(TIE, Prediction((0.5, 0.5)), "editreward-without-ties") is None
    assert pair_credit(A, Prediction((0.5, 0.5)), "editreward-without-ties") == 0.0
    assert pair_credit(A, Prediction((0.1, 0.9)), "editreward-without-ties", meta={"ranking": "B<A"}) == 1.0
    assert pair_credit(Label.unknown("?"), Prediction((0.1, 0.9)), "editreward-without-ties") is None
    assert pair_credit(TIE, Prediction((0.5, 0.5)), "imagereward") is None


# --------------------------------------------------------------------------------------------------- genai 4-way


def test_official_vote_is_the_greedy_match_of_the_first_line_holding_one() -> None:
    assert official_vote("Verdict: [[B>A]] ... options: [[A>B]] [[B>A]]") == "[[B>A]] ... options: [[A>B]] [[B>A]]"
    assert official_vote("Reasoning.\n[[B>A]]\nOptions: [[A>B]]") == "[[B>A]]"
    assert official_vote("no brackets") is None
    assert official_class("[[A>>B]]") == 0 and official_class("[[B>>A]]") == 1
    assert official_class("[[A=B=Good]]") == "both_good" and official_class("[[A=B=Bad]]") == "both_bad"
    assert official_class("[[A=B]]") == "tie"
    assert official_class("[[a>b]]") == "unmatched [[a>b]]"
    assert official_class("nothing") == "no verdict"


@pytest.mark.parametrize(("label", "text", "credit"), [
    (A, "[[A>B]]", 1.0),
    (A, "[[A>>B]]", 1.0),
    (B, "[[B>A]]", 1.0),
    (B, "[[B>>A]]", 1.0),
    (B, "[[A>B]]", 0.0),
    (BAD, "[[A=B=Bad]]", 1.0),
    (GOOD, "[[A=B]]", 1.0),  # a bare tie is right for either tie vote
    (BAD, "[[A=B]]", 1.0),
    (GOOD, "[[A=B=Good]]", 1.0),
    (BAD, "[[A=B=Good]]", 0.0),
    (TIE, "[[A=B=Bad]]", 1.0),  # a label that does not say which tie takes any
    (TIE, "[[A>B]]", 0.0),
    (A, "I cannot decide", 0.0),  # no verdict is wrong, not a failure
    (GOOD, "[[a=b=good]]", 0.0),
])
def test_genai_4way_official_credit(label: Label, text: str, credit: float) -> None:
    assert pair_credit(label, _answer(text), "genai-4way") == credit


def test_genai_4way_reads_in_the_sample_order() -> None:
    assert pair_credit(B, _answer("[[A>B]]", order=SWAPPED), "genai-4way") == 1.0
    assert pair_credit(GOOD, _answer("[[A=B=Good]]", order=SWAPPED), "genai-4way") == 1.0


def test_genai_4way_score_ties_split_at_the_knob() -> None:
    assert pair_credit(GOOD, Prediction((2.0, 2.0)), "genai-4way", knob=2.0) == 1.0
    assert pair_credit(BAD, Prediction((2.0, 2.0)), "genai-4way", knob=2.0) == 0.0
    assert pair_credit(BAD, Prediction((2.0, 2.0)), "genai-4way", knob=2.5) == 1.0
    assert pair_credit(A, Prediction((2.0, 1.0)), "genai-4way", knob=5.0) == 1.0
    assert pair_credit(BAD, Prediction((2.0, 1.0), Verdict.BOTH_BAD), "genai-4way") == 1.0


def test_genai_4way_notes_only_when_answers_were_read() -> None:
    scores_only = [SampleResult("s", A, (Trial((0, 1), (), Prediction((1.0, 0.0))),))]
    assert accuracy(scores_only, MetricContext("genai-4way")).extra == {"tie_split": 0.5,
                                                                       "tie_split_from": "median of scores"}
    unread = [SampleResult("s", A, (_answer("no verdict here", None, prompt="genai-bench/verdict-t2i"),))]
    extra = accuracy(unread, MetricContext("genai-4way")).extra
    # the lenient reading found no verdict either: the two readings agree
    assert (extra["answers_read"], extra["lenient_reading_differs"]) == (1, 0)


# --------------------------------------------------------------------------------------------------- MMRB2


MM = "mmrb2/verdict-t2i"


@pytest.mark.parametrize(("text", "value"), [
    ('{"better_response": "A"}', "A"),
    ('```json\n{"better_response": "B", "reason": "x"}\n```', "B"),
    ('```\n{"better_response": "tie"}\n```', "tie"),
])
def test_mmrb2_official_judgement(text: str, value: str) -> None:
    assert official_judgement(text) == value


def test_mmrb2_official_classes() -> None:
    assert [mmrb2_class(v) for v in ("A", "B", "a", "Response A", "")] == [0, 1, "unmatched 'a'",
                                                                          "unmatched 'Response A'", None]
    assert mmrb2_class(None) is None
    assert mmrb2_class(official_judgement('{"other": 1}')) is None  # a missing key raises in the official code


@pytest.mark.parametrize(("label", "text", "order", "credit"), [
    (A, '{"better_response": "A"}', (0, 1), 1.0),
    (A, '{"better_response": "A"}', SWAPPED, 0.0),
    (B, '{"better_response": "A"}', SWAPPED, 1.0),
    (A, '{"better_response": "a"}', (0, 1), 0.0),  # evaluated and wrong
    (A, '{"better_response": "tie"}', (0, 1), 0.0),
    (A, '{"better_response": null}', (0, 1), None),  # not evaluated
    (A, "not json at all", (0, 1), None),
])
def test_mmrb2_official_credit(label: Label, text: str, order: tuple[int, int], credit: float | None) -> None:
    assert pair_credit(label, _answer(text, Verdict.A, prompt=MM, order=order), "mmrb2") == credit


def test_mmrb2_answers_to_other_prompts_use_the_prediction() -> None:
    assert pair_credit(A, _answer('{"better_response": "B"}', Verdict.A, prompt="rrbench/verdict-t2i"), "mmrb2") == 1
    assert pair_credit(A, Prediction((None, None), Verdict.TIE), "mmrb2") == 0.0


# --------------------------------------------------------------------------------------------------- Pick-a-Pic


def test_pickapic_half_credit_and_verdicts() -> None:
    assert pair_credit(A, Prediction((0.5, 0.5)), "pickapic") == 0.5  # a predicted tie against a winner
    assert pair_credit(TIE, Prediction((0.9, 0.1)), "pickapic") == 0.5
    assert pair_credit(B, Prediction((0.9, 0.1)), "pickapic") == 0.0
    assert pair_credit(B, Prediction((0.1, 0.9)), "pickapic", knob=0.3) == 1.0  # gap tanh(0.4) = 0.38 > 0.3
    assert pair_credit(A, Prediction((0.1, 0.9), Verdict.A), "pickapic", knob=0.9) == 1.0  # a verdict as given


def test_without_ties_leaves_unknown_labels_skipped_whatever_the_ranking_says() -> None:
    assert pair_credit(Label.unknown("?"), Prediction((0.9, 0.1)), "editreward-without-ties",
                       meta={"ranking": "A>B"}) is None
    assert pair_credit(Label.unknown("?"), Prediction((0.9, 0.1)), "editreward-ties", meta={"ranking": "A>B"}) is None


@pytest.mark.parametrize("text", ["Both look good", "both are bad", "There is no difference", "I can't decide"])
def test_read_2pair_tie_words(text: str) -> None:
    assert read_2pair(text) == "A=B"


RELATIONS_4 = ("A>B", "B>A", "A>C", "C>A", "A>D", "D>A", "B>C", "C>B", "B>D", "D>B", "C>D", "D>C")


@pytest.mark.parametrize(("k", "relation"), [(3, r) for r in ("A>B", "B>A", "A>C", "C>A", "B>C", "C>B")]
                         + [(4, r) for r in RELATIONS_4])
def test_read_npair_knows_every_relation_of_its_k(k: int, relation: str) -> None:
    assert read_npair(f"[[{relation}]]", "AvsB", k) == (relation, False)


def test_read_npair_k3_knows_no_fourth_candidate() -> None:
    assert read_npair("[[A>D]]", "AvsB", 3) == ("Unknown", False)


def test_mmrb2_reads_a_truncated_answer_in_a_fence_as_the_official_code() -> None:
    # the fence is removed first, then json_repair completes the cut string
    assert official_judgement('```json\n{"better_response": "A\n```') == "A"


def test_a_plug_in_judge_with_scores_is_no_verdict_text() -> None:
    # no prompt id, scores and a verdict: rrbench reads the prediction (A), never the text ([[B>A]])
    trial = Trial((0, 1), (Judgement(scores=(0.9, 0.1), verdict=Verdict.A, raw="[[B>A]]"),),
                  Prediction((0.9, 0.1), Verdict.A))
    assert pair_credit(A, trial, "genai-4way") == 1.0


def test_an_unreadable_verdict_answer_is_read_from_its_own_text() -> None:
    # the judge answered without a verdict; the trial records the answer and a parse-failure note after it
    answer = Judgement(raw="I like the first one", prompt="genai-bench/verdict-t2i")
    note = Judgement.failed(FailureKind.PARSE, "judgement carries neither scores nor a verdict")
    trial = Trial((0, 1), (answer, note), None, FailureKind.PARSE)
    assert pair_credit(A, trial, "genai-4way") == 0.0  # officially: no [[...]], a wrong answer, not a failure
    assert pair_credit(A, trial, "genai-4way-lenient") is None


def test_check_tie_policy_refuses_unknown_names() -> None:
    from rrbench.metrics import check_tie_policy
    from rrbench.types import UserError

    check_tie_policy("pickapic")
    with pytest.raises(UserError, match="unknown tie policy 'coin-flip'"):
        check_tie_policy("coin-flip")
