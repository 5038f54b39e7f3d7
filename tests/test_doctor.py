"""`rrbench doctor`: environment lines, and per model the engine, weights, server and API key with their fixes."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import rrbench


def _lines(text: str, name: str) -> list[str]:
    """The check lines named ``name``: "<status>  <name>  <detail>  -> <fix>"."""
    return [ln.strip() for ln in text.splitlines() if ln.split(maxsplit=1)[1:2] and
            ln.split(maxsplit=1)[1].startswith(name)]


def test_environment_report_names_each_extra_with_its_install_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("doctor", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (api,) = _lines(done.stdout, "extra [api]")
    assert api.startswith("ok") and "httpx" in api  # the test extra installs it
    for extra in ("transformers", "vllm", "diffusers", "datasets", "plots"):
        (line,) = _lines(done.stdout, f"extra [{extra}]")
        assert line.startswith("ok") or f"pip install 'rrbench[{extra}]'" in line
    assert _lines(done.stdout, "GPU") and "0 problem(s)" in done.stdout


def test_missing_weights_fail_with_the_fetch_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "HF_HOME": str(tmp_path / "empty-hf-home"), "HF_HUB_OFFLINE": "1"}
    done = rrbench("doctor", "--model", "rationalrewards-8b", "-M", "engine=transformers", env=env, cwd=tmp_path)
    assert done.returncode == 1
    (t2i,) = _lines(done.stdout, "weights (t2i)")
    (edit,) = _lines(done.stdout, "weights (edit)")
    assert t2i.startswith("FAIL") and "hf download TIGER-Lab/RationalRewards-8B-T2I" in t2i
    assert edit.startswith("FAIL") and "hf download TIGER-Lab/RationalRewards-8B-Edit" in edit


def test_local_weights_are_found(tmp_path: Path, cli_env: dict[str, str], tiny_vlm: Path) -> None:
    done = rrbench("doctor", "--model", "qwen3-vl-8b", "-M", f"path={tiny_vlm}", "-M", "engine=transformers",
                   env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert _lines(done.stdout, "weights (t2i)")[0].startswith("ok") and str(tiny_vlm) in done.stdout


def test_server_and_key_are_checked_and_the_key_never_shown(
    tmp_path: Path, cli_env: dict[str, str], vlm_server: str
) -> None:
    secret = "sk-doctor-test-0123456789"
    env = {**cli_env, "MY_KEY": secret}
    live = rrbench("doctor", "--model", "gpt-4o", "--base-url", vlm_server, "--api-key-env", "MY_KEY",
                   env=env, cwd=tmp_path)
    assert live.returncode == 0, live.stdout
    assert _lines(live.stdout, "API key")[0].startswith("ok") and "$MY_KEY is set" in live.stdout
    assert _lines(live.stdout, "server")[0].startswith("ok")
    dead = rrbench("doctor", "--model", "gpt-4o", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "NO_KEY",
                   env=env, cwd=tmp_path)
    assert dead.returncode == 1
    assert _lines(dead.stdout, "API key")[0].startswith("FAIL") and "export NO_KEY=" in dead.stdout
    assert "unreachable" in _lines(dead.stdout, "server")[0]
    assert secret not in live.stdout + live.stderr + dead.stdout + dead.stderr
