"""`editreward-bench`: a small copy of EditReward-Bench in its public schema, run end to end with test models whose
answers are set by the brightness of the photos, and every metric checked against hand-worked values.

The test models (tests/plugins/editreward_models.py) score an image by round(mean grey level / 10). Each candidate
below is a scikit-image photograph shifted to a mean of 10 x its level, so the level *is* the model's score.
"""

from __future__ import annotations

import functools
import io
import json
import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rrbench.types import LabelKind, TaskKind, UserError
from tasks.editreward_bench import (
    REVISION,
    count_rows,
    editreward_bench,
    group_of,
    hub_source,
    parse_ranking,
)
from tests.conftest import PLUGINS, rrbench

MODELS = str(Path(__file__).parent / "plugins" / "editreward_models.py")
PHOTOS = ("camera.png", "coins.png", "moon.png", "text.png")
CORRUPT = None  # a level of None writes bytes that are no image: the model's read fails (a data failure)
IMAGE_COLUMNS = ("source_image", "candidate_1", "candidate_2")


# --------------------------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=64)
def photo(level: int | None, which: int = 0) -> bytes:
    """A grey photo at low contrast whose mean is 10 * level (never clipped: 24x24, contrast 1/4)."""
    if level is None:
        return b"not an image"
    with (resources.files("skimage") / "data" / PHOTOS[which % len(PHOTOS)]).open("rb") as fh, Image.open(fh) as im:
        grey = np.asarray(im.convert("L").resize((24, 24)), dtype=np.float64)
    shifted = 0.25 * (grey - grey.mean()) + 10.0 * level
    assert shifted.min() >= 0 and shifted.max() <= 255
    buf = io.BytesIO()
    Image.fromarray(np.rint(shifted).astype(np.uint8), "L").save(buf, "PNG")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as check:  # the model's own reading: round(mean / 10) must be the level
        assert round(float(np.asarray(check.convert("L"), dtype=np.float64).mean()) / 10) == level
    return data


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as the hub stores them: image columns are HF ``Image`` features (bytes embedded in the parquet)."""
    import datasets

    datasets.disable_progress_bars()
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    for name in IMAGE_COLUMNS:
        if name in columns:
            columns[name] = [{"bytes": photo(level, i), "path": None} for i, level in enumerate(columns[name])]
    ds = datasets.Dataset.from_dict(columns)
    for name in IMAGE_COLUMNS:
        if name in columns:
            ds = ds.cast_column(name, datasets.Image())
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


def hub_row(row_id: str, dataset: str, ranking: str, comparison: str, first: int | None, second: int | None) -> dict:
    """One comparison in the hub's schema; ``first``/``second`` are the levels of candidate_1/candidate_2."""
    return {
        "id": row_id, "dataset": dataset, "instruction": f"edit for {row_id}", "source_image": 12,
        "candidate_1": first, "candidate_2": second, "ranking": ranking, "comparison_type": comparison,
        "score_1": 7.0, "score_2": 5.0, "model_1": "editor-x", "model_2": "editor-y",
    }


# K=2: (id, ranking, level of candidate_1, level of candidate_2). Every label kind: winner both ways, a tie, a
# both-bad tie (kept apart from the tie in the log, one class under 3-class scoring), an unknown string, and a
# corrupt candidate image.
PAIRS = [
    ("p01", "A>B", 12, 8),
    ("p02", "B>A", 9, 15),
    ("p03", "A>B", 10, 11),
    ("p04", "A=B", 10, 10),
    ("p05", "A=B", 14, 12),
    ("p06", "A=B=Bad", 6, 7),
    ("p07", "B>A", 13, 12),
    ("p08", "A?B", 11, 9),
    ("p09", "A>B", 16, 13),
    ("p10", "A>B", 12, CORRUPT),
]

# K=3: per group the levels of A, B, C and the human relation of each comparison (AvsB, AvsC, BvsC).
TRIPLES = {
    "g1": ((15, 12, 9), ("A>B", "A>C", "B>C")),
    "g2": ((12, 14, 16), ("A>B", "C>A", "C>B")),
    "g3": ((13, 9, 13), ("A>B", "A=C", "C>B")),
    "g4": ((11, 10, CORRUPT), ("A>B", "A>C", "B>C")),
    "g5": ((14, 11, 8), ("A>B", "A>D", "B>C")),  # "A>D" names a letter not in AvsC: an unknown label
}

