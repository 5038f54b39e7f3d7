"""`painter`: an offline generator that paints `sanity-gen` prompts procedurally, with errors on demand.

It parses the prompt (the scene grammar of ``rrbench.scene``), lays the scene out and draws it; the request's seed
moves things a little (position, size, colour shade, background grey) without ever breaking a testpoint. For an
edit it reads the source image's objects from the pixels and changes only what the instruction names.

``error_rate`` makes some images violate some testpoints, by a rule chosen so that the expected numbers follow by
hand: image ``i`` of a prompt violates testpoint ``j`` exactly when ``(i + j) mod period < error_rate * period``.
Over any ``period`` consecutive images each testpoint is violated ``error_rate * period`` times, so with
``images_per_prompt`` a multiple of ``period`` every dimension's testpoint accuracy is exactly ``1 - error_rate``
(docs/tasks/sanity-gen.md). A prompt outside the grammar fails its image (``error``), as a real pipeline might.

Test-time refine: a request may name testpoints below its first line (``rrbench.scene.emphasised``, what the
``sanity-gen-critic`` writes); a named testpoint is never violated, as a generator told what it got wrong would
get it right. A fresh draw of an image (``ImageRequest.draw`` = d, a new seed) is painted as image ``index + d``
would be, so re-sampling alone moves the errors by a rule one can follow by hand (docs/refine.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from rrbench.generators._base import Generated, Generator, ImageRequest
from rrbench.registry import generator
from rrbench.scene import (
    COLOURS,
    Add,
    CountPrompt,
    EditSource,
    Instruction,
    Look,
    Move,
    ObjectPrompt,
    Points,
    Recolour,
    RelationPrompt,
    Remove,
    Retext,
    T2IPrompt,
    TextPrompt,
    error_word,
    other_colour,
    other_shape,
    parse,
    split_request,
)
from rrbench.scene_look import Blob, View, look
from rrbench.scene_paint import INK, Jitter, Thing, Word, draw_thing, draw_word, paint
from rrbench.types import DataError, FailureKind, UserError

MIN_SIZE, MAX_SIZE = 64, 2048
_OPPOSITE = {"top left": "bottom right", "top right": "bottom left", "bottom left": "top right",
             "bottom right": "top left"}


def violated(index: int, count: int, error_rate: float, period: int) -> frozenset[int]:
    """The testpoints (by position) that image ``index`` of a prompt with ``count`` testpoints gets wrong."""
    wrong = round(error_rate * period)
    return frozenset(j for j in range(count) if (index + j) % period < wrong)


class Painter(Generator):
    name = "painter"
    kinds = ("t2i", "edit")
    batch_size = 16

    def __init__(self, error_rate: float = 0.0, period: int = 4, size: int = 256) -> None:
        super().__init__(error_rate=error_rate, period=period, size=size)
        self.error_rate, self.period, self.size = float(error_rate), period, size

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        return [self._one(request) for request in requests]

    def _one(self, request: ImageRequest) -> Generated:
        base, named = split_request(request.prompt)
        parsed = parse(base)
        if parsed is None:
            return Generated.failed(FailureKind.ERROR, f"painter cannot parse the prompt {request.prompt[:200]!r}")
        jitter = Jitter(f"painter/{request.seed}")
        slot = _Slot(request.index + request.draw, frozenset(named))
        try:
            if isinstance(parsed, ObjectPrompt | CountPrompt | RelationPrompt | TextPrompt):
                if request.source:
                    return Generated.failed(FailureKind.ERROR, "a text-to-image prompt came with a source image")
                return Generated.from_image(self._paint(parsed, slot, jitter))
            if not request.source:
                return Generated.failed(FailureKind.ERROR, "an editing instruction came without a source image")
            return Generated.from_image(self._edit(parsed, request.source[0].image(), slot, jitter))
        except DataError as exc:
            return Generated.failed(FailureKind.DATA, str(exc))

    def _wrong(self, points: Points, slot: _Slot) -> frozenset[str]:
        """The roles this image gets wrong: those the rule picks for its slot, less those the request names."""
        picked = violated(slot.index, len(points), self.error_rate, self.period)
        return frozenset(points[j][0] for j in picked if points[j][1].check not in slot.named)

    # -- text to image ----------------------------------------------------------------------------------------
    def _paint(self, prompt: T2IPrompt, slot: _Slot, jitter: Jitter) -> Image.Image:
        wrong = self._wrong(prompt.testpoints(), slot)
        words: list[Word] = []
        if isinstance(prompt, ObjectPrompt):
            things = _object(prompt, wrong, jitter)
        elif isinstance(prompt, CountPrompt):
            things = _count(prompt, wrong, jitter)
        elif isinstance(prompt, RelationPrompt):
            things = _relation(prompt, wrong, jitter)
        else:
            things, words = _text(prompt, wrong, jitter)
        return paint(self.size, jitter.background(), things, words)

    # -- editing ----------------------------------------------------------------------------------------------
    def _edit(self, instruction: Instruction, source: Image.Image, slot: _Slot, jitter: Jitter) -> Image.Image:
        view = look(source)
        left, right = _two_objects(view)
        scene = EditSource(Look(str(left.shape), str(left.colour)), Look(str(right.shape), str(right.colour)))
        wrong = self._wrong(instruction.testpoints(scene), slot)
        return _Editor(source, view, (left, right), jitter).apply(instruction, wrong)


@dataclass(frozen=True)
class _Slot:
    """Which image the error rule paints (``index`` + draw) and the testpoint statements the request names."""

    index: int
    named: frozenset[str]


def _two_objects(view: View) -> tuple[Blob, Blob]:
    """The source's two objects, left first; a source that is not two known objects is a data fault."""
    blobs = sorted(view.blobs, key=lambda b: b.x)
    if len(blobs) != 2 or any(b.shape is None or b.colour is None for b in blobs) or blobs[0].shape == blobs[1].shape:
        raise DataError(f"the source image is not a sanity-gen scene (found {len(view.blobs)} objects)")
    return blobs[0], blobs[1]


