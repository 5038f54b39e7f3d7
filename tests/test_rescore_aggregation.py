"""`rrbench rescore --aggregation/--na`: a critique run re-aggregated from its recorded aspect scores.

The promise: rescoring a run under another aggregation or N/A policy gives exactly the numbers a fresh run with
that setting gives, with zero model calls. The fresh runs go through the real HTTP path (transformers serve behind
a pass-through proxy that swaps in a valid critique, since random weights never write one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rrbench.models import _rationalrewards_format as rr
from rrbench.tasks.sanity import sanity
from rrbench.types import Judgement
from tests.conftest import rrbench
from tests.fault_proxy import FaultProxy, Request
from tests.test_faults import _images
from tests.test_rationalrewards_parser import CASES, _parse

# Under N/A 'drop' Text Rendering is left out: A 3+2=5 < B 3+3=6, B wins.
# Under the paper's N/A=2.5: A 3+2+2.5=7.5 > B 3+3+1=7, A wins. The policy decides these samples.
FLIP = (
    "# Detailed Judgement\n1. Text Faithfulness:\n## Score A: 3\n## Score B: 3\n"
    "2. Physical and Visual Quality:\n## Score A: 2\n## Score B: 3\n"
    "3. Text Rendering:\n## Score A: N/A\n## Score B: 1\n# Summary: close call.\n"
)
A_WINS = (
    "# Detailed Judgement\n1. Text Faithfulness:\n## Score A: 4\n## Score B: 1\n"
    "2. Physical and Visual Quality:\n## Score A: 4\n## Score B: 2\n# Summary: A is better.\n"
)


def _valid_cases() -> list[dict[str, Any]]:
    return [c for c in CASES if "error" not in c]


@pytest.mark.parametrize("case", _valid_cases(), ids=[c["id"] for c in _valid_cases()])
def test_reaggregating_a_stored_judgement_equals_aggregating_the_parse(case: dict[str, Any]) -> None:
    parsed = _parse(case)
    stored = Judgement.from_json(json.loads(json.dumps(rr.judgement_from(parsed).to_json())))  # as in the log
    names = ["pairwise-sum/v1"] if parsed.pairwise else ["pointwise-mean/v1", "rl-edit/v1"]
    for aggregation in names:
        for na in rr.NA_POLICIES:
            fresh = rr.judgement_from(parsed, aggregation, na)
            again = rr.reaggregate(stored, aggregation, na)
            assert (again.scores, again.failure, sorted(again.flags)) == (
                fresh.scores, fresh.failure, sorted(fresh.flags)), (aggregation, na)
            assert again.aspects == fresh.aspects and again.raw == fresh.raw


def test_reaggregate_leaves_judgements_without_aspects_alone() -> None:
    failed = Judgement.failed(rr.FailureKind.TRUNCATED, "max_tokens reached", raw="# Detailed")
    assert rr.reaggregate(failed, "pairwise-sum/v1", "2.5") is failed
    with pytest.raises(rr.UserError, match="does not apply"):
        rr.reaggregate(Judgement(aspects=({"Text Faithfulness": 3.0},)), "pairwise-sum/v1", "drop")


def _run(tmp_path: Path, env: dict[str, str], url: str, tiny_vlm: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity", "-T", "n=6", "--model", "rationalrewards-8b",
                   "-M", f"path={tiny_vlm}", "-M", "max_tokens=8", *extra, "--base-url", url, "--quiet",
                   "--output", str(out), env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    newest = max((p for p in out.iterdir() if (p / "run.json").exists()), key=lambda p: p.stat().st_mtime)
    return {"dir": newest, **json.loads((newest / "run.json").read_text())}


def _accuracy(record: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """Overall accuracy under each failure policy: (policy, value, CI low, CI high)."""
    return [(m["failure_policy"], m["value"], m["ci_low"], m["ci_high"])
            for m in record["metrics"]["overall"] if m["metric"] == "accuracy"]


@pytest.mark.slow
def test_rescore_na_policy_equals_a_fresh_run_with_it(
    tmp_path: Path, cli_env: dict[str, str], tiny_vlm: Path, vlm_server: str
) -> None:
    # The candidates are shown in their own order: a sample whose second image is right gets the critique the
    # N/A policy flips; the others get one where A wins under both. So 'drop' is right on all 6, '2.5' on 3.
    winner = {frozenset(m.sha256 for m in s.candidates): s.label.winner for s in sanity(n=6).load(None)}
    assert sorted(winner.values()) == [0, 0, 0, 1, 1, 1]

    def answer(request: Request) -> str:
        return FLIP if winner[_images(request)] == 1 else A_WINS

    with FaultProxy(vlm_server, answer=answer) as proxy:
        dropped = _run(tmp_path, cli_env, proxy.url, tiny_vlm)
        paper = _run(tmp_path, cli_env, proxy.url, tiny_vlm, "-M", "na=2.5")
    assert [v for _, v, _, _ in _accuracy(dropped)] == [1.0, 1.0]
    assert [v for _, v, _, _ in _accuracy(paper)] == [0.5, 0.5]

    done = rrbench("rescore", str(dropped["dir"]), "--na", "2.5", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (rescored,) = tmp_path.glob("runs/*.rescore-*")
    record = json.loads((rescored / "run.json").read_text())
    assert record["stats"]["model_calls"] == 0 and record["aggregation"] == {"name": None, "na": "2.5"}
    assert record["protocol"]["id"].endswith("+na=2.5")
    assert _accuracy(record) == _accuracy(paper)  # value and CI, to the last digit
    rescored_lines = [json.loads(x) for x in (rescored / "samples.jsonl").read_text().splitlines()]
    paper_lines = [json.loads(x) for x in (paper["dir"] / "samples.jsonl").read_text().splitlines()]
    assert {ln["id"]: ln["trials"][0]["prediction"] for ln in rescored_lines} == {
        ln["id"]: ln["trials"][0]["prediction"] for ln in paper_lines}


def test_rescore_rejects_an_unknown_aggregation(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "sanity", "-T", "n=4", "--model", "always-first", "--quiet",
                   "--output", str(out), env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = out.iterdir()
    done = rrbench("rescore", str(run_dir), "--aggregation", "mean-of-means", env=cli_env, cwd=tmp_path)
    assert done.returncode == 2 and "unknown aggregation 'mean-of-means'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
