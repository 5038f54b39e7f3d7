"""What `rrbench ls tasks NAME`, `rrbench ls models NAME` and `rrbench runs [DIR]` print.

``ls KIND NAME`` describes one plug-in in full: its description, every ``-T``/``-M`` key with its default, and for
a task its protocols (the default and the named alternatives, each with its order, mode, tie policy and metrics),
its data source and revision and its size; for a model its extra, paper and the files it loads. Factories build
nothing heavy, so describing never loads weights or data.

``runs`` lists run directories (newest first) with task, model, status, samples recorded of expected, the headline
number (the protocol's first metric under its headline failure policy, with its 95% CI) and PARTIAL where the run's
data record says so.
"""

from __future__ import annotations

import dataclasses
import fcntl
import inspect
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rrbench import registry
from rrbench.datarecord import data_status
from rrbench.display import ci, maker_of, number, table
from rrbench.protocols import official
from rrbench.types import Protocol, UserError

RUNTIME_ARGS = {"base_urls": "--base-url", "api_key_env": "--api-key-env"}  # model arguments given as flags


# ------------------------------------------------------------------------------------------------ ls KIND NAME


def describe(kind: str, name: str) -> str:
    entry = registry.get(kind, name)  # type: ignore[arg-type]
    if kind == "task":
        return describe_task(entry)
    if kind == "model":
        return describe_model(entry)
    if kind == "generator":
        return describe_generator(entry)
    return "\n".join([f"{entry.name}: {entry.description}", *_about(entry), f"defined in: {entry.module}"])


def _about(entry: registry.Entry) -> list[str]:
    """The plug-in's longer text: its factory's docstring, else its module's first paragraph."""
    doc = inspect.getdoc(entry.factory) or (inspect.getdoc(sys.modules.get(entry.module)) or "").split("\n\n")[0]
    return ["  " + line for line in doc.splitlines()] if doc and doc.strip() != entry.description else []


def arguments(entry: registry.Entry, flag: str) -> list[str]:
    """One line per factory argument: ``KEY=DEFAULT`` (``required`` when it has none)."""
    params = {n: p for n, p in entry.parameters().items() if n not in RUNTIME_ARGS}
    if not params:
        return [f"  (none: {flag} takes no keys)"]
    width = max(len(n) for n in params)
    return [f"  {flag} {n.ljust(width)}  = {_default(p)}" for n, p in params.items()]


def _default(param: inspect.Parameter) -> str:
    return "(required)" if param.default is inspect.Parameter.empty else repr(param.default)


def describe_task(entry: registry.Entry) -> str:
    lines = [f"task {entry.name}: {entry.description}", *_about(entry), "", "task arguments (-T KEY=VALUE):"]
    lines += arguments(entry, "-T")
    try:
        task = entry.build()
    except Exception as exc:  # a task that needs arguments is still described
        return "\n".join([*lines, "", f"(built with its defaults it says: {exc})", f"defined in: {entry.module}"])
    size = task.info.size if task.info.size is not None else task.size
    info = task.info
    lines += ["", f"version {task.version}, kind {task.kind.value}, generation {task.generation}, "
                  f"size {'unknown' if size is None else f'{size:,} samples'}"]
    if task.generative:  # no labels, so no tie policy; images come from a generator or a folder
        lines += ["", f"{task.images_per_prompt} image(s) per prompt (-T images_per_prompt where the task takes it); "
                      f"make them with `rrbench generate --task {task.name} --generator G`, judge them with "
                      f"`rrbench run --task {task.name} --images DIR --model J`",
                  f"protocol {task.protocol.id}: mode {task.protocol.mode}, failures {task.protocol.failure_policy}, "
                  f"metrics {', '.join(task.protocol.metrics)}"]
        lines += [f"  also --protocol {p.id}: mode {p.mode}, metrics {', '.join(p.metrics)}"
                  for p in task.alternatives.values()]
        judges = official.official_judges(task)
        if judges:
            lines.append(f"its own judge: {', '.join(judges)} (the {task.protocol.mode} protocol runs with any "
                         "generic VLM judge; another model's numbers are labelled a substitute's; a reward model "
                         "scores under the -rm protocol)")
    else:
        lines += ["", "protocols (--protocol NAME; --tie-policy, --failure-policy and --order override one field):"]
        lines.append(_protocol(task.protocol, default=True))
        lines += [_protocol(p, default=False) for p in task.alternatives.values()]
    lines += ["", f"data: {info.dataset or 'not recorded'}",
              f"  revision: {info.revision or 'not pinned (run.json records the commit a run read)'}"]
    if info.revision or info.size:
        lines.append("  a local copy in the dataset's public schema: --data PATH (file or folder)")
    for key in ("license", "paper", "homepage"):
        if getattr(info, key):
            lines.append(f"{key}: {getattr(info, key)}")
    if task.judge_prompt:
        lines.append(f"judge prompt (VLM judges, -M prompt=official): {task.judge_prompt}")
    lines.append(f"defined in: {entry.module}")
    return "\n".join(lines)


