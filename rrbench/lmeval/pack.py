"""The functions an exported lm-eval task pack calls (its ``utils.py`` re-exports them).

lm-eval calls ``load_docs(**metadata)`` for the documents, ``doc_to_text``/``doc_to_image`` for each request,
``process_results`` with each generated answer, and the ``aggregate_*`` functions with every answer of the task:
they rebuild rrbench's sample results (``core.results_of``) and return the official metric, so lm-eval's number is
rrbench's. Per-answer items carry the raw answer, which is what ``rrbench import lm-eval`` reads back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rrbench.lmeval import core


def load_docs(**metadata: Any) -> dict[str, Any]:
    """lm-eval's ``custom_dataset``: the task's documents as a one-split dataset (``test``)."""
    import datasets

    task = core.checked_task(str(metadata["rrbench_task"]))
    return {"test": datasets.Dataset.from_list(core.documents(task, str(metadata.get("rrbench_data") or "")))}


def _sample(doc: Mapping[str, Any]) -> tuple[Any, Any]:
    task = core.build_task(str(doc["rrbench_task"]))
    return task, core.samples_of(task.name, str(doc["rrbench_data"]))[str(doc["id"])]


def doc_to_text(doc: Mapping[str, Any]) -> str:
    task, sample = _sample(doc)
    return core.rendered(task, sample, doc["order"])[0]


def doc_to_image(doc: Mapping[str, Any]) -> list[Any]:
    """Every image of the request (source images, then the candidates as shown), in the order of the markers."""
    task, sample = _sample(doc)
    return [m.image() for m in core.rendered(task, sample, doc["order"])[1]]


def process_results(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, dict[str, Any]]:
    item = {k: doc[k] for k in ("rrbench_task", "rrbench_data", "id", "trial")}
    item["answer"] = results[0] if results else None
    return {name: item for name in METRICS}


def _aggregate(items: Sequence[Mapping[str, Any]], failure_policy: str | None) -> float:
    values = []
    for name, data, answers in core.iter_items(items):
        task = core.build_task(name)
        summary = core.summary(task, core.results_of(task, data, answers))
        values.append(core.headline(summary["metrics"], core.protocol_of(task), failure_policy))
    return values[0] if len(values) == 1 else float("nan")


def aggregate_official(items: Sequence[Mapping[str, Any]]) -> float:
    """The task's official metric under its own failure policy (GenAI-Bench: failures wrong; MMRB2: excluded)."""
    return _aggregate(items, None)


def aggregate_failures_excluded(items: Sequence[Mapping[str, Any]]) -> float:
    return _aggregate(items, "excluded")


def aggregate_failures_wrong(items: Sequence[Mapping[str, Any]]) -> float:
    return _aggregate(items, "wrong")


# lm-eval metric name -> aggregation function name in utils.py
METRICS = {
    "acc": "aggregate_official",
    "acc_failures_excluded": "aggregate_failures_excluded",
    "acc_failures_wrong": "aggregate_failures_wrong",
}
