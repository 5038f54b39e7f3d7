"""``predictive``: an un-anchored judge recovers the human preference from the rationale alone.

The judge (``--judge``, any generic VLM judge rrbench can build, asked as a text-only chat) gets the critique with
every score and winner line removed, no image and no label, through ``prompts/predict-<kind>-v1.txt``, and answers
A, B or tie. Pairwise: it must name the target winner. Pointwise: it reads the two critiques of the pair (candidate
0 as Image A) and must name the preferred one; the pair is asked once and both items get the verdict. Without a
judge the predicate is not applied (recorded so), never passed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from rrbench import ChatQuery
from rrbench_train.parrot.anchor import load_prompt
from rrbench_train.parrot.filters import LETTERS, Check, Context, Item, pair_items, predicate

SCORE_LINE = re.compile(r"^\W*(?:score(?:\s*[ab])?|winner)\s*[:=\-–—]", re.IGNORECASE)
ANSWER = re.compile(r"answer\W*(?:image\s*)?(a|b|tie)\b", re.IGNORECASE)
PROMPTS = {"pairwise": "predict-pairwise-v1", "pointwise": "predict-pointwise-v1"}
MAX_TOKENS = 256


def without_scores(text: str) -> str:
    """The critique's words, every line that states a score or a winner removed."""
    return "\n".join(line for line in text.splitlines() if not SCORE_LINE.match(line)).strip()


def read_answer(text: str) -> str | None:
    found = ANSWER.findall(text)
    if found:
        return found[-1].upper() if found[-1].lower() != "tie" else "tie"
    bare = text.strip().strip(".*\"' ").lower()
    return {"a": "A", "b": "B", "tie": "tie"}.get(bare)


@predicate("predictive")
async def check(item: Item, context: Context) -> Check:
    if context.judge is None:
        return Check.not_applied("no --judge given")
    if item.pairwise:
        want = item.record["target"]["winner"]
        request = load_prompt(PROMPTS["pairwise"]).render(prompt=item.record["prompt"],
                                                          rationale=without_scores(item.answer))
        return await _ask(context, item, request, want)
    pair = pair_items(item, context)
    if pair is None:
        return Check.reject("the other critique of the pair has no answer")
    key = "pair:" + "|".join(item.record["target"]["pair"])
    if key not in context.memo:  # one request per pair, shared by both of its items
        by_candidate = sorted(pair, key=lambda m: int(m.record["target"]["candidate"]))
        want = LETTERS[int(pair[0].record["target"]["candidate"])]
        request = load_prompt(PROMPTS["pointwise"]).render(
            prompt=item.record["prompt"], rationale_a=without_scores(by_candidate[0].answer),
            rationale_b=without_scores(by_candidate[1].answer))
        context.memo[key] = asyncio.ensure_future(_ask(context, item, request, want))
    result: Check = await context.memo[key]
    return result


async def _ask(context: Context, item: Item, text: str, want: str) -> Check:
    query = ChatQuery(messages=({"role": "user", "content": text},), temperature=0.0,
                      max_tokens=int(context.options.get("judge_max_tokens", MAX_TOKENS)),
                      generation=item.generation, sample_id=item.id, name="predictive")
    judgement: Any = (await context.judge.achat([query]))[0]
    if judgement.failure is not None:
        return Check.failed(f"judge failed: {judgement.failure.value}: {judgement.failure_detail or ''}"[:300])
    got = read_answer(judgement.raw or "")
    detail = f"judge says {got or 'nothing readable'}; label {want}"
    return Check.ok(detail) if got == want else Check.reject(detail)
