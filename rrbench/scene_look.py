"""Reading `sanity-gen` images from their pixels: objects (colour, shape, centroid) and text.

The background is the most common colour; ink is any near-black pixel; every other pixel that differs plainly from
the background belongs to an object, and each 4-connected region of them is one object. An object's colour is the
palette colour nearest its median pixel, and its shape follows from how much of its bounding box it fills (square
1, circle pi/4, triangle 1/2). Text is read by matching the ink against a rendering of the expected word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from rrbench.scene import COLOURS
from rrbench.scene_paint import text_mask

INK_MAX = 80  # a pixel whose every channel is below this is ink; no palette colour comes near
OBJECT_DIFF = 40  # an object pixel differs from the background by more than this in some channel
MIN_AREA_SHARE = 0.0004  # smaller regions are specks, not objects
COLOUR_DISTANCE = 90.0  # farther than this from every palette colour: no colour name
SQUARE_FILL, CIRCLE_FILL, TRIANGLE_FILL = 0.9, 0.64, 0.35  # lower bounds of the fill ratio


@dataclass(frozen=True, eq=False)
class Blob:
    """One object found in an image: its pixels, centroid (fractions of width and height), colour and shape."""

    mask: np.ndarray
    area: int
    x: float  # centroid, in pixel indices over the width (the drawn centre of a circle or square)
    y: float
    box: tuple[int, int, int, int]  # top, left, bottom, right (exclusive), in pixels
    rgb: tuple[int, int, int]
    colour: str | None
    shape: str | None

    def half_side(self) -> float:
        """Half the width of its bounding box as a fraction of the image width: the ``r`` it was drawn with."""
        return (self.box[3] - self.box[1] - 1) / 2 / self.mask.shape[1]

    def box_centre(self) -> tuple[float, float]:
        """The centre of its bounding box (fractions): where it was drawn, unlike the centroid of a triangle."""
        height, width = self.mask.shape
        return (self.box[1] + self.box[3] - 1) / 2 / width, (self.box[0] + self.box[2] - 1) / 2 / height


@dataclass(frozen=True, eq=False)
class View:
    """What a judge (or the painter, for a source image) sees in an image."""

    width: int
    height: int
    background: tuple[int, int, int]
    blobs: tuple[Blob, ...]  # largest first
    ink: np.ndarray

    def largest(self, shape: str | None = None) -> Blob | None:
        """The largest object, or the largest of this shape: "the circle" of a testpoint."""
        return next((b for b in self.blobs if shape is None or b.shape == shape), None)

    def ink_centre(self) -> tuple[float, float] | None:
        ys, xs = np.nonzero(self.ink)
        if not ys.size:
            return None
        return (xs.min() + xs.max() + 1) / 2 / self.width, (ys.min() + ys.max() + 1) / 2 / self.height


def look(image: Image.Image) -> View:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    height, width = pixels.shape[:2]
    background = _most_common(pixels)
    ink = pixels.max(axis=2) < INK_MAX
    objects = (np.abs(pixels - np.array(background, dtype=np.int16)).max(axis=2) > OBJECT_DIFF) & ~ink
    return View(width, height, background, _blobs(pixels, objects), ink)


def _most_common(pixels: np.ndarray) -> tuple[int, int, int]:
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    top = int(values[np.argmax(counts)])
    return top >> 16, (top >> 8) & 255, top & 255


def _blobs(pixels: np.ndarray, objects: np.ndarray) -> tuple[Blob, ...]:
    from scipy import ndimage  # imported on use, like scipy.stats elsewhere: listing plug-ins stays fast

    labels, _ = ndimage.label(objects)
    min_area = max(4.0, MIN_AREA_SHARE * objects.size)
    out = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels == index
        area = int(mask.sum())
        if area < min_area:
            continue
        out.append(_blob(pixels, mask, area, box))
    return tuple(sorted(out, key=lambda b: -b.area))


def _blob(pixels: np.ndarray, mask: np.ndarray, area: int, box: tuple[slice, slice]) -> Blob:
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    r, g, b = (int(v) for v in np.median(pixels[mask], axis=0))
    top, bottom, left, right = box[0].start, box[0].stop, box[1].start, box[1].stop
    return Blob(mask, area, xs.mean() / width, ys.mean() / height, (top, left, bottom, right),
                (r, g, b), colour_name((r, g, b)), shape_name(area / ((bottom - top) * (right - left))))


def colour_name(rgb: tuple[int, int, int]) -> str | None:
    distances = {name: float(np.linalg.norm(np.subtract(rgb, ref))) for name, ref in COLOURS.items()}
    name = min(distances, key=lambda n: distances[n])
    return name if distances[name] <= COLOUR_DISTANCE else None


def shape_name(fill: float) -> str | None:
    if fill >= SQUARE_FILL:
        return "square"
    if fill >= CIRCLE_FILL:
        return "circle"
    return "triangle" if fill >= TRIANGLE_FILL else None


def text_match(ink: np.ndarray, word: str) -> float:
    """How well the ink reads as ``word``: the overlap (intersection over union) of the ink's bounding box with the
    word's rendering stretched to that box. The right word at any whole font scale gives exactly 1."""
    observed = _trim(ink)
    if observed is None:
        return 0.0
    template = _trim(text_mask(word))
    assert template is not None
    rows = np.arange(observed.shape[0]) * template.shape[0] // observed.shape[0]
    cols = np.arange(observed.shape[1]) * template.shape[1] // observed.shape[1]
    return mask_iou(observed, template[np.ix_(rows, cols)])


def _trim(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if not ys.size:
        return None
    return mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.logical_or(a, b).sum())
    return int(np.logical_and(a, b).sum()) / union if union else 1.0
