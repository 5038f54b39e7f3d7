"""The generation table (the paper's layout: generator x setting by benchmark) and its per-dimension tables, from a
real judge run of ImgEdit-Bench over a local copy, against a scripted judge on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli
from tests.fixtures.imgedit_copy import ITEMS, write_copy
from tests.judge_server import ScriptedJudge
from tests.test_task_imgedit import GOOD, edited_folder


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    monkeypatch.setenv("RRBENCH_CACHE", str(tmp_path / "cache.sqlite"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def table(out: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((out / f"{name}.json").read_text()))


def judged(tmp_path: Path, model: str) -> Path:
    copy = write_copy(tmp_path / "copy")
    edited = edited_folder(tmp_path / "edited", list(ITEMS))
    with ScriptedJudge(lambda r: GOOD) as server:
        assert cli.main(["run", "--task", "imgedit-bench", "--data", str(copy), "--images", str(edited), "--model",
                         model, "--base-url", server.url, "--output", str(tmp_path / "runs"), "--quiet"]) == 0
    return tmp_path / "runs"


def test_a_judge_run_is_a_row_of_the_generation_table_beside_the_papers_numbers(tmp_path: Path) -> None:
    runs = judged(tmp_path, "gpt-5")
    out = tmp_path / "lb"
    assert cli.main(["leaderboard", str(runs), "--out", str(out), "--plots", "none"]) == 0
    generation = table(out, "generation")
    assert [c["title"] for c in generation["columns"]] == ["UniGenBench++", "ImgEdit", "GEdit-EN", "PICA"]
    imgedit = next(c["id"] for c in generation["columns"] if c["title"] == "ImgEdit")
    measured = [r for r in generation["rows"] if r["origin"] == "measured"]
    assert [(r["judge"], r["setting"]) for r in measured] == [("images edited", "as given")]
    cell = measured[0]["cells"][imgedit]
    # GOOD scores 4, 3, 3 -> round(10/3, 2) = 3.33 for every image; each type's mean 3.33, their mean 3.33.
    assert cell["value"] == pytest.approx(3.33)
    # gpt-5 is not ImgEdit's own judge (gpt-4.1 / gpt-4o), and the copy holds 5 of 737 items
    assert "judge gpt-5" in cell["protocol"] and "substitute" in cell["protocol"] and "partial" in cell["protocol"]
    reported = {(r["judge"], r["setting"].split(" [")[0]): r["cells"] for r in generation["rows"]
                if r["origin"] == "reported"}
    assert reported[("FLUX.1 Kontext [dev]", "base")][imgedit]["value"] == 3.52
    assert reported[("FLUX.1 Kontext [dev]", "+RL RationalRewards")][imgedit]["value"] == 3.84
    assert reported[("Qwen-Image-Edit", "base")][imgedit]["note"].startswith("equal to the number the Qwen-Image")
    pica = next(c["id"] for c in generation["columns"] if c["title"] == "PICA")
    assert reported[("Qwen-Image-Edit", "+test-time refine")][pica]["value"] == 55.65


def test_per_dimension_and_per_task_tables_keep_every_published_row(tmp_path: Path) -> None:
    runs = judged(tmp_path, "gpt-4.1")
    out = tmp_path / "lb"
    assert cli.main(["leaderboard", str(runs), "--out", str(out), "--plots", "none"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    (dimensions,) = [f for f in manifest if f.startswith("dimensions-imgedit-bench") and f.endswith(".json")]
    dims = table(out, dimensions[:-len(".json")])
    (row,) = dims["rows"]
    # the headline's per-type breakdown: every one of the 5 types in the copy at 3.33
    by_type = {k: v["value"] for k, v in row["cells"].items()}
    assert by_type == {f"type/{t}": pytest.approx(3.33) for t in ("adjust", "style", "extract", "replace", "add")}
    (per_task,) = [f for f in manifest if f.startswith("task-imgedit-bench") and f.endswith(".json")]
    rows = table(out, per_task[:-len(".json")])["rows"]
    published = {r["judge"] for r in rows if r["origin"] == "reported"}
    # one row per generator and setting: two settings of one generator never overwrite each other's cell
    assert {"FLUX.1 Kontext [dev] (base)", "FLUX.1 Kontext [dev] (+RL EditReward)",
            "FLUX.1 Kontext [dev] (+test-time refine)", "GPT-Image-1 (reference)"} <= published
