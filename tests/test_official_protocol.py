"""A generation benchmark's own judge protocol (rrbench.protocols.official), end to end over a real local server.

The task is tests/plugins/official_demo.py: sanity-gen scenes, one request per image (``Rate: <prompt>`` and the
image, no decoding settings), ``score: N`` read, one re-ask after an unreadable answer, then the image dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rrbench import cli, registry
from tests.judge_server import Reply, Request, ScriptedJudge

PLUGIN = Path(__file__).parent / "plugins" / "official_demo.py"


@pytest.fixture(autouse=True)
def _plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRBENCH_PLUGINS", str(PLUGIN))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-not-a-key")
    registry.load_plugins()
    if registry.find("task", "official-demo") is None:
        registry._import_plugin(str(PLUGIN), "test")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """3 prompts x 2 images from the painter (6 images)."""
    out = tmp_path / "gen"
    assert cli.main(["generate", "--task", "official-demo", "--generator", "painter", "--output", str(out),
                     "--quiet"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def judge(images: Path, out: Path, url: str | None, *extra: str) -> tuple[int, dict[str, Any]]:
    args = ["run", "--task", "official-demo", "--images", str(images), "--output", str(out), "--quiet", *extra]
    if url is not None:
        args += ["--base-url", url]
    code = cli.main(args)
    runs = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    record = json.loads((runs[0] / "run.json").read_text()) if runs else {}
    return code, record


def value(record: dict[str, Any], metric: str = "mean-score") -> float:
    (row,) = [m for m in record["metrics"]["overall"] if m["metric"] == metric and m["failure_policy"] == "excluded"]
    return float(row["value"])


def by_images(request: Request) -> str:
    return f"score: {len(request.images)}"


def test_requests_go_out_as_the_protocol_builds_them_and_the_run_says_who_judged(images: Path,
                                                                                 tmp_path: Path) -> None:
    with ScriptedJudge(by_images) as server:
        code, record = judge(images, tmp_path / "j", server.url, "--model", "gpt-4.1")
    assert code == 0
    assert len(server.requests) == 6  # 3 prompts x 2 images, one request each
    body = server.requests[0].body
    assert "temperature" not in body and "max_tokens" not in body  # the protocol leaves both to the server
    assert server.requests[0].parts[0].startswith("Rate: ") and server.requests[0].parts[1] == "<image>"
    assert record["protocol"]["id"] == "official-demo" and record["protocol"]["mode"] == "official"
    assert value(record) == 1.0  # every answer "score: 1" (one image per request)
    judge_ = record["judge"]
    assert judge_["protocol"] == "official" and judge_["model"] == "gpt-4.1"
    assert judge_["substitute"] is True and judge_["official_judges"] == ["gemini-2.5-pro"]


def test_the_benchmarks_own_judge_is_not_a_substitute(images: Path, tmp_path: Path) -> None:
    with ScriptedJudge(by_images) as server:
        code, record = judge(images, tmp_path / "j", server.url, "--model", "gemini-2.5-pro")
    assert code == 0 and record["judge"]["substitute"] is False


def test_a_reask_is_a_new_request_and_a_rerun_asks_nothing(images: Path, tmp_path: Path) -> None:
    seen: dict[str, int] = {}

    def second_time_lucky(request: Request) -> str:
        key = request.text + request.images[0].data.hex()  # one image's request, whatever the order of arrival
        seen[key] = seen.get(key, 0) + 1
        return "I refuse to score" if seen[key] % 2 else "score: 3"

    with ScriptedJudge(second_time_lucky) as server:
        code, record = judge(images, tmp_path / "a", server.url, "--model", "gpt-4.1")
        # Each of the 6 images: an unreadable answer, then a re-ask (attempt 1) that the cache must not answer.
        assert code == 0 and len(server.requests) == 12
        assert value(record) == 3.0
        code, again = judge(images, tmp_path / "b", server.url, "--model", "gpt-4.1")
    assert code == 0 and len(server.requests) == 12  # a new run of the same requests: all from the cache
    assert again["stats"]["model_calls"] == 0 and again["stats"]["cache_hits"] == 12
    assert value(again) == 3.0


def test_an_image_unreadable_after_its_reask_is_dropped_and_counted(images: Path, tmp_path: Path) -> None:
    with ScriptedJudge(lambda r: "score: 4" if "square" not in r.text else "no idea") as server:
        code, record = judge(images, tmp_path / "j", server.url, "--model", "gpt-4.1")
    assert code == 0
    lines = _log(tmp_path / "j")
    dropped = [t for r in lines for t in r["trials"] if t.get("failure") == "parse"]
    kept = [t for r in lines for t in r["trials"] if not t.get("failure")]
    assert dropped, "the fixture should contain a square prompt"  # sanity-gen's first scenes name one
    assert all(len(t["judgements"]) == 2 for t in dropped)  # the first answer and the re-ask, both recorded
    assert value(record) == 4.0  # the dropped images leave the mean
    assert record["counts"]["failed_by_kind"].get("parse") == len({r["id"] for r in lines
                                                                   if any(t.get("failure") for t in r["trials"])})
    (row,) = [m for m in record["metrics"]["overall"] if m["failure_policy"] == "excluded"]
    assert row["n_units"] == len(kept)  # dropped images leave the denominator
    assert kept


def _log(out: Path) -> list[dict[str, Any]]:
    run = next(p for p in out.iterdir() if p.is_dir())
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines() if line.strip()]


def test_a_refusing_server_is_that_images_failure_not_a_crash(images: Path, tmp_path: Path) -> None:
    with ScriptedJudge(lambda r: Reply("bad request", status=400)) as server:
        code, record = judge(images, tmp_path / "j", server.url, "--model", "gpt-4.1", "--limit", "1")
    assert record["counts"]["failed_by_kind"] == {"http": 1}
    assert (code, record["status"]) == (0, "complete")  # recorded as that sample's failure; the run goes on
    (trial, *_) = _log(tmp_path / "j")[0]["trials"]
    assert trial["failure"] == "http" and "HTTP 400" in trial["judgements"][0]["failure_detail"]


def test_a_reward_model_scores_under_the_rm_protocol_and_cannot_take_the_official_one(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, record = judge(images, tmp_path / "rm", None, "--model", "constant")
    assert code == 0 and record["protocol"]["id"] == "official-demo-rm"
    assert record["judge"]["protocol"] == "reward-model"
    code, _ = judge(images, tmp_path / "named", None, "--model", "constant", "--protocol", "official-demo")
    assert code == 2
    err = capsys.readouterr().err
    assert "'constant' is a reward model with its own scores" in err and "--protocol official-demo-rm" in err


def test_export_of_a_judge_run_writes_the_official_answer_file(images: Path, tmp_path: Path) -> None:
    with ScriptedJudge(by_images) as server:
        judge(images, tmp_path / "j", server.url, "--model", "gpt-4.1")
    run = next(p for p in (tmp_path / "j").iterdir() if p.is_dir())
    assert cli.main(["export", str(run), str(tmp_path / "answers")]) == 0
    answers = json.loads((tmp_path / "answers" / "answers.json").read_text())
    assert len(answers) == 6 and set(answers.values()) == {"score: 1"}
