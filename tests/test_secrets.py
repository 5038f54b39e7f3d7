"""API keys never reach a file or a log.

With keys set in the environment (the one the run uses, plus the usual provider variables), a successful run, a
run whose every request fails, a run that fails at start, `doctor`, `rescore`, `report` and `leaderboard` leave no
key in any file under the test's folder (run directories, the response cache and its WAL, reports, tables) nor in
anything they print. The server is the tiny `transformers serve` behind the fault proxy (tests/fault_proxy.py),
which swaps the random model's text for a valid critique so the successful run has real verdicts, or answers 503.
Each secret is random per test, so no file can contain it by accident of the source.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from rrbench import cli
from tests.fault_proxy import FaultProxy
from tests.test_faults import VALID

KEY_VAR = "RRBENCH_TEST_API_KEY"


@pytest.mark.slow
def test_no_key_in_any_file_or_output(tmp_path: Path, tiny_vlm: Path, vlm_server: str,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {name: f"sk-{secrets.token_hex(16)}" for name in (KEY_VAR, "OPENAI_API_KEY", "GEMINI_API_KEY", "HF_TOKEN")}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    outputs: list[str] = []

    # In this process (the commands are what a user types; a subprocess each would cost 3 s of imports).
    def run(*args: str, expect: int | None = 0) -> str:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        outputs.append(out + err)
        assert expect is None or code == expect, err
        return out + err

    base = ("run", "--task", "sanity", "-T", "n=6", "-T", "size=32", "--model", "rationalrewards-8b",
            "-M", f"path={tiny_vlm}", "-M", "max_tokens=8", "--api-key-env", KEY_VAR, "--quiet")
    with FaultProxy(vlm_server, answer=lambda _: VALID) as proxy:
        run(*base, "--base-url", proxy.url, "--output", str(tmp_path / "ok"))
    with FaultProxy(vlm_server, lambda _: "5xx") as failing:
        run(*base, "-M", "max_retries=0", "--base-url", failing.url, "--output", str(tmp_path / "failing"),
            expect=None)
        assert failing.injected()["5xx"] >= 6  # the requests were made, and every one failed
    run(*base, "--base-url", "http://127.0.0.1:9/v1", "--output", str(tmp_path / "dead"), expect=2)
    with monkeypatch.context() as unset:
        unset.delenv(KEY_VAR)
        assert f"{KEY_VAR} is not set" in run(*base, "--base-url", vlm_server, "--output", str(tmp_path / "unset"),
                                              expect=2)  # the run really reads this key

    (ok_run,) = (tmp_path / "ok").iterdir()
    record = json.loads((ok_run / "run.json").read_text())
    assert record["counts"]["failed"] == 0 and record["status"] == "complete"  # real verdicts, key in use
    assert KEY_VAR in json.dumps(record["model"])  # the variable's name is recorded, never its value
    (failed_run,) = (tmp_path / "failing").iterdir()
    assert json.loads((failed_run / "run.json").read_text())["counts"]["failed_by_kind"].get("http", 0) >= 1
    assert "OPENAI_API_KEY" in run("doctor", "--model", "gpt-4o", "--base-url", vlm_server, expect=None)
    run("rescore", str(ok_run), "--tie-policy", "ties-excluded")
    run("report", str(ok_run))
    run("leaderboard", str(tmp_path / "ok"), str(tmp_path / "failing"), "--out", str(tmp_path / "lb"),
        "--plots", "none")

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in files) and any(p.name == "report.html" for p in files)
    for key in keys.values():
        forms = (key.encode(), base64.b64encode(key.encode()), base64.b64encode(f"Bearer {key}".encode()))
        for path in files:
            data = path.read_bytes()
            assert not any(form in data for form in forms), f"a key leaked into {path}"
        for text in outputs:
            assert key not in text, f"a key leaked into a command's output: {text[:200]}"
