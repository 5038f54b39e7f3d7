"""A non-editable install must carry tasks/ (as rrbench.tasks) and find every task in it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_every_task_and_a_plain_install_registers_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("rrbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    task_files = sorted(p.name for p in (ROOT / "tasks").glob("*.py") if p.name != "__init__.py")
    assert task_files, "no task files found"
    for name in task_files:
        assert f"rrbench/tasks/{name}" in names
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "rrbench").rglob("*.py"))
    assert [m for m in modules if m not in names] == []  # every package listed in pyproject.toml
    trained = sorted("rrbench_train/" + str(p.relative_to(ROOT / "training")) for p in (ROOT / "training").rglob("*")
                     if p.suffix in (".py", ".txt", ".yaml") and "__pycache__" not in p.parts)
    assert trained and [m for m in trained if m not in names] == []  # training/ ships as rrbench_train, data included

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    probe = (
        "import rrbench, rrbench.registry as r; "
        "print(rrbench.__file__); print(' '.join(e.name for e in r.entries('task'))); "
        "print(' '.join(e.name for e in r.entries('generator')))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    assert out[0].startswith(str(target))  # the installed copy, not the source tree
    assert "sanity" in out[1].split() and "sanity-gen" in out[1].split()
    assert "painter" in out[2].split()  # the README's first command also runs `rrbench generate`
