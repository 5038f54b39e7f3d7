"""How EditReward's scorer for scalar reward models reads human labels and ranks scores (github.com/TIGER-AI-Lab/
EditReward, commit edb027e, ``EditReward/evaluate/eval_bench.py``).

``get_pairwise_gt`` (lines 383-421) turns a ranking string into +1 (the first image preferred), -1 or 0 (tie):
``A>B`` is +1; ``B>A`` and ``A<B`` are -1; ``A=B=Good`` and ``A=B=Bad`` are 0; any other string is read by the
positions of the two letters in it (the earlier letter preferred), so a plain ``A=B`` reads as +1 and ``B<A`` as -1;
a string lacking either letter is 0. ``get_gt_ranking`` (lines 423-459) gives a group's order, None when the string
holds "=", and the strict ranking accuracy (lines 573-587) counts a group right when that order equals
``tuple(np.argsort(scores)[::-1])``: no epsilon, and equal scores are ordered by numpy's argsort.

rrbench reads EditReward-Bench from the hub layout, one row per comparison, so a group's order is rebuilt from its
rows' relations (each read as above); rows that tie, contradict each other or leave the order open give no order,
which the official code would also count wrong ("=" in the string, or a malformed string).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def pairwise_gt(ranking: Any, first: str, second: str) -> int:
    """+1, -1 or 0 for the candidates lettered ``first`` and ``second`` (eval_bench.py lines 397-421)."""
    if not isinstance(ranking, str):
        return 0
    if ranking == "A>B":
        return 1
    if ranking in ("B>A", "A<B"):
        return -1
    if ranking in ("A=B=Good", "A=B=Bad"):
        return 0
    pos_first, pos_second = ranking.find(first), ranking.find(second)
    if pos_first == -1 or pos_second == -1:
        return 0
    return 1 if pos_first < pos_second else -1


def group_order(rows: Sequence[tuple[str, str, int]], k: int) -> tuple[int, ...] | None:
    """The best-to-worst candidate indices (A=0, B=1, ...) implied by a group's (first, second, gt) relations."""
    wins = dict.fromkeys("ABCD"[:k], 0)
    for first, second, gt in rows:
        if gt == 0 or first not in wins or second not in wins:
            return None
        wins[first if gt > 0 else second] += 1
    if sorted(wins.values()) != list(range(k)):
        return None  # ties, a cycle or missing rows: no strict order
    return tuple(ord(letter) - ord("A") for letter in sorted(wins, key=lambda x: -wins[x]))


def model_order(scores: Mapping[str, float], k: int) -> tuple[int, ...] | None:
    """``tuple(np.argsort(scores)[::-1])`` over the letters' scores, as eval_bench.py line 582 ranks."""
    if any(letter not in scores for letter in "ABCD"[:k]):
        return None
    values = [scores[letter] for letter in "ABCD"[:k]]
    return tuple(int(i) for i in np.argsort(values)[::-1])
