"""``format``: the answer is a critique the student's parser reads in full.

rrbench's parser (``rrbench.critique.parse_critique``) reports no error; every aspect of the generation kind has a
score for every candidate; no score lay outside 1-4 (the parser clamps it and says so); N/A only where the prompt
allows it (Text Rendering); the Summary is there; a pointwise critique has its refined request; and no pairwise
``Winner`` line contradicts that aspect's two scores. Unreadable or missing winner lines are not rejected: the score
is what rrbench reads, and the released prompt's own "It's a tie" is not a winner word rrbench's parser knows.
"""

from __future__ import annotations

from rrbench_train.parrot.filters import Check, Context, Item, predicate

NA_ALLOWED = frozenset({"Text Rendering"})
REJECTED_FLAGS = ("missing:", "clamped:", "winner-mismatch:")


@predicate("format")
async def check(item: Item, context: Context) -> Check:
    parsed = item.parsed
    if parsed.error is not None:
        return Check.reject(f"unparsable: {parsed.error}")
    bad = [f for f in parsed.flags if f.startswith(REJECTED_FLAGS)]
    if bad:
        return Check.reject(", ".join(bad))
    for index, scores in enumerate(parsed.aspects):
        na = sorted(a for a, v in scores.items() if v is None and a not in NA_ALLOWED)
        if na:
            who = f" for Image {'AB'[index]}" if item.pairwise else ""
            return Check.reject(f"N/A where a score is required{who}: {', '.join(na)}")
    if not (parsed.rationale or "").strip():
        return Check.reject("no Summary")
    if not item.pairwise and not (parsed.refined_request or "").strip():
        return Check.reject("no Refined Request")
    return Check.ok()
