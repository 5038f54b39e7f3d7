"""UniGenBench++ (`unigenbench`) against its official code (github CodeGoat24/UniGenBench at 49d0bceb,
eval/src/eval_common.py): the request, the parse and failure rules, the aggregation (hand-worked), the data (the
malformed en_long row 509), the official layout and seeds, export of the official result CSV, resume after a dead
judge server, a generator-to-report run on a tiny Flux pipeline, and the reward-model alternative."""

from __future__ import annotations

import ast
import csv
import hashlib
import http.server
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rrbench import cli, registry
from rrbench.tasks import judge_unigenbench as judge_module
from rrbench.tasks import unigenbench as task_module
from rrbench.tasks.judge_unigenbench import Unreadable, build_prompt, credits, parse_answer, result_text, scored
from rrbench.types import Task, UserError
from tests.fixtures.unigenbench_copy import EN_ROWS, write_copy, write_csv, write_images
from tests.judge_server import Reply, Request, ScriptedJudge

ROW0 = ["Style", "World Knowledge", "Attribute - Quantity"]  # en row 0
ROW2 = ["Attribute - Expression", "Relationship - Similarity", "World Knowledge"]  # en row 2


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # never the user's download cache


def build(**args: Any) -> Task:
    return registry.get("task", "unigenbench").build(**args)


def answer(scores: list[Any], n: int | None = None) -> str:
    """An answer in the official output format (eval_common.py:128-133)."""
    analysis = [f"analysis {i}" for i in range(n if n is not None else len(scores))]
    return (f"<description>\n<prompt>p</prompt>\n<checkpoint>c</checkpoint>\n<analysis>{analysis!r}</analysis>\n"
            f"<score>{scores!r}</score>\n</description>")


def image_of(request: Request, folder: Path) -> str:
    """Which file of ``folder`` a request carries (by its bytes)."""
    digest = hashlib.sha256(request.images[0].data).hexdigest()
    return next(p.name for p in folder.iterdir() if hashlib.sha256(p.read_bytes()).hexdigest() == digest)


def run_dir(out: Path) -> Path:
    (found,) = [p for p in out.iterdir() if (p / "run.json").is_file()]
    return found


def record(out: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir(out) / "run.json").read_text()))


def metric(rec: dict[str, Any], name: str, policy: str = "excluded") -> dict[str, Any]:
    return next(m for m in rec["metrics"]["overall"] if m["metric"] == name and m["failure_policy"] == policy)


def judge(*args: str) -> int:
    return cli.main(["run", "--task", "unigenbench", "--model", "gpt-4.1", "--quiet", "-M", "max_retries=0", *args])


# --------------------------------------------------------------------------------------------------- request


def test_the_request_is_the_official_template_filled_text_first_png_as_is(tmp_path: Path) -> None:
    copy, images = write_copy(tmp_path / "data"), write_images(tmp_path / "img", [0, 1, 2], 1)
    with ScriptedJudge(lambda r: answer([1, 1, 1])) as server:
        assert judge("--data", str(copy), "--images", str(images), "-T", "images_per_prompt=1", "--limit", "1",
                     "--base-url", server.url, "--output", str(tmp_path / "out")) == 0
    (request,) = server.requests
    # eval_common.py:299-309: one user message, text then image, max_tokens=4096, no temperature
    assert request.roles == ["user"] and request.parts[1] == "<image>" and len(request.parts) == 2
    assert "temperature" not in request.body and request.body["max_tokens"] == 4096
    # eval_common.py:191-198: the file's bytes untouched, the MIME type from the name (.png)
    assert request.images[0].mime == "image/png" and request.images[0].data == (images / "0_0.png").read_bytes()
    text = request.texts[0]
    assert text.startswith("You are a precise and objective English-language image description system.")
    # line 116: the prompt in 「」, the testpoints as Python's str(list), the two sections built on lines 207-218
    assert f"The prompt for the generated image is: 「{EN_ROWS[0][1]}」." in text
    assert "from the angles specified in ['Style', 'World Knowledge', 'Attribute - Quantity']." in text
    assert ("Checkpoints Defination:「\nStyle: Art, painting, photography, design styles, and corresponding artist "
            "names\nWorld Knowledge: Covers knowledge of celebrities, architecture, basic domain knowledge, and "
            "internet slang. Celebrities with modern copyright risk should be avoided\nAttribute - Quantity: Focuses "
            "on the challenge of depicting three or more items accurately\n」") in text
    assert ("Checkpoints Description:「\nStyle: classical ink painting\nWorld Knowledge: Egyptian pyramids\n"
            "Attribute - Quantity: two pandas\n」") in text
    # lines 129-130 repeat the prompt and the list; the template ends after </description> + 12 spaces (line 133)
    assert f"<prompt>{EN_ROWS[0][1]}</prompt>" in text and text.endswith("</description>\n            ")


