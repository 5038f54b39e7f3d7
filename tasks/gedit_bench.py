"""`gedit-bench`: GEdit-Bench (StepFun, Step1X-Edit), 606 real-world editing instructions in 11 groups, judged by
VIEScore with GPT-4.1 (``tasks/judge_gedit.py``) and aggregated as calculate_statistics.py does
(``tasks/metric_gedit.py``). ``-T lang=en`` (default) or ``-T lang=cn``: the dataset holds each instruction in both.

Verified (official code: github.com/stepfun-ai/Step1X-Edit at ``judge_gedit.COMMIT``, ``GEdit-Bench/``):

* Data: HF ``stepfun-ai/GEdit-Bench``, split ``train`` (test_gedit_score.py:75 iterates it,
  generate_image_example.py:36 reads ``dataset['train']``); columns task_type, key, instruction,
  instruction_language, input_image, input_image_raw, Intersection_exist (generate_image_example.py:4-11,37-43).
  The languages are ``en`` and ``cn``: the output folders are named by ``instruction_language`` and EVAL.md shows
  ``cn/`` and ``en/``. 11 groups (test_gedit_score.py:14-16). License MIT (dataset card).
* Which image is which: the generation example edits ``input_image_raw`` (resized to about 512x512 for its model,
  generate_image_example.py:45-46) and writes ``input_image`` as ``<key>_SRCIMG.png`` (line 53), which is what the
  judge compares against (test_gedit_score.py:25,33). So a sample's ``source`` (what a generator edits) is
  ``input_image_raw``, and its ``reference`` is ``input_image`` (what only the judge reads).
  rrbench's generators size their own inputs (-G settings), not the example's 512x512 area.
* Output layout: ``fullset/<task_type>/<instruction_language>/<key>.png`` below the model folder
  (test_gedit_score.py:26, EVAL.md), beside ``<key>_SRCIMG.png`` (written by ``layout_files``: the official scorer
  skips an image whose source file is missing, test_gedit_score.py:125-127). One image per instruction, no seed
  convention (rrbench's per-image seeds apply).

Chosen here:

* Revision: the hub repository holds the data as Arrow files (the card lists "Formats: arrow"), which rrbench's hub
  reader does not read; it reads the hub's own parquet conversion (``PARQUET_REVISION``, a branch, not a pinned
  commit), and the snapshot's commit is recorded in run.json. ``MAIN_COMMIT`` is the main-branch commit seen on the
  card's page (not verified to be the newest). ``--data DIR``: any folder whose ``train`` parquet files hold the
  columns above (``default/train/*.parquet`` as the conversion lays them out, or ``data/train-*.parquet``).
* Sample ids ``<task_type>/<key>`` (a key is only used within its group's folder officially); the language is a
  task argument, so en and cn runs have the same ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rrbench.hubdata import Rows, Source, column, media, open_rows
from rrbench.protocols import official
from rrbench.registry import require, task
from rrbench.tasks.judge_gedit import GEditJudge, source_png
from rrbench.types import DataError, Label, Media, Protocol, Sample, Task, TaskInfo, TaskKind, UserError

DATASET = "stepfun-ai/GEdit-Bench"
SPLIT = "train"
PARQUET_REVISION = "refs/convert/parquet"  # the hub's parquet conversion (a branch): no pinned commit verified
MAIN_COMMIT = "58159f3de6689982b1df7f1a6c557ded16548a24"  # main branch (Arrow files), seen on the dataset card page
VERSION = "1"
LANGUAGES = ("en", "cn")
SIZE = 606  # instructions per language (1,212 rows)
PAPER = "Step1X-Edit: A Practical Framework for General Image Editing (Liu et al. 2025), arXiv 2504.17761"
LICENSE = "MIT"
HOMEPAGE = "https://github.com/stepfun-ai/Step1X-Edit/tree/main/GEdit-Bench"
METRICS = ("gedit-o", "gedit-sc", "gedit-pq", "gedit-o-intersection", "gedit-sc-intersection",
           "gedit-pq-intersection")

OFFICIAL = Protocol(id="gedit-bench", mode=official.MODE, failure_policy="excluded", metrics=METRICS)
# The same, leaving out images whose SC or PQ is a substituted random number (counted as parse failures).
EXCLUDED = Protocol(id="gedit-bench-excluded", mode=official.MODE, failure_policy="excluded", metrics=METRICS,
                    options={"guessed": "exclude"})
RM = Protocol(id="gedit-bench-rm", mode="pointwise", metrics=("mean-score",))


def _source(data: Path | None) -> Source:
    if data is not None:
        return Source(DATASET, SPLIT)  # a local copy: any train parquet files in the folder
    return Source(DATASET, SPLIT, revision=PARQUET_REVISION, files=("default/train/*.parquet",))


def _cell(row: dict[str, Any], name: str, source: Source) -> Any:
    return column(row, name, source)


def _sample(row: dict[str, Any], rows: Rows, source: Source) -> Sample:
    task_type, key = str(_cell(row, "task_type", source)), str(_cell(row, "key", source))
    sample_id = f"{task_type}/{key}"
    raw = media(_cell(row, "input_image_raw", source), rows.root, f"{sample_id} input_image_raw")
    shown = media(_cell(row, "input_image", source), rows.root, f"{sample_id} input_image")
    meta = {"category": task_type, "task_type": task_type, "key": key,
            "language": str(_cell(row, "instruction_language", source)),
            "intersection_exist": bool(_cell(row, "Intersection_exist", source))}
    return Sample(sample_id, str(_cell(row, "instruction", source)), (), Label.none(), source=(raw,), meta=meta,
                  reference=(shown,))


def _load(lang: str) -> Any:
    def load(data: Path | None) -> Iterator[Sample]:
        source = _source(data)
        rows = open_rows(source, data)
        return (_sample(row, rows, source) for row in rows if row.get("instruction_language") == lang)

    return load


def _count(lang: str) -> Any:
    def count(data: Path | None) -> int | None:
        """Rows of this language in a local copy, from the parquet files' one string column (no pixels read)."""
        if data is None:
            return SIZE
        rows = open_rows(_source(data), data)
        pq = require("pyarrow.parquet", "datasets")
        try:
            columns = [pq.read_table(f, columns=["instruction_language"]).column(0).to_pylist() for f in rows.files]
        except Exception:  # another schema or an unreadable file: load() says which in one line
            return None
        return sum(value == lang for values in columns for value in values)

    return count


