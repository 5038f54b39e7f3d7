"""`rrbench leaderboard` defaults that keep its output honest: where it writes, the published numbers shipped in the
package, measured rows before published ones, and tables only (with a note) when matplotlib is missing.

Runs are real: the embedded `sanity` task with the weight-free `always-first` and `constant` baselines. Expected
published numbers are read from the packaged file itself (rrbench/leaderboard/reported.json), never from the
tables code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import rrbench

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "rrbench" / "leaderboard" / "reported.json"
NO_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None; from rrbench.cli import main; "
                 "sys.exit(main(sys.argv[1:]))")  # `import matplotlib` raises ImportError in this process


@pytest.fixture
def workdir(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    """A folder with runs/ holding two sanity runs, as a user's project would."""
    done = rrbench("run", "--task", "sanity", "-T", "n=8", "-T", "size=64", "--model", "always-first,constant",
                   "--quiet", "--output", "runs", env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path


def _table(out: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((out / f"{name}.json").read_text()))


def _packaged_entries() -> list[dict[str, Any]]:
    return list(json.loads(PACKAGED.read_text())["entries"])


def test_default_out_is_beside_the_runs_never_a_checkouts_leaderboards(workdir: Path,
                                                                       cli_env: dict[str, str]) -> None:
    done = rrbench("leaderboard", "--no-plots", env=cli_env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("files written to runs/leaderboard")
    assert (workdir / "runs" / "leaderboard" / "README.md").is_file()
    assert not (workdir / "leaderboards").exists()
    # a rebuild walks runs/ again: its own output folder is not taken for runs
    again = rrbench("leaderboard", "--no-plots", env=cli_env, cwd=workdir)
    assert again.returncode == 0 and again.stdout.startswith("2 runs (0 superseded, 0 skipped)")
    # run directories named one by one: ./leaderboard
    (run_dir,) = [p for p in (workdir / "runs").iterdir() if p.name.startswith("sanity__constant__")]
    named = rrbench("leaderboard", str(run_dir), "--no-plots", env=cli_env, cwd=workdir)
    assert named.returncode == 0, named.stderr
    assert named.stdout.strip().endswith("files written to leaderboard")
    assert (workdir / "leaderboard" / "task-sanity-v1-n=8-size=64.md").is_file()


def test_published_numbers_come_from_the_package_by_default(workdir: Path, cli_env: dict[str, str]) -> None:
    done = rrbench("leaderboard", "--no-plots", "--out", "lb", env=cli_env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    table = _table(workdir / "lb", "preference")
    column = next(c["id"] for c in table["columns"] if c["title"] == "GenAI-Bench T2I")
    shown = {(r["judge"], r["cells"][column]["value"]) for r in table["rows"] if column in r["cells"]}
    published = {(e["judge"], e["value"]) for e in _packaged_entries()
                 if e["task"] == "genai-bench-t2i" and not e.get("task_args") and e["metric"] == "accuracy"}
    assert published and shown == published
    assert f"{len(_packaged_entries())} reported numbers" in done.stdout
    none = rrbench("leaderboard", "--no-plots", "--out", "lb2", "--reported", "none", env=cli_env, cwd=workdir)
    assert none.returncode == 0 and _table(workdir / "lb2", "preference")["rows"] == []


def test_measured_rows_come_before_published_ones(workdir: Path, cli_env: dict[str, str]) -> None:
    # "Aardvark" sorts before both measured judges by name: it must still come after them.
    reported = workdir / "mine.json"
    reported.write_text(json.dumps({"entries": [{
        "judge": "Aardvark", "task": "sanity", "task_version": "1", "task_args": {"n": 8, "size": 64},
        "metric": "accuracy", "value": 70.0, "protocol": "sanity-exact", "source": "A note (2024)"}]}))
    done = rrbench("leaderboard", "--no-plots", "--out", "lb", "--reported", str(reported), env=cli_env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    rows = [(r["judge"], r["origin"]) for r in _table(workdir / "lb", "task-sanity-v1-n=8-size=64")["rows"]]
    assert rows == [("always-first", "measured"), ("constant", "measured"), ("Aardvark", "reported")]
    for page, marks in (("README.md", ("| always-first | measured", "| constant | measured", "| Aardvark | reported")),
                        ("index.html", ("<td>always-first</td><td>measured", "<td>constant</td><td>measured",
                                        "<td>Aardvark</td><td>reported"))):
        text = (workdir / "lb" / page).read_text()
        positions = [text.index(mark) for mark in marks]
        assert positions == sorted(positions), page


def test_without_matplotlib_the_tables_are_written_with_a_one_line_note(workdir: Path,
                                                                        cli_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", NO_MATPLOTLIB, "leaderboard", "runs", "--out", "lb", "--plots", "all"],
                          env=cli_env, cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        "note: matplotlib is not installed, so no plots were drawn (pip install 'rrbench[plots]'); tables only"]
    assert "0 plots" in done.stdout
    assert (workdir / "lb" / "README.md").is_file() and not (workdir / "lb" / "plots").exists()


@pytest.mark.slow
def test_an_installed_wheel_shows_the_published_numbers_from_any_folder(workdir: Path, tmp_path_factory:
                                                                        pytest.TempPathFactory,
                                                                        cli_env: dict[str, str]) -> None:
    # Built from a copy of the sources, so the checkout gets no build/ folder.
    src = tmp_path_factory.mktemp("src")
    for name in ("rrbench", "tasks", "training"):  # every folder pyproject.toml maps a package to
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels, site = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("rrbench-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**cli_env, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-m", "rrbench.cli", "leaderboard", "--no-plots", "--out", "lb"],
                          env=env, cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(_packaged_entries())} reported numbers" in done.stdout
    assert any(r["origin"] == "reported" for r in _table(workdir / "lb", "preference")["rows"])
    probe = subprocess.run([sys.executable, "-c", "import rrbench; print(rrbench.__file__)"], env=env,
                           cwd=workdir, capture_output=True, text=True, check=True, timeout=60)
    assert probe.stdout.startswith(str(site))  # the installed copy, not the checkout
