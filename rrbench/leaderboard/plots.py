"""Leaderboard plots from run directories: headline accuracy with CIs, critic aspect scores, position bias.

Each plot is a thin drawing layer over a plain function that reads one run directory and returns the numbers it
draws (``headline``, ``aspect_counts``, ``position_bias``), so tests check values, not pixels. matplotlib is an
optional dependency (``rrbench[plots]``), imported only when a figure is drawn. Output is deterministic (fixed SVG
hash salt, no dates or software versions in the files, sorted tasks and judges) because the generated files live
in git and a rebuild with the same runs must not change a byte.
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench.leaderboard.tables import Table
from rrbench.metrics import MetricResult, predicted_class
from rrbench.metrics._core import SCORE
from rrbench.record import read_run
from rrbench.store import load_results
from rrbench.types import LabelKind, SampleResult, Trial, UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PREFERRED, REJECTED = "preferred", "rejected"
SIDES = (PREFERRED, REJECTED)
SCORE_BINS = ("1", "2", "3", "4")
NA, MISSING = "N/A", "missing"  # the critic said "not applicable" / the aspect was absent from its answer
BINS = (*SCORE_BINS, NA, MISSING)
CRITIC_SCALE = (1.0, 4.0)
A_FIRST, B_FIRST = (0, 1), (1, 0)
_PLOT_FILES = re.compile(r"^(accuracy-.+|aspects-.+|dimensions-.+|position-bias)\.(png|svg)$")
_SPEC_FLAGS = {"task_args": "-T", "model_args": "-M"}  # other spec fields print as --field-name


# --------------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunRef:
    """What the plots need to name a run: task, model and the spec that tells two runs of one model apart."""

    path: Path
    task: str
    version: str
    model: str
    spec: Mapping[str, Any]
    spec_hash: str
    record: Mapping[str, Any]  # run.json, read once per build

    @property
    def both_orders(self) -> bool:
        """Judged in both orders: the only runs whose logs can show position bias (so only theirs are read)."""
        return (self.record.get("protocol") or {}).get("order") == "both"

    @property
    def task_key(self) -> tuple[str, str]:
        return self.task, self.version


def describe(run_dir: Path) -> RunRef:
    record = read_run(run_dir)
    task, model = record.get("task") or {}, record.get("model") or {}
    spec = record.get("spec") or {}
    return RunRef(run_dir, str(task.get("name", spec.get("task"))), str(task.get("version", "?")),
                  str(model.get("name", spec.get("model"))), spec, str(record.get("spec_hash", "")), record)


def spec_items(spec: Mapping[str, Any]) -> list[str]:
    """The spec as the command-line flags that would ask for it (task and model names left out)."""
    items: list[str] = []
    for key, value in spec.items():
        if key in ("task", "model") or value is None:
            continue
        if key in _SPEC_FLAGS and isinstance(value, Mapping):
            items += [f"{_SPEC_FLAGS[key]} {k}={v}" for k, v in sorted(value.items())]
        else:
            items.append(f"--{key.replace('_', '-')} {value}")
    return items


def judge_labels(refs: Iterable[RunRef]) -> dict[Path, str]:
    """Model names, with the spec items that differ where one task has several runs of one model."""
    groups: dict[tuple[str, str, str], list[RunRef]] = defaultdict(list)
    for ref in refs:
        groups[(*ref.task_key, ref.model)].append(ref)
    labels: dict[Path, str] = {}
    for members in groups.values():
        items = {ref.path: spec_items(ref.spec) for ref in members}
        shared = set.intersection(*(set(v) for v in items.values()))
        for ref in members:
            extra = [i for i in items[ref.path] if i not in shared]
            labels[ref.path] = f"{ref.model} ({', '.join(extra)})" if extra else ref.model
    # Two copies of one spec (from two output folders) still need two names: the folder that holds each.
    taken = list(labels.values())
    return {p: f"{lab} [{p.parent.name}]" if taken.count(lab) > 1 else lab for p, lab in labels.items()}


# --------------------------------------------------------------------------------------------------- numbers


def headline(run_dir: Path) -> MetricResult:
    """The protocol's first metric, failures excluded, as recorded in run.json."""
    return _headline(read_run(run_dir), run_dir)


