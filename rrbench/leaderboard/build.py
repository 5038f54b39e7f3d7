"""`rrbench leaderboard`: run directories in, tables (and plots) out.

Output in ``--out`` (default: ``leaderboard/`` inside the first folder of runs read, or ``./leaderboard`` when the
first path is a run directory, so a default build never overwrites a checkout's tracked ``leaderboards/``): for
each table ``<id>.md/.csv/.tex/.html/.json``; ``README.md`` and ``index.html`` with every table (and the plots,
when drawn); ``plots/``. Published numbers come from ``reported.json`` shipped inside this package (``--reported
FILE`` or ``none`` to change that). Every file this command writes is listed in ``manifest.json``; a rebuild
drops the files the previous manifest lists (and nothing else), so a table whose runs are gone does not linger.

A build is atomic: the new folder is made beside ``--out`` (hidden), with the files of the old one that no build
wrote carried over, and then put in its place in one step (store.publish_dir), so a kill at any moment leaves the
previous leaderboard or the new one, never a mix, and old files go only once the new ones are all written. An
``--out`` that is, holds or lies inside a run directory being read is refused.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from rrbench import registry
from rrbench.leaderboard import render
from rrbench.leaderboard.collect import RUN_JSON, RunEntry, find_run_dirs, latest, read_entries
from rrbench.leaderboard.generation import dimension_tables, generation_table
from rrbench.leaderboard.reported import Reported, load_reported
from rrbench.leaderboard.tables import Table, preference_table, task_tables
from rrbench.store import atomic_text, publish_dir, staging_dir, write_error
from rrbench.types import UserError

MANIFEST = "manifest.json"
REPORTED_FILE = "reported.json"  # the published numbers, package data of rrbench.leaderboard; never written here
DEFAULT_OUT = "leaderboard"


def main(args: argparse.Namespace) -> int:
    formats = _formats(args.formats)
    reported = _reported(args.reported)
    paths = [Path(p) for p in args.paths] or [Path("runs")]
    if not args.paths and not paths[0].exists():
        raise UserError("no runs/ folder here: name run directories or folders of runs (rrbench leaderboard DIR ...)")
    out = Path(args.out) if args.out else default_out(paths)
    registry.load_plugins()  # task defaults place runs with and without explicit default arguments together
    run_dirs = find_run_dirs(paths)
    check_out(out, paths, run_dirs)
    entries, skipped = read_entries(run_dirs)
    chosen = latest(entries)
    judged = [e for e in chosen if e.spec.get("model") is not None]  # a generation run alone has no numbers
    tables = [preference_table(judged, reported), generation_table(judged, reported), *dimension_tables(judged),
              *task_tables(judged, reported)]
    target = out.resolve() if out.is_symlink() else out  # the folder a link names is the one replaced
    try:
        staged = staging_dir(target)
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        _carry_over(target, staged)
        dimensions = [t for t in tables if t.id.startswith("dimensions-")]
        plots = [] if args.plots == "none" else _plots(judged, staged, args.plots == "all", dimensions)
        written = write(tables, staged, formats, plots)
        publish_dir(staged, target)  # the old files go only now, with the old folder, all at once
    except OSError as exc:
        raise write_error(out, exc) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # gone already when published
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(chosen)} runs ({len(entries) - len(chosen)} superseded, {len(skipped)} skipped), "
          f"{len(reported)} reported numbers -> {len(tables)} tables, {len(plots)} plots, "
          f"{len(written)} files written to {out}")
    return 0


def default_out(paths: Sequence[Path]) -> Path:
    """Beside the runs read, never a checkout's tracked files: ``<first folder of runs>/leaderboard``, or
    ``./leaderboard`` when the first path is a run directory itself (its parent may be anyone's folder)."""
    first = paths[0]
    return Path(DEFAULT_OUT) if (first / RUN_JSON).is_file() else first / DEFAULT_OUT


def _formats(value: str) -> list[str]:
    formats = [f.strip() for f in value.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(render.FORMATS))
    if unknown or not formats:
        raise UserError(f"unknown format {', '.join(unknown) or '(none)'} (known: {', '.join(render.FORMATS)})")
    return formats


def _reported(option: str | None) -> list[Reported]:
    if option == "none":
        return []
    if option is None:
        with resources.as_file(resources.files("rrbench.leaderboard") / REPORTED_FILE) as packaged:
            return load_reported(packaged)
    return load_reported(Path(option))


def _plots(entries: Sequence[RunEntry], out: Path, aspects: bool, dimensions: Sequence[Table]) -> list[Path]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # an optional extra: the tables are the result, plots a view of them
        print("note: matplotlib is not installed, so no plots were drawn (pip install 'rrbench[plots]'); "
              "tables only", file=sys.stderr)
        return []
    from rrbench.leaderboard import plots

    return plots.write_plots([e.path for e in entries], out / "plots", aspects=aspects, dimension_tables=dimensions)


def write(tables: Sequence[Table], out: Path, formats: Sequence[str], plots: Sequence[Path]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for table in tables:
        for fmt in formats:
            written.append(_write(out / f"{table.id}.{fmt}", render.RENDERERS[fmt](table)))
    if "md" in formats:
        written.append(_write(out / "README.md", _index_markdown(tables, out, plots)))
    if "html" in formats:
        written.append(_write(out / "index.html", _index_html(tables, out, plots)))
    names = sorted(str(p.relative_to(out)) for p in [*written, *plots])
    _write(out / MANIFEST, json.dumps({"generated_by": "rrbench leaderboard", "files": names}, indent=1) + "\n")
    return written


def check_out(out: Path, paths: Sequence[Path], run_dirs: Sequence[Path]) -> None:
    """The output folder must not be an input: not a folder of runs named on the command line, not a run directory
    or inside one, and not a folder holding runs this build reads (the new folder replaces it whole)."""
    where = out.resolve()
    if where.exists() and not where.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    for path in paths:
        if path.resolve() == where:
            raise UserError(f"--out {out} is {path}, which this build reads runs from; give the leaderboard a "
                            "folder of its own")
    for run in run_dirs:
        run = run.resolve()
        if run == where or run in where.parents:
            raise UserError(f"--out {out} is inside the run directory {run}; give the leaderboard a folder of its "
                            "own")
        if where in run.parents:
            raise UserError(f"--out {out} holds the run directory {run}, which this build reads; give the "
                            "leaderboard a folder of its own")


def _carry_over(out: Path, staged: Path) -> None:
    """Into the new folder, the files of the old one that no build wrote (not in its manifest): hard links, so the
    old folder stays as it was until the new one replaces it."""
    if not out.is_dir():
        return
    managed = _previous_files(out) | {MANIFEST}
    for folder, dirs, files in os.walk(out):
        here = Path(folder)
        for name in [*files, *(d for d in dirs if (here / d).is_symlink())]:
            relative = (here / name).relative_to(out)
            if str(relative) in managed and name != REPORTED_FILE:
                continue
            target = staged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _link(here / name, target)
        for name in dirs:
            if not (here / name).is_symlink():
                (staged / (here / name).relative_to(out)).mkdir(parents=True, exist_ok=True)


def _previous_files(out: Path) -> set[str]:
    """What the previous build wrote, as its manifest lists it (nothing when it cannot be read)."""
    try:
        names = json.loads((out / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(Path(n)) for n in names if isinstance(n, str)}


def _link(source: Path, target: Path) -> None:
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text(path, mode=0o644) as fh:
        fh.write(text)
    return path


def _index_markdown(tables: Sequence[Table], out: Path, plots: Sequence[Path]) -> str:
    head = ("# Leaderboards\n\nGenerated by `rrbench leaderboard` from run directories; do not edit by hand. In every "
            "table the measured rows come first; published numbers follow in rows of their own, each with its source "
            "(from the reported-numbers file shipped with rrbench). Each table is also in CSV, LaTeX, HTML and JSON "
            "beside this file.\n")
    figures = [f"![{p.stem}]({p.relative_to(out)})" for p in plots if p.suffix == ".svg"]
    return "\n".join([head, *(render.to_markdown(t) for t in tables), *(["## Plots\n", *figures, ""] if figures
                                                                       else [])])


def _index_html(tables: Sequence[Table], out: Path, plots: Sequence[Path]) -> str:
    figures = [f'<figure><img src="{html.escape(str(p.relative_to(out)))}" alt="{html.escape(p.stem)}"></figure>'
               for p in plots if p.suffix == ".svg"]
    sections = [render.html_table(t) for t in tables]
    if figures:
        sections.append("<section><h2>Plots</h2>" + "".join(figures) + "</section>")
    return render.html_page("Leaderboards", sections)
