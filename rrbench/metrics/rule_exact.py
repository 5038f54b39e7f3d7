"""`exact`: 3-class exact match. Every tie kind, human or predicted, is the one class "tie"; a tie is predicted only
on a verdict that says so or on exactly equal scores."""

from __future__ import annotations

from rrbench.metrics._rules import PairRule
from rrbench.registry import rule


@rule("exact", description="3-class exact match (A / B / tie); every tie kind, human or predicted, is one class 'tie'")
class Exact(PairRule):
    """The base rule as it is: 3 classes, the verdict or else the order of the two scores."""
