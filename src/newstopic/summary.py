"""The run summary: every stage's valid metrics next to the baseline's, and wall time and
peak memory per rule from Snakemake's benchmark files."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from newstopic.atomic import write_json, write_text
from newstopic.formats import read_benchmark, read_json


def rounds_table(stages: dict[str, dict[str, Any]], pseudo_labels: list[str]) -> list[dict[str, Any]]:
    """Per pseudo-label round r (0 = before any): its ensemble's valid accuracy and standard
    error, the gain over round r-1, and how many of round r's pseudo-labels (argmax) agree with
    round r-1's. `stages` holds round<r>/ensemble metrics; `pseudo_labels` rounds 1..N's rows."""
    labels = [
        pd.read_parquet(p, columns=["index", "topic_idx"]).set_index("index")["topic_idx"]
        for p in pseudo_labels
    ]
    rows: list[dict[str, Any]] = []
    for r in range(len(pseudo_labels) + 1):
        m = stages[f"round{r}/ensemble"]
        acc, n = m["valid_accuracy"], m["valid_rows"]
        row = {"round": r, "valid_accuracy": acc, "valid_se": math.sqrt(acc * (1 - acc) / n)}
        row["gain"] = acc - rows[-1]["valid_accuracy"] if rows else None
        row["agreement"] = None
        if r >= 2:  # rows both rounds labelled (all of them with threshold 0)
            now, before = labels[r - 1].align(labels[r - 2], join="inner")
            row["agreement"] = float((now == before).mean()) if len(now) else None
        rows.append(row)
    return rows


def build_summary(
    metrics_files: dict[str, str],
    benchmark_files: dict[str, str],
    pseudo_report: str | None,
    pseudo_labels: list[str] | None = None,
) -> dict[str, Any]:
    stages = {name: read_json(p) for name, p in metrics_files.items()}
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
        summary["pseudo_label"] = read_json(pseudo_report)
    if pseudo_labels:
        summary["rounds"] = rounds_table(stages, pseudo_labels)
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
    if "rounds" in summary:
        lines += [
            "",
            "| round | ensemble valid accuracy | SE | gain | agreement with previous labels |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in summary["rounds"]:
            gain = "" if r["gain"] is None else f"{r['gain']:+.4f}"
            agree = "" if r["agreement"] is None else f"{r['agreement']:.1%}"
            lines.append(
                f"| {r['round']} | {r['valid_accuracy']:.4f} | {r['valid_se']:.4f} | {gain} | {agree} |"
            )
    return "\n".join(lines) + "\n"


def write_summary(
    metrics_files: dict[str, str],
    benchmark_files: dict[str, str],
    pseudo_report: str | None,
    json_path: str,
    md_path: str,
    pseudo_labels: list[str] | None = None,
) -> dict[str, Any]:
    summary = build_summary(metrics_files, benchmark_files, pseudo_report, pseudo_labels)
    write_json(json_path, summary)
    write_text(md_path, summary_markdown(summary))
    logging.getLogger("newstopic").info("summary: %s", summary["stages"])
    return summary
