"""RL prompt data (training/rl/data.py): the released RL prompt set (TIGER-Lab/RationalRewards_DiffusionNFT_TrainData)
read from small local copies in its layout (``t2i/{split}.jsonl``, ``edit/{split}.jsonl`` with ``image_path``
relative to the set's root, as the reference trainers' ``PromptImageDataset`` reads it), from a local folder and
from the hub cache by its id; and image paths in any data file kept inside the data's own folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from rrbench import UserError
from rrbench_train.rl.config import DataConfig
from rrbench_train.rl.data import RELEASED, load_rows
from tests.rl_common import plugin_env, tiny_config, tiny_flux, write_config

__all__ = ["tiny_flux"]  # the session fixture, imported so pytest finds it
T2I = ["a photo of a cat", "a red dog on the sofa", "a blue cup of coffee", "an astronaut in the sky",
       "a green rocket", "the black cat at night"]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def released_copy(root: Path) -> Path:
    """A small copy of the released set: t2i prompts (train, test) and edit rows with their source photographs."""
    from skimage import data

    write_jsonl(root / "t2i" / "train.jsonl", [{"prompt": p, "category": "object"} for p in T2I])
    write_jsonl(root / "t2i" / "test.jsonl", [{"prompt": "a yellow kite"}, {"prompt": "a small boat"}])
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.chelsea()).save(root / "images" / "cat.png")
    Image.fromarray(data.astronaut()).resize((96, 64)).save(root / "images" / "astronaut.png")
    write_jsonl(root / "edit" / "train.jsonl", [
        {"prompt": "Make the cat wear a hat.", "image_path": "images/cat.png"},
        {"prompt": "Make the cat wear a hat.", "image_path": "images/astronaut.png"},  # same text, another row
        {"id": "edit-7", "prompt": "Turn the sky red.", "image_path": "images/astronaut.png"},
    ])
    return root


def rows(root: Path | str, kind: str, **data: Any) -> list[Any]:
    train, heldout = load_rows(DataConfig(released=str(root), **data), seed=0, kind=kind)
    return sorted([*train, *heldout], key=lambda r: r.key)


def test_the_released_t2i_split_is_read_with_line_keys(tmp_path: Path) -> None:
    root = released_copy(tmp_path / "set")
    got = rows(root, "t2i")
    assert [(r.key, r.prompt, r.sources) for r in got] == [(f"train:{i + 1}", p, ()) for i, p in enumerate(T2I)]
    assert [r.prompt for r in rows(root, "t2i", split="test")] == ["a yellow kite", "a small boat"]
    train, heldout = load_rows(DataConfig(released=str(root), heldout=2), seed=0, kind="t2i")
    assert len(train) == 4 and len(heldout) == 2 and not {r.key for r in train} & {r.key for r in heldout}


def test_released_edit_rows_are_keyed_by_row_not_by_instruction(tmp_path: Path) -> None:
    root = released_copy(tmp_path / "set")
    got = {r.key: r for r in rows(root, "edit")}
    assert set(got) == {"train:1", "train:2", "edit-7"}  # two rows share an instruction: two groups
    assert got["train:1"].prompt == got["train:2"].prompt
    (cat,) = got["train:1"].images()
    (astronaut,) = got["edit-7"].images()
    assert cat.mode == "RGB" and cat.size == Image.open(root / "images" / "cat.png").size
    assert astronaut.size == (96, 64)


@pytest.mark.parametrize(("kind", "line", "message"), [
    ("edit", {"prompt": "x", "image_path": "../outside.png"}, "leaves the data folder"),
    ("edit", {"prompt": "x", "image_path": "/etc/hostname"}, "leaves the data folder"),
    ("edit", {"prompt": "x", "image_path": "images/link.png"}, "leaves the data folder"),
    ("edit", {"prompt": "x", "image_path": "images/missing.png"}, "not found under"),
    ("edit", {"prompt": "x"}, "needs its source image"),
    ("t2i", {"prompt": ""}, "expected a JSON object with a prompt"),
    ("t2i", {"prompt": "x", "image_path": 3}, "expected a JSON object with a prompt"),
    ("t2i", "[1, 2]", "not a JSON object"),
    ("t2i", "{not json", "not a JSON object"),
])
def test_a_bad_released_row_is_one_line_naming_file_and_line(tmp_path: Path, kind: str, line: Any,
                                                              message: str) -> None:
    root = released_copy(tmp_path / "set")
    (tmp_path / "outside.png").write_bytes((root / "images" / "cat.png").read_bytes())
    (root / "images" / "link.png").symlink_to(tmp_path / "outside.png")
    path = root / kind / "train.jsonl"
    write_jsonl(path, [*path.read_text().splitlines(), line])
    with pytest.raises(UserError) as caught:
        rows(root, kind)
    text = str(caught.value)
    last = len(path.read_text().splitlines())
    assert "\n" not in text and message in text and f"{path}:{last}" in text


def test_a_missing_split_or_folder_is_one_line(tmp_path: Path) -> None:
    root = released_copy(tmp_path / "set")
    with pytest.raises(UserError, match=r"no edit split 'test' \(looked for edit/test.jsonl, .*test.jsonl under"):
        rows(root, "edit", split="test")
    with pytest.raises(UserError, match="neither a folder nor a hub dataset id"):
        rows(tmp_path / "no" / "such" / "folder", "t2i")


def test_a_prompt_file_source_outside_its_folder_is_refused(tmp_path: Path) -> None:
    root = released_copy(tmp_path / "set")
    inside = write_jsonl(root / "mine.jsonl", [{"id": "a", "prompt": "x", "source": ["images/cat.png"]}])
    (row,), _ = load_rows(DataConfig(file=str(inside)), seed=0, kind="edit")
    assert row.images()[0].size == Image.open(root / "images" / "cat.png").size
    for name in ("../set/images/cat.png/../../../x.png", "/etc/hostname"):
        bad = write_jsonl(root / "bad.jsonl", [{"id": "a", "prompt": "x", "source": [name]}])
        with pytest.raises(UserError, match=r"bad.jsonl:1: image path .* leaves the data folder"):
            load_rows(DataConfig(file=str(bad)), seed=0, kind="edit")


def test_the_config_names_exactly_one_source_of_rows(tmp_path: Path, tiny_flux: Path) -> None:
    from rrbench_train.rl.config import load_config

    config = tiny_config(tiny_flux, tmp_path, data={"released": str(tmp_path), "file": "x.jsonl"})
    with pytest.raises(UserError, match=r"exactly one of data.task .* got file, released"):
        load_config(write_config(tmp_path / "config.yaml", config))
    for split in ("../x", "t2i/train", ""):
        config = tiny_config(tiny_flux, tmp_path, data={"released": str(tmp_path), "split": split})
        with pytest.raises(UserError, match=r"data\.split must be a split name"):
            load_config(write_config(tmp_path / "config.yaml", config))


def hub_cache(cache: Path, root: Path) -> Path:
    """``root`` as the hub cache's snapshot of the released set, laid out as `hf download` leaves it: each file in
    blobs/ under its hash, linked from snapshots/COMMIT/, refs/main naming the commit. The snapshot's folder."""
    import hashlib

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("datasets--" + RELEASED.replace("/", "--"))
    for file in (f for f in sorted(root.rglob("*")) if f.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(file.read_bytes())
        link = repo / "snapshots" / commit / file.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_released_edit_rows_from_the_hub_cache_read_their_linked_images(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """In the hub cache every file is a link into blobs/, outside the snapshot folder: still inside the data."""
    from huggingface_hub import constants

    snapshot = hub_cache(tmp_path / "hub", released_copy(tmp_path / "set"))
    assert (snapshot / "images" / "cat.png").is_symlink()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = {r.key: r for r in rows(RELEASED, "edit")}
    assert set(got) == {"train:1", "train:2", "edit-7"}
    assert got["train:1"].images()[0].size == Image.open(tmp_path / "set" / "images" / "cat.png").size
    outside = tmp_path / "elsewhere.png"  # a link out of the repository folder is still refused
    outside.write_bytes((tmp_path / "set" / "images" / "cat.png").read_bytes())
    (snapshot / "images" / "cat.png").unlink()
    (snapshot / "images" / "cat.png").symlink_to(outside)
    with pytest.raises(UserError, match="leaves the data folder"):
        rows(RELEASED, "edit")


def test_rrbench_train_rl_reads_the_released_set_by_its_hub_id_offline(tmp_path: Path, tiny_flux: Path) -> None:
    """End to end through the command: the hub id, resolved offline from the local cache, feeds one NFT epoch."""
    hub_cache(tmp_path / "hub", released_copy(tmp_path / "set"))
    config = tiny_config(tiny_flux, tmp_path, data={"released": RELEASED, "heldout": 2},
                         **{"train.epochs": 1, "sampling.groups_per_epoch": 2})
    env = {**plugin_env(), "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "rrbench_train.cli", "rl", "--config",
                           str(write_config(tmp_path / "config.yaml", config))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / "run" / "monitor.jsonl").read_text().splitlines()]
    (step,) = [x for x in lines if x["kind"] == "step"]
    assert step["step"] == 1 and step["valid_samples"] == 8
    # not cached: one line naming the command that fetches it, exit 2, nothing trained
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    config["output_dir"] = str(tmp_path / "run2")
    done = subprocess.run([sys.executable, "-m", "rrbench_train.cli", "rl", "--config",
                           str(write_config(tmp_path / "config2.yaml", config))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and not (tmp_path / "run2" / "monitor.jsonl").exists()
    assert f"hf download {RELEASED} --repo-type dataset" in done.stderr
    assert len([x for x in done.stderr.splitlines() if x.strip()]) == 1, done.stderr


def test_a_source_that_is_no_image_is_one_line_when_read(tmp_path: Path) -> None:
    root = released_copy(tmp_path / "set")
    (root / "images" / "cat.png").write_text("not a png")
    got = {r.key: r for r in rows(root, "edit")}
    with pytest.raises(UserError) as caught:
        got["train:1"].images(16)
    assert "\n" not in str(caught.value) and "cat.png: cannot be read as an image" in str(caught.value)
