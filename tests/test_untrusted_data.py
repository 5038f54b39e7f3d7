"""Untrusted data (issue 13): a dataset never makes rrbench read outside its own folder, reads and decodes are
bounded, unusual image modes convert without saturating, and odd files in ``--data`` give one line, never a hang.

Real files throughout: scikit-image photographs, parquet written by ``datasets``, FIFOs, symlinks (loops too) and
/dev/zero. "Never opened" is checked with a Python audit hook (every ``open``/``os.open`` of the process is an audit
event), so a test fails if the file is as much as opened, not only if its bytes reach a model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from rrbench import cli, hubdata
from rrbench.store import load_results
from rrbench.types import (
    MAX_IMAGE_PIXELS,
    DataError,
    FailureKind,
    Media,
    UserError,
    image_limits,
    to_rgb,
)
from tests.conftest import PLUGINS, rrbench
from tests.test_task_genai_bench import T2I_IMAGES, photo, t2i_columns, write_parquet

GENAI_MODELS = str(Path(__file__).parent / "plugins" / "genai_mmrb2_models.py")
SHARD = "image_generation/test_v1-00000-of-00001.parquet"
TIMEOUT = 90  # seconds: a hang (a FIFO opened for reading, a link loop followed forever) fails the test

# --------------------------------------------------------------------------------------------------- helpers

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPENED is not None and args and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # inert unless a test is recording (audit hooks cannot be removed)


@contextlib.contextmanager
def opened() -> Iterator[list[str]]:
    """Every path this process opens inside the block (all threads: models decode in a worker thread)."""
    global _OPENED
    _OPENED = seen = []
    try:
        yield seen
    finally:
        _OPENED = None


def outside(paths: list[str], root: Path) -> list[str]:
    top = os.path.realpath(root)
    return [p for p in paths if not os.path.realpath(p).startswith(top + os.sep)]


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a read that blocks (a FIFO) is interrupted by SIGALRM."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def png(img: Image.Image, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", **params)
    return out.getvalue()


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The run failed as a user error should: exit 2, no traceback, and stderr is exactly one line."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rrbench: error: "), done.stderr
    return lines[0]


# --------------------------------------------------------------------------------------------------- a dataset's folder


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A dataset folder with one good image, and everything a hostile dataset could point at, in and out of it."""
    secret_dir = tmp_path / "outside"
    secret_dir.mkdir()
    secret = secret_dir / "secret.png"
    secret.write_bytes(photo("L", 1))  # a valid image: had it been read, a model would have judged it
    os.mkfifo(secret_dir / "fifo")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "good.png").write_bytes(photo("L", 0))
    (root / "sub" / "inner.png").write_bytes(photo("D", 2))
    (root / "link_out.png").symlink_to(secret)
    (root / "escape").symlink_to(secret_dir)  # a folder link that leaves the root
    (root / "link_dev.png").symlink_to("/dev/zero")
    (root / "link_in.png").symlink_to("good.png")  # a link that stays inside is fine
    os.mkfifo(root / "fifo.png")
    (root / "loop.png").symlink_to("loop.png")  # ln -s loop loop
    (root / "cycle_a.png").symlink_to("cycle_b.png")
    (root / "cycle_b.png").symlink_to("cycle_a.png")
    (root / "folder.png").mkdir()
    return {"root": root, "secret": secret, "secret_dir": secret_dir}


READABLE = ["good.png", "sub/inner.png", "sub/../good.png", "./sub//inner.png", "link_in.png"]
REFUSED = {
    "../outside/secret.png": "outside",
    "sub/../../outside/secret.png": "outside",
    "link_out.png": "outside",
    "escape/secret.png": "outside",
    "../outside/fifo": "outside",
    "link_dev.png": "outside",
    "/dev/zero": "outside",
    "fifo.png": "FIFO",
    "folder.png": "folder",
    "loop.png": "symbolic links",
    "cycle_a.png": "symbolic links",
    "missing.png": "No such file",
    "a\x00b.png": "NUL",
    "\ud800.png": "cannot be used",  # a lone surrogate from a JSON string: no file name can hold it
    "x" * 5000: "too long",
}


