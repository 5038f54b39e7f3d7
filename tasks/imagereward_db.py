"""ImageRewardDB test set (``data/test.json`` of github.com/THUDM/ImageReward) with ImageReward's own scoring.

Verified (public sources, read with the search tool):

- ``THUDM/ImageReward: data/test.json`` (commit 6d863e1) is a list of ``{"id": "005658-0040", "prompt": str,
  "generations": ["part-005658/images/0040/<uuid>.webp", ...], "ranking": [1, 2, 5, 3]}``: 4 to 9 images per prompt,
  ``ranking[i]`` the human rank of ``generations[i]`` (1 = best; equal numbers are ties, e.g. ``[1, 2, 1, 4, 3, 4]``).
- ``THUDM/ImageReward: test.py`` (``acc``) and ``scripts/test.sh``: image paths are joined to ``data/test_images``
  (unpacked from ``test_images.zip``, downloaded from cloud.tsinghua.edu.cn by test.sh); accuracy is pooled over
  every image pair of every prompt: a pair with a strict human order counts, and is right iff the model's rewards
  order it strictly the same way; human ties are skipped and a model tie is wrong. rrbench's ``imagereward`` tie
  policy with the ``accuracy`` metric computes exactly this (units = human-ordered pairs, pooled).
- HF ``THUDM/ImageRewardDB`` card: the test split has 466 prompts; license Apache-2.0. That hub copy needs a loading
  script and zipped images, so it is not read here: the task reads the GitHub test.json and its image folder.

Assumed: the test set cannot be fetched from the hub in a readable form, so there is no default source; ``--data``
is the folder holding ``test.json`` (the repo's ``data/`` folder, or the repo root with ``data/test.json``) with the
images under ``test_images/`` next to it (or next to test.json itself).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rrbench.hubdata import Rows, Source, column, confinement, missing, open_rows
from rrbench.registry import task
from rrbench.types import Label, LabelKind, Media, Protocol, Sample, Task, TaskInfo, TaskKind, UserError, shown

VERSION = "1"
REPO = "THUDM/ImageReward"
COMMIT = "6d863e141e9cb43c07f992e3796af538cf01740e"  # the commit of data/test.json (its only version)
SOURCE = Source(f"github.com/{REPO}", split="test", revision=COMMIT, files=("test.json", "data/test.json"))
FETCH_HINT = (
    f"git clone https://github.com/{REPO} && git -C ImageReward checkout {COMMIT}, then download test_images.zip "
    "(the link is in ImageReward/scripts/test.sh) and unzip it into ImageReward/data/ (giving data/test_images/), "
    "then pass --data ImageReward/data"
)


@task("imagereward-db", description="ImageRewardDB test: pairs of each prompt's ranking; human ties skipped")
def imagereward_db() -> Task:
    """ImageRewardDB test rankings, scored pointwise as ImageReward's test.py does (pooled pair accuracy)."""

    def load(data: Path | None) -> Iterator[Sample]:
        rows = _rows(data)
        images = _image_folder(rows.files[0].parent)
        return (_sample(row, images) for row in rows)

    official = Protocol(id="imagereward-official", mode="pointwise", order="fixed", tie_policy="imagereward",
                        failure_policy="excluded", metrics=("accuracy",))
    # The paper's rule on every image pair: a human tie is a class of its own, matched only by equal scores.
    paper = Protocol(id="rationalrewards-paper", mode="pointwise", order="fixed", tie_policy="exact",
                     failure_policy="excluded", metrics=("accuracy",), options={"na": "2.5"})
    return Task(
        name="imagereward-db",
        version=VERSION,
        kind=TaskKind.RANKING,
        load=load,
        protocol=official,
        size=466,
        info=TaskInfo(
            paper="ImageReward: Learning and Evaluating Human Preferences for Text-to-Image Generation "
                  "(Xu et al., NeurIPS 2023), arXiv:2304.05977",
            dataset=f"github.com/{REPO} data/test.json + test_images",
            revision=COMMIT,
            license="Apache-2.0",
            size=466,
            homepage=f"https://github.com/{REPO}",
        ),
        alternatives={"rationalrewards-paper": paper},
        count=lambda data: sum(1 for _ in _rows(data)),
    )


def _rows(data: Path | None) -> Rows:
    if data is None:
        raise UserError(f"imagereward-db has no hub copy in a readable form; fetch it once: {FETCH_HINT}")
    return open_rows(SOURCE, data)


def _image_folder(folder: Path) -> Path:
    """Where ``generations`` paths start: test.sh's ``data/test_images``, else the folder of test.json itself."""
    images = folder / "test_images"
    return images if images.is_dir() else folder


def _sample(row: dict[str, Any], images: Path) -> Sample:
    sample_id = str(column(row, "id", SOURCE))
    prompt = str(column(row, "prompt", SOURCE))
    generations = column(row, "generations", SOURCE)
    ranking = column(row, "ranking", SOURCE)
    if not (isinstance(generations, list) and generations and all(isinstance(g, str) and g for g in generations)):
        return Sample(sample_id, prompt, (), Label.unknown(f"generations={json.dumps(generations)}"))
    candidates = tuple(_image(images, g) for g in generations)
    return Sample(sample_id, prompt, candidates, ranking_label(ranking, len(generations)),
                  meta={"generations": [shown(g, None) for g in generations]})  # UTF-8-safe in the log


def ranking_label(value: Any, n_images: int) -> Label:
    """``ranking`` as a RANKING label (1 = best, equal = tie); a list that does not fit is an unknown label."""
    original = json.dumps(value)
    if not isinstance(value, list) or len(value) != n_images or n_images < 2:
        return Label.unknown(original)
    if not all(isinstance(r, int | float) and not isinstance(r, bool) for r in value):
        return Label.unknown(original)
    return Label(LabelKind.RANKING, ranks=tuple(value), original=original)


def _image(folder: Path, relative: str) -> Media:
    """The image a row names, confined to ``folder`` (where its paths start): a path that leaves it, or a link,
    FIFO or device, is the sample's data failure and is never opened (Media.from_path)."""
    path = folder / relative
    if os.path.exists(path):  # False, never an error, for a NUL, a 10,000-character name...
        return Media.from_path(path, root=confinement(folder))
    return missing(f"imagereward-db/missing/{shown(relative)}", f"no image {shown(str(path))}")

