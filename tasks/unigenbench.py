"""`unigenbench`: UniGenBench++ text-to-image (github CodeGoat24/UniGenBench), judged by its own Gemini protocol.

600 prompts per variant (``-T lang=en|zh``, ``-T length=short|long``), each with testpoints in 10 primary and 27
sub dimensions; a generator makes 4 images per prompt (``-T images_per_prompt=N``) with the official seeds
``3407 + j`` and the official names ``{index}_{j}.png`` (inference/flux_en_multi_node_inference.py:93-108).

The prompts are CSV files in the GitHub repository, not on the hub: ``data/test_prompts_{en,en_long,zh,zh_long}.csv``
at a pinned commit, downloaded once from raw.githubusercontent.com, checked against their sha256 and kept in a local
cache; ``--data`` takes a local copy (the CSV itself, or a folder holding it, e.g. a clone of the repository).

``test_prompts_en_long.csv`` row 509 is malformed JSON (a ``,`` is missing between two testpoints); the official
pipeline crashes on it (eval_common.py:547, ``json.loads``). Here the missing comma is put back (the Chinese row 509
lists the same 5 testpoints) and the repair is recorded in the sample's ``meta["repair"]``. A row that cannot be
repaired is kept as a sample whose ``meta["broken"]`` says why: its images are ``data`` failures and the metric
label-skips it. docs/tasks/unigenbench.md has the whole protocol.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rrbench.hubaccess import offline_env
from rrbench.protocols.official import MODE
from rrbench.registry import task
from rrbench.tasks.judge_unigenbench import COMMIT, LANGS, REPOSITORY, UniGenBenchJudge, language
from rrbench.types import Label, Protocol, Sample, Task, TaskInfo, TaskKind, UserError

VERSION = "1"
LENGTHS = ("short", "long")
# sha256 of each CSV at COMMIT (git -C <mirror> show COMMIT:data/<file> | sha256sum)
SHA256 = {
    "test_prompts_en.csv": "f82e8ce854985ef963378eaaf8ce12f2e3a57dd6f53e1aea84a61fbeadfe4459",
    "test_prompts_en_long.csv": "5d2c3d642cc4923504b662ad15b425c2d161a137884701881e00c2691a697253",
    "test_prompts_zh.csv": "7ff2d2131e68e6182f43a28ecf03d070f7735788f3c5420db3f83141492e8cb3",
    "test_prompts_zh_long.csv": "6e281a5781878584db932a3bfd16dc51afb195566eb7a30c17fb9c09fd3b1776",
}
RAW_URL = "https://raw.githubusercontent.com/CodeGoat24/UniGenBench/{commit}/data/{file}"
DOWNLOAD_TIMEOUT_S = 30.0
SIZE = 600
MAX_IMAGES = 64
SEED_BASE = 3407  # inference/flux_en_multi_node_inference.py:95, seed = 3407 + j
MAX_REPAIRS = 4  # missing commas put back in one row before it counts as broken

PROTOCOL = Protocol(id="unigenbench", mode=MODE, metrics=("unigenbench-accuracy",))
OFFLINE = Protocol(id="unigenbench-offline", mode=MODE, metrics=("unigenbench-accuracy",),
                   options={"request": "offline"})
RM = Protocol(id="unigenbench-rm", mode="pointwise", metrics=("mean-score",))


# --------------------------------------------------------------------------------------------------- files


def variant_tag(lang: str, length: str) -> str:
    """The official category name (eval/eval_gemini.sh): en, en_long, zh, zh_long."""
    return lang if length == "short" else f"{lang}_long"


def csv_name(lang: str, length: str) -> str:
    return f"test_prompts_{variant_tag(lang, length)}.csv"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rrbench" / "github" / "CodeGoat24--UniGenBench" / COMMIT


def fetch_hint(name: str) -> str:
    url = RAW_URL.format(commit=COMMIT, file=name)
    return f"curl -L -o DIR/{name} {url}, then pass --data DIR"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download(name: str) -> Path:
    """The official CSV from the local cache, or downloaded at the pinned commit and checked against its sha256."""
    path = cache_root() / name
    if path.is_file() and _digest(path) == SHA256[name]:
        return path
    if offline_env():
        raise UserError(f"unigenbench: {name} is not in the local cache {path.parent} and HF_HUB_OFFLINE is set; "
                        f"fetch it once: {fetch_hint(name)}")
    url = RAW_URL.format(commit=COMMIT, file=name)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            body = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserError(f"unigenbench: cannot download {url} ({exc}); fetch it once: {fetch_hint(name)}") from None
    got = hashlib.sha256(body).hexdigest()
    if got != SHA256[name]:
        raise UserError(f"unigenbench: {url} has sha256 {got}, not the pinned {SHA256[name]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{name}.{os.getpid()}.part")
    partial.write_bytes(body)
    partial.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one
    return path


def local_csv(data: Path, name: str) -> Path:
    """``--data``: the CSV itself, or a folder holding it (directly or in ``data/``, as a clone of the repo does)."""
    if data.is_file():
        return data
    if not data.is_dir():
        raise UserError(f"--data path does not exist: {data}")
    for candidate in (data / name, data / "data" / name):
        if candidate.is_file():
            return candidate
    raise UserError(f"--data {data} holds no {name} (the official data/{name} of {REPOSITORY})")


# --------------------------------------------------------------------------------------------------- rows


def read_rows(path: Path, lang: str) -> list[dict[str, str]]:
    """The CSV's rows, checked for the official columns (index, prompt_<lang>, sub_dims_<lang>)."""
    config = language(lang)
    wanted = ("index", config["prompt_column"], config["subdim_column"])
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in wanted if c not in (reader.fieldnames or ())]
            if missing:
                raise UserError(f"{path}: no column {missing[0]!r}; the official {lang} files have "
                                f"{', '.join(wanted)}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


_COMMA = "Expecting ',' delimiter"


def sub_dims(text: str) -> tuple[dict[str, Any], str | None]:
    """The row's JSON, and what had to be repaired (None: nothing). Only a comma missing between two list strings
    (``"a" "b"``, en_long row 509) is put back; anything else raises ValueError with the decoder's message."""
    repairs: list[int] = []
    while True:
        try:
            value = json.loads(text)
            break
        except json.JSONDecodeError as exc:
            before = text[:exc.pos].rstrip()
            if not (exc.msg == _COMMA and before.endswith('"') and text[exc.pos:exc.pos + 1] == '"'
                    and len(repairs) < MAX_REPAIRS):
                raise ValueError(f"{exc.msg} at character {exc.pos}") from None
            repairs.append(exc.pos)
            text = f"{before}, {text[exc.pos:]}"
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    note = None if not repairs else (f"inserted the missing ',' between two list items at character(s) "
                                     f"{', '.join(map(str, repairs))} (the official json.loads fails here: "
                                     "eval_common.py:547)")
    return value, note


def _checked(dims: Mapping[str, Any], lang: str) -> tuple[list[str], list[str]]:
    """The testpoints and their per-prompt descriptions; ValueError where the official prompt cannot be built."""
    config = language(lang)
    points, descs = dims.get(config["testpoint_key"]), dims.get(config["desc_key"])
    if not isinstance(points, list) or not all(isinstance(p, str) for p in points) or not points:
        raise ValueError(f"{config['testpoint_key']!r} is not a non-empty list of strings")
    if not isinstance(descs, list) or len(descs) != len(points):
        raise ValueError(f"{config['desc_key']!r} does not list one description per testpoint")
    return points, [str(d) for d in descs]


def make_sample(row: Mapping[str, str], lang: str, tag: str) -> Sample:
    config = language(lang)
    try:
        index = int(row["index"])  # eval_common.py:540
    except (TypeError, ValueError):
        raise UserError(f"unigenbench: index {row.get('index')!r} is not an integer (the official files number "
                        "their rows 0..599)") from None
    meta: dict[str, Any] = {"index": index, "lang": lang, "variant": tag}
    try:
        dims, repair = sub_dims(row[config["subdim_column"]] or "")
        points, descs = _checked(dims, lang)
    except ValueError as exc:
        meta["broken"] = f"{config['subdim_column']} of row {index}: {exc}"
        return Sample(f"{tag}-{index}", row[config["prompt_column"]] or "", (), Label.none(), meta=meta)
    if repair:
        meta["repair"] = repair
    fields = {k: v for k, v in dims.items() if k not in (config["testpoint_key"], config["desc_key"])}
    first = next(iter(fields.values()), None)  # "Primary Categories" / "一级垂类": the prompt's theme
    meta.update(testpoint=points, test_desc=descs, sub_dims=fields)
    if isinstance(first, str):
        meta["category"] = first
    return Sample(f"{tag}-{index}", row[config["prompt_column"]] or "", (), Label.none(), meta=meta)


def official_seed(run_seed: int, sample_id: str, index: int) -> int:
    """Image j's seed: 3407 + j for every prompt, whatever the run seed (flux_en_multi_node_inference.py:95)."""
    return SEED_BASE + index


def layout(sample: Sample, index: int) -> str:
    """``{index}_{j}.png`` (flux_en_multi_node_inference.py:108; eval_common.py:552 reads the same name)."""
    return f"{int(sample.meta['index'])}_{index}.png"


# --------------------------------------------------------------------------------------------------- task


def _check(lang: str, length: str, images_per_prompt: Any) -> None:
    if lang not in LANGS:
        raise UserError(f"unigenbench: lang must be one of {', '.join(LANGS)}, got {lang!r}")
    if length not in LENGTHS:
        raise UserError(f"unigenbench: length must be one of {', '.join(LENGTHS)}, got {length!r}")
    if isinstance(images_per_prompt, bool) or not isinstance(images_per_prompt, int) \
            or not 1 <= images_per_prompt <= MAX_IMAGES:
        raise UserError(f"unigenbench: images_per_prompt must be an integer from 1 to {MAX_IMAGES}, "
                        f"got {images_per_prompt!r}")


@task("unigenbench", description="UniGenBench++ text-to-image: 600 prompts x 4 images, Gemini-2.5-Pro testpoint "
                                 "judge, mean of 10 dimension accuracies (-T lang=en|zh -T length=short|long)")
def unigenbench(lang: str = "en", length: str = "short", images_per_prompt: int = 4) -> Task:
    """UniGenBench++ (one variant): prompts, testpoints and the official judge protocol."""
    _check(lang, length, images_per_prompt)
    tag, name = variant_tag(lang, length), csv_name(lang, length)

    def rows(data: Path | None) -> list[dict[str, str]]:
        return read_rows(download(name) if data is None else local_csv(data, name), lang)

    def load(data: Path | None) -> Iterator[Sample]:
        return (make_sample(row, lang, tag) for row in rows(data))

    def count(data: Path | None) -> int:
        return SIZE if data is None else len(rows(data))

    return Task(
        name="unigenbench",
        version=VERSION,
        kind=TaskKind.GENERATION_T2I,
        load=load,
        protocol=PROTOCOL,
        size=SIZE,
        count=count,
        info=TaskInfo(paper="https://arxiv.org/abs/2510.18701", dataset=f"github:CodeGoat24/UniGenBench data/{name}",
                      revision=COMMIT, license="CC BY 4.0 (License.txt)", size=SIZE,
                      homepage=REPOSITORY),
        generation="t2i",
        alternatives={OFFLINE.id: OFFLINE, RM.id: RM},
        images_per_prompt=images_per_prompt,
        seed_of=official_seed,
        layout=layout,
        judge=UniGenBenchJudge(lang),
    )

