"""Plain-text tables of a run record, shared by `rrbench run`, `show` and `rescore`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrbench.datarecord import data_status

if TYPE_CHECKING:
    from rrbench.leaderboard.plots import Rate


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def number(m: Mapping[str, Any], key: str = "value", sign: bool = False) -> str:
    """A metric row's value (or CI bound): a fraction as a percentage (``sign`` adds the %), a score on the judge's
    own scale (``scale = "score"``, rrbench.metrics) as it is."""
    value = m.get(key)
    if m.get("scale", "fraction") == "fraction":
        return pct(value) + ("%" if sign and value is not None else "")
    return "n/a" if value is None else f"{value:.4f}"


def _mixed(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Some row is a score, not a fraction: the value column cannot say "%" in its header."""
    return any(m.get("scale", "fraction") != "fraction" for m in rows)


def ci(m: Mapping[str, Any], sign: bool = False) -> str:
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return ""
    return f"[{number(m, 'ci_low', sign)}, {number(m, 'ci_high', sign)}]"


def _extra(m: Mapping[str, Any]) -> str:
    extra = m.get("extra") or {}
    # nested breakdowns (per dimension, per group) are run.json's and the leaderboard's, too long for a note
    return ", ".join(f"{k}={v}" for k, v in extra.items() if not isinstance(v, Mapping | list))


def ci_method(m: Mapping[str, Any]) -> str:
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return ""
    return m.get("ci_method") or "cluster-bootstrap"  # records without the field: the only method there was


def n_samples(m: Mapping[str, Any]) -> int | None:
    """What `n` means in every table: samples (records written before n_samples existed give their units)."""
    value = m.get("n_samples", m.get("n_units"))
    return None if value is None else int(value)


def _units(m: Mapping[str, Any]) -> str:
    n, unit = m.get("n_units"), m.get("unit")
    return "" if n is None else f"{n} {unit}s" if unit else str(n)


def _counts(m: Mapping[str, Any], with_units: bool) -> tuple[str, ...]:
    n = n_samples(m)
    return (("" if n is None else str(n)),) + ((_units(m),) if with_units else ())


def _units_differ(metric_rows: Sequence[Mapping[str, Any]]) -> bool:
    """A units column only where it says something: e.g. 1000 pairs judged in both orders are 2000 trials."""
    return any(m.get("n_units") is not None and n_samples(m) != m.get("n_units") for m in metric_rows)


def metrics_table(metric_rows: Sequence[Mapping[str, Any]]) -> str:
    with_units, sign = _units_differ(metric_rows), _mixed(metric_rows)
    rows = [
        (
            m["metric"],
            m.get("tie_policy") or "",
            "excluded" if m["failure_policy"] == "excluded" else "as wrong",
            number(m, sign=sign),
            ci(m, sign),
            ci_method(m),
            *_counts(m, with_units),
            _extra(m),
        )
        for m in metric_rows
    ]
    counts = ("n", "units") if with_units else ("n",)
    value = "value" if sign else "value %"
    return table(rows, ("metric", "ties", "failures", value, "95% CI", "CI method", *counts, "notes"))


