"""Official protocols against the official scorers' rules, end to end through `rrbench run`.

A generic VLM judge (``qwen3-vl-8b`` over HTTP) sends each benchmark's own judge prompt to a real ``transformers
serve`` of the tiny Qwen3-VL; the fault proxy (tests/fault_proxy.py) forwards every request and replaces the real
answer's text with a scripted one in the formats judges actually write (lowercase verdicts, restated options,
``[[A>>B]]``, extra text, JSON in code fences, empty answers), or injects a failure of a given kind. Each case names
the official file and line that decides it, and every expected number is worked out by hand from those lines, not
from rrbench's code.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import rrbench
from tests.fault_proxy import FaultProxy, Request
from tests.test_task_genai_bench import cell, photo, write_parquet

pytestmark = pytest.mark.slow

CASE = re.compile(r"case (c\d\d)")
# Scripted outcomes: a string is the answer's text; these names are failures the proxy injects instead.
HTTP, TIMEOUT = "<http 503>", "<timeout>"


def case_of(request: Request) -> str | None:
    found = CASE.search(request.body.decode("utf-8", "replace"))
    return found.group(1) if found else None


def scripted(answers: Mapping[str, str]) -> tuple[Callable[[Request], str | None], Callable[[Request], str | None]]:
    """(plan, answer) for the proxy: a failure or a replacement text per case, read from the request's prompt."""
    faults = {HTTP: "5xx", TIMEOUT: "timeout"}

    def plan(request: Request) -> str | None:
        return faults.get(answers.get(case_of(request) or "", ""))

    def answer(request: Request) -> str | None:
        text = answers.get(case_of(request) or "")
        return None if text is None or text in faults else text

    return plan, answer


def judge(tmp_path: Path, env: dict[str, str], vlm_server: str, tiny_vlm: Path, answers: Mapping[str, str],
          *args: str) -> tuple[dict[str, Any], list[Request]]:
    """One run of the generic judge through the proxy; its run.json and the requests it sent."""
    plan, answer = scripted(answers)
    tmp_path.mkdir(parents=True, exist_ok=True)
    with FaultProxy(vlm_server, plan, answer=answer, hold_s=12) as proxy:
        done = rrbench("run", "--model", "qwen3-vl-8b", "-M", f"served_model={tiny_vlm}", "-M", "max_tokens=4",
                       "-M", "max_retries=0", "-M", "timeout_s=8", "--base-url", proxy.url, "--quiet",
                       "--output", str(tmp_path / "runs"), *args, env=env, cwd=tmp_path, timeout=600)
        requests = [h.request for h in proxy.hits if h.request.method == "POST"]
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").exists()]
    return json.loads((run_dir / "run.json").read_text()), requests


def metric(record: Mapping[str, Any], name: str, failure_policy: str) -> dict[str, Any]:
    rows = [m for m in record["metrics"]["overall"] if m["metric"] == name and m["failure_policy"] == failure_policy]
    assert len(rows) == 1, rows
    return rows[0]


def value(record: Mapping[str, Any], name: str = "accuracy") -> tuple[float, float]:
    """(failures excluded, failures counted wrong)."""
    return metric(record, name, "excluded")["value"], metric(record, name, "wrong")["value"]


def user_text(request: Request) -> str:
    """The text parts of the request's user message, joined (what the judge was asked)."""
    body = json.loads(request.body)
    (user,) = [m for m in body["messages"] if m["role"] == "user"]
    return "".join(p["text"] for p in user["content"] if p["type"] == "text")


# --------------------------------------------------------------------------------------------------- GenAI-Bench

