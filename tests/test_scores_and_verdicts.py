"""Parsing never invents a judgement, and no score rule touches a verdict.

- A critique score written as NaN, an infinity or beyond float range fails the answer; a finite number out of range
  (1e308, 2.5e1 = 25) is clamped and flagged; pairwise and pointwise answers are read alike.
- A model's non-finite score is a failure of that sample, and the sample log stays strict JSON (no NaN tokens).
- Verdicts keep their class under every rule with a score knob (epsilon, threshold, tie split), even when an old
  log stored made-up scores next to them.
- ``rescore --na`` on a run without critique aspects is a user error; the paper protocol's N/A rule is 2.5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rrbench import metrics
from rrbench.models import _rationalrewards_format as rr
from rrbench.protocols.pairwise import protocol_scores
from rrbench.types import FailureKind, Judgement, Label, LabelKind, Prediction, Protocol, Trial, Verdict
from tests.conftest import rrbench

TF, PVQ, TR = rr.T2I_ASPECTS


def pairwise_answer(score_a: str) -> str:
    return (
        "# Detailed Judgement\n"
        f"1. Text Faithfulness:\n## Justification: fine\n## Score A: {score_a}\n## Score B: 3\n## Winner: Image A\n"
        "2. Physical and Visual Quality:\n## Score A: 3\n## Score B: 3\n## Winner: tie\n"
        "3. Text Rendering:\n## Score A: N/A\n## Score B: N/A\n## Winner: N/A\n# Summary: close.\n"
    )


def pointwise_answer(score: str) -> str:
    return (
        "# Detailed Judgement\n"
        f"1. Text Faithfulness:\n## Justification: fine\n## Score: {score}\n"
        "2. Physical and Visual Quality:\n## Justification: ok\n## Score: 3\n"
        "3. Text Rendering:\n## Justification: none asked\n## Score: N/A\n# Summary: fine.\n"
    )


@pytest.mark.parametrize("written", ["NaN", "nan", "inf", "-inf", "Infinity", "1e999", "**NaN**"])
def test_a_score_that_is_no_number_fails_the_answer_in_both_modes(written: str) -> None:
    pair = rr.parse_pairwise(pairwise_answer(written), "t2i")
    single = rr.parse_pointwise(pointwise_answer(written), "t2i")
    for parsed in (pair, single):
        assert parsed.error is not None and "not a number" in parsed.error, parsed
        judgement = rr.judgement_from(parsed)
        assert judgement.failure is not None and judgement.scores == ()  # never a tie of two made-up sums


@pytest.mark.parametrize(("written", "read"), [("1e308", 4.0), ("2.5e1", 4.0), ("3e-1", 1.0), ("3.5", 3.5)])
def test_finite_scores_out_of_range_are_clamped_and_flagged_alike(written: str, read: float) -> None:
    pair = rr.parse_pairwise(pairwise_answer(written), "t2i")
    single = rr.parse_pointwise(pointwise_answer(written), "t2i")
    assert pair.ok and single.ok
    assert pair.aspects[0][TF] == read and single.aspects[0][TF] == read
    clamped = read != float(written)
    assert ("clamped:Text Faithfulness:A" in pair.flags) is clamped
    assert ("clamped:Text Faithfulness" in single.flags) is clamped
    assert rr.parse_value("2.5e1") == (True, 25.0)  # the exponent is read, not dropped (2.5e1 is not 2.5)


def test_non_finite_model_scores_are_failures_and_the_log_stays_strict_json(tmp_path: Path,
                                                                            cli_env: dict[str, str]) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "non-finite", "-T", "n=24", "-T", "size=32", "--quiet",
                   "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())

    def refuse(token: str) -> float:
        raise AssertionError(f"non-standard JSON token {token} in the sample log")

    lines = [json.loads(line, parse_constant=refuse) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    failed = [s for s in lines if s.get("failure")]
    assert failed and all(s["failure"] == "error" for s in failed)
    details = {j["failure_detail"] for s in failed for t in s["trials"] for j in t["judgements"] if "failure" in j}
    assert all("non-finite score" in d for d in details), details
    for s in lines:
        for trial in s["trials"]:
            for v in (trial.get("prediction") or {}).get("scores", []):
                assert v is None or math.isfinite(v)
    record = json.loads((run_dir / "run.json").read_text(), parse_constant=refuse)
    assert record["counts"]["failed"] == len(failed) and record["counts"]["failed_by_kind"] == {"error": len(failed)}


# --------------------------------------------------------------------------------------------------- verdicts

KNOB_RULES = ("tie-calibrated", "pickapic", "genai-4way", "editreward-ties")


@pytest.mark.parametrize("rule", KNOB_RULES)
@pytest.mark.parametrize("knob", [0.0, 0.5, 1.0, 10.0])
def test_no_score_rule_turns_a_verdict_into_a_tie(rule: str, knob: float) -> None:
    a, b = Label.win(0, original="A>B"), Label.win(1, original="B>A")
    for scores in ((None, None), (0.5, 0.5), (1.0, 0.0)):  # none, or the made-up scores older logs hold
        assert metrics.pair_credit(a, Prediction(scores, Verdict.A), rule, knob=knob, meta={"ranking": "A>B"}) == 1.0
        assert metrics.pair_credit(b, Prediction(scores, Verdict.A), rule, knob=knob, meta={"ranking": "B>A"}) == 0.0
    # and a tie verdict stays a tie against a human tie, whatever the knob
    tie = Label.tie(LabelKind.TIE, original="A=B")
    credit = metrics.pair_credit(tie, Prediction((0.0, 1.0), Verdict.TIE), rule, knob=knob, meta={"ranking": "A=B"})
    assert credit == (1.0 if rule != "editreward-ties" else 0.0)  # eval_bench.py reads a plain "A=B" as A first


def test_a_verdict_judge_scores_the_same_under_every_knob_rule(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """always-first answers "A" everywhere: a tie-calibrated epsilon of 1 once made every one of its verdicts a tie
    (its made-up scores 1 and 0 were 1 apart); a verdict must stay a verdict, so accuracy is 50% on the balanced
    sanity task under exact and tie-calibrated alike."""
    values = {}
    for rule in ("exact", "tie-calibrated", "pickapic"):
        out = tmp_path / rule
        out.mkdir()
        done = rrbench("run", "--task", "sanity", "--model", "always-first", "-T", "n=20", "-T", "size=32",
                       "--tie-policy", rule, "--quiet", "--output", str(out / "runs"), env=cli_env, cwd=out)
        assert done.returncode == 0, done.stderr
        record = json.loads(next((out / "runs").iterdir()).joinpath("run.json").read_text())
        values[rule] = record["metrics"]["overall"][0]["value"]
    assert values == {"exact": 0.5, "tie-calibrated": 0.5, "pickapic": 0.5}


# --------------------------------------------------------------------------------------------------- N/A rules


def test_rescore_na_refuses_a_run_without_critique_aspects(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "classical-iqa", "-T", "n=6", "-T", "size=32", "--quiet",
                   "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    for flag in (("--na", "2.5"), ("--aggregation", "pairwise-sum/v1")):
        refused = rrbench("rescore", str(run_dir), *flag, env=cli_env, cwd=tmp_path)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "recorded none" in refused.stderr and "Traceback" not in refused.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name]  # nothing written


def test_the_paper_protocol_counts_na_as_2_5() -> None:
    # A pairwise critique: TF 3 vs 3, PVQ 3 vs 4, Text Rendering N/A for A and 1 for B.
    critique = Judgement(aspects=({TF: 3.0, PVQ: 3.0, TR: None}, {TF: 3.0, PVQ: 4.0, TR: 1.0}), scores=(6.0, 7.0))
    paper = Protocol(id="rationalrewards-paper", options={"na": "2.5"})
    # modular_rm_eval/scoring.py lines 25-29: N/A counts 2.5 -> A 3 + 3 + 2.5 = 8.5, B 3 + 4 + 1 = 8: A wins
    assert protocol_scores(critique, paper, model=None).scores == (8.5, 8.0)  # type: ignore[arg-type]
    # the protocol without an N/A rule keeps the model's own scores
    assert protocol_scores(critique, Protocol(), model=None).scores == (6.0, 7.0)  # type: ignore[arg-type]
    for name in ("genai-bench-t2i", "mmrb2-edit", "editreward-bench"):
        from rrbench import registry

        task = registry.get("task", name).build()
        assert task.alternatives["rationalrewards-paper"].options["na"] == "2.5", name


def test_trial_credit_reads_a_failed_verdict_answer_under_an_official_text_rule() -> None:
    # EditReward-Bench K=2, the official rule: "I cannot decide" is an answer (Unknown, wrong), not a failure; a
    # failed call (no text) has no credit at all.
    answered = Judgement.failed(FailureKind.PARSE, "no verdict", raw="I cannot decide",
                                prompt="editreward-bench/verdict-edit-2pair@1")
    meta = {"ranking": "A>B", "dataset": "2pair"}
    label = Label.win(0, original="A>B")
    trial = Trial((0, 1), (answered,), None, answered.failure)
    assert metrics.pair_credit(label, trial, "editreward-exact", meta=meta) == 0.0
    failed = Judgement.failed(FailureKind.HTTP, "503", prompt="editreward-bench/verdict-edit-2pair@1")
    assert metrics.pair_credit(label, Trial((0, 1), (failed,), None, failed.failure), "editreward-exact",
                               meta=meta) is None

