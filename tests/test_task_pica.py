"""PICA-Bench (`pica-bench`) end to end: its official judge's parse, image and failure rules, its aggregation, and
runs through the real CLI against a scripted OpenAI-compatible judge.

Official code: github.com/Andrew0613/PICABench at 0514acd (``PicaEval_gpt.py``, ``prepare_meta_info.py``); each
expectation below is worked out by hand from the cited lines. The data is a 4-case copy in the hub schema
(tests/fixtures/pica_copy.py): case 0 Optics/Reflection (3 questions, truths No, Yes, Yes), case 1 Optics/Refraction
(Yes, No; the second box lies below a 64x48 image's 1024x768 resize), case 2 Mechanics/Deformation (Yes, Yes, an
unasked pair without a question, No), case 3 State Transition/Global (Yes).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from rrbench import cli, registry
from rrbench.tasks import judge_pica as jp
from rrbench.types import UserError
from tests import tiny_diffusers
from tests.fixtures.pica_copy import photo, write_copy
from tests.judge_server import Reply, Request, ScriptedJudge

INSTRUCTION = jp.JSON_INSTRUCTION


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return write_copy(tmp_path / "copy")


def question(request: Request) -> str:
    text = request.texts[0]
    assert text.endswith(INSTRUCTION)
    return text[: -len(INSTRUCTION)]


# Scripted answers in the formats the parse rule meets. Per case, by hand (PicaEval_gpt.py:170-210, 338-340):
# case 0: JSON No (truth No: right), bare "Yes" (prefix, right), "No, ..." (prefix No, truth Yes: wrong) -> 2/3
# case 1: fenced JSON "yes." (normalised Yes, right), "There is no water." (word no, truth No: right) -> 2/2
# case 2: "I cannot tell." (no yes/no word: "I cannot t", wrong), JSON "true" (normalised Yes, right),
#         "Is the floor wet?" gets HTTP 500 (a failed call: "Error: all attempts failed", wrong) -> 1/3
# case 3: its image is missing from the folder -> never asked, a data failure
ANSWERS = {
    "Is a cup visible in the mirror?": '{"answer": "No", "explanation": "no cup"}',
    "Is the mirror frame intact?": "Yes",
    "Does the shadow fall to the left?": "No, the shadow falls right.",
    "Is the straw bent at the water surface?": '```json\n{"answer": "yes.", "explanation": "bent"}\n```',
    "Is the glass empty?": "There is no water.",
    "Is the cushion dented under the cat?": "I cannot tell.",
    "Is the sofa unchanged elsewhere?": '{"answer": "true", "explanation": "same"}',
    "Is the floor wet?": None,
    "Is the snow melted?": '{"answer": "Yes", "explanation": "melted"}',
}


def scripted(request: Request) -> str | Reply:
    text = ANSWERS[question(request)]
    return Reply(status=500, text="boom") if text is None else text


def images(folder: Path, cases: tuple[int, ...] = (0, 1, 2), sizes: tuple[tuple[int, int], ...] = ((64, 48),) * 4
           ) -> Path:
    """Edited images in the official layout ({index:05d}.jpg), photographs of the given sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in cases:
        Image.open(io.BytesIO(photo(i + 1, sizes[i]))).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def run(copy: Path, source: Path, out: Path, url: str, *extra: str) -> dict[str, Any]:
    assert cli.main(["run", "--task", "pica-bench", "--data", str(copy), "--images", str(source), "--model",
                     "gpt-4.1", "--base-url", url, "-M", "max_retries=0", "--output", str(out), "--quiet",
                     *extra]) == 0
    return json.loads((next(out.iterdir()) / "run.json").read_text())


def metric(record: dict[str, Any], policy: str = "excluded") -> dict[str, Any]:
    rows = [m for m in record["metrics"]["overall"] if m["failure_policy"] == policy]
    assert len(rows) == 1 and rows[0]["metric"] == "pica-accuracy"
    return rows[0]


