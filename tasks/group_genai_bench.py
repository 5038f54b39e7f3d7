"""Task group `genai-bench`: GenAI-Bench v1, text-to-image and image editing (see genai_bench.py)."""

from __future__ import annotations

from rrbench.registry import GroupMember, task_group


@task_group("genai-bench", description="GenAI-Bench v1: text-to-image and image-editing arena votes")
def genai_bench() -> list[str | GroupMember]:
    return ["genai-bench-t2i", "genai-bench-edit"]
