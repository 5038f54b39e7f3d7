"""Leaderboard tables as data: the preference table in the layout of the RationalRewards paper's Table 1, and one
table per benchmark setting with every metric. Rendering to md/csv/tex/html/json is in ``render``.

Vocabulary:

* a **column key** is a benchmark setting: task name, task version and the task arguments with the task's
  defaults filled in (``editreward-bench`` with ``k=2`` and with no ``-T k`` are the same setting). Two task
  versions never share a column or a table.
* a **row** is one judge under one setting. Measured rows: the model with its ``-M`` arguments, and the setting
  (the protocol choice, ``official`` or a named alternative, plus any override suffix of the protocol id, plus
  ``--limit``, ``--seed``, ``--mode`` and the checkpoint folder's name when given, plus ``partial`` when the run
  judged fewer or other samples than the registered benchmark: see ``rrbench.datarecord``). Where the data came
  from (``--data`` or the hub) is not part of it otherwise: a complete local copy is the same setting. Partial runs
  are never in the preference table (it reads as the benchmarks' numbers); the per-task tables show them with a
  note giving n and the reason.
  Reported rows: one published source's numbers for a judge. A measured and a reported number are never in one
  row, so they can never merge, and each cell names its own protocol.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrbench import registry
from rrbench.datarecord import data_status
from rrbench.leaderboard.collect import RunEntry
from rrbench.leaderboard.reported import Reported

MEASURED, REPORTED = "measured", "reported"
PUBLISHED = "published"  # a reported number's column: its failure handling is the source's, not ours
FAILURE_TITLES = {"excluded": "failures excluded", "wrong": "failures as wrong", PUBLISHED: "as published"}

# The paper's Table 1: (title, task, task arguments, metric). EditReward-Bench there is the K=2 subset.
TABLE1: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("MMRB2 T2I", "mmrb2-t2i", {}, "accuracy"),
    ("MMRB2 Edit", "mmrb2-edit", {}, "accuracy"),
    ("EditReward-Bench", "editreward-bench", {"k": 2}, "accuracy"),
    ("GenAI-Bench T2I", "genai-bench-t2i", {}, "accuracy"),
    ("GenAI-Bench Edit", "genai-bench-edit", {}, "accuracy"),
)


@dataclass(frozen=True, order=True)
class Setting:
    """A benchmark setting: what one column of the preference table (and one per-task table) holds."""

    task: str
    version: str
    args: tuple[tuple[str, str], ...]  # every task argument, defaults filled in, values as canonical JSON

    @property
    def slug(self) -> str:
        shown = "".join(f"-{k}={json.loads(v)}" for k, v in self.args if k in self.non_default)
        return f"{self.task}-v{self.version}{shown}".replace("/", "_").replace(" ", "_")

    @property
    def non_default(self) -> set[str]:
        return {k for k, v in self.args if _defaults(self.task).get(k) != v}

    def title(self, base: str | None = None) -> str:
        shown = ", ".join(f"{k}={json.loads(v)}" for k, v in self.args if k in self.non_default)
        return f"{base or self.task} v{self.version}" + (f" ({shown})" if shown else "")


@dataclass(frozen=True)
class Column:
    id: str
    title: str
    setting: Setting | None = None
    metric: str = "accuracy"
    failure_policy: str = "excluded"


@dataclass(frozen=True)
class Cell:
    """One number. Values are in percent. ``source`` is a footnote number for reported cells."""

    origin: str
    value: float | None
    protocol: str
    ci: tuple[float, float] | None = None
    n: int | None = None
    failed: int = 0
    source: int | None = None
    note: int | None = None
    run: str | None = None

    def text(self, with_protocol: bool) -> str:
        if self.value is None:
            return "n/a"
        if self.origin == REPORTED:
            parts = [repr(self.value)]  # as published: 73.0 stays 73.0, 52.69 stays 52.69
        else:
            parts = [f"{self.value:.2f}"] + ([f"[{self.ci[0]:.2f}, {self.ci[1]:.2f}]"] if self.ci else [])
        if with_protocol:
            parts.append(f"· {self.protocol}")
        if self.failed:
            parts.append(f"({self.failed} failed)")
        if self.note is not None:  # the source is on the row (its setting column); a note is per number
            parts.append(f"*{self.note}")
        return " ".join(parts)


@dataclass
class Row:
    judge: str
    origin: str
    setting: str  # measured: protocol family and spec extras; reported: the source
    sort_key: str
    info: dict[str, str] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Table:
    id: str
    title: str
    columns: list[Column]
    rows: list[Row]
    info_columns: list[str] = field(default_factory=list)
    protocol_in_cells: bool = True
    sources: list[str] = field(default_factory=list)  # footnote [i] is sources[i - 1]
    notes: list[str] = field(default_factory=list)  # footnote *i is notes[i - 1]
    caption: str = ""
    row_title: str = "judge"  # what a row is (the generation table's are generators); CSV and JSON keep "judge"


# --------------------------------------------------------------------------------------------------- settings


def _defaults(task: str) -> dict[str, str]:
    """Canonical JSON of each task argument's default; empty for a task no plug-in registers."""
    cached = _DEFAULTS.get(task)
    if cached is None:
        try:
            params = registry.get("task", task).parameters()
        except Exception:  # an unknown task in an old run: its arguments are taken as written
            params = {}
        cached = {n: _canon(p.default) for n, p in params.items() if p.default is not inspect.Parameter.empty}
        _DEFAULTS[task] = cached
    return cached


