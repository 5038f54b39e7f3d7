"""ImgEdit-Bench Basic (`imgedit-bench`): the official judge request, parse and failure rules, the official
aggregation, and the task end to end through the CLI against a scripted judge server.

Official code: github.com/PKU-YuanGroup/ImgEdit, commit 547185d, ``Benchmark/Basic/`` (basic_bench.py,
step1_get_avgscore.py, step2_typescore.py, prompts.json, basic_edit.json)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli
from rrbench.metrics._compute import compute_metrics
from rrbench.protocols.official import Judged
from rrbench.tasks import imgedit_bench as ib
from rrbench.tasks import judge_imgedit as ji
from rrbench.types import (
    ChatQuery,
    DataError,
    FailureKind,
    Judgement,
    Label,
    Media,
    Prediction,
    Sample,
    SampleResult,
    Trial,
    UserError,
)
from tests.fixtures.imgedit_copy import ITEMS, photo_jpeg, write_copy
from tests.judge_server import Reply, Request, ScriptedJudge

# The answer format of basic_bench_readme.md:168-170 (a reasoning line, then the three criteria).
GOOD = "Brief reasoning: Chandelier added, well lit.\nPrompt Compliance: 4\nVisual Naturalness: 3\n" \
       "Physical & Detail Coherence: 3"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("RRBENCH_CACHE", str(tmp_path / "cache.sqlite"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def png(name: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_jpeg(name))).save(buffer, "PNG")
    return buffer.getvalue()


def edited_folder(folder: Path, keys: list[str]) -> Path:
    """Edited images in the official layout: one flat folder of <key>.png (basic_bench.py:58)."""
    folder.mkdir(parents=True)
    for key in keys:
        (folder / f"{key}.png").write_bytes(png("coffee"))
    return folder


def run(*args: str) -> int:
    return cli.main(["run", "--task", "imgedit-bench", "--quiet", *args])


def run_dir(out: Path, judge: str) -> Path:
    (found,) = [p for p in out.iterdir() if p.name.startswith(f"imgedit-bench__{judge}")]
    return found


def metrics(folder: Path) -> dict[str, dict[str, Any]]:
    record = json.loads((folder / "run.json").read_text())
    rows = record["metrics"] if isinstance(record["metrics"], list) else record["metrics"]["overall"]
    return {r["metric"]: r for r in rows if r["failure_policy"] == "excluded"}


# --------------------------------------------------------------------------------------------------- prompts


def test_rubrics_are_prompts_json_verbatim() -> None:
    source = json.loads((Path(ji.__file__).parents[1] / "rrbench/prompts/data/imgedit/source.json").read_text())
    assert source["commit"] == ji.COMMIT and set(source["rubrics"]) == {
        "replace", "add", "adjust", "remove", "style", "action", "extract", "background", "compose"}
    for edit_type, text in ji.rubrics().items():
        # the sha256 of each prompts.json value, taken from the official file when the data was written
        assert hashlib.sha256(text.encode()).hexdigest() == source["rubrics"][edit_type]["sha256"]
        assert text.count("<edit_prompt>") == 1 and text.startswith("\nYou are a data rater")
    # prompts.json line 3 ("add"): the instruction sits between "editing instruction is : " and ".\n\nBelow ..."
    text = ji.request_text("add", "Add an elegant chandelier in the center of the ceiling.")
    assert text.endswith("editing instruction is : Add an elegant chandelier in the center of the ceiling..\n\n"
                         "Below are the images before and after editing:\n")


# --------------------------------------------------------------------------------------------------- parse


@pytest.mark.parametrize(("answer", "score", "out_of_range"), [
    # step1_get_avgscore.py:5-12: lines split on ': ', an all-digit right side counts, round(mean, 2)
    (GOOD, 3.33, False),  # (4 + 3 + 3) / 3 = 3.333...
    ("Brief reasoning: No change.\nPrompt Compliance: 1\nVisual Seamlessness: 1\nPhysical & Detail Fidelity: 2",
     1.33, False),  # 4 / 3 = 1.333...
    ("Prompt Compliance: 2\nVisual Naturalness: 3\nPhysical & Detail Integrity: 3", 2.67, False),  # 8/3 = 2.666...
    ("**Prompt Compliance**: 5\n**Visual Naturalness**: 4\n**Physical & Detail Coherence**: 3", 4.0, False),
    ("  Style Fidelity: 5  \r\nContent Preservation: 4\r\n", 4.5, False),  # stripped lines, CRLF: (5 + 4) / 2
    ("Prompt Compliance: 4/5\nVisual Naturalness: 3\nPhysical & Detail Coherence:4\nScore: 4.",
     3.0, False),  # only "Visual Naturalness: 3" has an all-digit right part after ': '
    ("Score: 4: 5\nPrompt Compliance: 2", 2.0, False),  # three parts: not counted
    ("Brief reasoning: 3\nPrompt Compliance: 5", 4.0, False),  # any line counts, whatever its name: (3 + 5) / 2
    ("指令遵循: 4\n视觉自然度：3\n物理一致性：3", 4.0, False),  # fullwidth colons never split: only the first line
    ("Prompt Compliance: ５\nVisual Naturalness: 3", 4.0, False),  # '５'.isdigit() and int('５') == 5: (5 + 3) / 2
    ("Prompt Compliance: 7\nVisual Naturalness: 0\nPhysical & Detail Coherence: 5", 4.0, True),  # (7+0+5)/3, kept
    ("Prompt Compliance: 05\nVisual Naturalness: 10", 7.5, True),  # int('05') = 5: (5 + 10) / 2
    ("Brief reasoning: The chandelier is\nPrompt Compliance: 4\nVisual Natur", 4.0, False),  # cut mid-answer
    ("I'm sorry, I can't evaluate these images.", None, False),
    ("", None, False),
])
def test_the_official_parse(answer: str, score: float | None, out_of_range: bool) -> None:
    reading = ji.read_answer(answer)
    assert reading.score == score and reading.out_of_range is out_of_range and reading.crash is None


def test_a_digit_int_refuses_is_where_step1_would_crash() -> None:
    # '²'.isdigit() is True but int('²') raises: step1_get_avgscore.py:9-10 stops with a traceback
    reading = ji.read_answer("Prompt Compliance: 4\nVisual Naturalness: ²")
    assert reading.crash is not None and reading.score is None


# --------------------------------------------------------------------------------------------------- judge


def sample(key: str = "97", source: tuple[Media, ...] | None = None) -> Sample:
    item = ITEMS[key]
    original = (Media.from_bytes(photo_jpeg("chelsea")),) if source is None else source
    return Sample(key, item["prompt"], (), Label.none(), source=original,
                  meta={"category": item["edit_type"], "edit_type": item["edit_type"], "image": item["id"]})


def judge(s: Sample, answer: Judgement) -> tuple[Judged, list[ChatQuery]]:
    asked: list[ChatQuery] = []

    async def ask(query: ChatQuery) -> Judgement:
        asked.append(query)
        return answer

    edited = Media.from_bytes(png("coffee"))
    return asyncio.run(ji.ImgEditJudge().judge(s, edited, ask, 0)), asked


def test_the_request_declares_both_images_png_and_sends_no_decoding() -> None:
    judged, (query,) = judge(sample(), Judgement(raw=GOOD))
    assert judged.score == 3.33 and judged.failure is None
    (message,) = query.messages
    parts = message["content"]
    assert message["role"] == "user" and [p["type"] for p in parts] == ["text", "image", "image"]  # lines 42-48
    assert [p["media"].mime for p in parts[1:]] == ["image/png", "image/png"]  # lines 46-47, the JPEG included
    assert parts[1]["media"].read_bytes()[:3] == b"\xff\xd8\xff"  # the original's JPEG bytes, as they are
    assert query.temperature is None and query.max_tokens is None  # lines 39-50 set neither
    # "Brief reasoning: Chandelier added, well lit." splits in two but its right part is not digits: not counted
    assert judged.judgements[0].aspects == (
        {"Prompt Compliance": 4.0, "Visual Naturalness": 3.0, "Physical & Detail Coherence": 3.0},)


@pytest.mark.parametrize(("answer", "kind", "flag"), [
    (Judgement(raw="No scores here."), FailureKind.PARSE, "no_score"),  # step1:18-20 drops the key silently
    (Judgement(raw="Prompt Compliance: ³"), FailureKind.PARSE, "official_crash"),
    (Judgement.failed(FailureKind.HTTP, "HTTP 500"), FailureKind.HTTP, None),  # basic_bench.py:53-55, 83-85
    (Judgement.failed(FailureKind.TIMEOUT, "timed out"), FailureKind.TIMEOUT, None),
])
def test_the_failure_rule(answer: Judgement, kind: FailureKind, flag: str | None) -> None:
    judged, asked = judge(sample(), answer)
    assert judged.score is None and judged.failure == kind and len(asked) == 1
    assert flag is None or flag in judged.judgements[0].flags


def test_an_unknown_edit_type_is_the_samples_data_failure_and_asks_nothing() -> None:
    s = sample()
    judged, asked = judge(Sample(s.id, s.prompt, (), s.label, s.source, {**s.meta, "edit_type": "recolour"}),
                          Judgement(raw=GOOD))
    assert judged.failure == FailureKind.DATA and asked == []


# --------------------------------------------------------------------------------------------------- aggregation


def result(key: str, edit_type: str, score: float | None, flags: tuple[str, ...] = ()) -> SampleResult:
    if score is None:
        trial = Trial((0,), (Judgement(raw="no score", flags=("no_score",)),), None, FailureKind.PARSE)
    else:
        trial = Trial((0,), (Judgement(raw="x", scores=(score,), flags=flags),), Prediction((score,)))
    return SampleResult(key, Label.none(), (trial,), meta={"category": edit_type, "edit_type": edit_type})


def test_the_official_aggregation_by_hand() -> None:
    results = [result("1", "add", 4.0), result("2", "style", 2.67), result("3", "add", 3.33),
               result("4", "remove", 5.0), result("5", "extract", None), result("6", "add", 2.67),
               result("7", "remove", 4.0, ("out_of_range",)), result("8", "remove", 4.33)]
    rows = {(r["metric"], r["failure_policy"]): r
            for r in compute_metrics(results, ib.OFFICIAL, n_boot=50)["overall"]}
    types = rows[("imgedit-type-mean", "excluded")]
    # step2_typescore.py:8-17 on the scored images, first-seen order, round(mean, 2):
    #   add = (4.0 + 3.33 + 2.67) / 3 = 10.0 / 3 = 3.333 -> 3.33; style = 2.67; remove = (5 + 4 + 4.33) / 3 =
    #   13.33 / 3 = 4.443 -> 4.44; extract's only image had no score (step1 dropped it): no extract entry
    assert types["extra"]["typescore"] == {"add": 3.33, "style": 2.67, "remove": 4.44}
    assert list(types["extra"]["typescore"]) == ["add", "style", "remove"]
    assert types["extra"]["overall_of_rounded_types"] == pytest.approx((3.33 + 2.67 + 4.44) / 3)  # = 3.48
    # the value: the unrounded type means, (10/3 + 2.67 + 13.33/3) / 3 = 3.48222...
    assert types["value"] == pytest.approx((10 / 3 + 2.67 + 13.33 / 3) / 3)
    assert types["ci_low"] <= types["value"] <= types["ci_high"]
    assert (types["n_scored"], types["failed_by_kind"], types["n_units"]) == (7, {"parse": 1}, 7)
    assert types["extra"]["flags"] == {"out_of_range": 1, "no_score": 1, "official_crash": 0, "truncated": 0}
    images = rows[("imgedit-image-mean", "excluded")]
    # every scored image: (4 + 2.67 + 3.33 + 5 + 2.67 + 4 + 4.33) / 7 = 26.0 / 7 = 3.714...
    assert images["value"] == pytest.approx(26.0 / 7) and images["scale"] == "score"
    # failures counted wrong: the dropped extract image scores 0, so the image mean is 26.0 / 8
    assert rows[("imgedit-image-mean", "wrong")]["value"] == pytest.approx(26.0 / 8)


def test_the_exported_result_json_holds_what_step1_can_read() -> None:
    def judged(key: str, answer: Judgement) -> SampleResult:
        j = ji.read_judgement(answer) if answer.ok else ji.Judged((answer,), None, answer.failure)
        trial = Trial((0,), j.judgements, Prediction((j.score,)) if j.score is not None else None, j.failure)
        return SampleResult(key, Label.none(), (trial,), meta={"edit_type": "add"})

    results = [judged("97", Judgement(raw=GOOD)), judged("10", Judgement(raw="No scores.")),
               judged("2", Judgement(raw="Prompt Compliance: ²")), judged("3", Judgement.failed(FailureKind.HTTP, "x"))]
    files = ji.ImgEditJudge().answers(results, {})
    # basic_bench.py:87-89 writes json.dump(results, f, indent=4); the unscored answer stays (step1 drops it), the
    # failed call and the answer step1 would crash on are left out; keys sorted as rrbench's metrics read them
    assert files["result.json"].decode() == json.dumps({"10": "No scores.", "97": GOOD}, indent=4)


# --------------------------------------------------------------------------------------------------- data


@pytest.mark.parametrize("images", ["original_images", "Benchmark/singleturn", "singleturn", "."])
def test_a_local_copy_in_each_accepted_layout(tmp_path: Path, images: str) -> None:
    copy = write_copy(tmp_path / "copy", images=images)
    samples = list(ib.imgedit_bench().load(copy))
    assert [s.id for s in samples] == list(ITEMS)  # basic_edit.json's keys, in its order
    replace = samples[3]
    assert replace.meta == {"category": "replace", "edit_type": "replace", "image": "daily object/000276684.jpg"}
    assert replace.source[0].read_bytes()[:3] == b"\xff\xd8\xff"
    assert replace.prompt == "Replace the giant boot in the image with a large coffee mug."
    assert ib.official_layout(replace, 0) == "628.png"


def test_bad_local_copies_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no basic_edit\.json"):
        list(ib.imgedit_bench().load(tmp_path))
    (tmp_path / "basic_edit.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"expected basic_edit\.json's shape"):
        list(ib.imgedit_bench().load(tmp_path))
    (tmp_path / "basic_edit.json").write_text(json.dumps(ITEMS))
    with pytest.raises(UserError, match="none of the first original images is under"):
        list(ib.imgedit_bench().load(tmp_path))


def test_untrusted_items_never_read_outside_the_copy(tmp_path: Path) -> None:
    (tmp_path / "secret.jpg").write_bytes(photo_jpeg("rocket"))
    items = {**ITEMS, "9": {"id": "../secret.jpg", "prompt": "Add a cat.", "edit_type": "add"},
             "10": {"prompt": "Add a cat.", "edit_type": "add"}, "11": "not an object"}
    copy = write_copy(tmp_path / "copy", items=items, images=".")
    by_id = {s.id: s for s in ib.imgedit_bench().load(copy)}
    for key, why in (("9", "leads outside the dataset folder"), ("10", "no original image path"),
                     ("11", "no edit instruction")):
        with pytest.raises(DataError, match=why):
            by_id[key].source[0].read_bytes()


def test_unpacking_writes_nothing_outside_its_folder(tmp_path: Path) -> None:
    tarball = tmp_path / "Benchmark.tar"
    with tarfile.open(tarball, "w") as archive:
        for name, content in (("Benchmark/singleturn/animal/1.jpg", b"\xff\xd8\xff"), ("../escaped.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    with pytest.raises(UserError, match="cannot unpack"):
        ib.unpack(tarball, tmp_path / "cache" / "Benchmark-x")
    assert not (tmp_path / "cache" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "cache" / "Benchmark-x").exists()  # no half-unpacked folder is left to be used


def test_the_hub_tarball_is_unpacked_once_into_rrbenchs_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "hub" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    jpeg = photo_jpeg("chelsea")
    with tarfile.open(snapshot / "Benchmark.tar", "w") as archive:  # the layout third-party scripts unpack
        info = tarfile.TarInfo("Benchmark/singleturn/animal/000342021.jpg")
        info.size = len(jpeg)
        archive.addfile(info, io.BytesIO(jpeg))
    asked: list[tuple[str, list[str]]] = []

    def snapshot_of(hub: Any, dataset: str, revision: str | None, patterns: list[str], hint: str) -> str:
        asked.append((dataset, patterns))  # the hub client's part: only Benchmark.tar is fetched
        return str(snapshot)

    monkeypatch.setattr(ib.hubaccess, "snapshot", snapshot_of)
    root = ib._hub_images()
    assert root == tmp_path / "xdg/rrbench/datasets/imgedit/Benchmark-0123abcd/Benchmark/singleturn"
    assert (root / "animal/000342021.jpg").read_bytes() == jpeg and asked == [("sysuyy/ImgEdit", ["Benchmark.tar"])]
    assert ib.SNAPSHOTS["sysuyy/ImgEdit"] == {"requested": None, "commit": "0123abcd"}  # run.json's record
    (snapshot / "Benchmark.tar").write_bytes(b"")  # unpacked once: the tarball is not read again
    assert (ib.unpack(snapshot / "Benchmark.tar", root.parents[1]) / "Benchmark/singleturn/animal").is_dir()


def test_offline_without_a_cached_copy_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"basic_edit\.json is not in the local .* \(HF_HUB_OFFLINE is set\); fetch it "
                                        "once: hf download sysuyy/ImgEdit"):
        list(ib.imgedit_bench().load(None))


# --------------------------------------------------------------------------------------------------- end to end


def answer_by_type(request: Request) -> str | Reply:
    """The judge's answers, by the rubric it was sent: add and adjust answer in the official format, style out of
    range, extract without a score, replace with a server error."""
    text = request.text
    if "image addition edits" in text:
        return GOOD  # 3.33
    if "attribute alteration edits" in text:
        return "Brief reasoning: fine.\nPrompt Compliance: 5\nVisual Seamlessness: 4\nPhysical & Detail Fidelity: 4"
    if "style transfer edits" in text:
        return "Style Fidelity: 6\nContent Preservation: 5\nRendering Quality: 4"  # 15 / 3 = 5.0, out of range
    if "object cut-out quality" in text:
        return "The object was not extracted."
    return Reply("upstream failure", status=500)


def test_judging_a_folder_in_the_official_layout(tmp_path: Path) -> None:
    copy = write_copy(tmp_path / "copy")
    edited = edited_folder(tmp_path / "edited", ["1082", "673", "450", "628"])  # 97 (add) has no image: partial
    with ScriptedJudge(answer_by_type) as server:
        assert run("--data", str(copy), "--images", str(edited), "--model", "gpt-4.1", "--base-url", server.url,
                   "-M", "max_retries=0", "--output", str(tmp_path / "runs")) == 0
        first = next(r for r in server.requests if "attribute alteration edits" in r.text)  # 1082 (adjust)
    record = json.loads((run_dir(tmp_path / "runs", "gpt-4.1") / "run.json").read_text())
    assert record["judge"]["substitute"] is False and record["judge"]["official_judges"] == ["gpt-4.1", "gpt-4o"]
    assert "temperature" not in first.body and "max_tokens" not in first.body  # basic_bench.py:39-50
    assert first.parts[1:] == ["<image>", "<image>"] and [i.mime for i in first.images] == ["image/png"] * 2
    assert first.images[0].data == (copy / "original_images/animal/000342021.jpg").read_bytes()
    assert first.images[1].data == (edited / "1082.png").read_bytes()
    found = metrics(run_dir(tmp_path / "runs", "gpt-4.1"))
    types = found["imgedit-type-mean"]
    # adjust (5+4+4)/3 = 4.33; style 5.0 (out of range, kept); extract dropped (parse); replace: HTTP 500
    # (http); add: no image (data). Type mean = (13/3 + 5.0) / 2 = 4.666...
    assert types["extra"]["typescore"] == {"adjust": 4.33, "style": 5.0}
    assert types["value"] == pytest.approx((4.33 + 5.0) / 2)
    assert types["failed_by_kind"] == {"data": 1, "http": 1, "parse": 1} and types["n_total"] == 5
    assert types["extra"]["flags"]["out_of_range"] == 1 and types["extra"]["flags"]["no_score"] == 1
    # export: the official result.json, key -> raw answer; the failed call and the missing image are left out
    assert cli.main(["export", str(run_dir(tmp_path / "runs", "gpt-4.1")), str(tmp_path / "answers")]) == 0
    exported = json.loads((tmp_path / "answers" / "result.json").read_text())
    assert list(exported) == ["1082", "450", "673"]  # sorted ids: the order run.json's metrics summed them in
    assert exported["450"] == "The object was not extracted." and exported["673"].startswith("Style Fidelity: 6")


def test_a_substitute_judge_is_named(tmp_path: Path) -> None:
    copy = write_copy(tmp_path / "copy")
    edited = edited_folder(tmp_path / "edited", list(ITEMS))
    with ScriptedJudge(lambda r: GOOD) as server:
        assert run("--data", str(copy), "--images", str(edited), "--model", "gpt-5", "--base-url", server.url,
                   "--output", str(tmp_path / "runs")) == 0
    record = json.loads((run_dir(tmp_path / "runs", "gpt-5") / "run.json").read_text())
    assert record["judge"]["substitute"] is True and record["judge"]["protocol"] == "official"


def test_a_judge_that_dies_mid_run_then_a_resume_asks_only_what_is_left(tmp_path: Path) -> None:
    copy = write_copy(tmp_path / "copy")
    edited = edited_folder(tmp_path / "edited", list(ITEMS))
    args = ["--data", str(copy), "--images", str(edited), "--model", "gpt-4.1", "-M", "max_retries=0",
            "-M", "concurrency=1", "--output", str(tmp_path / "runs")]
    with ScriptedJudge(lambda r: GOOD, die_after=2) as dying:
        run(*args, "--base-url", dying.url)
    found = metrics(run_dir(tmp_path / "runs", "gpt-4.1"))["imgedit-image-mean"]
    assert found["n_scored"] == 2 and found["n_failed"] == 3
    with ScriptedJudge(lambda r: GOOD) as fresh:
        assert run(*args, "--base-url", fresh.url) == 0
        assert len(fresh.requests) == 3  # the two answered images are never asked again
    found = metrics(run_dir(tmp_path / "runs", "gpt-4.1"))["imgedit-image-mean"]
    assert (found["n_scored"], found["n_failed"]) == (5, 0) and found["value"] == pytest.approx(3.33)


def test_the_reward_model_alternative(tmp_path: Path) -> None:
    copy = write_copy(tmp_path / "copy")
    edited = edited_folder(tmp_path / "edited", list(ITEMS))
    assert run("--data", str(copy), "--images", str(edited), "--model", "constant",
               "--output", str(tmp_path / "runs")) == 0
    folder = run_dir(tmp_path / "runs", "constant")
    record = json.loads((folder / "run.json").read_text())
    assert record["protocol"]["id"] == "imgedit-bench-rm" and record["judge"]["protocol"] == "reward-model"
    assert metrics(folder)["mean-score"]["n_scored"] == 5


def test_generate_then_judge_then_export_round_trips(tmp_path: Path) -> None:
    from tests import tiny_diffusers

    pytest.importorskip("diffusers")
    kontext = tiny_diffusers.build_flux_kontext(tmp_path / "kontext")
    copy = write_copy(tmp_path / "copy")
    out = tmp_path / "runs"
    generator = ["--generator", "flux-kontext-dev", "-G", f"path={kontext}", "-G", "steps=2", "-G", "width=48",
                 "-G", "height=32", "-G", f"max_area={48 * 32}", "-G", "auto_resize=false"]
    with ScriptedJudge(lambda r: GOOD) as server:
        assert run("--data", str(copy), "--limit", "2", *generator, "--model", "gpt-4.1", "--base-url", server.url,
                   "--output", str(out)) == 0
        assert len(server.requests) == 2
    judged = run_dir(out, "gpt-4.1")
    assert metrics(judged)["imgedit-image-mean"]["value"] == 3.33
    assert cli.main(["report", str(judged)]) == 0
    gen = run_dir(out, "gen-")
    assert cli.main(["export", str(gen), str(tmp_path / "edited"), "--layout", "official"]) == 0
    assert sorted(p.name for p in (tmp_path / "edited").iterdir()) == ["1082.png", "673.png"]
    log = [json.loads(line) for line in (gen / "samples.jsonl").read_text().splitlines()]
    for entry in log:  # byte for byte the generation run's images
        assert (tmp_path / "edited" / f"{entry['id']}.png").read_bytes() == \
            (gen / entry["candidates"][0]["path"]).read_bytes()
    with ScriptedJudge(lambda r: GOOD) as server:  # the exported folder judged again: same requests, cached answers
        assert run("--data", str(copy), "--limit", "2", "--images", str(tmp_path / "edited"), "--model", "gpt-4.1",
                   "--base-url", server.url, "--output", str(tmp_path / "again")) == 0
        assert server.requests == []
