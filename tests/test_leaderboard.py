"""`rrbench leaderboard`: tables built from real run directories, checked cell by cell.

Runs are made with the real CLI: the embedded `sanity` task with deterministic judges (`always-first`, `constant`,
the `toy-critic` plug-in) and a small GenAI-Bench copy in its public schema (written with the helpers of
tests/test_task_genai_bench.py) so the paper-layout table has a measured cell. Hand-known values: `sanity` balances
the correct image's position, so `always-first` scores exactly 50%; its labels are never ties, so `constant`
(every pair a tie) scores 0% under the exact tie policy.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tests.plugins.critic_models  # noqa: F401  (registers toy-critic in this process)
from rrbench import cli, registry
from rrbench.leaderboard import collect
from rrbench.runner import integrity
from tests.test_task_genai_bench import ROWS, T2I_IMAGES, t2i_columns, write_parquet

REPO = Path(__file__).resolve().parents[1]
SOURCE = "A paper (arXiv 0000.00000), Table 9"
GENAI_VERSION = registry.get("task", "genai-bench-t2i").build().version  # the task's own, whatever it is now
GENAI_TABLE = f"task-genai-bench-t2i-v{GENAI_VERSION}"


def _run(out: Path, *args: str) -> None:
    assert cli.main(["run", "--output", str(out), "--quiet", "--no-cache", *args]) == 0


def _only(out: Path, model: str, task: str = "sanity") -> Path:
    (path,) = [p for p in out.iterdir() if p.name.startswith(f"{task}__{model}__") and "rescore" not in p.name]
    return path


def _record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def _metric(run_dir: Path, policy: str = "excluded", metric: str = "accuracy") -> dict[str, Any]:
    return next(m for m in _record(run_dir)["metrics"]["overall"]
                if m["metric"] == metric and m["failure_policy"] == policy)


def _reported(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "entries": entries}))
    return path


def _leaderboard(*args: str) -> int:
    return cli.main(["leaderboard", "--no-plots", *args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lb")
    out = root / "runs"
    _run(out, "--task", "sanity", "-T", "n=16", "-T", "size=64", "--model", "always-first,constant,toy-critic")
    data = root / "GenAI-Bench"
    write_parquet(data / "image_generation" / "test_v1-00000-of-00001.parquet", t2i_columns(ROWS), T2I_IMAGES)
    _run(out, "--task", "genai-bench-t2i", "--data", str(data), "--model", "always-first")
    return out


REPORTED = [
    {"judge": "Paper Judge", "model": "always-first", "task": "genai-bench-t2i", "task_version": GENAI_VERSION,
     "metric": "accuracy", "value": 61.5, "protocol": "rationalrewards-paper", "source": SOURCE,
     "note": "computed on a subset"},
    {"judge": "Paper Judge", "model": "always-first", "task": "sanity", "task_version": "1",
     "task_args": {"n": 16, "size": 64}, "metric": "accuracy", "value": 48.0, "protocol": "sanity-exact",
     "source": SOURCE},
]


@pytest.fixture(scope="module")
def full_runs(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs, with the GenAI-Bench run's data record saying "the whole benchmark": its 9-row copy makes it
    partial (test_partial_run_is_left_out_of_the_paper_table_and_marked_per_task), and the paper-layout table shows
    only complete runs, while the cell rendering tested here does not depend on the copy's size."""
    folder = tmp_path_factory.mktemp("lb-full") / "runs"
    shutil.copytree(runs, folder)
    genai = _only(folder, "always-first", "genai-bench-t2i")
    record = _record(genai)
    record["data"].update(partial=False, reasons=[], registered_size=record["data"]["size"])
    (genai / "run.json").write_text(json.dumps(record))
    return folder


