"""The embedded generation benchmark `sanity-gen`, the `painter` generator and the `sanity-gen-judge`, end to end
through the registry, plus the generation metrics on what they produce.

The expected numbers follow from the painter's documented error rule (docs/tasks/sanity-gen.md): image i of a prompt
violates testpoint j when (i + j) mod 4 < 4 * error_rate. They are written out here by hand, never computed by the
code under test.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rrbench import registry
from rrbench.display import metrics_table
from rrbench.generators._base import Generated, ImageRequest, image_seed
from rrbench.metrics import MetricResult, compute_metrics
from rrbench.models._base import RewardModel
from rrbench.scene_look import look
from rrbench.types import (
    FailureKind,
    Judgement,
    Label,
    LabelKind,
    Media,
    Prediction,
    Query,
    Sample,
    SampleResult,
    Task,
    TaskKind,
    Trial,
    UserError,
)

SIZE = 96  # small images keep the file fast; the grammar is checked at 64..512 in docs/tasks/sanity-gen.md
T2I_DIMENSIONS = {"shape", "colour", "count", "position", "text"}
EDIT_DIMENSIONS = {"colour", "count", "position", "text", "consistency"}


def _task(variant: str = "t2i", **args: Any) -> Task:
    if variant == "edit":
        args.setdefault("size", SIZE)
    task = registry.get("task", "sanity-gen").build(variant=variant, **args)
    assert isinstance(task, Task)
    return task


def _samples(variant: str = "t2i", **args: Any) -> list[Sample]:
    return list(_task(variant, **args).load(None))


def _painter(**args: Any) -> Any:
    return registry.get("generator", "painter").build(size=SIZE, **args)


def _judge() -> RewardModel:
    model = registry.get("model", "sanity-gen-judge").build()
    assert isinstance(model, RewardModel)
    return model


def _requests(sample: Sample, k: int, run_seed: int = 0) -> list[ImageRequest]:
    return [ImageRequest(sample.id, i, image_seed(run_seed, sample.id, i), sample.prompt, sample.source)
            for i in range(k)]


def _query(sample: Sample, png: bytes, prompt: str | None = None) -> Query:
    return Query(sample.prompt if prompt is None else prompt, (Media.from_bytes(png),), sample.source,
                 "edit" if sample.source else "t2i", sample.id, variables=(("testpoints", sample.meta["testpoints"]),))


def _record(sample: Sample, made: Sequence[Generated], judge: RewardModel) -> SampleResult:
    """One judged generation sample as the runner writes it: one trial per image, trial i showing image i."""
    trials = []
    for i, image in enumerate(made):
        if image.png is None:
            trials.append(Trial((i,), (), None, image.failure))
            continue
        judgement = judge.score([_query(sample, image.png)])[0]
        prediction = Prediction(judgement.scores) if judgement.ok else None
        trials.append(Trial((i,), (judgement,), prediction, judgement.failure))
    candidates = tuple({"key": f"image-{i}", "index": i} for i in range(len(made)))
    return SampleResult(sample.id, Label.none(), tuple(trials), meta=sample.meta, prompt=sample.prompt,
                        candidates=candidates, source=tuple(m.to_json() for m in sample.source))


def _run(variant: str, n: int, error_rate: float, k: int = 4) -> list[SampleResult]:
    painter, judge = _painter(error_rate=error_rate), _judge()
    return [_record(s, painter.generate(_requests(s, k)), judge) for s in _samples(variant, n=n)]


def _metrics(results: Sequence[SampleResult], variant: str = "t2i") -> dict[str, dict[str, Any]]:
    """The failures-excluded row of each metric of the task's own protocol."""
    out = compute_metrics(results, _task(variant).protocol, n_boot=200)
    return {row["metric"]: row for row in out["overall"] if row["failure_policy"] == "excluded"}


def _aspects(judgement: Judgement) -> list[float | None]:
    return list(judgement.aspects[0].values())


# --------------------------------------------------------------------------------------------------- the task


