"""``report.html`` of a refine: the gain per round, then each image slot side by side: the base image, the critic's
critique of it, the refined request(s), the final image and what happened to it (kept, regenerated, or why not).

Thumbnails are embedded (a page is one file to share); the slots shown are capped (``MAX_SLOTS``) with the regenerated
and the not-regenerated-for-a-reason ones first, since those are the ones a reader checks.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rrbench.refine import plan
from rrbench.report.assets import CSS
from rrbench.report.page import Picture, _figure, num, thumbnail
from rrbench.store import atomic_text, load_results
from rrbench.types import DataError, Media

REPORT = "report.html"
MAX_SLOTS = 300
THUMB = 192


def write_report(folder: Path, summary: Mapping[str, Any], output: Path) -> Path:
    """Write ``folder/report.html`` from a refine summary; images are read from the stages under ``output``."""
    target = folder / REPORT
    with atomic_text(target) as fh:
        fh.write(f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(_title(summary))}</title>"
                 f"<style>{CSS}{_CSS}</style></head><body><h1>{_e(_title(summary))}</h1>")
        fh.write(_head(summary))
        slots = sorted(summary["slots"], key=lambda s: (s["outcome"] == plan.KEPT, s["sample"], s["index"]))
        base_paths = _base_paths(output / summary["stages"]["base"])
        for slot in slots[:MAX_SLOTS]:
            fh.write(_row(slot, summary, output, base_paths))
        if len(slots) > MAX_SLOTS:
            fh.write(f"<p>{len(slots) - MAX_SLOTS} more image slots are in refine.json.</p>")
        fh.write("</body></html>")
    return target


def _title(summary: Mapping[str, Any]) -> str:
    return f"refine: {summary['task']} x {summary['generator']}, critic {summary['critic']}"


def _head(summary: Mapping[str, Any]) -> str:
    rows = []
    for entry in summary["rounds"]:
        gain = entry["overall"] or {}
        ci = f"[{num(gain.get('ci_low'))}, {num(gain.get('ci_high'))}]" if gain.get("ci_low") is not None else ""
        rows.append(f"<tr><td>{entry['round']}</td><td>{num(gain.get('base'))}</td><td>{num(gain.get('final'))}</td>"
                    f"<td>{num(gain.get('gain'))} {ci}</td><td>{gain.get('n_samples', '')}</td></tr>")
    counts = summary["images"]
    outcomes = ", ".join(f"{_e(k)}: {v}" for k, v in counts["by_outcome"].items())
    return (f"<p>accept rule <b>{_e(summary['accept'])}</b>; judge {_e(summary['judge'])} under "
            f"{_e(summary['judge_protocol'])}; metric {_e(summary['metric'])}</p>"
            "<table class='gain'><tr><th>round</th><th>base</th><th>final</th><th>gain (95% CI)</th><th>n</th></tr>"
            + "".join(rows) + f"</table><p>{counts['total']} images; {outcomes}</p>")


def _row(slot: Mapping[str, Any], summary: Mapping[str, Any], output: Path,
         base_paths: Mapping[tuple[str, int], str]) -> str:
    base = _picture(output / summary["stages"]["base"], base_paths.get((slot["sample"], slot["index"])))
    final = _picture(output / str(slot["final_run"]), slot.get("final_image"))
    steps = "".join(_step(h) for h in slot["history"]) or "<p>not made again</p>"
    return (f"<section class='slot'><h3>{_e(slot['sample'])} #{slot['index']}: {_e(slot['outcome'])}</h3>"
            f"<div class='side'>{_figure(base, 'base image', 'candidate', 'base')}<div class='steps'>{steps}</div>"
            f"{_figure(final, 'final image (round ' + str(slot['round']) + ')', 'candidate', 'final')}</div>"
            "</section>")


def _step(history: Mapping[str, Any]) -> str:
    critique = history.get("critique") or {}
    aspects = ", ".join(f"{_e(k)} {num(v)}" for k, v in (critique.get("aspects") or {}).items())
    return (f"<div class='step'><b>round {history['round']}</b> ({_e(history.get('outcome', 'pending'))})"
            f"<p>critique: {aspects or 'no aspect scores'}</p>"
            f"<p class='rationale'>{_e(critique.get('rationale') or '')}</p>"
            f"<p>refined request:</p><pre class='refined'>{_e(history['request'])}</pre></div>")


def _picture(run: Path, path: str | None) -> Picture:
    if path is None:
        return Picture(reason="no image")
    try:
        return thumbnail(Media.from_path(run / path, root=run).read_bytes(), THUMB)
    except (DataError, OSError) as exc:
        return Picture(reason=str(exc))


def _base_paths(run: Path) -> dict[tuple[str, int], str]:
    """Where each slot's base image is in the base set (read once per page)."""
    out: dict[tuple[str, int], str] = {}
    for result in load_results(run):
        for entry in result.candidates:
            path, index = (entry.get("path"), entry.get("index")) if isinstance(entry, Mapping) else (None, None)
            if isinstance(path, str) and isinstance(index, int):
                out[(result.sample_id, index)] = path
    return out


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
.side { display: flex; gap: 12px; align-items: flex-start; }
.steps { flex: 1; max-width: 640px; }
.step pre.refined { white-space: pre-wrap; background: #f6f6f6; padding: 4px; }
table.gain td, table.gain th { padding: 2px 8px; text-align: right; }
"""