@pytest.fixture(scope="module")
def built(full_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lb-out")
    reported = _reported(out / "reported.json", REPORTED)
    assert _leaderboard(str(full_runs), "--out", str(out), "--reported", str(reported)) == 0
    return out


def _table(out: Path, name: str) -> dict[str, Any]:
    return json.loads((out / f"{name}.json").read_text())


def _row(table: dict[str, Any], judge: str, origin: str) -> dict[str, Any]:
    (row,) = [r for r in table["rows"] if r["judge"] == judge and r["origin"] == origin]
    return row


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def test_preference_table_measured_and_reported_cells(runs: Path, built: Path) -> None:
    table = _table(built, "preference")
    assert [c["title"] for c in table["columns"]] == ["MMRB2 T2I", "MMRB2 Edit", "EditReward-Bench",
                                                       "GenAI-Bench T2I", "GenAI-Bench Edit"]
    genai = next(c["id"] for c in table["columns"] if c["title"] == "GenAI-Bench T2I")
    run_dir = _only(runs, "always-first", "genai-bench-t2i")
    m = _metric(run_dir)
    measured = _row(table, "always-first", "measured")
    assert measured["setting"] == "official"
    cell = measured["cells"][genai]
    assert cell["origin"] == "measured" and cell["protocol"] == "genai-bench-4way" and cell["run"] == run_dir.name
    assert cell["value"] == pytest.approx(100 * m["value"]) and cell["ci"] == pytest.approx(
        [100 * m["ci_low"], 100 * m["ci_high"]])
    assert set(measured["cells"]) == {genai}  # sanity is not a column of the paper's table
    reported = _row(table, "Paper Judge", "reported")
    assert reported["setting"] == SOURCE and reported["cells"] == {
        genai: {"origin": "reported", "value": 61.5, "protocol": "rationalrewards-paper", "source": SOURCE,
                "note": "computed on a subset"}}
    # the same cells as text: measured value [CI] · protocol; reported value · protocol, source on the row
    md = (built / "preference.md").read_text()
    lo, hi = _pct(m["ci_low"]), _pct(m["ci_high"])
    failed = f" ({m['n_failed']} failed)" if m["n_failed"] else ""
    cell_text = f"{_pct(m['value'])} [{lo}, {hi}] · genai-bench-4way{failed}"
    assert f"| always-first | measured | official |  |  |  | {cell_text} |  |" in md
    assert "| Paper Judge | reported | source [1] |  |  |  | 61.5 · rationalrewards-paper *1 |  |" in md
    assert f"- [1] {SOURCE}" in md and "- *1 computed on a subset" in md
    # the user's measured rows come first, then the published ones
    judges = [(r["judge"], r["origin"]) for r in table["rows"]]
    assert judges == [("always-first", "measured"), ("Paper Judge", "reported")]


def test_task_table_every_metric_both_failure_policies(runs: Path, built: Path) -> None:
    table = _table(built, "task-sanity-v1-n=16-size=64")
    assert [c["id"] for c in table["columns"]] == ["accuracy:excluded", "accuracy:wrong", "accuracy:published"]
    rows = {(r["judge"], r["origin"]): r for r in table["rows"]}
    # measured rows first (by model name), then the published ones
    assert list(rows) == [("always-first", "measured"), ("constant", "measured"), ("toy-critic", "measured"),
                          ("Paper Judge", "reported")]
    first = rows["always-first", "measured"]
    assert first["cells"]["accuracy:excluded"]["value"] == pytest.approx(50.0)  # balanced positions
    assert rows["constant", "measured"]["cells"]["accuracy:excluded"]["value"] == pytest.approx(0.0)  # all ties
    for judge in ("always-first", "constant", "toy-critic"):
        row, run_dir = rows[judge, "measured"], _only(runs, judge)
        record = _record(run_dir)
        assert row["info"] == {"protocol": "sanity-exact", "n": "16", "failed": "0", "skipped": "0",
                               "run": run_dir.name}
        for policy in ("excluded", "wrong"):
            m, cell = _metric(run_dir, policy), row["cells"][f"accuracy:{policy}"]
            assert cell["value"] == pytest.approx(100 * m["value"]) and cell["n"] == m["n_units"] == 16
        assert record["counts"]["recorded"] == 16
    assert rows["Paper Judge", "reported"]["cells"] == {"accuracy:published": {
        "origin": "reported", "value": 48.0, "protocol": "sanity-exact", "source": SOURCE}}
    # markdown, CSV, LaTeX and HTML hold the same cells
    m = _metric(_only(runs, "always-first"))
    text = f"{_pct(m['value'])} [{_pct(m['ci_low'])}, {_pct(m['ci_high'])}]"
    md = (built / "task-sanity-v1-n=16-size=64.md").read_text()
    assert (f"| always-first | measured | official | sanity-exact | 16 | 0 | 0 | {_only(runs, 'always-first').name} "
            f"| {text} | {text} |  |") in md
    lines = list(csv.DictReader((built / "task-sanity-v1-n=16-size=64.csv").open()))
    line = next(x for x in lines if x["judge"] == "always-first" and x["column"] == "accuracy:wrong")
    assert float(line["value"]) == pytest.approx(50.0) and line["protocol"] == "sanity-exact"
    assert float(line["ci_low"]) == pytest.approx(100 * m["ci_low"]) and line["n"] == "16"
    published = next(x for x in lines if x["origin"] == "reported")
    assert (published["value"], published["source"], published["failure_policy"]) == ("48", SOURCE, "published")
    tex = (built / "task-sanity-v1-n=16-size=64.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"accuracy (failures excluded)" in tex
    assert f"always-first & measured & official & sanity-exact & 16 & 0 & 0 & {_only(runs, 'always-first').name}"\
        .replace("_", r"\_") in tex
    assert r"\textit{Paper Judge} & \textit{reported}" in tex
    html = (built / "task-sanity-v1-n=16-size=64.html").read_text()
    assert f"<td>{text}</td>" in html and '<tr class="reported">' in html


def test_every_format_and_index_written(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())["files"]
    tables = {Path(f).stem for f in manifest if f.endswith(".json")}
    assert {"preference", "task-sanity-v1-n=16-size=64", GENAI_TABLE} <= tables
    for stem in tables:
        assert {f"{stem}.{ext}" for ext in ("md", "csv", "tex", "html", "json")} <= set(manifest)
    assert "README.md" in manifest and "index.html" in manifest and "reported.json" not in manifest
    index = (built / "README.md").read_text()
    assert index.index("## Preference accuracy") < index.index("## sanity v1 (n=16, size=64)")


def test_latest_complete_run_wins_and_versions_never_mix(runs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    original = _only(runs, "always-first")
    newer, incomplete, v2 = (folder / f"{original.name}.{x}" for x in ("newer", "incomplete", "v2"))
    for path in (folder / original.name, newer, incomplete, v2):
        shutil.copytree(original, path)
    _edit(newer, updated_at="2999-01-01T00:00:00+00:00", value=0.25)  # same spec, later: wins
    _edit(incomplete, updated_at="3999-01-01T00:00:00+00:00", value=0.75, status="incomplete")  # never counts
    _edit(v2, task_version="2", value=0.625)  # another task version: its own table, never mixed into v1's
    out = tmp_path / "lb"
    assert _leaderboard(str(folder), "--out", str(out), "--reported", "none") == 0
    (row,) = _table(out, "task-sanity-v1-n=16-size=64")["rows"]
    assert row["info"]["run"] == newer.name and row["cells"]["accuracy:excluded"]["value"] == pytest.approx(25.0)
    (row2,) = _table(out, "task-sanity-v2-n=16-size=64")["rows"]
    assert row2["cells"]["accuracy:excluded"]["value"] == pytest.approx(62.5) and row2["info"]["run"] == v2.name
    chosen = collect.latest(collect.read_entries(collect.find_run_dirs([folder]))[0])
    assert sorted(e.path.name for e in chosen) == sorted([newer.name, v2.name])


def test_partial_run_is_left_out_of_the_paper_table_and_marked_per_task(runs: Path, tmp_path: Path) -> None:
    """The GenAI-Bench run read a 9-row copy of a 1,735-pair benchmark: its number is not the benchmark's."""
    out = tmp_path / "lb"
    assert _leaderboard(str(runs), "--out", str(out), "--reported", "none") == 0
    preference = _table(out, "preference")
    assert preference["rows"] == []
    assert preference["notes"] == ["1 partial run(s) left out (fewer or other samples than the registered benchmark: "
                                   "a smaller local copy, --limit, other content); they are in the per-task tables"]
    (row,) = _table(out, GENAI_TABLE)["rows"]
    assert row["setting"] == "official+partial" and row["info"]["n"] == str(len(ROWS))
    assert _table(out, GENAI_TABLE)["notes"] == [
        f"always-first / official+partial: PARTIAL: {len(ROWS)} of 1,735 samples "
        "(local copy smaller than the registered dataset)"]
    assert "official+partial" in (out / f"{GENAI_TABLE}.md").read_text()


def _edit(run_dir: Path, value: float, seal: bool = True, **fields: str) -> None:
    """A copy made to stand for another run: its numbers changed and, as the runner does, sealed with the log's
    hash (``seal=False``: a hand edit, which a leaderboard must not trust)."""
    record = _record(run_dir)
    for m in record["metrics"]["overall"]:
        m["value"] = value
    if "task_version" in fields:
        record["task"]["version"] = fields.pop("task_version")
    record.update(fields)
    if seal:
        record["integrity"] = integrity(record, run_dir / "samples.jsonl")
    (run_dir / "run.json").write_text(json.dumps(record))


def test_hand_edited_numbers_are_recomputed_from_the_log(runs: Path, tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "runs"
    original = _only(runs, "always-first")
    shutil.copytree(original, folder / original.name)
    truth = _record(original)["metrics"]["overall"][0]["value"]
    _edit(folder / original.name, value=0.99, seal=False)  # someone "improves" the number by hand
    out = tmp_path / "lb"
    assert _leaderboard(str(folder), "--out", str(out), "--reported", "none") == 0
    (row,) = _table(out, "task-sanity-v1-n=16-size=64")["rows"]
    assert row["cells"]["accuracy:excluded"]["value"] == pytest.approx(100 * truth)  # the log's number, not 99
    assert "do not match samples.jsonl" in capsys.readouterr().err


def test_rescored_run_is_its_own_row_under_its_protocol(runs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    shutil.copytree(_only(runs, "constant"), folder / _only(runs, "constant").name)
    assert cli.main(["rescore", str(folder / _only(runs, "constant").name), "--tie-policy", "ties-excluded"]) == 0
    out = tmp_path / "lb"
    assert _leaderboard(str(folder), "--out", str(out), "--reported", "none") == 0
    rows = _table(out, "task-sanity-v1-n=16-size=64")["rows"]
    assert [(r["setting"], r["info"]["protocol"]) for r in rows] == [
        ("official", "sanity-exact"), ("official+tie=ties-excluded", "sanity-exact+tie=ties-excluded")]


def test_committed_leaderboards_are_regenerated_output(tmp_path: Path) -> None:
    """leaderboards/ holds generated output: regenerating it from scratch gives the same tables, byte for byte."""
    out = tmp_path / "leaderboards"
    out.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # its rrbench
    done = subprocess.run(["bash", str(REPO / "scripts" / "regenerate-leaderboards.sh"), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    committed = json.loads((REPO / "leaderboards" / "manifest.json").read_text())["files"]
    assert json.loads((out / "manifest.json").read_text())["files"] == committed
    for name in committed:
        if Path(name).suffix in (".md", ".csv", ".tex", ".html", ".json"):
            assert (out / name).read_text() == (REPO / "leaderboards" / name).read_text(), name


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "md,docx"], "unknown format docx (known: md, csv, tex, html, json)"),
    (["--reported", "{missing}"], "cannot read reported numbers"),
    (["--reported", "{bad}"], "entry 0: value must be a percentage in [0, 100], got 250"),
])
def test_bad_input_is_one_line(args: list[str], message: str, runs: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = _reported(tmp_path / "bad.json", [{**REPORTED[0], "value": 250}])
    args = [a.format(missing=tmp_path / "nope.json", bad=bad) for a in args]
    assert _leaderboard(str(runs), "--out", str(tmp_path / "lb"), *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unreadable_or_unfinished_runs_are_skipped_and_said(runs: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "runs"
    shutil.copytree(_only(runs, "constant"), folder / "good")
    (folder / "torn").mkdir()
    (folder / "torn" / "run.json").write_text('{"spec": {"task": "sanity"')
    assert _leaderboard(str(folder), "--out", str(tmp_path / "lb"), "--reported", "none") == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "torn: unreadable run.json" in captured.err
    assert "1 runs (0 superseded, 1 skipped)" in captured.out
    assert _leaderboard(str(tmp_path / "absent"), "--out", str(tmp_path / "lb")) == 2
    assert "no such run directory or folder" in capsys.readouterr().err


def test_rebuild_removes_tables_whose_runs_are_gone(runs: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "runs", tmp_path / "lb"
    shutil.copytree(_only(runs, "constant"), folder / "a")
    assert _leaderboard(str(folder), "--out", str(out), "--reported", "none") == 0
    assert (out / "task-sanity-v1-n=16-size=64.md").exists()
    (out / "notes.txt").write_text("mine")  # not written by rrbench: must survive
    shutil.rmtree(folder / "a")
    shutil.copytree(_only(runs, "always-first", "genai-bench-t2i"), folder / "b")
    assert _leaderboard(str(folder), "--out", str(out), "--reported", "none") == 0
    assert not (out / "task-sanity-v1-n=16-size=64.md").exists() and (out / f"{GENAI_TABLE}.md").exists()
    assert (out / "notes.txt").read_text() == "mine"
