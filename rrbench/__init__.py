"""rrbench: a reproducible harness for reward models of visual generation.

The public API, for plug-ins and for ``training/`` (which import only this module, never a private one)::

    from rrbench import task, reward_model, generator, metric, rule          # the plug-in decorators
    from rrbench import Sample, Media, Label, Task, Protocol, TaskKind         # data
    from rrbench import Query, Judgement, RewardModel, FailureKind             # judging
    from rrbench import Generator, ImageRequest, Generated, image_seed         # generating
    from rrbench import RewardFunction                                         # any reward model as a reward
    from rrbench import build_task, build_model, ChatQuery, critique           # building blocks for training/
    from rrbench import dataset_snapshot, parse_value                          # hub datasets, CLI values
    from rrbench import UserError, DataError

Names are imported on first use, so ``import rrbench`` stays cheap (no torch, no plug-ins).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "task": "rrbench.registry", "reward_model": "rrbench.registry", "generator": "rrbench.registry",
    "metric": "rrbench.registry", "rule": "rrbench.registry",
    "Sample": "rrbench.types", "Media": "rrbench.types", "Label": "rrbench.types", "LabelKind": "rrbench.types",
    "Task": "rrbench.types", "TaskInfo": "rrbench.types", "TaskKind": "rrbench.types", "Protocol": "rrbench.types",
    "Query": "rrbench.types", "Judgement": "rrbench.types", "FailureKind": "rrbench.types",
    "UserError": "rrbench.types", "DataError": "rrbench.types", "SampleResult": "rrbench.types",
    "RewardModel": "rrbench.models._base",
    "Generator": "rrbench.generators._base", "ImageRequest": "rrbench.generators._base",
    "Generated": "rrbench.generators._base", "image_seed": "rrbench.generators._base",
    "RewardFunction": "rrbench.reward",
    "build_task": "rrbench.registry", "build_model": "rrbench.registry", "ChatQuery": "rrbench.types",
    "critique": "rrbench.critique",
    "dataset_snapshot": "rrbench.hubaccess", "parse_value": "rrbench.spec",
}

__all__ = [
    "ChatQuery",
    "DataError",
    "FailureKind",
    "Generated",
    "Generator",
    "ImageRequest",
    "Judgement",
    "Label",
    "LabelKind",
    "Media",
    "Protocol",
    "Query",
    "RewardFunction",
    "RewardModel",
    "Sample",
    "SampleResult",
    "Task",
    "TaskInfo",
    "TaskKind",
    "UserError",
    "build_model",
    "build_task",
    "critique",
    "dataset_snapshot",
    "generator",
    "image_seed",
    "metric",
    "parse_value",
    "reward_model",
    "rule",
    "task",
]

if TYPE_CHECKING:
    from rrbench import critique
    from rrbench.generators._base import Generated, Generator, ImageRequest, image_seed
    from rrbench.hubaccess import dataset_snapshot
    from rrbench.models._base import RewardModel
    from rrbench.registry import build_model, build_task, generator, metric, reward_model, rule, task
    from rrbench.reward import RewardFunction
    from rrbench.spec import parse_value
    from rrbench.types import (
        ChatQuery,
        DataError,
        FailureKind,
        Judgement,
        Label,
        LabelKind,
        Media,
        Protocol,
        Query,
        Sample,
        SampleResult,
        Task,
        TaskInfo,
        TaskKind,
        UserError,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rrbench' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"rrbench.{name}" else getattr(imported, name)  # a module exported as a whole
    globals()[name] = value
    return value
