"""Generation sharded over Ray actors: the runner's door to ``shards`` copies of one generator (docs/generation-ray.md).

``RayGeneratorPool`` answers to the runner exactly as ``GeneratorPool`` does. Requests of the samples in flight are
batched by the same ``dispatch.Batcher`` (up to the generator's ``batch_size``, as many batches at a time as there are
shards), and each batch goes to a free actor; each actor builds the generator from the registry by name and
arguments and starts it once. Every image is made from its request's own seed, so which actor makes it, and next to
which batch-mates, never changes its bytes.

Failures stay as small as they can: a batch that raised on an actor is retried one image at a time (by the Batcher),
an actor that dies fails only the images of the batch it held (``error``, with Ray's reason) and is started again
while the others go on, and a call past its deadline kills its actor, which a thread never could. The driver stays
the one writer of the run directory: the actors only send back PNG bytes. The Ray side (cluster, actors, restarts)
is rrbench._ray_pool's, shared with scalar scoring on Ray (rrbench.models._ray).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench import registry
from rrbench._ray_pool import LOCAL_OBJECT_STORE_BYTES, ActorBody, ActorPool, Identity
from rrbench.dispatch import DEFAULT_CALL_TIMEOUT_S, Answers, Batcher
from rrbench.generators._base import Generated, Generator, ImageRequest
from rrbench.types import Media

__all__ = ["LOCAL_OBJECT_STORE_BYTES", "RayGeneratorPool"]


@dataclass(frozen=True)
class _Wire:
    """An ``ImageRequest`` as it travels to an actor: source images as their encoded bytes, never a local path."""

    sample_id: str
    index: int
    seed: int
    prompt: str
    source: tuple[tuple[bytes, str | None], ...]
    meta: dict[str, Any]
    draw: int = 0

    @classmethod
    def of(cls, request: ImageRequest) -> _Wire:
        source = tuple((m.read_bytes(), m.format) for m in request.source)
        return cls(request.sample_id, request.index, request.seed, request.prompt, source, dict(request.meta),
                   request.draw)

    def request(self) -> ImageRequest:
        source = tuple(Media.from_bytes(data, fmt) for data, fmt in self.source)
        return ImageRequest(self.sample_id, self.index, self.seed, self.prompt, source, self.meta, self.draw)


class _Shard(ActorBody):
    """One Ray actor's generator, built and started once."""

    kind = "generator"

    def started(self, plugin: Any, start: Any) -> Identity:
        generator: Generator = plugin
        identity = generator.fingerprint(), generator.describe()  # before start, as an in-process pool takes it
        generator.start()
        return identity

    def generate(self, wires: list[_Wire]) -> list[Generated]:
        assert self.plugin is not None
        generator: Generator = self.plugin
        return generator.generate([w.request() for w in wires])


class RayGeneratorPool:
    """``GeneratorPool`` over ``shards`` Ray actors. ``address``: a running cluster (``ray start``; ``auto`` finds the
    one on this machine); None starts a local Ray for this run and stops it at ``aclose``. ``astart`` starts the
    actors (the runner awaits it where it would call ``generator.start()``); a ``submit`` before it starts them too."""

    def __init__(self, generator_name: str, generator_args: Mapping[str, Any], *, shards: int,
                 address: str | None = None, call_timeout_s: float | None = None,
                 on_interrupt: Callable[[BaseException], None] | None = None) -> None:
        self._actors = ActorPool(_Shard, generator_name, dict(generator_args), shards=shards, address=address)
        self.generator_name, self.generator_args = generator_name, dict(generator_args)
        self.shards, self.address = shards, address
        # Built here only for its identity and batch size; its weights load in the actors, never in the driver.
        generator = registry.get("generator", generator_name).build(**self.generator_args)
        self._driver = generator.fingerprint(), generator.describe()
        deadline = DEFAULT_CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        self._batcher: Batcher[ImageRequest, Generated] = Batcher(
            self._call, generator.batch_size, shards, call_timeout_s=deadline or None, on_interrupt=on_interrupt,
            answers=Answers(Generated, Generated.failed, lambda answer, _latency: answer))
        self.cache_hits = 0
        self.abandoned_calls = 0

    @property
    def fingerprint(self) -> str:
        """The images' fingerprint: the actors' once started (the driver's until then)."""
        return (self._actors.identity or self._driver)[0]

    @property
    def restarts(self) -> int:
        """Actors started again after one died."""
        return self._actors.restarts

    @property
    def model_calls(self) -> int:
        return self._batcher.calls

    async def astart(self, workdir: Path | None = None) -> None:
        """Connect to (or start) Ray and start every actor; a start-up fault of the generator is raised here."""
        await self._actors.astart(workdir)

    def describe(self) -> dict[str, Any]:
        """The generator as the actors built it (its device and dtype are theirs, not the driver's), for run.json;
        the driver's own until the actors have started."""
        return self._actors.describe(self._driver[1])

    async def aclose(self) -> None:
        self._actors.closing()  # the calls the batcher cancels now are not stuck actors to replace
        await self._batcher.aclose()
        await self._actors.aclose()

    async def submit(self, request: ImageRequest) -> Generated:
        await self.astart()  # at once when started; a start that failed fails every submit, never hangs one
        answer = await self._batcher.submit(request)
        self.abandoned_calls = self._batcher.abandoned
        return answer

    def reused(self) -> None:
        self.cache_hits += 1

    async def _call(self, requests: Sequence[ImageRequest]) -> list[Generated]:
        wires = await asyncio.to_thread(lambda: [_Wire.of(r) for r in requests])  # reads files: not on the loop
        return await self._actors.call("generate", wires, Generated.failed, "making")
