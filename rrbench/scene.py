"""The scene grammar of the embedded `sanity-gen` benchmark: prompts a painter can parse from the text alone.

Four text-to-image prompt kinds and five editing instructions, each with a fixed list of testpoints (see
docs/tasks/sanity-gen.md). The task writes prompts and testpoints from these classes, the ``painter`` generator
parses the prompt back and paints it, and the ``sanity-gen-judge`` reads the testpoints (never the prompt) and checks
them against the pixels. Each testpoint has a *role* (``shape``, ``colour-a``, ``keep:circle``, ...) that names what
the painter must get wrong to violate it; roles are unique within a prompt, so one testpoint can be violated without
touching the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from rrbench.testpoints import Testpoint

# Saturated colours far apart (the nearest is orange-yellow, 70 apart) and never dark: black is the ink of text.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (150, 60, 190),
    "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
RELATIONS = {"to the left of": "left of", "to the right of": "right of", "above": "above", "below": "below"}
NUMBERS = {2: "Two", 3: "Three", 4: "Four", 5: "Five"}
WORDS = ("SUN", "CAT", "DOG", "BOX", "MOON", "STOP", "OPEN", "RAIN", "HELLO", "WATER", "LIGHT", "MUSIC")

T2I_CATEGORIES = ("object", "count", "relation", "text")
EDIT_CATEGORIES = ("recolour", "add", "remove", "move", "retext")

Role = str
Points = tuple[tuple[Role, Testpoint], ...]


def article(word: str) -> str:
    return "An" if word[0] in "aeiou" else "A"


def other_shape(shape: str) -> str:
    """The shape a painter draws instead of ``shape`` to violate a shape testpoint: the next one in SHAPES."""
    return SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)]


def other_colour(*avoid: str) -> str:
    """The first colour not in ``avoid``: a wrong colour that also differs from the scene's other colours."""
    return next(c for c in COLOURS if c not in avoid)


def error_word(word: str) -> str:
    """The word a painter writes instead of ``word``: the next word of the same length, so that only reading the
    letters (not the width of the text) tells them apart."""
    same = [w for w in WORDS if len(w) == len(word)]
    return same[(same.index(word) + 1) % len(same)] if word in same else word[::-1]


# --------------------------------------------------------------------------------------------------- text-to-image


@dataclass(frozen=True)
class ObjectPrompt:
    """One object in one quadrant: shape, colour and position are each one testpoint."""

    colour: str
    shape: str
    quadrant: str
    category: ClassVar[str] = "object"

    @property
    def text(self) -> str:
        return f"{article(self.colour)} {self.colour} {self.shape} in the {self.quadrant}."

    def testpoints(self) -> Points:
        return (("shape", Testpoint("shape", f"the object is a {self.shape}")),
                ("colour", Testpoint("colour", f"the object is {self.colour}")),
                ("position", Testpoint("position", f"the object is in the {self.quadrant}")))


@dataclass(frozen=True)
class CountPrompt:
    """``number`` objects alike: how many, and that every one has the shape and the colour."""

    number: int
    colour: str
    shape: str
    category: ClassVar[str] = "count"

    @property
    def text(self) -> str:
        return f"{NUMBERS[self.number]} {self.colour} {self.shape}s."

    def testpoints(self) -> Points:
        return (("count", Testpoint("count", f"there are exactly {self.number} objects")),
                ("shape", Testpoint("shape", f"every object is a {self.shape}")),
                ("colour", Testpoint("colour", f"every object is {self.colour}")))


@dataclass(frozen=True)
class RelationPrompt:
    """Two objects of different shapes: the colour of each (found by its shape) and where one is from the other."""

    colour_a: str
    shape_a: str
    relation: str  # a key of RELATIONS
    colour_b: str
    shape_b: str
    category: ClassVar[str] = "relation"

    @property
    def text(self) -> str:
        return (f"{article(self.colour_a)} {self.colour_a} {self.shape_a} {self.relation} "
                f"{article(self.colour_b).lower()} {self.colour_b} {self.shape_b}.")

    def testpoints(self) -> Points:
        where = RELATIONS[self.relation]
        return (("colour-a", Testpoint("colour", f"the {self.shape_a} is {self.colour_a}")),
                ("colour-b", Testpoint("colour", f"the {self.shape_b} is {self.colour_b}")),
                ("position", Testpoint("position", f"the {self.shape_a} is {where} the {self.shape_b}")))


@dataclass(frozen=True)
class TextPrompt:
    """An object above or below a word: the word's letters, the object's shape and colour, and which is on top."""

    colour: str
    shape: str
    where: str  # "above" or "below"
    word: str
    category: ClassVar[str] = "text"

    @property
    def text(self) -> str:
        return f'{article(self.colour)} {self.colour} {self.shape} {self.where} the word "{self.word}".'

    def testpoints(self) -> Points:
        return (("text", Testpoint("text", f'the text reads "{self.word}"')),
                ("shape", Testpoint("shape", f"the object is a {self.shape}")),
                ("colour", Testpoint("colour", f"the object is {self.colour}")),
                ("position", Testpoint("position", f"the object is {self.where} the text")))


T2IPrompt = ObjectPrompt | CountPrompt | RelationPrompt | TextPrompt


# --------------------------------------------------------------------------------------------------- editing


@dataclass(frozen=True)
class Look:
    """What an object is, as a painter or a task knows it: its shape and colour name."""

    shape: str
    colour: str


