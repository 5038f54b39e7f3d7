"""The per-sample step of a run: a protocol hook.

The runner streams samples, keeps at most ``concurrency`` in flight, records each finished one and handles stops,
resume and faults; what happens to one sample is its protocol's ``run(sample)``: judge a pair (``pairwise``), make
the task's images (``generate``), judge images made before (``judge_images``). A step never writes the log itself
and never swallows a stop: it returns the sample's record, or raises (the runner records the sample's failure).
"""

from __future__ import annotations

from typing import Protocol as Interface

from rrbench.types import Sample, SampleResult


class SampleStep(Interface):
    """What a protocol does with one sample."""

    async def run(self, sample: Sample) -> SampleResult:
        """The sample's record: its answers, or its failure (a failed request is recorded, not raised)."""
        ...