def _headline(record: Mapping[str, Any], run_dir: Path) -> MetricResult:
    metrics = (record.get("protocol") or {}).get("metrics") or []
    if not metrics:
        raise UserError(f"{run_dir}: run.json names no metric in protocol.metrics")
    for entry in (record.get("metrics") or {}).get("overall") or []:
        if entry.get("metric") == metrics[0] and entry.get("failure_policy") == "excluded":
            return MetricResult.from_json(entry)
    raise UserError(f"{run_dir}: run.json has no '{metrics[0]}' (failures excluded) in metrics.overall")


@dataclass(frozen=True)
class AspectCounts:
    """Per aspect, per side (preferred / rejected), how many judged candidates got each score bin.

    Bins are ``1``..``4`` (a decimal score such as 3.5 counts in the nearest bin, halves upward), ``N/A`` and
    ``missing`` (the aspect was absent from that answer: unreadable, not "not applicable"). Every successful trial
    of a sample with a winner label counts once, so ``--order both`` counts each candidate twice.
    """

    counts: dict[str, dict[str, dict[str, int]]]
    means: dict[str, dict[str, float | None]]
    n_samples: int
    n_trials: int


def aspect_counts(run_dir: Path) -> AspectCounts | None:
    """None unless the run is a critic's: per-aspect scores that all lie on the 1-4 scale."""
    results = load_results(run_dir)
    if not _is_critic(results):
        return None
    names = sorted({name for per in _trial_aspects(results) for aspects in per for name in aspects})
    counts = {n: {side: dict.fromkeys(BINS, 0) for side in SIDES} for n in names}
    scores: dict[str, dict[str, list[float]]] = {n: {side: [] for side in SIDES} for n in names}
    samples: set[str] = set()
    n_trials = 0
    for result in results:
        if result.label.kind is not LabelKind.WINNER:
            continue
        for trial in result.trials:
            per = _shown_aspects(trial)
            if per is None:
                continue
            samples.add(result.sample_id)
            n_trials += 1
            for original, aspects in zip(trial.order, per, strict=True):
                side = PREFERRED if original == result.label.winner else REJECTED
                for name in names:
                    counts[name][side][_bin(aspects, name)] += 1
                    if (value := aspects.get(name)) is not None:
                        scores[name][side].append(value)
    means = {n: {side: sum(v) / len(v) if v else None for side, v in scores[n].items()} for n in names}
    return AspectCounts(counts=counts, means=means, n_samples=len(samples), n_trials=n_trials)


def _shown_aspects(trial: Trial) -> list[Mapping[str, float | None]] | None:
    """One aspect mapping per shown position, or None for a failed trial or one whose answers carry none.

    A pairwise critic gives one judgement with a mapping per candidate, a pointwise one a judgement per candidate.
    """
    if trial.failure is not None:
        return None
    per = [aspects for j in trial.judgements for aspects in j.aspects]
    return per if per and len(per) == len(trial.order) else None


def _trial_aspects(results: Sequence[SampleResult]) -> Iterable[list[Mapping[str, float | None]]]:
    for result in results:
        for trial in result.trials:
            per = _shown_aspects(trial)
            if per is not None:
                yield per


def _is_critic(results: Sequence[SampleResult]) -> bool:
    # classical-iqa also records "aspects", as raw measurements on unbounded scales: the 1-4 check keeps them out.
    scores = [v for per in _trial_aspects(results) for a in per for v in a.values() if v is not None]
    low, high = CRITIC_SCALE
    return bool(scores) and all(isinstance(v, int | float) and low <= v <= high for v in scores)


def _bin(aspects: Mapping[str, float | None], name: str) -> str:
    if name not in aspects:
        return MISSING
    value = aspects[name]
    return NA if value is None else str(int(value + 0.5))  # on the 1-4 scale: nearest bin, halves upward


@dataclass(frozen=True)
class Rate:
    """``hits`` out of ``n`` (hits may be fractional: some tie policies give half credit)."""

    hits: float
    n: int

    @property
    def value(self) -> float | None:
        return self.hits / self.n if self.n else None


