"""The embedded `sanity` benchmark: deterministic, prefix-stable, balanced, lazy, and its images are what they claim."""

from __future__ import annotations

import collections
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from rrbench.registry import get
from rrbench.tasks import sanity as sanity_module
from rrbench.tasks.sanity import EDIT_INSTRUCTIONS, PHOTOS, T2I_CATEGORIES, sanity
from rrbench.types import LabelKind, Media, Sample, TaskKind, UserError


def _samples(**kwargs: object) -> list[Sample]:
    return list(sanity(**kwargs).load(None))


def _pixels(media: Media) -> np.ndarray:
    return np.asarray(media.image(), dtype=np.float64)


def _fingerprint(sample: Sample) -> tuple[object, ...]:
    keys = tuple(m.key for m in (*sample.source, *sample.candidates))
    return sample.id, sample.prompt, keys, sample.label, tuple(sorted(sample.meta.items()))


def test_task_metadata_and_registration() -> None:
    task = get("task", "sanity").build(n=12)
    assert (task.name, task.version, task.kind, task.size, task.generation) == ("sanity", "1", TaskKind.PAIR, 12, "t2i")
    assert task.protocol.id == "sanity-exact" and task.protocol.tie_policy == "exact"
    assert task.info.size == 12 and "scikit-image" in (task.info.dataset or "")
    assert sanity().size == 192 and sanity(variant="edit").size == 120


def test_every_photo_is_bundled_in_the_wheel_and_captioned() -> None:
    data = resources.files("skimage").joinpath("data")
    for photo in PHOTOS:
        assert data.joinpath(photo.file).is_file(), photo.file  # never a file skimage would download
        assert photo.caption.endswith(".") and len(photo.caption.split()) >= 8
    assert len({p.name for p in PHOTOS}) == len(PHOTOS)


def test_same_arguments_give_the_same_samples_and_bytes() -> None:
    first, second = _samples(n=30, size=64), _samples(n=30, size=64)
    assert [_fingerprint(s) for s in first] == [_fingerprint(s) for s in second]
    for a, b in zip(first[:12], second[:12], strict=True):
        assert [m.read_bytes() for m in a.candidates] == [m.read_bytes() for m in b.candidates]
    assert len({s.id for s in _samples(n=3000)}) == 3000  # ids stay unique far past the base combinations


@pytest.mark.parametrize("variant", ["t2i", "edit"])
def test_samples_do_not_depend_on_n(variant: str) -> None:
    short, long = _samples(variant=variant, n=100), _samples(variant=variant, n=500)
    assert [_fingerprint(s) for s in short] == [_fingerprint(s) for s in long[:100]]


