"""Which parquet files of a local folder hold one benchmark: its hub layout, or the RationalRewards eval bundle.

TIGER-Lab/RationalRewards-EvalData-GenAIBench-MMRB2-ERBench packs the preference sets the RationalRewards paper
evaluated on. We found no page that lists its files. What is verified is how the authors' own evaluation code
(github.com/TIGER-AI-Lab/RationalRewards, reward_model_evaluation/modular_rm_eval/dataset_adapters.py,
``infer_dataset_type``) recognises each part: by its columns, not by file names --

* ``editreward_imgedit``: instruction, source_image, candidate_1, candidate_2
* ``genaibench_imggen``: prompt, left_image, right_image (GenAI-Bench's own schema, ``vote_type`` labels)
* ``genaibench_imgedit``: source_prompt, target_prompt, left_output_image, right_output_image
* ``mmrb2_imggen`` / ``mmrb2_imgedit``: pair_id, prompt_text, response_a_images, response_b_images (MMRB2 flattened;
  text-to-image and editing look alike, and the authors' scripts keep them apart by folder: ``data/mmrb2/t2i/`` and
  ``data/mmrb2/imgedit/``, next to ``data/genaibench_t2i.parquet``, ``data/genaibench_imgedit.parquet`` and
  ``data/editreward_bench.parquet`` in batch_judge_*_modular.sh).

So a part is found the same way here: only parquet footers are read (no pixels), files with the part's columns are
kept, and where two parts share columns the words of the file's path decide (``t2i`` vs ``edit``/``imgedit``).
A folder laid out as on the hub (``<config>/<split>-*.parquet``) is read as that first; the bundle is the fallback.

API (shared by the GenAI-Bench, MMRB2 and EditReward-Bench tasks):

* ``Part`` and the constants ``GENAI_T2I``, ``GENAI_EDIT``, ``MMRB2_T2I``, ``MMRB2_EDIT``, ``EDITREWARD``;
* ``open_part(part, source, data, fetch=None)`` -> ``hubdata.Rows``: the hub snapshot of ``fetch or source`` when
  ``data`` is None, else the official layout in ``data`` when it has the part's columns, else the bundle's files
  for the part (never the hub files of another split); a one-line UserError naming both layouts when neither is
  there;
* ``lazy_media(cell, root, what)``: ``hubdata.media``, except that a missing image becomes a media that fails when
  read, so the broken row is one sample's DATA failure instead of an error that stops the run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrbench.hubdata import Rows, Source, media, open_rows, regular_files
from rrbench.registry import require
from rrbench.types import Media, UserError, image_limits

BUNDLE = "TIGER-Lab/RationalRewards-EvalData-GenAIBench-MMRB2-ERBench"
BUNDLE_FETCH = f"hf download {BUNDLE} --repo-type dataset --local-dir DIR"

_T2I_WORDS = frozenset({"t2i", "imggen", "gen", "generation"})
_EDIT_WORDS = frozenset({"edit", "imgedit", "edition", "editing"})
_MMRB2_OTHER = frozenset({"interleaved", "reasoning"})  # MMRB2's other two tasks share the columns too


@dataclass(frozen=True)
class Part:
    """One benchmark inside a folder: the columns that identify it, and path words where parts share columns."""

    name: str  # the authors' dataset type
    columns: frozenset[str]
    words: frozenset[str] = field(default_factory=frozenset)  # a path with one of these is this part
    others: frozenset[str] = field(default_factory=frozenset)  # a path with one of these is a sibling part


_MMRB2_COLUMNS = frozenset({"pair_id", "prompt_text", "response_a_images", "response_b_images"})
GENAI_T2I = Part("genaibench_imggen", frozenset({"prompt", "left_image", "right_image"}))
GENAI_EDIT = Part("genaibench_imgedit",
                  frozenset({"source_prompt", "target_prompt", "left_output_image", "right_output_image"}))
MMRB2_T2I = Part("mmrb2_imggen", _MMRB2_COLUMNS, _T2I_WORDS, _EDIT_WORDS | _MMRB2_OTHER)
MMRB2_EDIT = Part("mmrb2_imgedit", _MMRB2_COLUMNS, _EDIT_WORDS, _T2I_WORDS | _MMRB2_OTHER)
EDITREWARD = Part("editreward_imgedit", frozenset({"instruction", "source_image", "candidate_1", "candidate_2"}))


def open_part(part: Part, source: Source, data: Path | None, fetch: Source | None = None) -> Rows:
    """The rows of one benchmark from the hub, a local copy in the hub layout, or the RationalRewards bundle.

    ``fetch`` is the source to download when ``data`` is None, where it can name fewer files than ``source``.
    """
    if data is None:
        return open_rows(fetch or source, None)
    image_limits()  # a malformed $RRBENCH_MAX_IMAGE_* is one line now (open_rows' own check is caught below)
    try:
        official: Rows | None = open_rows(source, data)
    except UserError:
        official = None  # not laid out as on the hub (or not there at all): the bundle search below says which
    root = data.parent if data.is_file() else data
    files = _pick(official.files, root, part) if official is not None else ()
    if not files and data.is_dir():
        files = _pick(_bundle_candidates(data, source), root, part)
    if not files:
        raise UserError(_not_found(part, source, data))
    return Rows(files=files, root=root, size=sum(_footer(f)[1] for f in files), origin=str(data))


_HUB_SHARD = re.compile(r"^(?P<split>\w+)-\d{5}-of-\d{5}\.parquet$")


def _bundle_candidates(folder: Path, source: Source) -> list[Path]:
    """Parquet files below ``folder``, less the hub layout's files of *other* splits of this dataset.

    GenAI-Bench's older ``test`` split has the same columns as ``test_v1``: found in ``image_generation/``, it must
    never stand in for the split asked for.
    """
    out = []
    # Checked before a footer is read: a FIFO named like a parquet file would block the run (one line instead).
    # Only a .cache folder inside the copy is skipped: the copy itself may live below ~/.cache (the hub's).
    found = sorted(p for p in folder.rglob("*.parquet") if ".cache" not in p.relative_to(folder).parts)
    for path in regular_files(found):
        parts = path.relative_to(folder).parts
        shard = _HUB_SHARD.match(path.name)
        other_split = shard is not None and shard["split"] != source.split and source.config in parts[:-1]
        if ".cache" not in parts and not other_split:
            out.append(path)
    return out


def _pick(files: Iterable[Path], root: Path, part: Part) -> tuple[Path, ...]:
    """The parquet files with the part's columns, narrowed by path words where parts share columns."""
    matching = [f for f in files if f.suffix == ".parquet" and part.columns <= _footer(f)[0]]
    if not part.words:
        return tuple(matching)
    named = [f for f in matching if _words(f, root) & part.words]
    return tuple(named or [f for f in matching if not _words(f, root) & part.others])