@dataclass(frozen=True)
class PositionBias:
    """Agreement with the human label by which candidate was shown first, and order consistency.

    ``a_first`` / ``b_first``: mean per-trial credit (samples.jsonl ``correct``) of the trials that showed the
    dataset's first / second candidate first, failed or unscored trials excluded. ``consistent``: samples whose two
    trials both succeeded and predicted the same winner (or the same tie kind). ``first_shown``: of the successful
    trials that named a winner (ties left out), how many picked the image shown first; 50% is no position bias.
    """

    a_first: Rate
    b_first: Rate
    consistent: Rate
    first_shown: Rate


def position_bias(run_dir: Path) -> PositionBias | None:
    """None unless some sample was judged in both orders ([0, 1] and [1, 0])."""
    both = [pair for pair in map(_both_orders, load_results(run_dir)) if pair is not None]
    if not both:
        return None
    return PositionBias(
        a_first=_credit_rate(first for first, _ in both),
        b_first=_credit_rate(second for _, second in both),
        consistent=_consistency(both),
        first_shown=_first_shown(both),
    )


# One trial as read from the log: its credit and its predicted class (None when failed or unusable).
_Judged = tuple[float | None, int | str | None]


def _both_orders(result: SampleResult) -> tuple[_Judged, _Judged] | None:
    credits = result.correct
    by_order = {t.order: _judged(t, credits[i] if i < len(credits) else None) for i, t in enumerate(result.trials)}
    if A_FIRST in by_order and B_FIRST in by_order:
        return by_order[A_FIRST], by_order[B_FIRST]
    return None


def _judged(trial: Trial, credit: float | None) -> _Judged:
    if trial.failure is not None or trial.prediction is None:
        return None, None
    return credit, predicted_class(trial.prediction)


def _credit_rate(trials: Iterable[_Judged]) -> Rate:
    credits = [credit for credit, _ in trials if credit is not None]
    return Rate(float(sum(credits)), len(credits))


def _consistency(pairs: Sequence[tuple[_Judged, _Judged]]) -> Rate:
    judged = [(a[1], b[1]) for a, b in pairs if a[1] is not None and b[1] is not None]
    return Rate(float(sum(a == b for a, b in judged)), len(judged))


def _first_shown(pairs: Sequence[tuple[_Judged, _Judged]]) -> Rate:
    # A-first trials show candidate 0 first, B-first trials candidate 1: picking it is a first-position win.
    picks = [(a[1], 0) for a, _ in pairs] + [(b[1], 1) for _, b in pairs]
    decided = [(cls, first) for cls, first in picks if cls in (0, 1)]
    return Rate(float(sum(cls == first for cls, first in decided)), len(decided))


# --------------------------------------------------------------------------------------------------- points


@dataclass(frozen=True)
class AccuracyPoint:
    label: str  # the judge, plus its protocol (and metric) when they differ within the figure
    result: MetricResult


def accuracy_points(runs: Sequence[Path]) -> dict[tuple[str, str], list[AccuracyPoint]]:
    """Per (task, version): one headline point per run, sorted by label; protocols named where they differ."""
    refs = [describe(r) for r in runs]
    return _accuracy_points(refs, judge_labels(refs))


def _accuracy_points(refs: Sequence[RunRef], labels: Mapping[Path, str]) -> dict[tuple[str, str], list[AccuracyPoint]]:
    by_task: dict[tuple[str, str], list[tuple[str, MetricResult]]] = defaultdict(list)
    for ref in refs:
        by_task[ref.task_key].append((labels[ref.path], _headline(ref.record, ref.path)))
    out: dict[tuple[str, str], list[AccuracyPoint]] = {}
    for key, entries in sorted(by_task.items()):
        metrics = {r.metric for _, r in entries}
        protocols = {r.protocol for _, r in entries}
        out[key] = sorted((AccuracyPoint(_tagged(label, r, len(metrics) > 1, len(protocols) > 1), r)
                           for label, r in entries), key=lambda p: p.label)
    return out


def _tagged(label: str, result: MetricResult, name_metric: bool, name_protocol: bool) -> str:
    tags = ([result.metric] if name_metric else []) + ([result.protocol] if name_protocol else [])
    return f"{label} [{', '.join(tags)}]" if tags else label


# --------------------------------------------------------------------------------------------------- drawing