# K=4: levels of A, B, C, D and the relations of AvsB, AvsC, AvsD, BvsC, BvsD, CvsD.
QUADS = {
    "h1": ((20, 15, 10, 5), ("A>B", "A>C", "A>D", "B>C", "B>D", "C>D")),
    "h2": ((5, 10, 16, 15), ("B>A", "C>A", "D>A", "C>B", "D>B", "D>C")),
    "h3": ((9, 17, 13, 21), ("B>A", "C>A", "D>A", "B>C", "D>B", "D>C")),
}


def group_rows(groups: Mapping[str, tuple[tuple[int | None, ...], tuple[str, ...]]], dataset: str) -> list[dict]:
    rows = []
    for gid, (levels, relations) in groups.items():
        letters = "ABCD"[: len(levels)]
        pairs = [(i, j) for i in range(len(levels)) for j in range(i + 1, len(levels))]
        for (i, j), relation in zip(pairs, relations, strict=True):
            comparison = f"{letters[i]}vs{letters[j]}"
            rows.append(hub_row(f"{gid}_{comparison}", dataset, relation, comparison, levels[i], levels[j]))
    return rows


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local copy in the hub's own layout: <K>pair/train-0000i-of-0000n.parquet."""
    root = tmp_path_factory.mktemp("EditReward-Bench")
    pairs = [hub_row(pid, "2pair", ranking, "AvsB", a, b) for pid, ranking, a, b in PAIRS]
    write_parquet(root / "2pair" / "train-00000-of-00001.parquet", pairs)
    rows = group_rows(TRIPLES, "3pair")
    write_parquet(root / "3pair" / "train-00000-of-00002.parquet", rows[:8])
    write_parquet(root / "3pair" / "train-00001-of-00002.parquet", rows[8:])
    return root


# --------------------------------------------------------------------------------------------------- running


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{PLUGINS},{MODELS}"}


