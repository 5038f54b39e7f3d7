"""``label``: the preference the critique's own scores imply equals the human one.

Pairwise: the paper's sum rule (``rrbench.critique.pairwise_sum``, N/A dropped) gives A, B or a tie; it must be the
target winner (a tie never matches a strict preference). Pointwise: both critiques of the pair are read and the
preferred candidate's mean score must be strictly above the rejected one's; both items of the pair get that verdict.
"""

from __future__ import annotations

from rrbench import critique
from rrbench_train.parrot.filters import Check, Context, Item, pair_items, pointwise_mean, predicate


@predicate("label")
async def check(item: Item, context: Context) -> Check:
    return pairwise(item) if item.pairwise else pointwise(item, context)


def pairwise(item: Item) -> Check:
    parsed = item.parsed
    if parsed.error is not None:
        return Check.reject("no scores to read")
    a, b = critique.pairwise_sum(parsed.aspects[0], parsed.aspects[1], "drop")
    implied = "A" if a > b else "B" if b > a else "tie"
    want = item.record["target"]["winner"]
    detail = f"sums A {a:g}, B {b:g}: {implied}; label {want}"
    return Check.ok(detail) if implied == want else Check.reject(detail)


def pointwise(item: Item, context: Context) -> Check:
    pair = pair_items(item, context)
    if pair is None:
        return Check.reject("the other critique of the pair has no answer")
    best, worst = (pointwise_mean(m) for m in pair)
    if best is None or worst is None:
        return Check.reject("a critique of the pair has no scores to read")
    detail = f"preferred mean {best:g}, rejected mean {worst:g}"
    return Check.ok(detail) if best > worst else Check.reject(detail)