# TIGER-AI-Lab/GenAI-Bench inference.py: parse_response (lines 147-174) takes re.search(r"\[\[.*\]\]") of the answer
# (line 157; greedy, within one line) and compares the match as an exact string (lines 162-173); no match is wrong
# (line 159); accuracy is the mean over all rows (line 266), so a failed call is a wrong row too.
GENAI = [  # (vote_type, answer, right officially, right by rrbench's lenient reading)
    ("leftvote", "Image A follows the prompt better.\n\nFinal verdict: [[A>B]]", True, True),
    ("leftvote", "Final verdict: [[a>b]]", False, True),  # exact string: lowercase matches nothing
    # the first line with a [[...]] decides; the lenient reader takes the last verdict, the restated options' last
    ("rightvote", "[[B>A]]\n\nThe options were [[A>B]], [[B>A]], [[A=B=Good]], [[A=B=Bad]].", True, False),
    # one line holding several: the greedy match spans them all, an unknown string
    ("rightvote", "Options: [[A>B]] [[B>A]] [[A=B=Good]] [[A=B=Bad]]\nMy verdict: [[B>A]]", False, True),
    ("tievote", "Both are fine. [[A=B]]", True, True),  # a bare [[A=B]] is right for a tievote (line 169)
    ("bothbad_vote", "[[A=B=Bad]]", True, True),
    ("tievote", "[[A=B=Bad]]", False, False),
    ("leftvote", "[[A>>B]]", True, True),  # line 163
    ("leftvote", "I cannot decide.", False, False),  # no verdict: wrong officially, a parse failure for rrbench
    ("rightvote", HTTP, False, False),
    ("leftvote", "[[ A > B ]]", False, True),
    ("leftvote", "Verdict: [[B>A]], on reflection final [[A>B]]", False, True),
]


def genai_data(root: Path) -> Path:
    columns = {
        "prompt": [f"a photo for case c{i:02d}" for i in range(len(GENAI))],
        "left_model": ["m1"] * len(GENAI),
        "left_image": [cell("L", i) for i in range(len(GENAI))],
        "right_model": ["m2"] * len(GENAI),
        "right_image": [cell("D", i + 1) for i in range(len(GENAI))],
        "vote_type": [vote for vote, _, _, _ in GENAI],
    }
    write_parquet(root / "image_generation" / "test_v1-00000-of-00001.parquet", columns, ("left_image", "right_image"))
    return root


def test_genai_bench_official_reading(tmp_path: Path, cli_env: dict[str, str], vlm_server: str,
                                      tiny_vlm: Path) -> None:
    data = genai_data(tmp_path / "GenAI-Bench")
    answers = {f"c{i:02d}": text for i, (_, text, _, _) in enumerate(GENAI)}
    record, requests = judge(tmp_path / "official", cli_env, vlm_server, tiny_vlm, answers,
                             "--task", "genai-bench-t2i", "--data", str(data))
    official_right = sum(right for _, _, right, _ in GENAI)
    assert official_right == 5
    # failures counted wrong (the official headline): 5 of all 12 rows; the failed call excluded: 5 of 11
    assert value(record) == pytest.approx((5 / 11, 5 / 12))
    assert record["protocol"]["failure_policy"] == "wrong" and record["task"]["version"] == "2"
    notes = metric(record, "accuracy", "wrong")["extra"]
    # readings that differ: rows 1, 2, 3, 10 and 11 (row 8, no verdict either way, agrees)
    assert (notes["answers_read"], notes["lenient_reading_differs"]) == (11, 5)
    # the official template went out (genaibench/templates/image_generation/pairwise.txt), request filled in
    sent = user_text(requests[0])
    assert sent.startswith("Please act as an impartial judge") and "4. Both are bad: [[A=B=Bad]]" in sent
    assert re.search(r"Text prompt: a photo for case c\d\d\nModel A Generated Image: ", sent)
    assert list(record["model"]["prompts"]) == ["genai-bench/verdict-t2i@1"]  # recorded with its source
    assert record["model"]["prompts"]["genai-bench/verdict-t2i@1"]["commit"].startswith("f0b0334")

    # The lenient reading is a named alternative, on the same answers (the response cache spares the calls; the
    # failed call is retried and fails again).
    lenient, _ = judge(tmp_path / "lenient", cli_env, vlm_server, tiny_vlm, answers, "--task", "genai-bench-t2i",
                       "--data", str(data), "--protocol", "genai-bench-4way-lenient")
    lenient_right = sum(right for _, _, _, right in GENAI)
    assert lenient_right == 8
    # row 8's answer has no verdict: a parse failure under the lenient reading, so excluded there
    assert value(lenient) == pytest.approx((8 / 10, 8 / 12))


# --------------------------------------------------------------------------------------------------- EditReward

