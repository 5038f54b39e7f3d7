"""Task group `rationalrewards-table1`: the benchmarks of the RationalRewards paper's Table 1 (arXiv 2604.11626).

EditReward-Bench is its K=2 subset there, so the group fixes ``k=2`` (recorded in that member run's spec). The
columns match the leaderboard's paper-layout table (rrbench/leaderboard/tables.py, TABLE1).
"""

from __future__ import annotations

from rrbench.registry import GroupMember, member, task_group


@task_group("rationalrewards-table1",
            description="RationalRewards paper, Table 1: MMRB2 t2i/edit, EditReward-Bench K=2, GenAI-Bench t2i/edit")
def rationalrewards_table1() -> list[str | GroupMember]:
    return ["mmrb2-t2i", "mmrb2-edit", member("editreward-bench", k=2), "genai-bench-t2i", "genai-bench-edit"]
