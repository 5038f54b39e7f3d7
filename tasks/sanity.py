"""`sanity`: an embedded benchmark whose right answers are known by construction.

It is built from the photographs that ship inside the scikit-image wheel (read straight from the installed package,
never downloaded), each with a hand-written caption, so a reward model can be checked offline in seconds:

* variant ``t2i``: a photo against a degraded copy of itself (blur, noise, JPEG, low contrast, colour cast), and a
  photo against another photo under the first one's caption (faithfulness).
* variant ``edit``: a source photo and an instruction; the correct edit against a different edit or the untouched
  source.

Samples form an endless deterministic sequence (categories interleaved, then photos, then variations: other crop
windows, other strengths, other pairings), and ``n`` only cuts it, so ``--limit`` and ``n`` never change a sample.
Images are recipes: nothing is decoded or rendered until a model reads a candidate.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from rrbench.registry import task
from rrbench.types import Label, Media, Protocol, Sample, Task, TaskInfo, TaskKind, UserError

VERSION = "1"  # bump when any caption, recipe or ordering changes: recipes promise identical bytes
RECIPE_PREFIX = f"rrbench-sanity/v{VERSION}"
DEFAULT_N = {"t2i": 192, "edit": 120}  # 32 pairs per t2i category, 60 per edit category
MIN_SIZE, MAX_SIZE = 32, 2048
MAX_N = 1_000_000  # far beyond any use; a larger n is a typo, not a request


@dataclass(frozen=True)
class Photo:
    name: str
    file: str  # inside skimage/data of the installed wheel
    caption: str
    colour: bool
    editable: bool  # a flip or rotation is plainly visible against the source (not a texture or a star field)


# Colour and grayscale photos alternate so that a short prefix already mixes both.
PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "astronaut.png",
          "A smiling astronaut with short brown hair in an orange spacesuit, holding a white helmet, in front of an "
          "American flag and a model of the space shuttle.", True, True),
    Photo("camera", "camera.png",
          "A black-and-white photo of a man in a dark coat looking through a camera on a tripod, on a grassy field "
          "with buildings in the distance.", False, True),
    Photo("chelsea", "chelsea.png",
          "A close-up of a tabby cat's face with green eyes, a pink nose and long white whiskers.", True, True),
    Photo("coins", "coins.png",
          "A black-and-white photo of rows of ancient silver coins with embossed heads and figures on a dark "
          "background.", False, True),
    Photo("coffee", "coffee.png",
          "A cup of espresso with golden crema on a red saucer with a small metal spoon, on a wooden table.",
          True, True),
    Photo("moon", "moon.png",
          "A grayscale close-up of the lunar surface: flat gray ground with small round craters and dark patches.",
          False, True),
    Photo("rocket", "rocket.jpg",
          "A white rocket on its launch pad at dusk, between tall steel towers against a deep blue sky, with bright "
          "lights glowing at its base.", True, True),
    Photo("brick", "brick.png",
          "A grayscale photo of a brick pavement: long rectangular bricks laid in a staggered pattern with light "
          "mortar joints.", False, False),
    Photo("hubble", "hubble_deep_field.jpg",
          "A deep-space telescope view of countless small galaxies, bright spirals and glowing orange ellipticals "
          "scattered across a black sky.", True, False),
    Photo("grass", "grass.png",
          "A grayscale close-up of a lawn: dense blades of grass and small leaves filling the whole frame.",
          False, False),
    Photo("motorcycle", "motorcycle_left.png",
          "A red motorcycle with a black seat and a chrome engine parked in a cluttered garage, with cardboard "
          "boxes on metal shelves behind it.", True, True),
    Photo("gravel", "gravel.png",
          "A grayscale close-up of a layer of small angular gravel stones covering the whole frame.", False, False),
    Photo("retina", "retina.jpg",
          "A fundus photograph of a human retina: an orange-red disc crossed by branching dark red blood vessels, "
          "with a bright yellowish optic disc near the left edge.", True, True),
    Photo("page", "page.png",
          "A photo of a printed textbook page: lines of black sans-serif text on pale paper.", False, True),
    Photo("ihc", "ihc.png",
          "A microscope image of a stained tissue section: brown-stained clusters of gland cells among pale tissue "
          "dotted with small blue nuclei.", True, True),
    Photo("text", "text.png",
          "A grayscale close-up of handwritten mathematical formulas in dark ink on lined paper, photographed at a "
          "slant.", False, True),
)
_BY_NAME = {p.name: p for p in PHOTOS}

T2I_CATEGORIES = ("quality:blur", "quality:noise", "quality:jpeg", "quality:contrast", "quality:colour",
                  "faithfulness")
EDIT_CATEGORIES = ("edit:wrong", "edit:missing")
EDIT_INSTRUCTIONS = {
    "grayscale": "Make it grayscale.",
    "flip-h": "Flip it horizontally.",
    "rotate-cw": "Rotate it 90 degrees clockwise.",
    "invert": "Invert the colours.",
    "brighten": "Make it brighter.",
    "add-blur": "Add a blur.",
}
LEVEL_CYCLE = (2, 3, 1)  # strength of variation v is LEVEL_CYCLE[v % 3]: the default set starts mid-strength

# Strengths at level 1..3 (index 0 unused), in units of a 256-pixel image where a size applies. Even level 1 is
# plainly visible: this benchmark checks that a model is sane, not that it sees subtle defects.
_BLUR_RADIUS = (0.0, 1.5, 2.5, 4.0)
_NOISE_SIGMA = (0.0, 15.0, 25.0, 40.0)
_JPEG_QUALITY = (0, 10, 6, 3)
_CONTRAST_KEEP = (0.0, 0.5, 0.35, 0.2)
_TINT_ALPHA = (0.0, 0.25, 0.35, 0.5)
_TINTS = ((40, 220, 60), (230, 40, 210), (40, 90, 250), (250, 200, 20))  # green, magenta, blue, yellow
_EDIT_BLUR_RADIUS = 3.0
_BRIGHTEN_GAMMA = 0.5


# --------------------------------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """One image: a crop window of a photo at ``size``, then one operation (``original`` for none)."""

    photo: str
    op: str
    crop: int
    size: int
    level: int = 0  # degradation strength 1..3; 0 for operations without one

    @property
    def tag(self) -> str:
        return f"{self.op}-s{self.level}" if self.level else self.op

    @property
    def key(self) -> str:
        return f"{RECIPE_PREFIX}/{self.photo}/{self.tag}/c{self.crop}/{self.size}"

    @property
    def format(self) -> str:
        return "jpeg" if self.op == "jpeg" else "png"

    def media(self) -> Media:
        return Media.from_recipe(self.key, functools.partial(render, self), self.format)


def render(recipe: Recipe) -> bytes:
    """The encoded image of a recipe; the only place pixels are made."""
    # A private copy: PIL's save() writes encoder settings onto the image object, and the cached square is shared
    # by renders that may run in parallel threads.
    square = _square(recipe.photo, recipe.crop, recipe.size).copy()
    if recipe.op == "jpeg":
        return _jpeg(square, _JPEG_QUALITY[recipe.level])
    return _png(_TRANSFORMS[recipe.op](square, recipe))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)  # rendering speed matters more than a few KB (speed benchmarks)
    return buf.getvalue()


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@functools.lru_cache(maxsize=len(PHOTOS))
def _load_photo(name: str) -> Image.Image:
    """Decode one bundled photograph (read from the installed wheel, so it can never trigger a download)."""
    with (resources.files("skimage") / "data" / _BY_NAME[name].file).open("rb") as fh, Image.open(fh) as img:
        return img.convert("RGB")


@functools.lru_cache(maxsize=8)
def _square(name: str, crop: int, size: int) -> Image.Image:
    """A square crop window of the photo, resized to size x size (few alive: samples of a photo come together)."""
    photo = _load_photo(name)
    box = _crop_box(name, crop, *photo.size)
    return photo.resize((size, size), Image.Resampling.LANCZOS, box=box)


def _crop_box(name: str, crop: int, width: int, height: int) -> tuple[float, float, float, float]:
    """Window 0 is the largest centred square; later windows are 75-95% squares at hashed positions."""
    short = min(width, height)
    if crop == 0:
        side, fx, fy = float(short), 0.5, 0.5
    else:
        side = short * (0.75 + 0.2 * _unit(f"{name}/c{crop}/side"))
        fx, fy = _unit(f"{name}/c{crop}/x"), _unit(f"{name}/c{crop}/y")
    x0, y0 = fx * (width - side), fy * (height - side)
    return (x0, y0, x0 + side, y0 + side)


def _unit(text: str) -> float:
    """A deterministic number in [0, 1) from a string (no global RNG, so nothing depends on call order)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _scaled(value: float, size: int) -> float:
    return value * size / 256


