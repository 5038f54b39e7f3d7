"""A generator that misbehaves on chosen prompts, for tests/test_generation_ray.py (loaded through RRBENCH_PLUGINS,
in the driver and in every Ray actor alike).

``crashy`` paints as ``painter`` does, except that a batch holding a prompt containing ``exit_on`` ends its process
(``os._exit``: a segfault or an OOM kill as Ray sees it), one containing ``raise_on`` raises, one containing ``hang_on``
never returns (a deadlocked forward pass), and ``fail_start`` makes ``start`` raise a UserError (missing weights, say).
``batch_size`` sets the images per call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from rrbench.generators._base import Generated, ImageRequest
from rrbench.generators.painter import Painter
from rrbench.registry import generator
from rrbench.types import UserError


class Crashy(Painter):
    name = "crashy"

    def __init__(self, exit_on: str = "", raise_on: str = "", hang_on: str = "", fail_start: bool = False,
                 batch_size: int = 4, size: int = 64) -> None:
        super().__init__(size=size)
        self.config.update(exit_on=exit_on, raise_on=raise_on, hang_on=hang_on, fail_start=fail_start,
                           batch_size=batch_size)
        self.exit_on, self.raise_on, self.hang_on = exit_on, raise_on, hang_on
        self.fail_start, self.batch_size = fail_start, batch_size

    def start(self) -> None:
        if self.fail_start:
            raise UserError("crashy: weights not found at /nowhere (fail_start)")

    def generate(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        prompts = [r.prompt for r in requests]
        if self.exit_on and any(self.exit_on in p for p in prompts):
            os._exit(3)
        if self.raise_on and any(self.raise_on in p for p in prompts):
            raise RuntimeError(f"crashy cannot paint {self.raise_on!r}")
        if self.hang_on and any(self.hang_on in p for p in prompts):
            threading.Event().wait()  # forever
        return super().generate(requests)


@generator("crashy", description="test generator: painter that exits or raises on chosen prompts")
def crashy(exit_on: str = "", raise_on: str = "", hang_on: str = "", fail_start: bool = False, batch_size: int = 4,
           size: int = 64) -> Crashy:
    return Crashy(exit_on=exit_on, raise_on=raise_on, hang_on=hang_on, fail_start=fail_start, batch_size=batch_size,
                  size=size)
