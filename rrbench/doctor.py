"""`rrbench doctor`, and the start-up check of `rrbench run`: what a model and a task need on this machine.

Every check is a line: ok, warn (works, but not as well as it could) or FAIL (the run would fail), with the fix.

* Without ``--model``/``--task``, doctor reports the whole environment: every extra, the GPU, writable folders.
* With them, only what that model and task need: the extras their code imports (the engine's, for VLM judges),
  the task's data (a ``--data`` copy, or the hub snapshot in the local Hugging Face cache; its first sample is read,
  so a copy in another schema fails here), and exactly the files the model loads (scalar models declare them with
  ``needs()``, a list of :class:`FileNeed`; VLM judges' ``checks()`` add their engine, API key and server).

`rrbench run` runs the same checks (:func:`preflight`) before it creates anything and reports every FAIL of every
(task, model) at once, in one line: extras first (nothing else can be checked well without them), then data, then
the model's files, key and server.

Nothing is downloaded and no API key value is ever printed: only whether its variable is set.

Exit codes of `rrbench doctor`: 0 nothing would stop a run (warnings are fine), 1 at least one FAIL line,
2 a usage error (unknown model or task, a bad argument).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import inspect
import json
import os
import platform
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench import __version__
from rrbench.types import UserError

if TYPE_CHECKING:
    from rrbench.registry import Entry
    from rrbench.spec import RunSpec
    from rrbench.types import Task

# extra -> the modules it provides (all must import for the extra to count as installed)
EXTRAS = {
    "api": ("aiohttp",),
    "transformers": ("transformers", "torch", "torchvision", "accelerate", "huggingface_hub"),
    "vllm": ("vllm",),
    "diffusers": ("diffusers",),
    "datasets": ("datasets", "pyarrow", "huggingface_hub"),
    "train": ("trl", "peft"),
    "ray": ("ray",),
    "lm-eval": ("lm_eval",),
    "plots": ("matplotlib",),
}
# What a VLM judge's engine imports (rrbench.models._vlm): a server is reached with aiohttp.
ENGINE_EXTRAS = {"http": ("api",), "vllm-serve": ("api", "vllm"), "vllm": ("vllm",), "transformers": ("transformers",)}
IN_PROCESS = ("transformers", "vllm")  # extras whose models run on this machine's GPU (or CPU)
_MISSING_EXTRA = re.compile(r"is not installed; install it with: pip install 'rrbench\[([\w-]+)\]'")


@dataclass(frozen=True)
class Check:
    status: str  # "ok", "warn" or "FAIL"
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  -> {self.fix}" if self.fix and self.status != "ok" else ""
        return f"  {self.status:<4}  {self.name:<22} {self.detail}{fix}"

    def problem(self) -> str:
        """The check as one item of `rrbench run`'s start-up error."""
        return f"{self.name}: {self.detail}" + (f" -> {self.fix}" if self.fix else "")


# ------------------------------------------------------------------------------------------------ model files


@dataclass(frozen=True)
class FileNeed:
    """Files a model loads from one folder (or one file), declared by the model's ``needs()``.

    The model's loader resolves the same objects (``resolve()``), so doctor checks exactly the files a run loads.
    ``ref`` is a folder, a hub id in the local Hugging Face cache, or, with ``file_ok``, the file itself; ``files``
    lists alternatives per file (one of each tuple must be there); ``unset`` is the error when ``ref`` is empty.
    """

    name: str  # what it is: "weights", "checkpoint", "tokenizer", "base model", ...
    ref: str | None
    flag: str  # the -M key that names it
    files: tuple[tuple[str, ...], ...]
    fetch: str  # the command that fetches it
    file_ok: bool = False
    served: bool = False  # the model can also be reached over HTTP (the fix says --base-url)
    unset: str = ""

    def locate(self) -> Path | None:
        """The folder the files are looked for in (the file's folder for a file), without checking them."""
        try:
            return self._folder()
        except UserError:
            return None

    def _folder(self) -> Path:
        from rrbench.models._vlm import resolve_weights

        if not self.ref:
            raise UserError(self.unset or f"-M {self.flag}= is required (fetch it with `{self.fetch}`)")
        path = Path(self.ref)
        if self.file_ok and path.is_file():
            return path.resolve().parent
        return Path(resolve_weights(self.ref, self.flag, served=self.served))

    def resolve(self) -> Path:
        """The folder holding every file (for ``file_ok``: the file); a one-line UserError with the fix otherwise."""
        folder = self._folder()
        if self.file_ok and self.ref and Path(self.ref).is_file():
            return Path(self.ref).resolve()
        missing = [names for names in self.files if not any((folder / n).is_file() for n in names)]
        if missing:
            what = ", no ".join(" or ".join(names) for names in missing)
            raise UserError(f"{folder} has no {what} (fetch it with `{self.fetch}`)")
        return folder / self.files[0][0] if self.file_ok else folder

    def check(self) -> Check:
        try:
            found = self.resolve()
        except UserError as exc:
            return Check("FAIL", self.name, str(exc))
        shown = str(found) if str(found) != self.ref else "found"
        return Check("ok", self.name, f"{self.ref} -> {shown}")