# --------------------------------------------------------------------------------------------------- parse


@pytest.mark.parametrize("response, expected", [
    # JSON first (PicaEval_gpt.py:170-190), answers normalised (:161-167)
    ('{"answer": "Yes", "explanation": "a"}', ("Yes", "a", "json")),
    ('```json\n{"answer": "no.", "explanation": "fenced"}\n```', ("No", "fenced", "json")),
    ('{"answer": "Y", "explanation": "short"}', ("Yes", "short", "json")),
    ('{"answer": "Maybe", "explanation": "unsure"}', ("Maybe", "unsure", "json")),  # out of range: kept, wrong
    ('[{"answer": "No"}]', ("No", "", "json")),  # the outermost braces hold an object: read
    # a non-string answer ends the JSON stage (the outer except, :188): the words decide
    ('{"answer": true, "explanation": "x"} yes', ("Yes", "", "word")),
    # an empty answer is passed over (:184); no other candidate; then the words: "no" as a word
    ('{"answer": "", "explanation": "x"} No', ("No", "", "word")),
    # keys are case-sensitive: "Answer" gives "" (:182); the lower-cased text holds the word yes
    ('{"Answer": "Yes", "Explanation": "x"}', ("Yes", "", "word")),
    # truncated JSON: no closing brace, so no candidate; the word yes inside decides
    ('{"answer": "Yes", "expla', ("Yes", "", "word")),
    # prefixes before words (:195-198): "Nothing" starts with "no", "Yesterday" with "yes"
    ("Nothing is reflected.", ("No", "", "prefix")),
    ("Yesterday's shadow", ("Yes", "", "prefix")),
    ("Yes and no", ("Yes", "", "prefix")),
    ("The answer is NO", ("No", "", "word")),
    ("I see yes and no", ("Yes", "", "word")),  # \byes\b is tried before \bno\b (:199-202)
    # nothing readable: the first 10 characters (:203), "Unknown" for nothing
    ("Oui, le reflet est visible.", ("Oui, le re", "", "none")),
    ("", ("Unknown", "", "none")),
    (jp.FAILED_RESPONSE, ("Error: all", "", "none")),  # a failed call (:271)
])
def test_the_official_parse_rule(response: str, expected: tuple[str, str, str]) -> None:
    parsed = jp.parse(response)
    assert (parsed.answer, parsed.explanation, parsed.rule) == expected


@pytest.mark.parametrize("truth, answer, right", [
    ("Yes", "Yes", True), ("yes.", "Yes", True), ("No", "no", True),  # lower-cased, trailing dots off (:338-340)
    ("No", "Maybe", False), ("No", "Error: all", False), ("Yes", "Unknown", False),
])
def test_correctness_compares_lower_case_without_trailing_dots(truth: str, answer: str, right: bool) -> None:
    assert jp.is_correct(truth, answer) is right


# --------------------------------------------------------------------------------------------------- image


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image


def test_the_crop_is_resized_twice_as_the_official_visualization_file_is_reread() -> None:
    # A 49x49 image: resize_image (:95-103) gives int(49 * (1024/49)) = int(1023.9999999999999) = 1023 px.
    full = jp.resize_long_edge(Image.new("RGB", (49, 49), (200, 10, 10)))
    assert full.size == (1023, 1023)
    # Box x=100, y=100, 9x4 on that canvas, padding 20 (:106-115): (80, 80, 129, 124), a 49x44 crop; resized:
    # int(49 * 1024/49) = 1023, int(44 * 1024/49) = int(919.51) = 919; saved, reread and resized again
    # (:150-154, 225-226): int(1023 * 1024/1023) = 1024, int(919 * 1024/1023) = int(919.898) = 919.
    data, cropped = jp.sent_image(full, {"x": 100.0, "y": 100.0, "width": 9.0, "height": 4.0})
    assert cropped and decoded(data).size == (1024, 919)


