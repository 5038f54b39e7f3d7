"""Tie/credit rules: how one pairwise trial earns credit against a human label. Rule names are public API.

A rule is a plug-in (``@rule("name")`` from ``rrbench.registry``, one file each) that lives next to the benchmark
whose official scorer it reproduces (``tasks/rule_*.py``); the generic rules are in ``rrbench/metrics/rule_*.py``.
Adding a benchmark with its own rule therefore adds a file and edits no central table. A protocol names its rule
in ``tie_policy``.

A rule sees a comparison as a human class and a predicted class. Classes are ``0`` / ``1`` (the preferred
candidate, in the sample's own order) or a tie kind (``"tie"``, ``"both_good"``, ``"both_bad"``); rules that
reproduce an official scorer comparing strings use the official strings as classes instead (the label's original
string against the judge's official vote). The predicted class comes from one of two places:

- ``read``: rules defined on the judge's *text* (an official regex or parser applied to a verdict judge's raw
  answer) re-read the recorded answer at scoring time, so rescoring needs no model call and the lenient reading
  rrbench stores stays available as a named alternative;
- ``predicted``: otherwise the recorded prediction: the judge's verdict when it gave one (a verdict is never turned
  into a tie by a score threshold), else the order of its two scores, possibly with a calibrated knob.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeAlias

from rrbench.types import FailureKind, Judgement, Label, LabelKind, Prediction, Trial, UserError, Verdict

PairClass: TypeAlias = int | str
Meta: TypeAlias = Mapping[str, Any]

TIE = "tie"
BOTH_GOOD, BOTH_BAD = "both_good", "both_bad"
TIE_KINDS = frozenset({TIE, BOTH_GOOD, BOTH_BAD})
UNREAD = object()  # ``read`` result: this rule does not read the trial's text; use the recorded prediction

VERDICT_CLASS: dict[Verdict, PairClass] = {
    Verdict.A: 0,
    Verdict.B: 1,
    Verdict.TIE: TIE,
    Verdict.BOTH_GOOD: BOTH_GOOD,
    Verdict.BOTH_BAD: BOTH_BAD,
}


# --------------------------------------------------------------------------------------------------- classes


def human_class(label: Label) -> PairClass | None:
    """The class of a two-candidate label, or None when the label is not one (unknown, ranking, bad index)."""
    if label.kind is LabelKind.WINNER and label.winner in (0, 1):
        return label.winner
    if label.kind.is_tie:
        return label.kind.value
    return None


def pair_scores(pred: Prediction) -> tuple[float, float] | None:
    """The two scores when both are real numbers; a NaN would compare as a silent tie, so it is unusable."""
    if len(pred.scores) != 2:
        return None
    s0, s1 = pred.scores
    if s0 is None or s1 is None or not (math.isfinite(s0) and math.isfinite(s1)):
        return None
    return float(s0), float(s1)


def usable(pred: Prediction | None) -> bool:
    return pred is not None and (pred.verdict is not None or pair_scores(pred) is not None)


def order_class(s0: float, s1: float) -> PairClass:
    return 0 if s0 > s1 else 1 if s1 > s0 else TIE


def predicted_class(pred: Prediction) -> PairClass | None:
    """0 / 1 for a winner or a tie kind: the verdict if set, else the order of the scores; None if neither."""
    if pred.verdict is not None:
        return VERDICT_CLASS[pred.verdict]
    scores = pair_scores(pred)
    return None if scores is None else order_class(*scores)


def merged(cls: PairClass) -> PairClass:
    """Every tie kind as the one class "tie" (3-class rules)."""
    return TIE if cls in TIE_KINDS else cls


def verdict_text(judgement: Judgement) -> str | None:
    """The raw answer of a judge asked for a categorical verdict (the text an official text rule reads).

    rrbench's VLM judges record which prompt they answered (``prompt``): only answers to verdict-kind prompts are
    verdict text, so a critique is never read as one, even when its parse failed. A judgement without a prompt id
    (a plug-in judge) counts when it is text with neither scores nor aspects and either a verdict or a failure to
    read one (parse, empty, truncated).
    """
    from rrbench.prompts import prompt_kind

    if judgement.raw is None:
        return None
    if judgement.prompt is not None:
        return judgement.raw if prompt_kind(judgement.prompt) == "verdict" else None
    if judgement.scores or judgement.aspects:
        return None
    unread = judgement.failure in (FailureKind.PARSE, FailureKind.EMPTY, FailureKind.TRUNCATED)
    return judgement.raw if judgement.verdict is not None or unread else None


def answered_text(trial: Trial) -> tuple[str, str | None] | None:
    """(text, prompt id) of a one-request trial answered by a verdict judge, whatever its lenient parse said.

    None when the trial has no such answer: the call failed before any text came back (http, timeout, ...), or
    the judge is not a verdict judge. An empty answer is text (``""``): official scorers read it as no verdict.
    """
    if len(trial.judgements) < 1:
        return None
    judgement = trial.judgements[0]
    text = verdict_text(judgement)
    return None if text is None else (text, judgement.prompt)


def shown_first(trial: Trial) -> bool:
    """Whether the sample's first candidate was shown first (A) in this trial."""
    return not trial.order or trial.order[0] == 0


