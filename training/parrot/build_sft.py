"""PARROT 3a: the SFT dataset from anchored (and filtered) critiques.

``rrbench-train build-sft --from STAGE_DIR`` turns each answered (and, after ``filter``, kept) record into one row
of a Hugging Face dataset in TRL's conversational prompt-completion format:

* ``prompt``: the student's request exactly as rrbench sends it at evaluation (``rrbench.critique.critic_messages``
  with the record's prompt, candidates, source, kind and generation), as content blocks with each image block where
  the critic prompt places it, not all in front;
* ``completion``: one assistant message, the teacher's critique;
* ``images``: the images in the order the image blocks reference them (embedded bytes, so the dataset can be copied
  to another machine as it is).

It also writes the same rows in the released ShareGPT layout (``messages`` with ``<image>`` markers + ``images``
paths, images copied beside it, a LLaMA-Factory ``dataset_info.json``), which ``import-sft`` reads back.

Image paths in a record are relative to ``images_root`` (or ``anchor_dir``) when the record names one (itself
relative to the stage directory, or absolute), else to the stage directory; a path leaving that folder is a data
fault of that record, counted, and the build goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rrbench import DataError, Media, UserError, critique
from rrbench_train.parrot.stage import STAGE_JSON, StageDir, latest_records, read_json

DATASET, SHAREGPT = "dataset", "sharegpt"
SHAREGPT_FILE, IMAGE_MARKER = "rationalrewards_sft.json", "<image>"
META = ("sample_id", "task", "generation", "kind", "student_prompt", "origin")

Block = dict[str, Any]  # {"type": "text", "text": str} or {"type": "image", "text": None}
Message = dict[str, Any]  # {"role": str, "content": list[Block]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, type=Path,
                        help="an anchor or filter stage directory (filter: only kept records are used)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the build-sft stage directory goes (default: beside the input stage)")
    parser.add_argument("--system", choices=("keep", "drop"), default="keep",
                        help="keep the critic's system message (what rrbench sends; default) or drop it")


def main(args: argparse.Namespace) -> int:
    source = Path(args.source).resolve()
    if not (source / STAGE_JSON).is_file():
        raise UserError(f"not a stage directory (no {STAGE_JSON}): {source}")
    records = latest_records(source)
    inputs = {"stage_dir": str(source), "stage": (read_json(source / STAGE_JSON) or {}).get("stage"),
              "records_sha256": _file_sha256(source / "records.jsonl")}
    stage = StageDir(Path(args.out or source.parent), "build-sft", source.name, {"system": args.system}, inputs)
    stage.open()
    rows, counts = convert_records(records, source, args.system == "keep", stage.append)
    if not rows:
        stage.finish("failed", counts)
        raise UserError(f"no usable record in {source} ({_summary(counts)})")
    write_dataset(rows, stage.path / DATASET)
    counts["sharegpt"] = export_sharegpt(rows, stage.path / SHAREGPT)
    stage.finish("done", counts, dataset=DATASET, sharegpt=f"{SHAREGPT}/{SHAREGPT_FILE}")
    print(f"build-sft: {counts['rows']} rows ({_summary(counts)}) -> {stage.path / DATASET}")
    return 0


# ------------------------------------------------------------------------------------------------ records -> rows


def convert_records(records: Sequence[Mapping[str, Any]], stage_dir: Path, keep_system: bool,
                    log: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (image paths, not bytes yet) and the counts; each record's outcome is passed to ``log``."""
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    for record in records:
        reason = _skip_reason(record)
        if reason is not None:
            skipped[reason] += 1
            log({"id": record["id"], "status": "skipped", "reason": reason})
            continue
        try:
            rows.append(record_row(record, stage_dir, keep_system))
        except DataError as exc:
            faults[str(exc).split(":")[0]] += 1
            log({"id": record["id"], "status": "fault", "reason": str(exc)})
            continue
        log({"id": record["id"], "status": "written"})
    by_kind = Counter(f"{r['kind']}/{r['generation']}" for r in rows)
    return rows, {"records": len(records), "rows": len(rows), "skipped": dict(skipped), "faults": dict(faults),
                  "by_kind": dict(sorted(by_kind.items()))}


def _skip_reason(record: Mapping[str, Any]) -> str | None:
    if record.get("kept") is False:
        return "not kept by the filter"
    if record.get("failure") or not isinstance(record.get("answer"), str) or not record["answer"].strip():
        return "no answer"
    return None


def record_row(record: Mapping[str, Any], stage_dir: Path, keep_system: bool) -> dict[str, Any]:
    """One dataset row from one record, or DataError("<reason>: <detail>")."""
    kind, generation = record.get("kind"), record.get("generation")
    if kind not in critique.KINDS or generation not in critique.ASPECTS:
        raise DataError(f"bad kind/generation: {kind!r}/{generation!r}")
    family = str(record.get("student_prompt") or critique.prompt_key(kind, generation)).split("/")[0]
    try:
        expected = critique.prompt_key(kind, generation, family)
    except UserError as exc:
        raise DataError(f"unknown student prompt: {exc}") from None
    if record.get("student_prompt", expected) != expected:
        raise DataError(f"student prompt changed: the record says {record['student_prompt']}, the catalogue "
                        f"renders {expected}")
    root = _images_root(record, stage_dir)
    images = record.get("images") or {}
    candidates = [_media(p, root) for p in images.get("candidates") or []]
    source = [_media(p, root) for p in images.get("source") or []]
    try:
        messages = critique.critic_messages(str(record.get("prompt") or ""), candidates, source, kind=kind,
                                            generation=generation, family=family)
    except UserError as exc:
        raise DataError(f"bad images: {exc}") from None
    prompt, media = to_block_messages(messages, keep_system)
    return {"id": str(record["id"]), "prompt": prompt, "completion": completion_messages(record["answer"]),
            "images": [m.path for m in media], "origin": f"stage:{stage_dir.name}",
            **{k: record.get(k) for k in META if k != "origin"}}


