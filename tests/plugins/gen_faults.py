"""Generators for tests/test_generation_runs.py, loaded through RRBENCH_PLUGINS as a third party's would be.

``logged-painter`` paints as ``painter`` does and appends ``<sample id> <index>`` to ``$RRBENCH_TEST_GENLOG`` for
every image it makes (sleeping ``$RRBENCH_TEST_GEN_SLEEP`` seconds first), so a test can count generator calls
across sessions and kills. ``flaky-painter`` fails (out of memory) the images named in ``$RRBENCH_TEST_FAILS``
(``id:index`` comma-separated), ``edit-only`` serves editing tasks only, ``junk-bytes`` returns bytes that are not
an image, and ``nan-painter`` fails every image of samples whose id contains ``count`` as NaN output would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from rrbench.generators._base import Generated, ImageRequest
from rrbench.generators.painter import Painter
from rrbench.registry import generator
from rrbench.types import FailureKind


class LoggedPainter(Painter):
    name = "logged-painter"
    batch_size = 2  # images come back (and are stored) per call: a kill loses at most the call in flight

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        out = []
        for request in requests:
            time.sleep(float(os.environ.get("RRBENCH_TEST_GEN_SLEEP", "0")))
            out += super().generate([request])
            with open(os.environ["RRBENCH_TEST_GENLOG"], "a") as log:
                log.write(f"{request.sample_id} {request.index}\n")
        return out


class FlakyPainter(Painter):
    name = "flaky-painter"

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        failing = set(filter(None, os.environ.get("RRBENCH_TEST_FAILS", "").split(",")))
        return [Generated.failed(FailureKind.OOM, "CUDA out of memory (injected)")
                if f"{r.sample_id}:{r.index}" in failing else Painter.generate(self, [r])[0] for r in requests]


class EditOnly(Painter):
    name = "edit-only"
    kinds = ("edit",)


class JunkBytes(Painter):
    name = "junk-bytes"

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        return [Generated(png=b"GIF89a not really") for _ in requests]


class NanPainter(Painter):
    name = "nan-painter"

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        return [Generated.failed(FailureKind.INVALID_IMAGE, "the image holds NaN values")
                if "count" in r.sample_id else Painter.generate(self, [r])[0] for r in requests]


@generator("logged-painter", description="painter that logs every image it makes (tests)")
def logged_painter(error_rate: float = 0.0) -> LoggedPainter:
    return LoggedPainter(error_rate=error_rate)


@generator("flaky-painter", description="painter that runs out of memory on chosen images (tests)")
def flaky_painter() -> FlakyPainter:
    return FlakyPainter()


@generator("edit-only", description="an editing-only generator (tests)")
def edit_only() -> EditOnly:
    return EditOnly()


@generator("junk-bytes", description="a generator whose bytes are not an image (tests)")
def junk_bytes() -> JunkBytes:
    return JunkBytes()


@generator("nan-painter", description="painter whose count scenes come out as NaN (tests)")
def nan_painter() -> NanPainter:
    return NanPainter()
