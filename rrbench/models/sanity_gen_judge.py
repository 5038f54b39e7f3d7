"""`sanity-gen-judge`: checks each `sanity-gen` testpoint against the pixels, answering 0 or 1 like UniGenBench++.

It reads the testpoints (``Query.variables["testpoints"]``), never the prompt, and looks at the image as
``rrbench.scene_look`` does: objects are the regions of one flat colour, "the circle" is the largest circle, a
colour is the palette colour nearest the object's median pixel, a position is the centroid's, text is matched
against a rendering of the expected word, and "unchanged" compares an object (or the text) with the source image.
The score is the fraction of testpoints passed; each testpoint's 0/1 is an aspect keyed ``testpoint_key``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from PIL import Image

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.scene import COLOURS, SHAPES
from rrbench.scene_look import View, look, mask_iou, text_match
from rrbench.testpoints import Testpoint, load_testpoints, testpoint_key
from rrbench.types import DataError, FailureKind, Judgement, Query

TEXT_MATCH = 0.85  # the right word matches 1.0; another word of the vocabulary at most about 0.66
KEEP_IOU = 0.8  # an untouched object covers the same pixels as in the source (the painter copies them exactly)
KEEP_TEXT_IOU = 0.9

Verdict = tuple[bool, str]
Check = Callable[[View, View | None, tuple[str, ...]], Verdict]


def _object_shape(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    blob = view.largest()
    if blob is None:
        return False, "no object"
    return blob.shape == args[0], f"the object is {_what(blob.shape)}"


def _object_colour(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    blob = view.largest()
    if blob is None:
        return False, "no object"
    return blob.colour == args[0], f"the object is {_what(blob.colour)}"


def _object_quadrant(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    blob = view.largest()
    if blob is None:
        return False, "no object"
    where = f"{'top' if blob.y < 0.5 else 'bottom'} {'left' if blob.x < 0.5 else 'right'}"
    return where == f"{args[0]} {args[1]}", f"the object's centre is in the {where}"


def _object_vs_text(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    blob, centre = view.largest(), view.ink_centre()
    if blob is None or centre is None:
        return False, "no object" if blob is None else "no text"
    where = "above" if blob.y < centre[1] else "below"
    return where == args[0], f"the object is {where} the text"


def _count(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    return len(view.blobs) == int(args[0]), f"{len(view.blobs)} objects"


def _every_shape(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    shapes = sorted({str(b.shape) for b in view.blobs})
    return (shapes == [args[0]]), f"shapes found: {', '.join(shapes) or 'none'}"


def _every_colour(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    colours = sorted({str(b.colour) for b in view.blobs})
    return (colours == [args[0]]), f"colours found: {', '.join(colours) or 'none'}"


def _shape_colour(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    blob = view.largest(args[0])
    if blob is None:
        return False, f"no {args[0]}"
    return blob.colour == args[1], f"the {args[0]} is {_what(blob.colour)}"


def _relation(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    a, b = view.largest(args[0]), view.largest(args[2])
    if a is None or b is None:
        return False, f"no {args[0] if a is None else args[2]}"
    dx, dy = a.x - b.x, a.y - b.y
    # "above" means more above than beside: the larger offset names the relation.
    where = ("left of" if dx < 0 else "right of") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")
    return where == args[1], f"the {args[0]} is {where} the {args[2]}"


def _text_reads(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    match = text_match(view.ink, args[0])
    return match >= TEXT_MATCH, f"the text matches a rendering of {args[0]!r} at {match:.2f}"


def _shape_unchanged(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    before, after = _needs(source).largest(args[0]), view.largest(args[0])
    if before is None or after is None:
        return False, f"no {args[0]} {'in the source' if before is None else 'any more'}"
    overlap = mask_iou(before.mask, after.mask)
    same = before.colour == after.colour and overlap >= KEEP_IOU
    return same, f"{before.colour} before, {after.colour} after, overlap {overlap:.2f}"


def _text_unchanged(view: View, source: View | None, args: tuple[str, ...]) -> Verdict:
    overlap = mask_iou(_needs(source).ink, view.ink)
    return overlap >= KEEP_TEXT_IOU, f"the ink overlaps the source's at {overlap:.2f}"


def _needs(source: View | None) -> View:
    if source is None:
        raise DataError("an edit testpoint needs the source image, and the query has none")
    return source


def _what(value: str | None) -> str:
    return value or "unrecognisable"


_C, _S = "|".join(COLOURS), "|".join(SHAPES)
_CHECKS: tuple[tuple[re.Pattern[str], Check], ...] = tuple((re.compile(p), fn) for p, fn in (
    (rf"the object is an? ({_S})", _object_shape),
    (rf"the object is ({_C})", _object_colour),
    (r"the object is in the (top|bottom) (left|right)", _object_quadrant),
    (r"the object is (above|below) the text", _object_vs_text),
    (r"there (?:are|is) exactly (\d+) objects?", _count),
    (rf"every object is an? ({_S})", _every_shape),
    (rf"every object is ({_C})", _every_colour),
    (rf"the ({_S}) is ({_C})", _shape_colour),
    (rf"the ({_S}) is (left of|right of|above|below) the ({_S})", _relation),
    (r'the text reads "([A-Z]+)"', _text_reads),
    (rf"the ({_S}) is unchanged", _shape_unchanged),
    (r"the text is unchanged", _text_unchanged),
))


def check(testpoint: Testpoint, view: View, source: View | None) -> Verdict:
    """Whether the image passes one testpoint, and what was seen; DataError for a check outside the grammar."""
    for pattern, fn in _CHECKS:
        match = pattern.fullmatch(testpoint.check.strip())
        if match:
            return fn(view, source, match.groups())
    raise DataError(f"sanity-gen-judge cannot check {testpoint.check!r}")


class SanityGenJudge(RewardModel):
    name = "sanity-gen-judge"
    batch_size = 16
    cacheable = False  # checking the pixels costs less than a cache lookup

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._judge(query) for query in queries]

    def _judge(self, query: Query) -> Judgement:
        try:
            points = load_testpoints(dict(query.variables).get("testpoints"))
            image = query.candidates[0].image()
            source = query.source[0].image() if query.source else None
            if source is not None and image.size != source.size:  # compare like with like, pixel for pixel
                image = image.resize(source.size, Image.Resampling.NEAREST)
            view, before = look(image), (look(source) if source is not None else None)
            verdicts = [check(point, view, before) for point in points]
        except DataError as exc:
            return Judgement.failed(FailureKind.DATA, str(exc))
        keys = [testpoint_key(j, p.dimension) for j, p in enumerate(points)]
        passed = sum(ok for ok, _ in verdicts)
        return Judgement(
            scores=(passed / len(points),),
            aspects=({key: 1.0 if ok else 0.0 for key, (ok, _) in zip(keys, verdicts, strict=True)},),
            rationale="\n".join(f"{key} {'yes' if ok else 'no'}: {why}"
                                for key, (ok, why) in zip(keys, verdicts, strict=True)),
        )


@reward_model("sanity-gen-judge", description="checks sanity-gen testpoints from the pixels (0/1 each, score = "
                                              "fraction passed), offline")
def sanity_gen_judge() -> RewardModel:
    return SanityGenJudge()
