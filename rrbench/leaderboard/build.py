"""`rrbench leaderboard`: run directories in, tables (and plots) out.

Output in ``--out`` (default: ``leaderboard/`` inside the first folder of runs read, or ``./leaderboard`` when the
first path is a run directory, so a default build never overwrites a checkout's tracked ``leaderboards/``): for
each table ``<id>.md/.csv/.tex/.html/.json``; ``README.md`` and ``index.html`` with every table (and the plots,
when drawn); ``plots/``. Published numbers come from ``reported.json`` shipped inside this package (``--reported
FILE`` or ``none`` to change that). Every file this command writes is listed in ``manifest.json``; a rebuild first
removes the files the previous manifest lists (and nothing else), so a table whose runs are gone does not linger.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from rrbench import registry
from rrbench.leaderboard import render
from rrbench.leaderboard.collect import RUN_JSON, RunEntry, find_run_dirs, latest, read_entries
from rrbench.leaderboard.reported import Reported, load_reported
from rrbench.leaderboard.tables import Table, preference_table, task_tables
from rrbench.store import atomic_text
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
    entries, skipped = read_entries(find_run_dirs(paths))
    chosen = latest(entries)
    tables = [preference_table(chosen, reported), *task_tables(chosen, reported)]
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)  # before the plots are drawn: they keep their names from one build to the next
    plots = [] if args.plots == "none" else _plots(chosen, out, args.plots == "all")
    written = write(tables, out, formats, plots)
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


def _plots(entries: Sequence[RunEntry], out: Path, aspects: bool) -> list[Path]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # an optional extra: the tables are the result, plots a view of them
        print("note: matplotlib is not installed, so no plots were drawn (pip install 'rrbench[plots]'); "
              "tables only", file=sys.stderr)
        return []
    from rrbench.leaderboard import plots

    return plots.write_plots([e.path for e in entries], out / "plots", aspects=aspects)


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


def _remove_previous(out: Path) -> None:
    """Delete what the previous build wrote (and only that), so a vanished table does not linger."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return
    try:
        names = json.loads(manifest.read_text()).get("files", [])
    except ValueError:
        return
    for name in names:
        path = (out / name).resolve()
        if out.resolve() in path.parents and path.name != REPORTED_FILE and path.is_file():
            path.unlink()


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
