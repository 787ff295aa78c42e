"""The run summary: every stage's valid metrics next to the baseline's, and wall time and
peak memory per rule from Snakemake's benchmark files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from newstopic.atomic import write_json, write_text
from newstopic.formats import read_benchmark


def build_summary(
    metrics_files: dict[str, str], benchmark_files: dict[str, str], pseudo_report: str | None
) -> dict[str, Any]:
    stages = {name: json.loads(Path(p).read_text()) for name, p in metrics_files.items()}
    rules = {name: read_benchmark(p) for name, p in benchmark_files.items()}
    summary: dict[str, Any] = {
        "stages": {
            name: {k: m.get(k) for k in ("valid_accuracy", "valid_macro_f1", "train_rows", "seconds")}
            for name, m in stages.items()
            if "valid_accuracy" in m
        },
        "rules": rules,
        "total_wall_s": round(sum(r["wall_s"] for r in rules.values()), 1),
    }
    if pseudo_report:
        summary["pseudo_label"] = json.loads(Path(pseudo_report).read_text())
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = ["| stage | valid accuracy | valid macro-F1 | train rows |", "| --- | --- | --- | --- |"]
    for name, m in summary["stages"].items():
        lines.append(
            f"| {name} | {m['valid_accuracy']:.4f} | {m['valid_macro_f1']:.4f} | {m['train_rows']} |"
        )
    lines += ["", "| rule | wall (s) | peak RSS (MB) |", "| --- | --- | --- |"]
    for name, r in summary["rules"].items():
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['max_rss_mb']:.0f} |")
    lines.append(f"| **total** | {summary['total_wall_s']:.1f} | |")
    if "pseudo_label" in summary:
        p = summary["pseudo_label"]
        lines += [
            "",
            f"Pseudo-labels: {p['accepted']} of {p['test_rows']} test rows "
            f"({p['acceptance_rate']:.1%}) at threshold {p['threshold']}.",
        ]
    return "\n".join(lines) + "\n"


def write_summary(
    metrics_files: dict[str, str],
    benchmark_files: dict[str, str],
    pseudo_report: str | None,
    json_path: str,
    md_path: str,
) -> dict[str, Any]:
    summary = build_summary(metrics_files, benchmark_files, pseudo_report)
    write_json(json_path, summary)
    write_text(md_path, summary_markdown(summary))
    logging.getLogger("newstopic").info("summary: %s", summary["stages"])
    return summary
