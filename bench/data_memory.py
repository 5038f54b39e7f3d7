"""Memory of a dataset-backed run: a 5,000-pair GenAI-Bench copy at 512x512 through `rrbench run`, peak RSS measured.

The data is written once to a temporary folder in GenAI-Bench's public schema and hub layout
(``image_generation/test_v1-00000-of-00001.parquet``; HF ``Image`` features; row groups of 100 rows, as `datasets`
writes image datasets), every image a scikit-image photograph cut at a per-row window so that no two images share
bytes. Then `rrbench run --task genai-bench-t2i --data DIR --model MODEL` runs in a child process, and its peak
resident set size comes from the kernel's accounting of that child alone (``os.wait4``). Streaming means the peak
does not grow with the dataset: the target is < 1.5 GB for 5,000 pairs (about 4.5 GB of PNG).

    python bench/data_memory.py [--pairs 5000] [--size 512] [--model classical-iqa] [--limit N] [--workdir DIR]
                                [--data DIR]   (reuse a copy written before)

``--model constant`` never reads a pixel (loader + runner only); ``classical-iqa`` decodes every image.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

TARGET_MB = 1536
ROW_GROUP = 100  # rows per parquet row group: what `datasets` uses for image data, so a few hundred MB at most
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry", "hubble_deep_field")
VOTES = ("leftvote", "rightvote", "tievote", "bothbad_vote")
MARGIN = 96  # photos are resized to size + MARGIN, and each row takes its own size x size window


def _bases(size: int) -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in PHOTOS:
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        out.append(np.asarray(img.resize((size + MARGIN, size + MARGIN), Image.Resampling.BILINEAR)))
    return out


_BASES: list[np.ndarray] = []


def _init(size: int) -> None:
    _BASES.extend(_bases(size))


def _png(args: tuple[int, int, int]) -> bytes:
    """Image ``k`` of row ``row``: a window of one photo at a row-dependent offset, PNG-encoded."""
    row, k, size = args
    base = _BASES[(2 * row + k) % len(_BASES)]
    x, y = (row * 7 + k * 13) % MARGIN, (row * 11 + k * 5) % MARGIN
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(base[y:y + size, x:x + size])).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _features() -> dict[str, object]:
    image = {"_type": "Image"}
    text = {"dtype": "string", "_type": "Value"}
    return {"prompt": text, "left_model": text, "left_image": image, "right_model": text, "right_image": image,
            "vote_type": text}


def write_dataset(folder: Path, pairs: int, size: int) -> Path:
    """GenAI-Bench's image_generation schema, streamed to parquet one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("prompt", pa.string()), ("left_model", pa.string()), ("left_image", image_type),
                        ("right_model", pa.string()), ("right_image", image_type), ("vote_type", pa.string())],
                       metadata={"huggingface": json.dumps({"info": {"features": _features()}})})
    path = folder / "image_generation" / "test_v1-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    with Pool(os.cpu_count() or 1, initializer=_init, initargs=(size,)) as pool, \
            pq.ParquetWriter(path, schema) as writer:
        for start in range(0, pairs, ROW_GROUP):
            rows = range(start, min(pairs, start + ROW_GROUP))
            images = pool.map(_png, [(r, k, size) for r in rows for k in (0, 1)])
            writer.write_table(pa.table({
                "prompt": [f"photo {r}" for r in rows],
                "left_model": [f"model-{r % 5}" for r in rows],
                "left_image": [{"bytes": images[2 * i], "path": None} for i in range(len(rows))],
                "right_model": [f"model-{(r + 2) % 5}" for r in rows],
                "right_image": [{"bytes": images[2 * i + 1], "path": None} for i in range(len(rows))],
                "vote_type": [VOTES[r % len(VOTES)] for r in rows],
            }, schema=schema))
    return path


def measure(data: Path, model: str, limit: int | None, work: Path) -> tuple[int, float, float, str]:
    """Run rrbench in a child process; return its exit code, peak RSS (MB), wall time (s) and its output tail."""
    cmd = [sys.executable, "-m", "rrbench.cli", "run", "--task", "genai-bench-t2i", "--data", str(data),
           "--model", model, "--output", str(work / "runs"), "--quiet", "--no-resume"]
    if limit:
        cmd += ["--limit", str(limit)]
    env = {**os.environ, "RRBENCH_CACHE": str(work / "cache.sqlite")}
    start = time.perf_counter()
    with (work / "rrbench.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    tail = "".join((work / "rrbench.log").read_text().splitlines(keepends=True)[-12:])
    return proc.returncode, usage.ru_maxrss / 1024, wall, tail  # Linux reports KiB


def _summary(work: Path) -> Iterator[str]:
    for run_json in (work / "runs").glob("*/run.json"):
        record = json.loads(run_json.read_text())
        headline = record["protocol"]["failure_policy"]
        acc = next(m for m in record["metrics"]["overall"] if m["failure_policy"] == headline)
        yield (f"run: {record['status']}, {record['counts']['recorded']} samples, accuracy {acc['value']:.4f} "
               f"({record['protocol']['id']}), {record['stats']['samples_per_s']} samples/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="classical-iqa", help="comma-separated runs one after another")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary data folder is made")
    parser.add_argument("--data", type=Path, default=None, help="reuse a copy written before (skips writing)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        data = args.data or work / "GenAI-Bench"
        if args.data is None:
            start = time.perf_counter()
            path = write_dataset(data, args.pairs, args.size)
            print(f"data: {args.pairs} pairs at {args.size}x{args.size}, {path.stat().st_size / 2**30:.2f} GiB of "
                  f"parquet, written in {time.perf_counter() - start:.0f} s")
        worst = 0
        for model in args.model.split(","):
            code, peak, wall, tail = measure(data, model, args.limit, work)
            ok = code == 0 and peak < TARGET_MB
            print(f"{model}: exit {code}, wall {wall:.1f} s, peak RSS {peak:.0f} MB (target < {TARGET_MB} MB)  "
                  f"{'OK' if ok else 'FAILED'}")
            for line in _summary(work):
                print("  " + line)
            if code != 0:
                print(tail)
            worst = max(worst, 0 if ok else 1)
            for old in (work / "runs").glob("*"):
                os.rename(old, work / f"done-{model}-{old.name}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
