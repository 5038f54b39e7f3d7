"""HPDv2 and HPDv3 test sets (Human Preference Dataset v2 / v3) with their official scoring.

Verified (public sources, read with the search tool):

- HPDv2 (HF ``ymhao/HPDv2``, dataset card and ``HPDv2.py``; code ``tgxs002/HPSv2``): ``test.json`` is a list of
  ``{"prompt": str, "image_path": [str], "rank": [int], "raw_annotations": [...]}``; ``rank[i]`` is the averaged
  human rank of ``image_path[i]`` (1 = best); the images ship in ``test.tar.gz`` next to it. The official scorer
  (``hpsv2/evaluation.py: evaluate_rank`` and ``src/training/train.py: inversion_score``) reads
  ``os.path.join(image_folder, image_path)``, ranks each prompt's images by score and averages, over prompts,
  ``1 - discordant pairs / all pairs``. License Apache-2.0.
- HPDv3 (HF ``MizzenAI/HPDv3``, README of ``MizzenAI/HPSv3``): ``test.json`` is a list of ``{"prompt", "path1",
  "path2", "model1", "model2"}`` where ``path1`` is always the preferred image; paths such as ``images/<uuid>.jpg``
  are relative to the dataset root, and the images ship in the split archive ``images.tar.gz.*`` of the whole
  dataset. Accuracy = share of pairs whose preferred image gets the strictly higher reward (an equal reward is
  counted as not correct, as in the HPSv3 evaluation script). License MIT.

Assumed (not verifiable from the stored sources):

- HPDv2 ``image_path`` is relative either to the folder holding ``test.json`` or to its ``test/`` sub-folder (what
  ``test.tar.gz`` unpacks to is not documented); both are tried.
- No HPDv3 commit sha could be found, so its revision is not pinned; HPDv2 is pinned to the commit whose tree the
  dataset page lists (``bb0f256``). HPDv3's test images come only in the archive of the whole dataset, so hpdv3
  needs ``--data`` (a one-line error gives the fetch recipe); hpdv2 fetches ``test.json`` and ``test.tar.gz`` itself.
- The HPDv2 test size (400 prompts) is the paper's; the runner counts the rows of the file it reads.

The default HPDv2 protocol reproduces the official number (``hpdv2-inversion``, metric ``inversion``): the model's
scores are ranked as the official ``torch.argsort(-logits)`` ranks them (hpsv2/evaluation.py line 100), so equal
scores are ordered by position (the earlier image first, as a stable sort does) and can be discordant; every prompt
counts, including one whose human ranks are all tied (score 1), because the average divides by the number of prompts
(line 105, ``score/total``); a pair is discordant only when both orders are strict and opposite, and the score
divides by all K(K-1)/2 pairs (src/training/train.py lines 358-368). The named alternative ``hpdv2-inversion-ties``
(metric ``inversion-ties``) never counts a model tie as discordant and skips prompts whose human ranks are all tied.

HPDv3 puts the preferred image first in every row; the loader shows it second in every other row (odd row index),
so a position-biased pairwise judge cannot score by position. Pointwise scores are unaffected.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rrbench.hubdata import Rows, Source, column, confinement, missing, open_rows
from rrbench.registry import task
from rrbench.types import Label, LabelKind, Media, Protocol, Sample, Task, TaskInfo, TaskKind, UserError, shown

VERSION = "1"  # hpdv3
HPDV2_VERSION = "2"  # 2: the official inversion score (model ties by argsort order, every prompt counted)

HPDV2 = Source("ymhao/HPDv2", split="test", revision="bb0f2563e451e11c3f376b2ba93615db00e042e1", files=("test.json",))
HPDV2_FETCH = dataclasses.replace(HPDV2, files=("test.json", "test.tar.gz"))
HPDV3 = Source("MizzenAI/HPDv3", split="test", revision=None, files=("test.json",))

HPDV2_FETCH_HINT = (
    f"hf download ymhao/HPDv2 test.json test.tar.gz --repo-type dataset --revision {HPDV2.revision} --local-dir DIR "
    "&& tar -xzf DIR/test.tar.gz -C DIR, then pass --data DIR"
)
HPDV3_FETCH_HINT = (
    "hf download MizzenAI/HPDv3 --repo-type dataset --local-dir DIR && (cd DIR && cat images.tar.gz.* | gunzip | "
    "tar -x), then pass --data DIR"
)


# --------------------------------------------------------------------------------------------------- HPDv2


@task("hpdv2", description="HPDv2 test: rank each prompt's images; inversion score averaged over prompts")
def hpdv2() -> Task:
    """HPDv2 test set scored as the HPSv2 paper does: per-prompt inversion score, averaged (pointwise scores)."""

    def load(data: Path | None) -> Iterator[Sample]:
        rows, images = _hpdv2_rows(data)
        _check_first_image(rows, "image_path", images, HPDV2, HPDV2_FETCH_HINT)
        return (_hpdv2_sample(i, row, images) for i, row in enumerate(rows))

    return Task(
        name="hpdv2",
        version=HPDV2_VERSION,
        kind=TaskKind.RANKING,
        load=load,
        # The tie policy does not apply to the inversion score; "exact" only satisfies the protocol's schema.
        protocol=Protocol(id="hpdv2-inversion", mode="pointwise", order="fixed", tie_policy="exact",
                          failure_policy="excluded", metrics=("inversion",)),
        alternatives={"hpdv2-inversion-ties": Protocol(id="hpdv2-inversion-ties", mode="pointwise", order="fixed",
                                                       tie_policy="exact", failure_policy="excluded",
                                                       metrics=("inversion-ties",))},
        size=400,
        info=TaskInfo(
            paper="Human Preference Score v2 (Wu et al., 2023), arXiv:2306.09341",
            dataset=HPDV2.dataset,
            revision=HPDV2.revision,
            license="Apache-2.0",
            size=400,
            homepage="https://github.com/tgxs002/HPSv2",
        ),
        count=lambda data: _json_count(open_rows(HPDV2, data)),
    )


def _hpdv2_rows(data: Path | None) -> tuple[Rows, Path]:
    """test.json's rows and the folder its image paths start from (the hub's tarball is unpacked once)."""
    if data is not None:
        rows = open_rows(HPDV2, data)
        return rows, rows.files[0].parent
    snapshot = open_rows(HPDV2_FETCH, None).root
    return open_rows(HPDV2, snapshot), _unpacked(snapshot / "test.tar.gz", f"hpdv2-{snapshot.name}")


def _unpacked(tarball: Path, name: str) -> Path:
    """The tarball unpacked into rrbench's cache (the hub's snapshot folder is the hub client's, not ours)."""
    target = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rrbench" / "datasets" / name
    done = target / ".unpacked"
    if not done.exists():
        try:
            with tarfile.open(tarball) as archive:
                archive.extractall(target, filter="data")  # "data": no absolute paths, links out or devices
        except (OSError, tarfile.TarError) as exc:
            raise UserError(f"cannot unpack {tarball} into {target}: {exc}") from None
        done.touch()
    return target