def test_a_box_past_the_image_sends_the_whole_resized_image() -> None:
    # 64x48 -> 1024x768 (scale 16); a box at y=900: upper 880 > lower min(768, 1020) -> Pillow raises, the
    # official except (:156-158) falls back to the output image itself, resized and encoded once (:316, 221-232).
    full = jp.resize_long_edge(Image.open(io.BytesIO(photo(1, (64, 48)))).convert("RGB"))
    assert full.size == (1024, 768)
    data, cropped = jp.sent_image(full, {"x": 600.0, "y": 900.0, "width": 100.0, "height": 100.0})
    assert not cropped and decoded(data).size == (1024, 768)
    # a QA without a box (qa.get("box", {}) is None): the same fallback
    data, cropped = jp.sent_image(full, None)
    assert not cropped and decoded(data).size == (1024, 768)


def test_a_box_at_the_corner_is_clamped_to_the_image() -> None:
    # Box x=10, y=20, 30x40 on a 1024x768 image: (max(0, -10), max(0, 0), min(1024, 60), min(768, 80)) =
    # (0, 0, 60, 80): 60x80, long edge to 1024: scale 12.8, int(60 * 12.8) = 768 -> 768x1024.
    full = Image.new("RGB", (1024, 768), (0, 0, 0))
    data, cropped = jp.sent_image(full, {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0})
    assert cropped and decoded(data).size == (768, 1024)


# --------------------------------------------------------------------------------------------------- runs