@pytest.mark.parametrize("cell_kind", ["struct", "string"])
@pytest.mark.parametrize("relative", READABLE)
def test_paths_inside_the_root_are_read(layout: dict[str, Path], relative: str, cell_kind: str) -> None:
    root = layout["root"]
    cell = {"bytes": None, "path": relative} if cell_kind == "struct" else relative
    with opened() as seen:
        media = hubdata.media(cell, root, "left_image")
        data = media.read_bytes()
    assert data == (root / relative).read_bytes()
    assert media.key.startswith("sha256:") and media.image().size == (48, 48)
    assert seen and not outside(seen, root)


@pytest.mark.parametrize("cell_kind", ["struct", "string"])
@pytest.mark.parametrize(("relative", "reason"), REFUSED.items(), ids=lambda v: ascii(v)[:40])
def test_paths_leaving_the_root_or_odd_files_are_data_failures_never_opened(
    layout: dict[str, Path], relative: str, reason: str, cell_kind: str
) -> None:
    root = layout["root"]
    cell = {"bytes": None, "path": relative} if cell_kind == "struct" else relative
    with opened() as seen, deadline(10):
        media = hubdata.media(cell, root, "left_image")
        key = media.key  # the request key needs no read, so building a request never fails
        record = json.dumps(media.to_json(), ensure_ascii=False).encode()  # the sample log is UTF-8
        with pytest.raises(DataError, match=reason):
            media.read_bytes()
        with pytest.raises(DataError, match=reason):
            media.image()
    assert seen == [], f"opened {seen}"
    assert key.startswith("recipe:unreadable/") and record.startswith(b'{"key": "recipe:unreadable/')


def test_an_absolute_path_to_a_file_outside_is_refused_and_one_inside_is_read(layout: dict[str, Path]) -> None:
    root = layout["root"]
    with opened() as seen:
        refused = hubdata.media({"bytes": None, "path": str(layout["secret"])}, root, "x")
        with pytest.raises(DataError, match="leads outside the dataset folder"):
            refused.read_bytes()
        # A dataset built on this machine may store absolute paths into its own folder: those stay readable.
        inside = hubdata.media(str(root / "good.png"), root, "x")
        assert inside.read_bytes() == (root / "good.png").read_bytes()
    assert not outside(seen, root)


def test_a_hub_snapshot_may_follow_its_links_into_the_blobs_of_its_own_repository(layout: dict[str, Path],
                                                                                   tmp_path: Path) -> None:
    # The hub cache stores snapshots as links into ../../blobs/: confining to the snapshot folder alone would refuse
    # every file of every hub dataset; the repository folder is the root instead.
    repo = tmp_path / "hub" / "datasets--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "0123abcd").write_bytes(photo("D", 3))
    snapshot = repo / "snapshots" / ("a" * 40)
    (snapshot / "images").mkdir(parents=True)
    (snapshot / "images" / "x.png").symlink_to("../../../blobs/0123abcd")
    assert hubdata.confinement(snapshot) == repo
    assert hubdata.media({"bytes": None, "path": "images/x.png"}, snapshot, "x").read_bytes() == photo("D", 3)
    leaving = hubdata.media("../../../../outside/secret.png", snapshot, "x")
    with pytest.raises(DataError, match="outside"):
        leaving.read_bytes()


def test_a_file_swapped_after_the_check_is_still_refused(layout: dict[str, Path]) -> None:
    root = layout["root"]
    swapped = root / "swap.png"
    swapped.write_bytes(photo("L", 2))
    as_link, as_fifo, removed = (hubdata.media(name, root, "x") for name in ("swap.png",) * 3)
    swapped.unlink()
    swapped.symlink_to(layout["secret"])
    with opened() as seen, deadline(10):
        with pytest.raises(DataError, match="outside"):
            as_link.read_bytes()
        swapped.unlink()
        os.mkfifo(swapped)
        with pytest.raises(DataError, match="FIFO"):
            as_fifo.read_bytes()
        swapped.unlink()
        assert removed.key.startswith("unreadable:")  # a request can still be built; its read fails the sample
        with pytest.raises(DataError, match="No such file"):
            removed.image()
    assert not outside(seen, root)


