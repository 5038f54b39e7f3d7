"""GenAI-Bench (TIGER-Lab, from GenAI-Arena votes): `genai-bench-t2i` and `genai-bench-edit`, 4-way human votes.

Verified (sources named):

* Hub layout: ``TIGER-Lab/GenAI-Bench`` holds ``image_generation/test_v1-00000-of-00001.parquet`` and
  ``image_edition/test_v1-00000-of-00001.parquet`` (next to the older ``test-*`` split), renamed from ``train_v1-*``
  on the dataset's main branch (HF file tree and commit log, head 7981a19); dataset viewer: image_edition test 983,
  test_v1 919 rows; the leaderboard is "on `test_v1` split" (dataset card, commit 2c235e3). License cc-by-4.0 (card).
* Columns, image_generation: prompt, left_model, left_image, right_model, right_image, vote_type; image_edition:
  source_prompt, target_prompt, instruct_prompt, source_image, left_model, left_output_image, right_model,
  right_output_image, vote_type; images are HF ``Image`` features (card ``dataset_info`` of the same export).
* Labels and the official metric, github.com/TIGER-AI-Lab/GenAI-Bench ``inference.py`` ``parse_response``
  (lines 147-174): ``vote_type`` in {leftvote, rightvote, tievote, bothbad_vote}; the judge's answer is read with
  the greedy ``re.search(r"\\[\\[.*\\]\\]")`` and the match compared as an exact string (``[[A>B]]``/``[[A>>B]]`` for
  leftvote, ``[[B>A]]``/``[[B>>A]]`` for rightvote, ``[[A=B=Good]]`` or ``[[A=B]]`` for tievote, ``[[A=B=Bad]]`` or
  ``[[A=B]]`` for bothbad_vote); a response without a match counts as **wrong** (accuracy = mean over all rows).
  rrbench's rule ``genai-4way`` (``tasks/rule_genai_4way.py``) re-reads each verdict judge's recorded answer that
  way; the lenient reading is the alternative protocol ``genai-bench-4way-lenient``. Candidates are shown once, left
  as A (``inference_configs.json``); generic VLM judges send the official template
  (``genaibench/templates/<config>/pairwise.txt``, ``rrbench/prompts/data/genai-bench``).
* The RationalRewards paper's scoring (github.com/TIGER-AI-Lab/RationalRewards, reward_model_evaluation/
  modular_rm_eval): left = A in one fixed order; leftvote -> A>B, rightvote -> B>A, every other vote -> one class
  A=B (``dataset_adapters.py``); predicted A=B iff |s_A - s_B| <= tolerance, default 0 (``scoring.py``); an N/A
  aspect score counts 2.5 (``scoring.py`` lines 25-29); failed responses and unknown labels are skipped.

Assumed / chosen here:

* No revision is pinned: the full commit sha of the main head (short 7981a19, after the ``test_v1`` rename) was not
  found, so the snapshot's own commit is what a run uses (the snapshot folder name is its commit).
* Without ``--data`` only ``<config>/test_v1-00000-of-00001.parquet`` is fetched (one shard in the HF file tree),
  not the older split and the other configs. A local copy may have any ``test_v1-*`` shards.
* Sample ids: the row's ``pair_id`` where a copy has one (the RationalRewards bundle may), else the row position
  in the split (``00000``...), which is what the official scorer indexes by (``idx``).
* The editing prompt is ``instruct_prompt`` (what RationalRewards sends); ``source_prompt`` and ``target_prompt``
  stay in the sample's meta.
* Judges that give scores, not a verdict: the official rule needs a 4-way answer, so ``genai-4way`` forms one from
  the two scores: the higher score wins; equal scores are a tie, read as both good at or above the tie split and as
  both bad below it. The tie split is ``protocol.options["tie_split"]`` when set, else the median of every score the
  judge gave in the run (no knowledge of its scale needed); the value used is in the metric's ``extra``. The rule
  is also recorded in the protocol's options (``score_to_4way``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrbench.hubdata import Source, column
from rrbench.registry import task
from rrbench.tasks import _bundle
from rrbench.types import Label, LabelKind, Protocol, Sample, Task, TaskInfo, TaskKind

DATASET = "TIGER-Lab/GenAI-Bench"
REVISION: str | None = None  # see the module docstring: no full commit sha could be verified
SPLIT = "test_v1"
VERSION = "2"  # 2: the official prompt and exact-string verdict rule (issue 12); 1 read verdicts leniently
PAPER = "GenAI Arena: An Open Evaluation Platform for Generative Models (Jiang et al. 2024), arXiv 2406.04485"
LICENSE = "cc-by-4.0"
HOMEPAGE = "https://github.com/TIGER-AI-Lab/GenAI-Bench"

SCORE_TO_4WAY = ("verdict if the judge gives one; else the higher score wins, and equal scores are both good at or "
                 "above the tie split (options.tie_split, else the median score of the run; see extra.tie_split), "
                 "both bad below it")

OFFICIAL = Protocol(
    id="genai-bench-4way", order="fixed", tie_policy="genai-4way", failure_policy="wrong",
    metrics=("accuracy",), options={"score_to_4way": SCORE_TO_4WAY},
)
LENIENT = Protocol(
    id="genai-bench-4way-lenient", order="fixed", tie_policy="genai-4way-lenient", failure_policy="wrong",
    metrics=("accuracy",), options={"score_to_4way": SCORE_TO_4WAY},
)
# The RationalRewards paper's scoring (modular_rm_eval/scoring.py): N/A aspect scores count 2.5 (line 25-29).
PAPER_PROTOCOL = Protocol(
    id="rationalrewards-paper", order="fixed", tie_policy="exact", failure_policy="excluded", metrics=("accuracy",),
    options={"na": "2.5"},
)

# The dataset's vote strings, exactly as the official scorer compares them; anything else is counted as unknown.
VOTES: dict[str, Callable[[str], Label]] = {
    "leftvote": lambda s: Label.win(0, original=s),
    "rightvote": lambda s: Label.win(1, original=s),
    "tievote": lambda s: Label.tie(LabelKind.BOTH_GOOD, original=s),  # officially matched by [[A=B=Good]]
    "bothbad_vote": lambda s: Label.tie(LabelKind.BOTH_BAD, original=s),
}


def label(vote: Any) -> Label:
    """The label of a ``vote_type`` cell; an unknown string is kept as it is and never guessed."""
    make = VOTES.get(vote) if isinstance(vote, str) else None
    return make(vote) if make is not None else Label.unknown(None if vote is None else str(vote))


@dataclass(frozen=True)
class Variant:
    generation: str  # "t2i" or "edit"
    config: str  # the hub config folder
    part: _bundle.Part
    size: int  # rows of test_v1
    prompt_vars: tuple[str, ...] = ()  # what the official judge prompt fills in besides the request

    @property
    def source(self) -> Source:
        return Source(DATASET, SPLIT, self.config, REVISION)

    @property
    def fetch(self) -> Source:
        """Only this split's file is downloaded (the dataset's other splits and configs are several hundred MB)."""
        return Source(DATASET, SPLIT, self.config, REVISION, files=(f"{self.config}/{SPLIT}-00000-of-00001.parquet",))


T2I = Variant("t2i", "image_generation", _bundle.GENAI_T2I, 1735)
EDIT = Variant("edit", "image_edition", _bundle.GENAI_EDIT, 919, ("source_prompt", "target_prompt"))


def _sample(variant: Variant, row: dict[str, Any], index: int, root: Path) -> Sample:
    source = variant.source
    sample_id = str(row["pair_id"]) if row.get("pair_id") is not None else f"{index:05d}"
    meta: dict[str, Any] = {"left_model": row.get("left_model"), "right_model": row.get("right_model")}
    vote = label(column(row, "vote_type", source))
    if variant.generation == "t2i":
        candidates = (
            _bundle.lazy_media(column(row, "left_image", source), root, f"{sample_id} left_image"),
            _bundle.lazy_media(column(row, "right_image", source), root, f"{sample_id} right_image"),
        )
        return Sample(sample_id, str(column(row, "prompt", source)), candidates, vote, meta=meta)
    meta.update(source_prompt=row.get("source_prompt"), target_prompt=row.get("target_prompt"))
    candidates = (
        _bundle.lazy_media(column(row, "left_output_image", source), root, f"{sample_id} left_output_image"),
        _bundle.lazy_media(column(row, "right_output_image", source), root, f"{sample_id} right_output_image"),
    )
    original = (_bundle.lazy_media(column(row, "source_image", source), root, f"{sample_id} source_image"),)
    prompt = str(column(row, "instruct_prompt", source))
    return Sample(sample_id, prompt, candidates, vote, source=original, meta=meta)


def _build(variant: Variant, name: str) -> Task:
    def load(data: Path | None) -> Iterator[Sample]:
        rows = _bundle.open_part(variant.part, variant.source, data, variant.fetch)
        return (_sample(variant, row, i, rows.root) for i, row in enumerate(rows))

    return Task(
        name=name,
        version=VERSION,
        kind=TaskKind.PAIR,
        load=load,
        protocol=OFFICIAL,
        size=variant.size,
        info=TaskInfo(paper=PAPER, dataset=f"{DATASET} ({variant.config}, {SPLIT})", revision=REVISION,
                      license=LICENSE, size=variant.size, homepage=HOMEPAGE),
        generation=variant.generation,
        alternatives={p.id: p for p in (LENIENT, PAPER_PROTOCOL)},
        count=lambda data: _bundle.open_part(variant.part, variant.source, data, variant.fetch).size,
        judge_prompt=f"genai-bench/verdict-{variant.generation}",
        prompt_vars=variant.prompt_vars,
    )


@task("genai-bench-t2i", description="GenAI-Bench v1 text-to-image: 1,735 arena votes, official 4-way accuracy")
def genai_bench_t2i() -> Task:
    """Which of two generated images did GenAI-Arena voters prefer (or were both good / both bad)."""
    return _build(T2I, "genai-bench-t2i")


@task("genai-bench-edit", description="GenAI-Bench v1 image editing: 919 arena votes, official 4-way accuracy")
def genai_bench_edit() -> Task:
    """Which of two edits of a source image did GenAI-Arena voters prefer (or were both good / both bad)."""
    return _build(EDIT, "genai-bench-edit")
