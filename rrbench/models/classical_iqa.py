"""`classical-iqa`: a no-reference image-quality score from classical, published measures, in plain numpy.

It never reads the prompt, so it can only tell a clean photo from a damaged one; on prompt faithfulness it is at
chance by design. That makes it the honest floor a learned reward model has to beat, and a working offline demo.

Measures (on the luminance ``Y`` in [0, 255], after scaling the image down to about ``size`` x ``size`` pixels):

* noise ``sigma`` -- Immerkær (1996), "Fast noise variance estimation", CVIU 64(2): the mean absolute response to
  the difference-of-Laplacians mask ``N`` times sqrt(pi/2) / 6. Fine texture reads as noise too.
* ``sharpness`` -- variance of the Laplacian (Pech-Pacheco et al. 2000, "Diatom autofocusing in brightfield
  microscopy", ICPR), minus ``20 sigma^2``: white noise of deviation sigma adds exactly that much (20 is the
  squared norm of the 4-neighbour Laplacian), so noise is not mistaken for detail.
* ``contrast`` -- RMS contrast, the standard deviation of ``Y`` / 255 (Peli 1990, JOSA A 7(10)).
* ``blockiness`` -- mean absolute luminance step across the 8-pixel JPEG block grid over the mean step elsewhere
  (the boundary-difference idea of Wang, Sheikh & Bovik 2002, "No-reference perceptual quality assessment of JPEG
  compressed images", ICIP), measured at the image's own resolution where the grid lies; about 1 when clean.
* ``colour_cast`` -- distance of the mean chroma from grey over the chroma spread, in the opponent axes rg and yb
  (the cast factor of Gasparini & Schettini 2004, "Color balancing of digital photos using simple image
  statistics", Pattern Recognition 37(6), on the grey-world assumption).
* ``colourfulness`` -- Hasler & Süsstrunk (2003), "Measuring colourfulness in natural images", SPIE 5007. Recorded
  only: it also rises with colour casts and colour noise, so it would reward the very damage scored below.

Score (higher is better)::

    log10(1 + sharpness) + log10(contrast + 0.001) - 1.5 log10(1 + sigma)
        - 3 log10(max(blockiness, 1)) - log10(1 + colour_cast)

Each term is a logarithm so that a change by a constant factor counts the same whatever the photo's content; the
weights only set the exchange rate between defects (for example, noise must not win over the sharpness it seems to
add). A corrupt image becomes a DATA failure for its query alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import DataError, FailureKind, Judgement, Query, UserError

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
_NOISE_MASK = ((1, -2, 1), (-2, 4, -2), (1, -2, 1))
_LAPLACIAN = ((0, 1, 0), (1, -4, 1), (0, 1, 0))
_LAPLACIAN_NOISE_GAIN = 20.0  # sum of the squared Laplacian weights
_BLOCK = 8  # JPEG block size
_MIN_SIDE = 16
WEIGHTS = {"sharpness": 1.0, "contrast": 1.0, "noise": -1.5, "blockiness": -3.0, "colour_cast": -1.0}


def measure(img: Image.Image, size: int = 256) -> dict[str, float]:
    """The per-aspect values of one RGB image."""
    if min(img.size) < _MIN_SIDE:
        raise DataError(f"image of {img.size[0]}x{img.size[1]} pixels is too small to judge")
    blockiness = _blockiness(_luma(np.asarray(img, dtype=np.float64)))
    rgb = np.asarray(_resized(img, size), dtype=np.float64)
    y = _luma(rgb)
    sigma = _noise_sigma(y)
    sharpness = max(float(_filter3(y, _LAPLACIAN).var()) - _LAPLACIAN_NOISE_GAIN * sigma**2, 0.0)
    return {
        "sharpness": sharpness,
        "noise": sigma,
        "contrast": float(y.std()) / 255.0,
        "blockiness": blockiness,
        "colour_cast": _colour_cast(rgb),
        "colourfulness": _colourfulness(rgb),
    }


def combine(aspects: dict[str, float]) -> float:
    """One score from the measures (see the module docstring for the formula and its reasons)."""
    return (
        WEIGHTS["sharpness"] * math.log10(1.0 + aspects["sharpness"])
        + WEIGHTS["contrast"] * math.log10(aspects["contrast"] + 1e-3)
        + WEIGHTS["noise"] * math.log10(1.0 + aspects["noise"])
        + WEIGHTS["blockiness"] * math.log10(max(aspects["blockiness"], 1.0))
        + WEIGHTS["colour_cast"] * math.log10(1.0 + aspects["colour_cast"])
    )


def _resized(img: Image.Image, size: int) -> Image.Image:
    """Scale down to about size x size pixels (aspect kept), so that large images cost no more than small ones.

    Never up: interpolation would smooth the noise, which then looks like detail to the noise-compensated
    sharpness. BOX averages the pixels it merges, as a smaller sensor would.
    """
    scale = size / math.sqrt(img.size[0] * img.size[1])
    if scale >= 1.0:
        return img
    new = (max(_MIN_SIDE, round(img.size[0] * scale)), max(_MIN_SIDE, round(img.size[1] * scale)))
    return img.resize(new, Image.Resampling.BOX)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _LUMA


def _filter3(y: np.ndarray, kernel: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """3x3 correlation over the valid region (both kernels are symmetric, so it equals convolution)."""
    h, w = y.shape
    out = np.zeros((h - 2, w - 2))
    for i, row in enumerate(kernel):
        for j, weight in enumerate(row):
            if weight:
                out += weight * y[i : i + h - 2, j : j + w - 2]
    return out


def _noise_sigma(y: np.ndarray) -> float:
    return math.sqrt(math.pi / 2) * float(np.abs(_filter3(y, _NOISE_MASK)).mean()) / 6.0


def _blockiness(y: np.ndarray) -> float:
    horizontal = np.abs(np.diff(y, axis=1)).mean(axis=0)  # step between column x and x+1
    vertical = np.abs(np.diff(y, axis=0)).mean(axis=1)
    return 0.5 * (_grid_ratio(horizontal) + _grid_ratio(vertical))


def _grid_ratio(steps: np.ndarray) -> float:
    on_grid = (np.arange(steps.size) % _BLOCK) == _BLOCK - 1  # steps from pixel 7 to 8, 15 to 16, ...
    return float(steps[on_grid].mean()) / (float(steps[~on_grid].mean()) + 1e-6)


def _opponent(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return r - g, 0.5 * (r + g) - b


def _colour_cast(rgb: np.ndarray) -> float:
    rg, yb = _opponent(rgb)
    # +1 keeps a pure grey image (no spread, no offset) at 0 instead of 0/0.
    return math.hypot(float(rg.mean()), float(yb.mean())) / (math.hypot(float(rg.std()), float(yb.std())) + 1.0)


def _colourfulness(rgb: np.ndarray) -> float:
    rg, yb = _opponent(rgb)
    spread = math.hypot(float(rg.std()), float(yb.std()))
    return spread + 0.3 * math.hypot(float(rg.mean()), float(yb.mean()))


class ClassicalIQA(RewardModel):
    name = "classical-iqa"
    batch_size = 8

    def __init__(self, size: int = 256) -> None:
        super().__init__(size=size)
        self.size = size

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._judge(q) for q in queries]

    def _judge(self, query: Query) -> Judgement:
        try:
            aspects = measure(query.candidates[0].image(), self.size)
        except DataError as exc:  # one broken image fails its own query, never the batch
            return Judgement.failed(FailureKind.DATA, str(exc))
        return Judgement(scores=(combine(aspects),), aspects=({k: round(v, 6) for k, v in aspects.items()},))


@reward_model("classical-iqa", description="baseline: no-reference quality from classical measures (numpy, no weights)")
def classical_iqa(size: int = 256) -> RewardModel:
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 4096:
        raise UserError(f"classical-iqa: size must be an integer from 32 to 4096, got {size!r}")
    return ClassicalIQA(size=size)
