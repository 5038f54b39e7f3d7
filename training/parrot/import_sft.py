"""Read the released ``TIGER-Lab/RationalRewards-SFTData`` layout into the SFT dataset ``build-sft`` makes.

``rrbench-train import-sft --data DIR_OR_JSON`` reads ShareGPT JSON (a list of ``{"messages": [{"role",
"content"}], "images": [paths]}``; ``.jsonl`` with one such object a line also works) with ``<image>`` markers in
the text. System and user turns become the ``prompt``, the final assistant turn the ``completion``, and each marker
an image block in place (the n-th marker is the n-th image). Image paths are relative to the data folder (the folder
given, or the JSON file's folder), as LLaMA-Factory reads them; a path that leaves that folder, a missing or
corrupt image, or a marker count that differs from the number of images is that row's data fault: counted by
reason in ``stage.json``, recorded in ``records.jsonl``, and the import goes on.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rrbench import DataError, UserError
from rrbench_train.parrot.build_sft import (
    DATASET,
    IMAGE_MARKER,
    Block,
    Message,
    _file_sha256,
    _media,
    completion_messages,
    normalise,
    write_dataset,
)
from rrbench_train.parrot.stage import StageDir

ROLES = ("system", "user", "assistant")
INDEX_FILES = ("dataset_info.json",)  # LLaMA-Factory's index of a data folder, not data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="a ShareGPT .json/.jsonl file, or a folder of them (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("parrot"),
                        help="where the import-sft stage directory goes (default: ./parrot)")
    parser.add_argument("--system", choices=("keep", "drop"), default="keep",
                        help="keep system turns in the prompt (default) or drop them")


def main(args: argparse.Namespace) -> int:
    data = Path(args.data).resolve()
    root = data if data.is_dir() else data.parent
    files = data_files(data)
    inputs = {"data": str(data), "files": {str(f.relative_to(root)): _file_sha256(f) for f in files}}
    stage = StageDir(Path(args.out), "import-sft", data.stem, {"system": args.system}, inputs)
    stage.open()
    rows: list[dict[str, Any]] = []
    faults: Counter[str] = Counter()
    for file, index, obj in iter_rows(files):
        row_id = str(obj.get("id") or f"{file.relative_to(root)}:{index}") if isinstance(obj, dict) else f"{index}"
        try:
            rows.append(sharegpt_row(obj, root, row_id, f"import:{file.relative_to(root)}", args.system == "keep"))
        except DataError as exc:
            faults[str(exc).split(":")[0]] += 1
            stage.append({"id": row_id, "status": "fault", "reason": str(exc)})
            continue
        stage.append({"id": row_id, "status": "written"})
    counts = {"rows_read": len(rows) + sum(faults.values()), "rows": len(rows), "faults": dict(faults)}
    if not rows:
        stage.finish("failed", counts)
        raise UserError(f"no usable row in {data} ({sum(faults.values())} data fault(s): {dict(faults)})")
    write_dataset(rows, stage.path / DATASET)
    stage.finish("done", counts, dataset=DATASET)
    print(f"import-sft: {len(rows)} rows, {sum(faults.values())} data fault(s) -> {stage.path / DATASET}")
    return 0


def data_files(data: Path) -> list[Path]:
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise UserError(f"no such file or folder: {data}")
    files = sorted(p for p in data.rglob("*") if p.suffix in (".json", ".jsonl") and p.name not in INDEX_FILES
                   and p.is_file())
    if not files:
        raise UserError(f"no .json or .jsonl file in {data}")
    return files


def iter_rows(files: list[Path]) -> Iterator[tuple[Path, int, object]]:
    for file in files:
        if file.suffix == ".jsonl":  # a line that is not JSON is that row's fault, not the file's
            lines = [line for line in file.read_text().splitlines() if line.strip()]
            yield from ((file, i, _loads(line)) for i, line in enumerate(lines))
            continue
        try:
            loaded = json.loads(file.read_text())
        except ValueError as exc:
            raise UserError(f"{file}: not JSON ({exc})") from None
        if not isinstance(loaded, list):
            raise UserError(f"{file}: a ShareGPT file is a JSON list of rows, not a {type(loaded).__name__}")
        yield from ((file, i, obj) for i, obj in enumerate(loaded))


def _loads(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


def sharegpt_row(obj: object, root: Path, row_id: str, origin: str, keep_system: bool) -> dict[str, Any]:
    """One dataset row (image paths, not bytes) from one ShareGPT row, or DataError("<reason>: <detail>")."""
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list) or not obj["messages"]:
        raise DataError("no messages: a row needs a non-empty 'messages' list")
    images = obj.get("images") or []
    if not isinstance(images, list):
        raise DataError(f"bad images: 'images' is a {type(images).__name__}, not a list")
    messages = [_checked_message(m) for m in obj["messages"]]
    markers = sum(m["content"].count(IMAGE_MARKER) for m in messages)
    if markers != len(images):
        raise DataError(f"image count mismatch: {markers} {IMAGE_MARKER} marker(s), {len(images)} image(s)")
    if messages[-1]["role"] != "assistant":
        raise DataError("no final assistant turn: the last message is the completion")
    if IMAGE_MARKER in messages[-1]["content"]:
        raise DataError("image in the completion: the assistant turn may not hold images")
    media = [_media(p, root) for p in images]
    prompt = [_blocks(m) for m in messages[:-1] if keep_system or m["role"] != "system"]
    return {"id": row_id, "prompt": prompt, "completion": completion_messages(messages[-1]["content"]),
            "images": [m.path for m in media], "origin": origin}


def _checked_message(message: object) -> dict[str, str]:
    if not isinstance(message, Mapping) or message.get("role") not in ROLES:
        role = message.get("role") if isinstance(message, Mapping) else message
        raise DataError(f"bad role: {role!r} (expected one of {', '.join(ROLES)})")
    if not isinstance(message.get("content"), str):
        raise DataError(f"bad content: a {message['role']} turn's content must be a string")
    return {"role": message["role"], "content": message["content"]}


def _blocks(message: Mapping[str, str]) -> Message:
    pieces = message["content"].split(IMAGE_MARKER)
    blocks: list[Block] = [{"type": "text", "text": pieces[0]}]
    for piece in pieces[1:]:
        blocks += [{"type": "image", "text": None}, {"type": "text", "text": piece}]
    return {"role": message["role"], "content": normalise(blocks)}
