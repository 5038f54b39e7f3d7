"""Golden cases: small result lists with metric values worked out by hand (tests/golden/metrics/<metric>.json).

Each case names a result set of its file, a tie policy and options, and the expected value and unit count under
both failure policies, the coverage counts, the metric's extra (chosen epsilon or threshold) and, where given, the
per-category values. The arithmetic is in each case's "why".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from rrbench import registry
from rrbench.metrics import TIE_POLICIES, compute_metrics
from rrbench.types import FailureKind, Judgement, Label, LabelKind, Prediction, Protocol, SampleResult, Trial, Verdict

GOLDEN = Path(__file__).parent / "golden" / "metrics"
RANK_METRICS = {"inversion", "inversion-ties", "spearman", "kendall", "strict-ranking-accuracy"}
GENERATION_METRICS = {"testpoint-accuracy", "mean-score"}  # no tie policy either
_RESULT_KEYS = {"id", "label", "trials", "meta", "skipped"}
_CASE_KEYS = {"name", "set", "without", "tie_policy", "options", "expected", "coverage", "extra", "by_category", "why",
              "scale"}
_LABELS = {
    "A": Label.win(0),
    "B": Label.win(1),
    "tie": Label.tie(LabelKind.TIE),
    "both_good": Label.tie(LabelKind.BOTH_GOOD),
    "both_bad": Label.tie(LabelKind.BOTH_BAD),
    "unknown": Label.unknown("??"),
    "none": Label.none(),  # a generation prompt: its trials are its images, each judged alone
}


def build_label(spec: str | Mapping[str, Any]) -> Label:
    if isinstance(spec, str):
        return _LABELS[spec]
    if "ranks" in spec:
        return Label(LabelKind.RANKING, ranks=tuple(spec["ranks"]))
    return Label(LabelKind.SCORES, scores=tuple(spec["scores"]))


def build_trial(spec: Sequence[float | None] | Mapping[str, Any], position: int, k: int) -> Trial:
    """The i-th trial is shown reversed when i is odd, as under order 'both' (metrics read the mapped prediction).
    A generation sample (k = 1) has one trial per image, trial i showing image i; its ``aspects`` are the judge's
    per-testpoint answers."""
    order = (position,) if k == 1 else tuple(range(k)) if position % 2 == 0 else tuple(reversed(range(k)))
    if not isinstance(spec, Mapping):
        return Trial(order, (), Prediction(tuple(spec)))
    assert set(spec) <= {"scores", "verdict", "failure", "aspects"}, spec
    if spec.get("failure"):
        return Trial(order, (), None, FailureKind(spec["failure"]))
    verdict = Verdict(spec["verdict"]) if spec.get("verdict") else None
    scores = tuple(spec.get("scores", (None,) * k))
    judgements = (Judgement(scores=scores, aspects=(spec["aspects"],)),) if "aspects" in spec else ()
    return Trial(order, judgements, Prediction(scores, verdict))


def build_result(spec: Mapping[str, Any]) -> SampleResult:
    assert set(spec) <= _RESULT_KEYS, f"unknown keys in {spec}"
    label = build_label(spec["label"])
    k = 1 if label.kind is LabelKind.NONE else len(label.ranks or label.scores or (0, 1))
    trials = tuple(build_trial(t, i, k) for i, t in enumerate(spec.get("trials", ())))
    return SampleResult(spec["id"], label, trials, meta=spec.get("meta", {}), skipped=spec.get("skipped"))


def build_results(specs: Sequence[Mapping[str, Any]]) -> list[SampleResult]:
    return [build_result(s) for s in specs]


def _cases() -> list[Any]:
    params = []
    for path in sorted(GOLDEN.glob("*.json")):
        doc = json.loads(path.read_text())
        for case in doc["cases"]:
            assert set(case) <= _CASE_KEYS, f"{path.name}: unknown keys in case {case['name']}"
            without = set(case.get("without", ()))
            specs = [s for s in doc["sets"][case["set"]] if s["id"] not in without]
            params.append(pytest.param(doc["metric"], case, specs, id=f"{doc['metric']}: {case['name']}"))
    return params


def _run(metric: str, case: Mapping[str, Any], specs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    protocol = Protocol(id="golden", tie_policy=case["tie_policy"], metrics=(metric,), options=case.get("options", {}))
    return compute_metrics(build_results(specs), protocol, seed=0, n_boot=200)


@pytest.mark.parametrize(("metric", "case", "specs"), _cases())
def test_golden_case(metric: str, case: Mapping[str, Any], specs: Sequence[Mapping[str, Any]]) -> None:
    out = _run(metric, case, specs)
    rows = out["overall"]
    assert [(r["metric"], r["failure_policy"]) for r in rows] == [(metric, "excluded"), (metric, "wrong")]
    for row in rows:
        expected = case["expected"][row["failure_policy"]]
        assert row["value"] == pytest.approx(expected["value"], abs=1e-12), case["why"]
        assert row["n_units"] == expected["n_units"], case["why"]
        assert {k: row[k] for k in case["coverage"]} == case["coverage"], case["why"]
        # A metric whose extra depends on the failure policy (per-dimension values) gives it per policy.
        assert row["extra"] == pytest.approx(expected.get("extra", case.get("extra", {}))), case["why"]
        assert row.get("scale", "fraction") == case.get("scale", "fraction")
        assert row["tie_policy"] == (None if metric in RANK_METRICS | GENERATION_METRICS else case["tie_policy"])
        assert row["protocol"] == "golden"
        assert row["ci_low"] <= row["ci_high"]


@pytest.mark.parametrize(("metric", "case", "specs"), [p for p in _cases() if "by_category" in p.values[1]])
def test_golden_by_category(metric: str, case: Mapping[str, Any], specs: Sequence[Mapping[str, Any]]) -> None:
    by_category = _run(metric, case, specs)["by_category"]
    assert sorted(by_category) == sorted(case["by_category"])
    for category, expected in case["by_category"].items():
        got = {r["failure_policy"]: r["value"] for r in by_category[category]}
        assert got == pytest.approx(expected), category


def test_every_metric_has_a_golden_file_and_every_tie_policy_a_case() -> None:
    names = {e.name for e in registry.entries("metric") if e.module.startswith("rrbench.metrics")}
    files = {p.stem for p in GOLDEN.glob("*.json")}
    assert names == {"accuracy", "group-accuracy", "inversion", "inversion-ties", "spearman", "kendall",
                     *GENERATION_METRICS}
    assert names <= files
    # Rules that read the prediction alone; the rules that re-read a judge's answer text (genai-4way's official
    # reading, editreward-*, mmrb2) are checked against the official scorers in tests/test_official_conformance.py.
    score_rules = {"exact", "ties-excluded", "genai-4way", "tie-calibrated", "pickapic", "imagereward"}
    assert score_rules <= set(TIE_POLICIES)
    for metric in ("accuracy", "group-accuracy"):
        doc = json.loads((GOLDEN / f"{metric}.json").read_text())
        assert {c["tie_policy"] for c in doc["cases"]} == score_rules, metric


def test_a_wrong_expectation_fails() -> None:
    """The comparison is live: a case with one expected number changed must not pass."""
    (metric, case, specs) = _cases()[0].values
    broken = {**case, "expected": {**case["expected"], "excluded": {**case["expected"]["excluded"], "value": 0.5}}}
    with pytest.raises(AssertionError):
        test_golden_case(metric, broken, specs)
