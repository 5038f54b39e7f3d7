"""hpdv2 and hpdv3 end to end on small copies in their public layouts (test.json + image files), scored by hand.

hpdv2 uses the ``brightness`` test model: a photograph darkened by a factor scores lower, and the same file twice is
an exact model tie. hpdv3 uses ``hidden-score`` (the score written in each PNG's comment) and ``always-first``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from skimage import data as skdata

from rrbench import hubdata
from rrbench.tasks.hpd import HPDV2, hpdv2, hpdv3
from rrbench.types import LabelKind, UserError
from tests.conftest import rrbench

PLUGIN = Path(__file__).parent / "plugins" / "hpd_pickapic_models.py"
TESTMODELS = Path(__file__).parent / "plugins" / "testmodels.py"


def _coverage(row: dict[str, Any]) -> tuple[int, int, int, int]:
    return row["n_total"], row["n_scored"], row["n_failed"], row["n_label_skipped"]


def _photo(factor: float = 1.0, name: str = "astronaut") -> Image.Image:
    pixels = np.asarray(Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((48, 48)), dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(pixels * factor), 0, 255).astype(np.uint8), "RGB")


def _png(img: Image.Image, comment: str | None = None) -> bytes:
    info = PngInfo()
    if comment is not None:
        info.add_text("comment", comment)
    out = io.BytesIO()
    img.save(out, "PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{TESTMODELS},{PLUGIN}"}


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = tmp_path / "runs"
    done = rrbench("run", *args, "--quiet", "--output", str(out), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    return dict(json.loads((run_dir / "run.json").read_text()))


# --------------------------------------------------------------------------------------------------- HPDv2

# (rank, image brightness factors; "same" repeats the previous file, "corrupt" is not an image)
# Official inversion (hpsv2/evaluation.py lines 100-105, src/training/train.py lines 358-368): the model's scores
# become positions by argsort(-scores), a stable sort (equal scores keep the earlier image first); a pair is
# discordant when positions and human ranks are strictly opposite; 1 - discordant / all pairs; the mean over every
# prompt (score / total):
#   A ranks 1,2,3,4, brightness 1 > .8 > .6 > .4: every pair concordant                         -> 1
#   B ranks 1,3,2, brightness .4, 1, 1: positions 2, 0, 1; (0,1), (0,2) discordant, and (1,2) too: humans put
#     image 2 first, the tie puts image 1 first                                                 -> 0
#   C ranks 1,1,2 (human tie between 0 and 1: in the denominator, never discordant), brightness .4, .8, .6:
#     (0,2) discordant (.4 < .6), (1,2) concordant; 3 pairs in all                              -> 1 - 1/3 = 2/3
#   D ranks 1,1: no human-ordered pair, nothing discordant, and it counts                       -> 1
#   E rank ["a", 2]: an unknown label                                                          -> label-skipped
#   F ranks 1,2 with a corrupt image                                                           -> data failure
# official: (1 + 0 + 2/3 + 1) / 4 = 2/3; failures counted wrong: (8/3) / 5 = 8/15
# inversion-ties (the alternative: a model tie is never discordant, D skipped): A 1, B 1 - 2/3 = 1/3, C 2/3
#   -> (1 + 1/3 + 2/3) / 3 = 2/3; failures counted wrong: 2 / 4 = 1/2
HPDV2_ROWS: list[tuple[Any, list[Any]]] = [
    ([1, 2, 3, 4], [1.0, 0.8, 0.6, 0.4]),
    ([1, 3, 2], [0.4, 1.0, "same"]),
    ([1, 1, 2], [0.4, 0.8, 0.6]),
    ([1, 1], [0.5, 0.7]),
    (["a", 2], [0.5, 0.7]),
    ([1, 2], [0.9, "corrupt"]),
]


def _hpdv2_files(images: Path) -> list[dict[str, Any]]:
    rows = []
    for i, (rank, factors) in enumerate(HPDV2_ROWS):
        paths: list[str] = []
        for j, factor in enumerate(factors):
            rel = f"{i:05d}/{j}.png"
            (images / rel).parent.mkdir(parents=True, exist_ok=True)
            if factor == "same":
                (images / rel).write_bytes((images / paths[-1]).read_bytes())
            elif factor == "corrupt":
                (images / rel).write_bytes(b"\x89PNG not really")
            else:
                (images / rel).write_bytes(_png(_photo(factor)))
            paths.append(rel)
        rows.append({"prompt": f"prompt {i}", "image_path": paths, "rank": rank,
                     "raw_annotations": [{"rank": rank, "user_hash": "u1"}]})
    return rows


@pytest.fixture(scope="module")
def hpdv2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hpdv2")
    (folder / "test.json").write_text(json.dumps(_hpdv2_files(folder)))
    return folder


def test_hpdv2_inversion_by_hand(tmp_path: Path, env: dict[str, str], hpdv2_dir: Path) -> None:
    record = _run(tmp_path, env, "--task", "hpdv2", "--model", "brightness", "--data", str(hpdv2_dir))
    excluded, wrong = record["metrics"]["overall"]
    assert (excluded["metric"], excluded["protocol"], excluded["tie_policy"]) == ("inversion", "hpdv2-inversion", None)
    assert excluded["value"] == pytest.approx(2 / 3) and wrong["value"] == pytest.approx(8 / 15)
    assert _coverage(excluded) == (6, 4, 1, 1)
    assert excluded["failed_by_kind"] == {"data": 1}
    assert record["protocol"]["mode"] == "pointwise" and record["task"]["info"]["revision"] == HPDV2.revision
    (tmp_path / "ties").mkdir()
    ties = _run(tmp_path / "ties", env, "--task", "hpdv2", "--model", "brightness", "--data", str(hpdv2_dir),
                "--protocol", "hpdv2-inversion-ties")
    excluded, wrong = ties["metrics"]["overall"]
    assert excluded["metric"] == "inversion-ties" and excluded["protocol"] == "hpdv2-inversion-ties"
    assert excluded["value"] == pytest.approx(2 / 3) and wrong["value"] == pytest.approx(1 / 2)
    assert _coverage(excluded) == (6, 3, 1, 2)


def test_hpdv2_labels_keep_the_rank_list(hpdv2_dir: Path) -> None:
    samples = list(hpdv2().load(hpdv2_dir / "test.json"))  # the file itself works as --data too
    assert [s.id for s in samples] == [f"hpdv2-{i:04d}" for i in range(6)]
    assert samples[2].label.kind is LabelKind.RANKING and samples[2].label.ranks == (1, 1, 2)
    assert samples[2].label.original == "[1, 1, 2]"
    assert samples[4].label.kind is LabelKind.UNKNOWN and samples[4].label.original == '["a", 2]'
    assert hpdv2().size_of(hpdv2_dir) == 6


def test_hpdv2_from_the_hub_unpacks_the_test_tarball_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          hpdv2_dir: Path) -> None:
    # A stand-in for the hub snapshot: test.json and test.tar.gz whose files sit under test/ (the other layout).
    snapshot = tmp_path / "snapshots" / "bb0f2563e451e11c3f376b2ba93615db00e042e1"
    snapshot.mkdir(parents=True)
    (snapshot / "test.json").write_text((hpdv2_dir / "test.json").read_text())
    with tarfile.open(snapshot / "test.tar.gz", "w:gz") as archive:
        for path in sorted(hpdv2_dir.glob("0000*/*.png")):
            archive.add(path, arcname=f"test/{path.relative_to(hpdv2_dir)}")
    asked: list[tuple[str, ...]] = []

    def fake_snapshot(source: hubdata.Source) -> Path:
        asked.append(source.files)
        return snapshot

    monkeypatch.setattr(hubdata, "_snapshot", fake_snapshot)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    samples = list(hpdv2().load(None))
    assert asked[0] == ("test.json", "test.tar.gz")  # the images come with the first fetch
    unpacked = tmp_path / "cache" / "rrbench" / "datasets" / f"hpdv2-{snapshot.name}" / "test"
    assert samples[0].candidates[0].path == str(unpacked / "00000" / "0.png")
    assert samples[0].candidates[0].read_bytes() == (hpdv2_dir / "00000" / "0.png").read_bytes()
    (snapshot / "test.tar.gz").unlink()  # unpacked once: a second load does not need the tarball
    assert len(list(hpdv2().load(None))) == 6


def test_hpdv2_without_images_says_how_to_fetch_them(tmp_path: Path, hpdv2_dir: Path) -> None:
    (tmp_path / "test.json").write_text((hpdv2_dir / "test.json").read_text())
    with pytest.raises(UserError, match=r"ymhao/HPDv2: image 00000/0.png not found .* tar -xzf"):
        hpdv2().load(tmp_path)


# --------------------------------------------------------------------------------------------------- HPDv3

# (score of path1 = preferred, score of path2); the loader shows path1 second in odd rows.
#   r0 .9 vs .1 right | r1 .2 vs .8 wrong | r2 .5 vs .5 a model tie: wrong | r3 .7 vs .3 right
#   r4 path2 cannot be scored: failure | r5 path2 missing from the row: unknown label, label-skipped
# official and paper: 2 right of 4 judged = 1/2; failure counted wrong: 2/5
HPDV3_ROWS: list[tuple[str, str | None]] = [
    ("score=0.9", "score=0.1"), ("score=0.2", "score=0.8"), ("score=0.5", "score=0.5"), ("score=0.7", "score=0.3"),
    ("score=0.6", "fail"), ("score=0.4", None),
]


@pytest.fixture(scope="module")
def hpdv3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hpdv3")
    (folder / "images").mkdir()
    rows = []
    for i, (preferred, other) in enumerate(HPDV3_ROWS):
        (folder / "images" / f"p{i}.png").write_bytes(_png(_photo(1.0, "astronaut"), preferred))
        path2 = None
        if other is not None:
            path2 = f"images/o{i}.png"
            (folder / path2).write_bytes(_png(_photo(1.0, "coffee"), other))
        rows.append({"prompt": f"prompt {i}", "path1": f"images/p{i}.png", "path2": path2,
                     "model1": "flux", "model2": "infinity"})
    (folder / "test.json").write_text(json.dumps(rows))
    return folder


def test_hpdv3_needs_a_local_copy_and_says_how_to_make_one() -> None:
    with pytest.raises(UserError, match=r"hf download MizzenAI/HPDv3 .*images\.tar\.gz"):
        hpdv3().load(None)
    assert hpdv3().size_of(None) is None  # nothing is fetched to count


def test_hpdv3_positions_alternate_and_labels_follow(hpdv3_dir: Path) -> None:
    samples = list(hpdv3().load(hpdv3_dir))
    assert [s.label.winner for s in samples[:5]] == [0, 1, 0, 1, 0]
    assert all(s.label.original == "path1" for s in samples[:5])
    assert samples[1].candidates[1].path == str(hpdv3_dir / "images" / "p1.png")  # the preferred image, shown second
    assert samples[5].label.kind is LabelKind.UNKNOWN and samples[5].candidates == ()


@pytest.mark.parametrize("protocol", [None, "rationalrewards-paper"])
def test_hpdv3_accuracy_by_hand(tmp_path: Path, env: dict[str, str], hpdv3_dir: Path, protocol: str | None) -> None:
    extra = ("--protocol", protocol) if protocol else ()
    record = _run(tmp_path, env, "--task", "hpdv3", "--model", "hidden-score", "--data", str(hpdv3_dir), *extra)
    excluded, wrong = record["metrics"]["overall"]
    assert excluded["protocol"] == (protocol or "hpdv3-accuracy") and excluded["tie_policy"] == "exact"
    assert excluded["value"] == pytest.approx(1 / 2) and wrong["value"] == pytest.approx(2 / 5)
    assert _coverage(excluded) == (6, 4, 1, 1)


@pytest.mark.parametrize(("order", "expected", "units"), [
    # always-first is right exactly where the preferred image is shown first:
    # fixed: rows 0, 2, 4 of the 5 judged -> 3/5; swapped: rows 1, 3 -> 2/5; both: 5 of 10 trials
    ("fixed", 3 / 5, 5), ("swapped", 2 / 5, 5), ("both", 5 / 10, 10),
])
def test_hpdv3_balanced_positions_defeat_a_position_bias(tmp_path: Path, env: dict[str, str], hpdv3_dir: Path,
                                                         order: str, expected: float, units: int) -> None:
    record = _run(tmp_path, env, "--task", "hpdv3", "--model", "always-first", "--data", str(hpdv3_dir),
                  "--order", order)
    excluded, _ = record["metrics"]["overall"]
    assert excluded["value"] == pytest.approx(expected) and excluded["n_units"] == units
