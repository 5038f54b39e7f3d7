"""MMRB2 tasks end to end: small copies in the hub schema and in the RationalRewards bundle's flattened schema.

Images are scikit-image photographs at set brightness (helpers shared with test_task_genai_bench.py); the models are
``luma`` (score = mean grey level), ``luma-verdict`` (A/B for the brighter image, a both-good tie for two equal
light images, a parse failure when the image shown first is near-black) and the built-in ``always-first``.
Expected values are worked out by hand in the comments; "fwd"/"rev" are the two presentation orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rrbench import registry
from rrbench.types import LabelKind, UserError
from tests.conftest import PLUGINS
from tests.test_task_genai_bench import OUR_PLUGINS, cell, check, run, write_parquet

IMAGE_LISTS = ("prompt_images", "response_a_images", "response_b_images")

# (answer A, answer B, chosen); levels: L light, D dim, K near-black (fails luma and, shown first, luma-verdict).
ROWS: list[tuple[str | None, str | None, Any]] = [
    ("L", "D", "A"),  # m0
    ("L", "D", "B"),  # m1
    ("D", "L", "b"),  # m2: the official reader upper-cases `chosen`
    ("L", "L", "A"),  # m3: the same photograph twice, every model sees a tie
    ("K", "D", "B"),  # m4
    ("L", "D", ""),  # m5: unknown label
    ("L", "D", "tie"),  # m6: MMRB2 has no ties: unknown too, counted and never guessed
]


def columns(rows: Sequence[tuple[str | None, str | None, Any]], ids: str = "m", edit: bool = False,
            flattened: bool = False) -> dict[str, list[Any]]:
    """MMRB2's hub columns (or only the bundle's flattened six); answers hold one image, or none for a level None."""
    out: dict[str, list[Any]] = {
        "pair_id": [f"{ids}{i}" for i in range(len(rows))],
        "prompt_text": [f"<image_1> edit {i}" if edit else f"a photo, pair {i}" for i in range(len(rows))],
        "prompt_images": [[cell("D", i + 1)] if edit else [] for i in range(len(rows))],
        "response_a_images": [[] if a is None else [cell(a, i)] for i, (a, _, _) in enumerate(rows)],
        "response_b_images": [[] if b is None else [cell(b, i)] for i, (_, b, _) in enumerate(rows)],
        "chosen": [chosen for _, _, chosen in rows],
    }
    if not flattened:
        out.update({
            "response_a_text": ["" for _ in rows], "response_b_text": ["" for _ in rows],
            "prompt_source": ["oneig" if i < 2 else "wise" for i in range(len(rows))],
            "response_a_model": ["gpt-image" for _ in rows], "response_b_model": ["flux" for _ in rows],
            "human_annotations": ["{}" for _ in rows], "prompt_metadata": ["{}" for _ in rows],
        })
    return out


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{PLUGINS},{OUR_PLUGINS}"}


def test_t2i_both_orders_and_paper_protocol(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "multimodal-rewardbench-2"
    write_parquet(data / "t2i" / "test-00000-of-00001.parquet", columns(ROWS), image_lists=IMAGE_LISTS)
    # MMRB2's other tasks share the columns; they must not be read.
    write_parquet(data / "interleaved" / "test-00000-of-00001.parquet", columns(ROWS[:2], "x"),
                  image_lists=IMAGE_LISTS)
    official = run(env, tmp_path, "mmrb2-t2i", data, "luma,luma-verdict,always-first")
    paper = run(env, tmp_path, "mmrb2-t2i", data, "luma,luma-verdict,always-first",
                "--protocol", "rationalrewards-paper")

    # Official: both orders, exact 3-class credit (a predicted tie is wrong: no human ties), failed orders left out.
    # luma-verdict:  m0 fwd A 1, rev B->A 1 | m1 0, 0 | m2 fwd B 1, rev A->B 1 | m3 both_good 0, 0
    #   | m4 fwd: K shown first -> failed; rev: D shown first beats K -> A->B 1 | m5, m6 label-skipped
    #   -> 5 right of 9 judged orders; with the failed order counted wrong: 5 of 10
    check(official["luma-verdict"], (5, 9), (5, 10), n_total=7, n_scored=5, n_failed=1, n_label_skipped=2,
          failed_by_kind={"parse": 1})
    # luma (pointwise, so both orders reuse the same two scores): m0 1,1 | m1 0,0 | m2 1,1 | m3 tie 0,0
    #   | m4 scoring K fails -> both orders failed -> 4/8; counted wrong 4/10
    check(official["luma"], (4, 8), (4, 10), n_failed=1, failed_by_kind={"empty": 1})
    # always-first: fwd says A, rev says A = original B, so exactly one order is right for each of m0..m4 -> 5/10
    check(official["always-first"], (5, 10), (5, 10))
    by_category = official["luma-verdict"].record["metrics"]["by_category"]
    assert set(by_category) == {"oneig", "wise"}  # prompt_source is the category
    assert official["luma"].record["protocol"]["order"] == "both"

    # rationalrewards-paper: one fixed order (A first), failures excluded.
    # luma-verdict: m0 1 | m1 0 | m2 1 | m3 0 | m4 failed -> 2/4 (2/5); luma: the same -> 2/4 (2/5)
    check(paper["luma-verdict"], (2, 4), (2, 5), n_failed=1)
    check(paper["luma"], (2, 4), (2, 5))
    # always-first: A right on m0, m3 -> 2/5
    check(paper["always-first"], (2, 5), (2, 5))

    logged = official["luma-verdict"].samples()
    assert len(logged) == 7  # the interleaved copy was not read
    assert logged["m2"]["label"] == {"kind": "winner", "winner": 1, "original": "b"}
    assert logged["m6"]["label"] == {"kind": "unknown", "original": "tie"} and logged["m6"]["skipped"]
    assert [t["order"] for t in logged["m4"]["trials"]] == [[0, 1], [1, 0]]
    assert logged["m4"]["trials"][0]["prediction"] is None and logged["m4"]["correct"] == [None, 1.0]
    assert logged["m0"]["source"] == []  # text-to-image: no source image


def test_edit_sends_prompt_images_as_source(tmp_path: Path, env: dict[str, str]) -> None:
    rows = [*ROWS, ("L", None, "A")]  # m7: answer B has no image -> a data failure in both orders
    data = tmp_path / "multimodal-rewardbench-2"
    write_parquet(data / "edit" / "test-00000-of-00001.parquet", columns(rows, edit=True), image_lists=IMAGE_LISTS)
    write_parquet(data / "t2i" / "test-00000-of-00001.parquet", columns(ROWS[:2], "t"), image_lists=IMAGE_LISTS)
    official = run(env, tmp_path, "mmrb2-edit", data, "luma-verdict")
    # As for t2i: 5 right of 9 judged orders; m7 adds two failed orders -> counted wrong 5/12
    check(official["luma-verdict"], (5, 9), (5, 12), n_total=8, n_failed=2, failed_by_kind={"data": 1, "parse": 1})
    logged = official["luma-verdict"].samples()
    assert len(logged["m0"]["source"]) == 1 and logged["m0"]["prompt"] == "<image_1> edit 0"
    assert logged["m7"]["failure"] == "data"


def test_rationalrewards_bundle_parts_by_folder(tmp_path: Path, env: dict[str, str]) -> None:
    # The bundle flattens MMRB2 to six columns; its t2i and edit files look alike and are told apart by folder
    # (data/mmrb2/t2i/ and data/mmrb2/imgedit/ in the authors' scripts). A GenAI-Bench file sits next to them.
    bundle = tmp_path / "bundle"
    t2i = [("L", "D", "A"), ("D", "L", "A")]
    edit = [("L", "D", "B"), ("D", "L", "B"), ("L", "D", "A")]
    write_parquet(bundle / "mmrb2" / "t2i" / "test-00000-of-00001.parquet", columns(t2i, "t", flattened=True),
                  image_lists=IMAGE_LISTS)
    write_parquet(bundle / "mmrb2" / "imgedit" / "test-00000-of-00001.parquet",
                  columns(edit, "e", edit=True, flattened=True), image_lists=IMAGE_LISTS)
    write_parquet(bundle / "genaibench_t2i.parquet",
                  {"prompt": ["p"], "left_image": [cell("L", 0)], "right_image": [cell("D", 0)],
                   "vote_type": ["leftvote"]}, images=("left_image", "right_image"))
    t2i_run = run(env, tmp_path, "mmrb2-t2i", bundle, "luma-verdict")
    # t0 A right in both orders; t1 (A dim) wrong in both -> 2/4
    check(t2i_run["luma-verdict"], (2, 4), (2, 4), n_total=2)
    assert set(t2i_run["luma-verdict"].samples()) == {"t0", "t1"}
    edit_run = run(env, tmp_path, "mmrb2-edit", bundle, "luma-verdict")
    # e0 wrong twice; e1 right twice; e2 right twice -> 4/6
    check(edit_run["luma-verdict"], (4, 6), (4, 6), n_total=3)
    assert len(edit_run["luma-verdict"].samples()["e0"]["source"]) == 1


def test_labels_and_task_facts(tmp_path: Path) -> None:
    from rrbench.tasks import mmrb2

    assert mmrb2.label("A").winner == 0 and mmrb2.label(" b ").winner == 1
    assert mmrb2.label(" b ").original == " b "
    for odd in ("", None, "tie", "C", "A>B"):
        assert mmrb2.label(odd).kind is LabelKind.UNKNOWN

    t2i = registry.get("task", "mmrb2-t2i").build()
    edit = registry.get("task", "mmrb2-edit").build()
    assert (t2i.size, t2i.protocol.id, t2i.protocol.order, edit.generation) == (1000, "mmrb2-both-orders", "both",
                                                                                "edit")
    assert t2i.alternatives["rationalrewards-paper"].order == "fixed"
    assert t2i.info.license == "cc-by-nc-4.0"
    with pytest.raises(UserError, match="under a folder named"):
        t2i.size_of(tmp_path)  # nothing there