@pytest.mark.parametrize("variant", ["t2i", "edit"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_correct_position_is_balanced_in_every_prefix(variant: str, seed: int) -> None:
    samples = _samples(variant=variant, n=600, seed=seed)
    assert all(s.label.kind is LabelKind.WINNER and s.label.winner in (0, 1) for s in samples)
    assert all(s.label.original == "AB"[s.label.winner or 0] for s in samples)
    first = np.cumsum([s.label.winner == 0 for s in samples])
    sizes = np.arange(1, len(samples) + 1)
    assert np.all(np.abs(2 * first - sizes) <= 1)  # exactly half, +-1, for every n
    per_category: dict[str, list[int]] = collections.defaultdict(list)
    for s in samples:
        per_category[s.category or ""].append(s.label.winner or 0)
    for winners in per_category.values():
        counts = np.cumsum(np.array(winners) == 0)
        assert np.all(np.abs(2 * counts - np.arange(1, len(winners) + 1)) <= 1)


def test_seed_moves_positions_only() -> None:
    a, b = _samples(n=60, seed=0), _samples(n=60, seed=1)
    assert [s.id for s in a] == [s.id for s in b]
    assert [s.label.winner for s in a] != [s.label.winner for s in b]
    for x, y in zip(a, b, strict=True):  # the same two images, possibly swapped
        assert sorted(m.key for m in x.candidates) == sorted(m.key for m in y.candidates)
        assert x.candidates[x.label.winner or 0].key == y.candidates[y.label.winner or 0].key


def test_default_sets_balance_their_categories() -> None:
    t2i = collections.Counter(s.category for s in _samples())
    assert t2i == {c: 32 for c in T2I_CATEGORIES}
    edit = collections.Counter(s.category for s in _samples(variant="edit"))
    assert edit == {"edit:wrong": 60, "edit:missing": 60}


def test_creating_thousands_of_samples_renders_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: collections.Counter[str] = collections.Counter()
    real_render, real_load = sanity_module.render, sanity_module._load_photo

    def counting_render(recipe: sanity_module.Recipe) -> bytes:
        calls["render"] += 1
        return real_render(recipe)

    def counting_load(name: str) -> object:
        calls["load"] += 1
        return real_load(name)

    monkeypatch.setattr(sanity_module, "render", counting_render)
    monkeypatch.setattr(sanity_module, "_load_photo", counting_load)
    samples = _samples(n=2000, size=512)
    assert len(samples) == 2000
    assert calls == {}  # what makes creating samples cheap: nothing is rendered or loaded (no timing asserted)
    assert all(m.recipe and m.data is None for s in samples for m in s.candidates)
    samples[0].candidates[0].read_bytes()  # the counter does see a real render
    assert calls["render"] == 1


def test_creating_samples_takes_little_memory() -> None:
    tracemalloc.start()
    try:
        _samples(n=2000, size=512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30 * 2**20  # one 512x512 RGB image alone is 0.75 MiB: 2000 rendered pairs would be 3 GiB


def test_rendered_images_are_rgb_squares_of_the_asked_size() -> None:
    for s in _samples(n=6, size=96) + _samples(variant="edit", n=2, size=96):
        for media in (*s.source, *s.candidates):
            img = media.image()
            assert img.mode == "RGB" and img.size == (96, 96)
            assert media.mime == f"image/{media.format}"


def test_parallel_renders_give_the_same_bytes_as_serial_ones() -> None:
    media = [m for s in _samples(n=12, size=64) for m in s.candidates]
    serial = [m.read_bytes() for m in media]
    sanity_module._square.cache_clear()  # threads then share freshly cached squares
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda m: m.read_bytes(), media * 3)) == serial * 3


def test_jpeg_candidates_are_jpeg_bytes() -> None:
    (sample,) = [s for s in _samples(n=6, size=64) if s.category == "quality:jpeg"]
    formats = sorted(m.format or "" for m in sample.candidates)
    assert formats == ["jpeg", "png"]
    jpeg = next(m for m in sample.candidates if m.format == "jpeg")
    assert jpeg.read_bytes()[:3] == b"\xff\xd8\xff"


def test_degraded_copies_differ_from_the_original() -> None:
    for s in _samples(n=18, size=64):
        correct, other = s.candidates[s.label.winner or 0], s.candidates[1 - (s.label.winner or 0)]
        assert correct.key != other.key
        assert np.abs(_pixels(correct) - _pixels(other)).mean() > 2.0, s.id
        assert s.prompt == next(p.caption for p in PHOTOS if p.name == s.meta["photo"])
        if s.category == "faithfulness":
            assert s.meta["other"] != s.meta["photo"]
        else:
            assert correct.recipe is not None and "/original/" in correct.recipe


def test_edit_variant_has_a_source_an_instruction_and_the_right_candidate() -> None:
    task = sanity(variant="edit", n=24, size=128)  # at 64 px the scaled blur is under 1 px
    assert task.generation == "edit"
    for s in task.load(None):
        assert len(s.source) == 1 and len(s.candidates) == 2
        op = s.meta["edit"]
        assert s.prompt == EDIT_INSTRUCTIONS[op]
        src = _pixels(s.source[0])
        correct, other = s.candidates[s.label.winner or 0], s.candidates[1 - (s.label.winner or 0)]
        assert _edit_holds(op, src, _pixels(correct)), s.id
        assert not _edit_holds(op, src, _pixels(other)), s.id
        if s.category == "edit:missing":
            assert other.key == s.source[0].key
        else:
            assert other.key != s.source[0].key and s.meta["other"] != op


def _edit_holds(op: str, src: np.ndarray, out: np.ndarray) -> bool:
    """Does ``out`` look like ``src`` after ``op``? Checked from pixels, independently of the task's code."""
    if op == "grayscale":
        return bool(np.abs(out - out.mean(axis=2, keepdims=True)).max() < 1.0 and np.abs(src - out).mean() > 1.0)
    if op == "flip-h":
        return bool(np.array_equal(out, src[:, ::-1]))
    if op == "rotate-cw":
        return bool(np.array_equal(out, np.rot90(src, k=-1)))
    if op == "invert":
        return bool(np.array_equal(out, 255 - src))
    if op == "brighten":  # a monotone curve: no pixel darker, the whole image brighter
        return bool(np.all(out >= src - 1) and out.mean() > src.mean() + 10)
    if op == "add-blur":  # colours kept on average, fine detail gone
        same_colours = np.abs(out.mean(axis=(0, 1)) - src.mean(axis=(0, 1))).max() < 3
        return bool(same_colours and _detail(out) < 0.7 * _detail(src))
    raise AssertionError(op)


def _detail(pixels: np.ndarray) -> float:
    return float(np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "video"}, "variant must be one of t2i, edit"),
        ({"size": 0}, "size must be an integer"),
        ({"size": 100_000}, "size must be an integer"),
        ({"size": "big"}, "size must be an integer"),
        ({"size": True}, "size must be an integer"),
        ({"n": 0}, "n must be a positive integer"),
        ({"n": -3}, "n must be a positive integer"),
        ({"n": 2.5}, "n must be a positive integer"),
        ({"seed": "x"}, "seed must be an integer"),
    ],
)
def test_bad_arguments_are_one_line_user_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        sanity(**kwargs)
    assert "\n" not in str(info.value)


def test_data_is_refused_because_the_task_is_embedded(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sanity is embedded and takes no --data"):
        sanity(n=2).load(tmp_path)
