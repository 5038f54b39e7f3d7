from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from rrbench.dispatch import Batcher, Dispatcher
from rrbench.models._base import RewardModel
from rrbench.store import NullCache, ResponseCache
from rrbench.types import DataError, FailureKind, Judgement, Media, Query


def _query(i: int) -> Query:
    return Query(f"prompt {i}", (Media.from_bytes(f"\x89PNG{i}".encode()),), sample_id=f"s{i}")


def test_batches_form_while_the_model_is_busy_and_respect_the_size() -> None:
    sizes: list[int] = []

    async def call(queries: Sequence[Query]) -> list[Judgement]:
        sizes.append(len(queries))
        await asyncio.sleep(0.01)
        return [Judgement(scores=(float(q.prompt.split()[1]),)) for q in queries]

    async def main() -> list[Judgement]:
        batcher = Batcher(call, batch_size=8, workers=1)
        out = await asyncio.gather(*(batcher.submit(_query(i)) for i in range(30)))
        await batcher.aclose()
        return list(out)

    answers = asyncio.run(main())
    assert [a.scores[0] for a in answers] == [float(i) for i in range(30)]
    assert sum(sizes) == 30 and max(sizes) == 8 and len(sizes) <= 5


def test_one_bad_query_does_not_fail_its_batch_mates() -> None:
    async def call(queries: Sequence[Query]) -> list[Judgement]:
        if any(q.sample_id == "s3" for q in queries):
            raise DataError("corrupt image s3")
        return [Judgement(scores=(1.0,)) for _ in queries]

    async def main() -> list[Judgement]:
        batcher = Batcher(call, batch_size=8, workers=1)
        return list(await asyncio.gather(*(batcher.submit(_query(i)) for i in range(6))))

    answers = asyncio.run(main())
    assert [a.failure for a in answers] == [None, None, None, FailureKind.DATA, None, None]
    assert "corrupt image s3" in (answers[3].failure_detail or "")


class _Counting(RewardModel):
    name = "counting"
    batch_size = 4

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def score(self, queries: Sequence[Query]) -> list[Judgement]:
        self.seen += len(queries)
        return [Judgement(scores=(0.5,)) if q.sample_id != "s1" else Judgement.failed(FailureKind.EMPTY, "")
                for q in queries]


def test_cache_serves_repeats_and_never_stores_failures(tmp_path: Path) -> None:
    async def main(cache: ResponseCache, model: _Counting) -> tuple[list[Judgement], int]:
        dispatcher = Dispatcher(model, cache)
        out = await asyncio.gather(*(dispatcher.submit("score", _query(i)) for i in range(3)))
        await dispatcher.aclose()
        return list(out), dispatcher.cache_hits

    cache = ResponseCache(tmp_path / "c.sqlite")
    model = _Counting()
    first, hits = asyncio.run(main(cache, model))
    assert model.seen == 3 and hits == 0 and first[1].failure is FailureKind.EMPTY
    again, hits = asyncio.run(main(cache, model))
    assert hits == 2 and model.seen == 4  # only the failed query is asked again
    assert [a.scores for a in again] == [(0.5,), (), (0.5,)]
    cache.close()
    assert asyncio.run(main(NullCache(), _Counting()))[1] == 0
