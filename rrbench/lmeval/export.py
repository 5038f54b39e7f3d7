"""`rrbench export lm-eval DIR`: an lm-eval task pack, one YAML per preference task plus ``utils.py``.

The YAML names rrbench's own functions (``rrbench.lmeval.pack``, through ``utils.py``), the data as rrbench resolves
it (the hub id and pinned revision, or the local copy given with ``--data``, stored as an absolute path), the
decoding of rrbench's generic VLM judges (greedy, 4096 new tokens, no stop string), and a metadata ``version`` that
names the task version, protocol, tie policy, failure policy and presentation orders, so a changed rule is a changed
version in lm-eval's results too. Files already there with other content are not overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rrbench.lmeval import core, pack
from rrbench.store import write_error
from rrbench.types import Task, UserError

UTILS = '''"""lm-eval task pack written by `rrbench export lm-eval` (rrbench {version}): rrbench's own functions."""

from rrbench.lmeval.pack import (  # noqa: F401
    aggregate_failures_excluded,
    aggregate_failures_wrong,
    aggregate_official,
    doc_to_image,
    doc_to_text,
    load_docs,
    process_results,
)
'''
MAX_TOKENS = 4096  # rrbench's generic VLM judges (rrbench.models.vlm_judge: max_tokens=4096, temperature 0)


def version_of(task: Task) -> str:
    """The pack's metadata version: everything that decides the number."""
    p = core.protocol_of(task)
    return (f"{task.name}@{task.version};protocol={p.id};tie={p.tie_policy};failures={p.failure_policy};"
            f"order={p.order};prompt={core.prompt_of(task).key}")


def task_yaml(task: Task, data: str) -> str:
    info = task.info
    metrics = "".join(f"  - metric: {name}\n    aggregation: !function utils.{fn}\n    higher_is_better: true\n"
                      for name, fn in pack.METRICS.items())
    return (
        f"# rrbench task {task.name}: {info.dataset} (revision {info.revision or 'the snapshot read'}), written by "
        "`rrbench export lm-eval`\n"
        f"task: {core.lm_name(task.name)}\n"
        "tag: [rrbench]\n"
        "custom_dataset: !function utils.load_docs\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        "doc_to_text: !function utils.doc_to_text\n"
        "doc_to_image: !function utils.doc_to_image\n"
        'doc_to_target: ""\n'
        "process_results: !function utils.process_results\n"
        "generation_kwargs:\n"
        "  until: []\n"
        "  do_sample: false\n"
        "  temperature: 0.0\n"
        f"  max_gen_toks: {MAX_TOKENS}\n"
        "metric_list:\n"
        f"{metrics}"
        "metadata:\n"
        f"  version: {json.dumps(version_of(task))}\n"
        f"  rrbench_task: {json.dumps(task.name)}\n"
        f"  rrbench_data: {json.dumps(data)}\n"
        f"  dataset: {json.dumps(info.dataset)}\n"
        f"  revision: {json.dumps(info.revision)}\n"
    )


def export(out: Path, tasks: Sequence[str] | None, data: Path | None) -> dict[str, str | None]:
    """Write the pack; returns every preference task -> None (written) or why it was not."""
    from rrbench import __version__

    names = list(tasks) if tasks else None
    if data is not None and (names is None or len(names) != 1):
        raise UserError("--data is one task's local copy: name that one task with --task")
    if data is not None and not data.exists():
        raise UserError(f"--data {data}: no such file or folder")
    chosen = [core.checked_task(n) for n in names] if names else None
    report: dict[str, str | None] = core.expressible() if chosen is None else dict.fromkeys(t.name for t in chosen)
    local = str(data.resolve()) if data is not None else ""
    _write(out / "utils.py", UTILS.format(version=__version__))
    for name, why in report.items():
        if why is None:
            _write(out / f"{core.lm_name(name)}.yaml", task_yaml(core.build_task(name), local))
    return report


def _write(dest: Path, text: str) -> None:
    try:
        if dest.exists():
            if dest.read_text(encoding="utf-8") != text:
                raise UserError(f"{dest} exists with other content; export into an empty folder")
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise write_error(dest, exc if isinstance(exc, OSError) else OSError(str(exc))) from None
