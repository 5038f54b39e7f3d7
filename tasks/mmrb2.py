"""Multimodal RewardBench 2 (Meta FAIR): `mmrb2-t2i` and `mmrb2-edit`, 1,000 expert-labelled pairs each.

Verified (sources named):

* Hub layout: ``rl-research/multimodal-rewardbench-2`` has configs ``t2i``, ``edit``, ``interleaved``, ``reasoning``,
  each one split ``test`` of 1,000 rows at ``<config>/test-*`` (dataset card ``configs``/``dataset_info``, as shown
  in its discussion #2). Columns: pair_id, prompt_text (text with ``<image_N>`` placeholders), prompt_images
  (list of Image), response_a_text, response_a_images (list of Image), response_b_text, response_b_images,
  chosen, prompt_source, response_a_model, response_b_model, human_annotations and prompt_metadata (JSON strings).
  The official reader (github.com/facebookresearch/MMRB2, benchmark/build_from_hf.py) loads ``split="test"`` and
  normalises ``chosen`` with ``.upper()`` to "A" or "B"; the README gives ``"chosen": "A" | "B"`` (no ties).
  License CC BY-NC 4.0 (README), benchmarking only.
* Official metric (evaluate/compute_scores/compute_accuracy.py): each pair is judged forward and reverse (A and B
  swapped, evaluate/generate_judgements/evaluate.py), the reverse judgement flipped; each order with a non-empty
  judgement counts once; accuracy = correct / evaluated; a pair or an order without a judgement is left out and
  reported as missing. A judgement that is neither A nor B (a tie) is evaluated and wrong. Generic VLM judges send
  MMRB2's own judge prompt (evaluation_prompts.py) and the rule ``mmrb2`` (``tasks/rule_mmrb2.py``) reads their JSON
  answer as the official evaluator does (``better_response``, compared exactly).
* The RationalRewards bundle flattens MMRB2 to pair_id, prompt_text, prompt_images, response_a_images,
  response_b_images, chosen (github.com/TIGER-AI-Lab/RationalRewards, modular_rm_eval/dataset_adapters.py); its
  scorer sends the first image of each answer, the prompt images as the source (editing), one fixed order, and
  predicts A=B only on exactly equal scores, counts an N/A aspect 2.5 (modular_rm_eval/inference_core.py,
  scoring.py); a failed call is skipped. Its files for the two tasks are told apart by folder
  (``data/mmrb2/t2i/`` and ``data/mmrb2/imgedit/`` in its batch scripts; see tasks/_bundle.py).

Assumed / chosen here:

* No revision is pinned: no commit sha of the dataset could be verified, so the snapshot's own commit is used.
* ``chosen`` is stripped and upper-cased as the official reader does; anything but A or B (empty, "tie", ...) is an
  unknown label, counted and never guessed. MMRB2 has no human ties, so there is no tie kind to map.
* The prompt is ``prompt_text`` as stored, ``<image_N>`` placeholders included (both the official judges and
  RationalRewards send it so); for editing, ``prompt_images`` are the sample's source images.
* A candidate is the first image of its answer (t2i and edit answers hold one); an answer without an image is a DATA
  failure of that sample when judged, not a stop of the run. ``response_*_text`` is not sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench.hubdata import Source, column
from rrbench.registry import task
from rrbench.tasks import _bundle
from rrbench.types import Label, Protocol, Sample, Task, TaskInfo, TaskKind

DATASET = "rl-research/multimodal-rewardbench-2"
REVISION: str | None = None  # see the module docstring: no commit sha could be verified
SPLIT = "test"
VERSION = "2"  # 2: MMRB2's own judge prompt and JSON answer rule for generic judges (issue 12)
SIZE = 1000
PAPER = ("Multimodal RewardBench 2: Evaluating Omni Reward Models for Interleaved Text and Image "
         "(Hu et al. 2025), arXiv 2512.16899")
LICENSE = "cc-by-nc-4.0"
HOMEPAGE = "https://github.com/facebookresearch/MMRB2"

OFFICIAL = Protocol(
    id="mmrb2-both-orders", order="both", tie_policy="mmrb2", failure_policy="excluded", metrics=("accuracy",),
)
PAPER_PROTOCOL = Protocol(
    id="rationalrewards-paper", order="fixed", tie_policy="exact", failure_policy="excluded", metrics=("accuracy",),
    options={"na": "2.5"},
)


def label(chosen: Any) -> Label:
    """``chosen`` as the official reader reads it (stripped, upper-cased): A or B; anything else is unknown."""
    text = chosen.strip().upper() if isinstance(chosen, str) else None
    if text in ("A", "B"):
        return Label.win(0 if text == "A" else 1, original=chosen)
    return Label.unknown(None if chosen is None else str(chosen))


@dataclass(frozen=True)
class Variant:
    generation: str  # "t2i" or "edit"
    config: str  # the hub config folder
    part: _bundle.Part

    @property
    def source(self) -> Source:
        return Source(DATASET, SPLIT, self.config, REVISION)


T2I = Variant("t2i", "t2i", _bundle.MMRB2_T2I)
EDIT = Variant("edit", "edit", _bundle.MMRB2_EDIT)


def _sample(variant: Variant, row: dict[str, Any], root: Path) -> Sample:
    source = variant.source
    sample_id = str(column(row, "pair_id", source))
    candidates = tuple(
        _bundle.lazy_media(_bundle.first(column(row, f"response_{x}_images", source)), root, f"{sample_id} {x}")
        for x in ("a", "b")
    )
    prompt_images = (row.get("prompt_images") or []) if variant.generation == "edit" else []
    originals = tuple(_bundle.lazy_media(cell, root, f"{sample_id} prompt image {i}")
                      for i, cell in enumerate(prompt_images))
    meta = {"category": row.get("prompt_source"), "response_a_model": row.get("response_a_model"),
            "response_b_model": row.get("response_b_model")}
    prompt = str(column(row, "prompt_text", source) or "")
    return Sample(sample_id, prompt, candidates, label(column(row, "chosen", source)), source=originals, meta=meta)


def _build(variant: Variant, name: str) -> Task:
    def load(data: Path | None) -> Iterator[Sample]:
        rows = _bundle.open_part(variant.part, variant.source, data)
        return (_sample(variant, row, rows.root) for row in rows)

    return Task(
        name=name,
        version=VERSION,
        kind=TaskKind.PAIR,
        load=load,
        protocol=OFFICIAL,
        size=SIZE,
        info=TaskInfo(paper=PAPER, dataset=f"{DATASET} ({variant.config}, {SPLIT})", revision=REVISION,
                      license=LICENSE, size=SIZE, homepage=HOMEPAGE),
        generation=variant.generation,
        alternatives={PAPER_PROTOCOL.id: PAPER_PROTOCOL},
        count=lambda data: _bundle.open_part(variant.part, variant.source, data).size,
        judge_prompt=f"mmrb2/verdict-{variant.generation}",
    )


@task("mmrb2-t2i", description="MMRB2 text-to-image: 1,000 expert pairs, judged in both orders (official)")
def mmrb2_t2i() -> Task:
    """Which of two generated images did expert annotators prefer; each pair is judged in both orders."""
    return _build(T2I, "mmrb2-t2i")


@task("mmrb2-edit", description="MMRB2 image editing: 1,000 expert pairs, judged in both orders (official)")
def mmrb2_edit() -> Task:
    """Which of two edits of the prompt images did expert annotators prefer; judged in both orders."""
    return _build(EDIT, "mmrb2-edit")