# --------------------------------------------------------------------------------------------------- layouts


def _colour(jitter: Jitter, name: str, colour: str) -> tuple[int, int, int]:
    return jitter.shade(name, COLOURS[colour])


def _radius(jitter: Jitter, name: str, r: float) -> float:
    return r * (0.9 + 0.2 * jitter.unit(f"{name}/r"))


def _object(prompt: ObjectPrompt, wrong: frozenset[str], jitter: Jitter) -> list[Thing]:
    shape = other_shape(prompt.shape) if "shape" in wrong else prompt.shape
    colour = other_colour(prompt.colour) if "colour" in wrong else prompt.colour
    quadrant = _OPPOSITE[prompt.quadrant] if "position" in wrong else prompt.quadrant
    x = (0.27 if quadrant.endswith("left") else 0.73) + jitter.offset("x", 0.03)
    y = (0.27 if quadrant.startswith("top") else 0.73) + jitter.offset("y", 0.03)
    return [Thing(shape, _colour(jitter, "colour", colour), x, y, _radius(jitter, "object", 0.15))]


_SLOTS = tuple((x, y) for y in (0.3, 0.7) for x in (1 / 6, 1 / 2, 5 / 6))  # room for six, a count of 5 + 1 extra


def _count(prompt: CountPrompt, wrong: frozenset[str], jitter: Jitter) -> list[Thing]:
    number = prompt.number + 1 if "count" in wrong else prompt.number
    shape = other_shape(prompt.shape) if "shape" in wrong else prompt.shape
    colour = other_colour(prompt.colour) if "colour" in wrong else prompt.colour
    slots = sorted(range(len(_SLOTS)), key=lambda i: jitter.unit(f"slot/{i}"))[:number]
    return [Thing(shape, _colour(jitter, f"colour/{i}", colour), _SLOTS[i][0] + jitter.offset(f"x/{i}", 0.02),
                  _SLOTS[i][1] + jitter.offset(f"y/{i}", 0.02), _radius(jitter, f"object/{i}", 0.1))
            for i in sorted(slots)]