def run(tmp_path: Path, env: dict[str, str], data: Path, *args: str) -> dict[str, dict]:
    """One `rrbench run` (models may be a comma list); the run.json of each model, keyed by model name."""
    out = tmp_path / "runs"
    tmp_path.mkdir(parents=True, exist_ok=True)
    done = rrbench("run", "--task", "editreward-bench", "--data", str(data), "--output", str(out), "--quiet", *args,
                   env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    records = {}
    for run_dir in out.iterdir():
        record = json.loads((run_dir / "run.json").read_text())
        records[record["spec"]["model"]] = record
        assert record["protocol"]["id"] in done.stdout  # every number is printed next to its protocol id
    return records


def metric(record: dict, name: str, failure_policy: str) -> dict:
    (row,) = [m for m in record["metrics"]["overall"] if m["metric"] == name and m["failure_policy"] == failure_policy]
    assert row["protocol"] == record["protocol"]["id"]
    return row


def values(record: dict, name: str) -> tuple[float, float]:
    """(failures excluded, failures counted wrong)."""
    return metric(record, name, "excluded")["value"], metric(record, name, "wrong")["value"]


def samples(record_dir: Path) -> dict[str, dict]:
    lines = (record_dir / "samples.jsonl").read_text().splitlines()
    return {s["id"]: s for s in map(json.loads, lines)}


# --------------------------------------------------------------------------------------------------- K = 2


def test_k2_official_exact_and_the_paper_protocol(tmp_path: Path, env: dict[str, str], hub: Path) -> None:
    official = run(tmp_path / "a", env, hub, "--model", "er-brightness")["er-brightness"]
    assert official["protocol"]["id"] == "editreward-3class"
    assert official["protocol"]["tie_policy"] == "editreward-exact" and official["task"]["version"] == "2"
    assert official["task"]["kind"] == "pair" and official["task"]["info"]["revision"] == REVISION
    # Scores (s1, s2) as the official vote string, compared with the ranking string exactly (inference_2pair_hf.py
    # line 130): p01 12>8 "A>B" right; p02 9<15 "B>A" right; p03 10<11 "B>A" vs "A>B" wrong; p04 10=10 "A=B" right;
    # p05 14>12 "A>B" vs "A=B" wrong; p06 6<7 "B>A" vs "A=B=Bad" wrong (no vote can equal it); p07 13>12 "A>B" vs
    # "B>A" wrong; p09 16>13 "A>B" right. p08 unknown label (skipped), p10 corrupt image (data failure).
    # Excluded: 4 right / 8 judged = 0.5. Counted wrong: 4 / 9 = 0.444...
    assert values(official, "accuracy") == pytest.approx((4 / 8, 4 / 9))
    acc = metric(official, "accuracy", "excluded")
    assert (acc["n_total"], acc["n_scored"], acc["n_failed"], acc["n_label_skipped"]) == (10, 8, 1, 1)
    assert acc["failed_by_kind"] == {"data": 1}
    assert official["counts"]["expected"] == 10 and official["counts"]["label_skipped"] == 1  # parquet metadata

    run_dir = next((tmp_path / "a" / "runs").iterdir())
    log = samples(run_dir)
    assert log["p06"]["label"] == {"kind": "both_bad", "original": "A=B=Bad"}  # tie kinds stay apart in the log
    assert log["p04"]["label"] == {"kind": "tie", "original": "A=B"}
    assert log["p02"]["label"] == {"kind": "winner", "winner": 1, "original": "B>A"}
    assert log["p08"]["label"] == {"kind": "unknown", "original": "A?B"} and log["p08"]["skipped"] == "unknown_label"
    assert log["p10"]["failure"] == "data"
    assert log["p01"]["meta"]["group"] == "p01" and log["p01"]["meta"]["comparison_type"] == "AvsB"
    assert log["p01"]["prompt"] == "edit for p01" and len(log["p01"]["source"]) == 1

    # The RationalRewards paper: one fixed order, ties one class matched on exactly equal scores -> the same
    # counts as above for K=2 (4 / 8), under its own protocol id.
    paper = run(tmp_path / "b", env, hub, "--model", "er-brightness", "--protocol", "rationalrewards-paper")
    record = paper["er-brightness"]
    assert record["protocol"]["id"] == "rationalrewards-paper" and record["protocol"]["order"] == "fixed"
    assert values(record, "accuracy") == pytest.approx((4 / 8, 4 / 9))


def test_k2_tie_calibrated_epsilon_search(tmp_path: Path, env: dict[str, str], hub: Path) -> None:
    records = run(tmp_path, env, hub, "--model", "er-brightness,er-judge", "--protocol", "editreward-ties")
    scalar = records["er-brightness"]
    assert scalar["protocol"]["tie_policy"] == "editreward-ties"
    # eval_bench.py reads the labels with get_pairwise_gt (lines 383-421): "A>B" +1, "B>A" -1, "A=B=Bad" 0, and a
    # plain "A=B" by letter position, A first -> +1 (A preferred). So h = (p01 1, p02 -1, p03 1, p04 1, p05 1,
    # p06 0, p07 -1, p09 1) and m = s1 - s2 = (4, -6, -1, 0, 2, -1, 1, 3). Right (suff_stats, lines 15-45): C when
    # h*m > 0 and |m| > e, Thm when h = 0 and |m| <= e: p01 e<4, p02 e<6, p05 e<2, p09 e<3, p06 e>=1; p03, p04
    # (a model tie against a preference) and p07 never. Thresholds 0, 1, 2, 3, 4, 6 (lines 469-481):
    #   e=0: p01 p02 p05 p09 = 4   e=1: + p06 = 5   e=2: p05 lost = 4   e=3: 3   e=4: 2   e=6: 1
    # First best: epsilon 1, 5 / 8 (failures counted wrong: 5 / 9).
    assert values(scalar, "accuracy") == pytest.approx((5 / 8, 5 / 9))
    assert metric(scalar, "accuracy", "excluded")["extra"] == {"epsilon": 1.0}
    # A categorical judge has no gap to calibrate: its verdicts stand against the same labels (p01 A, p02 B,
    # p05 A, p09 A right; p03 B, p04 tie, p06 B, p07 A wrong) -> 4 / 8 at the only candidate epsilon, 0.
    judge = records["er-judge"]
    assert values(judge, "accuracy") == pytest.approx((4 / 8, 4 / 9))
    assert metric(judge, "accuracy", "excluded")["extra"] == {"epsilon": 0.0}


def test_k2_position_baseline(tmp_path: Path, env: dict[str, str], hub: Path) -> None:
    record = run(tmp_path, env, hub, "--model", "always-first")["always-first"]
    # Verdict A everywhere: right on the A>B pairs p01 p03 p09 p10 (always-first never decodes an image, so the
    # corrupt p10 is judged), wrong on p02 p04 p05 p06 p07 -> 4 / 9 under both failure policies.
    assert values(record, "accuracy") == pytest.approx((4 / 9, 4 / 9))
    assert metric(record, "accuracy", "excluded")["n_failed"] == 0


# --------------------------------------------------------------------------------------------------- K = 3


def test_k3_group_all_correct(tmp_path: Path, env: dict[str, str], hub: Path) -> None:
    records = run(tmp_path / "a", env, hub, "-T", "k=3", "--model", "er-brightness,always-first")
    scalar = records["er-brightness"]
    assert scalar["protocol"]["id"] == "editreward-group" and scalar["task"]["kind"] == "group"
    assert scalar["counts"]["expected"] == 15  # both shards of 3pair/, nothing from 2pair/
    # er-brightness, per comparison (candidate_1 is the first letter):
    #   g1 A15 B12 C9:   A>B A>C B>C all right                          -> group right
    #   g2 A12 B14 C16:  A>B wrong (14 > 12), C>A right, C>B right       -> group wrong
    #   g3 A13 B9 C13:   A>B right, "A=C" = "A=C" right (13 = 13), C>B right -> group right
    #   g4 A11 B10 C?:   A>B right, AvsC and BvsC fail (corrupt C)       -> answered once, short of 3: wrong
    #   g5 A14 B11 C8:   A>B right, AvsC unknown label (skipped), B>C right -> group right on its 2 comparisons
    # Groups (inference_3pair_hf.py lines 390-405: groups of the answered rows, right when all 3 are there and
    # right): 3 / 5 under both failure policies, since no group lost every call.
    # Comparisons: right 3 + 2 + 3 + 1 + 2 = 11 of 12 judged; counted wrong 11 / 14.
    assert values(scalar, "group-accuracy") == pytest.approx((3 / 5, 3 / 5))
    assert values(scalar, "accuracy") == pytest.approx((11 / 12, 11 / 14))
    group = metric(scalar, "group-accuracy", "wrong")
    assert (group["n_units"], group["n_failed"], group["n_label_skipped"]) == (5, 2, 1)
    assert metric(scalar, "group-accuracy", "excluded")["n_units"] == 5  # g4 answered one call: it stays

    first = records["always-first"]
    # always-first picks candidate_1: g1 right 3/3 (group right); g2 A>B only (wrong); g3 A>B only, the tie A=C
    # and C>B wrong (wrong); g4 right 3/3 (no image read, so no failure; group right); g5 A>B, B>C right (right).
    # Groups 3 / 5; comparisons 3 + 1 + 1 + 3 + 2 = 10 / 14.
    assert values(first, "group-accuracy") == pytest.approx((3 / 5, 3 / 5))
    assert values(first, "accuracy") == pytest.approx((10 / 14, 10 / 14))

    # The paper protocol counts every row as a pair (no groups): the per-comparison numbers above.
    paper = run(tmp_path / "b", env, hub, "-T", "k=3", "--model", "er-brightness", "--protocol",
                "rationalrewards-paper")["er-brightness"]
    assert [m["metric"] for m in paper["metrics"]["overall"]] == ["accuracy", "accuracy"]
    assert values(paper, "accuracy") == pytest.approx((11 / 12, 11 / 14))


def test_a_group_short_of_its_comparisons_counts_wrong(tmp_path: Path, env: dict[str, str], hub: Path) -> None:
    # --limit 2 keeps g1's AvsB and AvsC (both right for er-brightness) and cuts BvsC: the official scorers count
    # a group only with all C(3, 2) = 3 comparisons present, so g1 is wrong, 0 / 1, under both failure policies.
    record = run(tmp_path, env, hub, "-T", "k=3", "--model", "er-brightness", "--limit", "2")["er-brightness"]
    assert values(record, "accuracy") == (1.0, 1.0)
    assert values(record, "group-accuracy") == (0.0, 0.0)


def test_k3_both_orders_put_every_trial_in_its_group(tmp_path: Path, env: dict[str, str], hub: Path) -> None:
    record = run(tmp_path, env, hub, "-T", "k=3", "--model", "always-first", "--order", "both")["always-first"]
    assert record["protocol"]["id"] == "editreward-group+order=both"
    # Each of the 14 judged comparisons is shown both ways; always-first is right in exactly one order of each
    # of the 13 with a strict human order and in neither for the tie g3 A=C: 13 / 28 trials. A group needs every
    # trial of every comparison right, so no group is: 0 / 5.
    assert values(record, "accuracy") == pytest.approx((13 / 28, 13 / 28))
    assert values(record, "group-accuracy") == (0.0, 0.0)


# --------------------------------------------------------------------------------------------------- K = 4


def test_k4_group_all_correct_from_a_file_holding_several_ks(
    tmp_path: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("flat")
    extra = [hub_row("x1", "2pair", "A>B", "AvsB", 9, 8), hub_row("x2", "2pair", "B>A", "AvsB", 8, 9)]
    mixed = write_parquet(folder / "editreward_mixed.parquet", extra + group_rows(QUADS, "4pair"))
    assert count_rows(4, folder) == 18 and count_rows(2, mixed) == 2  # the dataset column picks the K
    with pytest.raises(UserError, match=r"holds no 3pair rows .*: 2pair, 4pair"):
        count_rows(3, folder)
    records = run(tmp_path, env, folder, "-T", "k=4", "--model", "er-brightness,always-first")
    scalar = records["er-brightness"]
    assert scalar["counts"]["expected"] == 18 and scalar["counts"]["recorded"] == 18
    # er-brightness: h1 (20 15 10 5, A>B>C>D) all 6 right; h2 (5 10 16 15) right except CvsD (16 > 15 but the
    # humans said D>C); h3 (9 17 13 21, D>B>C>A) all 6 right. Groups 2 / 3; comparisons 17 / 18.
    assert values(scalar, "group-accuracy") == pytest.approx((2 / 3, 2 / 3))
    assert values(scalar, "accuracy") == pytest.approx((17 / 18, 17 / 18))
    first = records["always-first"]
    # always-first: h1 prefers the first letter everywhere (6 right, group right); h2 never (0); h3 only B>C (1).
    # Groups 1 / 3; comparisons 7 / 18.
    assert values(first, "group-accuracy") == pytest.approx((1 / 3, 1 / 3))
    assert values(first, "accuracy") == pytest.approx((7 / 18, 7 / 18))


def test_hub_snapshot_at_the_pinned_revision_offline(tmp_path: Path, env: dict[str, str], hub: Path) -> None:
    """Without --data the task reads the hub snapshot of the pinned revision; here a local cache, offline."""
    snapshot = tmp_path / "hf" / "datasets--TIGER-Lab--EditReward-Bench" / "snapshots" / REVISION
    shutil.copytree(hub / "3pair", snapshot / "3pair")
    offline = {**env, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = rrbench("run", "--task", "editreward-bench", "-T", "k=3", "--model", "er-brightness", "--quiet",
                   "--output", str(tmp_path / "runs"), env=offline, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert record["spec"]["data"] is None and record["counts"]["expected"] == 15
    # run.json says which commit of the hub dataset was read
    assert record["data_snapshots"] == {"TIGER-Lab/EditReward-Bench": {"requested": REVISION, "commit": REVISION}}
    assert values(record, "group-accuracy") == pytest.approx((3 / 5, 3 / 5))  # as in test_k3_group_all_correct
    # resuming the finished run reads no data, and keeps the record of which commit the samples came from
    again = rrbench("run", "--task", "editreward-bench", "-T", "k=3", "--model", "er-brightness", "--quiet",
                    "--output", str(tmp_path / "runs"), env=offline, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(next((tmp_path / "runs").iterdir()).joinpath("run.json").read_text())
    assert resumed["sessions"] == 2 and resumed["data_snapshots"] == record["data_snapshots"]
    missing = rrbench("run", "--task", "editreward-bench", "--model", "er-brightness", "--quiet",
                      "--output", str(tmp_path / "runs2"), env=offline, cwd=tmp_path)
    assert missing.returncode == 2 and "2pair/train-00000-of-00001.parquet" in missing.stderr


# --------------------------------------------------------------------------------------------------- bundle


def bundle_row(ranking: str | None, first: int, second: int, scores: tuple[float, ...] = (3, 3, 3, 3)) -> dict:
    """The RationalRewards bundle's EditReward columns (no id, dataset or comparison_type)."""
    row = {"instruction": "make it brighter", "source_image": 12, "candidate_1": first, "candidate_2": second,
           "model_1": "m1", "model_2": "m2", "ranking": ranking,
           "instruction_following_1": scores[0], "visual_quality_1": scores[1],
           "instruction_following_2": scores[2], "visual_quality_2": scores[3]}
    if ranking is None:
        del row["ranking"]
    return row


def test_rationalrewards_bundle(tmp_path: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("bundle")
    write_parquet(folder / "editreward_bench.parquet", [
        bundle_row("A>B", 12, 9), bundle_row("B>A", 12, 9), bundle_row("A=B", 10, 10), bundle_row("A=B", 11, 10)])
    write_parquet(folder / "editreward_scores_only.parquet", [  # no ranking: labels from the summed human scores
        bundle_row(None, 14, 10, (3, 4, 2, 2)), bundle_row(None, 10, 12, (2, 2, 3, 1))])
    write_parquet(folder / "genaibench_imgedit.parquet", [  # another benchmark of the bundle: not read
        {"source_prompt": "a", "target_prompt": "b", "instruct_prompt": "c", "vote_type": "leftvote"}])
    record = run(tmp_path / "a", env, folder, "--model", "er-brightness", "--protocol", "rationalrewards-paper")
    record = record["er-brightness"]
    # A>B 12>9 right; B>A 12>9 wrong; A=B 10=10 right; A=B 11>10 wrong; scores 7 vs 4 -> A, 14>10 right;
    # scores 4 vs 4 -> tie, 10<12 wrong: 3 / 6.
    assert values(record, "accuracy") == pytest.approx((3 / 6, 3 / 6))
    assert record["counts"]["expected"] == 6
    log = samples(next((tmp_path / "a" / "runs").iterdir()))
    assert sorted(log) == [f"2pair-{i}" for i in range(6)]
    assert log["2pair-5"]["label"] == {"kind": "tie", "original": "instruction_following+visual_quality 4 vs 4"}
    assert "group" not in log["2pair-0"]["meta"]

    grouped = rrbench("run", "--task", "editreward-bench", "-T", "k=3", "--data", str(folder), "--model",
                      "er-brightness", "--output", str(tmp_path / "b"), "--quiet", env=env, cwd=tmp_path)
    assert grouped.returncode == 2 and "no 'id'" in grouped.stderr and "Traceback" not in grouped.stderr


def test_wrong_data_is_one_line_user_error(tmp_path: Path, env: dict[str, str]) -> None:
    write_parquet(tmp_path / "other" / "genaibench.parquet", [{"prompt": "a", "vote_type": "tievote"}])
    done = rrbench("run", "--task", "editreward-bench", "--data", str(tmp_path / "other"), "--model", "er-brightness",
                   "--output", str(tmp_path / "runs"), "--quiet", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "EditReward-Bench's columns" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize(("ranking", "comparison", "kind", "winner"), [
    ("A>B", "AvsB", LabelKind.WINNER, 0),
    ("B>A", "AvsB", LabelKind.WINNER, 1),
    ("A<B", None, LabelKind.WINNER, 1),
    ("A = B", "AvsB", LabelKind.TIE, None),
    ("A=B=Good", "AvsB", LabelKind.BOTH_GOOD, None),
    ("A=B=Bad", None, LabelKind.BOTH_BAD, None),
    ("C>A", "AvsC", LabelKind.WINNER, 1),  # candidate_2 is C
    ("B>D", "BvsD", LabelKind.WINNER, 0),
    ("D=C", "CvsD", LabelKind.TIE, None),
    ("A>C", "AvsB", LabelKind.UNKNOWN, None),  # a letter the comparison does not show
    ("A>B", "AvsA", LabelKind.UNKNOWN, None),
    ("A>B", "A-B", LabelKind.UNKNOWN, None),
    ("leftvote", "AvsB", LabelKind.UNKNOWN, None),
    (None, "AvsB", LabelKind.UNKNOWN, None),
])
def test_label_map(ranking: str | None, comparison: str | None, kind: LabelKind, winner: int | None) -> None:
    label = parse_ranking(ranking, comparison)
    assert (label.kind, label.winner) == (kind, winner)
    if ranking is not None and kind is not LabelKind.UNKNOWN:
        assert label.original == ranking  # the dataset's own string, unnormalised


def test_group_rule_and_task_shape() -> None:
    assert group_of("12_AvsB") == "12" and group_of("a_b_c") == "a" and group_of("abcdefghijkl") == "abcdefghij"
    for k, kind, protocol in ((2, TaskKind.PAIR, "editreward-3class"), (3, TaskKind.GROUP, "editreward-group"),
                              (4, TaskKind.GROUP, "editreward-group")):
        built = editreward_bench(k=k)
        assert (built.kind, built.protocol.id, built.generation) == (kind, protocol, "edit")
        assert set(built.alternatives) == {"rationalrewards-paper", "editreward-ties"}
        assert built.info.revision == REVISION and built.info.license == "apache-2.0"
    assert editreward_bench(k=4).protocol.metrics == ("group-accuracy", "accuracy")
    assert hub_source(3).files == ("3pair/train-00000-of-00002.parquet", "3pair/train-00001-of-00002.parquet")
    for bad in (1, 5, True, "2"):
        with pytest.raises(UserError, match="k must be 2, 3 or 4"):
            editreward_bench(k=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- eval_bench.py

# K=3 groups for EditReward's scorer of scalar reward models: levels of A, B, C and the relations of AvsB, AvsC, BvsC.
STRICT = {
    "s1": ((12, 11, 11), ("A>B", "A>C", "C>B")),  # human A>C>B, B and C scored equal
    "s2": ((12, 11, 11), ("A>B", "A>C", "B>C")),  # human A>B>C, the same scores
    "s3": ((15, 12, 9), ("A>B", "A>C", "B>C")),  # human A>B>C, strict scores in that order
    "s4": ((13, 9, 13), ("A>B", "A=C", "C>B")),  # "A=C" is read by letter position: A preferred, so A>C>B
}


def test_k3_strict_ranking_accuracy_ranks_by_argsort(tmp_path: Path, env: dict[str, str],
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("strict")
    write_parquet(folder / "3pair" / "train-00000-of-00001.parquet", group_rows(STRICT, "3pair"))
    record = run(tmp_path, env, folder, "-T", "k=3", "--model", "er-brightness", "--protocol",
                 "editreward-ties")["er-brightness"]
    assert record["protocol"]["tie_policy"] == "editreward-without-ties"
    # eval_bench.py lines 573-587: right when the human order equals tuple(np.argsort(scores)[::-1]).
    # s1 scores (12, 11, 11): argsort -> (1, 2, 0), reversed (0, 2, 1) = A>C>B = human: right (no epsilon: the
    #    equal B and C are ordered by argsort, which puts index 1 before 2).
    # s2 the same model order against the human A>B>C: wrong.
    # s3 (15, 12, 9) -> (0, 1, 2) = A>B>C: right.
    # s4 human A>C>B (A=C read as A first, get_pairwise_gt lines 405-419); scores (13, 9, 13): argsort (1, 0, 2),
    #    reversed (2, 0, 1) = C>A>B: wrong.
    assert values(record, "strict-ranking-accuracy") == pytest.approx((2 / 4, 2 / 4))
    # Pairwise accuracy without ties (lines 113-122, epsilon -1: a model tie is discordant; human ties left out,
    # and "A=C" is no tie for this reader): s1 A>B A>C right, C>B vs 11=11 wrong; s2 A>B A>C right, B>C wrong;
    # s3 3 right; s4 A>B right, A>C vs 13=13 wrong, C>B right -> 2 + 2 + 3 + 2 = 9 of 12.
    assert values(record, "accuracy") == pytest.approx((9 / 12, 9 / 12))
