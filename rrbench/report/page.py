"""`rrbench report`: one self-contained HTML page of a run, to read its judgements next to the images.

The page is static: style, script and thumbnails are inlined (data: URIs), and its Content-Security-Policy allows
nothing else, so it opens offline, can be mailed, and never fetches anything. ``samples.jsonl`` holds image keys,
never pixels, so the images come from the task rebuilt from ``run.json``: its samples are streamed and only those
in the log are thumbnailed, a few at a time, while the cards are written to a temporary file. The page is then
assembled (head, banner, filters, cards, script) and renamed into place, so a reader never sees half a report.

Cards follow the task's own sample order (stable across resumes); log samples the data did not yield come last,
in log order, with placeholders. A sample's state is read from the log: ``skipped`` (label-skipped), ``failed``
(any trial failed), else by its mean per-trial credit: ``correct`` (1), ``wrong`` (0), ``mixed`` (between, e.g.
right in one order and wrong in the other), or ``unscored`` (no per-sample credit: ranking tasks, human ties the
tie policy leaves out).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rrbench import registry
from rrbench.datarecord import data_status
from rrbench.display import ci, number
from rrbench.progress import Progress
from rrbench.record import read_run_dict
from rrbench.report.assets import CSS, JS
from rrbench.store import LOCK, REJECTED, RUN_JSON, SAMPLES, atomic_text, load_results
from rrbench.types import (
    DataError,
    Judgement,
    Label,
    LabelKind,
    Media,
    Sample,
    SampleResult,
    Trial,
    UserError,
    open_image,
)

STATES = ("correct", "wrong", "mixed", "failed", "skipped", "unscored")
ALWAYS_SHOWN = ("correct", "wrong", "failed")  # filter buttons present even at zero, so the page looks the same
MIN_THUMB, MAX_THUMB = 16, 2048
JPEG_QUALITY = 80
_WINDOW_PER_WORKER = 4  # samples in flight per thumbnail worker: bounds the full-size images held at once


@dataclass(frozen=True)
class Picture:
    """A thumbnail as a data: URI, or the reason there is none (shown in a placeholder)."""

    uri: str | None = None
    width: int = 0
    height: int = 0
    reason: str | None = None


Pictures = tuple[list[Picture], list[Picture]]  # (source images, candidates)


# --------------------------------------------------------------------------------------------------- entry point


def write_report(run_dir: Path, out: Path | None, *, data: str | None, limit: int | None, thumb: int) -> Path:
    """Write the report of ``run_dir`` (default ``RUN_DIR/report.html``) and return its path."""
    _check_options(limit, thumb)
    record = read_run_dict(run_dir)
    record = _checked(run_dir, record)
    results = latest_results(run_dir)
    target = _target(run_dir, out)
    _check_target(target, run_dir, data or (record["spec"].get("data")))
    n_cards = len(results) if limit is None else min(limit, len(results))
    problems: list[str] = []
    samples = open_samples(record, data, problems)
    try:
        with atomic_text(target, mode=0o644, errors="replace") as page, _spool(target.parent) as body:
            shown = _write_cards(body, results, samples, n_cards, thumb, problems, _pairwise_mode(record),
                                 images_root(record, run_dir))
            body.seek(0)
            page.write(_head(record, run_dir, problems, shown, len(results), thumb))
            shutil.copyfileobj(body, page)
            page.write(_tail(record))
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def _checked(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The header's counts and metrics from the sample log where run.json's do not match it (hand-edited)."""
    from rrbench.runner import checked_record  # the runner's import chain is only needed once a page is written

    checked, note = checked_record(run_dir, record)
    if note:
        print(f"note: {run_dir}: {note}", file=sys.stderr)
    return checked


def _check_options(limit: int | None, thumb: int) -> None:
    if limit is not None and limit < 0:
        raise UserError(f"--limit must be 0 or more, got {limit}")
    if not MIN_THUMB <= thumb <= MAX_THUMB:
        raise UserError(f"--thumb must be from {MIN_THUMB} to {MAX_THUMB} pixels, got {thumb}")