def _hpdv2_sample(index: int, row: dict[str, Any], images: Path) -> Sample:
    paths = column(row, "image_path", HPDV2)
    rank = column(row, "rank", HPDV2)
    sample_id = f"hpdv2-{index:04d}"
    prompt = str(column(row, "prompt", HPDV2))
    if not _strings(paths):
        return Sample(sample_id, prompt, (), Label.unknown(f"image_path={json.dumps(paths)}"))
    label = _ranking_label(rank, len(paths))
    candidates = tuple(_image(images, p) for p in paths)
    # Paths are recorded escaped (shown): a lone surrogate in a JSON string cannot be written to the UTF-8 log.
    return Sample(sample_id, prompt, candidates, label, meta={"image_path": [shown(p, None) for p in paths]})


# --------------------------------------------------------------------------------------------------- HPDv3


@task("hpdv3", description="HPDv3 test pairs: accuracy of preferring path1 (a model tie is wrong)")
def hpdv3() -> Task:
    """HPDv3 test pairs scored as the HPSv3 paper does: pairwise accuracy, an equal score counted as not correct."""

    def load(data: Path | None) -> Iterator[Sample]:
        rows = _hpdv3_rows(data)
        root = rows.files[0].parent
        _check_first_image(rows, "path1", root, HPDV3, HPDV3_FETCH_HINT)
        return (_hpdv3_sample(i, row, root) for i, row in enumerate(rows))

    official = Protocol(id="hpdv3-accuracy", mode="auto", order="fixed", tie_policy="exact",
                        failure_policy="excluded", metrics=("accuracy",))
    return Task(
        name="hpdv3",
        version=VERSION,
        kind=TaskKind.PAIR,
        load=load,
        protocol=official,
        info=TaskInfo(
            paper="HPSv3: Towards Wide-Spectrum Human Preference Score (Ma et al., ICCV 2025), arXiv:2508.03789",
            dataset=HPDV3.dataset,
            revision=None,
            license="MIT",
            homepage="https://github.com/MizzenAI/HPSv3",
        ),
        # The paper's protocol (one fixed order, exact ties, failures excluded) is the official one here: HPDv3 has
        # no human ties and one order; the alias keeps `--protocol rationalrewards-paper` working on every task.
        alternatives={"rationalrewards-paper": dataclasses.replace(official, id="rationalrewards-paper",
                                                                   options={"na": "2.5"})},
        count=lambda data: None if data is None else _json_count(_hpdv3_rows(data)),
    )