def test_the_chinese_template_and_definitions() -> None:
    text = build_prompt("古典水墨画风格", ["风格", "属性-数量"], ["古典水墨画风格", "两只熊猫"], "zh")
    assert text.startswith("你是一个精确且客观的中文图像描述系统。")
    # eval_common.py:139, 100, 82, 177-178
    assert "根据['风格', '属性-数量']中的这些角度" in text
    assert ("考点说明:「\n风格: 艺术、绘画、摄影、设计风格，及对应艺术家名称\n"
            "属性-数量: 重点考察三个或三个以上的数字难点\n」") in text
    assert "考点描述说明:「\n风格: 古典水墨画风格\n属性-数量: 两只熊猫\n」" in text


# --------------------------------------------------------------------------------------------------- parse


@pytest.mark.parametrize("text, n, expected", [
    # eval_common.py:237-258
    (answer([1, 0]), 2, (["analysis 0", "analysis 1"], [1, 0])),
    ("<analysis>['a']</analysis><analysis>['x', 'y']</analysis><score>[0]</score>", 1, (["a"], [0])),  # first tag
    ("<analysis>\n  ['a', 'b']\n</analysis> <score> (1, 1) </score>", 2, (["a", "b"], (1, 1))),  # stripped, tuple ok
    ("<analysis>['画面中有两只熊猫']</analysis><score>[1]</score>", 1, (["画面中有两只熊猫"], [1])),  # any language
    ("<analysis>'ab'</analysis><score>'10'</score>", 2, ("ab", "10")),  # len() of strings: read (scorer skips it)
])
def test_the_official_parse_reads(text: str, n: int, expected: tuple[Any, Any]) -> None:
    assert parse_answer(text, n) == expected


@pytest.mark.parametrize("text, n, crash", [
    ("I cannot evaluate this image.", 1, False),  # no tags (line 240)
    ("<analysis>['a']</analysis><score>[1", 1, False),  # truncated: no </score>
    ("<analysis>[a]</analysis><score>[1]</score>", 1, False),  # not a literal: ValueError (line 247)
    ("<analysis>['a'</analysis><score>[1]</score>", 1, False),  # SyntaxError (line 247)
    (answer([1, 0, 1]), 2, False),  # length mismatch (line 251)
    (answer([1], n=2), 2, False),  # analysis of the right length, score not
    ("<analysis>['a']</analysis><score>1</score>", 1, True),  # len(1): TypeError escapes the official code
    ("<analysis>{[1]: 2}</analysis><score>[1]</score>", 1, True),  # literal_eval raises TypeError (unhashable)
    (None, 1, False),  # no content (line 315)
])
def test_unreadable_answers(text: str | None, n: int, crash: bool) -> None:
    with pytest.raises(Unreadable) as caught:
        parse_answer(text, n)
    assert caught.value.crash is crash


def test_what_the_scorer_reads_back_and_credits() -> None:
    # eval_common.py:593 writes json.dumps(result_json, indent=4); line 403 reads it back with ast.literal_eval
    ok = result_text({"prompt": "p", "testpoint": ["A"], "analysis": ["x"], "score": [1, 1.0, "1", 2, 0]})
    assert scored(ok) == [1, 1.0, "1", 2, 0]
    assert credits([1, 1.0, "1", 2, 0]) == [1.0, 1.0, 0.0, 0.0, 0.0]  # score == 1 (line 418)
    assert scored(result_text({"score": [True, 0]})) is None  # JSON true is no Python literal: row skipped
    assert scored(result_text({"score": [1], "analysis": [None]})) is None  # null anywhere in the row
    assert scored(result_text({"score": "10"})) is None  # not a list: row["score"] raises KeyError (line 407)
    assert scored("null") is None  # an image without result_json (eval_common.py:330)
    with pytest.raises(Unreadable) as caught:
        result_text({"score": [1], "analysis": {"a"}})  # a set: json.dumps raises in the official main process
    assert caught.value.crash