# ------------------------------------------------------------------------------------------------ environment


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    dist = {"huggingface_hub": "huggingface-hub", "lm_eval": "lm-eval"}.get(module, module)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "installed"


def rrbench_check() -> Check:
    return Check("ok", "rrbench", f"{__version__} on Python {platform.python_version()} ({sys.executable})")


def extra_check(extra: str, required: bool) -> Check:
    """One extra: ok with its versions, or what is missing (FAIL when the model or task at hand needs it)."""
    modules = EXTRAS.get(extra, (extra,))
    versions = {m: _version(m) for m in modules}
    missing = [m for m, v in versions.items() if v is None]
    shown = ", ".join(f"{m} {v}" for m, v in versions.items() if v)
    if not missing:
        return Check("ok", f"extra [{extra}]", shown)
    if extra == "vllm" and os.environ.get("RRBENCH_VLLM_PYTHON"):
        return Check("ok", f"extra [{extra}]", f"in its own venv: {os.environ['RRBENCH_VLLM_PYTHON']}")
    return Check("FAIL" if required else "warn", f"extra [{extra}]", f"missing {', '.join(missing)}",
                 f"pip install 'rrbench[{extra}]'")


def environment_checks() -> Iterator[Check]:
    """The whole machine: every extra (missing ones are warnings: nothing asked for them), GPU, folders."""
    yield rrbench_check()
    for extra in EXTRAS:
        yield extra_check(extra, required=False)
    yield gpu_check()
    yield from folder_checks(Path("runs"))


def folder_checks(runs: Path) -> Iterator[Check]:
    yield writable_check("response cache", _cache_dir())
    yield writable_check("runs folder", runs)


def gpu_check() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("warn", "GPU", "torch is not installed, so no GPU can be used",
                     "pip install 'rrbench[transformers]'")
    import torch

    if not torch.cuda.is_available():
        return Check("warn", "GPU", f"none visible to torch {torch.__version__}; in-process models run on the CPU",
                     "fine for tests and small models; use a GPU machine or --base-url for 8B judges")
    names = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
             for i in range(torch.cuda.device_count())]
    return Check("ok", "GPU", f"{len(names)}: " + "; ".join(names))


def _cache_dir() -> Path:
    from rrbench.store import default_cache_path

    return default_cache_path().parent


def writable_check(name: str, folder: Path) -> Check:
    probe = folder if folder.exists() else next((p for p in folder.parents if p.exists()), Path("/"))
    if os.access(probe, os.W_OK):
        return Check("ok", name, f"{folder} is writable")
    return Check("FAIL", name, f"{folder} is not writable", "choose another folder (--output, --cache)")


# ------------------------------------------------------------------------------------------------ one model


def model_extras(model: Any, entry: Entry) -> tuple[str, ...]:
    """The extras a built model imports: its engine's for VLM judges (an HTTP judge needs no torch), else the
    extra it is registered with."""
    engine = getattr(model, "engine", None)
    if isinstance(engine, str) and engine in ENGINE_EXTRAS:
        return ENGINE_EXTRAS[engine]
    return (entry.extra,) if entry.extra else ()