def layout(sample: Sample, index: int) -> str:
    """test_gedit_score.py:26: ``fullset/<task_type>/<language>/<key>.png`` (one image per instruction)."""
    meta = sample.meta
    return f"fullset/{meta['task_type']}/{meta['language']}/{meta['key']}.png"


def companion(sample: Sample) -> list[str]:
    """The ``<key>_SRCIMG.png`` beside a sample's image in the official layout (``layout_files`` writes it)."""
    return [layout(sample, 0)[: -len(".png")] + "_SRCIMG.png"]


def layout_files(samples: Sequence[Sample]) -> Mapping[str, bytes]:
    """The ``<key>_SRCIMG.png`` beside each image: the official scorer needs it (test_gedit_score.py:122,125)."""
    out = {}
    for sample in samples:
        reference: Media = sample.reference[0]
        try:
            out[companion(sample)[0]] = source_png(reference)
        except (DataError, OSError, ValueError) as exc:
            raise DataError(f"{sample.id}: cannot write its _SRCIMG.png: {exc}") from exc
    return out


@task("gedit-bench", description="GEdit-Bench: 606 real-world edits in 11 groups, VIEScore with GPT-4.1 "
                                 "(SC, PQ, O = sqrt(SC*PQ)); -T lang=en|cn")
def gedit_bench(lang: str = "en") -> Task:
    """GEdit-Bench-EN (or -CN): edit each image as instructed; the judge scores SC and PQ per image."""
    if lang not in LANGUAGES:
        raise UserError(f"gedit-bench: lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    return Task(
        name="gedit-bench",
        version=VERSION,
        kind=TaskKind.GENERATION_EDIT,
        load=_load(lang),
        count=_count(lang),
        protocol=OFFICIAL,
        size=SIZE,
        info=TaskInfo(paper=PAPER, dataset=DATASET, revision=PARQUET_REVISION, license=LICENSE, size=SIZE,
                      homepage=HOMEPAGE),
        generation="edit",
        alternatives={EXCLUDED.id: EXCLUDED, RM.id: RM},
        images_per_prompt=1,
        layout=layout,
        judge=GEditJudge(),
        layout_files=layout_files,
        layout_companions=companion,
    )