_RELATION_PLACES = {"to the left of": ((0.28, 0.5), (0.72, 0.5)), "to the right of": ((0.72, 0.5), (0.28, 0.5)),
                    "above": ((0.5, 0.28), (0.5, 0.72)), "below": ((0.5, 0.72), (0.5, 0.28))}


def _relation(prompt: RelationPrompt, wrong: frozenset[str], jitter: Jitter) -> list[Thing]:
    colour_a = other_colour(prompt.colour_a, prompt.colour_b) if "colour-a" in wrong else prompt.colour_a
    colour_b = other_colour(prompt.colour_b, prompt.colour_a) if "colour-b" in wrong else prompt.colour_b
    place_a, place_b = _RELATION_PLACES[prompt.relation]
    if "position" in wrong:
        place_a, place_b = place_b, place_a
    return [Thing(shape, _colour(jitter, f"colour/{name}", colour), x + jitter.offset(f"x/{name}", 0.04),
                  y + jitter.offset(f"y/{name}", 0.04), _radius(jitter, name, 0.13))
            for name, shape, colour, (x, y) in (("a", prompt.shape_a, colour_a, place_a),
                                                ("b", prompt.shape_b, colour_b, place_b))]


def _text(prompt: TextPrompt, wrong: frozenset[str], jitter: Jitter) -> tuple[list[Thing], list[Word]]:
    shape = other_shape(prompt.shape) if "shape" in wrong else prompt.shape
    colour = other_colour(prompt.colour) if "colour" in wrong else prompt.colour
    word = error_word(prompt.word) if "text" in wrong else prompt.word
    above = (prompt.where == "above") != ("position" in wrong)
    thing_y, word_y = (0.3, 0.74) if above else (0.72, 0.26)
    thing = Thing(shape, _colour(jitter, "colour", colour), 0.5 + jitter.offset("x", 0.1),
                  thing_y + jitter.offset("y", 0.03), _radius(jitter, "object", 0.13))
    return [thing], [Word(word, 0.5 + jitter.offset("word/x", 0.05), word_y + jitter.offset("word/y", 0.02))]


# --------------------------------------------------------------------------------------------------- edits


