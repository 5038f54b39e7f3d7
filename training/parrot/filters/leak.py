"""``leak``: the critique lets on that it was told the answer.

A case-insensitive search for the phrases in ``PATTERNS``: words for the people or data behind the label (human,
annotator, rater, label, vote, ground truth, crowd), phrasings of a given preference (preferred by, the user
prefers, as given, as stated, we were told, the hint, the reference) and the other candidate of a pointwise pair. A
phrase that also occurs in the sample's own request is not counted (a request may well ask for "a human face" or
"a label on the jar"). The list errs on the side of rejecting: a false alarm costs one training example.
"""

from __future__ import annotations

import re

from rrbench_train.parrot.filters import Check, Context, Item, predicate

PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\bhumans?\b", r"\bannotat(?:or|ors|ion|ions|ed)\b", r"\braters?\b", r"\blabel(?:s|ed|led)?\b",
    r"\bground[\s-]*truth\b", r"\bpreferred by\b", r"\bthe user prefers\b", r"\bas given\b", r"\bas stated\b",
    r"\b(?:we|i) (?:was|were|am|are) told\b", r"\bthe hint\b", r"\bvot(?:e|es|ed|ers?)\b", r"\bcrowd",
    r"\bthe reference (?:says|states|indicates)\b", r"\bgiven preference\b", r"\bother candidate\b",
))


@predicate("leak")
async def check(item: Item, context: Context) -> Check:
    request = str(item.record.get("prompt") or "")
    for pattern in PATTERNS:
        found = pattern.search(item.answer)
        if found and not pattern.search(request):
            return Check.reject(f"mentions {found.group(0)!r}")
    return Check.ok()
