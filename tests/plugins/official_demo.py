"""`official-demo`: sanity-gen's scenes under a judge protocol of their own, the smallest ``BenchmarkJudge`` there is,
for the tests of the official-protocol machinery (tests/test_official_protocol.py).

Its one request per image is the text ``Rate: <prompt>`` then the image, with no decoding settings (left to the
server). The answer ``score: N`` is read; anything else is re-asked once (``attempt=1``), and a second unreadable
answer drops the image, as UniGenBench++ does after its retries. The benchmark's own judge is ``gemini-2.5-pro``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence

from rrbench.backends._base import image_part, text_part, user_message
from rrbench.protocols.official import MODE, Ask, BenchmarkJudge, Judged
from rrbench.registry import task
from rrbench.tasks.sanity_gen import sanity_gen
from rrbench.types import ChatQuery, FailureKind, Judgement, Media, Protocol, Sample, SampleResult, Task

SCORE = re.compile(r"^score: (\d+)$")


class DemoJudge(BenchmarkJudge):
    id = "official-demo"
    official = ("gemini-2.5-pro",)

    async def judge(self, sample: Sample, image: Media, ask: Ask, seed: int) -> Judged:
        calls: list[Judgement] = []
        for attempt in range(2):
            query = ChatQuery((user_message(text_part(f"Rate: {sample.prompt}"), image_part(image)),),
                              sample_id=sample.id, attempt=attempt)
            answer = await ask(query)
            if answer.failure is not None:
                return Judged((*calls, answer), None, answer.failure)
            match = SCORE.match(answer.raw or "")
            if match:
                value = float(match.group(1))
                return Judged((*calls, dataclasses.replace(answer, scores=(value,))), value)
            calls.append(dataclasses.replace(answer, flags=(*answer.flags, "unreadable")))
        return Judged(tuple(calls), None, FailureKind.PARSE, "unreadable twice")

    def answers(self, results: Sequence[SampleResult], samples: Mapping[str, Sample]) -> Mapping[str, bytes]:
        rows = {f"{r.sample_id}/{t.order[0]}": t.judgements[-1].raw for r in results for t in r.trials}
        return {"answers.json": json.dumps(rows, sort_keys=True).encode()}


@task("official-demo", description="test task: sanity-gen scenes under a judge protocol of their own")
def official_demo(n: int = 3, images_per_prompt: int = 2) -> Task:
    base = sanity_gen(n=n, images_per_prompt=images_per_prompt)
    return dataclasses.replace(
        base, name="official-demo", judge=DemoJudge(),
        protocol=Protocol(id="official-demo", mode=MODE, metrics=("mean-score",)),
        alternatives={"official-demo-rm": Protocol(id="official-demo-rm", mode="pointwise", metrics=("mean-score",))},
    )