# TIGER-AI-Lab/EditReward EditReward/evaluate/inference_2pair_hf.py: a failed call returns None and is dropped
# (lines 121-122, 157-159, 324); parse_pairwise_response (lines 48-100) reads the answer; the vote must equal the
# row's ranking string (line 130); accuracy = right / answered rows (line 327).
EDITREWARD_K2 = [  # (ranking, answer, right officially)
    ("A>B", "[[A>B]]", True),
    ("A>B", HTTP, None),  # dropped
    ("A>B", "I cannot decide.", False),  # no pattern, no tie word ("cannot" is not "can't"): Unknown, wrong
    ("B>A", "Model B did the edit. [[B>A]]", True),
    ("A=B", "Both images are of equal quality.", True),  # tie fallback (line 89): "equal" -> A=B
    ("A=B=Good", "[[A=B]]", False),  # exact string: "A=B" != "A=B=Good"
    ("B<A", "[[A>B]]", False),  # exact string: "A>B" != "B<A"
    ("A>B", "[[A>>B]]", False),  # "A>>B" holds no known vote, the loop breaks (line 78): Unknown
    ("A=B", "They look nearly the same to me. [[A>>B]]", True),  # ... and then "same" reads as A=B
    ("A>B", "Image a is better than b.", True),  # "a is better" (line 81)
    ("B>A", TIMEOUT, None),  # dropped
    ("A>B", "", False),  # an empty answer is an answer: Unknown, wrong
]

# inference_3pair_hf.py: answers read against comparison_type (lines 50-137); groups formed from the answered rows
# (lines 392-395), right when all 3 comparisons are there and right (line 402); total = groups with an answered row.
EDITREWARD_K3 = {  # group -> relations of AvsB, AvsC, BvsC and the three answers
    "g1": (("A>B", "A>C", "B>C"), ("[[Left>Right]]", "[[Left>Right]]", "After comparing: [[Left>Right]]")),
    "g2": (("A>B", "C>A", "C>B"), ("[[Left>Right]]", "[[Right>Left]]", "The right image is better.")),
    "g3": (("A>B", "A>C", "B>C"), ("[[Left>Right]]", HTTP, "[[Left>Right]]")),  # one call failed: short, wrong
    "g4": (("A>B", "A>C", "B>C"), (HTTP, TIMEOUT, HTTP)),  # every call failed: not a group of the scorer
    "g5": (("B>A", "C>A", "B>C"), ("[[A>B]]", "Overall C is better.", "[[Left>Right]]")),  # letters read as letters
}


def editreward_data(root: Path) -> Path:
    from tests.test_task_editreward_bench import hub_row
    from tests.test_task_editreward_bench import write_parquet as write_er

    pairs = [hub_row(f"p{i:02d}", "2pair", ranking, "AvsB", 12, 9) for i, (ranking, _, _) in enumerate(EDITREWARD_K2)]
    for i, row in enumerate(pairs):
        row["instruction"] = f"edit for case c{i:02d}"
    write_er(root / "2pair" / "train-00000-of-00001.parquet", pairs)
    rows, n = [], 0
    for gid, (relations, _) in EDITREWARD_K3.items():
        for (first, second), relation in zip(("AB", "AC", "BC"), relations, strict=True):
            row = hub_row(f"{gid}_{first}vs{second}", "3pair", relation, f"{first}vs{second}", 12, 9)
            row["instruction"] = f"edit for case c{n:02d}"
            rows.append(row)
            n += 1
    write_er(root / "3pair" / "train-00000-of-00001.parquet", rows)
    return root