def test_task_shape_and_registration() -> None:
    t2i, edit = _task("t2i", n=8, images_per_prompt=3), _task("edit", n=5)
    assert (t2i.name, t2i.kind, t2i.generation, t2i.images_per_prompt, t2i.size) == (
        "sanity-gen", TaskKind.GENERATION_T2I, "t2i", 3, 8)
    assert (edit.kind, edit.generation, edit.images_per_prompt) == (TaskKind.GENERATION_EDIT, "edit", 4)
    assert t2i.generative and edit.generative and t2i.prompt_vars == ("testpoints",)
    assert t2i.protocol.id == "sanity-gen-testpoints" and t2i.protocol.mode == "pointwise"
    assert t2i.protocol.metrics == ("testpoint-accuracy", "mean-score")
    assert _task("t2i").size == 48 and _task("edit").size == 50
    for variant, dimensions in (("t2i", T2I_DIMENSIONS), ("edit", EDIT_DIMENSIONS)):
        samples = _samples(variant, n=20)
        seen = set()
        for sample in samples:
            assert sample.candidates == () and sample.label.kind is LabelKind.NONE
            assert len(sample.source) == (variant == "edit")
            points = json.loads(sample.meta["testpoints"])
            assert points and all(set(p) == {"dimension", "check"} for p in points)
            seen |= {p["dimension"] for p in points}
        assert seen == dimensions
        assert len({s.category for s in samples}) == (4 if variant == "t2i" else 5)


@pytest.mark.parametrize("variant", ["t2i", "edit"])
def test_the_sequence_is_deterministic_and_n_only_cuts_it(variant: str) -> None:
    def fingerprint(sample: Sample) -> tuple[object, ...]:
        return sample.id, sample.prompt, tuple(m.key for m in sample.source), tuple(sorted(sample.meta.items()))

    short, long = _samples(variant, n=25), _samples(variant, n=60)
    assert [fingerprint(s) for s in short] == [fingerprint(s) for s in long[:25]]
    again = _samples(variant, n=25)
    assert [fingerprint(s) for s in again] == [fingerprint(s) for s in short]
    if variant == "edit":
        assert [s.source[0].read_bytes() for s in short[:5]] == [s.source[0].read_bytes() for s in again[:5]]
    assert len({s.id for s in _samples(variant, n=1500)}) == 1500


def test_bad_arguments_are_one_line_user_errors() -> None:
    for args in ({"variant": "video"}, {"n": 0}, {"size": 128}, {"images_per_prompt": 0},
                 {"variant": "edit", "size": 8}):
        with pytest.raises(UserError):
            registry.get("task", "sanity-gen").build(**args)
    with pytest.raises(UserError, match="takes no --data"):
        _task("t2i", n=1).load(Path("."))
    for args in ({"error_rate": 0.3}, {"error_rate": 1.5}, {"period": 0}, {"size": 8}):
        with pytest.raises(UserError):
            registry.get("generator", "painter").build(**args)
    assert registry.get("generator", "painter").build(error_rate=0.3, period=10).settings()["period"] == 10


# --------------------------------------------------------------------------------------------------- the painter


def test_painter_bytes_follow_the_seed_and_the_seed_never_breaks_a_testpoint() -> None:
    painter, judge = _painter(), _judge()
    assert set(painter.kinds) == {"t2i", "edit"}
    samples = _samples("t2i", n=8) + _samples("edit", n=5)
    for sample in samples:
        first, again = painter.generate(_requests(sample, 2)), painter.generate(_requests(sample, 2))
        other = painter.generate(_requests(sample, 2, run_seed=1))
        assert [g.png for g in first] == [g.png for g in again]
        if sample.category != "remove":  # erasing an object leaves the painter no freedom
            assert first[0].png != first[1].png and first[0].png != other[0].png, sample.prompt
        for image in (*first, *other):
            assert image.png is not None and Image.open(io.BytesIO(image.png)).format == "PNG"
            judgement = judge.score([_query(sample, image.png)])[0]
            assert judgement.ok and judgement.scores == (1.0,), (sample.prompt, judgement.rationale)


