"""A task group named like a task: `--task sanity` would be ambiguous, so using the name is a one-line error."""

from __future__ import annotations

from rrbench.registry import GroupMember, task_group


@task_group("sanity", description="test group that clashes with the sanity task")
def clashing() -> list[str | GroupMember]:
    return ["sanity"]
