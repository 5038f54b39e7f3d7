"""`rrbench run --task GROUP`: a task group's members as ordinary runs, and the summary printed after them.

Groups are registered with ``@task_group`` (rrbench.registry). ``-T`` arguments go to every member; a member that
does not take one, or that the group fixes to another value, is a one-line error before anything runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench import registry
from rrbench.datarecord import data_status
from rrbench.display import ci, number, table
from rrbench.types import UserError


@dataclass(frozen=True)
class Planned:
    """One task to run (per model), with its task arguments and the group it came from."""

    task: str
    task_args: dict[str, Any]
    group: str | None = None


def expand(names: Sequence[str], task_args: Mapping[str, Any]) -> list[Planned]:
    """Task names as given, each group replaced by its members (in the group's order)."""
    planned: list[Planned] = []
    for name in names:
        group = registry.find_group(name)
        if group is None:
            planned.append(Planned(name, dict(task_args)))
            continue
        planned += [Planned(m.task, member_args(group, m, task_args), group.name) for m in group.members]
    return planned


def member_args(group: registry.TaskGroup, member: registry.GroupMember, task_args: Mapping[str, Any]
                ) -> dict[str, Any]:
    try:
        entry = registry.get("task", member.task)
    except UserError:
        raise UserError(f"task group '{group.name}' names unknown task '{member.task}'") from None
    params = entry.parameters()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(entry.factory).parameters.values())
    for key, value in task_args.items():
        if key not in params and not takes_any:
            known = ", ".join(params) or "none"
            raise UserError(f"task group '{group.name}': member '{member.task}' has no argument {key!r} "
                            f"(-T; accepts: {known})")
        if key in member.args and member.args[key] != value:
            raise UserError(f"task group '{group.name}' fixes {key}={member.args[key]} for '{member.task}'; "
                            f"-T {key}={value} conflicts (run the task on its own for another value)")
    return {**task_args, **member.args}


@dataclass(frozen=True)
class Done:
    """One member run as it ended: its directory (when it got one) or the error that stopped it."""

    planned: Planned
    model: str
    run_dir: Path | None
    error: str | None = None


def summary(done: Sequence[Done]) -> str:
    """One line per member run: headline metric (failures excluded) with its CI, coverage, and where it is."""
    rows = [_summary_row(d) for d in done]
    return table(rows, ("task", "model", "status", "metric", "value %", "95% CI", "n", "data", "run"))


def _summary_row(done: Done) -> tuple[str, ...]:
    label = registry.GroupMember(done.planned.task, done.planned.task_args).label()
    record = _record(done.run_dir)
    if done.error is not None or record is None:
        return (label, done.model, "error", "", "", "", "", "", "(the error is above)")  # long: said once
    metric = _headline(record)
    n = (record.get("counts") or {}).get("recorded", "")
    data = data_status(record)
    shown_data = f"partial: {data.count()}" if data.partial else "full"
    if metric is None:
        return (label, done.model, str(record.get("status")), "", "n/a", "", str(n), shown_data, str(done.run_dir))
    return (label, done.model, str(record.get("status")), str(metric["metric"]), number(metric),
            ci(metric), str(n), shown_data, str(done.run_dir))


def _record(run_dir: Path | None) -> dict[str, Any] | None:
    from rrbench.record import read_run_dict

    if run_dir is None or not (run_dir / "run.json").is_file():
        return None
    return read_run_dict(run_dir)


def _headline(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    names = (record.get("protocol") or {}).get("metrics") or []
    for m in (record.get("metrics") or {}).get("overall") or ():
        if names and m.get("metric") == names[0] and m.get("failure_policy") == "excluded":
            return m
    return None
