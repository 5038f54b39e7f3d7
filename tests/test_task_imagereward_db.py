"""imagereward-db end to end on a small copy of ImageReward's layout (data/test.json + data/test_images/), with
ImageReward's rule (human ties skipped, a model tie wrong) and the rationalrewards-paper rule, worked out by hand.

The ``hidden-score`` test model reads each image's score from its PNG comment, so model ties are exact.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from skimage import data as skdata

from rrbench.tasks.imagereward_db import imagereward_db, ranking_label
from rrbench.types import LabelKind, UserError
from tests.conftest import rrbench

PLUGIN = Path(__file__).parent / "plugins" / "hpd_pickapic_models.py"
TESTMODELS = Path(__file__).parent / "plugins" / "testmodels.py"
PHOTOS = ("astronaut", "coffee", "chelsea")


def _coverage(row: dict[str, Any]) -> tuple[int, int, int, int]:
    return row["n_total"], row["n_scored"], row["n_failed"], row["n_label_skipped"]

# (ranking: 1 = best, model scores; "fail" = the model cannot score that image)
# ImageReward's rule, over image pairs with a strict human order (pooled over prompts):
#   R1 ranks 1,2,3   scores .9,.5,.1 : (0,1) (0,2) (1,2) all right                              -> 3 of 3
#   R2 ranks 1,1,2   scores .5,.9,.5 : (0,1) human tie, skipped; (0,2) a model tie: wrong; (1,2) right -> 1 of 2
#   R3 ranks 2,1     scores .8,.2    : image 1 preferred, the model prefers image 0           -> 0 of 1
#   R4 ranks 1,1     scores .4,.4    : no strict pair                                         -> label-skipped
#   R5 ranks 1,"x"   : an unknown label                                                        -> label-skipped
#   R6 ranks 1,2     scores .3,fail  : one failed pair
# official: 4 right of 6 judged pairs = 2/3; the failure counted wrong: 4/7
# rationalrewards-paper (exact: a human tie is a class, matched only by equal scores), every pair counts:
#   R1 3 of 3; R2 (0,1) tie vs .5 != .9 wrong, (0,2) winner 0 vs a model tie wrong, (1,2) right -> 1 of 3
#   R3 0 of 1; R4 (0,1) tie vs .4 = .4 right -> 1 of 1; R6 one failed pair
#   -> 5 right of 8 = 5/8; the failure counted wrong: 5/9
ROWS: list[tuple[list[Any], list[Any]]] = [
    ([1, 2, 3], [0.9, 0.5, 0.1]),
    ([1, 1, 2], [0.5, 0.9, 0.5]),
    ([2, 1], [0.8, 0.2]),
    ([1, 1], [0.4, 0.4]),
    ([1, "x"], [0.6, 0.7]),
    ([1, 2], [0.3, "fail"]),
]


def _png(photo: str, comment: str) -> bytes:
    info = PngInfo()
    info.add_text("comment", comment)
    out = io.BytesIO()
    Image.fromarray(getattr(skdata, photo)()).convert("RGB").resize((40, 40)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout of ImageReward with test_images.zip unpacked into data/, as scripts/test.sh leaves it."""
    root = tmp_path_factory.mktemp("ImageReward")
    images = root / "data" / "test_images"
    rows = []
    for i, (ranking, scores) in enumerate(ROWS):
        prompt_id = f"00{5600 + i}-{i:04d}"
        generations = []
        for j, score in enumerate(scores):
            rel = f"part-00{5600 + i}/images/{i:04d}/{j}.png"
            (images / rel).parent.mkdir(parents=True, exist_ok=True)
            comment = "fail" if score == "fail" else f"score={score}"
            (images / rel).write_bytes(_png(PHOTOS[j % len(PHOTOS)], comment))
            generations.append(rel)
        rows.append({"id": prompt_id, "prompt": f"prompt {i}", "generations": generations, "ranking": ranking})
    (root / "data" / "test.json").write_text(json.dumps(rows, indent=4))
    return root


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{TESTMODELS},{PLUGIN}"}


def _run(tmp_path: Path, env: dict[str, str], data: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "imagereward-db", "--model", "hidden-score", "--data", str(data), "--quiet",
                   "--output", str(out), *args, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    return dict(json.loads((run_dir / "run.json").read_text()))


def test_official_rule_skips_human_ties_and_counts_model_ties_wrong(tmp_path: Path, env: dict[str, str],
                                                                   repo: Path) -> None:
    record = _run(tmp_path, env, repo / "data")
    excluded, wrong = record["metrics"]["overall"]
    assert (excluded["protocol"], excluded["tie_policy"]) == ("imagereward-official", "imagereward")
    assert excluded["value"] == pytest.approx(2 / 3) and excluded["n_units"] == 6
    assert wrong["value"] == pytest.approx(4 / 7) and wrong["n_units"] == 7
    assert _coverage(excluded) == (6, 3, 1, 2)
    assert excluded["failed_by_kind"] == {"parse": 1}


def test_rationalrewards_paper_rule_on_every_pair(tmp_path: Path, env: dict[str, str], repo: Path) -> None:
    record = _run(tmp_path, env, repo, "--protocol", "rationalrewards-paper")  # the repo root works as --data too
    excluded, wrong = record["metrics"]["overall"]
    assert (excluded["protocol"], excluded["tie_policy"]) == ("rationalrewards-paper", "exact")
    assert excluded["value"] == pytest.approx(5 / 8) and wrong["value"] == pytest.approx(5 / 9)
    assert _coverage(excluded) == (6, 4, 1, 1)


def test_samples_keep_ids_rankings_and_image_paths(repo: Path) -> None:
    task = imagereward_db()
    samples = list(task.load(repo / "data" / "test.json"))
    assert task.size_of(repo / "data") == len(samples) == 6
    assert samples[0].id == "005600-0000" and samples[0].prompt == "prompt 0"
    assert samples[0].candidates[2].path == str(repo / "data" / "test_images" / "part-005600/images/0000/2.png")
    assert samples[1].label.kind is LabelKind.RANKING and samples[1].label.ranks == (1, 1, 2)
    assert samples[4].label.kind is LabelKind.UNKNOWN and samples[4].label.original == '[1, "x"]'
    assert ranking_label([1, 2], 3).kind is LabelKind.UNKNOWN  # one rank per image, or it is not a label


def test_without_data_it_says_how_to_fetch_the_test_set() -> None:
    with pytest.raises(UserError, match=r"test_images\.zip"):
        imagereward_db().load(None)