# --------------------------------------------------------------------------------------------------- operations


def _original(img: Image.Image, recipe: Recipe) -> Image.Image:
    return img


def _blur(img: Image.Image, recipe: Recipe) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(_scaled(_BLUR_RADIUS[recipe.level], recipe.size)))


def _noise(img: Image.Image, recipe: Recipe) -> Image.Image:
    rng = np.random.default_rng(int(_unit(recipe.key) * 2**63))
    pixels = np.asarray(img, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, _NOISE_SIGMA[recipe.level], pixels.shape).astype(np.float32)
    return _to_image(noisy)


def _contrast(img: Image.Image, recipe: Recipe) -> Image.Image:
    pixels = np.asarray(img, dtype=np.float32)
    keep = _CONTRAST_KEEP[recipe.level]
    return _to_image(pixels.mean() + keep * (pixels - pixels.mean()))


def _colour(img: Image.Image, recipe: Recipe) -> Image.Image:
    """A colour cast: blend towards a saturated tint, picked per photo and crop window for variety."""
    pick = int(_unit(f"{recipe.photo}/c{recipe.crop}/tint") * len(_TINTS))
    tint = np.array(_TINTS[pick], dtype=np.float32)
    alpha = _TINT_ALPHA[recipe.level]
    return _to_image((1 - alpha) * np.asarray(img, dtype=np.float32) + alpha * tint)


