"""Monitors of an RL run: per-step statistics to JSONL (and TensorBoard / wandb through accelerate's trackers), a
held-out set judged at intervals by a second, different judge, a reward-hacking flag, plots and a summary page.

Files under ``out_dir``: ``monitor.jsonl`` (one line per logged step, ``"kind": "step"``, and one per held-out
evaluation, ``"kind": "heldout"``), ``plots/*.png`` (matplotlib, when installed) and ``summary.html``.

Reward hacking (``hacking_flags``): at each held-out evaluation i, take the last ``window`` evaluations and fit a
least-squares line to each series against the evaluation index: the train reward (the train judge's score of the
held-out images when the trainer passes it, else the mean of the logged per-step ``reward/mean`` since the previous
evaluation) and the second judge's mean score of the held-out images. The fitted change over the window is the
slope x (window - 1). Evaluation i is flagged when the train reward's fitted change is >= ``min_rise`` while the
second judge's is <= -``min_drop`` (each in its own score's units). Fewer than ``window`` evaluations: no flag.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import rrbench
from rrbench import UserError
from rrbench_train.rl.reward import RewardResult

JSONL = "monitor.jsonl"
SUMMARY = "summary.html"
TRAIN_KEY = "reward/mean"
TRACKERS = ("tensorboard", "wandb")


@dataclass
class MonitorConfig:
    """The ``monitor:`` block of an RL config (unknown keys refused)."""

    trackers: list[str] = field(default_factory=list)  # tensorboard | wandb (accelerate's trackers); [] = JSONL only
    project: str = "rrbench-rl"  # the trackers' run name
    plots: bool = True  # PNG plots and the summary page at finish() (plots need matplotlib)
    heldout_judge: str | None = None  # the second judge: an rrbench reward model, not the train reward's
    heldout_judge_args: dict[str, Any] = field(default_factory=dict)
    heldout_generation: str = "t2i"
    hacking_window: int = 4  # held-out evaluations per window
    hacking_min_rise: float = 0.01  # the train reward's fitted rise over the window
    hacking_min_drop: float = 0.01  # the second judge's fitted fall over the window

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "monitor") -> MonitorConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        config = cls(**data)
        for name in config.trackers:
            if name not in TRACKERS:
                raise UserError(f"{where}: unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
        if config.hacking_window < 2:
            raise UserError(f"{where}: 'hacking_window' must be >= 2 evaluations, not {config.hacking_window}")
        return config


# --------------------------------------------------------------------------------------------- statistics


def reward_stats(results: Sequence[RewardResult], prefix: str = "reward") -> dict[str, float]:
    """Mean and std of the values (failures left out), failure rate and count per kind, and per aspect the mean,
    std and N/A rate of the judged images' scores."""
    values = [r.value for r in results if r.ok and r.value is not None]
    out: dict[str, float] = {f"{prefix}/n": float(len(results)), f"{prefix}/failed": float(len(results) - len(values))}
    out[f"{prefix}/failure_rate"] = (len(results) - len(values)) / len(results) if results else 0.0
    if values:
        out[f"{prefix}/mean"], out[f"{prefix}/std"] = _mean_std(values)
    for r in results:
        if r.failure is not None:
            out[f"{prefix}/failed:{r.failure}"] = out.get(f"{prefix}/failed:{r.failure}", 0.0) + 1
    judged = [r for r in results if r.ok]
    for aspect in sorted({a for r in judged for a in r.aspects}):
        scores = [s for r in judged if (s := r.aspects.get(aspect)) is not None]
        out[f"{prefix}/aspect/{aspect}/na_rate"] = 1 - len(scores) / len(judged)
        if scores:
            out[f"{prefix}/aspect/{aspect}/mean"], out[f"{prefix}/aspect/{aspect}/std"] = _mean_std(scores)
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def fitted_change(series: Sequence[float]) -> float:
    """The least-squares line's change from the first to the last point (slope x (n - 1))."""
    n = len(series)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(series) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    sxy = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(series))
    return sxy / sxx * (n - 1)


def hacking_flags(train: Sequence[float], heldout: Sequence[float], window: int = 4, min_rise: float = 0.01,
                  min_drop: float = 0.01) -> list[bool]:
    """One flag per held-out evaluation (see the module docstring for the definition)."""
    if len(train) != len(heldout):
        raise ValueError(f"{len(train)} train rewards for {len(heldout)} held-out scores")
    flags = []
    for i in range(len(train)):
        if i + 1 < window:
            flags.append(False)
            continue
        rise = fitted_change(train[i + 1 - window:i + 1])
        fall = -fitted_change(heldout[i + 1 - window:i + 1])
        flags.append(rise >= min_rise and fall >= min_drop)
    return flags