@dataclass(frozen=True)
class EditSource:
    """A source scene: two objects of different shapes side by side (left, right) above a word."""

    left: Look
    right: Look
    word: str = ""  # a painter reading a source image knows its objects, not its word

    def other(self, shape: str) -> Look:
        return self.right if self.left.shape == shape else self.left

    def find(self, shape: str) -> Look:
        return self.left if self.left.shape == shape else self.right


def _keep(shape: str) -> tuple[Role, Testpoint]:
    return f"keep:{shape}", Testpoint("consistency", f"the {shape} is unchanged")


_KEEP_TEXT: tuple[Role, Testpoint] = ("keep:text", Testpoint("consistency", "the text is unchanged"))


@dataclass(frozen=True)
class Recolour:
    shape: str
    colour: str
    category: ClassVar[str] = "recolour"

    @property
    def text(self) -> str:
        return f"Make the {self.shape} {self.colour}."

    def testpoints(self, source: EditSource) -> Points:
        return (("colour", Testpoint("colour", f"the {self.shape} is {self.colour}")),
                _keep(source.other(self.shape).shape), _KEEP_TEXT)


@dataclass(frozen=True)
class Add:
    colour: str
    shape: str
    left: str  # the shapes the new object goes between, as the instruction names them
    right: str
    category: ClassVar[str] = "add"

    @property
    def text(self) -> str:
        return (f"Add {article(self.colour).lower()} {self.colour} {self.shape} between the {self.left} and the "
                f"{self.right}.")

    def testpoints(self, source: EditSource) -> Points:
        return (("count", Testpoint("count", "there are exactly 3 objects")),
                ("colour", Testpoint("colour", f"the {self.shape} is {self.colour}")),
                _keep(source.left.shape), _keep(source.right.shape))


@dataclass(frozen=True)
class Remove:
    shape: str
    category: ClassVar[str] = "remove"

    @property
    def text(self) -> str:
        return f"Remove the {self.shape}."

    def testpoints(self, source: EditSource) -> Points:
        return (("count", Testpoint("count", "there is exactly 1 object")),
                _keep(source.other(self.shape).shape), _KEEP_TEXT)


@dataclass(frozen=True)
class Move:
    shape: str
    below: str
    category: ClassVar[str] = "move"

    @property
    def text(self) -> str:
        return f"Move the {self.shape} below the {self.below}."

    def testpoints(self, source: EditSource) -> Points:
        return (("position", Testpoint("position", f"the {self.shape} is below the {self.below}")),
                ("colour", Testpoint("colour", f"the {self.shape} is {source.find(self.shape).colour}")),
                _keep(self.below))


@dataclass(frozen=True)
class Retext:
    word: str
    category: ClassVar[str] = "retext"

    @property
    def text(self) -> str:
        return f'Change the text to "{self.word}".'

    def testpoints(self, source: EditSource) -> Points:
        return (("text", Testpoint("text", f'the text reads "{self.word}"')),
                _keep(source.left.shape), _keep(source.right.shape))


Instruction = Recolour | Add | Remove | Move | Retext

# --------------------------------------------------------------------------------------------------- parsing

_C = "|".join(COLOURS)
_S = "|".join(SHAPES)
_W = "[A-Z]+"
_PATTERNS: tuple[tuple[re.Pattern[str], type], ...] = tuple((re.compile(p), cls) for p, cls in (
    (rf"An? ({_C}) ({_S}) in the ((?:top|bottom) (?:left|right))\.", ObjectPrompt),
    (rf"({'|'.join(NUMBERS.values())}) ({_C}) ({_S})s\.", CountPrompt),
    (rf"An? ({_C}) ({_S}) ({'|'.join(RELATIONS)}) an? ({_C}) ({_S})\.", RelationPrompt),
    (rf'An? ({_C}) ({_S}) (above|below) the word "({_W})"\.', TextPrompt),
    (rf"Make the ({_S}) ({_C})\.", Recolour),
    (rf"Add an? ({_C}) ({_S}) between the ({_S}) and the ({_S})\.", Add),
    (rf"Remove the ({_S})\.", Remove),
    (rf"Move the ({_S}) below the ({_S})\.", Move),
    (rf'Change the text to "({_W})"\.', Retext),
))
_NUMBER_OF = {word: n for n, word in NUMBERS.items()}


def parse(prompt: str) -> T2IPrompt | Instruction | None:
    """The prompt or instruction a text says, or None when it is not in the grammar."""
    for pattern, cls in _PATTERNS:
        match = pattern.fullmatch(prompt.strip())
        if match:
            args: list[object] = list(match.groups())
            if cls is CountPrompt:
                args[0] = _NUMBER_OF[str(args[0])]
            parsed: T2IPrompt | Instruction = cls(*args)
            return parsed
    return None


# --------------------------------------------------------------------------------------------------- refined requests

EMPHASIS = "Make sure that:"  # opens the lines of a refined request that name testpoints (sanity-gen-critic's)


def emphasised(request: str, checks: tuple[str, ...]) -> str:
    """``request`` with ``checks`` (testpoint statements) named on lines of their own below it: the multi-line
    refined request the ``sanity-gen-critic`` writes and the ``painter`` reads. Checks named already stay."""
    base, named = split_request(request)
    every = tuple(dict.fromkeys((*named, *checks)))
    return "\n".join([base, EMPHASIS, *(f"- {check}" for check in every)]) if every else base


def split_request(text: str) -> tuple[str, tuple[str, ...]]:
    """A request's first line (the prompt in the scene grammar) and the testpoint statements it names."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines:
        return "", ()
    named = tuple(line[2:].strip() for line in lines[1:] if line.startswith("- "))
    return lines[0], named
