"""Task group `mmrb2`: Multimodal RewardBench 2, text-to-image and image editing (see mmrb2.py)."""

from __future__ import annotations

from rrbench.registry import GroupMember, task_group


@task_group("mmrb2", description="Multimodal RewardBench 2: text-to-image and image-editing expert pairs")
def mmrb2() -> list[str | GroupMember]:
    return ["mmrb2-t2i", "mmrb2-edit"]