def test_reads_are_bounded_in_size(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root = layout["root"]
    monkeypatch.setenv("RRBENCH_MAX_IMAGE_BYTES", "1000")
    (root / "big.png").write_bytes(b"\x89PNG" + bytes(5000))
    (root / "grows.png").write_bytes(bytes(500))
    with opened() as seen:
        big = hubdata.media("big.png", root, "x")
        with pytest.raises(DataError, match="5,004 bytes, over the limit of 1,000"):
            big.read_bytes()
    assert seen == []  # refused from its size alone, never opened
    grows = hubdata.media("grows.png", root, "x")
    with (root / "grows.png").open("ab") as f:
        f.write(bytes(2000))  # grew after the check
    with pytest.raises(DataError, match="limit"):
        grows.read_bytes()


def test_a_malformed_limit_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert image_limits() == (64 * 2**20, MAX_IMAGE_PIXELS)
    monkeypatch.setenv("RRBENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UserError, match=r"\$RRBENCH_MAX_IMAGE_PIXELS must be a positive whole number"):
        image_limits()


# Path strings a hostile dataset could hold: runs of "..", absolute paths, names of the layout's traps, any
# unicode (NUL and lone surrogates included) and very long names.
_SEGMENTS = st.sampled_from(["..", ".", "", "sub", "good.png", "inner.png", "escape", "link_out.png", "fifo.png",
                             "loop.png", "cycle_a.png", "link_dev.png", "folder.png", "outside", "secret.png", "dev",
                             "zero"])
_STRUCTURED = st.lists(_SEGMENTS, max_size=8).map("/".join)
OUTSIDE = "@outside@"  # stands for the absolute path of the folder beside the dataset's, filled in by each test
# The traps by name, so that every run tries some: random joins alone reach them only now and then.
_TRAPS = st.sampled_from([f"{up}outside/{name}" for up in ("../", "../../", "sub/../../", "../../../")
                          for name in ("secret.png", "fifo")]
                         + ["link_out.png", "escape/secret.png", "link_dev.png", "fifo.png", "loop.png",
                            f"{OUTSIDE}/secret.png", f"{OUTSIDE}/fifo", "/dev/zero", "sub/../link_out.png"])
PATHS = st.one_of(
    _TRAPS,
    _STRUCTURED,
    _STRUCTURED.map(lambda s: "/" + s),
    st.text(st.characters(exclude_categories=()), max_size=30),  # exclude nothing: NUL and surrogates too
    # ... which random text holds only now and then, so also a trap's name with surrogates or control characters
    st.builds(str.__add__, _STRUCTURED, st.text(st.characters(categories=["Cs", "Cc"]), min_size=1, max_size=4)),
    st.integers(200, 6000).map(lambda n: "a/" * (n // 2)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(relative=PATHS)
def test_fuzzed_paths_never_read_outside_the_root(layout: dict[str, Path], relative: str) -> None:
    root = layout["root"]
    relative = relative.replace(OUTSIDE, str(layout["secret_dir"]))
    with opened() as seen, deadline(10):
        media = hubdata.media({"bytes": None, "path": relative}, root, "x")
        json.dumps(media.to_json(), ensure_ascii=False).encode()
        try:
            data = media.read_bytes()
        except DataError:
            data = None
    assert not outside(seen, root), f"{relative!r} opened {seen}"
    if data is not None:
        assert os.path.realpath(root / relative).startswith(os.path.realpath(root) + os.sep)


# --------------------------------------------------------------------------------------------------- decoding


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, complete: bool = True) -> bytes:
    """A valid 8-bit greyscale PNG of zeros: a few hundred KB that decode to width x height bytes (more as RGB).

    ``complete=False`` writes only the header and an empty stream: enough for a check that must not decode."""
    stream = zlib.compressobj(9)
    body = b""
    if complete:
        row = bytes(width + 1)  # filter byte + one grey byte per pixel
        body = b"".join(stream.compress(row) for _ in range(height))
    body += stream.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    # 8,500 x 8,500 = 72 MP: over rrbench's 64 MP limit and under Pillow's own (89 MP, where it only warns).
    return png_bomb(8500, 8500)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header (SOF0) claims another size: Pillow reads the size from there."""
    data = bytearray(encoded(Image.new("RGB", (8, 8), (9, 9, 9)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_decompression_bomb_under_pillows_limit_is_a_data_failure_without_decoding(bomb: bytes) -> None:
    assert len(bomb) < 200_000 and Image.MAX_IMAGE_PIXELS > 8500 * 8500
    # Measured in a fresh process: decoding it would take 72 MB as greyscale and 217 MB more as RGB.
    script = (
        "import resource, sys\n"
        "import numpy, PIL.Image, PIL.PngImagePlugin\n"
        "from rrbench.types import DataError, Media\n"
        "data = sys.stdin.buffer.read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    Media.from_bytes(data).image()\nexcept DataError as exc:\n    print(exc)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=bomb, capture_output=True, timeout=TIMEOUT)
    message, grown_mb = done.stdout.decode().splitlines()
    assert "8500x8500 = 72,250,000 pixels, over the limit of 64,000,000" in message and "not decoded" in message
    assert int(grown_mb) < 40, f"decoding a refused bomb grew memory by {grown_mb} MB"


def test_the_pixel_limit_is_what_refuses_it(bomb: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same file decodes once the limit is raised: it is a real image, refused for its size alone.
    monkeypatch.setenv("RRBENCH_MAX_IMAGE_PIXELS", str(100_000_000))
    assert Media.from_bytes(bomb).image().size == (8500, 8500)
    monkeypatch.setenv("RRBENCH_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match="over the limit of 1,000"):
        Media.from_bytes(photo("L", 0)).image()


@pytest.mark.parametrize(("data", "reason"), [
    (jpeg_claiming(9000, 9000), "9000x9000 = 81,000,000 pixels, over the limit"),  # under Pillow's warning
    (png_bomb(10_000, 10_000, complete=False), "10000x10000 = 100,000,000 pixels, over the limit"),  # it warns
    (png_bomb(20_000, 20_000, complete=False), "decompression bomb"),  # over twice Pillow's: its own error
    (jpeg_claiming(60_000, 60_000), "decompression bomb"),
], ids=["jpeg-81MP", "png-100MP", "png-400MP", "jpeg-3.6GP"])
@pytest.mark.parametrize("warnings_as", ["default", "error"])
def test_bombs_of_every_size_and_format_are_data_errors(data: bytes, reason: str, warnings_as: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if warnings_as == "default" else "error")
        with pytest.raises(DataError, match=reason if warnings_as == "default" else "pixels|bomb"):
            Media.from_bytes(data).image()
        if "bomb" in reason:  # Pillow's own error stands even where rrbench's limit is raised above it
            monkeypatch.setenv("RRBENCH_MAX_IMAGE_PIXELS", str(10**10))
            with pytest.raises(DataError, match="decompression bomb"):
                Media.from_bytes(data).image()


def test_eps_is_never_handed_to_ghostscript() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\n"
    with Image.open(io.BytesIO(eps)) as img:  # Pillow alone would take it (and run Ghostscript to decode it)
        assert img.format == "EPS"
    with pytest.raises(DataError, match="not a readable image format"):
        Media.from_bytes(eps).image()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512) | st.builds(lambda at, junk: photo("L", 0)[:at] + junk,
                                                 st.integers(0, 4000), st.binary(max_size=64)))
def test_any_bytes_decode_to_rgb_or_raise_a_data_error(data: bytes) -> None:
    try:
        img = Media.from_bytes(data).image()
    except DataError:
        return
    assert img.mode == "RGB"


# --------------------------------------------------------------------------------------------------- modes


def _grey(img: Image.Image) -> np.ndarray:
    rgb = np.asarray(to_rgb(img))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0].astype(np.int64)


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Media.from_bytes(data).image()).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(values=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)),
       fmt=st.sampled_from(["PNG", "TIFF"]))
def test_16_bit_greyscale_maps_0_65535_onto_0_255(values: np.ndarray, fmt: str) -> None:
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    rgb = _decoded(encoded(img, fmt))
    expected = np.floor(values / 257 + 0.5).astype(np.int64)  # v/257 rounded: 65535 -> 255, never clipped
    assert (rgb[..., 0] == expected).all() and (rgb[..., 1] == expected).all() and (rgb[..., 2] == expected).all()


def test_a_16_bit_gradient_is_not_saturated() -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16).reshape(16, 16)
    grey = _decoded(png(Image.fromarray(ramp)))[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and len(np.unique(grey)) == 256  # Pillow alone: 255 from v=255 on


@pytest.mark.parametrize(("values", "expected"), [
    (np.array([[0, 257, 32896, 65535]]), [[0, 1, 128, 255]]),  # within 0..65535: a 16-bit image in mode I
    (np.array([[0, 100, 200, 255]]), [[0, 100, 200, 255]]),  # within 0..255: 8-bit values in mode I
    (np.array([[0, 500_000, 1_000_000, 2_000_000]]), [[0, 64, 128, 255]]),  # beyond 16 bits: own min..max
    (np.array([[-100, 0, 100, 50]]), [[0, 128, 255, 191]]),  # negative: own min..max
], ids=["16-bit", "8-bit", "32-bit", "negative"])
def test_32_bit_integer_greyscale(values: np.ndarray, expected: list[list[int]]) -> None:
    img = Image.fromarray(values.astype(np.int32))
    assert img.mode == "I"
    assert _grey(img).tolist() == expected
    assert _decoded(encoded(img, "TIFF"))[..., 0].tolist() == expected


@pytest.mark.parametrize(("values", "expected"), [
    (np.array([[0.0, 0.25, 0.5, 1.0]]), [[0, 64, 128, 255]]),  # the float convention 0..1
    (np.array([[0.0, 64.0, 128.0, 255.0]]), [[0, 64, 128, 255]]),  # 8-bit values as floats
    (np.array([[np.nan, np.inf, 0.5, 1.0]]), [[0, 0, 128, 255]]),  # non-finite counts as 0
    (np.array([[-1.0, 0.0, 1.0, 0.5]]), [[0, 128, 255, 191]]),  # a signed range: own min..max
], ids=["unit", "8-bit", "non-finite", "signed"])
def test_float_greyscale(values: np.ndarray, expected: list[list[int]]) -> None:
    img = Image.fromarray(values.astype(np.float32))
    assert img.mode == "F"
    assert _grey(img).tolist() == expected
    assert _decoded(encoded(img, "TIFF"))[..., 0].tolist() == expected


def test_cmyk_converts_to_its_colours() -> None:
    cmyk = Image.new("CMYK", (4, 1))
    cmyk.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 255, 0), (0, 0, 0, 255)])
    assert _decoded(encoded(cmyk, "TIFF"))[0].tolist() == [[255, 255, 255], [0, 255, 255], [255, 0, 0], [0, 0, 0]]


def test_a_palette_with_transparency_composites_on_white() -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([200, 0, 0, 0, 150, 0, 0, 0, 90])
    img.putdata([0, 1, 2])
    data = png(img, transparency=1)  # tRNS: index 1 fully transparent
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and check.info["transparency"] == 1
    assert _decoded(data)[0].tolist() == [[200, 0, 0], [255, 255, 255], [0, 0, 90]]


def test_a_colour_key_composites_on_white() -> None:
    img = Image.new("RGB", (2, 1))
    img.putdata([(10, 20, 30), (40, 50, 60)])
    assert _decoded(png(img, transparency=(10, 20, 30)))[0].tolist() == [[255, 255, 255], [40, 50, 60]]


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_composites_on_white(mode: str) -> None:
    pixels = [(0, 0), (0, 255), (0, 128), (200, 0)] if mode == "LA" else \
        [(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 128), (0, 200, 0, 0)]
    img = Image.new(mode, (4, 1))
    img.putdata(pixels)
    got = _decoded(png(img))[0]
    assert got[0].tolist() == [255, 255, 255] and got[3].tolist() == [255, 255, 255]  # transparent: white
    assert got[1].tolist() == ([0, 0, 0] if mode == "LA" else [255, 0, 0])  # opaque: itself
    assert np.abs(got[2] - 127).max() <= 1  # half black over white: mid grey


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_images_give_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    params: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3
    assert (_decoded(data) == [255, 0, 0]).all()


def test_an_8_bit_photo_is_unchanged() -> None:
    data = photo("L", 0)
    with Image.open(io.BytesIO(data)) as img:
        assert (_decoded(data) == np.asarray(img.convert("RGB"))).all()


# --------------------------------------------------------------------------------------------------- end to end


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "RRBENCH_PLUGINS": f"{PLUGINS},{GENAI_MODELS}"}


def run_genai(tmp_path: Path, env: dict[str, str], data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return rrbench("run", "--task", "genai-bench-t2i", "--data", str(data), "--model", "luma", "--quiet",
                   "--output", str(tmp_path / "runs"), *extra, env=env, cwd=tmp_path, timeout=TIMEOUT)


def results(tmp_path: Path) -> dict[str, Any]:
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").exists()]
    return {r.sample_id: r for r in load_results(run_dir)}


def path_parquet(path: Path, left: list[Any], right: list[Any]) -> Path:
    """GenAI-Bench's public columns with image cells stored as HF Image structs ({bytes, path}).

    The struct is written as ``datasets`` stores an ``Image`` (same storage type); the ``Image`` feature itself would
    check at write time that every path exists, and a hostile dataset is exactly one whose paths do not."""
    import datasets

    n = len(left)
    columns = t2i_columns([("L", "L", "leftvote")] * n)
    columns["left_image"], columns["right_image"] = left, right
    struct_type = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    features = {k: struct_type if k in T2I_IMAGES else datasets.Value("string") for k in columns}
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(path))
    return path


def test_hostile_image_paths_in_parquet_are_data_failures_and_the_run_goes_on(
    tmp_path: Path, env: dict[str, str], layout: dict[str, Path]
) -> None:
    root = layout["root"]
    # Parquet strings are UTF-8, which cannot hold a lone surrogate: that case is fuzzed through JSON below.
    hostile = [p for p in REFUSED if p.isprintable() or "\x00" in p]
    hostile += [str(layout["secret"]), str(layout["secret_dir"] / "fifo")]
    good = {"bytes": None, "path": "good.png"}
    left = [good, {"bytes": photo("D", 1), "path": None}, *({"bytes": None, "path": p} for p in hostile)]
    path_parquet(root / SHARD, left, [good] * len(left))
    done = run_genai(tmp_path, env, root)
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = results(tmp_path)
    assert len(by_id) == len(left)
    assert [by_id[f"{i:05d}"].failure for i in range(2)] == [None, None]  # a path inside, and embedded bytes
    for i, relative in enumerate(hostile, start=2):
        result = by_id[f"{i:05d}"]
        details = [j.failure_detail for t in result.trials for j in t.judgements if j.failure]
        assert result.failure is FailureKind.DATA, (relative, result)
        assert details and all("DataError" in d for d in details)


def test_decompression_bombs_are_data_failures_that_never_abort_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    # 22 bombs first: were they model errors, the run would stop after 20 ("failed on the first 20 samples").
    bombs = [{"bytes": jpeg_claiming(9000, 9000), "path": None}] * 22
    good = [{"bytes": photo("L", i), "path": None} for i in range(2)]
    data = tmp_path / "data"
    path_parquet(data / SHARD, [*bombs, *good], [{"bytes": photo("D", 0), "path": None}] * 24)
    done = run_genai(tmp_path, env, data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first 20" not in done.stdout + done.stderr
    by_id = results(tmp_path)
    assert [by_id[f"{i:05d}"].failure for i in range(24)] == [FailureKind.DATA] * 22 + [None, None]
    detail = by_id["00000"].trials[0].judgements[0].failure_detail
    assert "81,000,000 pixels, over the limit" in detail


@pytest.fixture
def genai_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_parquet(data / SHARD, t2i_columns([("L", "D", "leftvote"), ("D", "L", "rightvote")] * 6),
                  images=T2I_IMAGES)
    return data


def test_symlink_loops_and_a_fifo_elsewhere_in_data_do_not_disturb_the_run(
    tmp_path: Path, env: dict[str, str], genai_data: Path
) -> None:
    (genai_data / "loop").symlink_to("loop")  # ln -s loop loop
    (genai_data / "a").symlink_to("b")
    (genai_data / "b").symlink_to("a")
    (genai_data / "image_generation" / "up").symlink_to("..")  # a folder link back up: a search must not recurse
    os.mkfifo(genai_data / "pipe")
    done = run_genai(tmp_path, env, genai_data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(results(tmp_path)) == 12


def test_a_copy_below_a_cache_folder_is_found(tmp_path: Path, env: dict[str, str]) -> None:
    # Only a .cache folder inside the copy is skipped; the hub's own cache is ~/.cache/huggingface.
    data = tmp_path / ".cache" / "copy"
    write_parquet(data / SHARD, t2i_columns([("L", "D", "leftvote")] * 3), images=T2I_IMAGES)
    write_parquet(data / ".cache" / SHARD, t2i_columns([("L", "D", "leftvote")] * 5), images=T2I_IMAGES)
    done = run_genai(tmp_path, env, data)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(results(tmp_path)) == 3


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: os.mkfifo(p), "is a FIFO, not a data file"),
    (lambda p: p.symlink_to(p.name), "Too many levels of symbolic links"),
    (lambda p: p.symlink_to("/dev/zero"), "is a character device, not a data file"),
], ids=["fifo", "self-link", "device"])
def test_an_odd_file_named_like_a_parquet_file_is_refused_in_one_line(
    tmp_path: Path, env: dict[str, str], genai_data: Path, make: Any, reason: str
) -> None:
    make(genai_data / "image_generation" / "test_v1-extra.parquet")
    line = one_line_error(run_genai(tmp_path, env, genai_data))
    assert reason in line and "test_v1-extra.parquet" in line


def test_a_folder_named_like_a_parquet_file_is_skipped(tmp_path: Path, env: dict[str, str],
                                                       genai_data: Path) -> None:
    (genai_data / "image_generation" / "test_v1-extra.parquet").mkdir()
    done = run_genai(tmp_path, env, genai_data)
    assert done.returncode == 0, done.stdout + done.stderr
    only = tmp_path / "only" / "image_generation" / "test_v1.parquet"
    only.mkdir(parents=True)
    assert "no parquet file" in one_line_error(run_genai(tmp_path, env, only.parent.parent))


@pytest.mark.parametrize("what", ["fifo", "self-link", "device"])
def test_odd_data_arguments_are_refused_in_one_line(tmp_path: Path, env: dict[str, str], what: str) -> None:
    data = tmp_path / "odd"
    if what == "fifo":
        os.mkfifo(data)
    elif what == "self-link":
        data.symlink_to(data.name)
    else:
        data = Path("/dev/zero")
    one_line_error(run_genai(tmp_path, env, data))


def _garble_row_group(path: Path, group: int) -> None:
    """Overwrite one row group's first column chunk with garbage; the footer (and every other page) stays valid."""
    import pyarrow.parquet as pq

    column = pq.ParquetFile(path).metadata.row_group(group).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    raw = bytearray(path.read_bytes())
    raw[start: start + column.total_compressed_size] = b"\xa5" * column.total_compressed_size
    path.write_bytes(bytes(raw))


def test_garbled_parquet_pages_mid_run_end_in_one_line_and_keep_what_was_judged(tmp_path: Path,
                                                                               env: dict[str, str]) -> None:
    import datasets
    import pyarrow.parquet as pq

    columns = t2i_columns([("L", "D", "leftvote")] * 48)
    features = {k: datasets.Image() if k in T2I_IMAGES else datasets.Value("string") for k in columns}
    shard = tmp_path / "data" / SHARD
    shard.parent.mkdir(parents=True)
    # Row groups of 16 rows, as hubdata reads batches of 16: the third group's pages are garbled.
    datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(shard), batch_size=16)
    assert pq.ParquetFile(shard).metadata.num_row_groups == 3
    _garble_row_group(shard, 2)
    line = one_line_error(run_genai(tmp_path, env, shard.parent.parent))
    assert "is corrupt after row 32" in line and "fetch it again" in line
    assert sorted(results(tmp_path)) == [f"{i:05d}" for i in range(32)]  # the rows before the bad pages were judged


def test_truncated_parquet_is_refused_in_one_line(tmp_path: Path, env: dict[str, str], genai_data: Path) -> None:
    shard = genai_data / SHARD
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert "not a readable parquet file" in one_line_error(run_genai(tmp_path, env, genai_data))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions (tests run as root here)")
def test_an_unreadable_parquet_file_is_refused_in_one_line(tmp_path: Path, env: dict[str, str],
                                                           genai_data: Path) -> None:
    (genai_data / SHARD).chmod(0)
    assert "Permission denied" in one_line_error(run_genai(tmp_path, env, genai_data))


def test_a_malformed_limit_in_the_environment_is_one_line(tmp_path: Path, env: dict[str, str],
                                                          genai_data: Path) -> None:
    line = one_line_error(run_genai(tmp_path, {**env, "RRBENCH_MAX_IMAGE_BYTES": "-5"}, genai_data))
    assert "$RRBENCH_MAX_IMAGE_BYTES must be a positive whole number" in line


@pytest.mark.parametrize(("content", "reason"), [
    (None, "is a FIFO"),
    (b"\xff\xfe not utf-8", "is not UTF-8 text"),
    (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    (b'[{"prompt": "p", "image_path": ["a.png"], "rank": [1]}, 7]', "row 1 is a number"),
], ids=["fifo", "latin", "deep", "not-an-object"])
def test_odd_hpdv2_json_is_refused_in_one_line(tmp_path: Path, env: dict[str, str], content: bytes | None,
                                               reason: str) -> None:
    data = tmp_path / "hpd"
    data.mkdir()
    (data / "a.png").write_bytes(photo("L", 0))
    if content is None:
        os.mkfifo(data / "test.json")
    else:
        (data / "test.json").write_bytes(content)
    done = rrbench("run", "--task", "hpdv2", "--data", str(data), "--model", "luma", "--quiet", "--output",
                   str(tmp_path / "runs"), env=env, cwd=tmp_path, timeout=TIMEOUT)
    assert reason in one_line_error(done)


# --------------------------------------------------------------------------------------------------- fuzzed runs

# In-process runs (rrbench.cli.main) so the audit hook sees every file the run opens, and fast enough to fuzz.
# classical-iqa is a built-in scorer that decodes every candidate.


def _fuzz_run(task: str, data: Path, runs: Path) -> tuple[int, list[str]]:
    with opened() as seen, deadline(60):
        code = cli.main(["run", "--task", task, "--data", str(data), "--model", "classical-iqa", "--quiet",
                         "--no-cache", "--output", str(runs)])
    return code, seen


def _check_fuzzed(code: int, seen: list[str], runs: Path, n_rows: int, traps: list[Path]) -> None:
    assert code == 0
    trapped = {os.path.realpath(t) for t in traps}
    assert not [p for p in seen if os.path.realpath(p) in trapped or os.path.realpath(p).startswith(
        tuple(f"{t}{os.sep}" for t in trapped))]
    (run_dir,) = [p for p in runs.iterdir() if (p / "run.json").exists()]
    got = load_results(run_dir)
    assert len(got) == n_rows  # every sample recorded: judged, or a data failure
    assert {r.failure for r in got} <= {None, FailureKind.DATA}
    assert got[0].failure is None  # the known-good first row


def _fuzz_layout(base: Path, images: Path) -> list[Path]:
    """Good images and traps under ``images``; a secret and a FIFO outside. Returns what must never be opened."""
    secret_dir = base / "outside"
    secret_dir.mkdir(parents=True)
    (secret_dir / "secret.png").write_bytes(encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG"))
    os.mkfifo(secret_dir / "fifo")
    (images / "sub").mkdir(parents=True)
    with Image.open(io.BytesIO(photo("L", 0))) as img:
        (images / "good.png").write_bytes(png(img.resize((64, 64))))  # classical-iqa judges 16 px and up
    (images / "sub" / "inner.png").write_bytes((images / "good.png").read_bytes())
    (images / "link_out.png").symlink_to(secret_dir / "secret.png")
    (images / "escape").symlink_to(secret_dir)
    (images / "link_dev.png").symlink_to("/dev/zero")
    os.mkfifo(images / "fifo.png")
    (images / "loop.png").symlink_to("loop.png")
    return [secret_dir, Path("/dev/zero"), images / "fifo.png"]


FUZZ_ROWS = st.lists(st.tuples(PATHS, PATHS), min_size=1, max_size=6)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _placed(rows: list[tuple[str, str]], base: Path) -> list[list[str]]:
    return [[p.replace(OUTSIDE, str(base / "outside")) for p in pair] for pair in rows]


@FUZZ
@given(rows=FUZZ_ROWS)
def test_fuzzed_hpdv2_paths_never_read_outside_and_every_sample_is_recorded(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]]
) -> None:
    base = tmp_path_factory.mktemp("hpdv2-fuzz")
    data = base / "data"
    traps = _fuzz_layout(base, data)
    table = [{"prompt": "p", "image_path": ["good.png", "sub/inner.png"], "rank": [1, 2]}]
    table += [{"prompt": f"p{i}", "image_path": pair, "rank": [1, 2]} for i, pair in enumerate(_placed(rows, base))]
    (data / "test.json").write_text(json.dumps(table))  # ASCII JSON: lone surrogates travel as \ud800 escapes
    code, seen = _fuzz_run("hpdv2", data, base / "runs")
    _check_fuzzed(code, seen, base / "runs", len(table), traps)


@FUZZ
@given(rows=FUZZ_ROWS)
def test_fuzzed_imagereward_paths_never_read_outside_and_every_sample_is_recorded(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]]
) -> None:
    base = tmp_path_factory.mktemp("imagereward-fuzz")
    data = base / "data"
    traps = _fuzz_layout(base, data / "test_images")
    table = [{"id": "row-0", "prompt": "p", "generations": ["good.png", "sub/inner.png"], "ranking": [1, 2]}]
    table += [{"id": f"row-{i + 1}", "prompt": f"p{i}", "generations": pair, "ranking": [1, 2]}
              for i, pair in enumerate(_placed(rows, base))]
    (data / "test.json").write_text(json.dumps(table))
    code, seen = _fuzz_run("imagereward-db", data, base / "runs")
    _check_fuzzed(code, seen, base / "runs", len(table), traps)
