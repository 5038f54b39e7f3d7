"""`editreward-without-ties`: EditReward's pairwise accuracy on 3- and 4-candidate groups (github.com/TIGER-AI-Lab/
EditReward, ``EditReward/evaluate/eval_bench.py``, ``calc_accuracy_without_ties``, lines 113-122, called with
epsilon -1 at line 121): C / (C + D) over the comparisons humans did not tie, where a model tie (equal scores) is
discordant. Labels are read as ``get_pairwise_gt`` reads them (see ``tasks/_editreward_evalbench.py``)."""

from __future__ import annotations

from rrbench.metrics._rules import Meta, PairClass, PairRule
from rrbench.registry import rule
from rrbench.tasks.rule_editreward_ties import eval_bench_class
from rrbench.types import Label


@rule("editreward-without-ties",
      description="EditReward eval_bench.py accuracy without ties: human ties skipped, a model tie is wrong")
class EditRewardWithoutTies(PairRule):
    skips_human_ties = True

    def human(self, label: Label, meta: Meta) -> PairClass | None:
        if PairRule().human(label, meta) is None:
            return None
        return eval_bench_class(label, meta)