def _target(run_dir: Path, out: Path | None) -> Path:
    if out is None:
        return run_dir / "report.html"
    if out.is_dir():  # a folder collecting the reports of several runs
        return out / f"{run_dir.resolve().name}.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    return out


def _check_target(target: Path, run_dir: Path, data: Any) -> None:
    """The page must not replace what it is made from: the run's own files, or anything in its data."""
    where = target.resolve()
    inputs = [run_dir / name for name in (RUN_JSON, SAMPLES, REJECTED, LOCK)]
    if any(where == path.resolve() for path in inputs):
        raise UserError(f"--out {target} is one of the run's own files; the report would replace it (give a .html "
                        "path, or a folder)")
    if isinstance(data, str) and data:
        source = Path(data).resolve()
        if where == source or source in where.parents:
            raise UserError(f"--out {target} is inside the run's data ({data}); give a path outside it")
    if where.is_dir():
        raise UserError(f"--out {target} is a folder")


def _spool(folder: Path) -> IO[str]:
    # Cards go first to a scratch file: the head needs their counts and any data problem met on the way.
    return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace", dir=folder)


def latest_results(run_dir: Path) -> dict[str, SampleResult]:
    """One result per sample id, in log order; a later line of the same id wins (store.load_results, the rule
    every reader follows; malformed lines are skipped)."""
    return {result.sample_id: result for result in load_results(run_dir)}


def sample_state(result: SampleResult) -> str:
    """The card's state from the log (see the module docstring)."""
    if result.skipped:
        return "skipped"
    if result.failure is not None:
        return "failed"
    credits = [c for c in result.correct if c is not None]
    if not credits:
        return "unscored"
    mean = sum(credits) / len(credits)
    return "correct" if mean == 1 else "wrong" if mean == 0 else "mixed"


# --------------------------------------------------------------------------------------------------- images


def open_samples(record: Mapping[str, Any], data: str | None, problems: list[str]) -> Iterable[Sample]:
    """The task's samples as the run read them; on any failure, none, and one line in ``problems`` saying why."""
    spec = record["spec"]
    source = data or spec.get("data")
    try:
        task = registry.get("task", spec["task"]).build(**(spec.get("task_args") or {}))
        if source is not None and not Path(source).exists():
            raise UserError(f"data path {source} does not exist (pass --data where the task's data is now)")
        samples = task.load(Path(source) if source is not None else None)
    except Exception as exc:  # the report is still worth writing without images; the banner says why
        problems.append(f"images unavailable: {_reason(exc)}")
        return ()
    version = (record.get("task") or {}).get("version")
    if version is not None and str(version) != str(task.version):
        problems.append(f"task '{task.name}' is now version {task.version}, the run used {version}: "
                        "images whose key differs are placeholders")
    return _guarded(samples, problems)