def test_painter_fails_what_it_cannot_paint() -> None:
    painter = _painter()
    source = _samples("edit", n=1)[0].source
    asks = [ImageRequest("a", 0, 1, "A cat sitting on a mat."),
            ImageRequest("b", 0, 1, "Remove the square."),  # an edit without a source image
            ImageRequest("c", 0, 1, "A red circle in the top left.", source)]  # t2i with one
    made = painter.generate(asks)
    assert [m.failure for m in made] == [FailureKind.ERROR] * 3 and all(m.png is None for m in made)
    assert "cannot parse" in (made[0].detail or "")


# --------------------------------------------------------------------------------------------------- expected numbers


@pytest.mark.parametrize("variant", ["t2i", "edit"])
def test_no_errors_pass_every_testpoint_and_all_errors_none(variant: str) -> None:
    n = 8 if variant == "t2i" else 10  # two prompts of every category
    dimensions = T2I_DIMENSIONS if variant == "t2i" else EDIT_DIMENSIONS
    clean, broken = _metrics(_run(variant, n, 0.0), variant), _metrics(_run(variant, n, 1.0), variant)
    assert clean["testpoint-accuracy"]["value"] == 1.0 and broken["testpoint-accuracy"]["value"] == 0.0
    assert clean["testpoint-accuracy"]["extra"] == dict.fromkeys(sorted(dimensions), 1.0)
    assert broken["testpoint-accuracy"]["extra"] == dict.fromkeys(sorted(dimensions), 0.0)
    assert clean["mean-score"]["value"] == 1.0 and broken["mean-score"]["value"] == 0.0
    assert clean["testpoint-accuracy"]["n_failed"] == 0 and clean["testpoint-accuracy"]["n_samples"] == n


def test_a_quarter_of_errors_gives_the_hand_derived_numbers() -> None:
    # error_rate 0.25, period 4: image i violates testpoint j when (i + j) mod 4 < 1, i.e. j = (4 - i) mod 4.
    # Three testpoints (object, count, relation prompts): image 0 misses j=0, image 1 none (j would be 3),
    # image 2 misses j=2, image 3 misses j=1. Four testpoints (text prompts): image 1 misses j=3.
    by_hand = {3: [[0, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 1]],
               4: [[0, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 1], [1, 0, 1, 1]]}
    results = _run("t2i", 8, 0.25)
    for result in results:
        answers = [_aspects(t.judgements[0]) for t in result.trials]
        assert answers == by_hand[len(answers[0])], result.prompt
    # Every testpoint is missed by exactly one image of four, so every dimension is 3/4, and so is the mean of
    # the dimensions; an image's score is its share of testpoints passed, and over the 4 images of a prompt
    # those shares average 1 - 1/4 as well (3 testpoints: (2/3 + 1 + 2/3 + 2/3) / 4 = 3/4).
    rows = _metrics(results)
    accuracy = rows["testpoint-accuracy"]
    assert accuracy["value"] == pytest.approx(0.75)
    assert accuracy["extra"] == pytest.approx(dict.fromkeys(sorted(T2I_DIMENSIONS), 0.75))
    assert accuracy["n_units"] == 4 * (3 * 6 + 4 * 2)  # 6 prompts of 3 testpoints, 2 of 4, four images each
    # Every prompt scores 3/4 in every dimension: the bootstrap has nothing to resample, so the interval is the
    # exact one on the 8 clusters (never zero width), and it holds the value.
    assert accuracy["ci_method"] == "cluster-exact" and accuracy["ci_low"] < 0.75 < accuracy["ci_high"]
    assert rows["mean-score"]["value"] == pytest.approx(0.75) and rows["mean-score"]["unit"] == "image"


