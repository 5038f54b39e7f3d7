"""How EditReward-Bench's official scripts read a VLM judge's answer (github.com/TIGER-AI-Lab/EditReward, commit
edb027e, ``EditReward/evaluate/inference_{2,3,4}pair_hf.py``, function ``parse_pairwise_response``).

The regular expressions below are the official rule itself (its patterns, their order and the substring tests that
follow), so they are reproduced exactly; the code around them is rrbench's. Quirks that decide numbers:

- the first pattern that matches anywhere ends the pattern loop, even when its text is no known verdict
  (``[[A>>B]]`` gives ``A>>B``, which contains none of ``A>B``, ``B>A``, ``A=B``), and the reading falls through to
  the "X is better" and tie-word fallbacks, then ``Unknown``;
- the K=2 tie fallback is an unanchored search for "equal", "same", "tie", "tied" or "equivalent" anywhere in the
  answer ("properties" contains "tie"), so a long answer without a verdict often reads as ``A=B``;
- K=3/4 answers are meant to be ``[[Left>Right]]``/``[[Right>Left]]``; Left is ``candidate_1`` (the first letter of
  ``comparison_type``), Right ``candidate_2``; a letter answer names candidates by letter; no tie can be read.
"""

from __future__ import annotations

import re
from itertools import combinations

_FLAGS = re.IGNORECASE | re.MULTILINE

# inference_2pair_hf.py lines 53-61
_PATTERNS_2 = (
    r"\[\[([^\]]+)\]\]",
    r"\\boxed\{([^}]+)\}",
    r"\[([ABab][><=][ABab])\]",
    r"(?:Final verdict|verdict|answer):\s*([ABab][><=][ABab])(?:\s*$|\s*\.?\s*$)",
    r"\b([ABab]\s*[><=]\s*[ABab])\b(?=\s*(?:\.|$|,|\s))",
    r"(?:Model\s+)?([ABab])\s+is\s+better",
    r"both\s+(?:are\s+)?(?:equal|same|tie|tied)",
)
# inference_2pair_hf.py lines 87-94
_TIE_WORDS_2 = (
    r"both\s+(?:are\s+)?(?:equal|same|tie|tied|equivalent)",
    r"(?:they\s+are\s+)?(?:equal|same|tie|tied|equivalent)",
    r"no\s+difference",
    r"can't\s+decide",
    r"both\s+(?:look|are)\s+good",
    r"both\s+(?:look|are)\s+bad",
)
_BETTER_2 = r"\b([ABab])\s+is\s+better"  # line 81


def _first_match(patterns: tuple[str, ...], text: str) -> str | None:
    """The normalised text of the first pattern that matches (its group, upper-cased, spaces removed)."""
    for pattern in patterns:
        found = re.search(pattern, text, _FLAGS)
        if found:
            value = found.group(1) if found.groups() else found.group(0)
            return value.strip().upper().replace(" ", "")
    return None


def read_2pair(text: str) -> str:
    """``A>B``, ``B>A``, ``A=B`` or ``Unknown``, as inference_2pair_hf.py lines 48-100 read an answer."""
    found = _first_match(_PATTERNS_2, text)
    if found is not None:
        for vote, spellings in (("A>B", ("A>B",)), ("B>A", ("B>A",)), ("A=B", ("A=B", "A==B"))):
            if any(s in found for s in spellings):
                return vote
    better = re.search(_BETTER_2, text, re.IGNORECASE)
    if better:
        letter = better.group(1).upper()
        return f"{letter}>{'B' if letter == 'A' else 'A'}"
    if any(re.search(p, text, re.IGNORECASE) for p in _TIE_WORDS_2):
        return "A=B"
    return "Unknown"


# --------------------------------------------------------------------------------------------------- K = 3, 4


def _patterns_n(letters: str) -> tuple[str, ...]:
    """inference_3pair_hf.py lines 55-63 (letters ABCabc) and inference_4pair_hf.py (ABCDabcd)."""
    return (
        r"\[\[([^\]]+)\]\]",
        r"\\boxed\{([^}]+)\}",
        rf"\[([{letters}][><][{letters}])\]",
        r"\[(Left>Right|Right>Left)\]",
        rf"(?:Final verdict|verdict|answer):\s*([{letters}][><][{letters}])(?:\s*$|\s*\.?\s*$)",
        rf"\b([{letters}]\s*[><]\s*[{letters}])\b(?=\s*(?:\.|$|,|\s))",
        rf"(?:Model\s+)?([{letters}])\s+is\s+better",
    )


def _relations(k: int) -> tuple[str, ...]:
    """The letter relations the scripts test for, in their order (3pair lines 92-103; 4pair adds A/D after C>A and
    B/D, C/D after C>B)."""
    if k == 3:
        return ("A>B", "B>A", "A>C", "C>A", "B>C", "C>B")
    return ("A>B", "B>A", "A>C", "C>A", "A>D", "D>A", "B>C", "C>B", "B>D", "D>B", "C>D", "D>C")


def comparison_types(k: int) -> tuple[str, ...]:
    """The ``comparison_type`` values the scripts map Left/Right for: AvsB, AvsC, BvsC (K=3), all six pairs (K=4)."""
    return tuple(f"{x}vs{y}" for x, y in combinations("ABCD"[:k], 2))


def read_npair(text: str, comparison_type: str, k: int) -> tuple[str, bool]:
    """(vote, positional) as inference_{3,4}pair_hf.py read an answer to comparison ``XvsY``.

    ``vote`` is a relation such as ``A>C`` or ``Unknown``; ``positional`` is True when it came from Left/Right
    (and so depends on which candidate was shown left), False when the answer named letters.
    """
    letters = "ABCD"[:k] + "abcd"[:k]
    known = comparison_type in comparison_types(k)
    left, right = (comparison_type[0], comparison_type[-1]) if known else ("", "")
    found = _first_match(_patterns_n(letters), text)
    if found is not None:
        if "LEFT>RIGHT" in found:
            if known:
                return f"{left}>{right}", True
        elif "RIGHT>LEFT" in found:
            if known:
                return f"{right}>{left}", True
        else:
            relation = next((r for r in _relations(k) if r in found), None)
            if relation is not None:
                return relation, False
    better = re.search(rf"\b([{letters}])\s+is\s+better", text, re.IGNORECASE)
    if better and known:
        letter = better.group(1).upper()
        return f"{letter}>{right if letter == left else left}", False
    left_better = re.search(r"left\s+(?:image\s+)?is\s+better", text, re.IGNORECASE)
    right_better = re.search(r"right\s+(?:image\s+)?is\s+better", text, re.IGNORECASE)
    if left_better:
        if known:
            return f"{left}>{right}", True
    elif right_better and known:
        return f"{right}>{left}", True
    return "Unknown", False
