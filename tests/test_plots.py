"""Leaderboard plots: the numbers each plot draws, checked against counts made here from the run's own files.

Real runs of the `sanity` task (always-first, classical-iqa and the critic-shaped toy-critic) are made once through
``rrbench.cli.main``; the expected values are recounted from samples.jsonl lines with plain loops, never through
the code under test.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from rrbench import cli
from rrbench.leaderboard import plots
from rrbench.types import Judgement, Label, Prediction, SampleResult, Trial, UserError

pytest.importorskip("matplotlib", reason="plots need the plots extra")

CRITIC = Path(__file__).parent / "plugins" / "critic_models.py"
SMALL = ["--task", "sanity", "-T", "n=16", "-T", "size=64", "--no-cache", "--quiet"]


def _register_toy_critic() -> None:
    # The registry reads RRBENCH_PLUGINS once per process, maybe before this module; importing the file under the
    # registry's own module name registers toy-critic either way (the same definition twice is allowed).
    spec = importlib.util.spec_from_file_location("rrbench_plugin_critic_models", CRITIC)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


def _run(out: Path, *args: str) -> Path:
    before = set(out.iterdir()) if out.exists() else set()
    assert cli.main(["run", *SMALL, "--output", str(out), *args]) == 0
    (new,) = set(out.iterdir()) - before
    return new


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    _register_toy_critic()
    out = tmp_path_factory.mktemp("plot-runs") / "runs"
    return {
        "critic_both": _run(out, "--model", "toy-critic", "-M", "bias=1", "-M", "fail=0.25", "--order", "both"),
        "critic_fixed": _run(out, "--model", "toy-critic"),
        "first_both": _run(out, "--model", "always-first", "--order", "both"),
        "iqa_fixed": _run(out, "--model", "classical-iqa"),
    }


def _lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def _record(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


# --------------------------------------------------------------------------------------------------- headline


def test_headline_is_the_protocols_first_metric_with_failures_excluded(runs: dict[str, Path]) -> None:
    for name in ("critic_fixed", "first_both", "iqa_fixed"):  # fault-free runs: every trial's credit counts
        result = plots.headline(runs[name])
        record = _record(runs[name])
        assert (result.metric, result.failure_policy) == (record["protocol"]["metrics"][0], "excluded")
        assert result.protocol == record["protocol"]["id"]
        credits = [c for line in _lines(runs[name]) for c in line["correct"]]
        assert result.value == pytest.approx(sum(credits) / len(credits)), name
        (entry,) = [e for e in record["metrics"]["overall"] if e["failure_policy"] == "excluded"]
        assert (result.ci_low, result.ci_high, result.n_scored) == (entry["ci_low"], entry["ci_high"], 16)


def test_accuracy_points_name_the_judges_spec_and_the_protocols_that_differ(runs: dict[str, Path]) -> None:
    points = plots.accuracy_points(list(runs.values()))
    assert list(points) == [("sanity", "1")]
    labels = [p.label for p in points[("sanity", "1")]]
    assert labels == [
        "always-first [sanity-exact+order=both]",
        "classical-iqa [sanity-exact]",
        "toy-critic (-M bias=1, -M fail=0.25, --order both) [sanity-exact+order=both]",
        "toy-critic [sanity-exact]",
    ]
    one_protocol = plots.accuracy_points([runs["critic_fixed"], runs["iqa_fixed"]])
    assert [p.label for p in one_protocol[("sanity", "1")]] == ["classical-iqa", "toy-critic"]


def test_copies_of_one_spec_are_named_by_their_folder(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "other-runs" / runs["iqa_fixed"].name
    shutil.copytree(runs["iqa_fixed"], copy)
    labels = plots.judge_labels([plots.describe(runs["iqa_fixed"]), plots.describe(copy)])
    assert labels == {runs["iqa_fixed"]: "classical-iqa [runs]", copy: "classical-iqa [other-runs]"}


# --------------------------------------------------------------------------------------------------- position bias


def test_position_bias_of_always_first_follows_the_labels(runs: dict[str, Path]) -> None:
    lines = _lines(runs["first_both"])
    assert {line["label"]["kind"] for line in lines} == {"winner"}
    a_wins = sum(line["label"]["winner"] == 0 for line in lines)
    # Always picking the first shown image is right exactly when the image shown first is the human winner, the
    # two orders always disagree, and the first-shown image wins all 32 trials.
    bias = plots.position_bias(runs["first_both"])
    assert bias == plots.PositionBias(plots.Rate(a_wins, 16), plots.Rate(16 - a_wins, 16), plots.Rate(0, 16),
                                      plots.Rate(32, 32))
    assert 0 < a_wins < 16


def test_position_bias_excludes_failed_trials(runs: dict[str, Path]) -> None:
    credit: dict[tuple[int, ...], list[float]] = {(0, 1): [], (1, 0): []}
    same = judged_both = first_picked = decided = 0
    for line in _lines(runs["critic_both"]):
        verdicts = {}
        for trial, correct in zip(line["trials"], line["correct"], strict=True):
            if trial.get("failure") is None:
                credit[tuple(trial["order"])].append(correct)
                verdict = verdicts[tuple(trial["order"])] = trial["prediction"]["verdict"]
                if verdict in ("A", "B"):  # in the sample's order: A is candidate 0
                    decided += 1
                    first_picked += "AB".index(verdict) == trial["order"][0]
        if len(verdicts) == 2:
            judged_both += 1
            same += verdicts[(0, 1)] == verdicts[(1, 0)]
    bias = plots.position_bias(runs["critic_both"])
    assert bias is not None
    assert bias.a_first == plots.Rate(sum(credit[(0, 1)]), len(credit[(0, 1)]))
    assert bias.b_first == plots.Rate(sum(credit[(1, 0)]), len(credit[(1, 0)]))
    assert bias.consistent == plots.Rate(same, judged_both)
    assert bias.first_shown == plots.Rate(first_picked, decided) and decided > 0
    assert bias.a_first.n < 16 or bias.b_first.n < 16  # fail=0.25 did fail some trials


def test_no_position_bias_without_both_orders(runs: dict[str, Path]) -> None:
    assert plots.position_bias(runs["critic_fixed"]) is None
    assert plots.position_bias(runs["iqa_fixed"]) is None


# --------------------------------------------------------------------------------------------------- aspects


def test_aspect_counts_of_the_critic_split_preferred_and_rejected(runs: dict[str, Path]) -> None:
    expected: dict[tuple[str, str], Counter[str]] = {}
    trials, samples = 0, set()
    for line in _lines(runs["critic_both"]):
        for trial in line["trials"]:
            if trial.get("failure") is not None:
                continue
            trials += 1
            samples.add(line["id"])
            (judgement,) = trial["judgements"]  # toy-critic is pairwise: one answer, one mapping per shown image
            for original, aspects in zip(trial["order"], judgement["aspects"], strict=True):
                side = "preferred" if original == line["label"]["winner"] else "rejected"
                for name, value in aspects.items():
                    expected.setdefault((name, side), Counter())["N/A" if value is None else str(int(value))] += 1
    counts = plots.aspect_counts(runs["critic_both"])
    assert counts is not None
    assert (counts.n_trials, counts.n_samples) == (trials, len(samples)) and trials < 32
    assert sorted(counts.counts) == ["Physical and Visual Quality", "Text Faithfulness", "Text Rendering"]
    for (name, side), want in expected.items():
        got = {b: n for b, n in counts.counts[name][side].items() if n}
        assert got == dict(want), (name, side)
    assert counts.counts["Text Rendering"]["preferred"]["N/A"] == trials  # the toy critic never scores it
    assert counts.means["Text Rendering"] == {"preferred": None, "rejected": None}


def test_runs_without_critic_scores_have_no_aspect_counts(runs: dict[str, Path]) -> None:
    assert plots.aspect_counts(runs["first_both"]) is None
    # classical-iqa does record aspects, but raw measurements far off the critic's 1-4 scale.
    assert any(j.get("aspects") for line in _lines(runs["iqa_fixed"]) for j in line["trials"][0]["judgements"])
    assert plots.aspect_counts(runs["iqa_fixed"]) is None


def test_decimal_na_and_missing_aspect_scores_follow_the_shown_order(tmp_path: Path) -> None:
    # Shown order [1, 0]: the first mapping is candidate 1, the human winner; "R" is absent from the second.
    judgement = Judgement(scores=(7.0, 2.0), aspects=({"Q": 3.5, "R": 1.0}, {"Q": None}))
    trial = Trial((1, 0), (judgement,), Prediction((2.0, 7.0)))
    result = SampleResult("s1", Label.win(1), (trial,), correct=(1.0,))
    (tmp_path / "samples.jsonl").write_text(json.dumps(result.to_json()) + "\n")
    counts = plots.aspect_counts(tmp_path)
    assert counts is not None
    nonzero = {name: {side: {b: n for b, n in bins.items() if n} for side, bins in sides.items()}
               for name, sides in counts.counts.items()}
    assert nonzero == {"Q": {"preferred": {"4": 1}, "rejected": {"N/A": 1}},
                       "R": {"preferred": {"1": 1}, "rejected": {"missing": 1}}}
    assert counts.means["Q"] == {"preferred": 3.5, "rejected": None}


# --------------------------------------------------------------------------------------------------- files


def _check_files(paths: list[Path]) -> None:
    for path in paths:
        if path.suffix == ".png":
            with Image.open(path) as img:
                assert img.format == "PNG" and img.width > 100
                img.verify()
        else:
            assert ET.parse(path).getroot().tag.endswith("svg")


@pytest.fixture(scope="module")
def built(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every plot of all four runs, drawn once for the tests below (a figure costs about half a second)."""
    return plots.write_plots(list(runs.values()), tmp_path_factory.mktemp("built") / "plots")


