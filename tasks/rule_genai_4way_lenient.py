"""`genai-4way-lenient`: GenAI-Bench's 4 classes with rrbench's lenient reading of a verdict judge's answer (the
last ``[[...]]`` verdict, any case, spaces inside allowed, ``[[A>>B]]`` as ``[[A>B]]``), as recorded in each trial's
prediction. Not the official rule (``genai-4way`` is): a named alternative for judges whose formatting the official
exact-string match punishes."""

from __future__ import annotations

from typing import Any

from rrbench.metrics._rules import UNREAD, Meta
from rrbench.registry import rule
from rrbench.tasks.rule_genai_4way import GenAIFourWay
from rrbench.types import Trial


@rule("genai-4way-lenient",
      description="GenAI-Bench 4 classes with rrbench's lenient verdict reading (last [[...]], any case)")
class GenAIFourWayLenient(GenAIFourWay):
    def read(self, trial: Trial, meta: Meta) -> Any:
        return UNREAD
