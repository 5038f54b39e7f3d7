"""Prompts (and edit sources) for RL, and the seeded group sampler.

Rows come from an rrbench generation task (``data.task``: its samples; key = sample id) or a JSONL prompt file
(``data.file``: ``{"id", "prompt", "source": [paths]}``; the released RL prompt set converts to it). A group is the
K samples of one row, keyed by the row id, never by the prompt text: two rows with one instruction and different
sources stay two groups. ``data.heldout`` rows (chosen by a seeded shuffle) are kept for the held-out monitor.

The sampler walks seeded permutations of the row keys, one pass after another, skipping banned keys; its state (pass,
position, banned keys) is all a checkpoint needs to continue the same sequence.
"""

from __future__ import annotations

import json
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

    def images(self) -> list[Image.Image]:
        return [load() for load in self.sources]


def load_rows(config: DataConfig, seed: int) -> tuple[list[Row], list[Row]]:
    """(train rows, held-out rows); a duplicate key or an empty set is a UserError."""
    rows = _task_rows(config) if config.task is not None else _file_rows(Path(config.file or ""))
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
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, prompt = str(item["id"]), str(item["prompt"])
            sources = [path.parent / str(s) for s in item.get("source") or []]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{number}: expected a JSON object with id, prompt and optional source") from None
        rows.append(Row(key, prompt, tuple(_opener(p) for p in sources)))
    return rows


def _opener(path: Path) -> Callable[[], Image.Image]:
    def open_image() -> Image.Image:
        from PIL import Image

        with Image.open(path) as image:
            return image.convert("RGB")

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
