"""``length``: the answer's length in characters lies within ``--min-chars`` and ``--max-chars``.

Too short: a critique without real justifications; too long: rambling that a student learns to imitate (and that
may not fit the SFT length)."""

from __future__ import annotations

from rrbench_train.parrot.filters import Check, Context, Item, predicate

MIN_CHARS, MAX_CHARS = 200, 12_000


@predicate("length")
async def check(item: Item, context: Context) -> Check:
    low = int(context.options.get("min_chars", MIN_CHARS))
    high = int(context.options.get("max_chars", MAX_CHARS))
    n = len(item.answer)
    if n < low:
        return Check.reject(f"{n} characters, under {low}")
    if n > high:
        return Check.reject(f"{n} characters, over {high}")
    return Check.ok(f"{n} characters")
