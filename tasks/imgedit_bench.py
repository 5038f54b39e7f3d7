"""`imgedit-bench`: ImgEdit-Bench Basic, 737 image edits in 9 edit types, scored by its own GPT judge.

Verified against the official code (github.com/PKU-YuanGroup/ImgEdit, commit 547185d, ``Benchmark/Basic/``):

* ``basic_edit.json`` maps each key to ``{"id": "<category>/<file>.jpg", "prompt", "edit_type"}``: 737 items;
  extract 117, style 100, add 95, adjust 94, background 94, replace 92, remove 86, action 36, compose 23 (sha256
  5ee9b7d6..., unchanged since commit b3eb8e7). ``id`` is relative to the original images' root
  (``os.path.join(origin_img_root, item['id'])``, basic_bench.py:60).
* The edited images are one flat folder of ``<key>.png`` (basic_bench.py:58; basic_bench_readme.md:43-51): the
  official layout here. One image per key; no seed is fixed.
* The original images ship in ``Benchmark.tar`` of the HF dataset ``sysuyy/ImgEdit`` (basic_bench_readme.md:6);
  third-party evaluation scripts pass ``<unpacked>/Benchmark/singleturn`` as ``--origin_img_root``.
* The judge protocol and its quirks: ``tasks/judge_imgedit.py``; the aggregation: ``tasks/metric_imgedit.py``.

Assumed / chosen here:

* No commit of ``sysuyy/ImgEdit`` could be verified, so the hub revision is not pinned: the snapshot's commit is
  recorded in run.json. ``basic_edit.json`` is pinned (commit and sha256) and downloaded from GitHub; it is not
  embedded because the repository states no licence.
* Sample ids are the keys of basic_edit.json, in its order; ``meta["category"]`` is the edit type (so every metric
  is also reported per type) and ``meta["image"]`` the original's path.

Local copies (``--data``): a folder holding ``basic_edit.json`` (or the path of that file, any name) and the
original images under the first of ``original_images/`` (the readme's name), ``Benchmark/singleturn/`` (the tar
unpacked there) or ``singleturn/`` that exists beside it, else beside it directly, as ``<root>/<category>/<file>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rrbench import hubaccess
from rrbench.hubdata import SNAPSHOTS, missing
from rrbench.protocols.judge_images import safe_name
from rrbench.protocols.official import MODE
from rrbench.registry import require, task
from rrbench.tasks.judge_imgedit import COMMIT, REPO, ImgEditJudge
from rrbench.types import Label, Media, Protocol, Sample, Task, TaskInfo, TaskKind, UserError, shown

NAME = "imgedit-bench"
VERSION = "1"
TYPE_COUNTS = {"extract": 117, "style": 100, "add": 95, "adjust": 94, "background": 94, "replace": 92, "remove": 86,
               "action": 36, "compose": 23}  # basic_edit.json at COMMIT, counted
SIZE = sum(TYPE_COUNTS.values())  # 737
EDITS_FILE = "basic_edit.json"
EDITS_PATH = f"Benchmark/Basic/{EDITS_FILE}"
EDITS_URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/{EDITS_PATH}"
EDITS_SHA256 = "5ee9b7d61e918692416f79896300f738598c83adff8de737b25be4aaff72dc69"
MAX_EDITS_BYTES = 16 * 2**20
HUB_DATASET = "sysuyy/ImgEdit"
HUB_REVISION: str | None = None  # no commit could be verified (module docstring)
TARBALL = "Benchmark.tar"
IMAGE_ROOTS = ("original_images", "Benchmark/singleturn", "singleturn")  # tried in order, else the folder itself
PROBE = 8  # the first samples whose original images must be found, or the layout is wrong
DOWNLOAD_TIMEOUT_S = 30.0

FETCH_HINT = (f"hf download {HUB_DATASET} {TARBALL} --repo-type dataset --local-dir DIR && tar -xf DIR/{TARBALL} "
              f"-C DIR && curl -L -o DIR/{EDITS_FILE} {EDITS_URL}, then pass --data DIR")

OFFICIAL = Protocol(id=NAME, mode=MODE, failure_policy="excluded", metrics=("imgedit-type-mean", "imgedit-image-mean"))
RM = Protocol(id=f"{NAME}-rm", mode="pointwise", failure_policy="excluded", metrics=("mean-score",))


@task(NAME, description="ImgEdit-Bench Basic: 737 edits in 9 types, official GPT judge (1-5), per-type means")
def imgedit_bench() -> Task:
    """Edit 737 source images as instructed; the official judge scores each edit 1-5 with its edit type's rubric."""

    def load(data: Path | None) -> Iterator[Sample]:
        edits, root = _local(data) if data is not None else _hub()
        items = read_edits(edits)
        _check_images(items, root)
        return (edit_sample(key, item, root) for key, item in items.items())

    return Task(
        name=NAME,
        version=VERSION,
        kind=TaskKind.GENERATION_EDIT,
        load=load,
        protocol=OFFICIAL,
        size=SIZE,
        info=TaskInfo(paper="ImgEdit: A Unified Image Editing Dataset and Benchmark (Ye et al. 2025), arXiv 2505.20275",
                      dataset=f"{HUB_DATASET} {TARBALL} (images) + github.com/{REPO}@{COMMIT[:7]} {EDITS_PATH}",
                      revision=HUB_REVISION,
                      license="not stated (no licence file in the GitHub repository)",
                      size=SIZE, homepage=f"https://github.com/{REPO}"),
        generation="edit",
        alternatives={RM.id: RM},
        count=lambda data: SIZE if data is None else len(read_edits(_local(data)[0])),
        images_per_prompt=1,
        layout=official_layout,
        judge=ImgEditJudge(),
    )


