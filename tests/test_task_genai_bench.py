"""GenAI-Bench tasks end to end: small copies in the dataset's public schema, run through the real CLI.

Each test writes parquet files with HF ``Image`` features in the hub layout (``image_generation/test_v1-*.parquet``)
from scikit-image photographs whose brightness the test sets, and runs deterministic models from
tests/plugins/genai_mmrb2_models.py (``luma``: score = mean grey level; ``luma-verdict``: 4-way verdict from the
grey levels, failing when the image shown first is near-black) plus the built-in ``always-first`` and ``constant``.
Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import functools
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from PIL import Image

from rrbench import registry
from rrbench.types import LabelKind, Media, UserError
from tests.conftest import PLUGINS, rrbench

OUR_PLUGINS = str(Path(__file__).parent / "plugins" / "genai_mmrb2_models.py")
LEVELS = {"L": 200.0, "D": 60.0, "K": 3.0}  # light, dim, near-black (the test models fail on near-black)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")

# (left, right, vote_type). A repeated level in one row is the same photograph twice, so every model sees a tie.
ROWS: list[tuple[str, str, str]] = [
    ("L", "D", "leftvote"),  # r0
    ("D", "L", "leftvote"),  # r1
    ("D", "L", "rightvote"),  # r2
    ("L", "L", "tievote"),  # r3: both light
    ("D", "D", "tievote"),  # r4: both dim
    ("D", "D", "bothbad_vote"),  # r5
    ("L", "D", "bothbad_vote"),  # r6
    ("L", "D", "skipvote"),  # r7: not a GenAI-Bench vote -> unknown, label-skipped
    ("K", "L", "rightvote"),  # r8: near-black left image -> luma fails (empty), luma-verdict fails (parse)
]


# --------------------------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=64)
def photo(level: str, which: int, size: int = 48) -> bytes:
    """A scikit-image photograph scaled to the level's mean grey, as PNG bytes (lossless, so the mean is exact)."""
    import skimage.data

    pixels = getattr(skimage.data, PHOTOS[which % len(PHOTOS)])()
    img = Image.fromarray(pixels).convert("RGB").resize((size, size))
    grey = np.asarray(img.convert("L"), dtype=np.float64).mean()
    scaled = np.clip(np.asarray(img, dtype=np.float64) * LEVELS[level] / grey, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(scaled).save(buf, "PNG")
    return buf.getvalue()


def cell(level: str | None, which: int) -> dict[str, Any] | None:
    return None if level is None else {"bytes": photo(level, which), "path": None}


def write_parquet(path: Path, columns: dict[str, list[Any]], images: Sequence[str] = (),
                  image_lists: Sequence[str] = ()) -> Path:
    """One parquet file as `datasets` writes it: HF Image (or list of Image) features on the image columns."""
    import datasets

    features = {}
    for name in columns:
        if name in images:
            features[name] = datasets.Image()
        elif name in image_lists:
            features[name] = datasets.List(datasets.Image())
        else:
            features[name] = datasets.Value("string")
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(path))
    return path


def t2i_columns(rows: Sequence[tuple[str | None, str | None, str]]) -> dict[str, list[Any]]:
    return {
        "prompt": [f"a photo, row {i}" for i in range(len(rows))],
        "left_model": [f"model-{i % 3}" for i in range(len(rows))],
        "left_image": [cell(left, i) for i, (left, _, _) in enumerate(rows)],
        "right_model": [f"model-{(i + 1) % 3}" for i in range(len(rows))],
        "right_image": [cell(right, i) for i, (_, right, _) in enumerate(rows)],
        "vote_type": [vote for _, _, vote in rows],
    }


def edit_columns(rows: Sequence[tuple[str | None, str | None, str]]) -> dict[str, list[Any]]:
    return {
        "source_prompt": [f"a photo, row {i}" for i in range(len(rows))],
        "target_prompt": [f"a brighter photo, row {i}" for i in range(len(rows))],
        "instruct_prompt": [f"make row {i} brighter" for i in range(len(rows))],
        "source_image": [cell("D", i + 1) for i in range(len(rows))],
        "left_model": [f"model-{i % 3}" for i in range(len(rows))],
        "left_output_image": [cell(left, i) for i, (left, _, _) in enumerate(rows)],
        "right_model": [f"model-{(i + 1) % 3}" for i in range(len(rows))],
        "right_output_image": [cell(right, i) for i, (_, right, _) in enumerate(rows)],
        "vote_type": [vote for _, _, vote in rows],
    }


