"""One registry for every plug-in: tasks, reward models, generators, metrics and tie/credit rules.

A plug-in is one file with one decorated factory. Built-ins are found by importing the modules of
``rrbench.tasks``, ``rrbench.models``, ``rrbench.generators`` and ``rrbench.metrics``; other packages add theirs
through the ``rrbench.plugins`` entry-point group (each entry point names a module to import), and a user can
name modules or ``.py`` files in the ``RRBENCH_PLUGINS`` environment variable without packaging them. Factories keep
heavy imports (torch, transformers, vllm) inside their body, so listing never loads them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeVar

from rrbench.types import UserError

Kind = Literal["task", "model", "generator", "metric", "rule"]
KINDS: tuple[Kind, ...] = ("task", "model", "generator", "metric", "rule")
ENTRY_POINT_GROUP = "rrbench.plugins"
PLUGINS_ENV = "RRBENCH_PLUGINS"  # extra plug-in modules or .py files, comma-separated
_BUILTIN_PACKAGES = ("rrbench.tasks", "rrbench.models", "rrbench.generators", "rrbench.metrics")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    kind: Kind
    name: str
    factory: Callable[..., Any]
    description: str
    extra: str | None = None  # the pip extra its heavy dependencies come from
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.factory.__module__

    def parameters(self) -> dict[str, inspect.Parameter]:
        params = inspect.signature(self.factory).parameters
        return {n: p for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def build(self, **kwargs: Any) -> Any:
        """Call the factory, turning unknown or ill-typed arguments into one-line user errors."""
        params = self.parameters()
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.factory).parameters.values())
        unknown = sorted(set(kwargs) - set(params))
        if unknown and not accepts_any:
            flag = {"task": "-T", "generator": "-G"}.get(self.kind, "-M")
            known = ", ".join(params) or "none"
            raise UserError(f"{self.kind} '{self.name}' has no argument {unknown[0]!r} ({flag}; accepts: {known})")
        return self.factory(**kwargs)


_REGISTRY: dict[Kind, dict[str, Entry]] = {k: {} for k in KINDS}
_loaded = False
plugin_errors: list[str] = []


def _register(kind: Kind, name: str, description: str, extra: str | None, info: Mapping[str, Any]) -> Callable[[F], F]:
    def decorator(factory: F) -> F:
        existing = _REGISTRY[kind].get(name)
        # The same definition imported twice (by module name and by file path) is fine; two definitions are not.
        if existing is not None and _origin(existing.factory) != _origin(factory):
            raise ValueError(f"{kind} '{name}' is registered twice ({existing.module} and {factory.__module__})")
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _REGISTRY[kind][name] = Entry(kind, name, factory, doc, extra, dict(info))
        return factory

    return decorator


def _origin(factory: Callable[..., Any]) -> tuple[str, str]:
    code = getattr(factory, "__code__", None)
    return factory.__qualname__, code.co_filename if code is not None else factory.__module__


def task(name: str, *, description: str = "", **info: Any) -> Callable[[F], F]:
    """Register a task factory ``(**task_args) -> Task``."""
    return _register("task", name, description, None, info)


def reward_model(name: str, *, description: str = "", extra: str | None = None, **info: Any) -> Callable[[F], F]:
    """Register a reward-model factory ``(**model_args) -> RewardModel``."""
    return _register("model", name, description, extra, info)


def generator(name: str, *, description: str = "", extra: str | None = None, **info: Any) -> Callable[[F], F]:
    """Register a generator factory ``(**generator_args) -> Generator``."""
    return _register("generator", name, description, extra, info)


def metric(name: str, *, description: str = "", **info: Any) -> Callable[[F], F]:
    """Register a metric function (see ``rrbench.metrics``)."""
    return _register("metric", name, description, None, info)


def rule(name: str, *, description: str = "", **info: Any) -> Callable[[F], F]:
    """Register a tie/credit rule: a ``PairRule`` subclass (or a factory returning one), see ``rrbench.metrics``."""
    return _register("rule", name, description, None, info)


def load_plugins() -> None:
    """Import built-in plug-in modules and entry points once. A broken third-party plug-in is reported, not fatal."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package_name in _BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        for mod in pkgutil.iter_modules(package.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{package_name}.{mod.name}")
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        _import_plugin(ep.value.split(":")[0], f"entry point {ep.name}")
    for item in filter(None, os.environ.get(PLUGINS_ENV, "").split(",")):
        _import_plugin(item.strip(), PLUGINS_ENV)