def model_checks(model: Any, generation: str | None = None, network: bool = True) -> list[Check]:
    """What one built model needs: its own ``checks()`` (VLM judges), else the files of its ``needs()``.

    ``generation`` ("t2i" or "edit"): the task's, so a judge with one checkpoint per kind is checked for that one
    only; None checks every kind. ``network=False``: no request to a server (`rrbench run` probes its servers when
    it starts, with a plain TCP connection that a rate limit or an injected fault cannot fail)."""
    checks, needs = getattr(model, "checks", None), getattr(model, "needs", None)
    try:
        if callable(checks):
            params = inspect.signature(checks).parameters
            kwargs = {k: v for k, v in (("generation", generation), ("network", network)) if k in params}
            return list(checks(**kwargs))
        if callable(needs) and (declared := list(needs())):
            return [need.check() for need in declared]
    except Exception as exc:  # a model plug-in's own bug: said as a check, never a traceback
        return [Check("FAIL", f"model {model.name}", f"its checks failed: {type(exc).__name__}: {exc}")]
    return [Check("ok", f"model {model.name}", "loads no files")]


def reachable(url: str, api_key_env: str | None, timeout: float = 5.0) -> tuple[bool, str]:
    """GET {url}/models as a run would send it (``openai_http.probe_models``: no redirect followed, a deadline for
    the whole exchange, nothing secret in the detail): a live OpenAI-compatible server lists what it serves."""
    from rrbench.backends.openai_http import probe_models

    return probe_models(url, api_key_env, timeout)


# ------------------------------------------------------------------------------------------------ one task


def data_checks(task: Task, data: str | None) -> list[Check]:
    """The task's data, downloading nothing: a ``--data`` copy, or the hub snapshot in the local cache (a snapshot
    that is not cached is a warning while the hub answers, since a run downloads it, and a FAIL when it does not).
    The first sample is read, so a copy in another schema fails here rather than after the model has loaded."""
    from rrbench import hubaccess, hubdata

    if data is not None and not Path(data).exists():
        return [Check("FAIL", "data", f"--data path does not exist: {data}")]
    before = dict(hubdata.SNAPSHOTS)
    try:
        with hubaccess.local_only():
            size = task.size_of(Path(data) if data else None)
            first = next(iter(task.load(Path(data) if data else None)), None)
    except hubaccess.NotCached as exc:
        if hubaccess.offline_env():
            return [Check("FAIL", "data", f"{exc.dataset} is not in the local cache and HF_HUB_OFFLINE is set",
                          exc.hint)]
        unreachable = hubaccess.hub_unreachable()
        if unreachable is None:
            return [Check("warn", "data", f"{exc.dataset} is not in the local cache; `rrbench run` downloads it",
                          exc.hint)]
        return [Check("FAIL", "data", f"{exc.dataset} is not in the local cache and the hub is unreachable "
                      f"({unreachable})", exc.hint)]
    except UserError as exc:
        extra = _MISSING_EXTRA.search(str(exc))
        if extra:  # the task's reader imports an extra (pyarrow, huggingface_hub)
            return [extra_check(extra[1], required=True)]
        return [Check("FAIL", "data", str(exc))]
    except Exception as exc:  # a task plug-in's own bug: said as a check, as the run would say it
        return [Check("FAIL", "data", f"task '{task.name}' failed to load: {type(exc).__name__}: {exc}")]
    if first is None:
        where = f" in {data}" if data else ""
        return [Check("FAIL", "data", f"task '{task.name}' has no samples{where}: an empty dataset (or split) gives "
                      "no numbers")]
    read = {k: v for k, v in hubdata.SNAPSHOTS.items() if before.get(k) != v}
    origin = (f"--data {data}" if data else
              "; ".join(f"{k}@{str(v.get('commit'))[:12]} (local HF cache)" for k, v in read.items())
              or task.info.dataset or "generated by the task")
    count = "? samples" if size is None else f"{size:,} samples"
    return [Check("ok", "data", f"{origin}: {count}")]


# ------------------------------------------------------------------------------------------------ doctor, run


