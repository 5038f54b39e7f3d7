"""The generation table, in the layout of the RationalRewards paper's generator results, and its per-dimension tables.

Rows are generator x setting (``base``, ``+LoRA <name>`` for an RL-tuned adapter, ``+test-time refine``), columns the
four generation benchmarks (UniGenBench++, ImgEdit, GEdit-EN, PICA). A measured cell is the headline metric of a
judge run of the benchmark (its protocol's first metric, on the benchmark's own scale: percent for accuracies, 1-5
for ImgEdit, 0-10 for GEdit) with its CI, its protocol and its judge; a number from another judge than the
benchmark's own is marked ``substitute``, and a reward model's own scores are never in this table (they are in the
per-task tables). Reported cells (the paper's) sit in their own rows, with their source.

A row's generator and setting come from the judge run's image source (``run.json["source"]``): a generation run's
generator name and its ``-G`` arguments (``lora=`` makes the setting ``+LoRA <folder name>``), a refine run's
record (``refine``), or ``images <folder name>`` for ``--images`` folders made elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rrbench.datarecord import data_status
from rrbench.leaderboard.collect import RunEntry
from rrbench.leaderboard.reported import Reported
from rrbench.leaderboard.tables import (
    MEASURED,
    REPORTED,
    Cell,
    Column,
    Table,
    _Footnotes,
    _place,
    _reported_cell,
    _Rows,
    entry_setting,
    measured_cell,
    setting_of,
)
from rrbench.protocols.official import is_substitute

# (title, task, task arguments): the paper's generation columns. GEdit-EN is gedit-bench's default (lang=en).
GENERATION: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("UniGenBench++", "unigenbench", {}),
    ("ImgEdit", "imgedit-bench", {}),
    ("GEdit-EN", "gedit-bench", {}),
    ("PICA", "pica-bench", {}),
)


def is_judge_of_images(entry: RunEntry) -> bool:
    """A judge run of a generation task (it judged images a generator made or a folder held)."""
    return isinstance(entry.record.get("source"), Mapping) and entry.spec.get("model") is not None


def generator_row(entry: RunEntry) -> tuple[str, str]:
    """(generator, setting) of the images a judge run judged."""
    source = entry.record.get("source") or {}
    if source.get("kind") == "folder":
        return f"images {Path(str(source.get('path', '?'))).name}", "as given"
    generator = source.get("generator") or {}
    name = str(generator.get("name", "?"))
    config = generator.get("config") or {}
    shown = ", ".join(f"{k}={config[k]}" for k in sorted(config) if k not in ("lora", "path", "device", "dtype"))
    label = name + (f" ({shown})" if shown else "")
    lora = f"+LoRA {Path(str(config['lora'])).name}" if config.get("lora") else ""
    if isinstance(source.get("refine"), Mapping):
        return label, " ".join(filter(None, (lora, refine_setting(source["refine"]))))
    return label, lora or "base"


def refine_setting(refine: Mapping[str, Any]) -> str:
    """The paper's "+PT" row of a refine's final set: which critic, and the rule and round where not the default
    (rrbench refine); the baseline refiners read as the paper names them."""
    critic = str(refine.get("critic", "?"))
    if critic == "prompt-enhancer":
        name = "+blind prompt enhancer"
    elif critic == "identity":
        name = "+resample (identity refiner)"
    else:
        name = f"+test-time refine ({critic})"
    details = [str(refine["accept"])] if refine.get("accept") not in (None, "rr-code", "always") else []
    if isinstance(refine.get("round"), int) and refine["round"] > 1:
        details.append(f"round {refine['round']}")
    return name + (f" [{', '.join(details)}]" if details else "")


def _headline_metric(entry: RunEntry) -> str | None:
    metrics = (entry.record.get("protocol") or {}).get("metrics") or ()
    return str(metrics[0]) if metrics else None


def _official(entry: RunEntry) -> bool:
    judge = entry.record.get("judge")
    return isinstance(judge, Mapping) and judge.get("protocol") == "official"


def generation_table(entries: Sequence[RunEntry], reported: Sequence[Reported]) -> Table:
    columns = [Column(setting_of(task, _version(task, entries, reported), args).slug, title,
                      setting_of(task, _version(task, entries, reported), args), metric="")
               for title, task, args in GENERATION]
    by_setting = {c.setting: c for c in columns}
    rows, sources, notes = _Rows(), _Footnotes(), _Footnotes()
    dup: list[str] = []
    for entry in entries:
        column = by_setting.get(entry_setting(entry))
        metric = _headline_metric(entry)
        if column is None or metric is None or not is_judge_of_images(entry) or not _official(entry):
            continue
        cell = measured_cell(entry, metric, "excluded")
        if cell is None:
            continue
        generator, setting = generator_row(entry)
        judge = (entry.record.get("judge") or {}).get("model", entry.model)
        flags = [f"judge {judge}"]
        if is_substitute(entry.record):
            flags.append("substitute")
        if data_status(entry.record).partial:
            flags.append("partial")
        cell = Cell(MEASURED, cell.value, f"{cell.protocol} ({', '.join(flags)})", cell.ci, cell.n, cell.failed,
                    run=cell.run)
        row = rows.get(generator, MEASURED, setting, _order(generator, setting))
        _place(row, column.id, cell, entry.updated, dup)
    for item in reported:
        column = by_setting.get(setting_of(item.task, item.task_version, item.task_args))
        if column is None or not item.generator:
            continue
        setting = item.setting or "base"
        row = rows.get(item.generator, REPORTED, f"{setting} [{sources.number(item.source)}]",
                       _order(item.generator, setting))
        row.cells[column.id] = _reported_cell(item, sources, notes)
    caption = ("Generation benchmarks in the layout of the RationalRewards paper: rows generator x setting, "
               "columns the benchmark's headline number on its own scale (UniGenBench++ and PICA in %, ImgEdit 1-5, "
               "GEdit-EN 0-10). Measured: value [95% CI] · protocol (judge; 'substitute' when not the benchmark's "
               "own judge; 'partial' for fewer images than the benchmark), failures as the official rule treats "
               "them. Reported rows: as published, with the source.")
    return Table("generation", "Generation benchmarks", columns, [r for r in rows.sorted() if r.cells],
                 sources=sources.items, notes=notes.items + sorted(set(dup)), caption=caption, row_title="generator")


# The paper's row order within a generator: base, then RL-tuned, then prompt rewriting and test-time refine.
_SETTINGS = ("base", "+LoRA", "+RL", "+blind", "+test-time refine", "reference", "as given")


def _order(generator: str, setting: str) -> str:
    """A row's sort key: by generator, then the settings in the paper's order (anything else last)."""
    rank = next((i for i, prefix in enumerate(_SETTINGS) if setting.startswith(prefix)), len(_SETTINGS))
    return f"{generator}\x00{rank:02d}"


def _version(task: str, entries: Sequence[RunEntry], reported: Sequence[Reported]) -> str:
    """The newest task version with a run (or a reported number): one column per benchmark in this table."""
    found = {e.task_version for e in entries if e.task == task} | {r.task_version for r in reported if r.task == task}
    return max(found, key=lambda v: (len(v), v)) if found else "1"


def dimension_tables(entries: Sequence[RunEntry]) -> list[Table]:
    """Per generation benchmark setting: the headline metric's breakdown (dimensions, groups, types, laws) per row."""
    by_setting: dict[Any, list[RunEntry]] = {}
    for entry in entries:
        if is_judge_of_images(entry) and _headline_metric(entry):
            by_setting.setdefault(entry_setting(entry), []).append(entry)
    return [t for s in sorted(by_setting) if (t := _dimension_table(s, by_setting[s])) is not None]


