"""Task groups made of `sanity` variants, for the end-to-end test of `rrbench run --task GROUP` (RRBENCH_PLUGINS)."""

from __future__ import annotations

from rrbench.registry import GroupMember, member, task_group


@task_group("sanity-pair", description="test group: the sanity task's text-to-image and editing variants")
def sanity_pair() -> list[str | GroupMember]:
    return [member("sanity", variant="t2i"), member("sanity", variant="edit")]


@task_group("sanity-and-genai", description="test group: a sanity member that refuses --data, and GenAI-Bench t2i")
def sanity_and_genai() -> list[str | GroupMember]:
    return [member("sanity", n=8, size=64), "genai-bench-t2i"]