def write_plots(runs: Sequence[Path], out_dir: Path, aspects: bool = True,
                dimension_tables: Sequence[Table] | None = None) -> list[Path]:
    """Draw every plot the runs support into ``out_dir`` (PNG and SVG each); returns the files written.

    ``aspects=False`` leaves out the per-run aspect figures, the one kind whose count grows with the runs.
    ``dimension_tables``: the generation benchmarks' per-dimension tables, drawn as grouped bars.

    Plot files of an earlier build that this build does not write again are removed, so a regenerated folder
    never keeps a figure of a run that is no longer selected.
    """
    _require_matplotlib()
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = [describe(r) for r in sorted(runs, key=str)]
    labels = judge_labels(refs)
    versions = _versions(refs)
    written: list[Path] = []
    for (task, version), points in _accuracy_points(refs, labels).items():
        stem = _safe(f"accuracy-{task}" + (f"-v{version}" if versions[task] > 1 else ""))
        written += _save(_draw_accuracy(task, version, points), out_dir, stem)
    for stem, ref, counts in _critic_runs(refs) if aspects else ():
        written += _save(_draw_aspects(ref, labels[ref.path], counts), out_dir, stem)
    for table in dimension_tables or ():
        written += _save(_draw_dimensions(table), out_dir, _safe(table.id))
    biases = _bias_groups(refs, labels)
    if biases:
        written += _save(_draw_position_bias(biases), out_dir, "position-bias")
    else:
        log.info("no run was judged in both orders (--order both): no position-bias plot")
    _remove_stale(out_dir, written)
    return written


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("plots need matplotlib: pip install 'rrbench[plots]'") from None


def _versions(refs: Sequence[RunRef]) -> dict[str, int]:
    versions: dict[str, set[str]] = defaultdict(set)
    for ref in refs:
        versions[ref.task].add(ref.version)
    return {task: len(v) for task, v in versions.items()}


def _critic_runs(refs: Sequence[RunRef]) -> list[tuple[str, RunRef, AspectCounts]]:
    found = [(ref, counts) for ref in refs if (counts := aspect_counts(ref.path)) is not None]
    stems = {ref.path: _safe(f"aspects-{ref.task}__{ref.model}") for ref, _ in found}
    taken = list(stems.values())
    # Two critic runs of one model on one task (or two versions of it) would share a name: the spec-hash prefix
    # of the run directory keeps them apart.
    named = [(s if taken.count(s := stems[ref.path]) == 1 else f"{s}__{ref.spec_hash[:10]}", ref, counts)
             for ref, counts in found]
    return sorted(named, key=lambda t: t[0])