# --------------------------------------------------------------------------------------------------- rules


class PairRule:
    """Base class of tie/credit rules; the defaults are the plain 3-class rule (every tie kind one class).

    Class attributes a rule sets:
    - ``skips_human_ties``: a human tie is not a scorable label under this rule (the sample is label-skipped);
    - ``knob``: a value the metric chooses on the data before scoring (``"epsilon"``: tie when |s0 - s1| <= e,
      the best e; ``"threshold"``: Pick-a-Pic's t on validation; ``"tie_split"``: GenAI-Bench's score level that
      separates "both good" from "both bad" ties); None for rules without one;
    - ``group_failure``: ``"any"`` (a group with a failed comparison is a failed unit) or ``"all"`` (only a group
      whose every comparison failed is; a partly failed group is counted wrong, as EditReward's scripts do).
    """

    name: ClassVar[str] = ""
    skips_human_ties: ClassVar[bool] = False
    knob: ClassVar[str | None] = None
    group_failure: ClassVar[str] = "any"

    def human(self, label: Label, meta: Meta) -> PairClass | None:
        """The human class of a two-candidate label; None: the label is not scorable under this rule."""
        return human_class(label)

    def read(self, trial: Trial, meta: Meta) -> Any:
        """The class an official text rule reads from the trial's answer, in the sample's own order.

        ``UNREAD`` when the rule does not read text for this trial (the recorded prediction is used); ``None``
        when it would read text but the trial has none (the call failed): that is a failed comparison.
        """
        return UNREAD

    def predicted(self, pred: Prediction, knob: float, meta: Meta) -> PairClass | None:
        """The predicted class from a recorded prediction; None when it holds nothing to compare."""
        return predicted_class(pred)

    def credit(self, human: PairClass, predicted: PairClass) -> float:
        return 1.0 if merged(human) == merged(predicted) else 0.0

    def notes(self, units: Any) -> dict[str, Any]:
        """Counts a rule reports next to its value (e.g. how often two readings of the answers disagree)."""
        return {}


# --------------------------------------------------------------------------------------------------- lookup


def get_rule(name: str) -> PairRule:
    """The registered rule of this name (``@rule``); an unknown name is a one-line user error."""
    from rrbench import registry

    registry.load_plugins()
    entry = registry.find("rule", name)
    if entry is None:
        raise UserError(f"unknown tie policy {name!r} (known: {', '.join(tie_policies())})")
    made = entry.factory()
    if not isinstance(made, PairRule):
        raise TypeError(f"rule '{name}' built {type(made).__name__}, not a PairRule")
    return made


def check_tie_policy(name: str) -> None:
    get_rule(name)


def tie_policies() -> dict[str, str]:
    """Every registered rule name with its one-line description."""
    from rrbench import registry

    return {e.name: e.description for e in registry.entries("rule")}


class _Policies(Mapping[str, str]):
    """``TIE_POLICIES``: the registered rules, read from the registry on use (plug-ins may add rules)."""

    def __getitem__(self, name: str) -> str:
        return tie_policies()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(tie_policies())

    def __len__(self) -> int:
        return len(tie_policies())


TIE_POLICIES: Mapping[str, str] = _Policies()