# ------------------------------------------------------------------------------------------ failure rule, aggregation


def scripted(folder: Path) -> Callable[[Request], str | Reply]:
    """Answers by image: 0_0 [1, 1, 0]; 0_1 ["1", 1.0, 0]; 2_0 HTTP 500 first, then [1, 1, 1]; 2_1 never readable."""
    seen: dict[str, int] = {}

    def reply(request: Request) -> str | Reply:
        name = image_of(request, folder)
        seen[name] = seen.get(name, 0) + 1
        if name == "0_0.png":
            return answer([1, 1, 0])
        if name == "0_1.png":
            return answer(["1", 1.0, 0])
        if name == "2_0.png":
            return Reply("overloaded", status=500) if seen[name] == 1 else answer([1, 1, 1])
        return answer([1, 1])  # two scores for three testpoints, every time

    return reply


@pytest.fixture
def judged(tmp_path: Path) -> tuple[Path, Path, list[Request]]:
    """Prompts 0 and 2 of the copy, two images each, judged by the scripted judge."""
    copy = write_csv(tmp_path / "data" / "test_prompts_en.csv", "en", [EN_ROWS[0], EN_ROWS[2]])
    images = write_images(tmp_path / "img", [0, 2], 2)
    with ScriptedJudge(scripted(images)) as server:
        assert judge("--data", str(copy.parent), "--images", str(images), "-T", "images_per_prompt=2",
                     "--base-url", server.url, "--output", str(tmp_path / "out")) == 0
    return tmp_path / "out", images, server.requests


def test_reasks_then_drops_and_the_hand_worked_numbers(judged: tuple[Path, Path, list[Request]]) -> None:
    out, images, requests = judged
    asked = [image_of(r, images) for r in requests]
    # eval_common.py:297: range(max_retries + 1) = 11 asks; an HTTP error uses one of them (lines 311-316)
    assert {n: asked.count(n) for n in set(asked)} == {"0_0.png": 1, "0_1.png": 1, "2_0.png": 2, "2_1.png": 11}
    rec = record(out)
    assert rec["judge"]["substitute"] is True and rec["judge"]["official_judges"] == ["gemini-2.5-pro"]
    assert rec["judge"]["judge_protocol"]["id"] == "unigenbench"
    m = metric(rec, "unigenbench-accuracy")
    # Testpoints credited (score == 1):  0_0 Style 1, WK 1, Quantity 0;  0_1 Style 0 ("1"), WK 1 (1.0), Quantity 0;
    # 2_0 Expression 1, Similarity 1, WK 1;  2_1 dropped.  Primary (text before the first '-'):
    # Style 1/2, World Knowledge 3/3, "Attribute " 1/3 (Quantity 0, 0; Expression 1), "Relationship " 1/1.
    # overall = (1/2 + 1 + 1/3 + 1) / 4 = (17/6) / 4 = 17/24
    assert m["value"] == pytest.approx(17 / 24) and m["n_units"] == 9
    primary = m["extra"]["primary_dimensions"]
    assert {k: (v["correct"], v["total"], v["accuracy"]) for k, v in primary.items()} == {
        "Style": (1, 2, 0.5), "World Knowledge": (3, 3, 1.0), "Attribute ": (1, 3, 0.3333),
        "Relationship ": (1, 1, 1.0)}
    assert list(primary) == ["Style", "World Knowledge", "Attribute ", "Relationship "]  # first seen (line 429)
    assert m["extra"]["breakdown"]["primary"] == pytest.approx(  # the leaderboard's columns: names trimmed
        {"Style": 1 / 2, "World Knowledge": 1.0, "Attribute": 1 / 3, "Relationship": 1.0})
    sub = m["extra"]["sub_dimensions"]
    assert list(sub) == sorted(sub) and sub["Attribute - Quantity"]["total"] == 2 and sub["Attribute - Expression"][
        "correct"] == 1
    assert all(v["ci"][0] <= v["value"] <= v["ci"][1] for v in [*primary.values(), *sub.values()])
    assert m["ci_low"] <= m["value"] <= m["ci_high"]
    assert m["extra"]["images"] == {"judged": 3, "dropped": 1, "missing": 0}
    assert m["n_failed"] == 1 and m["failed_by_kind"] == {"parse": 1}
    # failures as wrong: 2_1's three testpoints count 0: Attribute 1/4, Relationship 1/2, WK 3/4, Style 1/2 -> 1/2
    assert metric(rec, "unigenbench-accuracy", "wrong")["value"] == pytest.approx(0.5)


