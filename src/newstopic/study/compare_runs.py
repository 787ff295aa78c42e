"""Compare two or more runs: the parameters that differ and the metrics side by side, with each
run's difference from the first (what `dvc params diff` and `dvc metrics diff` show together).

    python -m newstopic.study.compare_runs RUN_A RUN_B [RUN_C ...] [--markdown] [--all]

A run is a results folder (`results/`, or one copied elsewhere), a work directory holding
`results/`, or a git revision's committed results as `REV:PATH` (e.g. `HEAD~1:results`, read
with `git show`, like `dvc metrics diff HEAD~1`). Parameters come from the run's `config.yaml`
(the validated config, every default filled in, written by the run_config rule), metrics from
`summary.json` (every stage's valid accuracy and macro-F1, rows, wall time and peak memory of
each rule, pseudo-labels kept). Printed as a table for the terminal, or as Markdown with
`--markdown`; `--output FILE` writes it to a file instead.

The ablation (newstopic.study.ablation) and the seed study are such comparisons of runs that
differ in a few keys; their reports add the statistics over seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newstopic.atomic import write_text
from newstopic.errors import InputError, run_main

MISSING = "—"


@dataclass
class Run:
    """One run's parameters (flattened config) and metrics (flattened summary)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    has_config: bool = True


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flatten(value, name + ".")
        else:
            out[name] = value
    return out


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float | int | None]:
    """The comparable numbers of a summary.json, named `stage metric` / `rule wall_s`."""
    metrics: dict[str, float | int | None] = {}
    for stage, values in summary.get("stages", {}).items():
        for key in ("valid_accuracy", "valid_macro_f1", "train_rows"):
            metrics[f"{stage} {key}"] = values.get(key)
    pseudo = summary.get("pseudo_label")
    if pseudo:
        metrics["pseudo_label accepted"] = pseudo.get("accepted")
    for rule, bench in summary.get("rules", {}).items():
        metrics[f"{rule} wall_s"] = bench.get("wall_s")
        metrics[f"{rule} peak_rss_mb"] = bench.get("max_rss_mb")
    metrics["total wall_s"] = summary.get("total_wall_s")
    return metrics


# --- reading a run -------------------------------------------------------------------------------
def _git_show(rev: str, path: str) -> str | None:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def _is_revision(rev: str) -> bool:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True
    )
    return proc.returncode == 0


def run_files(spec: str) -> dict[str, str | None]:
    """The texts of a run's config.yaml and summary.json (None when absent)."""
    path = Path(spec)
    if path.is_dir():
        results = path / "results" if (path / "results").is_dir() else path
        return {name: _read(results / name) for name in ("config.yaml", "summary.json")}
    rev, sep, inside = spec.partition(":")
    if sep and rev and _is_revision(rev):
        inside = inside.strip("/") or "results"
        return {name: _git_show(rev, f"{inside}/{name}") for name in ("config.yaml", "summary.json")}
    if path.exists():
        raise InputError(f"{spec}: not a directory (a run is a results folder, a work dir or REV:PATH)")
    raise InputError(f"{spec}: no such directory, nor a git revision as REV:PATH (e.g. HEAD~1:results)")


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def read_run(spec: str) -> Run:
    """A run's parameters and metrics; a run with neither file is an error."""
    files = run_files(spec)
    if files["config.yaml"] is None and files["summary.json"] is None:
        raise InputError(
            f"{spec}: no config.yaml or summary.json (has `snakemake --cores all` finished there?)"
        )
    run = Run(spec, has_config=files["config.yaml"] is not None)
    if files["config.yaml"] is not None:
        try:
            run.params = flatten(yaml.safe_load(files["config.yaml"]) or {})
        except yaml.YAMLError as exc:
            raise InputError(f"{spec}: config.yaml is not valid YAML ({str(exc).splitlines()[0]})") from None
    if files["summary.json"] is not None:
        try:
            run.metrics = summary_metrics(json.loads(files["summary.json"]))
        except ValueError as exc:
            raise InputError(f"{spec}: summary.json is not valid JSON ({exc})") from None
    return run