def _dimension_table(setting: Any, entries: Sequence[RunEntry]) -> Table | None:
    rows, dup = _Rows(), list[str]()
    names: dict[str, None] = {}
    for entry in entries:
        metric = _headline_metric(entry)
        headline = _headline(entry, metric)
        if headline is None:
            continue
        generator, where = generator_row(entry)
        row = rows.get(f"{generator} · {entry.model}", MEASURED, where, generator)
        row.info.update(protocol=entry.protocol_id, run=entry.path.name)
        scale = 1.0 if headline.get("scale") == "score" else 100.0  # a fraction's breakdown is in fractions too
        for name, value in breakdown((headline.get("extra") or {}).get("breakdown") or {}).items():
            names.setdefault(name, None)
            shown = scale * value
            _place(row, name, Cell(MEASURED, shown, entry.protocol_id, run=entry.path.name), entry.updated, dup)
    if not names:
        return None
    columns = [Column(n, n, setting, metric="") for n in names]
    caption = ("The headline metric's breakdown per dimension (UniGenBench++), group (GEdit), edit type (ImgEdit) or "
               "category, law and operation (PICA), as each benchmark's official scorer reports it; failures as the "
               "official rule treats them.")
    return Table(f"dimensions-{setting.slug}", f"{setting.title()}: per dimension", columns,
                 [r for r in rows.sorted() if r.cells], info_columns=["protocol", "run"], protocol_in_cells=False,
                 notes=sorted(set(dup)), caption=caption)


def _headline(entry: RunEntry, metric: str | None) -> Mapping[str, Any] | None:
    for m in (entry.record.get("metrics") or {}).get("overall") or ():
        if m.get("metric") == metric and m.get("failure_policy") == "excluded":
            return m
    return None


def breakdown(extra: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """A metric's ``extra["breakdown"]`` (``{kind: {name: value}}``, values on the metric's own scale), flattened:
    ``{"law": {"refraction": 0.5}}`` -> ``law/refraction``; anything that is not a number is left out."""
    out: dict[str, float] = {}
    for key, value in extra.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(breakdown(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out