def test_export_writes_the_official_result_csv(judged: tuple[Path, Path, list[Request]], tmp_path: Path) -> None:
    out, _, _ = judged
    assert cli.main(["export", str(run_dir(out)), str(tmp_path / "answers")]) == 0
    text = (tmp_path / "answers" / "results" / "rrbench_en.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    # the columns of eval_common.py:588-595, rows in prompt-file order, one per judged image
    assert list(rows[0]) == ["index", "prompt", "testpoint", "output", "result_json", "img_path"]
    assert [(r["index"], r["img_path"]) for r in rows] == [("0", "0_0.png"), ("0", "0_1.png"), ("2", "2_0.png"),
                                                           ("2", "2_1.png")]
    assert ast.literal_eval(rows[0]["testpoint"]) == ROW0 and rows[0]["prompt"] == EN_ROWS[0][1]
    expected = {"prompt": EN_ROWS[0][1], "testpoint": ROW0, "analysis": ["analysis 0", "analysis 1", "analysis 2"],
                "score": [1, 1, 0]}
    assert rows[0]["result_json"] == json.dumps(expected, ensure_ascii=False, indent=4)
    assert rows[0]["output"] == answer([1, 1, 0])
    # the dropped image: its last answer, and json.dumps(None) (line 330, 593)
    assert rows[3]["result_json"] == "null" and rows[3]["output"] == answer([1, 1])


# --------------------------------------------------------------------------------------------------- data


def test_en_long_row_509_is_repaired_and_recorded(tmp_path: Path) -> None:
    copy = write_copy(tmp_path / "data")
    (sample,) = list(build(length="long").load(copy))
    assert sample.id == "en_long-509" and sample.meta["index"] == 509
    # the same five testpoints as zh_long row 509 lists
    assert sample.meta["testpoint"] == ["Action - Full-body (Character/Anthropomorphic)", "Grammar - Negation",
                                        "Attribute - Color", "Attribute - Material", "Attribute - Expression"]
    assert len(sample.meta["test_desc"]) == 5 and "json.loads" in sample.meta["repair"]
    assert sample.meta["category"] == "Design" and "broken" not in sample.meta


def test_an_unrepairable_row_is_label_skipped_with_its_reason(tmp_path: Path) -> None:
    bad = (EN_ROWS[1][0], EN_ROWS[1][1], EN_ROWS[1][2].replace('"Testpoints": [', '"Testpoints": {'))
    copy = write_csv(tmp_path / "data" / "test_prompts_en.csv", "en", [EN_ROWS[0], bad])
    images = write_images(tmp_path / "img", [0, 1], 1)
    with ScriptedJudge(lambda r: answer([1, 1, 1])) as server:
        assert judge("--data", str(copy), "--images", str(images), "-T", "images_per_prompt=1", "--base-url",
                     server.url, "--output", str(tmp_path / "out")) == 0
    assert len(server.requests) == 1  # the broken row is never sent
    m = metric(record(tmp_path / "out"), "unigenbench-accuracy")
    assert m["n_label_skipped"] == 1 and m["n_scored"] == 1 and m["value"] == 1.0
    logged = [json.loads(x) for x in (run_dir(tmp_path / "out") / "samples.jsonl").read_text().splitlines()]
    broken = next(x for x in logged if x["id"] == "en-1")
    assert "Expecting ':' delimiter" in broken["meta"]["broken"]
    assert broken["trials"][0]["failure"] == "data" and "Expecting" in broken["trials"][0]["judgements"][0][
        "failure_detail"]


def test_task_shape_seeds_layout_and_bad_arguments(tmp_path: Path) -> None:
    task = build()
    assert task.images_per_prompt == 4 and build(images_per_prompt=2).images_per_prompt == 2
    assert task.seed_of is not None and [task.seed_of(99, "en-0", j) for j in range(4)] == [3407, 3408, 3409, 3410]
    samples = list(task.load(write_copy(tmp_path / "data")))
    assert [s.id for s in samples] == ["en-0", "en-1", "en-2"] and task.layout is not None
    assert task.layout(samples[2], 3) == "2_3.png"  # flux_en_multi_node_inference.py:108
    assert task.protocol.id == "unigenbench" and set(task.alternatives) == {"unigenbench-offline", "unigenbench-rm"}
    assert task.info.revision == judge_module.COMMIT
    (zh,) = list(build(lang="zh").load(tmp_path / "data"))
    assert zh.meta["testpoint"] == ["风格", "世界知识", "属性-数量"] and zh.meta["category"] == "创意发散"
    for args in ({"lang": "fr"}, {"length": "medium"}, {"images_per_prompt": 0}):
        with pytest.raises(UserError):
            build(**args)
    with pytest.raises(UserError, match=re.escape("holds no test_prompts_zh_long.csv")):
        list(build(lang="zh", length="long").load(tmp_path / "data"))


class _Files(http.server.BaseHTTPRequestHandler):
    body = b""
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def raw_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """A local stand-in for raw.githubusercontent.com serving the copy's en CSV, pinned by its sha256."""
    body = write_copy(tmp_path / "src").joinpath("test_prompts_en.csv").read_bytes()
    _Files.body, _Files.hits = body, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(task_module, "RAW_URL", f"http://127.0.0.1:{server.server_address[1]}/{{commit}}/{{file}}")
    monkeypatch.setitem(task_module.SHA256, "test_prompts_en.csv", hashlib.sha256(body).hexdigest())
    yield _Files.hits
    server.shutdown()
    server.server_close()


def test_download_at_the_pinned_commit_checks_and_caches(raw_server: list[str], monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    assert [s.id for s in build().load(None)] == ["en-0", "en-1", "en-2"]
    assert raw_server == [f"/{judge_module.COMMIT}/test_prompts_en.csv"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert len(list(build().load(None))) == 3 and len(raw_server) == 1  # from the cache, nothing asked
    monkeypatch.setitem(task_module.SHA256, "test_prompts_en.csv", "0" * 64)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set; fetch it once: curl"):
        list(build().load(None))  # the cached file no longer matches the pin, and no network
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(UserError, match=re.escape("not the pinned 0000")):
        list(build().load(None))


# --------------------------------------------------------------------------------------------------- runs


def test_a_dead_judge_server_then_resume_asks_only_what_did_not_finish(tmp_path: Path) -> None:
    copy, images = write_copy(tmp_path / "data"), write_images(tmp_path / "img", [0, 1, 2], 2)
    args = ["--data", str(copy), "--images", str(images), "-T", "images_per_prompt=2", "--concurrency", "1",
            "--output", str(tmp_path / "out")]
    with ScriptedJudge(lambda r: answer([1] * 4 if "Relationship - Composition" in r.text else [1, 0, 1]),
                       die_after=3) as first:
        judge(*args, "--base-url", first.url)
    logged = [json.loads(x) for x in (run_dir(tmp_path / "out") / "samples.jsonl").read_text().splitlines()]
    failed = sum(1 for x in logged for t in x["trials"] if t.get("failure"))
    # three answers, then the server is gone: the other three images failed (each after its 11 asks)
    assert failed == 3 and len([r for r in first.requests]) > 3
    with ScriptedJudge(lambda r: answer([1] * 4 if "Relationship - Composition" in r.text else [1, 0, 1])) as second:
        assert judge(*args, "--base-url", second.url) == 0
    assert len(second.requests) == 3  # only the failed images: the answered ones are neither re-run nor re-sent
    m = metric(record(tmp_path / "out"), "unigenbench-accuracy")
    assert m["n_failed"] == 0 and m["extra"]["images"]["judged"] == 6


def test_export_of_a_generation_run_round_trips_the_official_layout_and_partial_sets(tmp_path: Path) -> None:
    copy = write_copy(tmp_path / "data")
    images = write_images(tmp_path / "img", [0, 1, 2], 2)
    (images / "1_1.png").unlink()  # a partial image set
    with ScriptedJudge(lambda r: answer([1] * 4 if "Relationship - Composition" in r.text else [1, 1, 1])) as s:
        assert judge("--data", str(copy), "--images", str(images), "-T", "images_per_prompt=2", "--base-url", s.url,
                     "--output", str(tmp_path / "out")) == 0
    m = metric(record(tmp_path / "out"), "unigenbench-accuracy")
    assert m["failed_by_kind"] == {"data": 1} and m["extra"]["images"] == {"judged": 5, "dropped": 0, "missing": 1}
    assert m["value"] == 1.0 and len(s.requests) == 5


@pytest.mark.slow
def test_generate_with_a_tiny_flux_then_judge_then_report(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    from tests import tiny_diffusers

    flux = tiny_diffusers.build_flux(tmp_path / "flux")
    copy = write_copy(tmp_path / "data")
    with ScriptedJudge(lambda r: answer([1, 0, 1])) as server:
        assert cli.main(["run", "--task", "unigenbench", "--data", str(copy), "--limit", "1", "-T",
                         "images_per_prompt=2", "--generator", "flux-dev", "-G", f"path={flux}", "-G", "steps=2",
                         "-G", "width=32", "-G", "height=32", "--model", "gpt-4.1", "--base-url", server.url,
                         "--output", str(tmp_path / "out"), "--quiet"]) == 0
    runs = {p.name.split("__")[1]: p for p in (tmp_path / "out").iterdir() if (p / "run.json").is_file()}
    gen = next(p for k, p in runs.items() if k.startswith("gen"))
    seeds = [c["seed"] for x in (gen / "samples.jsonl").read_text().splitlines() for c in json.loads(x)["candidates"]]
    assert seeds == [3407, 3408]  # inference/flux_en_multi_node_inference.py:95
    assert cli.main(["export", str(gen), str(tmp_path / "official"), "--layout", "official"]) == 0
    assert sorted(p.name for p in (tmp_path / "official").iterdir()) == ["0_0.png", "0_1.png"]
    made = {c["index"]: c["path"] for c in json.loads((gen / "samples.jsonl").read_text())["candidates"]}
    for j in (0, 1):  # byte for byte
        assert (tmp_path / "official" / f"0_{j}.png").read_bytes() == (gen / made[j]).read_bytes()
    judged = runs["gpt-4.1"]
    rec = json.loads((judged / "run.json").read_text())
    assert metric(rec, "unigenbench-accuracy")["value"] == pytest.approx(2 / 3)  # Style 1, WK 0, Attribute 1
    assert rec["source"]["kind"] == "generation-run" if "source" in rec else True
    assert cli.main(["report", str(judged)]) == 0


def test_the_reward_model_alternative_scores_each_image(tmp_path: Path) -> None:
    copy, images = write_copy(tmp_path / "data"), write_images(tmp_path / "img", [0, 1, 2], 1)
    assert cli.main(["run", "--task", "unigenbench", "--data", str(copy), "--images", str(images), "-T",
                     "images_per_prompt=1", "--model", "constant", "-M", "value=0.25", "--output",
                     str(tmp_path / "out"), "--quiet"]) == 0
    rec = record(tmp_path / "out")
    assert rec["protocol"]["id"] == "unigenbench-rm" and rec["judge"]["protocol"] == "reward-model"
    assert metric(rec, "mean-score")["value"] == 0.25 and metric(rec, "mean-score")["n_units"] == 3


def test_the_offline_evalmodel_protocol_sends_image_first_as_jpeg_95(tmp_path: Path) -> None:
    from PIL import Image

    copy, images = write_copy(tmp_path / "data"), write_images(tmp_path / "img", [0, 1, 2], 1)
    with ScriptedJudge(lambda r: answer([1, 1, 0])) as server:
        assert cli.main(["run", "--task", "unigenbench", "--data", str(copy), "--images", str(images), "-T",
                         "images_per_prompt=1", "--limit", "1", "--protocol", "unigenbench-offline", "--model",
                         "unigenbench-evalmodel-32b", "--base-url", server.url, "-M", "served_model=QwenVL",
                         "--output", str(tmp_path / "out"), "--quiet"]) == 0
    (request,) = server.requests
    # vllm_request.py:78-98: the image part first, then the text; max_tokens 4096 (line 115)
    assert request.parts[0] == "<image>" and request.texts[0].startswith("You are a precise")
    assert request.body["model"] == "QwenVL" and request.body["max_tokens"] == 4096
    # lines 53-58 and 81: convert("RGB"), JPEG quality 95, declared image/jpeg
    expected = io.BytesIO()
    Image.open(images / "0_0.png").convert("RGB").save(expected, format="JPEG", quality=95)
    assert request.images[0].mime == "image/jpeg" and request.images[0].data == expected.getvalue()
    rec = record(tmp_path / "out")
    assert rec["judge"]["substitute"] is False and rec["judge"]["judge_protocol"]["id"] == "unigenbench-offline"
    assert metric(rec, "unigenbench-accuracy")["value"] == pytest.approx((1 + 1 + 0) / 3)