@dataclass
class Target:
    """What one doctor report or one run start checks: a task (built), a model (built, with its entry), data."""

    task: Task | None = None
    model: Any = None  # the reward model, or the generator
    entry: Entry | None = None
    data: str | None = None

    def sections(self, runs: Path | None = None) -> list[tuple[str, list[Check]]]:
        """Titled groups of checks, in the order problems are fixed: extras, data, model; folders last."""
        extras: list[str] = list(model_extras(self.model, self.entry)) if self.entry is not None else []
        data = data_checks(self.task, self.data) if self.task is not None else []
        need = [rrbench_check(), *(extra_check(e, required=True) for e in dict.fromkeys(extras))]
        need += [c for c in data if c.name.startswith("extra [")]
        if any(e in IN_PROCESS for e in extras):
            need.append(gpu_check())
        out = [("needed", need)]
        if self.task is not None:
            out.append((f"task {self.task.name}", [c for c in data if not c.name.startswith("extra [")]))
        if self.model is not None:
            generation = self.task.generation if self.task is not None else None
            kind = self.entry.kind if self.entry is not None else "model"
            out.append((f"{kind} {self.model.name}", model_checks(self.model, generation)))
        if runs is not None:
            out.append(("folders", list(folder_checks(runs))))
        return out


def doctor_target(task: str | None, task_args: Mapping[str, Any], model: str | None,
                  model_args: Mapping[str, Any], runtime: Mapping[str, Any], data: str | None, *,
                  generator: str | None = None, generator_args: Mapping[str, Any] | None = None) -> Target:
    """The task and model (or generator) of `rrbench doctor --task T --model M`, built as a run builds them (a bad
    name or argument is a usage error, not a check)."""
    from rrbench import registry

    target = Target(data=data)
    if task:
        target.task = registry.get("task", task).build(**task_args)
    if model:
        target.entry = registry.get("model", model)
        target.model = _build_model(target.entry, model_args, runtime)
    if generator:
        target.entry = registry.get("generator", generator)
        target.model = target.entry.build(**(generator_args or {}))
        if target.task is not None:
            target.model.check_kind(target.task.generation)
    return target


def _build_model(entry: Entry, model_args: Mapping[str, Any], runtime: Mapping[str, Any]) -> Any:
    given = {k: v for k, v in runtime.items() if v}
    refused = sorted(set(given) - set(entry.parameters()))
    if refused:
        flag = "--" + refused[0].replace("_", "-").replace("base-urls", "base-url")
        raise UserError(f"model '{entry.name}' does not take {flag}")
    return entry.build(**model_args, **given)


def preflight(specs: Sequence[RunSpec], runtime: Mapping[str, Any]) -> None:
    """Before a run creates anything: every FAIL check of every (task, model) in one UserError (one line; one
    problem is said as it is, several are numbered), extras first, then data, then the model. Names and arguments
    are checked as the run checks them (a mistake there is its own error)."""
    from rrbench import registry
    from rrbench.session import build

    problems: list[Check] = []
    data_seen: dict[str, list[Check]] = {}
    for spec in specs:
        task, model = build(dataclasses.replace(spec, data=None), dict(runtime))  # --data is a check, below
        key = json.dumps([spec.task, dict(spec.task_args), spec.data], sort_keys=True, default=str)
        if key not in data_seen:
            data_seen[key] = data_checks(task, spec.data)
        entry = registry.get("generator" if spec.generator else "model", spec.generator or spec.model or "")
        checks = [*(extra_check(e, required=True) for e in model_extras(model, entry)), *data_seen[key],
                  *model_checks(model, task.generation, network=False)]
        problems += [c for c in checks if c.status == "FAIL" and c not in problems]
    if not problems:
        return
    problems.sort(key=lambda c: 0 if c.name.startswith("extra [") else 1 if c.name == "data" else 2)
    if len(problems) == 1:
        check = problems[0]
        raise UserError(check.detail + (f" -> {check.fix}" if check.fix else ""))
    what = f"{specs[0].task} x {specs[0].maker}" if len(specs) == 1 else f"these {len(specs)} runs"
    items = "; ".join(f"({i}) {c.problem()}" for i, c in enumerate(problems, 1))
    raise UserError(f"{len(problems)} things stop {what}: {items}")
