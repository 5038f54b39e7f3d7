"""`mmrb2`: Multimodal RewardBench 2's official rule (github.com/facebookresearch/MMRB2, commit 7ff0552).

A judge answering MMRB2's own judge prompt writes a JSON object. The official evaluator reads it with
``parse_llm_json`` (``evaluate/generate_judgements/evaluator_apis/llm_judges/api_pairwise_evaluator.py`` lines 59-75:
a surrounding code fence removed, then ``json_repair.loads``) and takes ``parsed["better_response"]`` (line 119); any
exception there drops the judgement (``evaluate.py`` lines 139-146). The scorer (``evaluate/compute_scores/
compute_accuracy.py`` lines 88-103) counts an order only when its judgement is truthy, and it is right when it equals
``chosen`` exactly ("A" or "B"; the reverse order's judgement flipped first): ``"a"``, ``"Response A"`` or ``"tie"`` are
evaluated and wrong; an empty string, ``null`` or a missing key is not evaluated (excluded, reported as failed).

Answers to other prompts (rrbench's own 4-way verdict prompt, critics, scalar scores) are read from the recorded
prediction: A or B as given, any tie wrong (MMRB2 has no human ties).
"""

from __future__ import annotations

import re
from typing import Any

from rrbench.metrics._rules import UNREAD, Meta, PairClass, PairRule, answered_text, shown_first
from rrbench.prompts import answer_format
from rrbench.registry import rule
from rrbench.types import Trial

_FAILED = object()


def official_judgement(text: str) -> Any:
    """``better_response`` as the official code reads it, or ``_FAILED`` where it raises."""
    import json_repair

    body = re.sub(r"^```(?:json)?\s*\n?", "", text.strip())
    body = re.sub(r"\n?```\s*$", "", body.strip())
    try:
        parsed: Any = json_repair.loads(body)
        return parsed["better_response"]
    except Exception:  # the official code's `except Exception` around the whole evaluation (evaluate.py 143)
        return _FAILED


def official_class(value: Any) -> PairClass | None:
    """The class of a judgement in the shown order; None when the scorer would not count it (falsy or failed)."""
    if value is _FAILED or not value:
        return None
    if value == "A":
        return 0
    if value == "B":
        return 1
    return f"unmatched {value!r}"


@rule("mmrb2", description="MMRB2 official: better_response of the judge's JSON answer equal to chosen (A/B); an "
                           "empty or unreadable judgement is not counted")
class MMRB2(PairRule):
    def read(self, trial: Trial, meta: Meta) -> Any:
        answer = answered_text(trial)
        if answer is None or answer_format(answer[1]) != "mmrb2-json":
            return UNREAD
        cls = official_class(official_judgement(answer[0]))
        return 1 - cls if isinstance(cls, int) and not shown_first(trial) else cls