def test_write_plots_draws_each_plot_as_png_and_svg(runs: dict[str, Path], built: list[Path]) -> None:
    assert sorted(built) == sorted(built[0].parent.iterdir())
    hashes = sorted(_record(runs[n])["spec_hash"][:10] for n in ("critic_both", "critic_fixed"))
    stems = ["accuracy-sanity", *(f"aspects-sanity__toy-critic__{h}" for h in hashes), "position-bias"]
    assert [p.name for p in built] == [f"{s}.{ext}" for s in stems for ext in ("png", "svg")]
    _check_files(built)


def test_same_runs_give_byte_identical_files(runs: dict[str, Path], built: list[Path], tmp_path: Path) -> None:
    again = plots.write_plots(list(reversed(runs.values())), tmp_path)
    assert [p.name for p in again] == [p.name for p in built]
    for a, b in zip(built, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert b"<dc:date>" not in (tmp_path / "position-bias.svg").read_bytes()


def test_without_both_orders_there_is_no_position_bias_file(runs: dict[str, Path], tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rrbench.leaderboard.plots"):
        written = plots.write_plots([runs["critic_fixed"], runs["iqa_fixed"]], tmp_path)
    assert [p.name for p in written] == ["accuracy-sanity.png", "accuracy-sanity.svg",
                                         "aspects-sanity__toy-critic.png", "aspects-sanity__toy-critic.svg"]
    assert "no position-bias plot" in caplog.text
    _check_files(written)


def test_plots_of_an_earlier_build_are_removed(runs: dict[str, Path], built: list[Path], tmp_path: Path) -> None:
    shutil.copytree(built[0].parent, tmp_path, dirs_exist_ok=True)
    (tmp_path / "notes.txt").write_text("kept")
    written = plots.write_plots([runs["iqa_fixed"]], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in written), "notes.txt"])


def test_missing_matplotlib_is_a_user_error(runs: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(UserError, match=r"plots need matplotlib: pip install 'rrbench\[plots\]'"):
        plots.write_plots([runs["iqa_fixed"]], tmp_path)