def official_layout(sample: Sample, index: int) -> str:
    """``<key>.png`` in one flat folder (basic_bench.py:58); a key unsafe as a file name is made safe."""
    return f"{safe_name(sample.id)}.png"


# --------------------------------------------------------------------------------------------------- samples


def read_edits(path: Path) -> dict[str, Any]:
    """basic_edit.json's items, in file order; a file in another shape is one line."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{path} is not valid JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(loaded, dict) or not loaded:
        raise UserError(f"{path}: expected basic_edit.json's shape, an object of key -> "
                        "{\"id\", \"prompt\", \"edit_type\"}")
    return loaded


def edit_sample(key: str, item: Any, root: Path) -> Sample:
    """One edit: the instruction, the original image (a data failure when the item names none), its edit type."""
    fields: Mapping[str, Any] = item if isinstance(item, dict) else {}
    image, prompt, edit_type = fields.get("id"), fields.get("prompt"), fields.get("edit_type")
    meta = {"category": edit_type if isinstance(edit_type, str) else None,
            "edit_type": edit_type if isinstance(edit_type, str) else None,
            "image": shown(image, None) if isinstance(image, str) else None}
    if not isinstance(prompt, str) or not prompt:
        source = missing(f"imgedit/{shown(key)}/prompt", f"{shown(key)}: no edit instruction (prompt={prompt!r})")
    elif not isinstance(image, str) or not image:
        source = missing(f"imgedit/{shown(key)}/id", f"{shown(key)}: no original image path (id={image!r})")
    else:
        source = Media.from_path(root / image, root=root)
    return Sample(str(key), prompt if isinstance(prompt, str) else "", (), Label.none(), source=(source,), meta=meta)


def _check_images(items: Mapping[str, Any], root: Path) -> None:
    """The first samples' originals must be under ``root``, or the copy is in another layout (one line, not 737
    data failures)."""
    paths = [item["id"] for item in list(items.values())[:PROBE] if isinstance(item, dict) and
             isinstance(item.get("id"), str) and item["id"]]
    if paths and not any((root / p).is_file() for p in paths):
        raise UserError(f"none of the first original images is under {root} (e.g. {root / paths[0]}); expected "
                        f"<root>/<category>/<file>.jpg with root one of {', '.join(IMAGE_ROOTS)} or the folder of "
                        f"{EDITS_FILE} (docs/tasks/imgedit-bench.md)")


# --------------------------------------------------------------------------------------------------- local copy


def _local(data: Path) -> tuple[Path, Path]:
    """(basic_edit.json, the original images' root) of a local copy."""
    if data.is_dir():
        edits = data / EDITS_FILE
        if not edits.is_file():
            raise UserError(f"--data {data}: no {EDITS_FILE} in it (the layout: docs/tasks/imgedit-bench.md)")
        return edits, image_root(data)
    if data.is_file():
        return data, image_root(data.parent)
    raise UserError(f"--data path does not exist: {data}")


def image_root(folder: Path) -> Path:
    for name in IMAGE_ROOTS:
        if (folder / name).is_dir():
            return folder / name
    return folder


# --------------------------------------------------------------------------------------------------- hub copy


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rrbench" / "datasets" / "imgedit"


def _hub() -> tuple[Path, Path]:
    return _edits_file(), _hub_images()


def _edits_file() -> Path:
    """basic_edit.json at the pinned commit: from rrbench's cache, else downloaded from GitHub and checked."""
    target = cache_dir() / f"{EDITS_FILE.removesuffix('.json')}-{COMMIT[:12]}.json"
    if target.is_file() and _sha256(target.read_bytes()) == EDITS_SHA256:
        return target
    # Offline, or a check that must download nothing (rrbench doctor's hubaccess.local_only(); the flag has no
    # public reader yet): the same NotCached a hub snapshot raises, so doctor reports it alike.
    if hubaccess.offline_env() or hubaccess.local_only_active():
        why = "HF_HUB_OFFLINE is set" if hubaccess.offline_env() else None
        raise hubaccess.NotCached(f"github.com/{REPO} {EDITS_PATH}", FETCH_HINT, why)
    try:
        with urllib.request.urlopen(EDITS_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            content = response.read(MAX_EDITS_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserError(f"cannot download {EDITS_URL} ({type(exc).__name__}: {exc}); fetch it once: "
                        f"{FETCH_HINT}") from None
    if _sha256(content) != EDITS_SHA256:
        raise UserError(f"{EDITS_URL} does not hold the pinned {EDITS_FILE} (sha256 differs); fetch it once: "
                        f"{FETCH_HINT}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_bytes(content)
    os.replace(tmp, target)
    return target


def _hub_images() -> Path:
    """The original images: Benchmark.tar from the hub (or its cache), unpacked once into rrbench's cache."""
    hub = require("huggingface_hub", "datasets")
    snapshot = Path(hubaccess.snapshot(hub, HUB_DATASET, HUB_REVISION, [TARBALL], FETCH_HINT))
    SNAPSHOTS[HUB_DATASET] = {"requested": HUB_REVISION, "commit": snapshot.name}
    tarball = snapshot / TARBALL
    if not tarball.is_file():
        raise UserError(f"{HUB_DATASET}@{snapshot.name} has no {TARBALL}; fetch it once: {FETCH_HINT}")
    return image_root(unpack(tarball, cache_dir() / f"Benchmark-{safe_name(snapshot.name)}"))


def unpack(tarball: Path, target: Path) -> Path:
    """``tarball`` unpacked into ``target`` (done once; a half-done unpacking is never used). The ``data`` filter
    refuses absolute names, ``..``, links that leave the folder and device files, so nothing is written outside it."""
    if target.is_dir():
        return target
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(partial, filter="data")
        os.replace(partial, target)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if target.is_dir():  # another process finished it meanwhile
            return target
        raise UserError(f"cannot unpack {tarball} into {target}: {type(exc).__name__}: {exc}") from None
    return target


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
