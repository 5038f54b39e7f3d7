"""`pica-bench`: PICABench (Pu et al. 2025), physically realistic image editing judged by PICAEval's region questions.

Verified (sources named):

* Hub: ``Andrew613/PICABench``, split ``picabench``, one file ``data/picabench-00000-of-00001.parquet`` of 900 rows,
  added by commit ``1bed1d23b676d0e957ec59af14c770f375a07492`` ("Upload picabench: 900 samples"); its card lists
  the columns physics_category, physics_law, edit_operation, superficial_prompt, intermediate_prompt,
  explicit_prompt, annotated_qa_pairs (question, answer, box {x, y, width, height} plus annotation bookkeeping),
  edit_area, input_image (an HF Image), image_path. The later commit ``1ec7b20`` edits the card only. License
  apache-2.0 (card).
* Official code: github.com/Andrew0613/PICABench at 0514acd. ``prepare_meta_info.py`` numbers cases by their row
  position (``index``, :164), expects the edited image of case i at ``{index:05d}.jpg`` (:125, ``find_output_image``
  :35-53) and writes ``meta_info.json`` next to it (:62-91, 196-198); the evaluators read ``output_path`` relative
  to that file's folder (PicaEval_gpt.py:44-68, 548-550). Cases without an output image are left out (:186-189).
* Prompts: three tiers per case; the RationalRewards paper edits from ``superficial_prompt`` (its
  test_time_prompt_tuning code), the default here (``-T prompt=intermediate|explicit`` for the others).

Assumed / chosen here:

* Revision: the data commit above (the full sha from the hub's commit page). The snapshot actually read is recorded.
* Sample ids: the row position as five digits (``00000``...), which is also the official file name.
* ``edit_instruction`` and ``difficulty`` of meta_info.json come from columns of those names when a copy has them;
  the hub parquet has neither, so, as prepare_meta_info.py (:83, 87) writes them, "" and "unknown".
* The edited image is exported under ``{index:05d}.jpg`` with the generator's own bytes (PNG for rrbench's
  generators): the official scripts open it with Pillow, which reads the content, not the name.
* The source image is the ``input_image`` cell; prepare_meta_info.py's fallback to ``image_path`` (a path on the
  authors' machines, :167-174) is not followed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rrbench.hubdata import Rows, Source, column, open_rows
from rrbench.protocols import official
from rrbench.registry import task
from rrbench.tasks import _bundle
from rrbench.tasks.judge_pica import PicaJudge, dump, meta_item
from rrbench.types import Label, Protocol, Sample, Task, TaskInfo, TaskKind, UserError

DATASET = "Andrew613/PICABench"
REVISION = "1bed1d23b676d0e957ec59af14c770f375a07492"  # "Upload picabench: 900 samples" (see the docstring)
SPLIT = "picabench"
FILES = ("data/picabench-*.parquet",)
SIZE = 900
VERSION = "1"
PROMPTS = ("superficial", "intermediate", "explicit")
PAPER = "PICABench: How Far Are We from Physically Realistic Image Editing? (Pu et al. 2025), arXiv 2510.17681"
LICENSE = "apache-2.0"
HOMEPAGE = "https://picabench.github.io"
META_INFO = "meta_info.json"

# Images never judged (missing from the folder or not made) are left out, as prepare_meta_info.py leaves them out.
OFFICIAL = Protocol(id="pica-bench", mode=official.MODE, failure_policy="excluded", metrics=("pica-accuracy",))
REWARD_MODEL = Protocol(id="pica-bench-rm", mode="pointwise", metrics=("mean-score",))
SOURCE = Source(DATASET, SPLIT, None, REVISION, files=FILES)


def layout(sample: Sample, index: int) -> str:
    """prepare_meta_info.py's default name of the edited image (``--output_name_pattern``, :125)."""
    number = int(sample.meta["index"])
    return f"{number:05d}.jpg" if index == 0 else f"{number:05d}_{index}.jpg"


def layout_files(samples: Sequence[Sample]) -> Mapping[str, bytes]:
    """``meta_info.json`` for the exported cases, in dataset order, as prepare_meta_info.py writes it."""
    items = sorted((meta_item(s) for s in samples), key=lambda item: int(item["index"]))
    return {META_INFO: dump(items)}


def _plain(value: Any) -> Any:
    """A cell as JSON keeps it (what the official json.dump writes); bytes never belong in the metadata."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes | bytearray):
        return None
    return value


def _sample(row: dict[str, Any], index: int, root: Path, prompt: str) -> Sample:
    text = column(row, f"{prompt}_prompt", SOURCE)
    if not isinstance(text, str):
        raise UserError(f"{DATASET}: row {index} has no {prompt}_prompt text (got {type(text).__name__})")
    sample_id = f"{index:05d}"
    meta: dict[str, Any] = {
        "index": index,
        "category": row.get("physics_category"),
        "physics_category": row.get("physics_category", "unknown"),
        "physics_law": row.get("physics_law", "unknown"),
        "edit_operation": row.get("edit_operation", "unknown"),
        "prompt_tier": prompt,
        "annotated_qa_pairs": _plain(column(row, "annotated_qa_pairs", SOURCE) or []),
        "edit_area": _plain(row.get("edit_area", "unknown")),
    }
    for optional in ("edit_instruction", "difficulty"):  # read by prepare_meta_info.py when present (:83, 87)
        if optional in row:
            meta[optional] = _plain(row[optional])
    source = (_bundle.lazy_media(row.get("input_image"), root, f"{sample_id} input_image"),)
    return Sample(sample_id, text, (), Label.none(), source=source, meta=meta)


def _rows(data: Path | None) -> Rows:
    return open_rows(SOURCE, data)


@task("pica-bench", description="PICABench: 900 physics-aware edits judged by PICAEval's region yes/no questions "
                                "(-T prompt=superficial|intermediate|explicit)")
def pica_bench(prompt: str = "superficial") -> Task:
    """Edit each source image by the case's prompt; the official judge asks one question per annotated region."""
    if prompt not in PROMPTS:
        raise UserError(f"pica-bench: prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}")

    def load(data: Path | None) -> Iterator[Sample]:
        rows = _rows(data)
        return (_sample(row, i, rows.root, prompt) for i, row in enumerate(rows))

    return Task(
        name="pica-bench",
        version=VERSION,
        kind=TaskKind.GENERATION_EDIT,
        load=load,
        protocol=OFFICIAL,
        size=SIZE,
        info=TaskInfo(paper=PAPER, dataset=f"{DATASET} ({SPLIT})", revision=REVISION, license=LICENSE, size=SIZE,
                      homepage=HOMEPAGE),
        generation="edit",
        alternatives={REWARD_MODEL.id: REWARD_MODEL},
        count=lambda data: _rows(data).size,
        images_per_prompt=1,
        layout=layout,
        judge=PicaJudge(),
        layout_files=layout_files,
    )