def _words(path: Path, root: Path) -> frozenset[str]:
    return frozenset(re.split(r"[^a-z0-9]+", str(path.relative_to(root)).lower()))


def _footer(path: Path) -> tuple[frozenset[str], int]:
    """Column names and row count from the parquet footer alone (no pixels are read)."""
    stat = path.stat()
    return _read_footer(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _read_footer(path: Path, mtime_ns: int, size: int) -> tuple[frozenset[str], int]:
    # Keyed by modification time and size too, so a file rewritten in place is read again.
    pq = require("pyarrow.parquet", "datasets")
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:
        raise UserError(f"not a readable parquet file: {path} ({type(exc).__name__}: {exc})") from None
    return frozenset(meta.schema.to_arrow_schema().names), int(meta.num_rows)


def _not_found(part: Part, source: Source, data: Path) -> str:
    layout = f"{source.config}/{source.split}-*.parquet" if source.config else f"{source.split}-*.parquet"
    words = f" under a folder named {'/'.join(sorted(part.words))}" if part.words else ""
    return (f"{data}: no parquet file with {source.dataset}'s columns ({', '.join(sorted(part.columns))}); "
            f"expected its hub layout ({layout}; {source.fetch_hint()}) or the RationalRewards bundle{words} "
            f"({BUNDLE_FETCH})")


def lazy_media(value: Any, root: Path, what: str) -> Media:
    """An image cell as a Media; a missing image fails only when a model reads it (a DATA failure of its sample)."""
    return media(value, root, what)



def first(values: Sequence[Any] | None) -> Any:
    """The first image of an image-list cell (MMRB2 answers hold one image in its t2i and edit tasks), or None."""
    return values[0] if values else None
