"""The offline baselines: random, constant, always-first and classical-iqa, judged on real rendered photos."""

from __future__ import annotations

import collections
import io

import numpy as np
import pytest
from PIL import Image

from rrbench.models._base import RewardModel
from rrbench.registry import get
from rrbench.tasks.sanity import sanity
from rrbench.types import FailureKind, Media, Query, UserError, Verdict


def _build(name: str, **kwargs: object) -> RewardModel:
    model = get("model", name).build(**kwargs)
    assert isinstance(model, RewardModel) and model.name == name
    return model


def _query(media: Media, prompt: str = "a photo") -> Query:
    return Query(prompt, (media,))


def _png(pixels: np.ndarray) -> Media:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buf, "PNG")
    return Media.from_bytes(buf.getvalue())


def _queries(n: int) -> list[Query]:
    rng = np.random.default_rng(0)
    return [_query(_png(rng.integers(0, 256, (32, 32, 3))), f"prompt {i}") for i in range(n)]


def test_random_is_uniform_deterministic_and_seeded() -> None:
    queries = _queries(200)
    first = [float(j.scores[0] or 0.0) for j in _build("random").score(queries)]
    again = [float(j.scores[0] or 0.0) for j in _build("random", seed=0).score(queries)]
    other = [float(j.scores[0] or 0.0) for j in _build("random", seed=1).score(queries)]
    assert first == again and first != other
    assert all(0.0 <= s < 1.0 for s in first + other)
    assert len(set(first)) == len(first) and 0.35 < float(np.mean(first)) < 0.65
    assert _build("random", seed=0).fingerprint() != _build("random", seed=1).fingerprint()
    assert not _build("random").cacheable


def test_constant_makes_every_pair_a_tie() -> None:
    model = _build("constant", value=0.25)
    judgements = model.score(_queries(10))
    assert {j.scores for j in judgements} == {(0.25,)}
    assert not model.cacheable and model.config == {"value": 0.25}
    with pytest.raises(UserError, match="value must be a finite number"):
        _build("constant", value="high")


def test_always_first_is_a_pairwise_judge_that_picks_a() -> None:
    model = _build("always-first")
    assert model.pairwise and model.can_compare and not model.can_score
    a, b = (_png(np.full((8, 8, 3), v)) for v in (0, 255))
    judgements = model.compare([Query("x", (a, b)), Query("x", (b, a))])
    assert all(j.verdict is Verdict.A and j.scores == (1.0, 0.0) for j in judgements)


@pytest.fixture(scope="module")
def iqa_accuracy() -> dict[str, float]:
    """classical-iqa on the default sanity t2i set, scoring each candidate alone (at 128 px to stay fast)."""
    model = _build("classical-iqa")
    hits: dict[str, list[bool]] = collections.defaultdict(list)
    for sample in sanity(size=128).load(None):
        judgements = model.score([_query(m, sample.prompt) for m in sample.candidates])
        scores = [j.scores[0] for j in judgements]
        assert all(isinstance(s, float) for s in scores), sample.id
        winner = sample.label.winner or 0
        hits[sample.category or ""].append(scores[winner] > scores[1 - winner])  # type: ignore[operator]
    return {category: float(np.mean(h)) for category, h in hits.items()}


def test_classical_iqa_prefers_clean_photos(iqa_accuracy: dict[str, float]) -> None:
    quality = [v for k, v in iqa_accuracy.items() if k.startswith("quality:")]
    assert len(quality) == 5 and float(np.mean(quality)) > 0.85, iqa_accuracy
    assert min(quality) > 0.7, iqa_accuracy


def test_classical_iqa_is_near_chance_on_faithfulness(iqa_accuracy: dict[str, float]) -> None:
    assert 0.2 <= iqa_accuracy["faithfulness"] <= 0.8  # it never reads the prompt


def test_classical_iqa_records_aspects_and_ignores_the_prompt() -> None:
    model = _build("classical-iqa", size=64)
    media = next(iter(sanity(n=1, size=96).load(None))).candidates[0]
    one, two = model.score([_query(media, "a cat"), _query(media, "a dog")])
    assert one.scores == two.scores and one.ok
    assert set(one.aspects[0]) == {"sharpness", "noise", "contrast", "blockiness", "colour_cast", "colourfulness"}


def test_classical_iqa_sees_the_jpeg_block_grid() -> None:
    rng = np.random.default_rng(1)
    smooth = np.clip(np.cumsum(rng.normal(0, 3, (128, 128, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, "JPEG", quality=5)
    clean, blocky = _build("classical-iqa").score([_query(_png(smooth)), _query(Media.from_bytes(buf.getvalue()))])
    assert blocky.aspects[0]["blockiness"] > 1.3 > clean.aspects[0]["blockiness"]  # type: ignore[operator]


def test_classical_iqa_fails_a_corrupt_image_alone() -> None:
    good = _queries(1)[0]
    corrupt = _query(Media.from_bytes(b"\x89PNG\r\n\x1a\n not really a png"))
    tiny = _query(_png(np.zeros((4, 4, 3))))
    judgements = _build("classical-iqa").score([corrupt, good, tiny])
    assert [j.failure for j in judgements] == [FailureKind.DATA, None, FailureKind.DATA]
    assert "corrupt image" in (judgements[0].failure_detail or "") and not judgements[0].scores
    assert "too small" in (judgements[2].failure_detail or "")


@pytest.mark.parametrize(("name", "kwargs"), [("classical-iqa", {"size": 8}), ("random", {"seed": "a"})])
def test_bad_model_arguments_are_user_errors(name: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(UserError):
        _build(name, **kwargs)
