from __future__ import annotations

from pathlib import Path

import pytest

from rrbench.spec import RunSpec, load_manifest, parse_assignments
from rrbench.types import UserError


def test_hash_covers_what_changes_results_only() -> None:
    base = RunSpec(task="sanity", model="random", task_args={"n": 10})
    assert base.hash() == RunSpec(task="sanity", model="random", task_args={"n": 10}).hash()
    for changed in (
        RunSpec(task="sanity", model="random", task_args={"n": 11}),
        RunSpec(task="sanity", model="random", task_args={"n": 10}, seed=1),
        RunSpec(task="sanity", model="random", task_args={"n": 10}, limit=5),
        RunSpec(task="sanity", model="random", task_args={"n": 10}, order="both"),
        RunSpec(task="sanity", model="constant", task_args={"n": 10}),
    ):
        assert changed.hash() != base.hash()
    assert base.dirname().startswith("sanity__random__")


def test_assignments_are_typed() -> None:
    parsed = parse_assignments(["n=10", "serve=true", "x=0.5", "name=a,b", "path=/tmp/x", "empty="], "-T")
    assert parsed == {"n": 10, "serve": True, "x": 0.5, "name": "a,b", "path": "/tmp/x", "empty": ""}
    with pytest.raises(UserError, match="key=value"):
        parse_assignments(["novalue"], "-T")


def test_manifest_and_run_json(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("task: sanity\nmodel: random\ntask_args: {n: 4}\n")
    assert load_manifest(str(tmp_path / "m.yaml"))["task_args"] == {"n": 4}
    (tmp_path / "run.json").write_text('{"schema_version": 1, "spec": {"task": "t", "model": "m"}}')
    assert load_manifest(str(tmp_path / "run.json")) == {"task": "t", "model": "m"}
    with pytest.raises(UserError, match="unknown run-spec field"):
        RunSpec.from_json({"task": "t", "model": "m", "bogus": 1})
    with pytest.raises(UserError, match="not found"):
        load_manifest(str(tmp_path / "missing.yaml"))
