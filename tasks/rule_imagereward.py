"""`imagereward`: ImageRewardDB's own rule (``THUDM/ImageReward``, ``test.py`` ``acc``): over the image pairs of each
prompt's ranking, a pair with a strict human order counts and is right iff the model orders it strictly the same
way; human ties are skipped and a model tie is wrong."""

from __future__ import annotations

from rrbench.metrics._rules import PairRule
from rrbench.registry import rule


@rule("imagereward", description="ImageRewardDB: only pairs with a strict human order; a model tie is wrong")
class ImageReward(PairRule):
    skips_human_ties = True