def _images_root(record: Mapping[str, Any], stage_dir: Path) -> Path:
    named = record.get("images_root") or record.get("anchor_dir")
    return (stage_dir / str(named)).resolve() if named else stage_dir


def _media(rel: object, root: Path) -> Media:
    """A record's image, read only if it stays inside ``root``; decoded now so a corrupt file is this row's fault."""
    if not isinstance(rel, str) or not rel:
        raise DataError(f"bad image path: {rel!r}")
    media = Media.from_path(root / rel, root=root)
    try:
        media.image()
    except DataError as exc:
        raise DataError(f"unreadable image: {rel}: {exc}") from None
    assert media.path is not None
    return media


# ------------------------------------------------------------------------------------------------ message blocks


def to_block_messages(messages: Sequence[Mapping[str, Any]], keep_system: bool) -> tuple[list[Message], list[Media]]:
    """rrbench chat messages -> TRL content blocks, images in place; the media in block order."""
    out: list[Message] = []
    media: list[Media] = []
    for message in messages:
        if message["role"] == "system" and not keep_system:
            continue
        content = message["content"]
        parts: list[Mapping[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) \
            else list(content)
        blocks: list[Block] = []
        for part in parts:
            if part["type"] == "image":
                media.append(part["media"])
                blocks.append({"type": "image", "text": None})
            else:
                blocks.append({"type": "text", "text": part["text"]})
        out.append({"role": message["role"], "content": normalise(blocks)})
    return out, media


def normalise(blocks: Sequence[Block]) -> list[Block]:
    """Adjacent text blocks merged, empty ones dropped: the chat template renders both forms alike, and one form
    lets a ShareGPT round trip (text around ``<image>`` markers) give back the same blocks."""
    out: list[Block] = []
    for block in blocks:
        if block["type"] == "text" and not block["text"]:
            continue
        if block["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + block["text"]}
        else:
            out.append(dict(block))
    return out


def completion_messages(answer: str) -> list[Message]:
    return [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]


# ------------------------------------------------------------------------------------------------ writing


def features() -> Any:
    from datasets import Features, Image, Value

    block = {"type": Value("string"), "text": Value("string")}
    message = {"role": Value("string"), "content": [block]}
    return Features({"id": Value("string"), "prompt": [message], "completion": [message], "images": [Image()],
                     **{k: Value("string") for k in META}})


def _encoded(rows: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        images = [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in row["images"]]
        yield {**{k: row.get(k) for k in ("id", "prompt", "completion", *META)}, "images": images}


def write_dataset(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """``save_to_disk`` through a generator (rows stream to Arrow; image bytes are never all in memory at once)."""
    from datasets import Dataset

    work = path.parent / f".{path.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    dataset = Dataset.from_generator(_encoded, features=features(), gen_kwargs={"rows": list(rows)},
                                     cache_dir=str(work / "cache"))
    dataset.save_to_disk(str(work / "saved"))
    del dataset
    shutil.rmtree(path, ignore_errors=True)
    (work / "saved").rename(path)
    shutil.rmtree(work, ignore_errors=True)


def export_sharegpt(rows: Sequence[Mapping[str, Any]], folder: Path) -> dict[str, int]:
    """The released layout: ``messages`` with ``<image>`` markers in the text, ``images`` relative paths."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    out, faults = [], 0
    for row in rows:
        messages = [*row["prompt"], *row["completion"]]
        texts = [b["text"] for m in messages for b in m["content"] if b["type"] == "text"]
        if any(IMAGE_MARKER in t for t in texts):
            faults += 1  # the marker in the text itself would misplace the images on import
            continue
        images = [_copy_image(Path(p), folder, row["id"], k) for k, p in enumerate(row["images"])]
        out.append({"id": row["id"], "messages": [_marked(m) for m in messages], "images": images})
    (folder / SHAREGPT_FILE).write_text(json.dumps(out, ensure_ascii=False, indent=1))
    info = {"rrbench_parrot": {"file_name": SHAREGPT_FILE, "formatting": "sharegpt",
                               "columns": {"messages": "messages", "images": "images"},
                               "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                        "assistant_tag": "assistant", "system_tag": "system"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))  # LLaMA-Factory reads the folder as is
    return {"rows": len(out), "faults": faults}


def _marked(message: Mapping[str, Any]) -> dict[str, str]:
    text = "".join(IMAGE_MARKER if b["type"] == "image" else b["text"] for b in message["content"])
    return {"role": message["role"], "content": text}


def _copy_image(path: Path, folder: Path, row_id: str, k: int) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in row_id)
    rel = f"images/{safe}-{k}{path.suffix or '.png'}"
    shutil.copyfile(path, folder / rel)
    return rel


def _file_sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _summary(counts: Mapping[str, Any]) -> str:
    skipped = ", ".join(f"{n} {why}" for why, n in counts.get("skipped", {}).items()) or "none skipped"
    faults = sum(counts.get("faults", {}).values())
    return f"{skipped}; {faults} data fault(s)"