def _import_plugin(target: str, origin: str) -> None:
    """Import a plug-in module by name or by file path; a broken plug-in is reported, never fatal."""
    try:
        if target.endswith(".py"):
            path = Path(target)
            spec = importlib.util.spec_from_file_location(f"rrbench_plugin_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {target}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(target)
    except Exception as exc:  # a third-party plug-in must not break rrbench itself
        plugin_errors.append(f"plug-in {target} ({origin}) failed to load: {exc}")
        print(f"warning: {plugin_errors[-1]}", file=sys.stderr)


def entries(kind: Kind) -> list[Entry]:
    load_plugins()
    return sorted(_REGISTRY[kind].values(), key=lambda e: e.name)


def get(kind: Kind, name: str) -> Entry:
    load_plugins()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise UserError(_unknown_message(kind, name)) from None


def build_task(name: str, **args: Any) -> Any:
    """The registered task ``name`` built with its arguments (the public way for code outside rrbench)."""
    return get("task", name).build(**args)


def build_model(name: str, **args: Any) -> Any:
    """The registered reward model ``name`` built with its arguments (weights load at ``astart``)."""
    return get("model", name).build(**args)


def find(kind: Kind, name: str) -> Entry | None:
    """The entry of this name, or None (callers that word their own error)."""
    load_plugins()
    return _REGISTRY[kind].get(name)


def _unknown_message(kind: Kind, name: str) -> str:
    import difflib

    names = sorted(_REGISTRY[kind])
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see `rrbench ls {kind}s`"
    return f"unknown {kind} '{name}'{hint}"


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or fail with the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{module} is not installed; install it with: pip install 'rrbench[{extra}]' ({exc})") from exc


# ---------------------------------------------------------------------------------------------------- task groups
# A group names several tasks, like an lm-evaluation-harness group: `rrbench run --task genai-bench` runs each
# member as an ordinary run. Groups are plug-ins too (one decorated function per group, no central list); they live
# beside the tasks (tasks/group_*.py) and are kept apart from the four kinds above because a group is never built.


@dataclass(frozen=True)
class GroupMember:
    """One task of a group, with the task arguments the group fixes (they land in the member run's spec)."""

    task: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.args.items()))
        return f"{self.task} ({shown})" if shown else self.task


@dataclass(frozen=True)
class TaskGroup:
    name: str
    members: tuple[GroupMember, ...]
    description: str
    factory: Callable[..., Any]

    @property
    def module(self) -> str:
        return self.factory.__module__


_GROUPS: dict[str, TaskGroup] = {}


def member(task: str, **args: Any) -> GroupMember:
    """A group member with fixed task arguments, e.g. ``member("editreward-bench", k=2)``."""
    return GroupMember(task, dict(args))


def task_group(name: str, *, description: str = "") -> Callable[[F], F]:
    """Register a task group: a function returning its members, task names or ``member(task, **fixed_args)``."""

    def decorator(factory: F) -> F:
        members = tuple(m if isinstance(m, GroupMember) else GroupMember(str(m)) for m in factory())
        if not members:
            raise ValueError(f"task group '{name}' has no members")
        existing = _GROUPS.get(name)
        if existing is not None and _origin(existing.factory) != _origin(factory):
            raise ValueError(f"task group '{name}' is registered twice ({existing.module} and {factory.__module__})")
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _GROUPS[name] = TaskGroup(name, members, doc, factory)
        return factory

    return decorator


def groups() -> list[TaskGroup]:
    load_plugins()
    return sorted(_GROUPS.values(), key=lambda g: g.name)


def find_group(name: str) -> TaskGroup | None:
    """The group of this name, or None when it names no group. A name that is both a task and a group would make
    `--task NAME` ambiguous: a one-line error, whichever was registered first."""
    load_plugins()
    group = _GROUPS.get(name)
    if group is not None and name in _REGISTRY["task"]:
        raise UserError(f"'{name}' is both a task ({_REGISTRY['task'][name].module}) and a task group "
                        f"({group.module}); rename one of them")
    return group
