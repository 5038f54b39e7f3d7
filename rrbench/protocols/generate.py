"""The generate protocol: make a generation task's images for one sample and store them in the run directory.

Image ``i`` of a sample gets the seed ``task.seed_of(run seed, sample id, i)`` (the benchmark's convention where it
fixes one) or ``image_seed(run seed, sample id, i)``: a function of those alone, so batch size, ``--limit``, resume
and sharding never change an image. An image already made for the same request (sample, index, seed, generator
fingerprint) is taken from the run's image store, not made again: a resume regenerates only what is missing or
failed. The record lists every image (its index, seed, key and path, or its failure); a failed image is a trial
with that failure, so the sample counts as failed and a resume retries exactly its failed images.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from rrbench.generators._base import Generated, ImageRequest, image_seed
from rrbench.generators._pool import GeneratorPool
from rrbench.generators._ray import RayGeneratorPool
from rrbench.store import ImageStore
from rrbench.types import FailureKind, Judgement, Sample, SampleResult, Task, Trial, sniff_format


class GenerateStep:
    def __init__(self, task: Task, run_seed: int, pool: GeneratorPool | RayGeneratorPool, run_dir: Path) -> None:
        self.task, self.run_seed, self.pool = task, run_seed, pool
        self.store = ImageStore(run_dir)
        self.seed_of = task.seed_of or image_seed

    async def run(self, sample: Sample) -> SampleResult:
        start = time.perf_counter()
        n = self.task.images_per_prompt
        images = await asyncio.gather(*(self._image(sample, i) for i in range(n)))
        return generation_result(sample, list(images), start)

    async def _image(self, sample: Sample, index: int) -> dict[str, Any]:
        seed = int(self.seed_of(self.run_seed, sample.id, index))
        return await self.make(ImageRequest(sample.id, index, seed, sample.prompt, sample.source, sample.meta))

    async def make(self, request: ImageRequest) -> dict[str, Any]:
        """Image ``request.index`` of its sample: taken from the store if this request made it before, else made
        and stored; its record entry (index, seed, key, path) or its failure."""
        sample_id, index, seed = request.sample_id, request.index, request.seed
        entry: dict[str, Any] = {"index": index, "seed": seed}
        made = self.store.made(sample_id, index, seed, self.pool.fingerprint)
        if made is not None:
            self.pool.reused()
            return {**entry, **made}
        started = time.perf_counter()
        answer = await self.pool.submit(request)
        if not answer.ok:
            return {**entry, "failure": (answer.failure or FailureKind.ERROR).value,
                    "detail": answer.detail or "the generator returned no image"}
        if sniff_format(_png(answer)) != "png":  # a plug-in's bytes are checked, not trusted
            return {**entry, "failure": FailureKind.INVALID_IMAGE.value,
                    "detail": "the generator's bytes are not a PNG"}
        stored = await asyncio.to_thread(self.store.put, _png(answer), sample_id, index, seed, self.pool.fingerprint)
        return {**entry, **stored, "latency_s": round(time.perf_counter() - started, 6)}


def _png(answer: Generated) -> bytes:
    assert answer.png is not None
    return answer.png


def generation_result(sample: Sample, images: list[dict[str, Any]], start: float) -> SampleResult:
    """A generation record: every image's entry in index order; each failed image is a trial with its failure, so
    the sample counts as failed and a resume retries exactly its failed images."""
    trials = tuple(
        Trial((i,), (Judgement.failed(FailureKind(entry["failure"]), entry.get("detail", "")),), None,
              FailureKind(entry["failure"]))
        for i, entry in enumerate(images) if "failure" in entry
    )
    return SampleResult(
        sample_id=sample.id, label=sample.label, trials=trials, meta=sample.meta,
        latency_s=time.perf_counter() - start, prompt=sample.prompt, candidates=tuple(images),
        source=tuple(m.to_json() for m in sample.source),
    )
