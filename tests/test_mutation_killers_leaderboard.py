"""Leaderboard selection and cells on hand-written run records (docs/mutation.md: rrbench/leaderboard/).

Which run a leaderboard shows, which cell each number lands in and what a cell says are decided from ``run.json``
alone, so these tests write small records by hand (real files where directories are searched) and check the tables
as data; tests/test_leaderboard.py checks the same through real runs and the rendered files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rrbench import registry
from rrbench.leaderboard.collect import RunEntry, find_run_dirs, latest, read_entries
from rrbench.leaderboard.reported import Reported
from rrbench.leaderboard.tables import (
    MEASURED,
    REPORTED,
    Cell,
    judge_label,
    measured_cell,
    measured_setting,
    preference_table,
    setting_of,
    task_tables,
)
from rrbench.types import UserError

registry.load_plugins()


def _metric(metric: str, policy: str, value: float | None, **more: Any) -> dict[str, Any]:
    return {"metric": metric, "failure_policy": policy, "value": value, **more}


def _record(task: str = "toy", model: str = "judge", *, version: str = "1", spec_hash: str = "h1",
            protocol: str = "toy-exact", updated: str = "2024-01-01T00:00:00", status: str = "complete",
            values: dict[str, float | None] | None = None, metrics: tuple[str, ...] = ("accuracy",),
            spec: dict[str, Any] | None = None, partial: bool = False, **more: Any) -> dict[str, Any]:
    """A run record with the fields a leaderboard reads; ``values`` maps "metric:policy" to a fraction."""
    values = values or {"accuracy:excluded": 0.5, "accuracy:wrong": 0.4}
    overall = []
    for key, value in values.items():
        metric, policy = key.split(":")
        overall.append(_metric(metric, policy, value))
    return {
        "status": status,
        "spec": {"task": task, "model": model, **(spec or {})},
        "spec_hash": spec_hash,
        "task": {"version": version},
        "protocol": {"id": protocol, "metrics": list(metrics)},
        "updated_at": updated,
        "metrics": {"overall": overall},
        "data": {"partial": partial, "expected": 5 if partial else 10, "size": 10, "registered_size": 10,
                 "reasons": ["local copy smaller than the registered dataset"] if partial else []},
        **more,
    }


def _entry(name: str, **fields: Any) -> RunEntry:
    return RunEntry(Path("/runs") / name, _record(**fields))


def _write(folder: Path, record: Any) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return folder


# --------------------------------------------------------------------------------------------------- collect


def test_the_latest_run_of_each_setting_wins() -> None:
    old = _entry("a-old", updated="2024-01-01T00:00:00")
    new = _entry("a-new", updated="2024-06-01T00:00:00")
    rescored = _entry("b", spec_hash="h2", updated="2024-01-01T00:00:00", rescored_at="2025-01-01T00:00:00")
    later_but_older_rescore = _entry("b2", spec_hash="h2", updated="2024-12-01T00:00:00")
    assert [e.path.name for e in latest([new, old, later_but_older_rescore, rescored])] == ["a-new", "b"]
    assert [e.path.name for e in latest([old, new])] == ["a-new"]


def test_equal_times_are_broken_by_path_in_either_order() -> None:
    first, second = _entry("run-1"), _entry("run-2")
    assert [e.path.name for e in latest([first, second])] == ["run-2"]
    assert [e.path.name for e in latest([second, first])] == ["run-2"]


def test_task_version_spec_and_protocol_each_keep_their_own_run() -> None:
    base = _entry("a")
    others = [_entry("b", version="2"), _entry("c", spec_hash="h9"), _entry("d", protocol="toy-exact+tie=x"),
              _entry("e", task="other")]
    chosen = latest([base, *others])
    assert sorted(e.path.name for e in chosen) == ["a", "b", "c", "d", "e"]
    # sorted by task, task version, model, path
    assert [e.path.name for e in chosen] == ["e", "a", "c", "d", "b"]


def test_entry_fields_with_defaults() -> None:
    entry = RunEntry(Path("/r"), {"spec": {"task": "t", "model": "m"}})
    assert (entry.task_version, entry.protocol_id, entry.updated) == ("?", "?", "")
    assert entry.key == ("t", "?", "", "?")


def test_only_complete_readable_records_are_read(tmp_path: Path) -> None:
    good = _write(tmp_path / "good", _record())
    running = _write(tmp_path / "running", _record(status="running"))
    torn = _write(tmp_path / "torn", '{"spec": ')
    foreign = _write(tmp_path / "foreign", {"name": "not ours"})
    listed = _write(tmp_path / "listed", [1, 2])
    entries, skipped = read_entries([good, running, torn, foreign, listed])
    assert [e.path for e in entries] == [good]
    assert skipped == [
        f"{running}: status 'running', only complete runs count",
        f"{torn}: unreadable run.json (JSONDecodeError)",
        f"{foreign}: run.json is not an rrbench run record",
        f"{listed}: run.json is not an rrbench run record",
    ]


def test_run_directories_are_found_below_folders_but_not_inside_runs(tmp_path: Path) -> None:
    a = _write(tmp_path / "runs" / "x" / "a", _record())
    b = _write(tmp_path / "runs" / "b", _record())
    _write(b / "nested", _record())  # inside a run directory: not a run of its own
    _write(tmp_path / "runs" / ".old-1" / "c", _record())  # hidden folders are not searched
    (tmp_path / "runs" / "notes.txt").write_text("x")
    assert find_run_dirs([tmp_path / "runs", b]) == [b, a]
    with pytest.raises(UserError, match="no such run directory or folder"):
        find_run_dirs([tmp_path / "absent"])
    with pytest.raises(UserError, match="neither a run directory"):
        find_run_dirs([tmp_path / "runs" / "notes.txt"])


# --------------------------------------------------------------------------------------------------- cells


def test_a_measured_cell_in_percent_with_its_failures() -> None:
    record = _record()
    record["metrics"]["overall"] = [
        _metric("accuracy", "excluded", 0.625, ci_low=0.5, ci_high=0.75, n_samples=8, n_units=16, n_failed=3),
        _metric("accuracy", "wrong", None, n_units=20),
    ]
    entry = RunEntry(Path("/runs/r1"), record)
    cell = measured_cell(entry, "accuracy", "excluded")
    assert cell == Cell(MEASURED, 62.5, "toy-exact", ci=(50.0, 75.0), n=8, failed=3, run="r1")
    assert cell.text(with_protocol=True) == "62.50 [50.00, 75.00] · toy-exact (3 failed)"
    assert cell.text(with_protocol=False) == "62.50 [50.00, 75.00] (3 failed)"
    wrong = measured_cell(entry, "accuracy", "wrong")
    assert wrong is not None and (wrong.value, wrong.ci, wrong.n, wrong.failed) == (None, None, 20, 0)
    assert wrong.text(with_protocol=True) == "n/a"
    assert measured_cell(entry, "kendall", "excluded") is None


def test_reported_cell_text() -> None:
    assert Cell(REPORTED, 73.0, "paper", source=1, note=2).text(with_protocol=True) == "73.0 · paper *2"
    assert Cell(REPORTED, 52.69, "paper").text(with_protocol=False) == "52.69"


def test_row_labels_show_what_changes_the_measurement() -> None:
    entry = _entry("r", model="qwen", protocol="p+tie=ties-excluded",
                   spec={"protocol": "rationalrewards-paper", "mode": "pairwise", "limit": 50, "seed": 3,
                         "model_args": {"path": "/w/ckpt-7", "temperature": 0.0, "a": 1}})
    assert judge_label(entry) == "qwen (a=1, temperature=0.0)"
    assert measured_setting(entry) == ("rationalrewards-paper+tie=ties-excluded+mode=pairwise+limit=50+seed=3"
                                       "+path=ckpt-7")
    plain = _entry("s", spec={"seed": 0, "limit": None})
    assert (judge_label(plain), measured_setting(plain)) == ("judge", "official")
    assert measured_setting(_entry("p", partial=True)) == "official+partial"


# --------------------------------------------------------------------------------------------------- task tables


def test_task_table_rows_show_counts_and_both_failure_policies() -> None:
    record = _record(values={"accuracy:excluded": 0.75, "accuracy:wrong": 0.5, "kendall:excluded": 0.25,
                             "kendall:wrong": 0.125}, metrics=("accuracy", "kendall"),
                     counts={"recorded": 12, "failed": 4, "label_skipped": 1})
    record["metrics"]["overall"][1]["n_failed"] = 4
    (table,) = task_tables([RunEntry(Path("/runs/r1"), record)], [])
    assert [c.id for c in table.columns] == ["accuracy:excluded", "accuracy:wrong", "kendall:excluded",
                                             "kendall:wrong"]
    assert [c.title for c in table.columns][:2] == ["accuracy (failures excluded)", "accuracy (failures as wrong)"]
    (row,) = table.rows
    assert row.info == {"protocol": "toy-exact", "n": "12", "failed": "4", "skipped": "1", "run": "r1"}
    assert {k: c.value for k, c in row.cells.items()} == {"accuracy:excluded": 75.0, "accuracy:wrong": 50.0,
                                                         "kendall:excluded": 25.0, "kendall:wrong": 12.5}
    assert row.cells["accuracy:wrong"].failed == 4 and row.cells["accuracy:excluded"].failed == 0
    assert table.notes == []


def test_task_table_keeps_the_later_of_two_runs_for_one_cell_whatever_their_order() -> None:
    older = _entry("old", spec_hash="h1", updated="2024-01-01", values={"accuracy:excluded": 0.25})
    newer = _entry("new", spec_hash="h2", updated="2024-02-01", values={"accuracy:excluded": 0.75})
    for entries in ([older, newer], [newer, older]):
        (table,) = task_tables(entries, [])
        (row,) = table.rows
        assert row.cells["accuracy:excluded"].value == 75.0 and row.cells["accuracy:excluded"].run == "new"
        assert table.notes == ["judge / official: several runs for one cell, the latest shown"]
        assert row.info["run"] in ("old", "new")
        assert not any(k.startswith("updated:") for k in row.info)  # bookkeeping never reaches the output


def test_task_tables_one_per_setting_and_version_with_published_columns() -> None:
    entries = [_entry("v1"), _entry("v2", version="2"), _entry("n", task="sanity", spec={"task_args": {"n": 8}})]
    item = Reported("Paper", "toy", "1", "accuracy", 60.0, "paper-protocol", "A paper")
    tables = {t.title: t for t in task_tables(entries, [item])}
    assert sorted(tables) == ["sanity v1 (n=8)", "toy v1", "toy v2"]
    toy = tables["toy v1"]
    assert [c.id for c in toy.columns] == ["accuracy:excluded", "accuracy:wrong", "accuracy:published"]
    assert [(r.judge, r.origin) for r in toy.rows] == [("judge", MEASURED), ("Paper", REPORTED)]
    published = toy.rows[1].cells["accuracy:published"]
    assert (published.value, published.protocol, published.source) == (60.0, "paper-protocol", 1)
    assert toy.sources == ["A paper"] and toy.rows[1].info == {"protocol": "paper-protocol", "run": "[1]"}
    assert [c.id for c in tables["toy v2"].columns] == ["accuracy:excluded", "accuracy:wrong"]


def test_partial_runs_are_marked_in_their_task_table() -> None:
    (table,) = task_tables([_entry("p", partial=True)], [])
    assert table.rows[0].setting == "official+partial"
    assert table.notes == ["judge / official+partial: PARTIAL: 5 of 10 samples (local copy smaller than the "
                           "registered dataset)"]


def test_rows_measured_first_then_by_model_name() -> None:
    entries = [_entry("1", model="zeta"), _entry("2", model="Alpha", spec_hash="h2")]
    reported = [Reported("Beta judge", "toy", "1", "accuracy", 50.0, "p", "S", model="beta")]
    (table,) = task_tables(entries, reported)
    assert [(r.judge, r.origin) for r in table.rows] == [("Alpha", MEASURED), ("zeta", MEASURED),
                                                         ("Beta judge", REPORTED)]


# --------------------------------------------------------------------------------------------------- preference


def test_preference_table_columns_follow_table_1_and_take_only_the_k2_setting() -> None:
    k2 = _entry("k2", task="editreward-bench", spec={"task_args": {"k": 2}}, values={"accuracy:excluded": 0.5})
    k_default = _entry("kd", task="editreward-bench", model="other", values={"accuracy:excluded": 0.25})
    k3 = _entry("k3", task="editreward-bench", model="third", spec={"task_args": {"k": 3}},
                values={"accuracy:excluded": 0.75})
    table = preference_table([k2, k_default, k3], [])
    assert [c.title for c in table.columns] == ["MMRB2 T2I", "MMRB2 Edit", "EditReward-Bench", "GenAI-Bench T2I",
                                               "GenAI-Bench Edit"]
    column = table.columns[2].id
    cells = {r.judge: r.cells for r in table.rows}
    assert set(cells) == {"judge", "other"}  # k=3 is another setting: not a column of this table
    assert cells["judge"][column].value == 50.0 and cells["other"][column].value == 25.0


def test_preference_table_uses_failures_excluded_and_leaves_partial_runs_out() -> None:
    full = _entry("full", task="mmrb2-t2i", values={"accuracy:excluded": 0.5, "accuracy:wrong": 0.25})
    partial = _entry("part", task="mmrb2-edit", model="small", partial=True)
    table = preference_table([full, partial], [])
    (row,) = table.rows
    assert row.judge == "judge" and [c.value for c in row.cells.values()] == [50.0]
    assert table.notes == ["1 partial run(s) left out (fewer or other samples than the registered benchmark: a "
                           "smaller local copy, --limit, other content); they are in the per-task tables"]


def test_preference_table_one_column_per_task_version() -> None:
    entries = [_entry("a", task="genai-bench-t2i", version="1"), _entry("b", task="genai-bench-t2i", version="2")]
    titles = [c.title for c in preference_table(entries, []).columns]
    assert "GenAI-Bench T2I (v1)" in titles and "GenAI-Bench T2I (v2)" in titles and "GenAI-Bench T2I" not in titles
    assert "MMRB2 T2I" in titles  # tasks without runs keep their column at version 1


def test_preference_table_reported_numbers_of_the_column_metric_only() -> None:
    items = [Reported("Paper", "mmrb2-t2i", "1", "accuracy", 70.0, "p", "S1", note="subset"),
             Reported("Paper", "mmrb2-t2i", "1", "kendall", 10.0, "p", "S1"),
             Reported("Other", "mmrb2-t2i", "1", "accuracy", 65.0, "q", "S2")]
    table = preference_table([], items)
    assert [(r.judge, r.origin, r.setting) for r in table.rows] == [("Other", REPORTED, "S2"),
                                                                    ("Paper", REPORTED, "S1")]
    paper = table.rows[1].cells[table.columns[0].id]
    assert (paper.value, paper.source, paper.note) == (70.0, 1, 1)  # footnotes numbered in the order read
    assert table.sources == ["S1", "S2"] and table.notes == ["subset"]
    assert table.rows[0].cells[table.columns[0].id].source == 2


def test_preference_table_keeps_the_later_run_for_a_cell() -> None:
    older = _entry("old", task="mmrb2-t2i", spec_hash="h1", updated="2024-01-01", values={"accuracy:excluded": 0.1})
    newer = _entry("new", task="mmrb2-t2i", spec_hash="h2", updated="2024-03-01", values={"accuracy:excluded": 0.9})
    for entries in ([older, newer], [newer, older]):
        table = preference_table(entries, [])
        (row,) = table.rows
        assert [c.value for c in row.cells.values()] == [90.0]
        assert table.notes == ["judge / official: several runs for one cell, the latest shown"]


def test_settings_fill_in_task_defaults() -> None:
    assert setting_of("editreward-bench", "1", {}) == setting_of("editreward-bench", "1", {"k": 2})
    assert setting_of("editreward-bench", "1", {"k": 3}) != setting_of("editreward-bench", "1", {})
    k3 = setting_of("editreward-bench", "1", {"k": 3})
    assert (k3.slug, k3.title(), k3.title("EditReward")) == ("editreward-bench-v1-k=3", "editreward-bench v1 (k=3)",
                                                              "EditReward v1 (k=3)")
    assert setting_of("unknown-task", "2", {"x": "a b/c"}).slug == "unknown-task-v2-x=a_b_c"


def test_tables_carry_their_captions() -> None:
    preference = preference_table([], [])
    assert preference.caption.startswith("Preference accuracy (%) in the layout of the RationalRewards paper's Table 1")
    (table,) = task_tables([_entry("r")], [])
    assert table.caption.startswith("Every metric of each run, with failures excluded and counted as wrong")


def test_a_run_whose_log_lost_samples_is_left_out_with_a_note(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """run.json says complete; its sample log (the record) holds fewer samples than the run asked for."""
    from rrbench.session import execute
    from rrbench.spec import RunSpec

    assert execute(RunSpec(task="sanity", model="random", task_args={"n": 4, "size": 32}), tmp_path / "runs",
                   quiet=True, no_cache=True) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert read_entries([run_dir])[0][0].path == run_dir  # as written: complete
    capsys.readouterr()
    log = run_dir / "samples.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:-1]))
    entries, skipped = read_entries([run_dir])
    assert entries == []
    assert skipped == [f"{run_dir}: status 'incomplete' by its sample log, only complete runs count"]
    assert f"note: {run_dir}: run.json's counts and metrics do not match samples.jsonl" in capsys.readouterr().err


def test_reported_numbers_of_tasks_outside_table_1_do_not_make_columns() -> None:
    item = Reported("Paper", "sanity", "1", "accuracy", 50.0, "p", "S")
    table = preference_table([], [item])
    assert len(table.columns) == 5 and table.rows == []
