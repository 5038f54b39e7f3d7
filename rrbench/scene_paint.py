"""Drawing `sanity-gen` scenes: flat shapes and a 5x7 bitmap font, without anti-aliasing.

Shapes are drawn in one flat colour each and text in black ink, with no anti-aliasing, so every pixel belongs to
exactly one thing and a judge can segment the image by colour alone. The font is defined here, not loaded, so the
same letters come out on every machine and with every Pillow version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

INK = (0, 0, 0)

_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".###."),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
}


def text_mask(word: str) -> np.ndarray:
    """The ink of ``word`` at one pixel per font dot: 7 rows, 6 columns per letter less the last gap."""
    rows = [".".join(_GLYPHS[ch][r] for ch in word) for r in range(7)]
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def text_scale(size: int) -> int:
    """Font dots per pixel: words stay about the same share of the image at every size."""
    return max(1, size // 64)


@dataclass(frozen=True)
class Thing:
    """One flat shape: centre (x, y) and half-side r as fractions of the image side, in an exact RGB colour.

    A triangle points up, its base and height both 2r, so every shape fills the box (x ± r, y ± r)."""

    shape: str
    rgb: tuple[int, int, int]
    x: float
    y: float
    r: float


@dataclass(frozen=True)
class Word:
    text: str
    x: float  # centre, as a fraction of the image side
    y: float


class Jitter:
    """Deterministic small variations from a seed and a name (no global RNG: nothing depends on call order)."""

    def __init__(self, seed: object) -> None:
        self.seed = str(seed)

    def unit(self, name: str) -> float:
        digest = hashlib.sha256(f"{self.seed}/{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def offset(self, name: str, amount: float) -> float:
        return (2 * self.unit(name) - 1) * amount

    def pick(self, name: str, n: int) -> int:
        return int(self.unit(name) * n)

    def shade(self, name: str, rgb: tuple[int, int, int], amount: int = 8) -> tuple[int, int, int]:
        """``rgb`` moved by up to ``amount`` per channel: the colour name stays plain to see."""
        r, g, b = (min(255, max(0, c + round(self.offset(f"{name}/{i}", amount)))) for i, c in enumerate(rgb))
        return r, g, b

    def background(self) -> tuple[int, int, int]:
        grey = 240 + self.pick("background", 16)
        return grey, grey, grey


def canvas(size: int, background: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (size, size), background)


def draw_thing(image: Image.Image, thing: Thing) -> None:
    side = image.size[0]
    cx, cy, r = round(thing.x * side), round(thing.y * side), max(2, round(thing.r * side))
    draw = ImageDraw.Draw(image)
    if thing.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=thing.rgb)
    elif thing.shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=thing.rgb)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=thing.rgb)


def draw_word(image: Image.Image, word: Word) -> None:
    """Black letters centred on (x, y), each font dot a square of ``text_scale`` pixels."""
    side = image.size[0]
    scale = text_scale(side)
    mask = np.kron(text_mask(word.text), np.ones((scale, scale), dtype=bool))
    top = round(word.y * side) - mask.shape[0] // 2
    left = round(word.x * side) - mask.shape[1] // 2
    pixels = np.array(image)
    ys, xs = np.nonzero(mask)
    ys, xs = ys + top, xs + left
    inside = (ys >= 0) & (ys < pixels.shape[0]) & (xs >= 0) & (xs < pixels.shape[1])
    pixels[ys[inside], xs[inside]] = INK
    image.paste(Image.fromarray(pixels, "RGB"))


def paint(size: int, background: tuple[int, int, int], things: Sequence[Thing], words: Sequence[Word]) -> Image.Image:
    image = canvas(size, background)
    for thing in things:
        draw_thing(image, thing)
    for word in words:
        draw_word(image, word)
    return image
