"""The state of a refine, image slot by image slot, replayed from the stages' sample logs.

A slot is image ``index`` of a sample. It starts with its base image and the critic's critique of it; each round
the accept rule keeps it (or it cannot be regenerated, for a reason that is counted) or plans it again with the
critic's refined request; the round's image and its critique then become the slot's current ones (``best-of``:
only when the critic scores it higher). Everything here is a function of the recorded logs, so a resumed refine
plans exactly what the interrupted one planned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rrbench.generators._base import redraw_seed
from rrbench.protocols.refine import NOT_MADE
from rrbench.refine.rules import keeps
from rrbench.types import Judgement, SampleResult

# Why a slot ends where it is (counted in the summary). "regenerated": its final image is a regenerated one.
KEPT, REGENERATED = "kept", "regenerated"
BASE_FAILED, CRITIC_FAILED = "base-image-failed", "critic-failed"
NO_REQUEST, TOO_LONG = "no-refined-request", "refined-request-too-long"
REGEN_FAILED, KEPT_EARLIER = "regeneration-failed", "kept-earlier"
Slots = dict[tuple[str, int], "Slot"]
Plan = dict[str, list[dict[str, Any]]]
OUTCOMES = (KEPT, REGENERATED, KEPT_EARLIER, BASE_FAILED, CRITIC_FAILED, NO_REQUEST, TOO_LONG, REGEN_FAILED)


@dataclass
class Slot:
    sample_id: str
    index: int
    run: str  # the run directory (name under the output folder) holding the current image
    entry: dict[str, Any]  # the current image's record entry there (index, seed, key, path; or its failure)
    critique: Judgement | None  # the critic's judgement of the current image; None: none was recorded
    round: int = 0  # the round that made the current image
    draw: int = 0
    outcome: str = KEPT  # one of OUTCOMES: what the slot's image is now
    open: bool = True  # a later round may still make it again
    history: list[dict[str, Any]] = field(default_factory=list)  # per round: request, critique summary, outcome

    @property
    def key(self) -> tuple[str, int]:
        return self.sample_id, self.index

    def close(self, outcome: str) -> None:
        self.outcome, self.open = outcome, False


@dataclass(frozen=True)
class Settings:
    rule: str
    max_request_chars: int
    new_seed: bool  # the critic asks for a fresh draw (the identity refiner)
    run_seed: int


def start(base_run: str, base: Iterable[SampleResult], critiques: Iterable[SampleResult]) -> Slots:
    """Every image slot of the base set with its critique."""
    judged = _critiques(critiques)
    slots: Slots = {}
    for result in base:
        for entry in result.candidates:
            if isinstance(entry, Mapping) and isinstance(entry.get("index"), int):
                slot = Slot(result.sample_id, entry["index"], base_run, dict(entry),
                            judged.get((result.sample_id, entry["index"])))
                slots[slot.key] = slot
    return slots


def plan_round(slots: Slots, settings: Settings, round_: int) -> Plan:
    """The images round ``round_`` makes again, by sample: index, request, seed and draw. Slots the rule keeps, or
    that cannot be made again, are closed with their reason."""
    planned: Plan = {}
    for slot in slots.values():
        if not slot.open:
            continue
        request = _decide(slot, settings)
        if request is None:
            continue
        draw = slot.draw + 1 if settings.new_seed else slot.draw
        seed = redraw_seed(settings.run_seed, slot.sample_id, slot.index, draw) if settings.new_seed \
            else int(slot.entry.get("seed", 0))
        planned.setdefault(slot.sample_id, []).append(
            {"index": slot.index, "prompt": request, "seed": seed, "draw": draw})
        slot.history.append({"round": round_, "request": request, "critique": summary_of(slot.critique)})
    return planned


def _decide(slot: Slot, settings: Settings) -> str | None:
    """The refined request to make the slot's image again with, or None (the slot is closed with why)."""
    if "failure" in slot.entry or not isinstance(slot.entry.get("path"), str):
        slot.close(BASE_FAILED if slot.round == 0 else REGEN_FAILED)
        return None
    critique = slot.critique
    if critique is None or critique.failure is not None:
        slot.close(CRITIC_FAILED)
        return None
    if keeps(settings.rule, critique.aspects[0] if critique.aspects else {}):
        slot.close(KEPT if slot.round == 0 else REGENERATED)
        return None
    request = (critique.refined_prompt or "").strip()
    if not request:
        slot.close(NO_REQUEST if slot.round == 0 else REGENERATED)
        return None
    if len(request) > settings.max_request_chars or "capped:refined_prompt" in critique.flags:
        slot.close(TOO_LONG if slot.round == 0 else REGENERATED)
        return None
    return request