_DEFAULTS: dict[str, dict[str, str]] = {}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def setting_of(task: str, version: str, args: Mapping[str, Any]) -> Setting:
    merged = {**_defaults(task), **{k: _canon(v) for k, v in args.items()}}
    return Setting(task, version, tuple(sorted(merged.items())))


def entry_setting(entry: RunEntry) -> Setting:
    return setting_of(entry.task, entry.task_version, entry.spec.get("task_args") or {})


# --------------------------------------------------------------------------------------------------- rows


def judge_label(entry: RunEntry) -> str:
    args = entry.spec.get("model_args") or {}
    shown = ", ".join(f"{k}={args[k]}" for k in sorted(args) if k != "path")
    return entry.model + (f" ({shown})" if shown else "")


def measured_setting(entry: RunEntry) -> str:
    """The protocol choice plus whatever else in the spec changes what was measured."""
    spec, protocol_id = entry.spec, entry.protocol_id
    family = spec.get("protocol") or "official"
    suffix = protocol_id.split("+", 1)[1] if "+" in protocol_id else ""
    extras = [suffix] if suffix else []
    extras += [f"{k}={spec[k]}" for k in ("mode", "limit") if spec.get(k) is not None]
    if spec.get("seed"):
        extras.append(f"seed={spec['seed']}")
    if (entry.spec.get("model_args") or {}).get("path"):
        extras.append(f"path={Path(str(spec['model_args']['path'])).name}")
    if data_status(entry.record).partial:  # its own row: never merged with (or mistaken for) a full run
        extras.append("partial")
    return "+".join([family, *extras])


def headline(entry: RunEntry, metric: str, failure_policy: str) -> Mapping[str, Any] | None:
    for m in (entry.record.get("metrics") or {}).get("overall") or ():
        if m.get("metric") == metric and m.get("failure_policy") == failure_policy:
            return m
    return None


def measured_cell(entry: RunEntry, metric: str, failure_policy: str) -> Cell | None:
    m = headline(entry, metric, failure_policy)
    if m is None:
        return None
    scale = 1.0 if m.get("scale") == "score" else 100.0  # a score on the judge's own scale is shown as it is
    value = None if m.get("value") is None else scale * float(m["value"])
    ci = None
    if m.get("ci_low") is not None and m.get("ci_high") is not None:
        ci = (scale * float(m["ci_low"]), scale * float(m["ci_high"]))
    # n counts samples everywhere (a pair judged in both orders is one sample of two trials); older records lack it
    n = m.get("n_samples", m.get("n_units"))
    return Cell(MEASURED, value, entry.protocol_id, ci=ci, n=n, failed=int(m.get("n_failed") or 0),
                run=entry.path.name)