def category_table(by_category: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    shown = [(c, m) for c in sorted(by_category) for m in by_category[c] if m["failure_policy"] == "excluded"]
    with_units, sign = _units_differ([m for _, m in shown]), _mixed([m for _, m in shown])
    rows = [(c, m["metric"], number(m, sign=sign), ci(m, sign), ci_method(m), *_counts(m, with_units))
            for c, m in shown]
    counts = ("n", "units") if with_units else ("n",)
    return table(rows, ("category", "metric", "value" if sign else "value %", "95% CI", "CI method", *counts))


def coverage_line(counts: Mapping[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted((counts.get("failed_by_kind") or {}).items()))
    failed = f"{counts['failed']} failed" + (f" ({kinds})" if kinds else "")
    expected = counts.get("expected")
    recorded = f"{counts['recorded']}/{expected}" if expected else str(counts["recorded"])
    return f"coverage: {recorded} samples recorded, {failed}, {counts['label_skipped']} label-skipped"


def position_bias_line(run_dir: Path) -> str | None:
    """Order agreement and first-position win rate of a run judged in both orders; None without such samples."""
    from rrbench.leaderboard.plots import position_bias  # reads the log only; matplotlib is not imported

    if not (run_dir / "samples.jsonl").is_file():
        return None
    bias = position_bias(run_dir)
    if bias is None:
        return None
    return (f"position bias: the two orders agree on {_rate(bias.consistent)} samples; the image shown first wins "
            f"{_rate(bias.first_shown)} trials with a winner (50% = no bias); right with A shown first "
            f"{_rate(bias.a_first)}, with B shown first {_rate(bias.b_first)}")


def _rate(rate: Rate) -> str:
    return f"{pct(rate.value)}% of {rate.n}" if rate.value is not None else f"n/a of {rate.n}"


def maker_of(spec: Mapping[str, Any]) -> str:
    """The judge of a run, or ``generator G`` for a generation run."""
    return str(spec["model"]) if spec.get("model") else f"generator {spec.get('generator', '?')}"


def describe_run(record: Mapping[str, Any], path: str) -> str:
    spec = record["spec"]
    protocol = record.get("protocol", {})
    head = (
        f"{spec['task']} (v{record.get('task', {}).get('version', '?')}) x {maker_of(spec)}   "
        f"protocol {protocol.get('id')} (order {protocol.get('order')}, mode {protocol.get('mode')})   "
        f"status {record.get('status')}"
    )
    parts = [head, f"run: {path}"]
    data = data_status(record)
    if data.partial:  # before the numbers: they are not the benchmark's
        parts.append(data.line())
    parts.append("")
    metrics = record.get("metrics") or {}
    if metrics.get("overall"):
        parts += [metrics_table(metrics["overall"]), ""]
    if any((metrics.get("by_category") or {}).values()):
        parts += ["per category (failures excluded):", category_table(metrics["by_category"]), ""]
    if "counts" in record:
        parts.append(coverage_line(record["counts"]))
    if protocol.get("order") == "both" and (bias := position_bias_line(Path(path))):
        parts.append(bias)
    stats = record.get("stats")
    if stats and not spec.get("model"):  # a generation run: its calls make images, its "hits" were made before
        parts.append(f"this session: {stats['new_samples']} new samples, {stats['model_calls']} images made, "
                     f"{stats['cache_hits']} found already made, {stats['wall_s']} s")
    elif stats:
        parts.append(
            f"this session: {stats['new_samples']} new samples, {stats['model_calls']} model calls, "
            f"{stats['cache_hits']} cache hits, {stats['wall_s']} s"
        )
    if record.get("error"):
        parts.append(f"error: {record['error']}")
    if record.get("source_run"):
        parts.append(f"rescored from: {record['source_run']}")
    source = record.get("source")
    if isinstance(source, Mapping):
        parts.append(f"images from: {source.get('path')} ({source.get('kind')})")
        parts += [f"note: {problem}" for problem in source.get("problems", [])]
    return "\n".join(parts)


_TESTS = {"mcnemar-exact": "exact McNemar", "sign-test": "exact sign test"}


def compare_table(result: Mapping[str, Any]) -> str:
    head = (
        f"protocol {result['protocol']} (ties {result['tie_policy']}): {result['n_common']} common samples, "
        f"{result['n_only_a']} only in A, {result['n_only_b']} only in B"
    )
    header = ("metric", "failures", "A %", "B %", "B-A pts", "95% CI (paired bootstrap)", "n CI", "test", "n test",
              "B better/A better", "p")
    note = ("n CI: samples (groups for group-accuracy) in both runs, all resampled by the paired bootstrap; "
            "n test: those the two runs score differently, the only ones the test uses (docs/statistics.md)")
    return head + "\n" + table([_compare_row(m) for m in result["metrics"]], header) + "\n" + note


def _compare_row(m: Mapping[str, Any]) -> tuple[str, ...]:
    test = m["test"]
    diff = "n/a" if m["diff"] is None else f"{100 * m['diff']:+.2f}"
    return (
        m["metric"],
        "excluded" if m["failure_policy"] == "excluded" else "as wrong",
        pct(m["value_a"]), pct(m["value_b"]), diff, ci(m), str(m["n_paired"]),
        _TESTS.get(test["name"], test["name"]), str(test["n"]),
        f"{test['n_b_better']}/{test['n_a_better']}", f"{test['p_value']:.4g}",
    )