def test_editreward_k2_official_rule(tmp_path: Path, cli_env: dict[str, str], vlm_server: str,
                                     tiny_vlm: Path) -> None:
    data = editreward_data(tmp_path / "EditReward-Bench")
    answers = {f"c{i:02d}": text for i, (_, text, _) in enumerate(EDITREWARD_K2)}
    record, requests = judge(tmp_path / "k2", cli_env, vlm_server, tiny_vlm, answers, "--task", "editreward-bench",
                             "--data", str(data))
    right = sum(1 for _, _, r in EDITREWARD_K2 if r)
    answered = sum(1 for _, _, r in EDITREWARD_K2 if r is not None)
    assert (right, answered) == (5, 10)
    # the official accuracy: 5 / 10 answered rows; with the two failed calls counted wrong: 5 / 12
    assert value(record) == pytest.approx((5 / 10, 5 / 12))
    assert record["protocol"]["tie_policy"] == "editreward-exact" and record["protocol"]["failure_policy"] == "excluded"
    row = metric(record, "accuracy", "excluded")
    assert row["failed_by_kind"] == {"http": 1, "timeout": 1}  # the unreadable answers are judged, not failed
    sent = user_text(requests[0])  # EditReward/evaluate/genaibench/templates/image_edition/pairwise_2pair.txt
    assert "3. Tie, relatively the same quality: [[A=B]]" in sent and "Editing instruction: edit for case c" in sent

    # The smallest case, alone: three A>B rows answered [[A>B]], a failed call, "I cannot decide" -> 0.5
    smallest = tmp_path / "smallest"
    from tests.test_task_editreward_bench import hub_row
    from tests.test_task_editreward_bench import write_parquet as write_er

    rows = [hub_row(f"s{i}", "2pair", "A>B", "AvsB", 12, 9) for i in range(3)]
    for i, r in enumerate(rows):
        r["instruction"] = f"edit for case c{i:02d}"
    write_er(smallest / "data" / "2pair" / "train-00000-of-00001.parquet", rows)
    small, _ = judge(smallest, cli_env, vlm_server, tiny_vlm, {"c00": "[[A>B]]", "c01": HTTP, "c02": "I cannot decide"},
                     "--task", "editreward-bench", "--data", str(smallest / "data"))
    assert value(small) == pytest.approx((0.5, 1 / 3))


def test_editreward_k3_official_groups(tmp_path: Path, cli_env: dict[str, str], vlm_server: str,
                                       tiny_vlm: Path) -> None:
    data = editreward_data(tmp_path / "EditReward-Bench")
    answers = {}
    n = 0
    for _, texts in EDITREWARD_K3.values():
        for text in texts:
            answers[f"c{n:02d}"] = text
            n += 1
    record, requests = judge(tmp_path / "k3", cli_env, vlm_server, tiny_vlm, answers, "--task", "editreward-bench",
                             "-T", "k=3", "--data", str(data))
    # Per comparison (lines 160-170): g1 A>B, A>C, B>C from Left>Right, all right; g2 A>B right, Right>Left of
    # AvsC -> C>A right, "right image is better" (line 120) -> C>B right; g3 A>B right, AvsC failed, B>C right;
    # g4 every call failed; g5 "[[A>B]]" is the letter relation A>B vs B>A wrong, "C is better" (line 107) on
    # AvsC -> C>A right, Left>Right of BvsC -> B>C right.
    # Groups of the answered rows: g1 right, g2 right, g3 short (2 of 3) wrong, g5 wrong; g4 is no group -> 2 / 4.
    # With failures counted wrong g4 joins the denominator: 2 / 5.
    assert value(record, "group-accuracy") == pytest.approx((2 / 4, 2 / 5))
    # Comparisons: 10 right of 11 answered; of all 15 rows with the 4 failed calls counted wrong: 10 / 15.
    assert value(record, "accuracy") == pytest.approx((10 / 11, 10 / 15))
    sent = [user_text(r) for r in requests]  # pairwise_3pair.txt with the row's comparison type
    assert any("This is a AvsC comparison:\nLeft Image: " in t and "For AvsC:" in t for t in sent)


# --------------------------------------------------------------------------------------------------- MMRB2

# facebookresearch/MMRB2: the judge's JSON answer is read by parse_llm_json (api_pairwise_evaluator.py lines
# 59-75: code fence removed, json_repair.loads) and parsed["better_response"] (line 119); an exception drops the
# judgement (evaluate.py lines 139-146). compute_accuracy.py lines 88-103: an order counts when its judgement is
# truthy; the reverse judgement is flipped; right when equal to chosen.
MMRB2 = {  # pair -> chosen, forward answer, reverse answer (reverse = B shown first)
    "c00": ("A", '{"reasoning": {"overall_quality": "A is sharper"}, "score": 5, "better_response": "A", '
                 '"confidence": 0.4}', '```json\n{"better_response": "B", "score": 2}\n```'),
    "c01": ("B", '{"better_response": "a"}', '{"better_response": "Response A"}'),  # evaluated, both wrong
    "c02": ("A", '{"better_response": ""}', "I prefer the first image."),  # neither counts
    "c03": ("B", 'Here is my judgement: {"better_response": "B", "score": 2', HTTP),  # repaired JSON: right
}