class _Rows:
    """Rows keyed by (judge, origin, setting), created on first use, sorted for output."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], Row] = {}

    def get(self, judge: str, origin: str, setting: str, sort_key: str) -> Row:
        key = (judge, origin, setting)
        if key not in self.rows:
            self.rows[key] = Row(judge, origin, setting, sort_key)
        return self.rows[key]

    def sorted(self) -> list[Row]:
        """Rows for output: the user's measured rows first, then the published ones, each by model name; the
        bookkeeping of _place dropped."""
        rank = {MEASURED: 0, REPORTED: 1}
        for row in self.rows.values():
            row.info = {k: v for k, v in row.info.items() if not k.startswith("updated:")}
        return sorted(self.rows.values(), key=lambda r: (rank[r.origin], r.sort_key.lower(), r.judge, r.setting))


class _Footnotes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def number(self, text: str | None) -> int | None:
        if text is None:
            return None
        if text not in self.items:
            self.items.append(text)
        return self.items.index(text) + 1


def _place(row: Row, column_id: str, cell: Cell, entry_updated: str, notes: list[str]) -> None:
    """Put a measured cell; a second run for the same row and column (only possible when two specs differ in
    something the row label does not show) keeps the later one and says so."""
    stamp = f"updated:{column_id}"
    if column_id in row.cells:
        notes.append(f"{row.judge} / {row.setting}: several runs for one cell, the latest shown")
        if entry_updated < row.info[stamp]:
            return
    row.info[stamp] = entry_updated
    row.cells[column_id] = cell


def reported_row_name(item: Reported) -> str:
    """A published number's row: its judge, or for a generation benchmark its generator and setting."""
    return f"{item.generator} ({item.setting or 'base'})" if item.generator else item.judge


def _reported_cell(item: Reported, sources: _Footnotes, notes: _Footnotes) -> Cell:
    return Cell(REPORTED, item.value, item.protocol, source=sources.number(item.source), note=notes.number(item.note))


# --------------------------------------------------------------------------------------------------- tables


def preference_table(entries: Sequence[RunEntry], reported: Sequence[Reported]) -> Table:
    """Rows = judges, columns = the paper's Table 1 benchmarks (one column per task version present)."""
    columns = _table1_columns(entries, reported)
    by_setting = {c.setting: c for c in columns}
    rows, sources, notes = _Rows(), _Footnotes(), _Footnotes()
    dup: list[str] = []
    left_out = 0
    for entry in entries:
        column = by_setting.get(entry_setting(entry))
        cell = measured_cell(entry, column.metric, "excluded") if column else None
        if column is None or cell is None:
            continue
        if data_status(entry.record).partial:  # this table reads as the benchmark's numbers: partial runs never
            left_out += 1
            continue
        row = rows.get(judge_label(entry), MEASURED, measured_setting(entry), entry.model)
        _place(row, column.id, cell, entry.updated, dup)
    for item in reported:
        column = by_setting.get(setting_of(item.task, item.task_version, item.task_args))
        if column is None or item.metric != column.metric:
            continue
        row = rows.get(item.judge, REPORTED, item.source, item.model or item.judge)
        row.cells[column.id] = _reported_cell(item, sources, notes)
    out = rows.sorted()
    caption = ("Preference accuracy (%) in the layout of the RationalRewards paper's Table 1. Measured: value "
               "[95% CI: exact for a proportion, else cluster bootstrap] · protocol, failures excluded (the "
               "per-task tables also count them as wrong). "
               "Reported rows: the published number · the source's protocol, the source named in the setting "
               "column.")
    partial = ([f"{left_out} partial run(s) left out (fewer or other samples than the registered benchmark: "
                "a smaller local copy, --limit, other content); they are in the per-task tables"] if left_out else [])
    return Table("preference", "Preference accuracy", columns, [r for r in out if r.cells], sources=sources.items,
                 notes=notes.items + sorted(set(dup)) + partial, caption=caption)


