"""Prompts (and edit sources) for RL, and the seeded group sampler.

Rows come from an rrbench generation task (``data.task``: its samples; key = sample id), a JSONL prompt file
(``data.file``: ``{"id", "prompt", "source": [paths]}``) or the released RL prompt set (``data.released``:
``TIGER-Lab/RationalRewards_DiffusionNFT_TrainData`` or a local copy; ``t2i/{split}.jsonl`` or
``edit/{split}.jsonl`` by the generator's kind, rows ``{"prompt", "image_path"}`` as the reference trainers read
them, train_flux_kontext_rationalrewards.py ``PromptImageDataset``; key = the row's ``id`` if it has one, else
``{split}:{line}``). A group is the K samples of one row, keyed by the row id, never by the prompt text (the
reference keys by prompt + image path): two rows with one instruction and different sources stay two groups.
Image paths are data, not trusted: one that leaves the data's own folder is refused. ``data.heldout`` rows (chosen
by a seeded shuffle) are kept for the held-out monitor.

The sampler walks seeded permutations of the row keys, one pass after another, skipping banned keys; its state (pass,
position, banned keys) is all a checkpoint needs to continue the same sequence.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rrbench
from rrbench import UserError

if TYPE_CHECKING:
    from PIL import Image

    from rrbench_train.rl.config import DataConfig


@dataclass(frozen=True)
class Row:
    key: str
    prompt: str
    sources: tuple[Callable[[], Image.Image], ...] = ()

    def images(self, size: int | None = None) -> list[Image.Image]:
        """The source images; with ``size``, each center-cropped to a square and resized to size² (what the reference
        trainers' ``PromptImageDataset`` hands to both the generator and the reward)."""
        images = [load() for load in self.sources]
        return images if size is None else [square(image, size) for image in images]


def square(image: Image.Image, size: int) -> Image.Image:
    """The largest centered square of ``image``, resized to size × size with Lanczos."""
    from PIL import Image as PILImage

    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), PILImage.Resampling.LANCZOS)


RELEASED = "TIGER-Lab/RationalRewards_DiffusionNFT_TrainData"
RELEASED_PARTS = {"t2i": ("t2i",), "edit": ("edit", "editing", "image_edit")}  # the kind's folder in the release


def load_rows(config: DataConfig, seed: int, kind: str = "t2i") -> tuple[list[Row], list[Row]]:
    """(train rows, held-out rows); a duplicate key or an empty set is a UserError. ``kind``: the generator's
    (t2i or edit), which picks the released set's part."""
    if config.task is not None:
        rows = _task_rows(config)
    elif config.released is not None:
        rows = _released_rows(config.released, config.split, kind)
    else:
        rows = _file_rows(Path(config.file or ""))
    if config.limit is not None:
        rows = rows[: config.limit]
    seen: set[str] = set()
    for row in rows:
        if row.key in seen:
            raise UserError(f"data: row id {row.key!r} appears twice; groups are keyed by row id")
        seen.add(row.key)
    order = list(rows)
    random.Random(seed).shuffle(order)
    heldout = order[len(order) - config.heldout:] if config.heldout else []
    held = {r.key for r in heldout}
    train = [r for r in rows if r.key not in held]
    if not train:
        raise UserError(f"data: no training rows (got {len(rows)} rows, {config.heldout} held out)")
    return train, heldout


def _task_rows(config: DataConfig) -> list[Row]:
    task = rrbench.build_task(config.task or "", **config.task_args)
    if not task.generative:
        raise UserError(f"data.task '{config.task}' is a {task.kind.value} task; RL prompts come from a generation "
                        "task (`rrbench ls tasks`)")
    data = Path(config.data_dir).expanduser() if config.data_dir else None
    rows = []
    for sample in task.load(data):
        rows.append(Row(str(sample.id), sample.prompt, tuple(m.image for m in sample.source)))
        if config.limit is not None and len(rows) >= config.limit:
            break
    return rows


def _file_rows(path: Path) -> list[Row]:
    if not path.is_file():
        raise UserError(f"data.file {path} does not exist")
    rows = []
    for number, item in _jsonl(path):
        try:
            key, prompt = str(item["id"]), str(item["prompt"])
            names = item.get("source") or []
            names = [names] if isinstance(names, str) else list(names)
        except (KeyError, TypeError):
            raise UserError(f"{path}:{number}: expected a JSON object with id, prompt and optional source") from None
        sources = [_inside(path.parent, str(name), f"{path}:{number}") for name in names]
        rows.append(Row(key, prompt, tuple(_opener(p) for p in sources)))
    return rows