class _Editor:
    """Changes a source image in place: only the pixels of what the instruction (or a chosen error) touches."""

    def __init__(self, source: Image.Image, view: View, objects: tuple[Blob, Blob], jitter: Jitter) -> None:
        self.pixels = np.array(source.convert("RGB"))
        self.view, self.objects, self.jitter = view, objects, jitter
        self.things: list[Thing] = []
        self.words: list[Word] = []

    def find(self, shape: str) -> Blob:
        return next(b for b in self.objects if b.shape == shape)

    def apply(self, instruction: Instruction, wrong: frozenset[str]) -> Image.Image:
        spare = other_colour(*(str(b.colour) for b in self.objects), *_colours_named(instruction))
        if isinstance(instruction, Recolour):
            self._recolour(instruction, wrong)
        elif isinstance(instruction, Add):
            self._add(instruction, wrong)
        elif isinstance(instruction, Remove):
            if "count" not in wrong:
                self.pixels[self.find(instruction.shape).mask] = self.view.background
        elif isinstance(instruction, Move):
            self._move(instruction, wrong, spare)
        else:
            self._retext(instruction, wrong)
        for blob in self.objects:  # a violated "unchanged": the untouched object comes out in a spare colour
            if f"keep:{blob.shape}" in wrong:
                self.pixels[blob.mask] = COLOURS[spare]
        if "keep:text" in wrong:
            self._shift_ink(round(0.1 * self.pixels.shape[1]))
        return self._image()

    def _recolour(self, instruction: Recolour, wrong: frozenset[str]) -> None:
        if "colour" not in wrong:  # the error is the edit left undone
            self.pixels[self.find(instruction.shape).mask] = _colour(self.jitter, "colour", instruction.colour)

    def _add(self, instruction: Add, wrong: frozenset[str]) -> None:
        left, right = self.objects
        colour = instruction.colour
        if "colour" in wrong:
            colour = other_colour(instruction.colour, str(left.colour), str(right.colour))
        (lx, ly), (rx, ry) = left.box_centre(), right.box_centre()
        r = min(left.half_side(), right.half_side())
        x, y = (lx + rx) / 2 + self.jitter.offset("x", 0.02), (ly + ry) / 2 + self.jitter.offset("y", 0.02)
        rgb = _colour(self.jitter, "colour", colour)
        self.things.append(Thing(instruction.shape, rgb, x, y, r))
        if "count" in wrong:  # one more, smaller, so that "the <shape>" (the largest) is still the one asked for
            self.things.append(Thing(instruction.shape, rgb, x, y + 0.3, 0.6 * r))

    def _move(self, instruction: Move, wrong: frozenset[str], spare: str) -> None:
        moving, anchor = self.find(instruction.shape), self.find(instruction.below)
        rgb = COLOURS[spare] if "colour" in wrong else moving.rgb  # flat shapes: the median is exact
        if "position" in wrong:  # left where it was
            self.pixels[moving.mask] = rgb
            return
        self.pixels[moving.mask] = self.view.background
        ax, ay = anchor.box_centre()
        x, y = ax + self.jitter.offset("x", 0.02), ay + 0.28 + self.jitter.offset("y", 0.02)
        self.things.append(Thing(str(moving.shape), rgb, x, y, moving.half_side()))

    def _retext(self, instruction: Retext, wrong: frozenset[str]) -> None:
        centre = self.view.ink_centre()
        if centre is None:
            raise DataError("the source image has no text to change")
        self.pixels[self.view.ink] = self.view.background
        word = error_word(instruction.word) if "text" in wrong else instruction.word
        x, y = centre[0] + self.jitter.offset("word/x", 0.02), centre[1] + self.jitter.offset("word/y", 0.01)
        self.words.append(Word(word, x, y))

    def _shift_ink(self, dx: int) -> None:
        ink = np.zeros_like(self.view.ink)
        ink[:, dx:] = self.view.ink[:, :-dx]
        self.pixels[self.view.ink] = self.view.background
        self.pixels[ink] = INK

    def _image(self) -> Image.Image:
        image = Image.fromarray(self.pixels, "RGB")
        for thing in self.things:
            draw_thing(image, thing)
        for word in self.words:
            draw_word(image, word)
        return image


def _colours_named(instruction: Instruction) -> tuple[str, ...]:
    return (instruction.colour,) if isinstance(instruction, Recolour | Add) else ()


# --------------------------------------------------------------------------------------------------- plug-in


def _check(error_rate: float, period: int, size: int) -> None:
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise UserError(f"painter: period must be a positive integer, got {period!r}")
    if not isinstance(error_rate, int | float) or not 0 <= error_rate <= 1:
        raise UserError(f"painter: error_rate must be a number from 0 to 1, got {error_rate!r}")
    if abs(error_rate * period - round(error_rate * period)) > 1e-9:
        raise UserError(f"painter: error_rate must be a multiple of 1/period (1/{period}) so that the expected "
                        f"numbers are exact, got {error_rate!r}; set -G period= to match")
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"painter: size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")


@generator("painter", description="offline procedural painter of sanity-gen scenes (t2i and edit); "
                                  "-G error_rate= makes chosen images violate chosen testpoints")
def painter(error_rate: float = 0.0, period: int = 4, size: int = 256) -> Painter:
    """``size``: side of text-to-image outputs (edits keep the source's size). ``error_rate``: see the module."""
    _check(error_rate, period, size)
    return Painter(error_rate=error_rate, period=period, size=size)