def _guarded(samples: Iterable[Sample], problems: list[str]) -> Iterator[Sample]:
    # Hub and parquet readers fail lazily (offline, missing snapshot, torn shard): cards written so far keep their
    # images and the rest get placeholders.
    read = 0
    try:
        for sample in samples:
            read += 1
            yield sample
    except Exception as exc:
        after = f" after {read} samples of the data" if read else ""
        problems.append(f"images unavailable{after}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, UserError | DataError) and first:  # already one line written for people
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def sample_pictures(sample: Sample, result: SampleResult, size: int, images: Path | None = None) -> Pictures:
    """Thumbnails of the sample's source images and candidates; a generation task's candidates are the images the
    run made or judged, read from ``images`` (the generation run, or the folder judged) by their recorded paths."""
    source = _matching(result.source, sample.source, size)
    if result.label.kind is LabelKind.NONE:
        return source, [_generated(entry, images, size) for entry in result.candidates]
    return source, _matching(result.candidates, sample.candidates, size)


def _generated(entry: Mapping[str, Any], images: Path | None, size: int) -> Picture:
    if "path" not in entry:
        return Picture(reason=str(entry.get("detail") or entry.get("failure") or "not generated"))
    if images is None:
        return Picture(reason="the images' folder is unknown")
    return picture(Media.from_path(images / str(entry["path"]), root=images), entry.get("key"), size)


def images_root(record: Mapping[str, Any], run_dir: Path) -> Path | None:
    """Where a generation run's images lie (its own directory), or the source a judge run judged."""
    if record.get("generator"):
        return run_dir
    source = record.get("source")
    return Path(source["path"]) if isinstance(source, Mapping) and source.get("path") else None


def _matching(recorded: Sequence[Mapping[str, Any]], loaded: Sequence[Media], size: int) -> list[Picture]:
    """Thumbnails of the loaded images, each checked against the key the run recorded at that position."""
    if not recorded:  # nothing to check against
        return [picture(m, None, size) for m in loaded]
    return [picture(loaded[i], rec.get("key"), size) if i < len(loaded) else Picture(reason="not in the data")
            for i, rec in enumerate(recorded)]


def picture(media: Media, key: str | None, size: int) -> Picture:
    """One thumbnail, or a placeholder naming why: other bytes than the run judged, unreadable or corrupt."""
    try:
        if key is not None and media.key != key:
            return Picture(reason="different image than the run judged (key mismatch)")
        return thumbnail(media.read_bytes(), size)
    except Exception as exc:  # one broken image must not stop the page; its placeholder says what broke
        return Picture(reason=_reason(exc))


def thumbnail(data: bytes, size: int) -> Picture:
    # open_image reads the header only and refuses a decompression bomb before any pixel is decoded
    try:
        with open_image(data, "for the thumbnail") as img:
            img.thumbnail((size, size))  # JPEGs are decoded at a reduced scale (draft), not at full size
            flat = _flatten(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"corrupt image: {exc}") from None
    buf = io.BytesIO()
    flat.save(buf, "JPEG", quality=JPEG_QUALITY)
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Picture(uri=uri, width=flat.width, height=flat.height)


def _flatten(img: Any) -> Any:
    """RGB on white: JPEG has no alpha, and dropping it would show whatever colour transparent pixels hold."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return img.convert("RGB")


def _thumbnailed(pairs: Iterable[tuple[SampleResult, Sample]], size: int, images: Path | None = None
                 ) -> Iterator[tuple[SampleResult, Pictures]]:
    """Thumbnails made by a few threads (decoding releases the GIL), yielded in order, a bounded window ahead."""
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="report-thumb") as pool:
        pending: deque[tuple[SampleResult, Future[Pictures]]] = deque()
        for result, sample in pairs:
            pending.append((result, pool.submit(sample_pictures, sample, result, size, images)))
            if len(pending) >= _WINDOW_PER_WORKER * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _matched(samples: Iterable[Sample], results: Mapping[str, SampleResult], n_cards: int
             ) -> Iterator[tuple[SampleResult, Sample]]:
    """Samples of the log in task order; stops as soon as there are enough (the rest of the data is not read)."""
    wanted = set(results)
    found = 0
    if n_cards == 0:
        return
    for sample in samples:
        if sample.id in wanted:
            wanted.discard(sample.id)
            yield results[sample.id], sample
            found += 1
            if found >= n_cards or not wanted:
                return


# --------------------------------------------------------------------------------------------------- cards


def _write_cards(body: IO[str], results: Mapping[str, SampleResult], samples: Iterable[Sample], n_cards: int,
                 thumb: int, problems: list[str], pairwise: bool | None,
                 images: Path | None = None) -> list[SampleResult]:
    progress = Progress(n_cards, "report cards (failed = a placeholder image)")
    written: list[SampleResult] = []

    def emit(result: SampleResult, pictures: Pictures) -> None:
        body.write(card(result, pictures, len(written), pairwise))
        written.append(result)
        progress.update(failed=any(p.reason for p in (*pictures[0], *pictures[1])))

    for result, pictures in _thumbnailed(_matched(samples, results, n_cards), thumb, images):
        emit(result, pictures)
    seen = {r.sample_id for r in written}
    rest = [r for r in results.values() if r.sample_id not in seen][: n_cards - len(written)]
    if rest and not problems:
        problems.append(f"{len(rest)} sample(s) of the log are not in the task's data as loaded now: "
                        "their images are placeholders")
    why = "data unavailable (see the banner)" if problems else "not in the data"
    for result in rest:
        emit(result, _placeholders(result, why))
    progress.close()
    return written


def _placeholders(result: SampleResult, reason: str) -> Pictures:
    return ([Picture(reason=reason) for _ in result.source], [Picture(reason=reason) for _ in result.candidates])


def _pairwise_mode(record: Mapping[str, Any]) -> bool | None:
    mode = (record.get("protocol") or {}).get("mode")
    return True if mode == "pairwise" else False if mode == "pointwise" else None


def letter(index: int) -> str:
    return chr(ord("A") + index) if 0 <= index < 26 else f"#{index + 1}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def num(value: object) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:g}" if float(value).is_integer() else f"{value:.4g}"


def _spread(result: SampleResult) -> SampleResult:
    """A generation record's trial judges one image (``order`` is its index) and its prediction holds that image's
    score alone: spread over the sample's images, so the page reads it like any other trial's."""
    if result.label.kind is not LabelKind.NONE:
        return result
    n = len(result.candidates)
    trials = []
    for trial in result.trials:
        if trial.prediction is not None and trial.prediction.scores and trial.order and trial.order[0] < n:
            scores: list[float | None] = [None] * n
            scores[trial.order[0]] = trial.prediction.scores[0]
            trial = dataclasses.replace(trial, prediction=dataclasses.replace(trial.prediction, scores=tuple(scores)))
        trials.append(trial)
    return dataclasses.replace(result, trials=tuple(trials))


def card(result: SampleResult, pictures: Pictures, index: int, pairwise: bool | None) -> str:
    result = _spread(result)
    state = sample_state(result)
    category = result.category or ""
    parts = [
        f'<article class="card st-{state}" id="card-{index}" data-status="{state}" '
        f'data-category="{_e(category)}" data-id="{_e(result.sample_id)}">',
        _card_header(result, state),
        _meta_line(result.meta),
        f'<p class="prompt" data-s>{_e(result.prompt or "")}</p>',
        _images(result, pictures),
        _label_line(result.label),
    ]
    if result.skipped:
        parts.append(f'<p class="skipped"><b>skipped</b> {_e(result.skipped)}</p>')
    if result.trials:
        parts.append(_trials_table(result))
        parts += [_trial_detail(i, t, len(result.candidates), pairwise) for i, t in enumerate(result.trials)]
    parts.append("</article>\n")
    return "\n".join(p for p in parts if p)


def _card_header(result: SampleResult, state: str) -> str:
    failure = f' <span class="failure">{_e(result.failure.value)}</span>' if result.failure else ""
    category = f'<span class="category">{_e(result.category)}</span>' if result.category else ""
    return (f'<header><span class="badge {state}">{state}</span> <code class="sid" data-s>{_e(result.sample_id)}'
            f"</code> {category}{failure}</header>")


def _meta_line(meta: Mapping[str, Any]) -> str:
    items = [f"{_e(k)}={_e(v)}" for k, v in meta.items() if k != "category"]
    return f'<p class="meta">{" · ".join(items)}</p>' if items else ""


def _images(result: SampleResult, pictures: Pictures) -> str:
    sources, candidates = pictures
    figures = [_figure(p, "source" if len(sources) == 1 else f"source {i + 1}", "source", "source")
               for i, p in enumerate(sources)]
    human = _human_marks(result.label, len(candidates))
    for i, pic in enumerate(candidates):
        shown = _candidate_scores(result.trials, i)
        if result.label.kind is LabelKind.NONE:  # one trial per image: the others' dashes say nothing
            shown = [s for s in shown if s is not None]
        scores = " · ".join(num(s) if s is not None else "—" for s in shown)
        caption = f'<span class="letter">{letter(i)}</span>' + (f" score {scores}" if scores else "")
        if human[i]:
            caption += f' <span class="human-mark">{_e(human[i])}</span>'
        figures.append(_figure(pic, caption, "candidate human" if human[i] == "human pick" else "candidate", letter(i)))
    return f'<div class="images">{"".join(figures)}</div>'


def _figure(pic: Picture, caption: str, cls: str, alt: str) -> str:
    """``caption`` is HTML (callers escape its text)."""
    if pic.uri is None:
        image = f'<div class="placeholder" role="img" aria-label="no image">{_e(pic.reason or "no image")}</div>'
    else:
        image = f'<img class="thumb" src="{pic.uri}" width="{pic.width}" height="{pic.height}" alt="{_e(alt)}">'
    return f'<figure class="{cls}">{image}<figcaption>{caption}</figcaption></figure>'


def _candidate_scores(trials: Sequence[Trial], index: int) -> list[float | None]:
    out: list[float | None] = []
    for trial in trials:
        scores = trial.prediction.scores if trial.prediction else ()
        out.append(scores[index] if index < len(scores) else None)
    return out if any(s is not None for s in out) else []


def _human_marks(label: Label, n: int) -> list[str]:
    marks = [""] * n
    if label.kind is LabelKind.WINNER and label.winner is not None and 0 <= label.winner < n:
        marks[label.winner] = "human pick"
    for i, rank in enumerate(label.ranks or ()):
        if i < n:
            marks[i] = f"human rank {num(rank)}"
    for i, score in enumerate(label.scores or ()):
        if i < n:
            marks[i] = f"human score {num(score)}"
    return marks


def _label_line(label: Label) -> str:
    if label.kind is LabelKind.WINNER and label.winner is not None:
        detail = f" {letter(label.winner)}"
    elif label.ranks is not None:
        detail = ": " + ", ".join(f"{letter(i)} {num(r)}" for i, r in enumerate(label.ranks))
    elif label.scores is not None:
        detail = ": " + ", ".join(f"{letter(i)} {num(s)}" for i, s in enumerate(label.scores))
    else:
        detail = ""
    original = f' · dataset label <q class="original">{_e(label.original)}</q>' if label.original is not None else ""
    return f'<p class="label"><b>human</b> <span class="kind">{_e(label.kind.value)}</span>{_e(detail)}{original}</p>'


def _trials_table(result: SampleResult) -> str:
    rows = []
    for i, trial in enumerate(result.trials):
        credit = result.correct[i] if i < len(result.correct) else None
        rows.append(
            f"<tr><td>{i + 1}</td><td>{_e(', '.join(letter(o) for o in trial.order))}</td>"
            f"<td>{_e(_answer(trial))}</td><td>{_e(_prediction(trial))}</td>"
            f'<td class="credit">{_e(_credit(credit, trial))}</td><td class="failure">{_e(_failure(trial))}</td></tr>'
        )
    head = ("<tr><th>trial</th><th>shown</th><th>answer (as shown)</th><th>prediction (sample order)</th>"
            "<th>credit</th><th>failure</th></tr>")
    return f'<table class="trials">{head}{"".join(rows)}</table>'


def _answer(trial: Trial) -> str:
    ok = [j for j in trial.judgements if j.ok]
    verdicts = [j.verdict.value for j in ok if j.verdict is not None]
    if verdicts:
        return ", ".join(verdicts)
    return ", ".join(num(s) for j in ok for s in j.scores) or "—"


def _prediction(trial: Trial) -> str:
    pred = trial.prediction
    if pred is None:
        return "—"
    scores = " · ".join(f"{letter(i)} {num(s)}" for i, s in enumerate(pred.scores) if s is not None)
    verdict = f"verdict {pred.verdict.value}" if pred.verdict is not None else ""
    return "; ".join(p for p in (verdict, scores) if p) or "—"


def _credit(credit: float | None, trial: Trial) -> str:
    if credit is None:
        return "—" if trial.failure is not None else "no credit"
    return "correct" if credit == 1 else "wrong" if credit == 0 else num(credit)


def _failure(trial: Trial) -> str:
    if trial.failure is None:
        return ""
    failed = next((j for j in trial.judgements if j.failure is not None), None)
    detail = failed.failure_detail if failed is not None and failed.failure_detail else ""
    return f"{trial.failure.value}: {detail}" if detail else trial.failure.value


def _trial_detail(index: int, trial: Trial, n: int, pairwise: bool | None) -> str:
    per_candidate = _by_candidate(trial, n, pairwise)
    parts = [f'<section class="trial"><h4>trial {index + 1} · shown {_e(", ".join(letter(o) for o in trial.order))}'
             "</h4>", _aspects_table(per_candidate, n)]
    for who, judgement in _texts(trial, per_candidate):
        prefix = f"{who}: " if who else ""
        if judgement.rationale:
            parts.append(f'<div class="rationale" data-s><b>{_e(prefix)}rationale</b> {_e(judgement.rationale)}</div>')
        if judgement.refined_prompt:
            parts.append(f'<div class="refined"><b>{_e(prefix)}refined prompt</b> {_e(judgement.refined_prompt)}</div>')
        if judgement.failure is not None and judgement.raw:
            parts.append(f"<details><summary>{_e(prefix)}raw response</summary>"
                         f"<pre>{_e(judgement.raw)}</pre></details>")
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _by_candidate(trial: Trial, n: int, pairwise: bool | None) -> dict[int, tuple[Judgement, Mapping[str, Any]]]:
    """Each candidate's judgement and aspect scores, mapped from shown positions back to the sample's order."""
    if pairwise is None:  # "auto" resolved per sample: one judgement for all candidates means pairwise
        pairwise = len(trial.judgements) < len(trial.order) or any(len(j.aspects) > 1 for j in trial.judgements)
    out: dict[int, tuple[Judgement, Mapping[str, Any]]] = {}
    for pos, original in enumerate(trial.order):
        if original >= n:
            continue
        if pairwise and trial.judgements:
            judgement = trial.judgements[0]
            aspects = judgement.aspects[pos] if pos < len(judgement.aspects) else {}
        elif pos < len(trial.judgements):
            judgement = trial.judgements[pos]
            aspects = judgement.aspects[0] if judgement.aspects else {}
        else:
            continue
        out[original] = (judgement, aspects)
    return out


def _texts(trial: Trial, per_candidate: Mapping[int, tuple[Judgement, Mapping[str, Any]]]
           ) -> list[tuple[str, Judgement]]:
    """Judgements whose text is shown: once each, named by candidate when each candidate was judged alone."""
    shared = len({id(j) for j, _ in per_candidate.values()}) <= 1
    if shared:
        return [("", j) for j in trial.judgements]
    named = [(letter(i), per_candidate[i][0]) for i in sorted(per_candidate)]
    listed = {id(j) for _, j in named}
    return named + [("", j) for j in trial.judgements if id(j) not in listed]


def _aspects_table(per_candidate: Mapping[int, tuple[Judgement, Mapping[str, Any]]], n: int) -> str:
    names: list[str] = []
    for _, aspects in per_candidate.values():
        names += [k for k in aspects if k not in names]
    if not names:
        return ""
    head = "<tr><th>aspect</th>" + "".join(f"<th>{letter(i)}</th>" for i in range(n)) + "</tr>"
    rows = []
    for name in names:
        cells = []
        for i in range(n):
            aspects = per_candidate[i][1] if i in per_candidate else {}
            cells.append(f'<td class="num">{_e(num(aspects[name])) if name in aspects else "—"}</td>')
        rows.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
    return f'<table class="aspects">{head}{"".join(rows)}</table>'


# --------------------------------------------------------------------------------------------------- page


def _head(record: Mapping[str, Any], run_dir: Path, problems: Sequence[str], shown: Sequence[SampleResult],
          n_logged: int, thumb: int) -> str:
    spec = record["spec"]
    title = f"{spec.get('task')} × {spec.get('model')} — rrbench report"
    css = CSS + f".placeholder {{ width: {thumb}px; height: {thumb}px; }}\n"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(css)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title>",
        f"<style>{css}</style>",
        "</head><body>",
        f"<h1>{_e(title)}</h1>",
        *[f'<p class="banner" role="alert">{_e(p)}</p>' for p in [*_partial(record), *problems]],
        _run_summary(record, run_dir),
        _metrics_section(record),
        _categories_section(record),
        _coverage_section(record),
        _filters(shown, n_logged),
        '<main class="cards">',
    ])


def _partial(record: Mapping[str, Any]) -> list[str]:
    """A banner when the run judged fewer or other samples than the registered benchmark: its numbers are not
    the benchmark's."""
    data = data_status(record)
    return [data.line()] if data.partial else []


def _tail(record: Mapping[str, Any]) -> str:
    return "\n".join([
        "</main>",
        f'<script type="application/json" id="run-record">{embed_json(record)}</script>',
        f"<script>{JS}</script>",
        "</body></html>\n",
    ])


def _csp(css: str) -> str:
    return ("default-src 'none'; img-src data:; "
            f"style-src '{_sha256(css)}'; script-src '{_sha256(JS)}'; base-uri 'none'; form-action 'none'")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def embed_json(obj: Any) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' can end the element or open a comment."""
    text = json.dumps(_finite(obj), ensure_ascii=False, default=str)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _finite(obj: Any) -> Any:
    """NaN and infinities as null: JSON.parse rejects them, and run.json may hold one (an empty metric)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _run_summary(record: Mapping[str, Any], run_dir: Path) -> str:
    spec, task = record["spec"], record.get("task") or {}
    protocol = record.get("protocol") or {}
    rows = [
        ("task", f"{spec.get('task')} (version {task.get('version', '?')}, {task.get('kind', '?')})"
                 + _args(spec.get("task_args"))),
        ("model", f"{spec.get('model')}" + _args(spec.get("model_args"))),
        ("protocol", f"{protocol.get('id')}: order {protocol.get('order')}, mode {protocol.get('mode')}, "
                     f"ties {protocol.get('tie_policy')}, failures {protocol.get('failure_policy')} (headline)"),
        ("status", str(record.get("status"))),
        ("run", str(run_dir)),
        ("data", str(spec.get("data") or (task.get("info") or {}).get("dataset") or "the task's own source")),
    ]
    if record.get("error"):
        rows.append(("error", str(record["error"])))
    if record.get("source_run"):
        rows.append(("rescored from", str(record["source_run"])))
    if record.get("finished_at") or record.get("updated_at"):
        rows.append(("finished", str(record.get("finished_at") or record.get("updated_at"))))
    items = "".join(f'<dt>{_e(k)}</dt><dd class="{_e(k.replace(" ", "-"))}">{_e(v)}</dd>' for k, v in rows)
    return f'<dl class="run">{items}</dl>'


def _args(args: Any) -> str:
    if not args:
        return ""
    return "; " + ", ".join(f"{k}={v}" for k, v in dict(args).items())


def _policy(m: Mapping[str, Any]) -> str:
    return "excluded" if m.get("failure_policy") == "excluded" else "as wrong"


def notes(m: Mapping[str, Any]) -> str:
    extra = m.get("extra") or {}
    return ", ".join(f"{k}={v}" for k, v in extra.items())


def _metrics_section(record: Mapping[str, Any]) -> str:
    overall = (record.get("metrics") or {}).get("overall") or []
    if not overall:
        return "<h2>Metrics</h2><p>No metrics recorded (the run has not finished a session).</p>"
    head = ("<tr><th>metric</th><th>ties</th><th>failures</th><th>value %</th><th>95% CI</th><th>n</th>"
            "<th>scored</th><th>failed</th><th>notes</th></tr>")
    rows = [
        f'<tr class="metric" data-metric="{_e(m.get("metric"))}" data-failure-policy="{_e(m.get("failure_policy"))}">'
        f"<td>{_e(m.get('metric'))}</td><td>{_e(m.get('tie_policy') or '')}</td><td>{_policy(m)}</td>"
        f'<td class="num value">{number(m)}</td><td class="ci">{_e(ci(m))}</td>'
        f'<td class="num n">{_e(_n(m))}</td>'
        f'<td class="num">{_e(m.get("n_scored", ""))}/{_e(m.get("n_total", ""))}</td>'
        f'<td class="num">{_e(m.get("n_failed", ""))}</td><td class="notes">{_e(notes(m))}</td></tr>'
        for m in overall
    ]
    return f'<h2>Metrics</h2><table class="metrics">{head}{"".join(rows)}</table>'


def _n(m: Mapping[str, Any]) -> str:
    """Samples, with the units counted when they differ (``24 (48 trials)``); older records give units only."""
    samples, units = m.get("n_samples"), m.get("n_units")
    if samples is None:
        return "" if units is None else str(units)
    unit = m.get("unit") or "units"
    return f"{samples}" if units in (None, samples) else f"{samples} ({units} {unit}s)"


def _categories_section(record: Mapping[str, Any]) -> str:
    by_category = (record.get("metrics") or {}).get("by_category") or {}
    if not by_category:
        return ""
    head = ("<tr><th rowspan=2>category</th><th rowspan=2>metric</th><th colspan=3>failures excluded</th>"
            "<th colspan=3>failures as wrong</th></tr><tr><th>value %</th><th>95% CI</th><th>n</th>"
            "<th>value %</th><th>95% CI</th><th>n</th></tr>")
    rows = []
    for category in sorted(by_category):
        for metric, pair in _by_metric(by_category[category]).items():
            cells = "".join(
                f'<td class="num value">{number(m)}</td><td>{_e(ci(m))}</td>'
                f'<td class="num">{_e(_n(m))}</td>' if m else "<td></td><td></td><td></td>"
                for m in (pair.get("excluded"), pair.get("wrong"))
            )
            rows.append(f'<tr class="category-row" data-category="{_e(category)}" data-metric="{_e(metric)}">'
                        f"<td>{_e(category)}</td><td>{_e(metric)}</td>{cells}</tr>")
    return f'<h2>Per category</h2><table class="categories">{head}{"".join(rows)}</table>'


def _by_metric(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for m in rows:
        out.setdefault(str(m.get("metric")), {})[str(m.get("failure_policy"))] = m
    return out


def _coverage_section(record: Mapping[str, Any]) -> str:
    counts = record.get("counts")
    if not counts:
        return ""
    kinds = ", ".join(f"{k} {v}" for k, v in sorted((counts.get("failed_by_kind") or {}).items()))
    expected = counts.get("expected")
    rows = [
        ("recorded", f"{counts.get('recorded')}" + (f" of {expected} expected" if expected is not None else "")),
        ("failed", f"{counts.get('failed', 0)}" + (f" ({kinds})" if kinds else "")),
        ("label-skipped", str(counts.get("label_skipped", 0))),
        ("missing", str(counts.get("missing", 0))),
    ]
    items = "".join(f'<dt>{_e(k)}</dt><dd class="{_e(k)}">{_e(v)}</dd>' for k, v in rows)
    return f'<h2>Coverage</h2><dl class="run coverage">{items}</dl>'


def _filters(shown: Sequence[SampleResult], n_logged: int) -> str:
    states = Counter(sample_state(r) for r in shown)
    buttons = [f'<button type="button" data-status-filter="all" aria-pressed="true">all ({len(shown)})</button>']
    buttons += [f'<button type="button" data-status-filter="{s}" aria-pressed="false">{s} ({states[s]})</button>'
                for s in STATES if s in ALWAYS_SHOWN or states[s]]
    categories = Counter(r.category or "" for r in shown)
    options = ['<option value="">all categories</option>'] + [
        f'<option value="c:{_e(c)}">{_e(c or "(no category)")} ({k})</option>' for c, k in sorted(categories.items())
    ]
    limited = f" (cards for {len(shown)} of the log's {n_logged} samples)" if len(shown) < n_logged else ""
    return (f'<h2>Samples{_e(limited)}</h2><nav class="filters">{"".join(buttons)}'
            f'<select id="f-category" aria-label="category">{"".join(options)}</select>'
            '<input id="f-search" type="search" placeholder="search id, prompt, rationale" aria-label="search">'
            f'<span id="shown">{len(shown)} of {len(shown)} samples shown</span></nav>')