def _released_rows(where: str, split: str, kind: str) -> list[Row]:
    """The released RL prompt set's ``split`` rows for ``kind``; image paths relative to the set's root."""
    root = _released_root(where, kind)
    # a hub snapshot's files are links into the repository's blobs/ folder, beside snapshots/
    bound = root.parent.parent if root.parent.name == "snapshots" else root
    candidates = [root / part / f"{split}.jsonl" for part in RELEASED_PARTS[kind]] + [root / f"{split}.jsonl"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise UserError(f"data.released {where}: no {kind} split {split!r} (looked for "
                        f"{', '.join(str(c.relative_to(root)) for c in candidates)} under {root})")
    rows = []
    for number, item in _jsonl(path):
        prompt, names = item.get("prompt"), item.get("image_path")
        names = [names] if isinstance(names, str) else names
        if not isinstance(prompt, str) or not prompt.strip() or (names is not None and not (
                isinstance(names, list) and all(isinstance(n, str) for n in names))):
            raise UserError(f"{path}:{number}: expected a JSON object with a prompt and, for editing, an image_path")
        if kind == "edit" and not names:
            raise UserError(f"{path}:{number}: an editing row needs its source image (image_path)")
        sources = [_inside(root, name, f"{path}:{number}", also=path.parent, links=bound) for name in names or []]
        key = str(item["id"]) if item.get("id") is not None else f"{split}:{number}"
        rows.append(Row(key, prompt, tuple(_opener(p) for p in sources)))
    return rows


def _released_root(where: str, kind: str) -> Path:
    local = Path(where).expanduser()
    if local.is_dir():
        return local
    if where.count("/") != 1 or local.exists():
        raise UserError(f"data.released {where}: neither a folder nor a hub dataset id (as {RELEASED})")
    # t2i: its prompt files only; edit: everything, as the rows' image paths may point anywhere under the root
    patterns = ([f"{part}/**" for part in RELEASED_PARTS[kind]] + ["*.jsonl"]) if kind == "t2i" else ["*"]
    return Path(rrbench.dataset_snapshot(where, patterns))


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-empty line; anything but a JSON object is one UserError line."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise UserError(f"{path}:{number}: not a JSON object")
        yield number, item


def _inside(root: Path, name: str, where: str, also: Path | None = None, links: Path | None = None) -> Path:
    """``name`` under ``root`` (or under ``also``, a folder inside root, tried first), refused when it leaves
    ``root``: an absolute path or ``..``; and when a link takes it out of ``links`` (default: root; a hub snapshot's
    repository folder, whose blobs its files link to)."""
    base, linked = os.path.abspath(root), (links or root).resolve()
    for folder in ([also] if also is not None else []) + [root]:
        written = os.path.normpath(os.path.join(os.path.abspath(folder), name))
        path = Path(written).resolve()
        if os.path.commonpath([base, written]) != base or not path.is_relative_to(linked):
            raise UserError(f"{where}: image path {name!r} leaves the data folder {root}")
        if path.is_file():
            return path
    raise UserError(f"{where}: image {name!r} not found under {root}")


def _opener(path: Path) -> Callable[[], Image.Image]:
    def open_image() -> Image.Image:
        from PIL import Image

        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError as exc:  # unreadable or not an image (PIL's UnidentifiedImageError is an OSError)
            raise UserError(f"source image {path}: cannot be read as an image ({type(exc).__name__})") from None

    return open_image


@dataclass
class GroupSampler:
    """Seeded passes over the row keys; ``next(n)`` = the keys of the next n groups, never a banned one."""

    keys: Sequence[str]
    seed: int
    pass_index: int = 0
    position: int = 0
    banned: set[str] = field(default_factory=set)

    def _order(self, index: int) -> list[str]:
        order = list(self.keys)
        random.Random(f"{self.seed}:{index}").shuffle(order)
        return order

    def next(self, n: int) -> list[str]:
        if not set(self.keys) - self.banned:
            raise UserError(f"every one of the {len(self.keys)} training rows is banned (solved: group std below "
                            "nft.ban_std and mean above nft.ban_mean); nothing is left to learn from")
        out: list[str] = []
        order = self._order(self.pass_index)
        while len(out) < n:
            if self.position >= len(order):
                self.pass_index, self.position = self.pass_index + 1, 0
                order = self._order(self.pass_index)
            key = order[self.position]
            self.position += 1
            if key not in self.banned:
                out.append(key)
        return out

    def ban(self, keys: Iterable[str]) -> None:
        self.banned.update(keys)

    def state_dict(self) -> dict[str, Any]:
        return {"pass_index": self.pass_index, "position": self.position, "banned": sorted(self.banned)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pass_index, self.position = int(state["pass_index"]), int(state["position"])
        self.banned = set(state["banned"])