def _protocol(protocol: Protocol, default: bool) -> str:
    rule = registry.find("rule", protocol.tie_policy)
    ties = f"{protocol.tie_policy}" + (f" ({rule.description})" if rule is not None else "")
    options = ", ".join(f"{k}={v}" for k, v in protocol.options.items() if k != "score_to_4way")
    text = (f"  {protocol.id}{' (default)' if default else ''}: order {protocol.order}, mode {protocol.mode}, "
            f"ties {ties}, failures {protocol.failure_policy}, metrics {', '.join(protocol.metrics)}")
    return text + (f", options {options}" if options else "")


def describe_generator(entry: registry.Entry) -> str:
    lines = [f"generator {entry.name}: {entry.description}", *_about(entry),
             f"extra: pip install 'rrbench[{entry.extra}]'" if entry.extra else "extra: none (core install)",
             "", "generator arguments (-G KEY=VALUE; what a run used, pipeline defaults included, is in run.json):"]
    lines += arguments(entry, "-G")
    try:
        generator = entry.build()
    except Exception as exc:  # a generator that needs arguments (its weights' folder) is still described
        lines += ["", f"(built with its defaults it says: {exc})"]
    else:
        lines += ["", f"makes: {', '.join(generator.kinds)} images, up to {generator.batch_size} per call"]
        for need in generator.needs():
            lines.append(f"loads: {need.name} from {need.ref or '(unset)'} (-G {need.flag}=; fetch: {need.fetch})")
    lines.append(f"defined in: {entry.module}")
    return "\n".join(lines)


def describe_model(entry: registry.Entry) -> str:
    lines = [f"model {entry.name}: {entry.description}", *_about(entry)]
    facts = [f"extra: pip install 'rrbench[{entry.extra}]'" if entry.extra else "extra: none (core install)"]
    facts += [f"{k}: {v}" for k, v in entry.info.items()]
    lines += ["", *facts, "", "model arguments (-M KEY=VALUE):", *arguments(entry, "-M")]
    shown = {"base_urls": "--base-url URL (where it is served)", "api_key_env": "--api-key-env NAME (its key's "
             "environment variable)"}
    taken = [text for name, text in shown.items() if name in entry.parameters()]
    if taken:
        lines.append(f"  also: {'; '.join(taken)}")
    try:
        model = entry.build()
    except Exception as exc:
        return "\n".join([*lines, "", f"(built with its defaults it says: {exc})", f"defined in: {entry.module}"])
    options = getattr(model, "options", None)
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        settings = dataclasses.fields(options)
        width = max(len(f.name) for f in settings)
        lines += ["", "engine settings (-M KEY=VALUE):"]
        lines += [f"  -M {f.name.ljust(width)}  = {f.default!r}" for f in settings]
    try:
        files = _files(model)
    except Exception as exc:  # a plug-in's needs() that fails is said, not raised
        files = [f"files: (its needs() failed: {type(exc).__name__}: {exc})"]
    lines += ["", *files, f"defined in: {entry.module}"]
    return "\n".join(lines)


