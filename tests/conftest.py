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
