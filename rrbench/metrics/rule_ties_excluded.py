"""`ties-excluded`: accuracy on the pairs humans did not tie. A human tie is label-skipped; a predicted tie (a tie
verdict or equal scores) can never match a winner, so it is wrong."""

from __future__ import annotations

from rrbench.metrics._rules import PairRule
from rrbench.registry import rule


@rule("ties-excluded", description="human ties skipped (label-skipped); a predicted tie is wrong")
class TiesExcluded(PairRule):
    skips_human_ties = True
