"""RunSpec: what a run asked for, and the hash that names its directory.

Only fields that change results enter the hash (task and its arguments, model and its arguments, data source,
protocol, seed, limit, subset). Concurrency, output folder or base URLs do not: the same spec run twice, anywhere, is
the same run, so resume can find it and a different spec can never be mixed into it.

``subset`` is None for the first ``limit`` samples (the default); ``--subset random|stratified`` sets it to the
method's name, and ``rrbench.subset.resolve`` replaces the name by the record of the choice (method, seed, limit and
the sorted sample ids), so the ids are part of the hash and of run.json. A spec without a subset hashes exactly as
before the field existed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rrbench.types import UserError

SCHEMA_VERSION = 1
ORDERS = ("fixed", "swapped", "both", "random")
MODES = ("auto", "pairwise", "pointwise")
SUBSETS = ("first", "random", "stratified")  # how --limit N chooses its samples (rrbench.subset)


@dataclass(frozen=True)
class RunSpec:
    task: str
    model: str | None  # the judge; None for a generation run (``rrbench generate``)
    task_args: Mapping[str, Any] = field(default_factory=dict)
    model_args: Mapping[str, Any] = field(default_factory=dict)
    data: str | None = None
    seed: int = 0
    limit: int | None = None
    order: str | None = None  # None = the task protocol's own order policy
    mode: str | None = None  # None = the task protocol's, else auto/pairwise/pointwise
    protocol: str | None = None  # a named alternative protocol of the task (e.g. rationalrewards-paper)
    tie_policy: str | None = None
    failure_policy: str | None = None
    subset: str | Mapping[str, Any] | None = None  # a method name, or its resolved record (rrbench.subset)
    generator: str | None = None  # a generation run: the generator that makes the task's images
    generator_args: Mapping[str, Any] = field(default_factory=dict)
    images: str | None = None  # a run that judges existing images: their source's identity (rrbench.imagesource)
    refine: Mapping[str, Any] | None = None  # a stage of rrbench refine: which round, critic, rule and plan

    def __post_init__(self) -> None:
        if self.order is not None and self.order not in ORDERS:
            raise UserError(f"--order must be one of {', '.join(ORDERS)}, not {self.order!r}")
        if self.mode is not None and self.mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise UserError(f"--limit must be a positive number, not {self.limit}")
        if self.subset == "first":
            object.__setattr__(self, "subset", None)  # the default: --subset first names the same run as none
        method = self.subset.get("method") if isinstance(self.subset, Mapping) else self.subset
        if method is not None and method not in SUBSETS:
            raise UserError(f"--subset must be one of {', '.join(SUBSETS)}, not {method!r}")
        if method not in (None, "first") and self.limit is None:
            raise UserError(f"--subset {method} picks --limit N samples; give --limit")
        if (self.model is None) == (self.generator is None):
            raise UserError("a run spec names either a judge model (run) or a generator (generate)")
        if self.images is not None and self.model is None:
            raise UserError("--images are judged by a model: give --model")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["task_args"] = dict(self.task_args)
        out["model_args"] = dict(self.model_args)
        if self.subset is None:
            del out["subset"]  # so every spec written before the field keeps its hash (and its run directory)
        # Fields of generation runs only when set, for the same reason.
        for name in ("generator", "images"):
            if out[name] is None:
                del out[name]
        if not self.generator_args:
            del out["generator_args"]
        else:
            out["generator_args"] = dict(self.generator_args)
        if self.refine is None:
            del out["refine"]
        else:
            out["refine"] = dict(self.refine)
        if self.model is None:
            del out["model"], out["model_args"]
        elif isinstance(self.subset, Mapping):
            out["subset"] = dict(self.subset)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise UserError(f"unknown run-spec field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        if "task" not in obj or ("model" not in obj and "generator" not in obj):
            raise UserError("a run spec needs 'task' and 'model' (or 'generator')")
        return cls(**{"model": None, **obj})

    def hash(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def dirname(self) -> str:
        maker = self.model if self.model is not None else f"gen-{self.generator}"
        return f"{_slug(self.task)}__{_slug(maker)}__{self.hash()[:10]}"

    @property
    def maker(self) -> str:
        """What answers the run's requests: the judge model, or ``generator G`` for a generation run."""
        return self.model if self.model is not None else f"generator {self.generator}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "x"


# --------------------------------------------------------------------------------------------------- parsing


def parse_value(text: str) -> Any:
    """`-T n=10` gives 10, `-M serve=true` gives True, `x=a,b` stays a string; JSON/YAML scalars are understood."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("{", "[")):
        return text
    return text if value is None and text.strip() not in ("null", "~", "none", "None") else value


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def load_manifest(path: str) -> dict[str, Any]:
    """Read a --config file: a flat YAML/JSON manifest of run fields, or a run.json (its spec is replayed)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--config file not found: {path}")
    try:
        obj = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"--config {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise UserError(f"--config {path} must hold a mapping of run fields")
    if "schema_version" in obj and isinstance(obj.get("spec"), dict):
        return dict(obj["spec"])
    return obj
