"""A reward model that misbehaves on chosen prompts, for tests/test_scoring_ray.py (loaded through RRBENCH_PLUGINS,
in the driver and in every Ray actor alike).

``crashy-iqa`` scores as ``classical-iqa`` does, except that a batch holding a prompt containing ``exit_on`` ends its
process (``os._exit``: a segfault or an OOM kill as Ray sees it) the first time only (the file ``once`` is created
just before, so a rerun scores it), and a batch holding a prompt containing ``raise_on`` raises. ``batch_size`` sets
the queries per call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rrbench.models.classical_iqa import ClassicalIQA
from rrbench.registry import reward_model
from rrbench.types import Judgement, Query


class CrashyIQA(ClassicalIQA):
    name = "crashy-iqa"

    def __init__(self, exit_on: str, once: str, raise_on: str, batch_size: int) -> None:
        super().__init__()
        self.exit_on, self.once, self.raise_on, self.batch_size = exit_on, once, raise_on, batch_size

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        prompts = [q.prompt for q in queries]
        if self.exit_on and any(self.exit_on in p for p in prompts) and not Path(self.once).exists():
            Path(self.once).touch()
            os._exit(3)
        if self.raise_on and any(self.raise_on in p for p in prompts):
            raise RuntimeError(f"crashy-iqa cannot score {self.raise_on!r}")
        return super().score(queries)


@reward_model("crashy-iqa", description="test model: classical-iqa that exits (once) or raises on chosen prompts")
def crashy_iqa(exit_on: str = "", once: str = "", raise_on: str = "", batch_size: int = 4) -> CrashyIQA:
    return CrashyIQA(exit_on, once, raise_on, batch_size)