def test_a_judged_folder_gives_the_official_numbers(copy: Path, tmp_path: Path) -> None:
    folder = images(tmp_path / "edited")  # case 3's image is missing
    with ScriptedJudge(scripted) as server:
        record = run(copy, folder, tmp_path / "judged", server.url)
        asked = list(server.requests)
    # 3 + 2 + 3 questions (case 2's pair without a question is never asked, :313); each one request with
    # max_retries=0: 8. One user message: the question + the JSON instruction, then the image, as JPEG.
    assert len(asked) == 8
    for request in asked:
        assert request.roles == ["user"] and request.parts[1:] == ["<image>"]
        assert [i.mime for i in request.images] == ["image/jpeg"]
        assert "temperature" not in request.body and "max_tokens" not in request.body  # :259-262 sets neither
    assert {question(r) for r in asked} == set(ANSWERS) - {"Is the snow melted?"}
    excluded, wrong = metric(record), metric(record, "wrong")
    # Case accuracies 2/3, 2/2, 1/3 (see ANSWERS); case 3 never judged: excluded, as prepare_meta_info.py leaves
    # an image-less case out (:186-189). Official overall = 100 * (2/3 + 1 + 1/3) / 3 (PicaEval_gpt.py:514).
    assert excluded["extra"]["official_overall"] == 100.0 * (2 / 3 + 1.0 + 1 / 3) / 3
    assert excluded["value"] == pytest.approx(2 / 3)
    assert wrong["value"] == pytest.approx((2 / 3 + 1.0 + 1 / 3 + 0.0) / 4)
    assert excluded["extra"]["qa_total"] == 8 and excluded["extra"]["sample_count"] == 3
    laws = excluded["extra"]["by_law"]
    assert {k: v["accuracy"] for k, v in laws.items()} == pytest.approx(
        {"Reflection": 100 * 2 / 3, "Refraction": 100.0, "Deformation": 100 * 1 / 3})
    assert excluded["extra"]["by_category"]["Optics"]["accuracy"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    # the leaderboard's per-dimension table reads the same numbers as fractions
    assert excluded["extra"]["breakdown"]["law"] == pytest.approx(
        {"Reflection": 2 / 3, "Refraction": 1.0, "Deformation": 1 / 3})
    assert excluded["extra"]["by_category"]["Optics"]["qa_total"] == 5
    # coverage: case 2 had a failed call (counted wrong, and listed), case 3 no image
    assert excluded["failed_by_kind"] == {"data": 1, "http": 1} and excluded["n_scored"] == 3
    assert excluded["extra"]["failed_calls_counted_wrong"] == {"http": 1}
    judge = record["judge"]
    assert judge["substitute"] is True and judge["official_judges"] == ["gpt-5"]
    assert judge["judge_protocol"]["source"]["commit"] == jp.COMMIT


def test_the_exported_answers_are_what_picaeval_gpt_writes(copy: Path, tmp_path: Path) -> None:
    folder = images(tmp_path / "edited")
    with ScriptedJudge(scripted) as server:
        run(copy, folder, tmp_path / "judged", server.url)
    assert cli.main(["export", str(next((tmp_path / "judged").iterdir())), str(tmp_path / "answers")]) == 0
    items = json.loads((tmp_path / "answers" / jp.OUTPUT_FILE).read_text(encoding="utf-8"))
    assert [item["index"] for item in items] == [0, 1, 2]  # case 3 has no image: not in meta_info.json
    first, second = items[0]["annotated_qa_pairs"], items[1]["annotated_qa_pairs"]
    assert first[2]["model_answer"] == "No" and first[2]["is_correct"] is False
    assert first[0]["visualization_path"] == ("visualization_annotated_qa_crop_box_and_resize/"
                                              "0000_annotated_qa_000_crop_box_and_resize.jpg")  # :118-120, 356
    assert "visualization_path" not in second[1]  # the whole-image fallback has none (:355)
    failed = items[2]["annotated_qa_pairs"][3]
    assert failed["model_response"] == "Error: all attempts failed" and failed["model_answer"] == "Error: all"
    assert "is_correct" not in items[2]["annotated_qa_pairs"][2]  # never asked
    analysis = json.loads((tmp_path / "answers" / jp.ANALYSIS_FILE).read_text(encoding="utf-8"))
    assert analysis["overall_accuracy"] == 100.0 * (2 / 3 + 1.0 + 1 / 3) / 3 and analysis["qa_total"] == 8


def test_a_judge_that_dies_mid_run_is_resumed_without_asking_again(copy: Path, tmp_path: Path) -> None:
    def steady(request: Request) -> str:
        return ANSWERS[question(request)] or "No"

    folder = images(tmp_path / "edited")
    with ScriptedJudge(steady, die_after=3) as server:
        first = run(copy, folder, tmp_path / "judged", server.url)
        arrived = len(server.requests)  # the 3 answered and those cut off as the server went down
    # All 8 questions were asked: 3 answered; the other 5 failed, cut off at the server or refused once it was down
    # (how many reached it before it went is a race), each counted wrong as an http failure.
    assert arrived > 3 and metric(first)["extra"]["failed_calls_counted_wrong"] == {"http": 8 - 3}
    with ScriptedJudge(steady) as server:
        second = run(copy, folder, tmp_path / "judged", server.url)
        again = len(server.requests)
    # 8 questions in all; the 3 answered before the server died come from the cache
    assert again == 8 - 3
    # now every call answered: "Is the floor wet?" -> "No" (truth No): case 2 is 2/3
    assert metric(second)["extra"]["official_overall"] == 100.0 * (2 / 3 + 1.0 + 2 / 3) / 3
    assert metric(second)["failed_by_kind"] == {"data": 1}


def test_a_copy_without_its_columns_or_a_bad_prompt_tier_is_one_line(copy: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["generate", "--task", "pica-bench", "-T", "prompt=vague", "--data", str(copy),
                     "--generator", "painter", "--output", str(tmp_path / "g"), "--quiet"]) == 2
    assert "prompt must be one of superficial, intermediate, explicit" in capsys.readouterr().err
    task = registry.get("task", "pica-bench").build(prompt="explicit")
    assert next(s.prompt for s in task.load(copy)) == "make it night, dim light, long shadows 0"
    empty = tmp_path / "other"
    (empty / "data").mkdir(parents=True)
    with pytest.raises(UserError, match="picabench"):
        list(task.load(empty))


# --------------------------------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def kontext(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusers.BUILDERS["flux-kontext"](tmp_path_factory.mktemp("kontext"))


KONTEXT = ("-G", "steps=2", "-G", "width=48", "-G", "height=32", "-G", "max_area=1536", "-G", "auto_resize=false")


def test_generate_judge_export_and_read_back_in_the_official_layout(copy: Path, tmp_path: Path, kontext: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def always_yes(request: Request) -> str:
        return '{"answer": "Yes", "explanation": "fine"}'

    out = tmp_path / "e2e"
    with ScriptedJudge(always_yes) as server:
        assert cli.main(["run", "--task", "pica-bench", "--data", str(copy), "--generator", "flux-kontext-dev",
                         "-G", f"path={kontext}", *KONTEXT, "--limit", "2", "--model", "gpt-4.1", "--base-url",
                         server.url, "--output", str(out), "--quiet"]) == 0
    runs = {json.loads((d / "run.json").read_text()).get("generator") is not None: d for d in out.iterdir()}
    generation, judged = runs[True], runs[False]
    # cases 0 and 1 (--limit 2); all "Yes": case 0 truths No, Yes, Yes -> 2/3; case 1 Yes, No -> 1/2
    assert metric(json.loads((judged / "run.json").read_text()))["extra"]["official_overall"] == \
        100.0 * (2 / 3 + 1 / 2) / 2
    assert cli.main(["report", str(judged)]) == 0
    capsys.readouterr()
    exported = tmp_path / "official"
    assert cli.main(["export", str(generation), str(exported)]) == 0
    assert sorted(p.name for p in exported.iterdir()) == ["00000.jpg", "00001.jpg", "meta_info.json"]
    made = {e["index"]: e["path"] for line in (generation / "samples.jsonl").read_text().splitlines()
            for e in json.loads(line)["candidates"] if json.loads(line)["id"] == "00000"}
    assert (exported / "00000.jpg").read_bytes() == (generation / made[0]).read_bytes()  # copied byte for byte
    meta = json.loads((exported / "meta_info.json").read_text(encoding="utf-8"))
    # prepare_meta_info.py:79-90 with the images next to the file and no edit_instruction/difficulty columns
    assert [(m["index"], m["output_path"], m["input_path"], m["edit_instruction"], m["difficulty"]) for m in meta] == \
        [(0, "00000.jpg", "input_img/00000.jpg", "", "unknown"), (1, "00001.jpg", "input_img/00001.jpg", "", "unknown")]
    assert meta[1]["annotated_qa_pairs"][1]["question"] == "Is the glass empty?"
    # the exported folder read back: the same images, so the same answers and the same number
    with ScriptedJudge(always_yes) as server:
        again = run(copy, exported, tmp_path / "again", server.url, "--limit", "2")
    assert metric(again)["extra"]["official_overall"] == 100.0 * (2 / 3 + 1 / 2) / 2
    # a partial set: one image gone is that case's data failure, the other still counts
    (exported / "00001.jpg").unlink()
    with ScriptedJudge(always_yes) as server:
        partial = run(copy, exported, tmp_path / "partial", server.url, "--limit", "2")
    assert metric(partial)["failed_by_kind"] == {"data": 1} and metric(partial)["n_scored"] == 1


def test_a_reward_model_scores_under_the_rm_protocol(copy: Path, tmp_path: Path) -> None:
    folder = images(tmp_path / "edited", cases=(0, 1, 2, 3))
    assert cli.main(["run", "--task", "pica-bench", "--data", str(copy), "--images", str(folder), "--model",
                     "constant", "-M", "value=0.25", "--output", str(tmp_path / "rm"), "--quiet"]) == 0
    record = json.loads((next((tmp_path / "rm").iterdir()) / "run.json").read_text())
    assert record["protocol"]["id"] == "pica-bench-rm" and record["judge"]["protocol"] == "reward-model"
    row = next(m for m in record["metrics"]["overall"] if m["failure_policy"] == "excluded")
    assert row["metric"] == "mean-score" and row["value"] == 0.25 and row["n_units"] == 4