# --------------------------------------------------------------------------------------------- the monitor


class Monitor:
    """``log_step`` each optimizer step, ``heldout`` at the evaluation interval, ``finish`` at the end.

    Only the main process writes (``is_main``); the others accept the same calls and do nothing. ``resume_step``:
    the run resumes after that step, so lines of later steps (written by the killed run) are dropped."""

    def __init__(self, out_dir: str | Path, config: MonitorConfig | Mapping[str, Any] | None = None, *,
                 train_model: str | None = None, accelerator: Any = None, is_main: bool = True,
                 resume_step: int | None = None) -> None:
        self.config = config if isinstance(config, MonitorConfig) else MonitorConfig.from_dict(config)
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / JSONL
        self.is_main = is_main
        self._accelerator = accelerator
        self._trackers: list[Any] = []
        self._judge: Any = None
        self._check_judge(train_model)
        self.lines: list[dict[str, Any]] = []
        if not is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.lines = read_lines(self.path)
        if resume_step is not None:
            self.lines = [line for line in self.lines if line.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(line) + "\n" for line in self.lines))
        if accelerator is None and self.config.trackers:
            self._trackers = _start_trackers(self.config, self.out_dir)

    def _check_judge(self, train_model: str | None) -> None:
        judge = self.config.heldout_judge
        if judge is not None and train_model is not None and judge == train_model:
            raise UserError(f"monitor: the held-out judge must differ from the train reward's model ({judge}); a "
                            "reward is hacked exactly where its own judgement is wrong")

    # ------------------------------------------------------------------------------------------ logging
    def log_step(self, step: int, stats: Mapping[str, float]) -> None:
        """One optimizer step's statistics (reward_stats(...), KL, ratio, loss, ...)."""
        self._write({"kind": "step", "step": step, "time": time.time(), **_numbers(stats)})

    def heldout(self, step: int, prompts: Sequence[str], images: Sequence[Any],
                sources: Sequence[Sequence[Any]] | None = None,
                train_scores: Sequence[float | None] | None = None) -> dict[str, float]:
        """Judge the held-out images (made by the current policy with fixed seeds) with the second judge, log the
        result and the hacking flag. ``train_scores``: the train reward of the same images, when the trainer has
        it (then the flag compares two judges of the same images)."""
        if not self.is_main:
            return {}
        if self.config.heldout_judge is None:
            raise UserError("monitor: held-out evaluation needs 'heldout_judge' (a second rrbench reward model)")
        if self._judge is None:
            self._judge = rrbench.RewardFunction(self.config.heldout_judge, generation=self.config.heldout_generation,
                                                 **self.config.heldout_judge_args)
        judgements = self._judge.judge(prompts, images, sources)
        scores = [j.scores[0] if j.ok and j.scores and j.scores[0] is not None else None for j in judgements]
        return self.heldout_scores(step, scores, train_scores)

    def heldout_scores(self, step: int, judge_scores: Sequence[float | None],
                       train_scores: Sequence[float | None] | None = None) -> dict[str, float]:
        """Log one held-out evaluation from its scores (None = failed) and return what was logged."""
        valid = [float(s) for s in judge_scores if s is not None and math.isfinite(s)]
        out: dict[str, float] = {"heldout/n": float(len(judge_scores)),
                                 "heldout/failed": float(len(judge_scores) - len(valid))}
        if valid:
            out["heldout/judge_mean"], out["heldout/judge_std"] = _mean_std(valid)
        train_valid = [float(s) for s in train_scores or () if s is not None and math.isfinite(s)]
        if train_valid:
            out["heldout/train_mean"] = sum(train_valid) / len(train_valid)
        elif (since := self._train_since_last_eval(step)) is not None:
            out["heldout/train_mean"] = since
        line = {"kind": "heldout", "step": step, "time": time.time(), **out}
        series = [*self.heldout_lines(), line]
        usable = [s for s in series if "heldout/judge_mean" in s and "heldout/train_mean" in s]
        if line in usable:
            flags = hacking_flags([s["heldout/train_mean"] for s in usable], [s["heldout/judge_mean"] for s in usable],
                                  self.config.hacking_window, self.config.hacking_min_rise,
                                  self.config.hacking_min_drop)
            out["heldout/hacking"] = line["heldout/hacking"] = float(flags[-1])
        self._write(line)
        return out

    def heldout_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("kind") == "heldout"]

    def hacking_steps(self) -> list[int]:
        return [int(line["step"]) for line in self.heldout_lines() if line.get("heldout/hacking")]

    def _train_since_last_eval(self, step: int) -> float | None:
        last = max((int(line["step"]) for line in self.heldout_lines()), default=-1)
        values = [float(line[TRAIN_KEY]) for line in self.lines
                  if line.get("kind") == "step" and last < line["step"] <= step
                  and isinstance(line.get(TRAIN_KEY), int | float) and math.isfinite(line[TRAIN_KEY])]
        return sum(values) / len(values) if values else None

    def _write(self, line: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self.lines.append(line)
        with self.path.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        values = {k: v for k, v in line.items() if k not in ("kind", "step", "time")}
        if self._accelerator is not None:
            self._accelerator.log(values, step=line["step"])
        for tracker in self._trackers:
            tracker.log(values, step=line["step"])

    def finish(self) -> Path | None:
        """Plots and the summary page; the trackers and the held-out judge closed. The summary's path."""
        for tracker in self._trackers:
            tracker.finish()
        self._trackers = []
        if self._judge is not None:
            self._judge.close()
            self._judge = None
        if not self.is_main:
            return None
        return write_summary(self.out_dir, plots=self.config.plots, config=self.config)


def progress_line(step: int, end: int, stats: Mapping[str, float], step_s: float | None) -> str:
    """The console's line for one optimizer step: reward, failures, loss, KL, pace and what is left; the held-out
    figures and a hacking warning when this step evaluated them."""
    parts = [f"step {step}/{end}"]
    if "reward/mean" in stats:
        parts.append(f"reward {stats['reward/mean']:.4f} ± {stats.get('reward/std', 0.0):.4f}")
    if stats.get("reward/failed"):
        parts.append(f"failed {stats['reward/failed']:.0f}/{stats.get('reward/n', 0):.0f}")
    for key, name in (("loss_total", "loss"), ("kl", "kl")):
        if key in stats and math.isfinite(stats[key]):
            parts.append(f"{name} {stats[key]:.3g}")
    if stats.get("nan_skipped"):
        parts.append("non-finite loss: step skipped")
    if "heldout/judge_mean" in stats:
        parts.append(f"held-out judge {stats['heldout/judge_mean']:.4f}")
    elif "heldout/mean" in stats:
        parts.append(f"held-out {stats['heldout/mean']:.4f}")
    if stats.get("heldout/hacking"):
        parts.append("REWARD HACKING? train reward up, held-out judge down (see summary.html)")
    if step_s is not None:
        left = max(end - step, 0) * step_s
        parts.append(f"{step_s:.1f} s/step, {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d} left")
    return " · ".join(parts)


def _numbers(stats: Mapping[str, Any]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for key, value in stats.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"monitor: {key!r} is {type(value).__name__}, not a number")
        out[str(key)] = float(value) if math.isfinite(value) else str(value)  # JSON has no NaN: kept as text
    return out


def _start_trackers(config: MonitorConfig, out_dir: Path) -> list[Any]:
    from accelerate import tracking

    trackers: list[Any] = []
    for name in config.trackers:
        if name == "tensorboard":
            if not tracking.is_tensorboard_available():
                raise UserError("monitor: tracker 'tensorboard' needs the tensorboard package (pip install "
                                "tensorboard)")
            trackers.append(tracking.TensorBoardTracker(config.project, out_dir / "tensorboard"))
        else:
            if not tracking.is_wandb_available():
                raise UserError("monitor: tracker 'wandb' needs the wandb package (pip install wandb)")
            trackers.append(tracking.WandBTracker(config.project))
    for tracker in trackers:
        if hasattr(tracker, "start"):
            tracker.start()
    return trackers


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSONL lines; a torn last line (a kill mid-write) is ignored."""
    if not path.exists():
        return []
    out = []
    for text in path.read_text().splitlines():
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return out


# ----------------------------------------------------------------------------------------- plots and page


def write_plots(out_dir: Path, lines: Sequence[Mapping[str, Any]]) -> list[Path]:
    """One PNG per panel (rewards, aspects, failures, KL/ratio/loss, held-out); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    steps = [line for line in lines if line.get("kind") == "step"]
    keys = sorted({k for line in steps for k, v in line.items() if isinstance(v, int | float)} - {"step", "time"})
    panels = {
        "reward": [k for k in keys if k in ("reward/mean", "reward/std")],
        "aspects": [k for k in keys if k.startswith("reward/aspect/") and k.endswith("/mean")],
        "failures": [k for k in keys if k == "reward/failure_rate"],
        "training": [k for k in keys if not k.startswith("reward/")],
    }
    (out_dir / "plots").mkdir(exist_ok=True)
    written = []
    for name, names in panels.items():
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for key in names:
            points = [(line["step"], line[key]) for line in steps if isinstance(line.get(key), int | float)]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key, linewidth=1)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "plots" / f"{name}.png", plt))
    held = [line for line in lines if line.get("kind") == "heldout" and "heldout/judge_mean" in line]
    if held:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for key, label in (("heldout/judge_mean", "held-out judge"), ("heldout/train_mean", "train reward")):
            points = [(line["step"], line[key]) for line in held if key in line]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        for line in held:
            if line.get("heldout/hacking"):
                ax.axvline(line["step"], color="red", alpha=0.3)
        ax.set_xlabel("step")
        ax.set_title("held-out (red: hacking flagged)")
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / "plots" / "heldout.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_summary(out_dir: str | Path, plots: bool = True, config: MonitorConfig | None = None) -> Path:
    """``summary.html`` from ``monitor.jsonl``: last/min/max of each statistic, the held-out evaluations with their
    hacking flags, and the plots."""
    out_dir = Path(out_dir)
    lines = read_lines(out_dir / JSONL)
    images = write_plots(out_dir, lines) if plots else []
    steps = [line for line in lines if line.get("kind") == "step"]
    held = [line for line in lines if line.get("kind") == "heldout"]
    keys = sorted({k for line in steps for k, v in line.items() if isinstance(v, int | float)} - {"step", "time"})
    flagged = [line["step"] for line in held if line.get("heldout/hacking")]
    parts = ["<!doctype html><meta charset='utf-8'><title>RL run summary</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}.flag{color:#b00;font-weight:bold}</style>",
             f"<h1>RL run: {html.escape(str(out_dir.name))}</h1>",
             f"<p>{len(steps)} steps logged, {len(held)} held-out evaluations.</p>"]
    if flagged:
        parts.append(f"<p class='flag'>Reward hacking flagged at step(s) {', '.join(map(str, flagged))}: the train "
                     "reward rose while the held-out judge fell.</p>")
    elif held:
        parts.append("<p>No reward hacking flagged.</p>")
    if config is not None:
        parts.append(f"<p>Hacking rule: window {config.hacking_window} evaluations, train rise &ge; "
                     f"{config.hacking_min_rise}, held-out fall &ge; {config.hacking_min_drop}.</p>")
    parts.append("<h2>Statistics</h2><table><tr><th>statistic</th><th>last</th><th>min</th><th>max</th></tr>")
    for key in keys:
        values = [line[key] for line in steps if isinstance(line.get(key), int | float)]
        parts.append(f"<tr><td>{html.escape(key)}</td><td>{values[-1]:.4g}</td><td>{min(values):.4g}</td>"
                     f"<td>{max(values):.4g}</td></tr>")
    parts.append("</table>")
    if held:
        parts.append("<h2>Held-out evaluations</h2><table><tr><th>step</th><th>judge mean</th><th>train mean</th>"
                     "<th>failed</th><th>hacking</th></tr>")
        for line in held:
            cells = [_cell(line.get(k)) for k in ("heldout/judge_mean", "heldout/train_mean", "heldout/failed")]
            flag = "<span class='flag'>yes</span>" if line.get("heldout/hacking") else "no"
            parts.append(f"<tr><td>{line['step']}</td>{''.join(f'<td>{c}</td>' for c in cells)}<td>{flag}</td></tr>")
        parts.append("</table>")
    for image in images:
        parts.append(f"<h3>{html.escape(image.stem)}</h3><img src='plots/{html.escape(image.name)}'>")
    if config is not None:
        parts.append(f"<h2>Monitor config</h2><pre>{html.escape(json.dumps(asdict(config), indent=1))}</pre>")
    path = out_dir / SUMMARY
    path.write_text("\n".join(parts) + "\n")
    return path


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"
