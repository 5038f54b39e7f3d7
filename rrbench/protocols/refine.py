"""The per-sample steps of test-time Generate-Critique-Refine (``rrbench refine``; the stages are in rrbench/refine/).

* ``CritiqueStep``: the critic reads each image a generation stage made (with the source for an edit) and answers
  with per-aspect scores and a refined request. It waits for the sample's images (``StageSource``) while the
  generation stage runs beside it, so critiquing sample i overlaps making sample i+1.
* ``RegenerateStep``: makes again the images a round's plan names (``Sample.meta["refine"]``), each from its own
  request and seed; the other images of the sample are recorded as not made in this round.
* ``AssembleStep``: the final set after a round, one image per image slot: the chosen image of each slot (kept or
  regenerated) copied into the run's own store, so the set is an ordinary generation run that any judge reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench.generators._base import ImageRequest
from rrbench.protocols.generate import GenerateStep, generation_result
from rrbench.protocols.judge_images import Image, ImageSource, readable, run_images
from rrbench.protocols.pairwise import shown_variables
from rrbench.store import ImageStore
from rrbench.types import (
    DataError,
    FailureKind,
    Media,
    Prediction,
    Protocol,
    Query,
    Sample,
    SampleResult,
    Task,
    Trial,
)

if TYPE_CHECKING:
    from rrbench.dispatch import Dispatcher
    from rrbench.generators._pool import GeneratorPool
    from rrbench.generators._ray import RayGeneratorPool

# The critique stage's protocol: the critic's own pointwise critique of each image, for any generation task. Its
# numbers are the refine summary's (per-aspect means, how many were kept), not a benchmark's: no metric here.
CRITIQUE = Protocol(id="refine-critique", mode="pointwise", metrics=())
NOT_MADE = "not regenerated"  # a regeneration round's entry for an image slot it left as it was
ASSEMBLED = "refine-final"  # the image-store fingerprint of images copied into a final set


class Relay:
    """The records of a generation stage, handed to the critique stage beside it as each one is written."""

    def __init__(self, results: Iterable[SampleResult] = (), *, closed: bool = False) -> None:
        self._results = {r.sample_id: r for r in results}
        self._waiting: dict[str, asyncio.Future[SampleResult | None]] = {}
        self.closed = closed

    def put(self, result: SampleResult) -> None:
        self._results[result.sample_id] = result
        waiter = self._waiting.pop(result.sample_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def close(self) -> None:
        """The stage has ended: a sample it never recorded will not come."""
        self.closed = True
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()

    async def get(self, sample_id: str) -> SampleResult | None:
        if sample_id in self._results or self.closed:
            return self._results.get(sample_id)
        waiter = self._waiting.get(sample_id)
        if waiter is None:
            waiter = self._waiting[sample_id] = asyncio.get_running_loop().create_future()
        return await waiter


class StageSource(ImageSource):
    """The images of a generation stage of the same refine (its run directory), as the stage records them."""

    def __init__(self, root: Path, spec_hash: str, relay: Relay, stopped: asyncio.Event | None = None) -> None:
        self.root, self.spec_hash, self.relay = root.resolve(), spec_hash, relay
        self.stopped = stopped

    def identity(self) -> str:
        return f"run:{self.spec_hash}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "generation-run", "path": str(self.root), "spec_hash": self.spec_hash, "stage": "refine"}

    async def record(self, sample: Sample) -> SampleResult | None:
        result = await self.relay.get(sample.id)
        if result is None and self.stopped is not None and self.stopped.is_set():
            # The generation stage stopped before this sample (Ctrl-C, a failure): it is in flight, not failed.
            raise asyncio.CancelledError("the generation stage stopped before this sample")
        return result

    async def fetch(self, sample: Sample, n: int) -> list[Image]:
        return run_images(self.root, await self.record(sample), n)


class CritiqueStep:
    """The critic's critique of each image a generation stage made for the sample (none of the slots it left)."""

    def __init__(self, task: Task, dispatcher: Dispatcher, source: StageSource) -> None:
        self.task, self.dispatcher, self.source = task, dispatcher, source

    async def run(self, sample: Sample) -> SampleResult:
        start = time.perf_counter()
        images = [image for image in await self.source.fetch(sample, self.task.images_per_prompt)
                  if image.entry.get("refine") != NOT_MADE]
        trials = await asyncio.gather(*(self._trial(sample, image) for image in images))
        return SampleResult(
            sample_id=sample.id, label=sample.label, trials=tuple(trials), meta=sample.meta,
            latency_s=time.perf_counter() - start, prompt=sample.prompt,
            candidates=tuple(_listed(images, self.task.images_per_prompt)),
            source=tuple(m.to_json() for m in sample.source),
        )

    async def _trial(self, sample: Sample, image: Image) -> Trial:
        order = (image.index,)
        media = await readable(image)
        if isinstance(media, Trial):
            return media
        judgement = await self.dispatcher.submit("score", self._query(sample, image, media))
        if judgement.failure is not None:
            return Trial(order, (judgement,), None, judgement.failure)
        score = judgement.scores[0] if judgement.scores else None
        return Trial(order, (judgement,), Prediction((score,)) if score is not None else None)

    def _query(self, sample: Sample, image: Image, media: Media) -> Query:
        variables = shown_variables(sample, self.task.prompt_vars, (0,))
        made_from = image.entry.get("prompt")
        if isinstance(made_from, str) and made_from != sample.prompt:
            # A later round's image was made from a refined request: a critic that refines step by step reads it
            # (the benchmark prompt stays what the image is judged against).
            variables += (("request", made_from),)
        return Query(sample.prompt, (media,), sample.source, self.task.generation, sample.id, None, variables)


