"""PARROT end to end on CPU, the issue's chain in one test: a scripted teacher on 127.0.0.1 -> anchor -> filter
(per-predicate counts worked out by hand) -> build-sft -> SFT of the tiny Qwen3-VL student in two CPU processes
through ``accelerate launch`` (gloo) -> the checkpoint judged by the real ``rrbench run`` with no conversion."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rrbench_train import cli
from rrbench_train.parrot.stage import latest_records, read_json
from tests import parrot_teacher as pt
from tests.conftest import rrbench
from tests.judge_server import ScriptedJudge
from tests.test_parrot_anchor import filtered, samples, stage_dirs, write_genai
from tests.test_parrot_sft import _config, _env, two_process_sft

# sanity t2i, 4 pairs: the teacher explains three preferences and argues for the loser once.
PLAN = [pt.consistent, pt.inconsistent, pt.consistent, pt.consistent]


@pytest.mark.slow
def test_anchor_filter_build_sft_two_process_sft_and_rrbench_run(tmp_path: Path, tiny_vlm: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 cli_env: dict[str, str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")
    data = samples(4)
    script = pt.Script(data, {s.id: pt.pairwise_behaviour(b) for s, b in zip(data, PLAN, strict=True)})
    out = tmp_path / "parrot"
    with ScriptedJudge(script) as teacher:
        assert cli.main(["anchor", "--task", "sanity", "-T", "size=32", "-T", "n=4", "--teacher", "gpt-4.1",
                         "--base-url", teacher.url, "--out", str(out)]) == 0
    (anchor_dir,) = stage_dirs(out, "anchor")
    assert (read_json(anchor_dir / "stage.json") or {})["counts"]["answered"] == 4
    # No judge: predictive is not applied. The inconsistent critique's own scores imply the loser: label rejects
    # it (1 of 4); the three others parse, name no hint and are longer than 200 characters: 3 kept.
    code, info, checks = filtered(anchor_dir)
    assert code == 0
    assert {k: v["rejected"] for k, v in info["counts"]["predicates"].items()} == {
        "format": 0, "label": 1, "predictive": 0, "leak": 0, "length": 0}
    assert sorted(i for i, r in checks.items() if r["kept"]) == sorted(data[k].id for k in (0, 2, 3))
    (filter_dir,) = stage_dirs(out, "filter")
    assert cli.main(["build-sft", "--from", str(filter_dir)]) == 0
    (built,) = stage_dirs(out, "build-sft")
    assert (read_json(built / "stage.json") or {})["counts"]["rows"] == 3
    ckpt = tmp_path / "ckpt"
    launch = two_process_sft(built, tiny_vlm, _config(tmp_path, effective_batch_size=2), ckpt)
    done = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads((ckpt / "stage.json").read_text())["counts"]
    assert counts["world_size"] == 2 and counts["global_step"] == 2 and counts["batches_checked"] == 2
    run = rrbench("run", "--task", "sanity", "-T", "n=2", "-T", "size=64", "--model", "rationalrewards-8b",
                  "-M", f"path={ckpt}", "-M", "engine=transformers", "-M", "max_tokens=16", "--quiet",
                  "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["counts"]["recorded"] == 2
    assert latest_records(filter_dir)  # the chain's inputs stay readable

    # The checkpoint on a benchmark with published numbers, then the leaderboard: its row beside the released one's.
    genai = write_genai(tmp_path / "genai.parquet", [("L", "D", "leftvote"), ("D", "L", "rightvote")])
    run = rrbench("run", "--task", "genai-bench-t2i", "--data", str(genai), "--protocol", "rationalrewards-paper",
                  "--model", "rationalrewards-8b", "-M", f"path={ckpt}", "-M", "engine=transformers",
                  "-M", "max_tokens=16", "--quiet", "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path,
                  timeout=300)
    assert run.returncode == 0, run.stderr
    board = rrbench("leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--plots", "none",
                    env=cli_env, cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    table = json.loads(next((tmp_path / "lb").glob("task-genai-bench-t2i-*.json")).read_text())
    rows = {(r["judge"], r["origin"], r["setting"]) for r in table["rows"]}
    assert ("rationalrewards-8b (engine=transformers, max_tokens=16)", "measured",
            "rationalrewards-paper+path=ckpt+partial") in rows
    assert ("RationalRewards-8B (Qwen3-VL-8B)", "reported", "RationalRewards paper (arXiv 2604.11626), Table 1") in rows