def mmrb2_data(root: Path) -> tuple[Path, dict[str, bytes]]:
    ids = list(MMRB2)
    columns = {
        "pair_id": ids,
        "prompt_text": [f"a photo for case {pid}" for pid in ids],
        "prompt_images": [[] for _ in ids],
        "response_a_text": ["" for _ in ids], "response_b_text": ["" for _ in ids],
        "response_a_images": [[cell("L", i)] for i in range(len(ids))],
        "response_b_images": [[cell("D", i + 1)] for i in range(len(ids))],
        "chosen": [MMRB2[pid][0] for pid in ids],
        "prompt_source": ["x" for _ in ids], "response_a_model": ["m1" for _ in ids],
        "response_b_model": ["m2" for _ in ids], "human_annotations": ["{}" for _ in ids],
        "prompt_metadata": ["{}" for _ in ids],
    }
    write_parquet(root / "t2i" / "test-00000-of-00001.parquet", columns,
                  image_lists=("prompt_images", "response_a_images", "response_b_images"))
    first_images = {pid: photo("L", i) for i, pid in enumerate(ids)}
    return root, first_images


def test_mmrb2_official_json_answers(tmp_path: Path, cli_env: dict[str, str], vlm_server: str,
                                     tiny_vlm: Path) -> None:
    data, a_images = mmrb2_data(tmp_path / "mmrb2")

    def forward(request: Request) -> bool:
        """Whether response A's image is shown first (the forward order)."""
        pid = case_of(request)
        assert pid is not None
        text = request.body.decode()
        # the last "[RESPONSE B:]" is the separator part (the rubric names it earlier)
        return text.find(base64.b64encode(a_images[pid]).decode()) < text.rfind("[RESPONSE B:]")

    def answer(request: Request) -> str | None:
        pid = case_of(request)
        text = MMRB2[pid][1 if forward(request) else 2] if pid else None
        return None if text in (HTTP, TIMEOUT) else text

    def plan(request: Request) -> str | None:
        pid = case_of(request)
        return "5xx" if pid and MMRB2[pid][1 if forward(request) else 2] == HTTP else None

    with FaultProxy(vlm_server, plan, answer=answer, hold_s=10) as proxy:
        done = rrbench("run", "--model", "qwen3-vl-8b", "-M", f"served_model={tiny_vlm}", "-M", "max_tokens=4",
                       "-M", "max_retries=0", "--base-url", proxy.url, "--quiet", "--task", "mmrb2-t2i",
                       "--data", str(data), "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path,
                       timeout=600)
        sent = [h.request for h in proxy.hits if h.request.method == "POST"]
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").exists()]
    record = json.loads((run_dir / "run.json").read_text())
    # Evaluated orders: c00 forward A right, reverse B flipped to A right; c01 "a" and "Response A" (flipped stays)
    # both evaluated and wrong; c02 neither ("" is falsy; the sentence parses to "" -> a TypeError, dropped);
    # c03 forward repaired to "B" right, reverse failed -> 3 right of 5 evaluated. Counted wrong: 3 of 8 trials.
    assert value(record) == pytest.approx((3 / 5, 3 / 8))
    assert record["protocol"]["tie_policy"] == "mmrb2" and record["protocol"]["order"] == "both"
    parts = json.loads(sent[0].body)["messages"][-1]["content"]
    texts = [p["text"] for p in parts if p["type"] == "text"]
    # evaluation_prompts.py get_image_gen_prompt, then api_pairwise_evaluator.py lines 103-109, one part each
    assert texts[0].startswith("You are an expert in multimodal quality analysis") and texts[1:] == [
        "[ORIGINAL PROMPT TO MODEL:]", texts[2], "[RESPONSE A:]", "[RESPONSE B:]"]
    assert texts[2].startswith("a photo for case c0")
