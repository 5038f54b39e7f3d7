"""Shared fixtures. Every test gets its own response cache, so no test reads another's answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGINS = str(Path(__file__).parent / "plugins" / "testmodels.py")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RRBENCH_CACHE", str(tmp_path / "cache.sqlite"))
    yield


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RRBENCH_CACHE"] = str(tmp_path / "cache.sqlite")
    env["RRBENCH_PLUGINS"] = PLUGINS
    env["PYTHONUNBUFFERED"] = "1"
    return env


def rrbench(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "rrbench.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen3-VL checkpoint, built once per test session."""
    pytest.importorskip("transformers", reason="needs the transformers extra")
    from tests.fixtures.tiny_qwen3vl import build

    return build(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture(scope="session")
def vlm_server(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`transformers serve` of the tiny checkpoint on 127.0.0.1: a real OpenAI-compatible server."""
    import shutil
    import time
    import urllib.request

    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    port = free_port()
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([exe, "serve", str(tiny_vlm), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"transformers serve did not start; see {log.name}") from None
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(30)
    log.close()