def _grayscale(img: Image.Image, recipe: Recipe) -> Image.Image:
    return img.convert("L").convert("RGB")


def _flip(img: Image.Image, recipe: Recipe) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _rotate(img: Image.Image, recipe: Recipe) -> Image.Image:
    return img.transpose(Image.Transpose.ROTATE_270)  # PIL turns counter-clockwise: 270 = 90 clockwise


def _invert(img: Image.Image, recipe: Recipe) -> Image.Image:
    return ImageOps.invert(img)


def _brighten(img: Image.Image, recipe: Recipe) -> Image.Image:
    # A gamma curve brightens the mid-tones without clipping highlights, so no detail is lost.
    return _to_image(255.0 * (np.asarray(img, dtype=np.float32) / 255.0) ** _BRIGHTEN_GAMMA)


def _add_blur(img: Image.Image, recipe: Recipe) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(_scaled(_EDIT_BLUR_RADIUS, recipe.size)))


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


_TRANSFORMS: dict[str, Callable[[Image.Image, Recipe], Image.Image]] = {
    "original": _original, "blur": _blur, "noise": _noise, "contrast": _contrast, "colour": _colour,
    "grayscale": _grayscale, "flip-h": _flip, "rotate-cw": _rotate, "invert": _invert, "brighten": _brighten,
    "add-blur": _add_blur,
}


# --------------------------------------------------------------------------------------------------- samples


def _correct_first(index: int, n_categories: int, seed: int, variant: str) -> bool:
    """Balanced positions for every prefix: overall and per category, correct-first counts differ by at most 1.

    Categories come in adjacent pairs that take opposite positions within a round, and each category takes
    opposite positions in rounds 2j and 2j+1; one seeded coin per (category pair, round pair) picks which.
    """
    category, rnd = index % n_categories, index // n_categories
    pair, second = divmod(category, 2)
    coin = _unit(f"sanity/{variant}/{seed}/{pair}/{rnd // 2}") < 0.5
    return coin ^ bool(rnd % 2) ^ bool(second)


def _pair(sample_id: str, prompt: str, correct: Recipe, other: Recipe, first: bool, meta: dict[str, object],
          source: tuple[Media, ...] = ()) -> Sample:
    media = (correct.media(), other.media()) if first else (other.media(), correct.media())
    label = Label.win(0, original="A") if first else Label.win(1, original="B")
    return Sample(sample_id, prompt, media, label, source=source, meta=meta)


def _t2i_sample(index: int, size: int, seed: int) -> Sample:
    category = T2I_CATEGORIES[index % len(T2I_CATEGORIES)]
    rnd = index // len(T2I_CATEGORIES)
    photo, crop = PHOTOS[rnd % len(PHOTOS)], rnd // len(PHOTOS)
    first = _correct_first(index, len(T2I_CATEGORIES), seed, "t2i")
    original = Recipe(photo.name, "original", crop, size)
    meta: dict[str, object] = {"category": category, "variant": "t2i", "photo": photo.name, "crop": crop}
    if category == "faithfulness":
        other = _other_photo(rnd % len(PHOTOS), crop)
        meta["other"] = other.name
        wrong = Recipe(other.name, "original", crop, size)
        return _pair(f"f-{photo.name}-vs-{other.name}-c{crop}", photo.caption, original, wrong, first, meta)
    kind, level = category.split(":")[1], LEVEL_CYCLE[crop % len(LEVEL_CYCLE)]
    meta.update(degradation=kind, level=level)
    degraded = Recipe(photo.name, kind, crop, size, level)
    return _pair(f"q-{kind}-s{level}-{photo.name}-c{crop}", photo.caption, original, degraded, first, meta)


