"""`editreward-bench`: EditReward-Bench (TIGER-Lab), instruction-guided edits compared in groups of K = 2, 3 or 4.

One dataset row is one pairwise comparison of two edits of the same source image under the same instruction; a
group of K candidates is C(K, 2) rows. ``-T k=2`` scores each pair on 3 classes (A>B, B>A, A=B); ``-T k=3`` and
``-T k=4`` score each group, right only when every comparison in it is (the paper's "group accuracy").

Verified (sources):

* hub layout: ``2pair/train-00000-of-00001.parquet``, ``3pair/train-0000{0,1}-of-00002.parquet``,
  ``4pair/train-0000{0..3}-of-00004.parquet`` (commit 422a400b "upload all dataset files" of
  huggingface.co/datasets/TIGER-Lab/EditReward-Bench; card licence apache-2.0; the pinned revision 837769c4 is the
  README update after it, the data files unchanged).
* columns, as the official scripts read them (github.com/TIGER-AI-Lab/EditReward,
  EditReward/evaluate/inference_{2,3,4}pair_hf.py): one split ``train``; ``dataset`` in {2pair, 3pair, 4pair}
  (the scripts keep the rows of one K); ``id``; ``instruction``; ``source_image``, ``candidate_1``, ``candidate_2``
  (HF Image); ``ranking``; ``comparison_type``; optional ``score_1``, ``score_2``, ``model_1``, ``model_2``.
* ``ranking``: "A>B", "B>A", "A=B" for K=2; for K=3/4 a relation between the two letters of ``comparison_type``
  ("AvsC" -> "A>C" or "C>A"), where ``candidate_1`` is the first letter and ``candidate_2`` the second (the
  scripts map Left/Right to the comparison this way).
* a group is the part of ``id`` before the first "_" (``id[:10]`` when there is none). The official rule for judges
  (``tasks/rule_editreward.py``, rule ``editreward-exact``): the answer read by the scripts' parser and compared
  with the ``ranking`` string exactly; a failed call is dropped, an unreadable answer is a wrong comparison; a group
  is formed from its answered rows and counts only when all C(K, 2) are there and right. Generic VLM judges send
  the scripts' templates (``pairwise_{2,3,4}pair.txt``; K=3/4 with the row's ``comparison_type``).
* the authors' scalar-RM scorer (EditReward/evaluate/eval_bench.py) is the alternative protocol ``editreward-ties``:
  K=2 "accuracy with ties" (epsilon swept over {0} and every observed gap, the first best kept, Deutsch et al.
  2023), K=3/4 strict ranking accuracy (``tuple(np.argsort(scores)[::-1])`` against the group's order) and pairwise
  accuracy without human ties; labels read as its ``get_pairwise_gt`` reads them (``tasks/rule_editreward_ties.py``).
* RationalRewards bundle (TIGER-Lab/RationalRewards-EvalData-GenAIBench-MMRB2-ERBench), EditReward part: read by
  github.com/TIGER-AI-Lab/RationalRewards reward_model_evaluation/modular_rm_eval/dataset_adapters.py, which knows
  it by the columns {instruction, source_image, candidate_1, candidate_2} and reads ``model_1/2``, ``ranking`` and
  ``instruction_following_1/2``, ``visual_quality_1/2``; the pair id is the row index; the paper's scorer
  (modular_rm_eval/scoring.py) predicts "A=B" only on exactly equal summed aspect scores, counts an N/A aspect 2.5
  and skips failed calls.

Assumed (not verifiable from public text):

* the bundle's file names on the hub (the scripts default to ``data/editreward_bench.parquet``): any parquet file
  holding the four columns above is taken when ``--data`` has no ``Kpair/`` folders. A file without a ``dataset``
  column is taken whole, as rows of the requested K; without an ``id`` column groups cannot be formed, so K=3/4
  refuse it.
* when a file has no ``ranking`` column, the label is the comparison of ``instruction_following + visual_quality``
  (the paper's ``ground_truth_fields`` label source), ties on equality.
* sizes: the paper reports 186 pairs, 150 groups of 3 and 148 groups of 4 (186 / 450 / 888 comparisons); a run
  counts the rows of the files actually read (parquet metadata), which is what progress and coverage use.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rrbench.hubdata import Rows, Source, column, media, open_rows
from rrbench.registry import require, task
from rrbench.types import (
    Label,
    LabelKind,
    Media,
    Protocol,
    Sample,
    Task,
    TaskInfo,
    TaskKind,
    UserError,
)

VERSION = "2"  # 2: official prompt, parser and failure rule of the scripts (issue 12)
DATASET = "TIGER-Lab/EditReward-Bench"
REVISION = "837769c456117bcea42f72ab1d7f5125fe589eb4"
PAPER = "EditReward: A Human-Aligned Reward Model for Instruction-Guided Image Editing (arXiv:2509.26346)"
HOMEPAGE = "https://github.com/TIGER-AI-Lab/EditReward"
SHARDS = {2: 1, 3: 2, 4: 4}  # parquet shards per Kpair folder at the pinned revision
REPORTED_COMPARISONS = {2: 186, 3: 150 * 3, 4: 148 * 6}  # the paper's group counts times C(K, 2)
EDIT_COLUMNS = ("instruction", "source_image", "candidate_1", "candidate_2")
SCORE_COLUMNS = ("instruction_following_1", "visual_quality_1", "instruction_following_2", "visual_quality_2")
META_COLUMNS = ("dataset", "comparison_type", "model_1", "model_2", "score_1", "score_2", *SCORE_COLUMNS)
_CONFIG = re.compile(r"[234]pair")
_COMPARISON = re.compile(r"([A-D])vs([A-D])")
_SOURCE = Source(DATASET, "train", revision=REVISION)  # names the dataset in column errors


# --------------------------------------------------------------------------------------------------- protocols


def official_protocol(k: int) -> Protocol:
    """The official scripts' rule (``tasks/rule_editreward.py``): the judge's answer read by their parser and compared
    with the ranking string; a failed call is dropped. K=2: per-comparison accuracy. K=3/4: group accuracy
    (headline) and per-comparison accuracy over the answered rows; a group whose every call failed is dropped, a
    partly failed one is wrong."""
    if k == 2:
        return Protocol(id="editreward-3class", order="fixed", tie_policy="editreward-exact", metrics=("accuracy",))
    return Protocol(id="editreward-group", order="fixed", tie_policy="editreward-exact", failure_policy="excluded",
                    metrics=("group-accuracy", "accuracy"))


def paper_protocol() -> Protocol:
    """RationalRewards paper: every row a pair, one fixed order, ties one class matched on exactly equal scores, N/A
    aspect scores counted 2.5 (modular_rm_eval/scoring.py)."""
    return Protocol(id="rationalrewards-paper", order="fixed", tie_policy="exact", failure_policy="excluded",
                    metrics=("accuracy",), options={"na": "2.5"})


def ties_protocol(k: int) -> Protocol:
    """EditReward's scorer for scalar reward models (eval_bench.py): K=2 accuracy with ties (epsilon on the score gap
    chosen for the best accuracy, in ``extra``); K=3/4 strict ranking accuracy of each group (argsort of its scores,
    no epsilon) and pairwise accuracy without human ties."""
    if k == 2:
        return Protocol(id="editreward-ties", order="fixed", tie_policy="editreward-ties", metrics=("accuracy",))
    return Protocol(id="editreward-ties", order="fixed", tie_policy="editreward-without-ties",
                    metrics=("strict-ranking-accuracy", "accuracy"))


# --------------------------------------------------------------------------------------------------- files


def hub_source(k: int) -> Source:
    n = SHARDS[k]
    files = tuple(f"{k}pair/train-{i:05d}-of-{n:05d}.parquet" for i in range(n))
    return Source(DATASET, "train", config=f"{k}pair", revision=REVISION, files=files)


def open_editreward(k: int, data: Path | None) -> Rows:
    """The hub snapshot's ``Kpair`` shards, or a local copy: the hub layout, a flat file or the RationalRewards
    bundle (whose other benchmarks' files are told apart by their columns)."""
    if data is None:
        return open_rows(hub_source(k), None)
    if not data.exists():
        raise UserError(f"--data path does not exist: {data}")
    if data.is_file():
        return Rows(files=(data,), root=data.parent, size=None, origin=str(data))
    return Rows(files=_local_files(data, k), root=data, size=None, origin=str(data))


def _local_files(folder: Path, k: int) -> tuple[Path, ...]:
    parquet = sorted(p for p in folder.rglob("*.parquet") if ".cache" not in p.parts)
    if not parquet:
        raise UserError(f"no parquet files under {folder}; expected {DATASET}'s layout ({k}pair/train-*.parquet); "
                        f"fetch it once: {hub_source(k).fetch_hint()}")
    configs = {part for p in parquet for part in p.relative_to(folder).parts[:-1] if _CONFIG.fullmatch(part)}
    if configs:
        chosen = [p for p in parquet if f"{k}pair" in p.relative_to(folder).parts[:-1]]
        if not chosen:
            raise UserError(f"{folder} has no {k}pair/ folder (found: {', '.join(sorted(configs))})")
        return tuple(chosen)
    chosen = [p for p in parquet if set(EDIT_COLUMNS) <= set(_columns(p))]
    if not chosen:
        raise UserError(f"no parquet file under {folder} has EditReward-Bench's columns ({', '.join(EDIT_COLUMNS)})")
    return tuple(chosen)


def _columns(file: Path) -> list[str]:
    pq = require("pyarrow.parquet", "datasets")
    try:
        return list(pq.read_schema(file).names)
    except Exception as exc:
        raise UserError(f"not a readable parquet file: {file} ({type(exc).__name__}: {exc})") from None


def count_rows(k: int, data: Path | None) -> int | None:
    """Rows of this K in the files that ``load`` reads, from parquet metadata (and the ``dataset`` column alone
    where a file mixes Ks); None for JSON files, whose size is only known by reading them."""
    rows = open_editreward(k, data)
    if any(f.suffix != ".parquet" for f in rows.files):
        return None
    found: Counter[str | None] = Counter()
    for file in rows.files:
        found.update(_datasets_of(file))
    total = found[f"{k}pair"] + found[None]
    others = sorted(str(name) for name in found if name is not None)
    if total == 0 and others:
        raise UserError(f"{rows.origin} holds no {k}pair rows (its 'dataset' values: {', '.join(others)})")
    return total


def _datasets_of(file: Path) -> Counter[str | None]:
    """Row counts by ``dataset`` value; the rows of a file without that column count under None (any K)."""
    pq = require("pyarrow.parquet", "datasets")
    try:
        reader = pq.ParquetFile(file)
        if "dataset" not in reader.schema_arrow.names:
            return Counter({None: int(reader.metadata.num_rows)})
        values = reader.read(columns=["dataset"]).column("dataset").to_pylist()
    except Exception as exc:
        raise UserError(f"not a readable parquet file: {file} ({type(exc).__name__}: {exc})") from None
    return Counter("null" if v is None else str(v) for v in values)  # a null K matches none, as in load


# --------------------------------------------------------------------------------------------------- labels


def _relations(first: str, second: str) -> dict[str, tuple[LabelKind, int | None]]:
    """Every spelling of a relation between the two shown letters; anything else is an unknown label."""
    win_first, win_second = (LabelKind.WINNER, 0), (LabelKind.WINNER, 1)
    tie = (LabelKind.TIE, None)
    return {
        f"{first}>{second}": win_first, f"{second}<{first}": win_first,
        f"{second}>{first}": win_second, f"{first}<{second}": win_second,
        f"{first}={second}": tie, f"{second}={first}": tie,
        f"{first}={second}=Good": (LabelKind.BOTH_GOOD, None), f"{first}={second}=Bad": (LabelKind.BOTH_BAD, None),
    }


def parse_ranking(ranking: Any, comparison: Any) -> Label:
    """The label of one comparison; ``comparison`` ("AvsC") names the letters of candidate_1 and candidate_2."""
    if not isinstance(ranking, str):
        return Label.unknown(None if ranking is None else str(ranking))
    letters = ("A", "B") if comparison is None else _letters(comparison)
    if letters is None:
        return Label.unknown(f"{ranking} ({comparison})")
    found = _relations(*letters).get(ranking.replace(" ", ""))
    if found is None:
        return Label.unknown(ranking)
    kind, winner = found
    return Label.win(winner, original=ranking) if winner is not None else Label.tie(kind, original=ranking)


def _letters(comparison: Any) -> tuple[str, str] | None:
    match = _COMPARISON.fullmatch(str(comparison).strip())
    if match is None or match.group(1) == match.group(2):
        return None
    return match.group(1), match.group(2)


def label_from_scores(row: dict[str, Any]) -> Label:
    """No ``ranking`` column: the human aspect scores summed per candidate (the paper's ground-truth fields)."""
    if not all(c in row for c in SCORE_COLUMNS):
        column(row, "ranking", _SOURCE)  # raises: neither a ranking nor the scores to derive one
    values = [row[c] for c in SCORE_COLUMNS]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return Label.unknown(f"instruction_following/visual_quality {values}")
    first, second = values[0] + values[1], values[2] + values[3]
    original = f"instruction_following+visual_quality {first:g} vs {second:g}"
    if first == second:
        return Label.tie(original=original)
    return Label.win(0 if first > second else 1, original=original)


def row_label(row: dict[str, Any]) -> Label:
    if "ranking" not in row:
        return label_from_scores(row)
    return parse_ranking(row["ranking"], row.get("comparison_type"))


def group_of(sample_id: str) -> str:
    """The official scripts' rule, kept verbatim so groups match theirs."""
    return sample_id.split("_")[0] if "_" in sample_id else sample_id[:10]


# --------------------------------------------------------------------------------------------------- samples



def _image(row: dict[str, Any], name: str, root: Path, sample_id: str) -> Media:
    """The cell's image; a missing one fails only when a model reads it (that sample's data failure)."""
    return media(column(row, name, _SOURCE), root, f"{DATASET} {sample_id} {name}")


def _meta(row: dict[str, Any], sample_id: str, has_id: bool, k: int) -> dict[str, Any]:
    meta: dict[str, Any] = {c: row[c] for c in META_COLUMNS if row.get(c) is not None}
    if isinstance(row.get("ranking"), str):
        meta["ranking"] = row["ranking"]  # the official rule compares the judge's vote with this exact string
    if has_id:
        meta["group"] = group_of(sample_id)
        meta["group_size"] = k * (k - 1) // 2  # a group short of its C(K, 2) comparisons counts as wrong
    return meta


class _Builder:
    """Turns the rows of one K into samples with unique, stable ids."""

    def __init__(self, k: int, root: Path) -> None:
        self.k, self.root = k, root
        self.seen: set[str] = set()
        self.index = 0

    def sample(self, row: dict[str, Any]) -> Sample:
        raw_id = row.get("id")
        if self.k > 2 and raw_id is None:
            raise UserError(f"editreward-bench k={self.k}: the rows have no 'id', so their groups of {self.k} cannot "
                            "be formed; use the hub copy (or -T k=2 to score the rows as pairs)")
        base = str(raw_id) if raw_id is not None else f"{self.k}pair-{self.index}"
        sample_id = base if base not in self.seen else f"{base}~{self.index}"  # a repeated id must not stop the run
        self.seen.add(sample_id)
        self.index += 1
        candidates = tuple(_image(row, c, self.root, sample_id) for c in ("candidate_1", "candidate_2"))
        return Sample(
            id=sample_id,
            prompt=str(column(row, "instruction", _SOURCE)),
            candidates=candidates,
            label=row_label(row),
            source=(_image(row, "source_image", self.root, sample_id),),
            meta=_meta(row, base, raw_id is not None, self.k),
        )


def load_samples(k: int, data: Path | None) -> Iterator[Sample]:
    rows = open_editreward(k, data)
    builder = _Builder(k, rows.root)
    others: set[str] = set()
    for row in rows:
        if "dataset" in row and row["dataset"] != f"{k}pair":
            others.add(str(row["dataset"] or "null"))  # a file holding several Ks, as the official scripts load it
            continue
        yield builder.sample(row)
    if builder.index == 0 and others:
        raise UserError(f"{rows.origin} holds no {k}pair rows (its 'dataset' values: {', '.join(sorted(others))})")


# --------------------------------------------------------------------------------------------------- task


@task("editreward-bench", description="EditReward-Bench: instruction edits in pairs (k=2, 3-class) or groups of 3/4")
def editreward_bench(k: int = 2) -> Task:
    """``k`` = candidates per group: 2 (pairs, 3-class exact match), 3 or 4 (a group is right only if all is)."""
    if isinstance(k, bool) or k not in SHARDS:
        raise UserError(f"editreward-bench: k must be 2, 3 or 4, got {k!r}")
    alternatives = {p.id: p for p in (paper_protocol(), ties_protocol(k))}
    return Task(
        name="editreward-bench",
        version=VERSION,
        kind=TaskKind.PAIR if k == 2 else TaskKind.GROUP,
        load=functools.partial(load_samples, k),
        protocol=official_protocol(k),
        size=REPORTED_COMPARISONS[k],
        info=TaskInfo(paper=PAPER, dataset=DATASET, revision=REVISION, license="apache-2.0",
                      size=REPORTED_COMPARISONS[k], homepage=HOMEPAGE),
        generation="edit",
        alternatives=alternatives,
        count=functools.partial(count_rows, k),
        judge_prompt=f"editreward-bench/verdict-edit-{k}pair",
        prompt_vars=("comparison_type",) if k > 2 else (),
    )
