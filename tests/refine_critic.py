"""A scripted RationalRewards-format critic for the refine tests (tests/test_refine_servers.py).

``answer(...)`` writes a pointwise critique in the format ``rrbench.models._rationalrewards_format.parse_pointwise``
reads (the released prompt's answer format): per-aspect ``## Score:`` lines (a number or N/A), a summary, and a
``## Refined Request:`` that may span several lines, be empty, or be left out. ``Critic`` answers each request by
the sample prompt it carries (each test maps prompts to answers), counts the requests per prompt and per image, and
can sleep before answering, so that a killed run stops with critiques in flight.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.judge_server import Reply, Request

TF, IF, PVQ, TR = "Text Faithfulness", "Image Faithfulness", "Physical and Visual Quality", "Text Rendering"
NA = "N/A"
Score = float | str  # a number, or "N/A"


def answer(scores: Mapping[str, Score], refined: str | None, summary: str = "The image misses parts of it.") -> str:
    """A pointwise critique; ``refined`` None leaves the refinement section out, "" writes an empty request."""
    lines = ["# User Request Analysis", "The request names a shape, its colour and where it stands.",
             "# Detailed Judgement"]
    for k, (name, score) in enumerate(scores.items(), 1):
        lines += [f"{k}. {name}:", f"## Justification: judged {name.lower()} from the pixels.", f"## Score: {score}"]
    lines.append(f"# Summary: {summary}")
    if refined is not None:
        lines += ["", "# User Request Refinement:", "## Refinement Comments: name the colour and the place.",
                  f"## Refined Request: {refined}"]
    return "\n".join(lines)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Script = Callable[[int, int], "str | Reply"]  # (prompt number, how many times this prompt was asked before) -> answer


@dataclass
class Critic:
    """The answer function of a ``ScriptedJudge``: ``script(prompt number, earlier asks of that prompt)``."""

    prompts: Sequence[str]
    script: Script
    delay_s: float = 0.0
    asked: Counter[int] = field(default_factory=Counter)  # prompt number -> requests
    images: Counter[str] = field(default_factory=Counter)  # sha256 of the judged (last) image -> requests
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prompt_of(self, request: Request) -> int:
        """The sample the request is about: the one prompt it quotes (the longest, if one contains another)."""
        text = request.text
        found = [i for i, prompt in enumerate(self.prompts) if prompt in text]
        assert found, f"no known prompt in the critic's request: {text[:300]!r}"
        return max(found, key=lambda i: len(self.prompts[i]))

    def __call__(self, request: Request) -> str | Reply:
        number = self.prompt_of(request)
        with self._lock:
            before = self.asked[number]
            self.asked[number] += 1
            if request.images:
                self.images[sha(request.images[-1].data)] += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.script(number, before)

    def distinct_images(self) -> int:
        with self._lock:
            return len(self.images)