def _files(model: Any) -> list[str]:
    """The files the model loads with its defaults (`rrbench doctor --model` checks them on this machine)."""
    needs = list(model.needs()) if callable(getattr(model, "needs", None)) else []
    weights = getattr(model, "weights", None)
    if callable(getattr(model, "weights_need", None)) and isinstance(weights, Mapping):
        needs += [dataclasses.replace(model.weights_need(g), name=f"weights ({g})") for g in sorted(weights)]
    if not needs:
        return ["files: none (no weights to fetch)"]
    lines = ["files it loads (defaults; `rrbench doctor --model NAME` checks them here):"]
    for need in needs:
        files = ", ".join(" or ".join(names) for names in need.files)
        lines.append(f"  {need.name} (-M {need.flag}=): {need.ref or '(must be given)'}: {files}  "
                     f"[fetch: {need.fetch}]")
    return lines


# ------------------------------------------------------------------------------------------------ runs


def runs_table(paths: Sequence[Path]) -> str:
    from rrbench.leaderboard.collect import find_run_dirs
    from rrbench.record import read_run_dict

    rows: list[tuple[str, ...]] = []
    for run_dir in find_run_dirs(paths):
        try:
            record = read_run_dict(run_dir)
        except UserError as exc:
            rows.append(("", "", "", "unreadable", "", str(exc), "", str(run_dir)))
            continue
        rows.append(_run_row(run_dir, record))
    if not rows:
        return "no run directories under " + ", ".join(str(p) for p in paths)
    rows.sort(key=lambda r: r[0], reverse=True)  # newest first
    header = ("updated", "task", "model / generator", "status", "n", "headline (95% CI)", "data", "run")
    return table(rows, header) + f"\n{len(rows)} run(s); `rrbench show RUN` prints one in full"


def _run_row(run_dir: Path, record: Mapping[str, Any]) -> tuple[str, ...]:
    spec = record.get("spec") or {}
    counts = record.get("counts") or {}
    recorded, expected = counts.get("recorded"), counts.get("expected")
    n = "" if recorded is None else f"{recorded}/{expected}" if expected else str(recorded)
    data = data_status(record)
    updated = str(record.get("rescored_at") or record.get("updated_at") or "")[:19].replace("T", " ")
    status = _status(run_dir, str(record.get("status") or "?"))
    if record.get("source_run"):
        status += " (rescored)"
    return (updated, str(spec.get("task", "?")), maker_of(spec), status, n, headline(record),
            f"PARTIAL {data.count()}" if data.partial else "full", str(run_dir))


def _status(run_dir: Path, recorded: str) -> str:
    """``running`` only while a process holds the run's lock; a record left ``running`` by a killed process is
    ``stopped`` (run the same command to resume it)."""
    lock = run_dir / ".lock"
    if lock.is_file():
        try:
            with lock.open("r") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "running"
        except OSError:
            pass
    return "stopped" if recorded == "running" else recorded


def headline(record: Mapping[str, Any]) -> str:
    """The protocol's first metric under its headline failure policy: ``accuracy 61.20 [58.90, 63.50]``."""
    protocol = record.get("protocol") or {}
    names = protocol.get("metrics") or []
    policy = protocol.get("failure_policy") or "excluded"
    for m in (record.get("metrics") or {}).get("overall") or ():
        if names and m.get("metric") == names[0] and m.get("failure_policy") == policy:
            shown = f"{m['metric']} {number(m)}"
            return f"{shown} {ci(m)}".strip() + ("" if policy == "excluded" else " (failures wrong)")
    return "n/a"
