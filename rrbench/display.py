"""Plain-text tables of a run record, shared by `rrbench run`, `show` and `rescore`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def ci(m: Mapping[str, Any]) -> str:
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return ""
    return f"[{pct(m['ci_low'])}, {pct(m['ci_high'])}]"


def _extra(m: Mapping[str, Any]) -> str:
    extra = m.get("extra") or {}
    return ", ".join(f"{k}={v}" for k, v in extra.items())


def metrics_table(metric_rows: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            m["metric"],
            m.get("tie_policy") or "",
            "excluded" if m["failure_policy"] == "excluded" else "as wrong",
            pct(m["value"]),
            ci(m),
            str(m.get("n_units", "")),
            _extra(m),
        )
        for m in metric_rows
    ]
    return table(rows, ("metric", "ties", "failures", "value %", "95% CI", "n", "notes"))


def category_table(by_category: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    rows = []
    for category in sorted(by_category):
        for m in by_category[category]:
            if m["failure_policy"] != "excluded":
                continue
            rows.append((category, m["metric"], pct(m["value"]), ci(m), str(m.get("n_units", ""))))
    return table(rows, ("category", "metric", "value %", "95% CI", "n"))


def coverage_line(counts: Mapping[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted((counts.get("failed_by_kind") or {}).items()))
    failed = f"{counts['failed']} failed" + (f" ({kinds})" if kinds else "")
    expected = counts.get("expected")
    recorded = f"{counts['recorded']}/{expected}" if expected else str(counts["recorded"])
    return f"coverage: {recorded} samples recorded, {failed}, {counts['label_skipped']} label-skipped"


def describe_run(record: Mapping[str, Any], path: str) -> str:
    spec = record["spec"]
    protocol = record.get("protocol", {})
    head = (
        f"{spec['task']} (v{record.get('task', {}).get('version', '?')}) x {spec['model']}   "
        f"protocol {protocol.get('id')} (order {protocol.get('order')}, mode {protocol.get('mode')})   "
        f"status {record.get('status')}"
    )
    parts = [head, f"run: {path}", ""]
    metrics = record.get("metrics") or {}
    if metrics.get("overall"):
        parts += [metrics_table(metrics["overall"]), ""]
    if metrics.get("by_category"):
        parts += ["per category (failures excluded):", category_table(metrics["by_category"]), ""]
    if "counts" in record:
        parts.append(coverage_line(record["counts"]))
    stats = record.get("stats")
    if stats:
        parts.append(
            f"this session: {stats['new_samples']} new samples, {stats['model_calls']} model calls, "
            f"{stats['cache_hits']} cache hits, {stats['wall_s']} s"
        )
    if record.get("error"):
        parts.append(f"error: {record['error']}")
    if record.get("source_run"):
        parts.append(f"rescored from: {record['source_run']}")
    return "\n".join(parts)


def compare_table(result: Mapping[str, Any]) -> str:
    rows = []
    for m in result["metrics"]:
        mc = m["mcnemar"]
        diff = "n/a" if m["diff"] is None else f"{100 * m['diff']:+.2f}"
        rows.append((
            m["metric"],
            "excluded" if m["failure_policy"] == "excluded" else "as wrong",
            pct(m["value_a"]), pct(m["value_b"]), diff, ci(m), str(m["n_paired"]),
            f"{mc['b01']}/{mc['b10']}", f"{mc['p_value']:.4g}" if mc["p_value"] is not None else "n/a",
        ))
    head = (
        f"protocol {result['protocol']} (ties {result['tie_policy']}): {result['n_common']} common samples, "
        f"{result['n_only_a']} only in A, {result['n_only_b']} only in B"
    )
    header = ("metric", "failures", "A %", "B %", "B-A pts", "95% CI (paired)", "n", "McNemar only-B/only-A right", "p")
    return head + "\n" + table(rows, header)
