"""rrbench refine, offline: sanity-gen x painter x sanity-gen-critic, every number worked out by hand.

The painter (docs/tasks/sanity-gen.md) makes image i of a prompt with testpoint j wrong exactly when
(i + d + j) mod period < error_rate * period, d being the image's fresh draws (0 unless a refiner asks for a new
seed), and never gets wrong a testpoint its request names. sanity-gen's t2i prompts cycle object, count, relation,
text; object/count/relation have 3 testpoints, text has 4 (text, shape, colour, position). The sanity-gen-critic
grades Text Faithfulness 4/2/1 for 0/1/more wrong testpoints other than the text one, Text Rendering 4/1 for the
text one (N/A without), Physical and Visual Quality 4, and names the wrong testpoints in its refined request.

Period 4, error rate 0.25 (one violation per testpoint every 4 images), 4 images per prompt, 48 prompts (12 per
category; the tests take the first 12, 3 per category: every number below is per prompt, so the same), so
192 image slots (48 with -T n=12):
* 3-testpoint prompts: image 0 gets j0 wrong, image 1 nothing, image 2 j2, image 3 j1 (108 images with one error);
* text prompts: image 0 gets the text wrong (TF 4, TR 1), images 1-3 position, colour, shape (TF 2);
* every dimension (shape, colour, position, count, text) is 3/4 right: base testpoint-accuracy 0.75.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli
from rrbench.refine import plan
from rrbench.refine.gain import paired_gain
from rrbench.refine.rules import IF, PVQ, TF, TR, keeps
from rrbench.types import FailureKind, Judgement, Label, Prediction, Protocol, SampleResult, Trial

DEMO = ["--task", "sanity-gen", "--generator", "painter", "--critic", "sanity-gen-critic",
        "--model", "sanity-gen-judge"]


def refine(out: Path, *args: str) -> dict[str, Any]:
    assert cli.main(["refine", "--output", str(out), "--quiet", "-T", "n=12", *args]) == 0
    found = list(out.glob("*__refine-*/refine.json"))
    assert len(found) == 1, found
    summary: dict[str, Any] = json.loads(found[0].read_text())
    return summary


def gains(summary: dict[str, Any]) -> list[tuple[float, float, float]]:
    return [(r["overall"]["base"], r["overall"]["final"], r["overall"]["gain"]) for r in summary["rounds"]]


def test_rr_code_regenerates_non_text_errors_and_fixes_them(tmp_path: Path) -> None:
    summary = refine(tmp_path, *DEMO, "-G", "error_rate=0.25")
    # rr-code keeps TF >= 3 and PVQ >= 3: it regenerates every image with a shape/colour/count/position error
    # (27 + 9 = 36 of 48) and keeps the 9 clean images and the 3 text images whose only error is the text.
    assert summary["images"]["total"] == 48
    assert summary["images"]["by_outcome"] == {"kept": 12, "regenerated": 36}
    # Named, the errors are painted right; what is left is the text of image 0 of the 3 text prompts: the text
    # dimension stays 0.75, the other four reach 1.0, so the mean of the five is 4.75 / 5 = 0.95.
    (base, final, gain), = gains(summary)
    assert (base, final) == pytest.approx((0.75, 0.95))
    assert gain == pytest.approx(0.20)
    by_category = summary["rounds"][0]["by_category"]
    for category in ("object", "count", "relation"):
        assert by_category[category]["gain"] == pytest.approx(0.25)
    assert by_category["text"]["final"] == pytest.approx((0.75 + 3) / 4)  # text 0.75, shape/colour/position 1
    # The critic before: TF 2 on 36 images and 4 on 12 -> 2.5; TR 1 on 3 of the 12 text images -> 3.25.
    assert summary["critic_scores"]["before"] == pytest.approx({PVQ: 4.0, TF: 2.5, TR: 3.25})
    assert summary["critic_scores"]["after"] == pytest.approx({PVQ: 4.0, TF: 4.0, TR: 3.25})


@pytest.mark.parametrize(("rule", "outcomes", "final"), [
    # rr-paper regenerates any image with an aspect below 3: also the 3 text-only errors (39); all are fixed.
    ("rr-paper", {"kept": 9, "regenerated": 39}, 1.0),
    # always regenerates all 48; a clean image's request names nothing, so it is painted the same again.
    ("always", {"regenerated": 48}, 1.0),
    # best-of regenerates as rr-code and keeps the new image when the critic scores it higher: every one is clean.
    ("best-of", {"kept": 12, "regenerated": 36}, 0.95),
])
def test_accept_rules_by_hand(tmp_path: Path, rule: str, outcomes: dict[str, int], final: float) -> None:
    summary = refine(tmp_path, *DEMO, "-G", "error_rate=0.25", "--accept", rule)
    assert summary["accept"] == rule
    assert summary["images"]["by_outcome"] == outcomes
    assert gains(summary)[0][1] == pytest.approx(final)


def test_identity_refiner_gain_is_the_resampling_gain(tmp_path: Path) -> None:
    # One image per prompt (image 0): every prompt gets testpoint j0 wrong: the object's shape, the count, the
    # relation's first colour, the text. Units per dimension: shape 9 (3 wrong), colour 15 (3), position 9 (0),
    # count 3 (3), text 3 (3): base = (2/3 + 4/5 + 1 + 0 + 0) / 5 = 37/75.
    # The identity refiner redraws with a new seed: draw 1 paints as image 1, which gets only j3 wrong (the text
    # prompts' position): (1 + 1 + 2/3 + 1 + 1) / 5 = 14/15. Round 2 (draw 2) gets j2 wrong: the object's and the
    # relation's position and the count's and text's colour: (1 + 9/15 + 3/9 + 1 + 1) / 5 = 59/75.
    summary = refine(tmp_path, "--task", "sanity-gen", "--generator", "painter", "-G", "error_rate=0.25",
                     "-T", "images_per_prompt=1", "--critic", "identity", "--model", "sanity-gen-judge",
                     "--rounds", "2")
    assert summary["accept"] == "always"
    assert summary["images"]["made_again_per_round"] == {"1": 12, "2": 12}
    assert gains(summary) == [pytest.approx((37 / 75, 14 / 15, 14 / 15 - 37 / 75)),
                              pytest.approx((37 / 75, 59 / 75, 59 / 75 - 37 / 75))]


def test_two_rounds_name_one_error_at_a_time(tmp_path: Path) -> None:
    # Error rate 0.5: image i gets j wrong when (i + j) mod 4 < 2. 3-testpoint prompts: image 0 {j0, j1}, 1 {j0},
    # 2 {j2}, 3 {j1, j2}; text prompts: 0 {text, shape}, 1 {text, position}, 2 {colour, position}, 3 {shape, colour}.
    # Base: every testpoint wrong on 2 of 4 images, 0.5. Every image has an error other than the text: round 1
    # makes all 48 again, each naming its first wrong testpoint (max_named=1); left wrong: 3-testpoint 0 {j1},
    # 3 {j2}; text 0 {shape}, 1 {position}, 2 {position}, 3 {colour}. Per dimension (12 units per testpoint):
    # shape 36 units, 6 wrong; colour 60, 12; position 36, 12; count 12, 0; text 12, 0:
    # (5/6 + 4/5 + 2/3 + 1 + 1) / 5 = 0.86. Round 2 makes again the 2 x 9 + 12 = 30 images still wrong, naming
    # the rest (the request keeps what round 1 named): all clean, 1.0.
    summary = refine(tmp_path, *DEMO, "-G", "error_rate=0.5", "-M", "max_named=1", "--rounds", "2")
    assert summary["images"]["made_again_per_round"] == {"1": 48, "2": 30}
    assert gains(summary) == [pytest.approx((0.5, 0.86, 0.36)), pytest.approx((0.5, 1.0, 0.5))]
    assert summary["images"]["by_outcome"] == {"regenerated": 48}


def test_edits_refined_by_the_paper_rule_come_out_clean(tmp_path: Path) -> None:
    # rr-paper regenerates every edit with any wrong testpoint (Image Faithfulness covers "... is unchanged"), and
    # the critic names all of them: the final set passes every testpoint.
    summary = refine(tmp_path, *DEMO, "-T", "variant=edit", "-T", "images_per_prompt=2",
                     "-G", "error_rate=0.5", "--accept", "rr-paper")
    base, final, _ = gains(summary)[0]
    assert base < 1.0 and final == pytest.approx(1.0)
    assert summary["critic_scores"]["before"][IF] < 4.0 and summary["critic_scores"]["after"][IF] == 4.0


def test_a_second_run_makes_nothing_again(tmp_path: Path) -> None:
    args = [*DEMO, "-G", "error_rate=0.25", "--rounds", "2"]
    first = refine(tmp_path, *args)
    index_lines = {p: p.read_text() for p in tmp_path.glob("*/images/index.jsonl")}
    second = refine(tmp_path, *args)
    assert {p: p.read_text() for p in tmp_path.glob("*/images/index.jsonl")} == index_lines
    assert first["rounds"] == second["rounds"] and first["slots"] == second["slots"]
    for path in tmp_path.glob("*/run.json"):
        record = json.loads(path.read_text())
        # A finished stage is read, never run again; the judge runs are resumed and find nothing to do.
        assert record["sessions"] == 1 or record["stats"]["new_samples"] == 0, path


def test_stages_name_their_sources(tmp_path: Path) -> None:
    summary = refine(tmp_path, *DEMO, "-G", "error_rate=0.25")
    stages = summary["stages"]
    base = json.loads((tmp_path / stages["base"] / "run.json").read_text())
    final = json.loads((tmp_path / stages["finals"][0] / "run.json").read_text())
    regen = json.loads((tmp_path / stages["regenerations"][0] / "run.json").read_text())
    assert final["refine"]["stage"] == "final" and regen["refine"]["stage"] == "regenerate"
    assert final["refine"]["base"] == regen["refine"]["base"] == base["spec_hash"][:16]
    assert final["refine"]["critic"] == "sanity-gen-critic" and final["refine"]["accept"] == "rr-code"
    judged = json.loads((tmp_path / stages["judges"][1] / "run.json").read_text())
    assert judged["source"]["refine"]["stage"] == "final"  # the judge run of the final set says it is one
    # The base set is the one `rrbench generate` makes: the same spec, the same directory.
    assert cli.main(["generate", "--output", str(tmp_path), "--quiet", "-G", "error_rate=0.25", "-T", "n=12"]) == 0
    assert sorted(p.name for p in tmp_path.glob("sanity-gen__gen-painter__*")).count(stages["base"]) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--critic", "identity", "--accept", "rr-code"], "gives no aspect scores"),
    (["--accept", "sometimes"], "unknown accept rule"),
    (["--rounds", "0"], "--rounds must be"),
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--max-request-chars", "0"], "--max-request-chars must be a positive number"),
    (["--task", "sanity"], "refine needs a generation task"),
    (["--model", "no-such-judge"], "no-such-judge"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                               message: str) -> None:
    base = {"--task": "sanity-gen", "--generator": "painter", "--critic": "sanity-gen-critic",
            "--model": "sanity-gen-judge"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    flat = [x for pair in base.items() for x in pair] + [x for f, v in zip(args[::2], args[1::2], strict=True)
                                                        if f not in base for x in (f, v)]
    assert cli.main(["refine", "--output", str(tmp_path / "out"), "--quiet", *flat]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()  # nothing was written


# ----------------------------------------------------------------------------------------------------- units


def test_rules_read_na_and_missing_scores_as_the_reference_code_does() -> None:
    assert keeps("rr-code", {TF: 3.0, PVQ: 3.0, IF: 1.0, TR: 1.0})  # the code reads only TF and PVQ
    assert not keeps("rr-code", {TF: 2.9, PVQ: 4.0})
    assert not keeps("rr-code", {PVQ: 4.0})  # a missing score is 0 (.get(..., 0))
    assert not keeps("rr-code", {TF: 4.0})
    # "N/A" >= 3 raises TypeError there, and the row is skipped: the image stays. Text Faithfulness is compared
    # first, so a low one regenerates before an N/A quality is ever compared.
    assert keeps("rr-code", {TF: None, PVQ: 1.0})
    assert keeps("rr-code", {TF: 3.0, PVQ: None})
    assert not keeps("rr-code", {TF: 2.0, PVQ: None})
    assert not keeps("rr-paper", {TF: 4.0, PVQ: 4.0, TR: 2.0})
    assert keeps("rr-paper", {TF: 4.0, PVQ: 4.0, TR: None, IF: 3.0})
    assert not keeps("always", {TF: 4.0, PVQ: 4.0})


def _slot(critique: Judgement | None, entry: dict[str, Any] | None = None) -> plan.Slot:
    return plan.Slot("s", 0, "base", entry or {"index": 0, "seed": 7, "path": "images/a.png"}, critique)


def _critique(tf: float, refined: str | None = "a better request", score: float = 0.5) -> Judgement:
    return Judgement(scores=(score,), aspects=({TF: tf, PVQ: 4.0},), refined_prompt=refined)


def test_plan_closes_slots_that_cannot_be_made_again_with_their_reason() -> None:
    settings = plan.Settings("rr-code", 20, new_seed=False, run_seed=0)
    slots = {("a", 0): _slot(_critique(4.0)), ("b", 0): _slot(_critique(1.0, None)),
             ("c", 0): _slot(_critique(1.0, "x" * 21)), ("d", 0): _slot(Judgement.failed(FailureKind.HTTP, "500")),
             ("e", 0): _slot(_critique(1.0), {"index": 0, "failure": "error", "detail": "nan"}),
             ("f", 0): _slot(_critique(1.0, "  \n ")), ("g", 0): _slot(_critique(1.0, "line one\nline two"))}
    for key, slot in slots.items():
        slot.sample_id = key[0]
    planned = plan.plan_round(slots, settings, 1)
    assert planned == {"g": [{"index": 0, "prompt": "line one\nline two", "seed": 7, "draw": 0}]}
    assert {k[0]: s.outcome for k, s in slots.items() if not s.open} == {
        "a": plan.KEPT, "b": plan.NO_REQUEST, "c": plan.TOO_LONG, "d": plan.CRITIC_FAILED, "e": plan.BASE_FAILED,
        "f": plan.NO_REQUEST}


def test_best_of_keeps_the_earlier_image_unless_the_new_one_scores_higher() -> None:
    settings = plan.Settings("best-of", 100, new_seed=False, run_seed=0)
    for new_score, taken in ((0.5, False), (0.6, True)):
        slots = {("s", 0): _slot(_critique(2.0, score=0.5))}
        planned = plan.plan_round(slots, settings, 1)
        made = SampleResult("s", Label.none(), candidates=({"index": 0, "seed": 7, "path": "images/b.png"},))
        critique = SampleResult("s", Label.none(), trials=(Trial((0,), (_critique(4.0, score=new_score),), None),))
        plan.after_round(slots, planned, "round1", [made], [critique], settings, 1)
        slot = slots[("s", 0)]
        assert (slot.run == "round1") is taken
        assert slot.outcome == (plan.REGENERATED if taken else plan.KEPT_EARLIER)


def _scored(sample: str, score: float, category: str) -> SampleResult:
    return SampleResult(sample, Label.none(), trials=(Trial((0,), (Judgement(scores=(score,)),),
                                                            Prediction((score,))),), meta={"category": category})


def test_paired_gain_by_hand() -> None:
    protocol = Protocol(id="p", mode="pointwise", metrics=("mean-score",))
    base = [_scored("a", 0.5, "x"), _scored("b", 1.0, "x")]
    final = [_scored("a", 1.0, "x"), _scored("b", 1.0, "x")]
    gain = paired_gain(base, final, protocol, "mean-score", seed=3)
    assert (gain["base"], gain["final"], gain["gain"], gain["n_samples"]) == (0.75, 1.0, 0.25, 2)
    # A resample draws a twice (gain 0.5), b twice (0) or one of each (0.25): the CI lies within [0, 0.5] and,
    # with 1000 resamples, reaches both ends (each has probability 1/4).
    assert (gain["ci_low"], gain["ci_high"]) == (0.0, 0.5)


def test_judged_final_sets_are_the_papers_plus_pt_rows(tmp_path: Path) -> None:
    from rrbench.leaderboard.collect import RunEntry
    from rrbench.leaderboard.generation import generator_row

    summary = refine(tmp_path, *DEMO, "-G", "error_rate=0.25", "--accept", "rr-paper", "--rounds", "2")
    rows = [generator_row(RunEntry(tmp_path / name, json.loads((tmp_path / name / "run.json").read_text())))
            for name in summary["stages"]["judges"]]
    label = "painter (error_rate=0.25, period=4, size=256)"
    assert rows == [(label, "base"), (label, "+test-time refine (sanity-gen-critic) [rr-paper]"),
                    (label, "+test-time refine (sanity-gen-critic) [rr-paper, round 2]")]
    record = json.loads((tmp_path / summary["stages"]["judges"][1] / "run.json").read_text())
    record["source"]["generator"]["config"]["lora"] = "/ckpt/rl-step-400"
    record["source"]["refine"]["critic"] = "prompt-enhancer"
    assert generator_row(RunEntry(tmp_path, record))[1] == "+LoRA rl-step-400 +blind prompt enhancer [rr-paper]"


def test_the_report_shows_each_slot_side_by_side(tmp_path: Path) -> None:
    summary = refine(tmp_path, *DEMO, "-G", "error_rate=0.25", "-T", "images_per_prompt=1")
    page = next(tmp_path.glob("*__refine-*/report.html")).read_text()
    regenerated = [s for s in summary["slots"] if s["outcome"] == "regenerated"]
    assert regenerated and page.count("<section class='slot'>") == len(summary["slots"]) == 12
    # Each regenerated slot: two images (base, final) and its multi-line refined request, escaped.
    first = regenerated[0]
    assert first["history"][0]["request"].count("\n") >= 2
    assert first["history"][0]["request"].replace('"', "&quot;").split("\n")[0] in page
    assert page.count("<img class=\"thumb\"") == 2 * 12


def test_an_unreachable_critic_is_one_line_and_leaves_no_critique_run(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = cli.main(["refine", "--output", str(out), "--quiet", "--task", "sanity-gen", "-T", "n=4", "--generator",
                     "painter", "--critic", "rationalrewards-8b", "--base-url", "http://127.0.0.1:9/v1", "-M",
                     "served_model=x", "--model", "sanity-gen-judge"])
    assert code == 2
    assert "cannot reach http://127.0.0.1:9/v1" in capsys.readouterr().err.strip().splitlines()[-1]
    # The base set keeps what it made (resumable); the critique run that never started leaves no directory.
    assert [p.name.split("__")[1] for p in out.iterdir()] == ["gen-painter"]


def test_critique_stages_are_not_ranked_on_leaderboards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = refine(tmp_path, *DEMO, "-G", "error_rate=0.25", "-T", "n=4")
    assert cli.main(["leaderboard", str(tmp_path), "--out", str(tmp_path / "lb"), "--plots", "none"]) == 0
    said = capsys.readouterr()
    for critique in summary["stages"]["critiques"]:
        assert f"{critique}: a critique stage of rrbench refine" in said.out + said.err
    assert "sanity-gen-critic" not in (tmp_path / "lb" / "task-sanity-gen-v1-n=4.md").read_text()
