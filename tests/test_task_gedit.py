"""GEdit-Bench (`gedit-bench`): the official VIEScore requests, parse and failure rules and calculate_statistics.py's
aggregation, checked against hand-worked cases; then end to end through the CLI against a scripted GPT-4.1.

Official code cited: github.com/stepfun-ai/Step1X-Edit at 570eba6, folder GEdit-Bench/.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from rrbench import cli, registry
from rrbench.types import ChatQuery, FailureKind, Judgement, Label, Media, Sample
from tests.fixtures import gedit_copy
from tests.judge_server import Reply, Request, ScriptedJudge
from tests.tiny_diffusers import build_flux_kontext

from rrbench.tasks import judge_gedit as jg  # isort: skip
from rrbench.tasks.metric_gedit import Image as Scored  # isort: skip
from rrbench.tasks.metric_gedit import official_numbers  # isort: skip

NEVER: Callable[[], int] = lambda: pytest.fail("guessed where the official rule does not")  # noqa: E731
# One solid colour per key: the scripted judge tells the images apart by the edited image's mean colour.
COLOURS = {"a1b2": (250, 10, 10), "c3d4": (10, 250, 10), "e5f6": (10, 10, 250), "0a0b": (250, 250, 10)}
# (SC answer, PQ answer) per key: SC = min, PQ = min (viescore/__init__.py:92-93)
#   a1b2: SC min(8, 9) = 8, PQ min(9, 7) = 7, O = sqrt(56) = 7.48331...
#   c3d4: SC 4, PQ 9, O = sqrt(36) = 6;  e5f6: SC 2, PQ 8, O = sqrt(16) = 4;  0a0b: SC 10, PQ 10, O = 10
ANSWERS = {"a1b2": ([8, 9], [9, 7]), "c3d4": ([4, 10], [9, 9]), "e5f6": ([2, 2], [8, 8]), "0a0b": ([10, 10], [10, 10])}


def answer(scores: list[int], reasoning: str = "ok") -> str:
    """The format GPT-4.1 answers the _context_no_delimit prompt in: a fenced JSON object."""
    return f'```json\n{{\n"score" : {scores},\n"reasoning" : "{reasoning}"\n}}\n```'


def key_of(request: Request) -> str:
    """Which sample an SC or PQ request is about: the edited image (the last image) is a solid colour."""
    with Image.open(io.BytesIO(request.images[-1].data)) as image:
        mean = [sum(c) / len(c) for c in zip(*image.convert("RGB").get_flattened_data(), strict=True)]
    return min(COLOURS, key=lambda k: sum((a - b) ** 2 for a, b in zip(COLOURS[k], mean, strict=True)))


def is_sc(request: Request) -> bool:
    return len(request.images) == 2


def scripted(request: Request) -> str:
    sc, pq = ANSWERS[key_of(request)]
    return answer(sc if is_sc(request) else pq)


# --------------------------------------------------------------------------------------------------- prompts


def test_the_official_prompts_are_assembled_as_viescore_does() -> None:
    # viescore/__init__.py:46-47: "\n".join of the parts; vie_prompts.py:3 opens the context, :332 ends the SC rule,
    # :375 ends the PQ rule; the join puts the PQ rule right after the context's closing brace (vie_prompts.py:10).
    assert jg.SC_PROMPT.startswith("You are a professional digital artist. You will have to evaluate")
    assert jg.SC_PROMPT.endswith("Editing instruction: <instruction>\n")
    assert jg.SC_PROMPT.count("<instruction>") == 1
    assert '"score" : [...],\n"reasoning" : "..."\n}\nRULES:\n\nTwo images will be provided' in jg.SC_PROMPT
    assert jg.PQ_PROMPT.endswith("Put the score in a list such that output score = [naturalness, artifacts]\n")
    assert '}\nRULES:\n\nThe image is an AI-generated image.' in jg.PQ_PROMPT
    assert "From scale 0 to 10: \n" in jg.PQ_PROMPT  # the trailing space of vie_prompts.py:364 is kept


# --------------------------------------------------------------------------------------------------- parse rule


@pytest.mark.parametrize(("text", "give_up", "expected"), [
    # utils.py:178-179: first "{" to last "}"; newlines dropped (line 218) before json.loads
    (answer([8, 9]), False, [8, 9]),
    # utils.py:167-173: between the two delimiters
    ('||V^=^V||\n{"score": [3, 7], "reasoning": "x"}\n||V^=^V||', False, [3, 7]),
    # utils.py:222-223: a bare number becomes a one-element list
    ('{"score": 6, "reasoning": "x"}', False, [6]),
    # utils.py:194-202: a bare list of exactly two integers, first round only
    ("[6, 0]", False, [6, 0]),
    ("The scores are [6,0].", False, [6, 0]),
    # utils.py:203-209: the whole answer as int() (spaces allowed), 0..10
    (" 7\n", False, [7]),
    # out of range scores inside JSON are not checked (utils.py:221-232)
    ('{"score": [12, -1]}', False, [12, -1]),
    # utils.py:225-228: bare keys fixed by fix_json: {score: 8} -> {"score": 8} -> {"score": [8]}
    ("{score: 8}", False, [8]),
    # an answer in Chinese around the JSON
    ('分数如下：{"score": [5, 6], "reasoning": "背景已更换"}', False, [5, 6]),
])
def test_readable_answers(text: str, give_up: bool, expected: list[int]) -> None:
    parsed = jg.parse_answer(text, give_up, NEVER)
    assert parsed.readable and parsed.value["score"] == expected and parsed.guess is None


@pytest.mark.parametrize("text", [
    "I cannot evaluate these images.",  # no braces, no list, no number (utils.py:210-212)
    '{"score": [8, ',  # truncated at max_tokens: no "}", no "]"
    "11",  # a bare number above 10 (utils.py:101-106)
    "[1, 2, 3]",  # three numbers: the bare-list pattern wants two (utils.py:194)
    '{"score": [8, 9], "reasoning": "unterminated}',  # json fails, fix_json's output fails too
    "",  # an empty answer (what openai.py:167 returns for an API error)
])
def test_unreadable_answers_on_the_first_round(text: str) -> None:
    assert not jg.parse_answer(text, False, NEVER).readable


def test_on_a_re_ask_an_answer_without_braces_is_guessed_even_a_bare_list() -> None:
    # utils.py:186-193 comes before the list and number branches: "[6, 0]" on a re-ask is a guess of one number
    parsed = jg.parse_answer("[6, 0]", True, lambda: 3)
    assert parsed.readable and parsed.value["score"] == [3] and parsed.guess == 3
    assert parsed.value["reasoning"] == "guess_if_cannot_parse | [6, 0]"
    # so is an answer cut before its closing brace (rfind("}") = -1, utils.py:179-180)
    assert jg.parse_answer('{"score": [8, ', True, lambda: 3).value["score"] == [3]
    # braces that do not load are not guessed: unreadable again, and asked again (utils.py:229-231)
    assert not jg.parse_answer('{"score": [8, "x}', True, lambda: 3).readable


def test_the_guess_is_seeded_by_the_image_round_and_call() -> None:
    draws = {jg.guess_for(seed, r, n) for seed in range(20) for r in (1, 2) for n in ("sc", "pq")}
    assert draws <= set(range(11)) and len(draws) > 3
    assert jg.guess_for(5, 1, "sc") == jg.guess_for(5, 1, "sc")


@pytest.mark.parametrize(("sc", "pq", "expected"), [
    ([8, 9], [4, 10], (8.0, 4.0, math.sqrt(32))),  # min 8, min 4, sqrt(8*4) (__init__.py:92-94)
    ([12, -1], [5, 5], None),  # sqrt(-1*5) raises ValueError: the image is retried (test_gedit_score.py:51)
    ([12, -1], [-2], (-1.0, -2.0, math.sqrt(2))),  # a positive product passes unchecked
    ([], [5], None),  # min([]) raises
    (["5"], [5], None),  # "5" * 5 = "55555", sqrt of a str raises
])
def test_image_scores(sc: list[Any], pq: list[Any], expected: tuple[float, float, float] | None) -> None:
    assert jg.image_scores(jg.Parsed({"score": sc}), jg.Parsed({"score": pq})) == expected


# --------------------------------------------------------------------------------------------------- failure rule


def sample() -> Sample:
    source = Media.from_bytes(gedit_copy.photo(0, (40, 30)))
    meta = {"task_type": "color_alter", "key": "c3d4", "language": "en", "intersection_exist": True}
    return Sample("color_alter/c3d4", "Make the cup red", (), Label.none(), (source,), meta, reference=(source,))


def run_judge(answers: list[str]) -> tuple[jg.Judged, list[ChatQuery]]:
    asked: list[ChatQuery] = []

    async def ask(query: ChatQuery) -> Judgement:
        asked.append(query)
        return Judgement(raw=answers[len(asked) - 1])

    edited = Media.from_bytes(gedit_copy.photo(1, (64, 64)))
    return asyncio.run(jg.GEditJudge().judge(sample(), edited, ask, seed=11)), asked


def test_one_unreadable_answer_re_asks_both_and_the_second_round_guesses() -> None:
    # round 1: SC unreadable, PQ fine -> both asked again (__init__.py:76-82); round 2: SC still has no braces ->
    # guessed (tries=2 > max_tries=1), PQ's new answer replaces the first
    judged, asked = run_judge(["no idea", answer([9, 9]), "still no idea", answer([6, 8])])
    assert [(q.name, q.attempt) for q in asked] == [("sc", 0), ("pq", 0), ("sc", 1), ("pq", 1)]
    guess = jg.guess_for(11, 1, "sc")
    assert judged.score == math.sqrt(guess * 6) and judged.failure is None
    final = [j for j in judged.judgements if jg.FLAG_FINAL in j.flags]
    assert [j.raw for j in final] == ["still no idea", answer([6, 8])]
    assert jg.FLAG_GUESSED in final[0].flags and final[0].aspects[0]["guess"] == guess
    assert jg.final_scores(judged.judgements) == (float(guess), 6.0) and jg.guessed(judged.judgements)


def test_an_exception_in_min_or_sqrt_retries_the_image_without_guessing() -> None:
    # round 1 reads {"score": []}: min([]) raises -> a fresh evaluate (test_gedit_score.py:31-56), whose first
    # round takes the bare list [6, 0] as a list, not a guess
    judged, asked = run_judge(['{"score": []}', answer([5, 5]), "[6, 0]", answer([5, 7])])
    assert len(asked) == 4 and judged.score == math.sqrt(0 * 5)  # SC = min(6, 0) = 0
    assert not jg.guessed(judged.judgements)


def test_answers_that_never_parse_end_as_a_parse_failure_after_max_rounds() -> None:
    judged, asked = run_judge(['{"score": [1, "x}'] * (2 * jg.MAX_ROUNDS))
    assert judged.failure is FailureKind.PARSE and judged.score is None and len(asked) == 2 * jg.MAX_ROUNDS


def test_the_requests_carry_the_official_images_text_and_decoding() -> None:
    _, asked = run_judge([answer([5, 5]), answer([5, 5])])
    sc, pq = asked
    assert sc.max_tokens == 1400 and sc.temperature is None  # openai.py:137, no temperature sent
    parts = sc.messages[0]["content"]
    assert [p["type"] for p in parts] == ["text", "image", "image"]  # text first (openai.py:104-125)
    assert parts[0]["text"] == jg.SC_PROMPT.replace("<instruction>", "Make the cup red")
    assert [p["type"] for p in pq.messages[0]["content"]] == ["text", "image"]
    source, edited = (Image.open(io.BytesIO(p["media"].read_bytes())) for p in parts[1:])
    # JPEG declared image/jpeg; the 64x64 edit resized to the 40x30 source (test_gedit_score.py:34)
    assert (source.format, edited.format, source.size, edited.size) == ("JPEG", "JPEG", (40, 30), (40, 30))
    assert parts[1]["media"].mime == "image/jpeg"


# --------------------------------------------------------------------------------------------------- aggregation


def test_official_numbers_by_hand() -> None:
    # calculate_statistics.py:56-78: two groups present, the nine others empty -> np.mean([]) = NaN -> the 11-group
    # averages are NaN (None here), as the official script prints nan
    images = [Scored("color_alter", 4, 9, False), Scored("color_alter", 2, 8, True), Scored("ps_human", 9, 4, False)]
    numbers = official_numbers(images)
    assert numbers["per_group"]["color_alter"] == {"sc": 3.0, "pq": 8.5, "o": 5.0}  # (6 + 4) / 2
    assert numbers["per_group"]["ps_human"] == {"sc": 9.0, "pq": 4.0, "o": 6.0}
    assert numbers["average"] == {"sc": None, "pq": None, "o": None}
    assert (numbers["n_images"], numbers["n_guessed"]) == (3, 1)
    full = official_numbers([Scored(g, 4, 9, False) for g in jg.GROUPS])  # sqrt(36) = 6 in every group
    assert full["average"] == {"sc": 4.0, "pq": 9.0, "o": 6.0}


# --------------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return gedit_copy.write(tmp_path / "gedit")


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (48, 36)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def images_folder(root: Path, keys: dict[str, str] | None = None, lang: str = "en") -> Path:
    """An official output folder: fullset/<task_type>/<lang>/<key>.png (test_gedit_score.py:26)."""
    keys = keys or {key: task_type for task_type, key, *_ in gedit_copy.CASES}
    for key, task_type in keys.items():
        path = root / "fullset" / task_type / lang / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(solid(COLOURS[key]))
    return root


def judge(copy: Path, images: Path, url: str, out: Path, *extra: str) -> int:
    return cli.main(["run", "--task", "gedit-bench", "--data", str(copy), "--images", str(images), "--model",
                     "gpt-4.1", "--base-url", url, "--output", str(out), "--quiet", *extra])


def run_record(out: Path) -> dict[str, Any]:
    (run,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    return dict(json.loads((run / "run.json").read_text()))


def metric(record: dict[str, Any], name: str, policy: str = "excluded") -> dict[str, Any]:
    return next(m for m in record["metrics"]["overall"] if m["metric"] == name and m["failure_policy"] == policy)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")


def test_judging_an_official_folder_gives_the_hand_worked_numbers(copy: Path, tmp_path: Path) -> None:
    with ScriptedJudge(scripted) as server:
        assert judge(copy, images_folder(tmp_path / "model"), server.url, tmp_path / "out") == 0
    assert len(server.requests) == 8  # SC and PQ for each of 4 images
    body = server.requests[0].body
    assert body["model"] == "gpt-4.1" and body["max_tokens"] == 1400 and "temperature" not in body
    assert {i.mime for r in server.requests for i in r.images} == {"image/jpeg"}
    # the judge compares against input_image (40x30), not input_image_raw (64x48)
    sc = next(r for r in server.requests if is_sc(r))
    assert {Image.open(io.BytesIO(i.data)).size for i in sc.images} == {(40, 30)}
    record = run_record(tmp_path / "out")
    assert record["judge"]["substitute"] is False and record["judge"]["official_judges"] == ["gpt-4.1"]
    # groups: background_change O = sqrt(56); color_alter (6 + 4) / 2 = 5; subject-add 10
    o = metric(record, "gedit-o")
    assert o["value"] == pytest.approx((math.sqrt(56) + 5 + 10) / 3) and o["n_scored"] == 4
    assert o["ci_low"] is not None and o["ci_low"] <= o["value"] <= o["ci_high"]
    assert metric(record, "gedit-sc")["value"] == pytest.approx((8 + 3 + 10) / 3)  # SC groups 8, (4+2)/2, 10
    assert metric(record, "gedit-pq")["value"] == pytest.approx((7 + 8.5 + 10) / 3)  # PQ groups 7, (9+8)/2, 10
    # Intersection_exist: a1b2, e5f6, 0a0b -> O groups sqrt(56), 4, 10
    assert metric(record, "gedit-o-intersection")["value"] == pytest.approx((math.sqrt(56) + 4 + 10) / 3)
    assert o["extra"]["color_alter"] == 5.0 and metric(record, "gedit-sc")["extra"]["color_alter"] == 3.0
    assert o["extra"]["official"] is None  # 8 of 11 groups empty: nan in calculate_statistics.py
    assert o["extra"]["breakdown"]["group"] == pytest.approx(  # the leaderboard's columns: the groups with images
        {"background_change": math.sqrt(56), "color_alter": 5.0, "subject-add": 10.0})


def test_failures_are_counted_by_kind_and_guesses_excluded_under_the_alternative(copy: Path, tmp_path: Path) -> None:
    def flaky(request: Request) -> str | Reply:
        key = key_of(request)
        if key == "0a0b":
            return Reply("bad request", status=400)  # a transport failure: the image fails as http
        if key == "e5f6" and not is_sc(request):
            return "I am unable to rate this image."  # PQ never readable: round 2 guesses it
        return scripted(request)

    folder = images_folder(tmp_path / "model")
    with ScriptedJudge(flaky) as server:
        judge(copy, folder, server.url, tmp_path / "out")
        judge(copy, folder, server.url, tmp_path / "excl", "--protocol", "gedit-bench-excluded")
    record = run_record(tmp_path / "out")
    o = metric(record, "gedit-o")
    assert (o["n_scored"], o["n_failed"], o["failed_by_kind"]) == (3, 1, {"http": 1})
    assert o["extra"]["n_guessed"] == 1
    excluded = metric(run_record(tmp_path / "excl"), "gedit-o")
    assert (excluded["n_scored"], excluded["failed_by_kind"]) == (2, {"http": 1, "parse": 1})
    # without e5f6: background_change sqrt(56), color_alter 6
    assert excluded["value"] == pytest.approx((math.sqrt(56) + 6) / 2)


def test_a_judge_that_dies_mid_run_resumes_without_asking_finished_images_again(copy: Path, tmp_path: Path) -> None:
    folder = images_folder(tmp_path / "model")
    quick = ("--concurrency", "1", "-M", "max_retries=0")  # no backoff against the dead server
    with ScriptedJudge(scripted, die_after=3) as first:
        judge(copy, folder, first.url, tmp_path / "out", *quick)
    record = run_record(tmp_path / "out")
    done = metric(record, "gedit-o")["n_scored"]
    assert 1 <= done < 4
    (run,) = [p for p in (tmp_path / "out").iterdir() if (p / "run.json").exists()]
    finished = {json.loads(line)["id"] for line in (run / "samples.jsonl").read_text().splitlines()
                if json.loads(line)["trials"][0].get("prediction")}
    with ScriptedJudge(scripted) as second:
        assert judge(copy, folder, second.url, tmp_path / "out", *quick) == 0
    asked = {key_of(r) for r in second.requests}
    assert not asked & {s.split("/")[1] for s in finished}
    assert metric(run_record(tmp_path / "out"), "gedit-o")["n_scored"] == 4


def test_a_partial_folder_is_reported_partial_with_data_failures(copy: Path, tmp_path: Path) -> None:
    partial = images_folder(tmp_path / "model", {"a1b2": "background_change", "c3d4": "color_alter"})
    with ScriptedJudge(scripted) as server:
        judge(copy, partial, server.url, tmp_path / "out")
    o = metric(run_record(tmp_path / "out"), "gedit-o")
    assert (o["n_total"], o["n_scored"], o["failed_by_kind"]) == (4, 2, {"data": 2})


def image_keys(run: Path) -> dict[str, list[str]]:
    """The content hash of each judged image, per sample, as the run log records it."""
    lines = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return {d["id"]: [c["key"] for c in d["candidates"]] for d in lines}


def test_generate_judge_export_and_the_official_csv(copy: Path, tmp_path: Path) -> None:
    kontext = build_flux_kontext(tmp_path / "kontext")
    settings = ["-G", f"path={kontext}", "-G", "steps=2", "-G", "width=48", "-G", "height=32", "-G",
                "max_area=1536", "-G", "auto_resize=false"]
    server = ScriptedJudge(lambda r: answer([7, 8] if is_sc(r) else [9, 6]))
    with server:
        assert cli.main(["run", "--task", "gedit-bench", "--data", str(copy), "--limit", "2", "--generator",
                         "flux-kontext-dev", *settings, "--model", "gpt-4.1", "--base-url", server.url,
                         "--output", str(tmp_path / "runs"), "--quiet"]) == 0
        runs = sorted(p for p in (tmp_path / "runs").iterdir() if (p / "run.json").exists())
        gen_run, judge_run = sorted(runs, key=lambda p: "judge" in json.loads((p / "run.json").read_text()))
        assert cli.main(["report", str(judge_run)]) == 0
        # ... and a leaderboard row: the generator's base setting, in the generation table's GEdit-EN column
        assert cli.main(["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--plots",
                         "none"]) == 0
        table = json.loads((tmp_path / "lb" / "generation.json").read_text())
        column = next(c["id"] for c in table["columns"] if c["title"] == "GEdit-EN")
        (row,) = [r for r in table["rows"] if r["origin"] == "measured"]
        assert row["judge"].startswith("flux-kontext-dev") and row["setting"] == "base"
        # SC min(7, 8) = 7, PQ min(9, 6) = 6 for both images: O = sqrt(42) in each of the two groups
        assert row["cells"][column]["value"] == pytest.approx(math.sqrt(42))
        assert "judge gpt-4.1" in row["cells"][column]["protocol"] and "substitute" not in row["cells"][column][
            "protocol"]
        # export the generated images to the official layout, then judge that folder: the same bytes
        folder = tmp_path / "official"
        assert cli.main(["export", str(gen_run), str(folder), "--layout", "official"]) == 0
        assert judge(copy, folder, server.url, tmp_path / "again", "--limit", "2", "--no-cache") == 0
    keys = image_keys(judge_run)
    assert len(keys) == 2 and all(len(k) == 1 and k[0].startswith("sha256:") for k in keys.values())
    assert keys == image_keys(next((tmp_path / "again").iterdir()))
    made = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    assert made == ["fullset/background_change/en/a1b2.png", "fullset/background_change/en/a1b2_SRCIMG.png",
                    "fullset/color_alter/en/c3d4.png", "fullset/color_alter/en/c3d4_SRCIMG.png"]
    with Image.open(folder / "fullset/color_alter/en/c3d4_SRCIMG.png") as srcimg:
        assert srcimg.size == gedit_copy.SHOWN_SIZE  # input_image, as generate_image_example.py:53 writes it
    # the judge run's answers in calculate_statistics.py's CSV layout (test_gedit_score.py:145-168)
    answers = tmp_path / "answers"
    assert cli.main(["export", str(judge_run), str(answers)]) == 0
    table = answers / "rrbench/gpt4o/eval_results_new/rrbench_color_alter_gpt_score.csv"
    rows = list(csv.DictReader(table.open()))
    assert [(r["sementics_score"], r["quality_score"], r["intersection_exist"], r["instruction_language"])
            for r in rows] == [("7", "6", "False", "en")]  # min(7, 8), min(9, 6); c3d4 is not in the subset
    assert len(list((answers / "rrbench/gpt4o/eval_results_new").glob("*.csv"))) == 12  # 11 groups + combined


def test_the_rm_alternative_scores_with_a_reward_models_own_scores(copy: Path, tmp_path: Path) -> None:
    folder = images_folder(tmp_path / "model")
    assert cli.main(["run", "--task", "gedit-bench", "--data", str(copy), "--images", str(folder), "--model",
                     "classical-iqa", "--protocol", "gedit-bench-rm", "--output", str(tmp_path / "out"),
                     "--quiet"]) == 0
    record = run_record(tmp_path / "out")
    assert record["judge"]["protocol"] == "reward-model"
    assert metric(record, "mean-score")["n_scored"] == 4


def test_bad_arguments_are_one_line() -> None:
    with pytest.raises(Exception, match="lang must be one of en, cn"):
        registry.get("task", "gedit-bench").build(lang="zh")


def test_the_official_folders_srcimg_files_are_no_strays(copy: Path, tmp_path: Path) -> None:
    """An --images folder in the official layout holds ``<key>_SRCIMG.png`` beside each edit (export writes them):
    they belong to their sample, and only a file no sample names is reported."""
    from rrbench.protocols.judge_images import FolderSource

    task = registry.get("task", "gedit-bench").build()
    samples = list(task.load(copy))
    folder = tmp_path / "official"
    for sample in samples:
        for name in (task.layout(sample, 0), *task.layout_companions(sample)):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(b"not read here")
    (folder / "fullset" / "stray.png").write_bytes(b"x")
    source = FolderSource(folder, task)
    for sample in samples:
        source.seen(sample, 1)
    (problem,) = source.finish()
    assert problem.startswith("1 image file(s)") and problem.endswith("fullset/stray.png")