def _other_photo(position: int, crop: int) -> Photo:
    offset = 1 + int(_unit(f"other/{position}/{crop}") * (len(PHOTOS) - 1))  # never the photo itself
    return PHOTOS[(position + offset) % len(PHOTOS)]


def _edit_combos() -> tuple[tuple[Photo, str], ...]:
    """Every (photo, edit) once, ordered so that consecutive samples vary both the photo and the edit."""
    photos = [p for p in PHOTOS if p.editable]
    ops = list(EDIT_INSTRUCTIONS)
    combos = []
    for shift in range(len(ops)):
        for i, photo in enumerate(photos):
            op = ops[(i + shift) % len(ops)]
            if photo.colour or op != "grayscale":  # graying a gray photo changes nothing
                combos.append((photo, op))
    return tuple(combos)


EDIT_COMBOS = _edit_combos()


def _edit_sample(index: int, size: int, seed: int) -> Sample:
    category = EDIT_CATEGORIES[index % len(EDIT_CATEGORIES)]
    rnd = index // len(EDIT_CATEGORIES)
    (photo, op), crop = EDIT_COMBOS[rnd % len(EDIT_COMBOS)], rnd // len(EDIT_COMBOS)
    first = _correct_first(index, len(EDIT_CATEGORIES), seed, "edit")
    source = Recipe(photo.name, "original", crop, size)
    correct = Recipe(photo.name, op, crop, size)
    meta: dict[str, object] = {"category": category, "variant": "edit", "photo": photo.name, "crop": crop,
                               "edit": op}
    if category == "edit:missing":
        sample_id = f"e-missing-{op}-{photo.name}-c{crop}"
        return _pair(sample_id, EDIT_INSTRUCTIONS[op], correct, source, first, meta, (source.media(),))
    wrong_op = _wrong_edit(photo, op, crop)
    meta["other"] = wrong_op
    sample_id = f"e-wrong-{op}-as-{wrong_op}-{photo.name}-c{crop}"
    wrong = Recipe(photo.name, wrong_op, crop, size)
    return _pair(sample_id, EDIT_INSTRUCTIONS[op], correct, wrong, first, meta, (source.media(),))


def _wrong_edit(photo: Photo, op: str, crop: int) -> str:
    choices = [o for o in EDIT_INSTRUCTIONS if o != op and (photo.colour or o != "grayscale")]
    return choices[int(_unit(f"wrong/{photo.name}/{op}/{crop}") * len(choices))]


# --------------------------------------------------------------------------------------------------- task


def _check(size: int, variant: str, n: int | None, seed: int) -> None:
    if variant not in DEFAULT_N:
        raise UserError(f"sanity: variant must be one of {', '.join(DEFAULT_N)}, got {variant!r}")
    if not _is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"sanity: size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if n is not None and (not _is_int(n) or not 1 <= n <= MAX_N):
        raise UserError(f"sanity: n must be a positive integer up to {MAX_N}, got {n!r}")
    if not _is_int(seed):
        raise UserError(f"sanity: seed must be an integer, got {seed!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@task("sanity", description="embedded offline check: photos vs degraded copies, captions, edits (scikit-image)")
def sanity(size: int = 256, variant: str = "t2i", n: int | None = None, seed: int = 0) -> Task:
    """Pairs with known answers built from scikit-image's bundled photographs; ``seed`` only moves positions."""
    _check(size, variant, n, seed)
    count = DEFAULT_N[variant] if n is None else n
    build = _t2i_sample if variant == "t2i" else _edit_sample

    def load(data: Path | None) -> Iterator[Sample]:
        if data is not None:
            raise UserError("sanity is embedded and takes no --data")
        return (build(i, size, seed) for i in range(count))

    return Task(
        name="sanity",
        version=VERSION,
        kind=TaskKind.PAIR,
        load=load,
        protocol=Protocol(id="sanity-exact", tie_policy="exact", metrics=("accuracy",)),
        size=count,
        info=TaskInfo(
            paper=None,
            dataset="embedded (scikit-image photographs)",
            license="scikit-image data: per-image source and licence in the skimage.data docstrings",
            size=count,
        ),
        generation=variant,
    )