def _bias_groups(refs: Sequence[RunRef], labels: Mapping[Path, str]) -> list[tuple[str, PositionBias]]:
    groups = [(f"{ref.task} v{ref.version}\n{labels[ref.path]}", bias)
              for ref in refs if ref.both_orders and (bias := position_bias(ref.path)) is not None]
    return sorted(groups, key=lambda g: g[0])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global figure manager
    return fig


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    with matplotlib.rc_context({"svg.hashsalt": "rrbench-plots"}):
        fig.savefig(png, dpi=110, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return [png, svg]


def _remove_stale(out_dir: Path, written: Sequence[Path]) -> None:
    for path in sorted(out_dir.iterdir()):
        if _PLOT_FILES.match(path.name) and path not in written:
            log.info("removing plot of an earlier build: %s", path)
            path.unlink()


def _draw_accuracy(task: str, version: str, points: Sequence[AccuracyPoint]) -> Figure:
    fig = _figure(8.0, 1.2 + 0.45 * len(points))
    ax = fig.add_subplot()
    ys = list(range(len(points)))[::-1]  # first label on top
    for k, point in enumerate(points):
        y, r = ys[k], point.result
        if r.value is None:
            ax.text(0.01, y, "no value", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
            continue
        low, high = (r.ci_low, r.ci_high) if r.ci_low is not None and r.ci_high is not None else (r.value, r.value)
        k_ = 1.0 if r.scale == SCORE else 100.0  # a score on the judge's own scale is drawn as it is
        ax.errorbar([k_ * r.value], [y], xerr=[[k_ * (r.value - low)], [k_ * (high - r.value)]],
                    fmt="o", color="C0", capsize=3)
        ax.text(1.01, y, f"{k_ * r.value:.2f} [{k_ * low:.2f}, {k_ * high:.2f}]  n={r.n_scored}",
                transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.set_yticks(ys, [p.label for p in points], fontsize=8)
    ax.set_ylim(-0.7, len(points) - 0.3)
    ax.set_xlabel(_accuracy_axis(points))
    ax.set_title(f"{task} v{version}: headline metric with 95% CI", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _accuracy_axis(points: Sequence[AccuracyPoint]) -> str:
    metrics = sorted({p.result.metric for p in points})
    protocols = sorted({p.result.protocol for p in points})
    metric = metrics[0] if len(metrics) == 1 else "headline metric (named per judge)"
    protocol = f"protocol {protocols[0]}" if len(protocols) == 1 else "protocols differ: named per judge"
    unit = "the judge's scale" if all(p.result.scale == SCORE for p in points) else "%"
    return f"{metric} ({unit}), failures excluded; {protocol}"


def _draw_aspects(ref: RunRef, label: str, data: AspectCounts) -> Figure:
    names = list(data.counts)
    any_missing = any(sides[side][MISSING] for sides in data.counts.values() for side in SIDES)
    bins = [*SCORE_BINS, NA, *([MISSING] if any_missing else [])]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = _figure(4.2 * cols, 3.0 * rows + 0.9)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        for offset, side, colour in ((-0.2, PREFERRED, "C2"), (0.2, REJECTED, "C3")):
            heights = [data.counts[name][side][b] for b in bins]
            bars = ax.bar([i + offset for i in range(len(bins))], heights, width=0.4, color=colour,
                          label=f"human-{side} candidate")
            ax.bar_label(bars, fontsize=7)
        ax.set_xticks(range(len(bins)), bins)
        ax.set_title(f"{name}\nmean {_mean_text(data.means[name])}", fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel("candidates")
        ax.margins(y=0.15)  # room for the count labels
    handles, legends = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, legends, loc="lower center", ncols=2, fontsize=8)
    fig.suptitle(f"{ref.task} v{ref.version} · {label}: aspect scores, human-preferred vs rejected\n"
                 f"({data.n_samples} samples with a winner, {data.n_trials} judged trials)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _mean_text(means: Mapping[str, float | None]) -> str:
    values = ("–" if means[side] is None else f"{means[side]:.2f}" for side in SIDES)
    return " vs ".join(values) + " (preferred vs rejected)"


_BIAS_BARS = (("a_first", "agrees with humans, A shown first", "C0"),
              ("b_first", "agrees with humans, B shown first", "C1"),
              ("consistent", "same winner in both orders", "C7"))


def _draw_position_bias(groups: Sequence[tuple[str, PositionBias]]) -> Figure:
    fig = _figure(max(6.0, 2.4 * len(groups)), 5.0)
    ax = fig.add_subplot()
    width = 0.8 / len(_BIAS_BARS)
    for k, (field_name, legend, colour) in enumerate(_BIAS_BARS):
        rates: list[Rate] = [getattr(bias, field_name) for _, bias in groups]
        xs = [g + (k - 1) * width for g in range(len(groups))]
        bars = ax.bar(xs, [100 * (r.value or 0.0) for r in rates], width=width, color=colour, label=legend)
        ax.bar_label(bars, [f"{100 * r.value:.0f}\nn={r.n}" if r.value is not None else f"–\nn={r.n}"
                            for r in rates], fontsize=7)
    # judge labels with their flags are long: wrapped to the group's width so neighbours never overlap
    ax.set_xticks(range(len(groups)), ["\n".join(textwrap.wrap(name, 26)) for name, _ in groups], fontsize=8)
    ax.set_ylim(0, 118)
    ax.set_ylabel("% of samples (failed trials excluded)")
    ax.set_title("Position bias: runs judged in both orders (A = the dataset's first candidate)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right", ncols=3)
    return fig


def _draw_dimensions(table: Table) -> Figure:
    """One group of bars per dimension (column), one bar per row (generator x judge): the breakdown at a glance."""
    names = [c.title for c in table.columns]
    rows = table.rows
    fig = _figure(max(6.0, 0.5 * len(names) * max(1, len(rows)) + 2), 4.0)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(rows))
    for k, row in enumerate(rows):
        values = [(row.cells[c.id].value or 0.0) if c.id in row.cells else 0.0 for c in table.columns]
        ax.bar([i + k * width for i in range(len(names))], values, width, label=f"{row.judge} ({row.setting})")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=60, ha="right", fontsize=7)
    ax.set_title(table.title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return fig