def after_round(slots: Slots, planned: Plan, run: str,
                made: Iterable[SampleResult], critiques: Iterable[SampleResult], settings: Settings,
                round_: int) -> None:
    """Take round ``round_``'s images (and their critiques) as the slots' current ones (best-of: if better)."""
    judged = _critiques(critiques)
    entries = {(r.sample_id, e["index"]): dict(e) for r in made for e in r.candidates
               if isinstance(e, Mapping) and isinstance(e.get("index"), int) and e.get("refine") != NOT_MADE}
    for sample_id, images in planned.items():
        for image in images:
            slot = slots[(sample_id, int(image["index"]))]
            entry = entries.get(slot.key, {"index": slot.index, "failure": "data", "detail": "not made"})
            _take(slot, run, entry, judged.get(slot.key), settings, round_, int(image["draw"]))


def _take(slot: Slot, run: str, entry: dict[str, Any], critique: Judgement | None, settings: Settings,
          round_: int, draw: int) -> None:
    if "failure" in entry or not isinstance(entry.get("path"), str):
        slot.history[-1]["outcome"] = REGEN_FAILED
        slot.close(REGEN_FAILED if slot.round == 0 else REGENERATED)  # the earlier image stays
        return
    if settings.rule == "best-of" and not _better(critique, slot.critique):
        slot.history[-1]["outcome"] = KEPT_EARLIER
        slot.close(KEPT_EARLIER if slot.round == 0 else REGENERATED)
        return
    slot.history[-1]["outcome"] = REGENERATED
    slot.run, slot.entry, slot.critique, slot.round, slot.draw = run, entry, critique, round_, draw
    slot.outcome = REGENERATED


def _better(new: Judgement | None, old: Judgement | None) -> bool:
    """best-of: the new image wins only on a strictly higher critic score (a failed critique never wins)."""
    new_score = _score(new)
    if new_score is None:
        return False
    old_score = _score(old)
    return old_score is None or new_score > old_score


def _score(judgement: Judgement | None) -> float | None:
    if judgement is None or judgement.failure is not None or not judgement.scores:
        return None
    return judgement.scores[0]


def choices(slots: Slots) -> Plan:
    """What the final set holds, by sample: each slot's current image, where it is and why."""
    out: Plan = {}
    for slot in sorted(slots.values(), key=lambda s: s.key):
        entry = {k: v for k, v in slot.entry.items() if k != "latency_s"}  # timing is not the image: not in the name
        out.setdefault(slot.sample_id, []).append(
            {"index": slot.index, "run": slot.run, "entry": entry, "round": slot.round, "outcome": slot.outcome})
    return out


def digest(obj: Any) -> str:
    """The content hash of a plan (it names the run that carries it out)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def summary_of(judgement: Judgement | None) -> dict[str, Any] | None:
    """A critique as the refine summary and report show it."""
    if judgement is None:
        return None
    if judgement.failure is not None:
        return {"failure": judgement.failure.value, "detail": judgement.failure_detail}
    return {"aspects": dict(judgement.aspects[0]) if judgement.aspects else {},
            "score": judgement.scores[0] if judgement.scores else None,
            "refined_prompt": judgement.refined_prompt, "rationale": judgement.rationale}


def _critiques(results: Iterable[SampleResult]) -> dict[tuple[str, int], Judgement]:
    out = {}
    for result in results:
        for trial in result.trials:
            if trial.judgements and trial.order:
                out[(result.sample_id, trial.order[0])] = trial.judgements[0]
    return out
