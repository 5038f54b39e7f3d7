"""The RationalRewards critic end to end on a tiny random-weight Qwen3-VL, in-process and over HTTP.

Random weights never write a valid critique, so these runs exercise the failure path: every sample is recorded
with its raw output and a failure kind, and the counts add up. Parsing itself is covered by the corpus tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rrbench.backends._base import Completion
from rrbench.models._vlm import VLMJudge
from rrbench.types import FailureKind, Media, Query, UserError, Verdict
from tests.conftest import rrbench


def _check_run(out: Path, n: int) -> dict:
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    record = json.loads((run_dir / "run.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == n and record["counts"]["recorded"] == n
    kinds = record["counts"]["failed_by_kind"]
    assert sum(kinds.values()) == record["counts"]["failed"]
    assert set(kinds) <= {"parse", "truncated"} and record["counts"]["failed"] == n
    for line in lines:
        judgement = line["trials"][0]["judgements"][0]
        assert judgement["failure"] == line["failure"] and judgement["raw"]  # the raw output is kept
    assert record["protocol"]["mode"] == "pairwise"
    assert record["model"]["parser_version"] and record["model"]["prompt"] == "official"
    assert list(record["model"]["prompts"]) == ["rationalrewards/pairwise-t2i@released-1"]  # the released prompt
    return record


@pytest.mark.slow
def test_rationalrewards_in_process_runs_end_to_end(tmp_path: Path, cli_env: dict[str, str], tiny_vlm: Path) -> None:
    # engine=transformers: with vLLM installed (or RRBENCH_VLLM_PYTHON set), auto would start a vLLM server
    done = rrbench("run", "--task", "sanity", "--model", "rationalrewards-8b", "-M", f"path={tiny_vlm}",
                   "-M", "engine=transformers", "-M", "max_tokens=48", "-T", "n=6", "--quiet",
                   "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _check_run(tmp_path / "runs", 6)["model"]["engine"] == "transformers"


@pytest.mark.slow
def test_rationalrewards_over_http_runs_end_to_end(
    tmp_path: Path, cli_env: dict[str, str], tiny_vlm: Path, vlm_server: str
) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "rationalrewards-8b", "-M", f"path={tiny_vlm}",
                   "-M", "max_tokens=48", "-T", "n=6", "--quiet", "--output", str(tmp_path / "runs"),
                   "--base-url", vlm_server, env=cli_env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    record = _check_run(tmp_path / "runs", 6)
    assert vlm_server not in json.dumps(record["spec"])  # where it ran is not part of what was asked


def test_missing_weights_and_misplaced_flags_are_user_errors(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "rationalrewards-8b", "-M", "path=/no/weights",
                   "-T", "n=2", "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert done.returncode == 2 and "weights folder not found: /no/weights" in done.stderr
    flag = rrbench("run", "--task", "sanity", "--model", "random", "--base-url", "http://127.0.0.1:9/v1",
                   "--output", str(tmp_path / "runs"), env=cli_env, cwd=tmp_path)
    assert flag.returncode == 2 and "does not take --base-url" in flag.stderr


def _query() -> Query:
    return Query("a cat", (Media.from_bytes(b"\x89PNG a"), Media.from_bytes(b"\x89PNG b")))


def _read(judge: VLMJudge, text: str, finish: str = "stop") -> object:
    query = _query()
    spec = judge.prompt_for(query, "verdict" if judge.mode == "verdict" else judge.mode)
    return judge._judge(query, spec, Completion(text, finish, {"completion_tokens": 9}))


def test_completions_map_to_judgements_and_failure_kinds() -> None:
    critic = VLMJudge("t", {"t2i": "x"}, mode="pairwise")
    assert _read(critic, "   ").failure is FailureKind.EMPTY  # type: ignore[attr-defined]
    assert _read(critic, "# Detailed Judgement\n1. Text", "length").failure is FailureKind.TRUNCATED  # type: ignore[attr-defined]
    assert _read(critic, "no headings at all").failure is FailureKind.PARSE  # type: ignore[attr-defined]
    valid = (
        "# Detailed Judgement\n1. Text Faithfulness:\n## Score A: 4\n## Score B: 2\n## Winner: Image A\n"
        "2. Physical and Visual Quality:\n## Score A: 3\n## Score B: 3\n## Winner: tie\n"
        "3. Text Rendering:\n## Score A: N/A\n## Score B: N/A\n## Winner: N/A\n# Summary: A follows the prompt.\n"
    )
    judgement = _read(critic, valid)
    assert judgement.ok and judgement.scores == (7.0, 5.0)  # type: ignore[attr-defined]
    assert judgement.prompt == "rationalrewards/pairwise-t2i@released-1"  # type: ignore[attr-defined]
    judge = VLMJudge("g", {"t2i": "x"}, mode="verdict")
    verdict = _read(judge, "B is better. [[B>A]]")
    assert verdict.verdict is Verdict.B and verdict.prompt == "rrbench/verdict-t2i@1"  # type: ignore[attr-defined]
    assert verdict.scores == ()  # type: ignore[attr-defined]  # a verdict carries no made-up scores
    assert _read(judge, "[[A=B=Bad]]").verdict is Verdict.BOTH_BAD  # type: ignore[attr-defined]
    failed = _read(judge, "I cannot decide")
    assert failed.failure is FailureKind.PARSE and failed.raw == "I cannot decide"  # type: ignore[attr-defined]
    assert failed.prompt == "rrbench/verdict-t2i@1"  # type: ignore[attr-defined]  # an official rule may re-read it


def test_api_judge_without_its_key_fails_fast_naming_the_variable(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "GEMINI_API_KEY"}
    done = rrbench("run", "--task", "sanity", "--model", "gemini-2.5-flash", "-T", "n=2",
                   "--output", str(tmp_path / "runs"), env=env, cwd=tmp_path)
    assert done.returncode == 2 and "GEMINI_API_KEY is not set" in done.stderr


@pytest.mark.slow
def test_generic_judge_in_verdict_mode_over_http(
    tmp_path: Path, cli_env: dict[str, str], tiny_vlm: Path, vlm_server: str
) -> None:
    done = rrbench("run", "--task", "sanity", "--model", "qwen3-vl-8b", "-M", f"served_model={tiny_vlm}",
                   "-M", "max_tokens=16", "-T", "n=4", "--quiet", "--output", str(tmp_path / "runs"),
                   "--base-url", vlm_server, env=cli_env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["counts"]["recorded"] == 4
    assert set(record["counts"]["failed_by_kind"]) <= {"parse", "truncated"}


def test_auto_engine_follows_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from rrbench.models._vlm import EngineOptions

    monkeypatch.delenv("RRBENCH_VLLM_PYTHON", raising=False)
    import importlib.util

    has_vllm = importlib.util.find_spec("vllm") is not None
    assert EngineOptions().resolve(has_base_url=True) == "http"
    assert EngineOptions().resolve(has_base_url=False) == ("vllm-serve" if has_vllm else "transformers")
    monkeypatch.setenv("RRBENCH_VLLM_PYTHON", "/opt/vllm/bin/python")
    assert EngineOptions().resolve(has_base_url=False) == "vllm-serve"
    assert EngineOptions(serve=False).resolve(has_base_url=False) == "transformers"
    with pytest.raises(UserError, match="contradicts"):
        EngineOptions(serve=True, engine="vllm").resolve(has_base_url=False)
    with pytest.raises(UserError, match="needs --base-url"):
        EngineOptions(engine="http").resolve(has_base_url=False)
