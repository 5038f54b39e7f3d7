"""pickapic-v2 end to end: a small copy in the public schema (hub layout, raw JPEG bytes in ``jpg_0``/``jpg_1``),
the official half-credit rule with t chosen on ``validation_unique``, and the rationalrewards-paper protocol.

The ``hidden-score`` test model reads each image's score from its JPEG comment, so the test sets every probability
gap exactly: for scores (a, -a) the softmax gap |p0 - p1| is tanh(a), so a = atanh(g) gives the gap g.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from skimage import data as skdata

from rrbench.tasks.pickapic import pickapic_label, pickapic_v2
from rrbench.types import Label, LabelKind
from tests.conftest import rrbench

PLUGIN = Path(__file__).parent / "plugins" / "hpd_pickapic_models.py"
TESTMODELS = Path(__file__).parent / "plugins" / "testmodels.py"


def _coverage(row: dict[str, Any]) -> tuple[int, int, int, int]:
    return row["n_total"], row["n_scored"], row["n_failed"], row["n_label_skipped"]

# (label_0, label_1, gap g, which image the model prefers, or the literal scores / "fail")
# Validation, hand-worked total credit for each t (a predicted tie when g <= t):
#   v1 tie g=.15, v2 tie g=.25, v3 img0 g=.05 (model right), v4 img1 g=.35 (right), v5 img0 g=.45 (right)
#   t=0  : v1 .5 + v2 .5 + v3 1 + v4 1 + v5 1           = 4.0
#   t=.1 : v3 becomes a predicted tie (.5)               = 3.5
#   t=.2 : v1 becomes a tie (1)                          = 4.0
#   t=.3 : v2 becomes a tie (1)                          = 4.5   <- best, so t = 0.3
#   t=.4 : v4 becomes a tie (.5)                         = 4.0
#   t>=.5: v5 becomes a tie (.5)                         = 3.5
#   v6 has an unknown label: label-skipped, never judged.
VALIDATION: list[tuple[float, float, Any, int]] = [
    (0.5, 0.5, 0.15, 0), (0.5, 0.5, 0.25, 0), (1.0, 0.0, 0.05, 0), (0.0, 1.0, 0.35, 1), (1.0, 0.0, 0.45, 0),
    (0.3, 0.7, 0.20, 0),
]
# Test, credit at t=.3 (official) | at t=0 (-T validation=false) | exact, tie only on equal scores (paper):
#   t1 img0 g=.2  model right -> predicted tie: .5 | 1  | 1
#   t2 img1 g=.4  model right ->                1  | 1  | 1
#   t3 tie  g=.1              -> predicted tie: 1  | .5 | 0
#   t4 tie  g=.5              -> model says 0:  .5 | .5 | 0
#   t5 img0 g=.6  model wrong ->                0  | 0  | 0
#   t6 unknown label (0.25, 0.75)            -> label-skipped
#   t7 img0, the model fails (parse)          -> a failed unit
#   t8 tie  equal scores (g=0)  -> tie:         1  | 1  | 1
#   t9 img1 g=.15 model right -> predicted tie: .5 | 1  | 1
# official: (.5+1+1+.5+0+1+.5) = 4.5 over 7 judged = 9/14; failure counted wrong: 4.5/8 = 9/16
# t = 0:    (1+1+.5+.5+0+1+1)  = 5   -> 5/7 and 5/8
# paper:    (1+1+0+0+0+1+1)    = 4   -> 4/7 and 4/8
TEST: list[tuple[float, float, Any, int]] = [
    (1.0, 0.0, 0.2, 0), (0.0, 1.0, 0.4, 1), (0.5, 0.5, 0.1, 0), (0.5, 0.5, 0.5, 0), (1.0, 0.0, 0.6, 1),
    (0.25, 0.75, 0.3, 0), (1.0, 0.0, "fail", 0), (0.5, 0.5, 0.0, 0), (0.0, 1.0, 0.15, 1),
]


def _jpeg(photo: str, comment: str) -> bytes:
    img = Image.fromarray(getattr(skdata, photo)()).convert("RGB").resize((48, 48))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, comment=comment.encode())
    return out.getvalue()


def _comments(gap: Any, prefers: int) -> tuple[str, str]:
    if gap == "fail":
        return "fail", "score=0.0"
    a = math.atanh(gap)
    high, low = f"score={a!r}", f"score={-a!r}"
    return (high, low) if prefers == 0 else (low, high)


def _split(rows: list[tuple[float, float, Any, int]], first_id: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {k: [] for k in (
        "are_different", "best_image_uid", "caption", "created_at", "has_label", "image_0_uid", "image_0_url",
        "image_1_uid", "image_1_url", "jpg_0", "jpg_1", "label_0", "label_1", "model_0", "model_1", "ranking_id",
        "user_id", "num_example_per_prompt", "__index_level_0__")}
    for i, (l0, l1, gap, prefers) in enumerate(rows):
        c0, c1 = _comments(gap, prefers)
        uid0, uid1 = f"uid-{first_id + i}-0", f"uid-{first_id + i}-1"
        cols["are_different"].append(True)
        cols["best_image_uid"].append(uid0 if l0 == 1.0 else uid1 if l1 == 1.0 else "")
        cols["caption"].append(f"caption {first_id + i}")
        cols["created_at"].append(dt.datetime(2023, 5, 1, 12, 0, i))
        cols["has_label"].append(True)
        cols["image_0_uid"].append(uid0)
        cols["image_0_url"].append(f"https://example.invalid/{uid0}.png")
        cols["image_1_uid"].append(uid1)
        cols["image_1_url"].append(f"https://example.invalid/{uid1}.png")
        cols["jpg_0"].append(_jpeg("astronaut", c0))
        cols["jpg_1"].append(_jpeg("coffee", c1))
        cols["label_0"].append(l0)
        cols["label_1"].append(l1)
        cols["model_0"].append("sdxl")
        cols["model_1"].append("sd-2.1")
        cols["ranking_id"].append(first_id + i)
        cols["user_id"].append(7)
        cols["num_example_per_prompt"].append(1)
        cols["__index_level_0__"].append(i)
    return cols


def _write(folder: Path) -> Path:
    import datasets

    features = datasets.Features({
        "are_different": datasets.Value("bool"), "best_image_uid": datasets.Value("string"),
        "caption": datasets.Value("string"), "created_at": datasets.Value("timestamp[ns]"),
        "has_label": datasets.Value("bool"), "image_0_uid": datasets.Value("string"),
        "image_0_url": datasets.Value("string"), "image_1_uid": datasets.Value("string"),
        "image_1_url": datasets.Value("string"), "jpg_0": datasets.Value("binary"), "jpg_1": datasets.Value("binary"),
        "label_0": datasets.Value("float64"), "label_1": datasets.Value("float64"),
        "model_0": datasets.Value("string"), "model_1": datasets.Value("string"),
        "ranking_id": datasets.Value("int64"), "user_id": datasets.Value("int64"),
        "num_example_per_prompt": datasets.Value("int64"), "__index_level_0__": datasets.Value("int64"),
    })
    (folder / "data").mkdir(parents=True)
    for name, rows, first in (("validation_unique", VALIDATION, 100), ("test_unique", TEST, 200)):
        table = datasets.Dataset.from_dict(_split(rows, first), features=features)
        table.to_parquet(str(folder / "data" / f"{name}-00000-of-00001-0123456789abcdef.parquet"))
    return folder


@pytest.fixture(scope="module")
def pickapic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("pickapic") / "pickapic_v2")


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{TESTMODELS},{PLUGIN}"}


def _run(tmp_path: Path, env: dict[str, str], data: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "runs"
    done = rrbench("run", "--task", "pickapic-v2", "--data", str(data), "--quiet", "--output", str(out), *args,
                   env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    return dict(json.loads((run_dir / "run.json").read_text()))


def _rows(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    excluded, wrong = record["metrics"]["overall"]
    assert (excluded["failure_policy"], wrong["failure_policy"]) == ("excluded", "wrong")
    return excluded, wrong


def test_label_map_keeps_the_numbers_and_counts_unknowns() -> None:
    assert pickapic_label(1.0, 0.0) == Label(LabelKind.WINNER, winner=0, original="label_0=1.0,label_1=0.0")
    assert pickapic_label(0.0, 1.0) == Label(LabelKind.WINNER, winner=1, original="label_0=0.0,label_1=1.0")
    assert pickapic_label(0.5, 0.5) == Label(LabelKind.TIE, original="label_0=0.5,label_1=0.5")
    for odd in ((0.3, 0.7), (1.0, 1.0), (None, 1.0), (float("nan"), 0.5), (True, False)):
        assert pickapic_label(*odd).kind is LabelKind.UNKNOWN


def test_loader_interleaves_the_splits_and_marks_validation(pickapic_dir: Path) -> None:
    task = pickapic_v2()
    samples = list(task.load(pickapic_dir))
    assert task.size_of(pickapic_dir) == len(samples) == 15
    # validation and test alternate while both last, so any --limit prefix holds both
    assert [s.meta["split"] for s in samples[:6]] == ["validation", "test"] * 3
    assert samples[0].id == "validation_unique-100" and samples[1].id == "test_unique-200"
    assert samples[0].prompt == "caption 100" and samples[0].candidates[0].format == "jpeg"
    assert [s.meta["split"] for s in pickapic_v2(validation=False).load(pickapic_dir)] == ["test"] * 9


def test_official_threshold_from_validation_and_half_credit(tmp_path: Path, env: dict[str, str],
                                                            pickapic_dir: Path) -> None:
    record = _run(tmp_path, env, pickapic_dir, "--model", "hidden-score")
    excluded, wrong = _rows(record)
    assert excluded["protocol"] == "pickapic-official" and excluded["tie_policy"] == "pickapic"
    assert excluded["extra"] == {"threshold": 0.3, "threshold_from": "validation", "n_validation": 6}
    assert excluded["value"] == pytest.approx(9 / 14) and excluded["n_units"] == 7
    assert wrong["value"] == pytest.approx(9 / 16) and wrong["n_units"] == 8
    assert _coverage(excluded) == (15, 7, 1, 1)
    assert excluded["failed_by_kind"] == {"parse": 1}
    assert record["counts"]["label_skipped"] == 2  # the unknown label of each split, never judged


def test_test_split_alone_uses_the_threshold_of_the_options(tmp_path: Path, env: dict[str, str],
                                                           pickapic_dir: Path) -> None:
    record = _run(tmp_path, env, pickapic_dir, "--model", "hidden-score", "-T", "validation=false")
    excluded, wrong = _rows(record)
    assert excluded["extra"] == {"threshold": 0.0, "threshold_from": "options", "n_validation": 0}
    assert excluded["value"] == pytest.approx(5 / 7) and wrong["value"] == pytest.approx(5 / 8)


def test_rationalrewards_paper_protocol_scores_the_test_split_only(tmp_path: Path, env: dict[str, str],
                                                                  pickapic_dir: Path) -> None:
    record = _run(tmp_path, env, pickapic_dir, "--model", "hidden-score", "--protocol", "rationalrewards-paper")
    excluded, wrong = _rows(record)
    assert excluded["protocol"] == "rationalrewards-paper" and excluded["tie_policy"] == "exact"
    assert excluded["value"] == pytest.approx(4 / 7) and wrong["value"] == pytest.approx(4 / 8)
    assert excluded["extra"] == {"n_validation": 6}  # validation samples never count in a test number
    assert _coverage(excluded) == (15, 7, 1, 1)


@pytest.mark.parametrize(("order", "expected"), [
    # always-first picks the image shown first; judged test pairs (t6 skipped): human winners are
    # t1 0, t2 1, t3 tie, t4 tie, t5 0, t7 0, t8 tie, t9 1 -> shown in dataset order it is right on t1, t5, t7 (3/8);
    # shown swapped it always picks image 1 and is right on t2, t9 (2/8); ties are never matched by a verdict A/B.
    ("fixed", 3 / 8), ("swapped", 2 / 8),
])
def test_paper_protocol_follows_the_presentation_order(tmp_path: Path, env: dict[str, str], pickapic_dir: Path,
                                                      order: str, expected: float) -> None:
    record = _run(tmp_path, env, pickapic_dir, "--model", "always-first", "--protocol", "rationalrewards-paper",
                  "--order", order)
    excluded, _ = _rows(record)
    assert excluded["value"] == pytest.approx(expected) and excluded["n_units"] == 8