def _listed(images: list[Image], n: int) -> list[dict[str, Any]]:
    """The record's candidate list: every slot in index order, the critiqued ones with their entry."""
    by_index = {image.index: dict(image.entry) for image in images}
    return [by_index.get(i, {"index": i, "refine": NOT_MADE}) for i in range(n)]


class RegenerateStep:
    """Makes the images ``sample.meta["refine"]["images"]`` plans (index, request, seed, draw), nothing else."""

    def __init__(self, task: Task, pool: GeneratorPool | RayGeneratorPool, run_dir: Path) -> None:
        self.task, self.maker = task, GenerateStep(task, 0, pool, run_dir)

    async def run(self, sample: Sample) -> SampleResult:
        start = time.perf_counter()
        plan = {int(p["index"]): p for p in sample.meta["refine"]["images"]}
        made = await asyncio.gather(*(self._image(sample, p) for p in plan.values()))
        by_index = dict(zip(plan, made, strict=True))
        entries = [by_index.get(i, {"index": i, "refine": NOT_MADE}) for i in range(self.task.images_per_prompt)]
        return generation_result(sample, entries, start)

    async def _image(self, sample: Sample, planned: Mapping[str, Any]) -> dict[str, Any]:
        request = ImageRequest(sample.id, int(planned["index"]), int(planned["seed"]), str(planned["prompt"]),
                               sample.source, sample.meta, int(planned["draw"]))
        entry = await self.maker.make(request)
        return {**entry, "prompt": request.prompt, "draw": request.draw}


class AssembleStep:
    """Copies each slot's chosen image (``sample.meta["refine"]["images"]``) into the final set's own store."""

    def __init__(self, task: Task, output: Path, run_dir: Path) -> None:
        self.task, self.output, self.store = task, output, ImageStore(run_dir)

    async def run(self, sample: Sample) -> SampleResult:
        start = time.perf_counter()
        chosen = sorted(sample.meta["refine"]["images"], key=lambda c: int(c["index"]))
        entries = [await asyncio.to_thread(self._copy, sample.id, choice) for choice in chosen]
        return generation_result(sample, entries, start)

    def _copy(self, sample_id: str, choice: Mapping[str, Any]) -> dict[str, Any]:
        entry = dict(choice["entry"])
        kept = {k: entry[k] for k in ("index", "seed", "prompt", "draw") if k in entry}
        label = {"round": choice["round"], "outcome": choice["outcome"]}
        if "failure" in entry or not isinstance(entry.get("path"), str):
            detail = entry.get("detail") or "the image was not made"
            return {**kept, **label, "failure": entry.get("failure", FailureKind.DATA.value), "detail": detail}
        root = self.output / str(choice["run"])
        try:
            data = Media.from_path(root / entry["path"], root=root).loaded().read_bytes()
        except DataError as exc:
            return {**kept, **label, "failure": FailureKind.DATA.value, "detail": str(exc)}
        stored = self.store.put(data, sample_id, int(entry["index"]), int(entry.get("seed", 0)), ASSEMBLED)
        return {**kept, **stored, **label}
