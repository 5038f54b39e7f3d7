"""A deterministic critique-writing test judge, loaded through RRBENCH_PLUGINS.

`toy-critic` answers the way a RationalRewards-style critic does (per-aspect 1-4 scores per candidate, a
rationale, a refined prompt, a pairwise verdict) from things it can measure in the pixels, so leaderboards,
plots and reports have real critic runs to read without a VLM:

* Physical and Visual Quality: 1-4 from the gradient energy of the image (sharp photos score high, blurred ones
  low); the `sanity` quality pairs are decided by it;
* Text Faithfulness: 1-4 from a hash of (prompt, image), i.e. a coin the prompt cannot move;
* Text Rendering: N/A (None) always, as a critic says for images without text.

``bias`` adds that much to the first shown image's total, so a run with ``--order both`` shows a position bias;
``fail`` makes that fraction of queries (chosen by hash) fail with a parse failure, as a garbled critique would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from rrbench.models._base import RewardModel
from rrbench.registry import reward_model
from rrbench.types import DataError, FailureKind, Judgement, Media, Query, Verdict

QUALITY, FAITHFUL, RENDERING = "Physical and Visual Quality", "Text Faithfulness", "Text Rendering"


def gradient_energy(media: Media) -> float:
    grey = np.asarray(media.image().convert("L").resize((64, 64)), dtype=np.float64)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2**32


def aspects(prompt: str, media: Media) -> dict[str, float | None]:
    energy = gradient_energy(media)
    quality = float(min(4, max(1, 1 + int(energy // 4))))
    faithful = float(1 + int(_unit(prompt + media.key) * 4))
    return {FAITHFUL: faithful, QUALITY: quality, RENDERING: None}


class ToyCritic(RewardModel):
    name = "toy-critic"
    pairwise = True
    batch_size = 8
    cacheable = False

    def __init__(self, bias: float, fail: float) -> None:
        super().__init__(bias=bias, fail=fail)
        self.bias, self.fail = bias, fail

    def compare(self, queries: Sequence[Query]) -> list[Judgement]:
        return [self._one(q) for q in queries]

    def _one(self, query: Query) -> Judgement:
        if _unit("fail:" + query.key) < self.fail:
            return Judgement.failed(FailureKind.PARSE, "no 'Overall' line in the critique", raw="I cannot decide.")
        try:
            per = [aspects(query.prompt, m) for m in query.candidates]
        except DataError as exc:
            return Judgement.failed(FailureKind.DATA, str(exc))
        totals = [sum(v for v in a.values() if v is not None) for a in per]
        totals[0] += self.bias
        verdict = Verdict.A if totals[0] > totals[1] else Verdict.B if totals[1] > totals[0] else Verdict.TIE
        rationale = (f"Image A: quality {per[0][QUALITY]:.0f}, faithfulness {per[0][FAITHFUL]:.0f}. "
                     f"Image B: quality {per[1][QUALITY]:.0f}, faithfulness {per[1][FAITHFUL]:.0f}. "
                     f"Text rendering does not apply. Preferred: {verdict.value}.")
        return Judgement(scores=(totals[0], totals[1]), verdict=verdict, aspects=tuple(per), rationale=rationale,
                         refined_prompt=f"{query.prompt} Sharp focus, faithful to every detail.",
                         raw=f"{rationale}\n[[{verdict.value}]]")


@reward_model("toy-critic", description="test model: critic-shaped answers from gradient energy and a hash")
def toy_critic(bias: float = 0.0, fail: float = 0.0) -> RewardModel:
    return ToyCritic(bias=float(bias), fail=float(fail))