def test_half_errors_on_edits_and_eight_images() -> None:
    # error_rate 0.5: each testpoint is missed when (i + j) mod 4 < 2, by 2 images of every 4, so 4 of 8.
    rows = _metrics(_run("edit", 5, 0.5, k=8), "edit")
    assert rows["testpoint-accuracy"]["extra"] == pytest.approx(dict.fromkeys(sorted(EDIT_DIMENSIONS), 0.5))
    assert rows["testpoint-accuracy"]["value"] == pytest.approx(0.5) and rows["mean-score"]["value"] == 0.5


# --------------------------------------------------------------------------------------------------- the judge


def _recoloured(png: bytes, old: tuple[int, int, int], new: tuple[int, int, int]) -> bytes:
    pixels = np.array(Image.open(io.BytesIO(png)).convert("RGB"))
    pixels[(pixels == old).all(axis=2)] = new
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _object_colour(png: bytes) -> tuple[int, int, int]:
    """The most common colour that is neither the background nor ink (the object's, in a one-object image)."""
    pixels = np.array(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    order = np.argsort(-counts)
    r, g, b = (int(v) for v in next(c for c in colours[order][1:] if c.max() >= 80))
    return r, g, b


def test_the_judge_looks_at_pixels() -> None:
    sample = next(s for s in _samples("t2i", n=8) if s.category == "object")
    # e.g. "A red circle in the top left.": shape, colour, position
    png = _painter().generate(_requests(sample, 1))[0].png
    assert png is not None
    judge = _judge()
    assert _aspects(judge.score([_query(sample, png)])[0]) == [1.0, 1.0, 1.0]
    # The prompt is never read: the same image under another prompt gets the same answers.
    assert _aspects(judge.score([_query(sample, png, prompt="anything at all")])[0]) == [1.0, 1.0, 1.0]
    recoloured = _recoloured(png, _object_colour(png), (128, 128, 128))  # grey is no palette colour
    judgement = judge.score([_query(sample, recoloured)])[0]
    assert _aspects(judgement) == [1.0, 0.0, 1.0] and judgement.scores == (pytest.approx(2 / 3),)
    assert len(str(judgement.rationale).splitlines()) == 3 and "no:" in str(judgement.rationale).splitlines()[1]
    mirrored = io.BytesIO()
    Image.open(io.BytesIO(png)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, "PNG")
    assert _aspects(judge.score([_query(sample, mirrored.getvalue())])[0]) == [1.0, 1.0, 0.0]


def test_the_judge_counts_and_reads() -> None:
    samples = _samples("t2i", n=8)
    judge, painter = _judge(), _painter()
    count = next(s for s in samples if s.category == "count")  # count, shape, colour
    png = painter.generate(_requests(count, 1))[0].png
    assert png is not None
    image = Image.open(io.BytesIO(png)).convert("RGB")
    view, pixels = look(image), np.array(image)
    pixels[view.blobs[-1].mask] = view.background  # one object fewer: only the count is wrong
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    assert _aspects(judge.score([_query(count, png)])[0]) == [1.0, 1.0, 1.0]
    assert _aspects(judge.score([_query(count, buffer.getvalue())])[0]) == [0.0, 1.0, 1.0]
    text = next(s for s in samples if s.category == "text")  # text, shape, colour, position
    png = painter.generate(_requests(text, 1))[0].png
    assert png is not None
    other = Sample(text.id, text.prompt, (), Label.none(), meta={"testpoints": json.dumps(
        [{"dimension": "text", "check": 'the text reads "ZZZ"'}])})
    assert _aspects(judge.score([_query(other, png)])[0]) == [0.0]


def test_the_judge_compares_an_edit_with_its_source() -> None:
    recolour = next(s for s in _samples("edit", n=5) if s.category == "recolour")
    # e.g. "Make the circle green.": the circle is green, the square is unchanged, the text is unchanged
    judge, source = _judge(), recolour.source[0].read_bytes()
    edited = _painter().generate(_requests(recolour, 1))[0].png
    assert edited is not None
    assert _aspects(judge.score([_query(recolour, edited)])[0]) == [1.0, 1.0, 1.0]
    # The source itself, as if the editor did nothing: the edit is missing, everything else is unchanged.
    assert _aspects(judge.score([_query(recolour, source)])[0]) == [0.0, 1.0, 1.0]
    # The untouched object recoloured by hand: the consistency testpoint fails, the edit still holds.
    kept = json.loads(recolour.meta["testpoints"])[1]["check"].split()[1]  # "the square is unchanged" -> square
    blob = next(b for b in look(Image.open(io.BytesIO(edited))).blobs if b.shape == kept)
    spoiled = _recoloured(edited, blob.rgb, (128, 128, 128))
    assert _aspects(judge.score([_query(recolour, spoiled)])[0]) == [1.0, 0.0, 1.0]


def test_the_judge_fails_a_query_it_cannot_check() -> None:
    sample = _samples("t2i", n=1)[0]
    png = _painter().generate(_requests(sample, 1))[0].png
    assert png is not None
    no_points = Query(sample.prompt, (Media.from_bytes(png),))
    unknown = Query(sample.prompt, (Media.from_bytes(png),), variables=(("testpoints", json.dumps(
        [{"dimension": "style", "check": "the image looks like a watercolour"}])),))
    broken = Query(sample.prompt, (Media.from_bytes(b"not an image"),), variables=_query(sample, png).variables)
    for query in (no_points, unknown, broken):
        judgement = _judge().score([query])[0]
        assert judgement.failure is FailureKind.DATA and not judgement.scores


# --------------------------------------------------------------------------------------------------- metrics


def test_failed_images_and_the_score_scale_in_the_record() -> None:
    results = _run("t2i", 4, 0.0)
    # The image 3 of the first prompt failed to be made: it leaves the denominator, or counts every testpoint wrong.
    first = results[0]
    trials = (*first.trials[:3], Trial((3,), (), None, FailureKind.OOM))
    results[0] = SampleResult(first.sample_id, first.label, trials, meta=first.meta, prompt=first.prompt)
    out = compute_metrics(results, _task().protocol, n_boot=200)
    rows = {(r["metric"], r["failure_policy"]): r for r in out["overall"]}
    assert rows["testpoint-accuracy", "excluded"]["value"] == 1.0
    assert rows["testpoint-accuracy", "excluded"]["failed_by_kind"] == {"oom": 1}
    # Prompts 0-3 are object (shape, colour, position), count (count, shape, colour), relation (colour, colour,
    # position) and text (text, shape, colour, position): 13 testpoints x 4 images = 52 units.
    wrong = rows["testpoint-accuracy", "wrong"]
    assert wrong["n_units"] == 4 * (3 * 3 + 4) and wrong["unit"] == "testpoint"
    # The failed image is the object prompt's (shape, colour, position): each of those dimensions loses 1 unit of
    # the units it has: shape 3 per image x 4 = 12 -> 11/12; colour (1 + 1 + 2 + 1) x 4 = 20 -> 19/20; position
    # 12 -> 11/12; count 4/4 and text 4/4 stay 1.
    assert wrong["extra"] == pytest.approx({"colour": 19 / 20, "count": 1.0, "position": 11 / 12, "shape": 11 / 12,
                                            "text": 1.0})
    assert wrong["value"] == pytest.approx((19 / 20 + 1 + 11 / 12 + 11 / 12 + 1) / 5)
    assert rows["mean-score", "wrong"]["value"] == pytest.approx(15 / 16) and rows["mean-score", "wrong"]["scale"]
    assert "scale" not in rows["testpoint-accuracy", "wrong"]  # a fraction: the record reads as before
    assert rows["mean-score", "excluded"]["scale"] == "score"
    assert MetricResult.from_json(rows["mean-score", "excluded"]).to_json() == rows["mean-score", "excluded"]
    assert MetricResult.from_json(rows["testpoint-accuracy", "wrong"]).scale == "fraction"
    shown = metrics_table(out["overall"])
    assert "0.9375" in shown and "93.75" not in shown  # a score is never shown x100
