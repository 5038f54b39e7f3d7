"""Generation runs end to end through the CLI: `rrbench generate`, the run store, resume, kills, judging the images
of a run or of a folder, export, and the bad input of the generation stage (docs/generation.md)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli
from tests.conftest import rrbench

PLUGINS = str(Path(__file__).parent / "plugins" / "gen_faults.py")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RRBENCH_PLUGINS": PLUGINS, "RRBENCH_CACHE": str(tmp_path / "cache.sqlite"),
            "RRBENCH_TEST_GENLOG": str(tmp_path / "genlog.txt"), "PYTHONUNBUFFERED": "1"}


def generate(out: Path, *args: str) -> Path:
    assert cli.main(["generate", "--output", str(out), "--quiet", *args]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.name.startswith("sanity-gen__gen-")]
    return run_dir


def records(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == len({x["id"] for x in lines})  # one record per sample
    return {x["id"]: x for x in lines}


def image_keys(run_dir: Path) -> dict[tuple[str, int], str]:
    return {(sid, c["index"]): c["key"] for sid, r in records(run_dir).items() for c in r["candidates"] if "key" in c}


def test_generate_stores_each_image_once_by_content_with_its_seed(tmp_path: Path) -> None:
    run_dir = generate(tmp_path / "runs", "--limit", "5", "-T", "images_per_prompt=2")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["generator"]["name"] == "painter" and record["generator"]["settings"]["error_rate"] == 0.0
    assert record["status"] == "complete" and record["counts"]["recorded"] == 5
    seeds = set()
    for sample in records(run_dir).values():
        assert [c["index"] for c in sample["candidates"]] == [0, 1]
        for c in sample["candidates"]:
            data = (run_dir / c["path"]).read_bytes()
            assert data.startswith(b"\x89PNG") and c["key"] == "sha256:" + hashlib.sha256(data).hexdigest()
            assert c["path"] == f"images/{c['key'][7:9]}/{c['key'][7:]}.png"
            seeds.add(c["seed"])
    assert len(seeds) == 10  # every image its own seed


def test_seeds_make_images_independent_of_limit_concurrency_and_resume(tmp_path: Path) -> None:
    few = image_keys(generate(tmp_path / "a", "--limit", "3"))
    many = image_keys(generate(tmp_path / "b", "--limit", "6", "--concurrency", "1"))
    assert few and few == {k: v for k, v in many.items() if k in few}
    other_seed = image_keys(generate(tmp_path / "c", "--limit", "3", "--seed", "1"))
    assert set(other_seed.values()).isdisjoint(few.values())


def test_a_resume_makes_only_the_failed_images(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "RRBENCH_TEST_FAILS": "t2i-0001-count:1,t2i-0003-text:0"}
    args = ("generate", "--generator", "flaky-painter", "--limit", "4", "-T", "images_per_prompt=2", "--quiet")
    first = rrbench(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["counts"]["failed"] == 2 and record["counts"]["failed_by_kind"] == {"oom": 2}
    failed = records(run_dir)["t2i-0001-count"]
    assert failed["candidates"][1] == {"index": 1, "seed": failed["candidates"][1]["seed"], "failure": "oom",
                                       "detail": "CUDA out of memory (injected)"}
    before = image_keys(run_dir)
    second = rrbench(*args, env={**env, "RRBENCH_TEST_FAILS": ""}, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "2 images made, 2 found already made" in second.stdout  # the two failed samples' other images are kept
    after = image_keys(run_dir)
    assert {k: after[k] for k in before} == before and len(after) == 8
    assert json.loads((run_dir / "run.json").read_text())["counts"]["failed"] == 0


@pytest.mark.slow
def test_sigkill_at_seeded_points_loses_no_image_and_makes_none_twice(tmp_path: Path, env: dict[str, str]) -> None:
    args = ["generate", "--generator", "logged-painter", "--limit", "12", "-T", "images_per_prompt=2", "--quiet",
            "--output", str(tmp_path / "runs")]
    calm = rrbench(*args[:-1], str(tmp_path / "calm"), env={**env, "RRBENCH_TEST_GENLOG": str(tmp_path / "calm.log")},
                   cwd=tmp_path)
    assert calm.returncode == 0, calm.stderr
    (calm_dir,) = (tmp_path / "calm").iterdir()
    slow = {**env, "RRBENCH_TEST_GEN_SLEEP": "0.2"}
    rng, kills = random.Random(14), 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "rrbench.cli", *args], env=slow, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 2.0))  # start-up takes about a second; images then come every 0.2 s
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    final = rrbench(*args, env=env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert image_keys(run_dir) == image_keys(calm_dir)  # the same 24 images, byte for byte (same keys)
    made = Path(env["RRBENCH_TEST_GENLOG"]).read_text().splitlines()
    assert kills >= 3 and len(set(made)) == 24
    # a kill loses at most the generator call in flight (its batch of 2 images, returned together): nothing that
    # was stored is ever made again
    assert len(made) <= 24 + 2 * kills


def test_judge_a_generation_run_and_rejudge_without_generating(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    first = rrbench("run", "--task", "sanity-gen", "--generator", "logged-painter", "-G", "error_rate=0.25",
                    "--model", "sanity-gen-judge", "--limit", "6", "--output", str(out), "--quiet",
                    env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    made = Path(env["RRBENCH_TEST_GENLOG"]).read_text().splitlines()
    assert len(made) == 24
    gen_dir = next(out.glob("sanity-gen__gen-logged-painter__*"))
    judge_dir = next(out.glob("sanity-gen__sanity-gen-judge__*"))
    judged = json.loads((judge_dir / "run.json").read_text())
    assert judged["source"]["path"] == str(gen_dir.resolve()) and judged["spec"]["images"].startswith("run:")
    assert judged["counts"]["recorded"] == 6 and judged["counts"]["failed"] == 0
    again = rrbench("run", "--task", "sanity-gen", "--images", str(gen_dir), "--model", "sanity-gen-judge",
                    "--limit", "6", "--output", str(out), "--quiet", "--no-cache", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert Path(env["RRBENCH_TEST_GENLOG"]).read_text().splitlines() == made  # zero generator calls
    for result in records(judge_dir).values():
        assert [t["order"] for t in result["trials"]] == [[0], [1], [2], [3]]
        assert all(t["prediction"]["scores"][0] is not None for t in result["trials"])


def test_export_then_judge_the_folder_gives_the_same_answers(tmp_path: Path) -> None:
    gen_dir = generate(tmp_path / "runs", "--limit", "4")
    folder = tmp_path / "official"
    assert cli.main(["export", str(gen_dir), str(folder)]) == 0
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 16 and names[0] == "t2i-0000-object_0.png"
    out = tmp_path / "judged"
    for source in (str(gen_dir), str(folder)):
        assert cli.main(["run", "--task", "sanity-gen", "--images", source, "--model", "sanity-gen-judge",
                         "--limit", "4", "--output", str(out), "--quiet", "--no-cache"]) == 0
    run_a, run_b = sorted(out.iterdir())
    a, b = records(run_a), records(run_b)
    assert {k: [t["judgements"][0]["aspects"] for t in v["trials"]] for k, v in a.items()} == {
        k: [t["judgements"][0]["aspects"] for t in v["trials"]] for k, v in b.items()}
    assert image_keys(run_a) == image_keys(run_b)  # the same bytes, read from the run and from the folder
    # exporting again over the same files is a no-op; other bytes there are never overwritten
    assert cli.main(["export", str(gen_dir), str(folder)]) == 0
    (folder / names[0]).write_bytes(b"changed")
    assert cli.main(["export", str(gen_dir), str(folder)]) == 2


def test_a_folder_with_missing_extra_and_corrupt_files_is_reported_per_sample(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen_dir = generate(tmp_path / "runs", "--limit", "48", "-T", "images_per_prompt=1")
    folder = tmp_path / "theirs"
    assert cli.main(["export", str(gen_dir), str(folder)]) == 0
    (folder / "t2i-0002-relation_0.png").unlink()
    (folder / "t2i-0004-object_0.png").unlink()
    (folder / "t2i-0004-object_0.png").symlink_to(tmp_path / "nowhere.png")  # a broken link: missing, no traceback
    (folder / "t2i-0003-text_0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    shutil.copy(folder / "t2i-0000-object_0.png", folder / "stray_7.png")
    capsys.readouterr()
    code = cli.main(["run", "--task", "sanity-gen", "-T", "images_per_prompt=1", "--images", str(folder),
                     "--model", "sanity-gen-judge", "--output", str(tmp_path / "judged"), "--quiet"])
    assert code == 0
    err = capsys.readouterr().err
    assert "1 image file(s) in" in err and "stray_7.png" in err
    (run_dir,) = (tmp_path / "judged").iterdir()
    got = records(run_dir)
    missing = got["t2i-0002-relation"]["trials"][0]
    assert missing["failure"] == "data" and "missing image t2i-0002-relation_0.png" in missing["judgements"][0][
        "failure_detail"]
    assert got["t2i-0003-text"]["trials"][0]["failure"] == "data"
    record = json.loads((run_dir / "run.json").read_text())
    assert got["t2i-0004-object"]["trials"][0]["failure"] == "data"
    assert record["counts"]["failed_by_kind"] == {"data": 3} and record["counts"]["recorded"] == 48
    assert record["source"]["problems"][0].startswith("1 image file(s)")


@pytest.mark.parametrize(("args", "message"), [
    (["generate", "--generator", "edit-only"], "generator 'edit-only' makes edit images; this task needs a "
                                               "text-to-image generator (t2i)"),
    (["generate", "-T", "variant=edit", "--generator", "flux-dev", "-G", "path=/nonexistent"],
     "generator 'flux-dev' makes t2i images; this task needs an image-editing generator (edit)"),
    (["generate", "--task", "sanity", "--generator", "painter"], "task 'sanity' is a pair benchmark with human "
                                                                 "labels: it judges given images, it makes none"),
    (["generate", "-G", "colour=red"], "generator 'painter' has no argument 'colour' (-G; accepts: error_rate, "
                                       "period, size)"),
    (["run", "--task", "sanity-gen", "--model", "sanity-gen-judge"], "task 'sanity-gen' judges generated images: "
                                                                    "give --images DIR"),
    (["run", "--task", "sanity-gen", "--images", "/nonexistent/x", "--model", "sanity-gen-judge"],
     "--images /nonexistent/x: no such folder"),
    (["run", "--task", "sanity", "--images", "/tmp", "--model", "classical-iqa"],
     "--images is for generation tasks; task 'sanity' is a pair benchmark whose images come with its data"),
    (["export", "/nonexistent/run", "/tmp/x"], "not a run directory (no run.json): /nonexistent/run"),
])
def test_bad_generation_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                                     env: dict[str, str]) -> None:
    done = rrbench(*args, "--output", str(tmp_path / "runs"), env=env, cwd=tmp_path) if args[0] != "export" else \
        rrbench(*args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_failing_sample_or_junk_bytes_fail_that_sample_and_the_run_goes_on(tmp_path: Path,
                                                                             env: dict[str, str]) -> None:
    for name, kind in (("nan-painter", "invalid_image"), ("junk-bytes", "invalid_image")):
        done = rrbench("generate", "--generator", name, "--limit", "8", "-T", "images_per_prompt=1", "--quiet",
                       "--output", str(tmp_path / name), env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        (run_dir,) = (tmp_path / name).iterdir()
        record = json.loads((run_dir / "run.json").read_text())
        assert record["counts"]["recorded"] == 8 and set(record["counts"]["failed_by_kind"]) == {kind}
        expected_failed = 8 if name == "junk-bytes" else sum("count" in sid for sid in records(run_dir))
        assert record["counts"]["failed"] == expected_failed


def test_the_report_page_shows_each_image_with_its_scores_and_analysis(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert cli.main(["run", "--task", "sanity-gen", "--generator", "painter", "-G", "error_rate=0.25",
                     "--model", "sanity-gen-judge", "--limit", "2", "--output", str(out), "--quiet"]) == 0
    judge_dir = next(out.glob("sanity-gen__sanity-gen-judge__*"))
    assert cli.main(["report", str(judge_dir)]) == 0
    page = (judge_dir / "report.html").read_text()
    first = records(judge_dir)["t2i-0000-object"]
    card = page[page.index('data-id="t2i-0000-object"'):]
    card = card[: card.index("</article>")]
    assert card.count('<img class="thumb"') == 4  # the four images the generation run made
    for i, trial in enumerate(first["trials"]):
        score = trial["prediction"]["scores"][0]
        assert f'<span class="letter">{"ABCD"[i]}</span> score {score:.4g}' in card
    assert first["trials"][0]["judgements"][0]["rationale"].splitlines()[0] in card.replace("&#x27;", "'")
    gen_dir = next(out.glob("sanity-gen__gen-painter__*"))
    assert cli.main(["report", str(gen_dir)]) == 0
    assert (gen_dir / "report.html").read_text().count('<img class="thumb"') == 8


def test_doctor_and_generate_name_the_missing_weights_and_the_fetch_command(tmp_path: Path,
                                                                           env: dict[str, str]) -> None:
    doctor = rrbench("doctor", "--generator", "flux-dev", "-G", f"path={tmp_path / 'flux'}", env=env, cwd=tmp_path)
    assert doctor.returncode == 1
    assert "FAIL" in doctor.stdout and "hf download black-forest-labs/FLUX.1-dev" in doctor.stdout
    started = rrbench("generate", "--task", "sanity-gen", "--generator", "flux-dev", "-G", f"path={tmp_path / 'flux'}",
                      "--output", str(tmp_path / "runs"), env=env, cwd=tmp_path)
    assert started.returncode == 2
    (line,) = started.stderr.strip().splitlines()
    assert "hf download black-forest-labs/FLUX.1-dev" in line and not (tmp_path / "runs").exists()


def test_painter_errors_give_the_hand_derived_numbers_through_the_cli(tmp_path: Path) -> None:
    """error_rate 0.25, period 4 and 4 images per prompt: image i violates testpoint j exactly when (i + j) mod 4 < 1
    (docs/tasks/sanity-gen.md), so each testpoint is wrong in exactly one image of four: 75% in every dimension, a
    mean score of 0.75, and nothing failed."""
    out = tmp_path / "runs"
    assert cli.main(["run", "--task", "sanity-gen", "--generator", "painter", "-G", "error_rate=0.25",
                     "--model", "sanity-gen-judge", "--output", str(out), "--quiet"]) == 0
    record = json.loads(next(out.glob("sanity-gen__sanity-gen-judge__*")).joinpath("run.json").read_text())
    overall = {(m["metric"], m["failure_policy"]): m for m in record["metrics"]["overall"]}
    accuracy = overall[("testpoint-accuracy", "excluded")]
    dimensions = ("colour", "count", "position", "shape", "text")
    assert accuracy["value"] == 0.75 and accuracy["extra"] == dict.fromkeys(dimensions, 0.75)
    assert overall[("mean-score", "excluded")]["value"] == pytest.approx(0.75)
    assert overall[("mean-score", "excluded")]["scale"] == "score"
    assert record["counts"]["failed"] == 0 and record["counts"]["recorded"] == 48


@pytest.mark.slow
def test_sharding_over_a_local_ray_cluster_makes_the_same_images_in_the_same_run(tmp_path: Path) -> None:
    """--shards 2: two painter actors on a local Ray cluster; the images, and so the run directory (sharding is not
    part of the spec), are those of one process. A resume without sharding then finds every image made."""
    sharded = generate(tmp_path / "runs", "--limit", "6", "--shards", "2")
    alone = generate(tmp_path / "alone", "--limit", "6")
    assert sharded.name == alone.name and image_keys(sharded) == image_keys(alone) and len(image_keys(alone)) == 24
    record = json.loads((sharded / "run.json").read_text())
    assert record["generator"]["ray"] == {"shards": 2, "address": None}
    assert cli.main(["generate", "--output", str(tmp_path / "runs"), "--limit", "6", "--quiet", "-G", "shards=1"]) == 0
    assert json.loads((sharded / "run.json").read_text())["stats"]["model_calls"] == 0


def test_a_folder_in_another_layout_and_an_export_into_a_file_are_one_line(tmp_path: Path,
                                                                         env: dict[str, str]) -> None:
    gen_dir = generate(tmp_path / "runs", "--limit", "2")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(next((gen_dir / "images").rglob("*.png")), other / "0001.png")  # an image, but named otherwise
    judged = rrbench("run", "--task", "sanity-gen", "--images", str(other), "--model", "sanity-gen-judge",
                     "--output", str(tmp_path / "judged"), env=env, cwd=tmp_path)
    assert judged.returncode == 2 and not (tmp_path / "judged").exists()
    assert judged.stderr.strip().splitlines() == [
        f"rrbench: error: --images {other}: none of the 32 images the task's first samples name is there (e.g. "
        "t2i-0000-object_0.png); is the folder in the task's output layout (see `rrbench export --layout "
        "official`)?"]
    (tmp_path / "afile").write_text("")
    exported = rrbench("export", str(gen_dir), str(tmp_path / "afile" / "sub"), env=env, cwd=tmp_path)
    assert exported.returncode == 2
    assert exported.stderr.strip().splitlines() == [
        f"rrbench: error: cannot write {tmp_path / 'afile' / 'sub'}/t2i-0000-object_0.png: Not a directory"]


def test_zero_is_a_value_of_the_generate_flags_not_their_absence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """0 equals False in Python: a filter "not in (None, False)" dropped --concurrency 0 (run with the default)
    and --call-timeout 0 (the deadline stayed on instead of off)."""
    assert cli.main(["generate", "--output", str(tmp_path / "a"), "--quiet", "-T", "n=1", "--concurrency", "0"]) == 2
    assert "--concurrency must be at least 1, not 0" in capsys.readouterr().err
    from rrbench import session

    seen: dict[str, Any] = {}
    real = session.Runner

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(session, "Runner", spy)
    generate(tmp_path / "b", "-T", "n=1", "--call-timeout", "0")
    assert seen["call_timeout_s"] == 0
