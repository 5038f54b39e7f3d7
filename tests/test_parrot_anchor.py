"""PARROT anchor -> filter, end to end over real local servers (a scripted teacher and judge; a tiny Qwen3-VL).

Every count asserted below is worked out by hand from the behaviour the test planned for each sample.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import rrbench
from rrbench_train import cli
from rrbench_train.parrot.stage import latest_records, read_json, read_records
from tests import parrot_teacher as pt
from tests.judge_server import Reply, Request, ScriptedJudge

SANITY = ["--task", "sanity", "-T", "size=32"]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")


def samples(n: int, variant: str = "t2i") -> list[rrbench.Sample]:
    return list(rrbench.build_task("sanity", n=n, size=32, variant=variant).load(None))


def stage_dirs(out: Path, stage: str) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.name.startswith(f"{stage}__")) if out.is_dir() else []


def anchor(out: Path, url: str, *extra: str) -> tuple[int, Path | None]:
    code = cli.main(["anchor", *SANITY, "--teacher", "gpt-4.1", "--base-url", url, "-M", "max_retries=0",
                     "--out", str(out), *extra])
    dirs = stage_dirs(out, "anchor")
    return code, dirs[0] if dirs else None


def filtered(anchor_dir: Path, *extra: str) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    before = set(stage_dirs(anchor_dir.parent, "filter"))
    code = cli.main(["filter", "--anchor", str(anchor_dir), *extra])
    after = set(stage_dirs(anchor_dir.parent, "filter"))
    (path,) = (after - before) or after
    info = read_json(path / "stage.json") or {}
    return code, info, {r["id"]: r for r in latest_records(path)}


def rejected(info: dict[str, Any]) -> dict[str, int]:
    return {name: row["rejected"] for name, row in info["counts"]["predicates"].items()}


# ------------------------------------------------------------------------------------------------ pairwise, t2i

# One planned behaviour per sample (sanity t2i, n=10). Hand-worked verdicts (min chars 500):
#   consistent x4 (0,1,2,8): pass all.  inconsistent (3): label (sums imply the other) + predictive (words too).
#   malformed (4): format, label (no scores), predictive (no words for either: judge says tie), length (9 chars).
#   leaking (5): leak only.  terse (6): length only (400 chars).  http (7): no answer (anchor failure, not filtered).
#   tied (9): label (equal sums) + predictive (tie).
PLAN = [pt.consistent, pt.consistent, pt.consistent, pt.inconsistent, pt.malformed, pt.leaking, pt.terse,
        pt.http_error, pt.consistent, pt.tied]


def test_anchor_then_filter_counts_every_predicate_as_worked_by_hand(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = samples(10)
    script = pt.Script(data, {s.id: pt.pairwise_behaviour(b) for s, b in zip(data, PLAN, strict=True)})
    with ScriptedJudge(script) as teacher, ScriptedJudge(pt.judge_answer) as judge:
        code, stage = anchor(tmp_path / "out", teacher.url, "-T", "n=10")
        assert code == 0 and stage is not None
        info = read_json(stage / "stage.json") or {}
        assert info["status"] == "done"
        assert info["counts"] == {"samples_read": 10, "skipped": {}, "usable_samples": 10, "items": 10, "asked": 10,
                                  "resumed": 0, "answered": 9, "failed": {"http": 1}}
        assert info["config"]["prompt"] == "anchor-pairwise-v1.txt@v1"

        # The request: the student's own request (its two images where the critic prompt puts them), then the anchor.
        first = teacher.requests[0]
        assert len(first.images) == 2 and first.parts[-1].lstrip().startswith("Reference for you alone")
        assert "Output your evaluation in the following format" in first.parts[-2]
        records = {r["id"]: r for r in latest_records(stage)}
        assert set(records) == {s.id for s in data}
        for s in data:
            r = records[s.id]
            assert r["target"]["winner"] == "AB"[s.label.winner or 0] and r["label"] == s.label.to_json()
            assert r["student_prompt"] == "rationalrewards/pairwise-t2i@released-1"
            assert r["teacher"]["model"] == "gpt-4.1" and r["teacher"]["prompt"] == "anchor-pairwise-v1.txt@v1"
            for media, rel in zip(s.candidates, r["images"]["candidates"], strict=True):
                stored = (stage / rel).read_bytes()  # content-addressed, the bytes as given
                ext = "jpg" if stored.startswith(b"\xff\xd8\xff") else "png"  # the jpeg-degraded ones stay JPEG
                assert stored == media.read_bytes() and rel == f"images/{hashlib.sha256(stored).hexdigest()}.{ext}"
        assert records[data[7].id]["failure"]["kind"] == "http" and "answer" not in records[data[7].id]
        assert records[data[0].id]["answer"] == pt.consistent("AB"[data[0].label.winner or 0])

        # Rerun: only the failed item is asked again.
        code, _ = anchor(tmp_path / "out", teacher.url, "-T", "n=10")
        assert code == 0
        assert script.requests == Counter({s.id: 2 if i == 7 else 1 for i, s in enumerate(data)})

        code, info, checks = filtered(stage, "--judge", "gpt-4.1", "--judge-base-url", judge.url,
                                      "--min-chars", "500", "-M", "max_retries=0")
        assert code == 0
        assert rejected(info) == {"format": 1, "label": 3, "predictive": 3, "leak": 1, "length": 2}
        c = info["counts"]
        assert (c["items"], c["anchor_failed"], c["kept"], c["kept_fraction"]) == (9, 1, 4, round(4 / 9, 4))
        assert c["predicates"]["label"]["rate"] == round(3 / 9, 4)
        assert c["per_task"] == {"sanity": {"items": 9, "kept": 4, "kept_fraction": round(4 / 9, 4),
                                            "rejected": rejected(info)}}
        assert {i for i, r in checks.items() if r["kept"]} == {data[k].id for k in (0, 1, 2, 8)}
        wrong = checks[data[3].id]["checks"]
        assert not wrong["label"]["passed"] and "sums A" in wrong["label"]["reason"]
        assert wrong["format"]["passed"] and wrong["leak"]["passed"] and wrong["length"]["passed"]
        assert checks[data[5].id]["checks"]["leak"]["reason"] == "mentions 'human'"
        assert len(judge.requests) == 9
        assert all("Score A" not in r.text and not r.images for r in judge.requests)  # words only, no images

        # Filter again: finished items are not judged again.
        filtered(stage, "--judge", "gpt-4.1", "--judge-base-url", judge.url, "--min-chars", "500",
                 "-M", "max_retries=0")
        assert len(judge.requests) == 9

    # Without a judge: predictive is recorded as not applied, never passed, and the summary says so.
    capsys.readouterr()
    code, info, checks = filtered(stage, "--min-chars", "500")
    assert code == 0 and "note: predictive: not applied (no --judge given)" in capsys.readouterr().out
    row = info["counts"]["predicates"]["predictive"]
    assert (row["applied"], row["not_applied"], row["rejected"], row["rate"]) == (0, 9, 0, None)
    assert all(r["checks"]["predictive"] == {"applied": False, "passed": False, "reason": "no --judge given"}
               for r in checks.values())
    assert info["counts"]["kept"] == 4  # the predictive rejections (3, 4, 9) are all rejected by label too


def test_several_answers_per_pair_are_separate_requests_and_records(tmp_path: Path) -> None:
    data = samples(2)
    script = pt.Script(data, {s.id: pt.pairwise_behaviour(pt.consistent) for s in data})
    with ScriptedJudge(script) as teacher:
        code, stage = anchor(tmp_path / "out", teacher.url, "-T", "n=2", "--candidates", "3", "--concurrency", "2")
    assert code == 0 and stage is not None
    ids = [r["id"] for r in read_records(stage)]
    assert sorted(ids) == sorted(f"{s.id}#{k}" for s in data for k in range(3))
    assert script.requests == Counter({s.id: 3 for s in data})


# ------------------------------------------------------------------------------------------------ pointwise, edit


def test_pointwise_edit_critiques_each_candidate_and_judges_the_pair(tmp_path: Path) -> None:
    # Samples 2k and 2k+1 edit the same photo and share an image, so the plan is per photo (the server cannot tell
    # two identical requests apart): astronaut consistent, camera inconsistent, chelsea a broken rejected critique.
    data = samples(6, "edit")
    behaviours = [pt.pointwise_behaviour(generation="edit"),
                  pt.pointwise_behaviour(consistent_scores=False, generation="edit"),
                  pt.pointwise_behaviour(broken=True, generation="edit")]
    script = pt.Script(data, {s.id: behaviours[i // 2] for i, s in enumerate(data)})
    with ScriptedJudge(script) as teacher, ScriptedJudge(pt.judge_answer) as judge:
        code, stage = anchor(tmp_path / "out", teacher.url, "-T", "n=6", "-T", "variant=edit", "--kind", "pointwise")
        assert code == 0 and stage is not None
        records = {r["id"]: r for r in latest_records(stage)}
        assert set(records) == {f"{s.id}#cand{c}" for s in data for c in (0, 1)}
        assert len(teacher.requests) == 12 and all(len(t.images) == 2 for t in teacher.requests)  # source, candidate
        r = records[f"{data[0].id}#cand0"]
        assert r["student_prompt"] == "rationalrewards/pointwise-edit@released-1" and len(r["images"]["source"]) == 1
        assert r["target"] == {"candidate": 0, "preferred": data[0].label.winner == 0,
                               "pair": [f"{data[0].id}#cand0", f"{data[0].id}#cand1"]}
        assert (stage / r["images"]["source"][0]).read_bytes() == data[0].source[0].read_bytes()

        code, info, checks = filtered(stage, "--judge", "gpt-4.1", "--judge-base-url", judge.url,
                                      "--min-chars", "100")
    # astronaut (4 items): kept.  camera (4): the preferred scored lower: label and predictive reject all four.
    # chelsea (4): the 2 rejected items are no critique: format + length reject them; label rejects all four (no
    # score to compare); predictive passes all four (the one critique's words favour the preferred image).
    assert code == 0
    assert rejected(info) == {"format": 2, "label": 8, "predictive": 4, "leak": 0, "length": 2}
    assert info["counts"]["kept"] == 4 and info["counts"]["kept_fraction"] == round(4 / 12, 4)
    assert {i for i, r in checks.items() if r["kept"]} == {f"{s.id}#cand{c}" for s in data[:2] for c in (0, 1)}
    assert len(judge.requests) == 6  # one request per pair, shared by its two items


# ------------------------------------------------------------------------------------------------ bad input


def write_genai(path: Path, votes: list[tuple[str, str, str]]) -> Path:
    from tests.test_task_genai_bench import T2I_IMAGES, t2i_columns, write_parquet

    return write_parquet(path, t2i_columns(votes), T2I_IMAGES)


def test_samples_without_a_strict_preference_are_skipped_by_reason(tmp_path: Path) -> None:
    data = write_genai(tmp_path / "genai.parquet", [("L", "D", "leftvote"), ("D", "L", "rightvote"),
                                                   ("L", "L", "tievote"), ("D", "D", "bothbad_vote"),
                                                   ("L", "D", "skipvote")])
    with ScriptedJudge(lambda r: pt.consistent(pt.preferred_letter(r.text))) as teacher:
        code = cli.main(["anchor", "--task", "genai-bench-t2i", "--data", str(data), "--teacher", "gpt-4.1",
                         "--base-url", teacher.url, "--out", str(tmp_path / "out")])
        assert len(teacher.requests) == 2
    (stage,) = stage_dirs(tmp_path / "out", "anchor")
    counts = (read_json(stage / "stage.json") or {})["counts"]
    assert code == 0 and counts["skipped"] == {"tie": 2, "unknown-label": 1}
    assert (counts["samples_read"], counts["usable_samples"], counts["answered"]) == (5, 2, 2)
    assert sorted(r["target"]["winner"] for r in latest_records(stage)) == ["A", "B"]


def test_a_dataset_with_no_usable_label_is_one_line_and_exit_2(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_genai(tmp_path / "ties.parquet", [("L", "L", "tievote"), ("D", "D", "bothbad_vote"),
                                                   ("L", "D", "skipvote")])
    capsys.readouterr()
    with ScriptedJudge(lambda r: "never asked") as teacher:
        code = cli.main(["anchor", "--task", "genai-bench-t2i", "--data", str(data), "--teacher", "gpt-4.1",
                         "--base-url", teacher.url, "--out", str(tmp_path / "out")])
        assert teacher.requests == []
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("rrbench-train: error: task 'genai-bench-t2i' has no sample with a usable strict "
                                 "preference (3 read, skipped: tie 2, unknown-label 1)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["anchor", *SANITY, "--teacher", "rationalrewards-8b"], "teacher 'rationalrewards-8b' answers no free chat"),
    (["anchor", "--task", "sanity-gen", "--teacher", "gpt-4.1"], "task 'sanity-gen' is a t2i benchmark"),
    (["anchor", *SANITY, "--teacher", "gpt-4.1", "--prompt", "anchor-nope-v1"], "unknown prompt 'anchor-nope-v1'"),
    (["filter", "--anchor", "."], "is not an anchor stage directory"),
])
def test_user_errors_are_one_line_and_exit_2(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rrbench-train: error: ") and message in err and "\n" not in err


def test_a_refused_api_key_stops_at_the_first_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedJudge(lambda r: Reply("invalid api key", status=401)) as teacher:
        code, stage = anchor(tmp_path / "out", teacher.url, "-T", "n=6", "--concurrency", "1")
        assert len(teacher.requests) == 1
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("rrbench-train: error: the teacher's server refused the API key")
    assert stage is not None and (read_json(stage / "stage.json") or {})["counts"]["failed"] == {"auth": 1}


def test_a_teacher_answering_in_another_format_is_rejected_by_format_and_said_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedJudge(lambda r: "Image A looks nicer to me, " * 20) as teacher:
        code, stage = anchor(tmp_path / "out", teacher.url, "-T", "n=4")
    assert code == 0 and stage is not None
    capsys.readouterr()
    code, info, _ = filtered(stage, "--predicates", "format,label,leak,length")
    out = capsys.readouterr().out
    assert code == 0 and rejected(info) == {"format": 4, "label": 4, "leak": 0, "length": 0}
    assert info["counts"]["kept"] == 0
    assert sum("every answer was rejected" in line for line in out.splitlines()) == 1


# ------------------------------------------------------------------------------------------------ SIGKILL


def test_sigkill_during_anchor_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = samples(12)
    kill_after = random.Random(17).randint(3, 7)

    def slow(request: Request) -> str | Reply:
        time.sleep(0.3)
        return pt.consistent(pt.preferred_letter(request.text))

    script = pt.Script(data, {s.id: slow for s in data})
    args = ["anchor", *SANITY, "-T", "n=12", "--teacher", "gpt-4.1", "--concurrency", "2"]
    env = {**os.environ, "OPENAI_API_KEY": "dummy", "PYTHONUNBUFFERED": "1"}
    with ScriptedJudge(script) as teacher:
        out = tmp_path / "killed"
        proc = subprocess.Popen([sys.executable, "-m", "rrbench_train.cli", *args, "--base-url", teacher.url,
                                 "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not any(len(list(read_records(d))) >= kill_after for d in stage_dirs(out, "anchor")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        (stage,) = stage_dirs(out, "anchor")
        before = {r["id"] for r in read_records(stage)}
        assert kill_after <= len(before) < 12 and (read_json(stage / "stage.json") or {})["status"] == "running"

        assert cli.main([*args, "--base-url", teacher.url, "--out", str(out)]) == 0
    # Nothing finished was asked again; every item now has exactly one record.
    assert all(script.requests[i] == 1 for i in before)
    lines = [r["id"] for r in read_records(stage)]
    assert sorted(lines) == sorted(s.id for s in data)
    counts = (read_json(stage / "stage.json") or {})["counts"]
    assert (counts["resumed"], counts["asked"], counts["answered"]) == (len(before), 12 - len(before), 12)

    with ScriptedJudge(lambda r: pt.consistent(pt.preferred_letter(r.text))) as teacher:
        assert cli.main([*args, "--base-url", teacher.url, "--out", str(tmp_path / "whole")]) == 0
    (whole,) = stage_dirs(tmp_path / "whole", "anchor")
    assert whole.name == stage.name  # the same stage, asked the same way
    by_id = {r["id"]: r for r in read_records(stage)}
    assert by_id == {r["id"]: r for r in read_records(whole)}
    assert sorted(p.name for p in (stage / "images").iterdir()) == sorted(p.name for p in (whole / "images").iterdir())


# ------------------------------------------------------------------------------------------------ a real model


@pytest.mark.slow
def test_tiny_qwen3_vl_teacher_over_transformers_serve(tmp_path: Path, tiny_vlm: Path, vlm_server: str) -> None:
    out = tmp_path / "out"
    code = cli.main(["anchor", *SANITY, "-T", "n=2", "--teacher", "qwen3-vl-8b", "--base-url", vlm_server,
                     "-M", f"served_model={tiny_vlm}", "--max-tokens", "8", "--concurrency", "1", "--out", str(out)])
    assert code == 0
    (stage,) = stage_dirs(out, "anchor")
    counts = (read_json(stage / "stage.json") or {})["counts"]
    assert (counts["items"], counts["answered"]) == (2, 2)  # random weights: an answer, of junk
    code, info, checks = filtered(stage, "--predicates", "format,length")
    assert code == 0 and info["counts"]["predicates"]["format"]["rejected"] == 2 and info["counts"]["kept"] == 0
    assert all(r["checks"]["format"]["reason"].startswith("unparsable") for r in checks.values())