def _table1_columns(entries: Sequence[RunEntry], reported: Sequence[Reported]) -> list[Column]:
    versions: dict[str, set[str]] = {task: set() for _, task, _, _ in TABLE1}
    for entry in entries:
        if entry.task in versions:
            versions[entry.task].add(entry.task_version)
    for item in reported:
        if item.task in versions:
            versions[item.task].add(item.task_version)
    columns = []
    for title, task, args, metric in TABLE1:
        found = sorted(versions[task]) or ["1"]
        for version in found:
            setting = setting_of(task, version, args)
            shown = title if len(found) == 1 else f"{title} (v{version})"
            columns.append(Column(setting.slug, shown, setting, metric))
    return columns


def task_tables(entries: Sequence[RunEntry], reported: Sequence[Reported]) -> list[Table]:
    """One table per benchmark setting with measured runs or reported numbers: every metric, both failure policies."""
    settings: dict[Setting, list[RunEntry]] = {}
    for entry in entries:
        settings.setdefault(entry_setting(entry), []).append(entry)
    for item in reported:
        settings.setdefault(setting_of(item.task, item.task_version, item.task_args), [])
    return [_task_table(s, settings[s], reported) for s in sorted(settings)]


def _task_table(setting: Setting, entries: Sequence[RunEntry], reported: Sequence[Reported]) -> Table:
    items = [r for r in reported if setting_of(r.task, r.task_version, r.task_args) == setting]
    metrics = _metric_order(entries, items)
    policies = ("excluded", "wrong", PUBLISHED) if items else ("excluded", "wrong")
    columns = [Column(f"{m}:{fp}", f"{m} ({FAILURE_TITLES[fp]})", setting, m, fp) for m in metrics for fp in policies]
    rows, sources, notes = _Rows(), _Footnotes(), _Footnotes()
    dup: list[str] = []
    for entry in entries:
        row = rows.get(judge_label(entry), MEASURED, measured_setting(entry), entry.model)
        if (data := data_status(entry.record)).partial:
            dup.append(f"{row.judge} / {row.setting}: {data.line()}")
        counts = entry.record.get("counts") or {}
        row.info.update(protocol=entry.protocol_id, n=str(counts.get("recorded", "")),
                        failed=str(counts.get("failed", "")), skipped=str(counts.get("label_skipped", "")),
                        run=entry.path.name)
        for column in columns:
            cell = measured_cell(entry, column.metric, column.failure_policy)
            if cell is not None:
                _place(row, column.id, cell, entry.updated, dup)
    for item in items:
        name = reported_row_name(item)
        row = rows.get(name, REPORTED, item.source, item.model or name)
        row.info.update(protocol=item.protocol, run=f"[{sources.number(item.source)}]")
        row.cells[f"{item.metric}:{PUBLISHED}"] = _reported_cell(item, sources, notes)
    out = rows.sorted()
    caption = ("Every metric of each run, with failures excluded and counted as wrong; value [95% CI: exact for a "
               "proportion, else cluster bootstrap; the method is in each run.json]. "
               "n = samples recorded; failed and label-skipped are counted, never hidden. Published numbers sit in "
               "their own 'as published' columns under the source's protocol.")
    return Table(f"task-{setting.slug}", setting.title(), columns, out,
                 info_columns=["protocol", "n", "failed", "skipped", "run"], protocol_in_cells=False,
                 sources=sources.items, notes=notes.items + sorted(set(dup)), caption=caption)


def _metric_order(entries: Iterable[RunEntry], items: Iterable[Reported]) -> list[str]:
    """Metrics in protocol order (the headline first), then any only a reported number uses."""
    seen: dict[str, None] = {}
    for entry in entries:
        for metric in (entry.record.get("protocol") or {}).get("metrics") or ():
            seen.setdefault(str(metric), None)
    for item in items:
        seen.setdefault(item.metric, None)
    return list(seen)
