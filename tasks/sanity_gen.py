"""`sanity-gen`: an embedded generation benchmark whose testpoints a program can check (UniGenBench++'s shape).

Prompts describe simple scenes (flat shapes, colours, counts, positions, a word) in a small grammar
(``rrbench.scene``), each with a list of testpoints in ``meta["testpoints"]``; the edit variant adds a procedurally
rendered source scene and an instruction that changes one thing. Nothing is downloaded. With the ``painter``
generator and the ``sanity-gen-judge`` the expected numbers are known by construction: docs/tasks/sanity-gen.md.

Samples form an endless deterministic sequence (categories interleaved, every choice hashed from the sample's index),
and ``n`` only cuts it, so ``--limit`` and ``n`` never change a sample. Source images are recipes: nothing is
rendered until a generator or a judge reads one.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path

from rrbench.registry import task
from rrbench.scene import (
    COLOURS,
    EDIT_CATEGORIES,
    NUMBERS,
    QUADRANTS,
    RELATIONS,
    SHAPES,
    T2I_CATEGORIES,
    WORDS,
    Add,
    CountPrompt,
    EditSource,
    Instruction,
    Look,
    Move,
    ObjectPrompt,
    Recolour,
    RelationPrompt,
    Remove,
    Retext,
    T2IPrompt,
    TextPrompt,
)
from rrbench.scene_paint import Jitter, Thing, Word, paint
from rrbench.testpoints import Testpoint, dump_testpoints
from rrbench.types import Label, Media, Protocol, Sample, Task, TaskInfo, TaskKind, UserError

VERSION = "1"  # bump when any prompt, testpoint, source recipe or ordering changes: recipes promise identical bytes
RECIPE_PREFIX = f"rrbench-sanity-gen/v{VERSION}"
DEFAULT_N = {"t2i": 48, "edit": 50}  # 12 prompts per t2i category, 10 per edit category
DEFAULT_SIZE = 256
MIN_SIZE, MAX_SIZE = 64, 2048
MAX_N = 1_000_000
MAX_IMAGES = 64
PROTOCOL = Protocol(id="sanity-gen-testpoints", mode="pointwise", metrics=("testpoint-accuracy", "mean-score"))
_COLOUR_NAMES = tuple(COLOURS)


# --------------------------------------------------------------------------------------------------- prompts


def _choose(options: tuple[str, ...], jitter: Jitter, name: str, *avoid: str) -> str:
    allowed = tuple(o for o in options if o not in avoid)
    return allowed[jitter.pick(name, len(allowed))]


def t2i_prompt(index: int) -> T2IPrompt:
    """Prompt ``index`` of the text-to-image sequence: its category cycles, every other choice is hashed."""
    category = T2I_CATEGORIES[index % len(T2I_CATEGORIES)]
    jitter = Jitter(f"{RECIPE_PREFIX}/t2i/{index}")
    colour, shape = _choose(_COLOUR_NAMES, jitter, "colour"), _choose(SHAPES, jitter, "shape")
    if category == "object":
        return ObjectPrompt(colour, shape, _choose(QUADRANTS, jitter, "quadrant"))
    if category == "count":
        return CountPrompt(2 + jitter.pick("number", len(NUMBERS)), colour, shape)
    if category == "relation":
        relation = _choose(tuple(RELATIONS), jitter, "relation")
        return RelationPrompt(colour, shape, relation, _choose(_COLOUR_NAMES, jitter, "colour-b", colour),
                              _choose(SHAPES, jitter, "shape-b", shape))
    return TextPrompt(colour, shape, _choose(("above", "below"), jitter, "where"), _choose(WORDS, jitter, "word"))


def edit_source(index: int) -> EditSource:
    jitter = Jitter(f"{RECIPE_PREFIX}/edit/{index}")
    left_shape, left_colour = _choose(SHAPES, jitter, "left/shape"), _choose(_COLOUR_NAMES, jitter, "left/colour")
    right = Look(_choose(SHAPES, jitter, "right/shape", left_shape),
                 _choose(_COLOUR_NAMES, jitter, "right/colour", left_colour))
    return EditSource(Look(left_shape, left_colour), right, _choose(WORDS, jitter, "word"))


def edit_instruction(index: int, source: EditSource) -> Instruction:
    """Instruction ``index`` of the editing sequence, on its source scene."""
    category = EDIT_CATEGORIES[index % len(EDIT_CATEGORIES)]
    jitter = Jitter(f"{RECIPE_PREFIX}/edit/{index}/instruction")
    target = (source.left, source.right)[jitter.pick("side", 2)]
    present = (source.left.colour, source.right.colour)
    if category == "recolour":
        return Recolour(target.shape, _choose(_COLOUR_NAMES, jitter, "colour", *present))
    if category == "add":
        third = _choose(SHAPES, jitter, "shape", source.left.shape, source.right.shape)
        return Add(_choose(_COLOUR_NAMES, jitter, "colour", *present), third, source.left.shape, source.right.shape)
    if category == "remove":
        return Remove(target.shape)
    if category == "move":
        return Move(target.shape, source.other(target.shape).shape)
    return Retext(_choose(WORDS, jitter, "word", source.word))


# --------------------------------------------------------------------------------------------------- sources

# Two objects side by side above a word, leaving room between them (add) and under them (move).
_SOURCE_LEFT, _SOURCE_RIGHT, _SOURCE_WORD = (0.2, 0.3), (0.8, 0.3), (0.5, 0.8)


def render_source(index: int, size: int) -> bytes:
    """The PNG of source ``index``: the only place source pixels are made (small per-index jitter)."""
    source = edit_source(index)
    jitter = Jitter(f"{RECIPE_PREFIX}/edit/{index}/source")
    things = [Thing(look.shape, jitter.shade(f"{name}/colour", COLOURS[look.colour]),
                    x + jitter.offset(f"{name}/x", 0.02), y + jitter.offset(f"{name}/y", 0.02),
                    0.1 * (0.9 + 0.2 * jitter.unit(f"{name}/r")))
              for name, look, (x, y) in (("left", source.left, _SOURCE_LEFT), ("right", source.right, _SOURCE_RIGHT))]
    word = Word(source.word, _SOURCE_WORD[0] + jitter.offset("word/x", 0.03), _SOURCE_WORD[1])
    buffer = io.BytesIO()
    paint(size, jitter.background(), things, [word]).save(buffer, "PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------- samples


def _sample(sample_id: str, text: str, category: str, variant: str, points: tuple[Testpoint, ...],
            source: tuple[Media, ...] = ()) -> Sample:
    meta = {"category": category, "variant": variant, "testpoints": dump_testpoints(points)}
    return Sample(sample_id, text, (), Label.none(), source=source, meta=meta)


def t2i_sample(index: int) -> Sample:
    prompt = t2i_prompt(index)
    points = tuple(point for _, point in prompt.testpoints())
    return _sample(f"t2i-{index:04d}-{prompt.category}", prompt.text, prompt.category, "t2i", points)


def edit_sample(index: int, size: int) -> Sample:
    source = edit_source(index)
    instruction = edit_instruction(index, source)
    points = tuple(point for _, point in instruction.testpoints(source))
    media = Media.from_recipe(f"{RECIPE_PREFIX}/source/{index}/{size}", functools.partial(render_source, index, size))
    return _sample(f"edit-{index:04d}-{instruction.category}", instruction.text, instruction.category, "edit", points,
                   (media,))


# --------------------------------------------------------------------------------------------------- task


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(variant: str, n: int | None, size: int | None, images_per_prompt: int) -> None:
    if variant not in DEFAULT_N:
        raise UserError(f"sanity-gen: variant must be one of {', '.join(DEFAULT_N)}, got {variant!r}")
    if n is not None and (not _is_int(n) or not 1 <= n <= MAX_N):
        raise UserError(f"sanity-gen: n must be a positive integer up to {MAX_N}, got {n!r}")
    if size is not None and variant == "t2i":
        raise UserError("sanity-gen: size sets the edit variant's source images; a text-to-image image's size is "
                        "the generator's (-G size=)")
    if size is not None and (not _is_int(size) or not MIN_SIZE <= size <= MAX_SIZE):
        raise UserError(f"sanity-gen: size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if not _is_int(images_per_prompt) or not 1 <= images_per_prompt <= MAX_IMAGES:
        raise UserError(f"sanity-gen: images_per_prompt must be an integer from 1 to {MAX_IMAGES}, "
                        f"got {images_per_prompt!r}")


@task("sanity-gen", description="embedded offline generation benchmark: simple scenes with pixel-checkable testpoints "
                                "(t2i, -T variant=edit)")
def sanity_gen(variant: str = "t2i", n: int | None = None, size: int | None = None,
               images_per_prompt: int = 4) -> Task:
    """Scenes of flat shapes with testpoints on shape, colour, count, position and text (edit: and consistency)."""
    _check(variant, n, size, images_per_prompt)
    count = DEFAULT_N[variant] if n is None else n
    side = DEFAULT_SIZE if size is None else size

    def load(data: Path | None) -> Iterator[Sample]:
        if data is not None:
            raise UserError("sanity-gen is embedded and takes no --data")
        if variant == "t2i":
            return (t2i_sample(i) for i in range(count))
        return (edit_sample(i, side) for i in range(count))

    return Task(
        name="sanity-gen",
        version=VERSION,
        kind=TaskKind.GENERATION_T2I if variant == "t2i" else TaskKind.GENERATION_EDIT,
        load=load,
        protocol=PROTOCOL,
        size=count,
        info=TaskInfo(dataset="embedded (procedural scenes)", license="Apache-2.0 (generated by rrbench)", size=count),
        generation=variant,
        prompt_vars=("testpoints",),
        images_per_prompt=images_per_prompt,
    )