def _hpdv3_rows(data: Path | None) -> Rows:
    if data is None:  # test.json alone would only lead to a run of missing images
        raise UserError(f"hpdv3: the test images ship only inside the archive of the whole dataset, which rrbench "
                        f"does not fetch implicitly; fetch it once: {HPDV3_FETCH_HINT}")
    return open_rows(HPDV3, data)


def _hpdv3_sample(index: int, row: dict[str, Any], root: Path) -> Sample:
    preferred, other = column(row, "path1", HPDV3), column(row, "path2", HPDV3)
    prompt = str(column(row, "prompt", HPDV3))
    sample_id = f"hpdv3-{index:05d}"
    meta = {"path1": _recorded(preferred), "path2": _recorded(other), "model1": row.get("model1"),
            "model2": row.get("model2")}
    if not _strings([preferred, other]):
        return Sample(sample_id, prompt, (), Label.unknown(f"path1={preferred!r}, path2={other!r}"), meta=meta)
    # Every row stores the preferred image first; odd rows show it second, so positions are balanced in any prefix.
    second = index % 2 == 1
    shown = (other, preferred) if second else (preferred, other)
    candidates = tuple(_image(root, p) for p in shown)
    label = Label.win(1 if second else 0, original="path1")
    return Sample(sample_id, prompt, candidates, label, meta={**meta, "preferred_position": int(second)})


# --------------------------------------------------------------------------------------------------- shared


def _ranking_label(value: Any, n_images: int) -> Label:
    """A per-image human rank list (1 = best, equal numbers = tie); anything else is an unknown label, not a guess."""
    original = json.dumps(value)
    if not isinstance(value, list) or len(value) != n_images or n_images < 2:
        return Label.unknown(original)
    if not all(isinstance(r, int | float) and not isinstance(r, bool) for r in value):
        return Label.unknown(original)
    return Label(LabelKind.RANKING, ranks=tuple(value), original=original)


def _strings(values: Any) -> bool:
    return isinstance(values, list) and bool(values) and all(isinstance(v, str) and v for v in values)


_SUBFOLDERS = ("", "test")  # where an unpacked archive may have put the files (HPDv2's layout is not documented)


def _image(base: Path, relative: str) -> Media:
    """The image a row names, confined to ``base`` (the folder its paths start from): a path that leaves it, or a
    link, FIFO or device, is the sample's data failure and is never opened (Media.from_path)."""
    for sub in _SUBFOLDERS:
        if os.path.exists(base / sub / relative):  # False, never an error, for a NUL, a 10,000-character name...
            return Media.from_path(base / sub / relative, root=confinement(base))
    return missing(f"missing/{shown(str(base / relative))}", f"image {shown(relative)} not found under {base}")



def _recorded(value: Any) -> Any:
    """A path as the sample log records it: escaped where UTF-8 cannot hold it (a lone surrogate from JSON)."""
    return shown(value, None) if isinstance(value, str) else value


def _check_first_image(rows: Rows, field: str, base: Path, source: Source, hint: str) -> None:
    """Fail fast, with the fix, when the images were never fetched or unpacked: a run of data failures helps nobody."""
    first = next(iter(rows), None)
    value = first.get(field) if first else None
    relative = value[0] if isinstance(value, list) and value else value
    if not isinstance(relative, str) or not relative:
        return  # an empty or malformed first row is reported per sample
    if not any(os.path.isfile(base / sub / relative) for sub in _SUBFOLDERS):
        raise UserError(f"{source.dataset}: image {relative} not found under {base}; fetch the images once: {hint}")


def _json_count(rows: Rows) -> int:
    return rows.size if rows.size is not None else sum(1 for _ in rows)
