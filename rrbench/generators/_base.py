"""The generator interface every image generator implements (diffusers pipelines, the offline painter, ...).

A generator turns image requests into encoded images. Each request carries its own seed, derived from the run seed,
the sample id and the image index (``image_seed``), and a generator must make the image from that seed alone: one
CPU ``torch.Generator`` per image, never one shared by a batch. Then batch size, ``--limit``, resume and sharding
never change an image, and a run can be checked image by image against another.

A failure of one image (out of memory, NaN or an all-black output, a pipeline that raises on this prompt) is that
image's ``Generated.failed(...)``; the run records it and goes on. Set-up faults (missing weights, a ``-G`` key the
pipeline does not take, an editing generator on a text-to-image task) are ``UserError``s raised by the factory or
``start``: one line, exit 2.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rrbench.types import FailureKind, Media, UserError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from rrbench.doctor import FileNeed

SEED_BITS = 63  # torch.Generator.manual_seed takes any int below 2**64; 63 bits stay positive in every language


def image_seed(run_seed: int, sample_id: str, index: int) -> int:
    """The seed of image ``index`` of sample ``sample_id``: a function of these three only (docs/generation.md)."""
    digest = hashlib.sha256(f"rrbench-image:{run_seed}:{sample_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


def redraw_seed(run_seed: int, sample_id: str, index: int, draw: int) -> int:
    """The seed of the ``draw``-th fresh draw of an image (test-time refine with a refiner that asks for a new
    sample, such as the identity refiner); draw 0 is the image's own seed, ``image_seed``."""
    if draw == 0:
        return image_seed(run_seed, sample_id, index)
    digest = hashlib.sha256(f"rrbench-redraw:{run_seed}:{sample_id}:{index}:{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


@dataclass(frozen=True)
class ImageRequest:
    """One image to make: image ``index`` of the sample, with its own seed; ``source`` holds the images to edit.

    ``draw`` counts fresh draws of this image slot: 0 for the first image, n for the n-th redraw with a new seed
    (test-time refine). A diffusion pipeline needs only the seed; the offline painter, whose errors are a rule of
    the image index, uses it to draw as another image would."""

    sample_id: str
    index: int
    seed: int
    prompt: str
    source: tuple[Media, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    draw: int = 0


@dataclass(frozen=True)
class Generated:
    """One image made (``png``: its encoded bytes) or why not (``failure`` and a one-line ``detail``)."""

    png: bytes | None = None
    failure: FailureKind | None = None
    detail: str | None = None

    @classmethod
    def failed(cls, kind: FailureKind, detail: str) -> Generated:
        return cls(failure=kind, detail=" ".join(detail.split())[:2000])

    @classmethod
    def from_image(cls, image: PILImage.Image) -> Generated:
        """Encode as PNG (lossless, so the stored bytes are the pixels the generator made)."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return cls(png=buffer.getvalue())

    @property
    def ok(self) -> bool:
        return self.failure is None and self.png is not None


class Generator:
    """Base class. Subclasses set ``name`` and ``kinds`` and implement ``generate`` (and ``start`` to load).

    ``kinds`` are the task generation kinds the generator serves: ("t2i",) for text-to-image, ("edit",) for
    editing. ``config`` holds the ``-G`` arguments as given; ``settings()`` the call settings in effect, the
    pipeline's own defaults filled in, which run.json records.
    """

    name: ClassVar[str] = "generator"
    kinds: ClassVar[tuple[str, ...]] = ("t2i",)
    batch_size: int = 1  # images per call; a pipeline that refuses batches keeps 1
    workdir: Any = None  # the run directory, set by the runner

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)

    # -- identity ---------------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The call settings in effect (steps, guidance, size, dtype, LoRA, ...), JSON-serialisable."""
        return dict(self.config)

    def fingerprint(self) -> str:
        """Identity of weights + settings: equal fingerprints must give equal images for equal requests."""
        blob = json.dumps({"generator": self.name, "settings": self.settings()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What run.json records about the generator (never secrets)."""
        return {"name": self.name, "kinds": list(self.kinds), "config": self.config, "settings": self.settings(),
                "fingerprint": self.fingerprint()}

    def needs(self) -> list[FileNeed]:
        """The files ``start`` loads (for ``rrbench doctor`` and the checks before a run)."""
        return []

    def check_kind(self, generation: str) -> None:
        if generation not in self.kinds:
            want = "an image-editing" if generation == "edit" else "a text-to-image"
            raise UserError(f"generator '{self.name}' makes {'/'.join(self.kinds)} images; this task needs {want} "
                            f"generator ({generation})")

    # -- life cycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load weights (once). Called before the first request, so a missing file fails at once."""

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        """One ``Generated`` per request, in order; each image from its request's seed alone."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``start`` took."""