# --- the comparison ---------------------------------------------------------------------------------
def differing_params(runs: Sequence[Run], show_all: bool = False) -> list[tuple[str, list[Any]]]:
    """(key, value in each run) for the keys whose values differ (all keys with `show_all`)."""
    keys = sorted({k for run in runs for k in run.params})
    rows = []
    for key in keys:
        values = [run.params.get(key, MISSING) if run.has_config else MISSING for run in runs]
        if show_all or any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _fmt(value: Any) -> str:
    if value is None or value is MISSING:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _delta(value: Any, first: Any) -> str:
    a, b = _number(first), _number(value)
    if a is None or b is None:
        return ""
    d = b - a
    if d == 0:
        return "="
    if isinstance(value, int) and isinstance(first, int):
        return f"{d:+.0f}"
    # The precision the values are printed with (_fmt): seconds and megabytes to 0.1.
    return f"{d:+.4f}" if max(abs(a), abs(b)) < 10 else f"{d:+.1f}"


def metric_rows(runs: Sequence[Run], show_all: bool = False) -> list[tuple[str, list[str]]]:
    """(metric, cells): the first run's value, then each other run's value with its difference
    from the first. Per-rule time and memory only with `show_all` (they differ on every run)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.metrics if k not in keys]
    if not show_all:
        keys = [
            k
            for k in keys
            if not k.endswith(("peak_rss_mb",)) and (" wall_s" not in k or k.startswith("total"))
        ]
    rows = []
    for key in keys:
        first = runs[0].metrics.get(key)
        cells = [_fmt(first)]
        for run in runs[1:]:
            value = run.metrics.get(key)
            delta = _delta(value, first)
            cells.append(f"{_fmt(value)} ({delta})" if delta else _fmt(value))
        rows.append((key, cells))
    return rows


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    line.append("  ".join("-" * w for w in widths))
    return line + ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def compare(runs: Sequence[Run], markdown: bool = False, show_all: bool = False) -> str:
    """The comparison as text: parameters that differ, then metrics with differences."""
    names = [run.name for run in runs]
    title = "## " if markdown else ""
    out = [f"{title}Parameters that differ" + (" (all parameters)" if show_all else ""), ""]
    params = differing_params(runs, show_all)
    if params:
        out += _table(["parameter", *names], [[k, *map(_fmt, v)] for k, v in params], markdown)
    else:
        out.append("none: the runs have the same configuration")
    missing = [run.name for run in runs if not run.has_config]
    if missing:
        out.append(f"(no config.yaml in {', '.join(missing)}: its parameters are unknown)")
    header = ["metric", names[0], *(f"{n} (Δ vs first)" for n in names[1:])]
    out += ["", f"{title}Metrics", ""]
    rows = metric_rows(runs, show_all)
    out += _table(header, [[k, *cells] for k, cells in rows], markdown) if rows else ["no summary.json"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m newstopic.study.compare_runs",
        description="Parameters that differ and metrics side by side, for two or more runs.",
    )
    p.add_argument("runs", nargs="+", help="results folders, work dirs with results/, or REV:PATH")
    p.add_argument("--markdown", action="store_true", help="Markdown tables instead of the terminal table")
    p.add_argument("--all", action="store_true", help="every parameter, and per-rule time and memory")
    p.add_argument("--output", "-o", help="write to this file instead of standard output")
    args = p.parse_args(argv)
    logging.getLogger("newstopic").addHandler(logging.NullHandler())  # the error line is printed once
    if len(args.runs) < 2:
        p.error("give at least two runs to compare")

    def body() -> None:
        text = compare([read_run(spec) for spec in args.runs], markdown=args.markdown, show_all=args.all)
        if args.output:
            write_text(args.output, text)
        else:
            sys.stdout.write(text)

    run_main(body)


if __name__ == "__main__":
    main()
