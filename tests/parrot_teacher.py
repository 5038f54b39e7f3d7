"""A scripted PARROT teacher (and predictive judge) for tests: critiques written to order, served by ScriptedJudge.

``critique(...)`` writes an answer in the released critic format with the scores asked for; ``Script`` reads each
teacher request (which sample it is, from its images' hashes; which candidate is preferred, from the anchoring
text) and answers with the behaviour the test planned for that sample, counting requests per item. ``judge_answer``
is the un-anchored predictive judge: it says which image the words favour ("Image A is better", "excellent").
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rrbench import Sample
from tests.judge_server import Reply, Request

T2I = ("Text Faithfulness", "Physical and Visual Quality", "Text Rendering")
EDIT = ("Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering")
WORDY = ("The image is examined closely against each element of the request, with attention to the subject, the "
         "composition, the lighting and the fine detail that a careful viewer would notice.")


def _value(v: float | None) -> str:
    return "N/A" if v is None else f"{v:g}"


def pairwise(a: Sequence[float | None], b: Sequence[float | None], summary: str, generation: str = "t2i",
             words: str = WORDY) -> str:
    """A pairwise critique with these per-aspect scores (winner lines agree with them)."""
    blocks = []
    for k, (name, sa, sb) in enumerate(zip(T2I if generation == "t2i" else EDIT, a, b, strict=True), 1):
        win = "N/A" if sa is None or sb is None else "Image A" if sa > sb else "Image B" if sb > sa else "tie"
        blocks.append(f"{k}. {name}:\n## Justification: {words}\n## Score A: {_value(sa)}\n## Score B: "
                      f"{_value(sb)}\n## Winner: {win}")
    return ("# User Request Analysis\nThe request names a subject and a setting.\n# Detailed Judgement\n"
            + "\n".join(blocks) + f"\n# Summary: {summary}\n")


def pointwise(scores: Sequence[float | None], summary: str, generation: str = "t2i", words: str = WORDY) -> str:
    blocks = [f"{k}. {name}:\n## Justification: {words}\n## Score: {_value(s)}"
              for k, (name, s) in enumerate(zip(T2I if generation == "t2i" else EDIT, scores, strict=True), 1)]
    return ("# User Request Analysis\nThe request names a subject and a setting.\n# Detailed Judgement\n"
            + "\n".join(blocks) + f"\n# Summary: {summary}\n# User Request Refinement:\n## Refinement Comments: "
            "Name the lighting.\n## Refined Request: The same request, in soft daylight.\n")


def pair_scores(winner: str) -> tuple[list[float | None], list[float | None]]:
    """Scores whose sum (N/A dropped) prefers ``winner`` ("A", "B" or "tie"): A 4+3, B 2+3 for A, and so on."""
    good, bad = [4.0, 3.0, None], [2.0, 3.0, None]
    return (good, bad) if winner == "A" else (bad, good) if winner == "B" else (good, list(good))


def other(letter: str) -> str:
    return "B" if letter == "A" else "A"


Behaviour = Callable[[str], "str | Reply"]


# Behaviours: (preferred letter) -> answer. ``better`` words let the scripted judge recover a verdict.
def consistent(letter: str) -> str | Reply:
    a, b = pair_scores(letter)
    return pairwise(a, b, f"Image {letter} is better overall: it is sharper and closer to the request.")


def inconsistent(letter: str) -> str | Reply:
    a, b = pair_scores(other(letter))
    return pairwise(a, b, f"Image {other(letter)} is better overall: it is sharper and closer to the request.")


def tied(letter: str) -> str | Reply:
    a, b = pair_scores("tie")
    return pairwise(a, b, "Both images are equally good; neither stands out.")


def leaking(letter: str) -> str | Reply:
    a, b = pair_scores(letter)
    return pairwise(a, b, f"Image {letter} is better overall, as the human annotators also said.")


def terse(letter: str) -> str | Reply:
    a, b = pair_scores(letter)
    return pairwise(a, b, f"Image {letter} is better.", words="Fine.")


def malformed(letter: str) -> str | Reply:
    return f"I like {letter}."




def http_error(letter: str) -> str | Reply:
    return Reply("the teacher is overloaded", status=500)


def preferred_letter(text: str) -> str:
    found = re.search(r"preferred Image ([AB]) over Image ([AB])", text)
    assert found, "no pairwise anchoring text in the request"
    return found.group(1)


def pointwise_preferred(text: str) -> bool:
    if "they preferred this image" in text:
        return True
    assert "they preferred the other candidate" in text, "no pointwise anchoring text in the request"
    return False


def image_key(images: Iterable[bytes]) -> tuple[str, ...]:
    return tuple(hashlib.sha256(b).hexdigest() for b in images)


@dataclass
class Script:
    """Answers teacher requests by sample: ``plan`` maps a sample id to a behaviour; counts requests per item key
    (the sample id, and for pointwise which candidate)."""

    samples: Sequence[Sample]
    plan: Mapping[str, Callable[[Request], str | Reply]]
    requests: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # A request is known by all its images in order: the source images (edits), then the candidates shown.
        self._by_images: dict[str, list[tuple[str, int | None]]] = {}
        for s in self.samples:
            source = image_key(m.read_bytes() for m in s.source)
            shown = image_key(m.read_bytes() for m in s.candidates)
            entries = [(source + shown, None), *(((*source, h), c) for c, h in enumerate(shown))]
            for hashes, candidate in entries:
                self._by_images.setdefault("|".join(hashes), []).append((s.id, candidate))

    def item_of(self, request: Request) -> tuple[str, int | None]:
        """Which sample (and candidate, for pointwise) a request is about."""
        alike = self._by_images["|".join(image_key(i.data for i in request.images))]
        # Two samples may show the very same images (a photo in several pairs): the server cannot tell them apart,
        # so the plan must answer them alike; the first stands for all.
        assert len({id(self.plan[i]) for i, _ in alike}) == 1, f"{alike} look alike but are planned differently"
        return alike[0]

    def __call__(self, request: Request) -> str | Reply:
        sample_id, candidate = self.item_of(request)
        with self._lock:
            self.requests[sample_id if candidate is None else f"{sample_id}#cand{candidate}"] += 1
        return self.plan[sample_id](request)


def pairwise_behaviour(fn: Behaviour) -> Callable[[Request], str | Reply]:
    return lambda request: fn(preferred_letter(request.text))


def pointwise_behaviour(consistent_scores: bool = True, broken: bool = False, generation: str = "t2i"
                        ) -> Callable[[Request], str]:
    """Pointwise: the preferred image gets 4s ("excellent"), the rejected 1s ("poor"); ``consistent_scores=False``
    swaps them; ``broken`` answers the rejected candidate in no format at all."""
    n = len(T2I if generation == "t2i" else EDIT)

    def answer(request: Request) -> str:
        good = pointwise_preferred(request.text)
        if broken and not good:
            return "no critique today"
        high = good == consistent_scores
        scores: list[float | None] = [4.0 if high else 1.0] * (n - 1) + [None]
        return pointwise(scores, "This image is excellent." if high else "This image is poor.", generation)

    return answer


def judge_answer(request: Request) -> str:
    """The un-anchored predictive judge: reads the words only."""
    text = request.text
    if "--- evaluation of Image B ---" in text:  # pointwise pair
        first, second = text.split("--- evaluation of Image B ---", 1)
        a, b = first.count("excellent"), second.count("excellent")
        return "Answer: A" if a > b else "Answer: B" if b > a else "Answer: tie"
    found = re.findall(r"Image ([AB]) is better", text)
    return f"Answer: {found[-1]}" if found else "Answer: tie"