T2I_IMAGES = ("left_image", "right_image")
EDIT_IMAGES = ("source_image", "left_output_image", "right_output_image")


# --------------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{PLUGINS},{OUR_PLUGINS}"}


class Run(NamedTuple):
    record: dict[str, Any]  # run.json
    path: Path  # the run directory

    def samples(self) -> dict[str, dict[str, Any]]:
        lines = (self.path / "samples.jsonl").read_text().splitlines()
        return {s["id"]: s for s in (json.loads(line) for line in lines)}


def run(env: dict[str, str], cwd: Path, task: str, data: Path, models: str, *extra: str) -> dict[str, Run]:
    """`rrbench run` into a fresh output folder; returns each model's run."""
    out = cwd / "runs" / f"{task}-{data.name}-{len(extra)}"
    done = rrbench("run", "--task", task, "--model", models, "--data", str(data), "--output", str(out), "--quiet",
                   *extra, env=env, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = [Run(json.loads((d / "run.json").read_text()), d) for d in out.iterdir()]
    return {r.record["spec"]["model"]: r for r in runs}


def accuracy(record: dict[str, Any], failure_policy: str) -> dict[str, Any]:
    rows = [m for m in record["metrics"]["overall"] if m["metric"] == "accuracy"]
    return next(m for m in rows if m["failure_policy"] == failure_policy)


def check(result: Run, excluded: tuple[int, int], wrong: tuple[int, int], **coverage: Any) -> None:
    """Accuracy with failures excluded and counted wrong, each as (right, units); plus coverage fields."""
    ex, wr = accuracy(result.record, "excluded"), accuracy(result.record, "wrong")
    assert (ex["value"], ex["n_units"]) == pytest.approx((excluded[0] / excluded[1], excluded[1]))
    assert (wr["value"], wr["n_units"]) == pytest.approx((wrong[0] / wrong[1], wrong[1]))
    for key, value in coverage.items():
        assert ex[key] == value, key


# --------------------------------------------------------------------------------------------------- tests


def test_levels_are_what_the_hand_arithmetic_assumes() -> None:
    from tests.plugins.genai_mmrb2_models import DARK, mean_grey

    means = {lv: mean_grey(Media.from_bytes(photo(lv, i))) for i, lv in enumerate(("L", "D", "K"))}
    assert means["L"] >= 128 + 1 and DARK < means["D"] < 128 and means["K"] < DARK
    assert means["L"] - means["D"] > 1.0  # beyond luma-verdict's tie margin


def test_t2i_official_and_paper_protocols(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "GenAI-Bench"
    write_parquet(data / "image_generation" / "test_v1-00000-of-00001.parquet", t2i_columns(ROWS), T2I_IMAGES)
    # The older `test` split and the edit config lie next to it and must not be read.
    write_parquet(data / "image_generation" / "test-00000-of-00001.parquet", t2i_columns(ROWS[:2]), T2I_IMAGES)
    write_parquet(data / "image_edition" / "test_v1-00000-of-00001.parquet", edit_columns(ROWS[:2]), EDIT_IMAGES)
    models = "luma,luma-verdict,always-first,constant"
    official = run(env, tmp_path, "genai-bench-t2i", data, models)
    paper = run(env, tmp_path, "genai-bench-t2i", data, models, "--protocol", "rationalrewards-paper")

    from tests.plugins.genai_mmrb2_models import mean_grey

    # Official 4-way (genai-4way, fixed order). Per row r0..r8, r7 label-skipped:
    # luma gives scores (mean grey); a score tie is read as both_good at or above the tie split, the median of the
    # 14 scores luma gave on the judged rows r0..r6 (r8 failed), else as both_bad. Row i shows photo i at its level.
    judged = [mean_grey(Media.from_bytes(photo(lv, i))) for i, (left, right, _) in enumerate(ROWS[:7])
              for lv in (left, right) if lv]
    split = statistics.median(judged)  # 8 dim and 6 light scores: the mean of the two brightest dim ones
    d4, d5 = (mean_grey(Media.from_bytes(photo("D", i))) for i in (4, 5))
    tie_rows_right = 1 + (d4 >= split) + (d5 < split)  # r3 light >= split: both_good = tievote, right
    #   r0 A=A 1 | r1 B vs A 0 | r2 B 1 | r3, r4, r5 as just computed | r6 A vs bad 0 | r8 failed
    right = 2 + tie_rows_right
    check(official["luma"], (right, 7), (right, 8), n_total=9, n_scored=7, n_failed=1, n_label_skipped=1,
          failed_by_kind={"empty": 1})
    assert accuracy(official["luma"].record, "excluded")["extra"]["tie_split"] == pytest.approx(split)
    # luma-verdict: r3 both_good 1 | r4 both_bad vs tievote 0 | r5 both_bad 1 | others as luma -> 4 right. Its
    # answer on r8 has no [[...]] ("I cannot see the first image."): the official scorer reads no verdict and counts
    # the row, wrong (inference.py lines 157-159), so it is judged, not failed, under the official rule -> 4/8, 4/8.
    check(official["luma-verdict"], (4, 8), (4, 8), n_failed=0, n_scored=8)
    # always-first (verdict A): right only on leftvote rows r0, r1 -> 2/8 (it never fails)
    check(official["always-first"], (2, 8), (2, 8), n_failed=0, n_scored=8)
    # constant (every score equal, so every pair a tie at the median: both_good): right on the two tievote rows
    # r3, r4 -> 2/8, a random guess's 25%, not the 4/8 a tie that fits either kind would give it
    check(official["constant"], (2, 8), (2, 8))
    # the official scorer counts a response without a verdict as wrong: that is the headline failure policy
    assert official["luma"].record["protocol"]["failure_policy"] == "wrong"
    assert "score_to_4way" in official["luma"].record["protocol"]["options"]

    # rationalrewards-paper (exact, fixed, failures excluded): every tie kind is the one class "tie".
    # luma: same rows right as above -> 5/7 (5/8); luma-verdict: r4 both_bad now matches tievote -> 5/7 (5/8)
    check(paper["luma"], (5, 7), (5, 8), n_failed=1, n_label_skipped=1)
    check(paper["luma-verdict"], (5, 7), (5, 8))
    check(paper["always-first"], (2, 8), (2, 8))
    check(paper["constant"], (4, 8), (4, 8))
    assert paper["luma"].record["protocol"]["order"] == "fixed"

    logged = official["luma-verdict"].samples()
    assert len(logged) == 9  # the `test` split's 2 rows and the edit config were not read
    assert logged["00003"]["label"] == {"kind": "both_good", "original": "tievote"}
    assert logged["00005"]["label"] == {"kind": "both_bad", "original": "bothbad_vote"}
    assert logged["00007"]["label"] == {"kind": "unknown", "original": "skipvote"}
    assert logged["00007"]["skipped"] == "unknown_label"
    assert logged["00000"]["prompt"] == "a photo, row 0" and logged["00000"]["meta"]["left_model"] == "model-0"


def test_edit_official_and_paper_protocols(tmp_path: Path, env: dict[str, str]) -> None:
    rows: list[tuple[str | None, str | None, str]] = [*ROWS, (None, "L", "leftvote")]  # r9: no left image
    data = tmp_path / "GenAI-Bench"
    write_parquet(data / "image_edition" / "test_v1-00000-of-00001.parquet", edit_columns(rows), EDIT_IMAGES)
    official = run(env, tmp_path, "genai-bench-edit", data, "luma,luma-verdict")
    paper = run(env, tmp_path, "genai-bench-edit", data, "luma,luma-verdict", "--protocol", "rationalrewards-paper")

    # As for t2i, plus r9, whose missing image is a data failure of that sample only (the run goes on):
    # luma 5/7 judged, 5/9 with the two failures (r8 empty, r9 data); luma-verdict 4/8 (its r8 answer without a
    # verdict is read, and wrong) and 4/9 with the data failure
    check(official["luma"], (5, 7), (5, 9), n_total=10, n_failed=2, failed_by_kind={"data": 1, "empty": 1})
    check(official["luma-verdict"], (4, 8), (4, 9), failed_by_kind={"data": 1})
    # paper: luma 5/7 (5/9); luma-verdict 5/7 (5/9)
    check(paper["luma"], (5, 7), (5, 9))
    check(paper["luma-verdict"], (5, 7), (5, 9))

    logged = official["luma"].samples()
    assert logged["00000"]["prompt"] == "make row 0 brighter"  # instruct_prompt is the request
    assert len(logged["00000"]["source"]) == 1 and logged["00000"]["meta"]["target_prompt"] == "a brighter photo, row 0"
    assert logged["00009"]["failure"] == "data"


def test_rationalrewards_bundle_is_found_by_columns(tmp_path: Path, env: dict[str, str]) -> None:
    # The bundle's own file names are not documented; these follow the authors' scripts (data/genaibench_t2i.parquet
    # ...), and the other benchmarks' files sit next to it with other columns.
    bundle = tmp_path / "bundle"
    write_parquet(bundle / "genaibench_t2i.parquet",
                  {"pair_id": ["g0", "g1", "g2"], **t2i_columns(ROWS[:3])}, T2I_IMAGES)
    write_parquet(bundle / "genaibench_imgedit.parquet", edit_columns(ROWS[:2]), EDIT_IMAGES)
    write_parquet(bundle / "mmrb2" / "t2i" / "part-0.parquet",
                  {"pair_id": ["m0"], "prompt_text": ["x"], "prompt_images": [[]],
                   "response_a_images": [[cell("L", 0)]], "response_b_images": [[cell("D", 0)]], "chosen": ["A"]},
                  image_lists=("prompt_images", "response_a_images", "response_b_images"))
    records = run(env, tmp_path, "genai-bench-t2i", bundle, "luma-verdict")
    # r0 A right, r1 B vs leftvote wrong, r2 B right -> 2/3; ids come from the bundle's pair_id
    check(records["luma-verdict"], (2, 3), (2, 3), n_total=3)
    assert set(records["luma-verdict"].samples()) == {"g0", "g1", "g2"}
    edit = run(env, tmp_path, "genai-bench-edit", bundle, "luma-verdict")
    check(edit["luma-verdict"], (1, 2), (1, 2), n_total=2)  # r0 right, r1 wrong


def test_labels_tasks_and_layout_errors(tmp_path: Path) -> None:
    from rrbench.tasks import genai_bench

    kinds = {v: genai_bench.label(v).kind for v in ("leftvote", "rightvote", "tievote", "bothbad_vote", "Leftvote")}
    assert kinds == {"leftvote": LabelKind.WINNER, "rightvote": LabelKind.WINNER, "tievote": LabelKind.BOTH_GOOD,
                     "bothbad_vote": LabelKind.BOTH_BAD, "Leftvote": LabelKind.UNKNOWN}
    assert genai_bench.label("rightvote").winner == 1 and genai_bench.label(None).original is None

    t2i = registry.get("task", "genai-bench-t2i").build()
    edit = registry.get("task", "genai-bench-edit").build()
    assert (t2i.size, edit.size, t2i.generation, edit.generation) == (1735, 919, "t2i", "edit")
    assert t2i.protocol.id == "genai-bench-4way" and t2i.protocol.tie_policy == "genai-4way"
    assert t2i.alternatives["rationalrewards-paper"].tie_policy == "exact"
    assert t2i.info.dataset is not None and "TIGER-Lab/GenAI-Bench" in t2i.info.dataset

    folder = tmp_path / "elsewhere"
    write_parquet(folder / "image_generation" / "test_v1-00000-of-00001.parquet", {"caption": ["x"]})
    with pytest.raises(UserError, match="no parquet file with TIGER-Lab/GenAI-Bench's columns"):
        t2i.size_of(folder)
    write_parquet(folder / "image_generation" / "test_v1-00000-of-00001.parquet", t2i_columns(ROWS[:4]), T2I_IMAGES)
    assert t2i.size_of(folder) == 4
    # A copy holding only the older `test` split (same columns) is refused, never read as test_v1.
    old = tmp_path / "old"
    write_parquet(old / "image_generation" / "test-00000-of-00001.parquet", t2i_columns(ROWS[:2]), T2I_IMAGES)
    with pytest.raises(UserError, match="image_generation/test_v1"):
        t2i.size_of(old)
    assert t2i.size_of(old / "image_generation" / "test-00000-of-00001.parquet") == 2  # named explicitly: taken
