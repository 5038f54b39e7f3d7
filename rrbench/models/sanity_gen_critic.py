"""`sanity-gen-critic`: an offline critic of `sanity-gen` images in the RationalRewards shape, for `rrbench refine`.

It checks the testpoints the `sanity-gen-judge` checks (the same pixel rules) and answers as a critique: 1-4 scores
per aspect and a refined request that names the testpoints the image got wrong, on lines below the request (the
multi-line form ``rrbench.scene.emphasised`` writes and the ``painter`` reads: a named testpoint is painted right).
Aspects, by testpoint:

* Text Rendering: the ``text`` testpoint (``the text reads "..."``): 4 if right, 1 if wrong; N/A without one;
* Image Faithfulness (edits only): the ``... is unchanged`` testpoints: 4 if all hold, 2 if one fails, 1 if more;
* Text Faithfulness: every other testpoint: 4, 2 or 1 in the same way;
* Physical and Visual Quality: 4 (flat shapes are drawn cleanly).

So accept rule ``rr-code`` regenerates an image with a wrong shape, colour, count or position, and ``rr-paper`` also
one whose only error is its text or an unwanted change: docs/refine.md works the counts out by hand. The score is
``pointwise-mean/v1`` of the aspects. In round 2 and later it refines the request the image was made from
(``Query.variables["request"]``), so what an earlier round named stays named. ``max_named`` names at most that many
of the wrong testpoints per critique (the first ones), like a critic that points out the worst problem first.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from rrbench.models._base import RewardModel
from rrbench.models._rationalrewards_format import pointwise_mean
from rrbench.models.sanity_gen_judge import check
from rrbench.refine.rules import IF, PVQ, TF, TR
from rrbench.registry import reward_model
from rrbench.scene import emphasised
from rrbench.scene_look import look
from rrbench.testpoints import Testpoint, load_testpoints
from rrbench.types import DataError, FailureKind, Judgement, Query, UserError

GOOD, ONE_WRONG, MORE_WRONG = 4.0, 2.0, 1.0


def _aspect(point: Testpoint) -> str:
    if point.dimension == "text" and point.check.startswith("the text reads"):
        return TR
    if point.check.endswith("is unchanged"):
        return IF
    return TF


def _grade(wrong: int) -> float:
    return GOOD if wrong == 0 else ONE_WRONG if wrong == 1 else MORE_WRONG


class SanityGenCritic(RewardModel):
    name = "sanity-gen-critic"
    batch_size = 16
    cacheable = False  # checking the pixels costs less than a cache lookup

    def __init__(self, max_named: int | None = None) -> None:
        super().__init__(max_named=max_named)
        self.max_named = max_named

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._critique(query) for query in queries]

    def _critique(self, query: Query) -> Judgement:
        variables = dict(query.variables)
        try:
            points = load_testpoints(variables.get("testpoints"))
            image = query.candidates[0].image()
            source = query.source[0].image() if query.source else None
            if source is not None and image.size != source.size:
                image = image.resize(source.size, Image.Resampling.NEAREST)
            view, before = look(image), (look(source) if source is not None else None)
            verdicts = [check(point, view, before) for point in points]
        except DataError as exc:
            return Judgement.failed(FailureKind.DATA, str(exc))
        aspects = self._aspects(points, [ok for ok, _ in verdicts], query.generation)
        wrong = tuple(p.check for p, (ok, _) in zip(points, verdicts, strict=True) if not ok)
        named = wrong if self.max_named is None else wrong[:self.max_named]
        request = variables.get("request") or query.prompt
        return Judgement(
            scores=(pointwise_mean(aspects),), aspects=(aspects,),
            rationale="\n".join(f"{p.check}: {'yes' if ok else 'no'} ({why})"
                                for p, (ok, why) in zip(points, verdicts, strict=True)),
            refined_prompt=emphasised(request, named),
        )

    @staticmethod
    def _aspects(points: Sequence[Testpoint], passed: Sequence[bool], generation: str) -> dict[str, float | None]:
        wrong = {TF: 0, IF: 0, TR: 0}
        present = set()
        for point, ok in zip(points, passed, strict=True):
            aspect = _aspect(point)
            present.add(aspect)
            wrong[aspect] += not ok
        aspects: dict[str, float | None] = {TF: _grade(wrong[TF])}
        if generation == "edit":
            aspects[IF] = _grade(wrong[IF]) if IF in present else None
        aspects[PVQ] = GOOD
        aspects[TR] = (GOOD if wrong[TR] == 0 else MORE_WRONG) if TR in present else None
        return aspects


@reward_model("sanity-gen-critic", description="offline critic of sanity-gen images for rrbench refine: 1-4 aspect "
                                               "scores from the testpoints, a refined request naming the wrong ones")
def sanity_gen_critic(max_named: int | None = None) -> RewardModel:
    if max_named is not None and (isinstance(max_named, bool) or not isinstance(max_named, int) or max_named < 1):
        raise UserError(f"sanity-gen-critic: max_named must be a positive whole number, got {max_named!r}")
    return SanityGenCritic(max_named)
