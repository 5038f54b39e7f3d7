"""Render leaderboard tables: markdown, CSV (one line per cell), LaTeX (booktabs), HTML and JSON.

Every format shows the same cells in the same order. Output depends only on the tables (no dates, no absolute
paths), so regenerating from the same runs gives byte-identical files.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from typing import Any

from rrbench.leaderboard.tables import REPORTED, Cell, Row, Table

FORMATS = ("md", "csv", "tex", "html", "json")
CSV_FIELDS = ("table", "judge", "origin", "setting", "column", "metric", "failure_policy", "value", "ci_low",
              "ci_high", "protocol", "n", "failed", "source", "note", "run")


def _head(table: Table) -> list[str]:
    return [table.row_title, "origin", "setting", *table.info_columns, *(c.title for c in table.columns)]


def _origin(row: Row) -> str:
    return row.origin


def _setting(row: Row, table: Table) -> str:
    if row.origin == REPORTED:
        return f"source [{table.sources.index(row.setting) + 1}]" if row.setting in table.sources else row.setting
    return row.setting


def _texts(table: Table, row: Row) -> list[str]:
    cells = [row.cells.get(c.id) for c in table.columns]
    return [row.judge, _origin(row), _setting(row, table), *(row.info.get(k, "") for k in table.info_columns),
            *("" if c is None else c.text(table.protocol_in_cells) for c in cells)]


def _footer_lines(table: Table) -> list[str]:
    lines = [f"[{i}] {s}" for i, s in enumerate(table.sources, 1)]
    lines += [f"*{i} {n}" for i, n in enumerate(table.notes, 1)]
    return lines


# ------------------------------------------------------------------------------------------------- markdown


def to_markdown(table: Table) -> str:
    head = _head(table)
    esc = [[_md(t) for t in _texts(table, r)] for r in table.rows]
    lines = [f"## {table.title}", "", table.caption, "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    if not table.rows:
        lines.append("| " + " | ".join(["(no runs)"] + [""] * (len(head) - 1)) + " |")
    footer = _footer_lines(table)
    return "\n".join(lines + ([""] + [f"- {_md(x)}" for x in footer] if footer else [])) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------------------------- csv


def to_csv(table: Table) -> str:
    """Long format, one line per filled cell: numbers unformatted, so a spreadsheet can use them."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        for column in table.columns:
            cell = row.cells.get(column.id)
            if cell is not None:
                writer.writerow(_csv_line(table, row, column.id, column.metric, column.failure_policy, cell))
    return buffer.getvalue()


def _csv_line(table: Table, row: Row, column: str, metric: str, policy: str, cell: Cell) -> dict[str, Any]:
    return {
        "table": table.id, "judge": row.judge, "origin": row.origin, "setting": row.setting, "column": column,
        "metric": metric, "failure_policy": policy, "value": _num(cell.value),
        "ci_low": _num(cell.ci[0]) if cell.ci else "", "ci_high": _num(cell.ci[1]) if cell.ci else "",
        "protocol": cell.protocol, "n": "" if cell.n is None else cell.n, "failed": cell.failed,
        "source": table.sources[cell.source - 1] if cell.source else "",
        "note": table.notes[cell.note - 1] if cell.note else "", "run": cell.run or "",
    }


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}".rstrip("0").rstrip(".")


# ------------------------------------------------------------------------------------------------- latex

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "·": r"$\cdot$", "–": "--",
        "≈": r"$\approx$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); reported rows in italics."""
    head = _head(table)
    spec = "l" * (3 + len(table.info_columns)) + "r" * len(table.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{tex_escape(table.caption)}}}",
             f"\\label{{tab:{tex_escape(table.id)}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in head) + r" \\", r"\midrule"]
    for row in table.rows:
        texts = [tex_escape(t) for t in _texts(table, row)]
        if row.origin == REPORTED:
            texts = [f"\\textit{{{t}}}" if t else t for t in texts]
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    footer = _footer_lines(table)
    if footer:
        lines.append(r"\par\footnotesize " + r" \\ ".join(tex_escape(x) for x in footer))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- html

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}
th{border-bottom:2px solid #444}tr.reported td{font-style:italic;color:#555}.caption{color:#555;max-width:60em}
ol.foot{font-size:12px;color:#555}"""


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _head(table))
    body = []
    for row in table.rows:
        tds = "".join(f"<td>{html.escape(t)}</td>" for t in _texts(table, row))
        body.append(f'<tr class="{html.escape(row.origin)}">{tds}</tr>')
    footer = "".join(f"<li>{html.escape(x)}</li>" for x in _footer_lines(table))
    return (f'<section id="{html.escape(table.id)}"><h2>{html.escape(table.title)}</h2>'
            f'<p class="caption">{html.escape(table.caption)}</p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            + (f'<ol class="foot">{footer}</ol>' if footer else "") + "</section>")


def html_page(title: str, sections: Sequence[str]) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(sections)
            + "\n</body></html>\n")


def to_html(table: Table) -> str:
    return html_page(table.title, [html_table(table)])


# ------------------------------------------------------------------------------------------------- json


def table_json(table: Table) -> dict[str, Any]:
    return {
        "id": table.id, "title": table.title, "caption": table.caption,
        "columns": [{"id": c.id, "title": c.title, "metric": c.metric, "failure_policy": c.failure_policy,
                     **({"task": c.setting.task, "task_version": c.setting.version,
                         "task_args": {k: json.loads(v) for k, v in c.setting.args}} if c.setting else {})}
                    for c in table.columns],
        "info_columns": table.info_columns,
        "rows": [{"judge": r.judge, "origin": r.origin, "setting": r.setting, "info": r.info,
                  "cells": {k: _cell_json(c, table) for k, c in r.cells.items()}} for r in table.rows],
        "sources": table.sources, "notes": table.notes,
    }


def _cell_json(cell: Cell, table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {"origin": cell.origin, "value": cell.value, "protocol": cell.protocol}
    if cell.ci:
        out["ci"] = list(cell.ci)
    if cell.n is not None:
        out["n"] = cell.n
    if cell.failed:
        out["failed"] = cell.failed
    if cell.source:
        out["source"] = table.sources[cell.source - 1]
    if cell.note:
        out["note"] = table.notes[cell.note - 1]
    if cell.run:
        out["run"] = cell.run
    return out


def to_json(table: Table) -> str:
    return json.dumps(table_json(table), indent=1, ensure_ascii=False) + "\n"


RENDERERS = {"md": to_markdown, "csv": to_csv, "tex": to_latex, "html": to_html, "json": to_json}
