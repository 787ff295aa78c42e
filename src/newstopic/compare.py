"""The engine comparison table: the hand-written loop vs the Hugging Face Trainer, per stage,
from each run's metrics.json and its Snakemake benchmark TSV (wall seconds, peak RSS)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from newstopic.atomic import atomic_path, write_text
from newstopic.errors import InputError

COLUMNS = [
    "stage",
    "engine",
    "valid_accuracy",
    "valid_macro_f1",
    "final_train_loss",
    "steps",
    "train_seconds",
    "train_samples_per_s",
    "wall_seconds",
    "peak_rss_mb",
]

ENGINE_NOTES = """\
Same in both: model, initialisation, token ids, AdamW groups, linear warmup and decay,
clipping, batch size, seed, evaluation each epoch, best epoch kept. Different:

- batches: loop = length-bucketed (similar lengths share a batch, little padding);
  hf = random, padded to the batch's longest title (`DataCollatorWithPadding`).
- MLM loss: loop = LM head on the masked positions only; hf = `DataCollatorForLanguageModeling`
  and the model's own loss, LM head on every position.
- per step: hf adds callbacks, loss bookkeeping and accelerate wrappers.
- checkpoints: loop = every `runtime.checkpoint_every` steps, each epoch and on SIGTERM;
  hf = each epoch (Trainer format).

train_samples_per_s = rows x epochs / train_seconds (training, evaluation and checkpoints
included); wall_seconds and peak_rss_mb are the whole job (start-up and data loading
included), from Snakemake's benchmark file.
"""


def _read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def _need(obj: dict[str, Any], key: str, path: str | os.PathLike[str]) -> Any:
    if key not in obj:
        raise InputError(f"{path}: missing key {key!r}")
    return obj[key]


def read_benchmark(path: str | os.PathLike[str]) -> dict[str, float]:
    """Wall seconds (`s`) and peak RSS in MB (`max_rss`) of a Snakemake benchmark TSV."""
    try:
        frame = pd.read_csv(path, sep="\t")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a Snakemake benchmark TSV ({str(exc).splitlines()[0]})") from None
    for col in ("s", "max_rss"):
        if col not in frame.columns:
            raise InputError(f"{path}: missing column {col!r} (not a Snakemake benchmark TSV?)")
    if frame.empty:
        raise InputError(f"{path}: no benchmark row")
    # With `benchmark: repeat(...)` there is one row per repetition: report the median.
    return {"wall_seconds": float(frame["s"].median()), "peak_rss_mb": float(frame["max_rss"].median())}


def engine_row(
    stage: str,
    engine: str,
    metrics_path: str | os.PathLike[str],
    benchmark_path: str | os.PathLike[str],
    epochs: float,
) -> dict[str, Any]:
    """One table row: quality and speed of one engine on one stage."""
    metrics = _read_json(metrics_path)
    history = _need(metrics, "history", metrics_path)
    rows = metrics.get("train_rows", metrics.get("rows"))
    if rows is None:
        raise InputError(f"{metrics_path}: missing key 'train_rows' (or 'rows')")
    train_seconds = float(_need(metrics, "train_seconds", metrics_path))
    row = {
        "stage": stage,
        "engine": engine,
        "valid_accuracy": metrics.get("valid_accuracy", math.nan),
        "valid_macro_f1": metrics.get("valid_macro_f1", math.nan),
        "final_train_loss": history[-1]["train_loss"] if history else math.nan,
        "steps": int(_need(metrics, "steps", metrics_path)),
        "train_seconds": train_seconds,
        "train_samples_per_s": rows * epochs / train_seconds if train_seconds > 0 else math.nan,
    }
    row.update(read_benchmark(benchmark_path))
    return row


def comparison_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def speedup_lines(table: pd.DataFrame, baseline: str = "hf", fast: str = "loop") -> list[str]:
    """One sentence per stage: how much faster `fast` trains than `baseline`."""
    lines = []
    for stage, group in table.groupby("stage", sort=False):
        by_engine = group.set_index("engine")
        if not {baseline, fast} <= set(by_engine.index):
            continue
        a, b = by_engine.loc[fast], by_engine.loc[baseline]
        ratio = a["train_samples_per_s"] / b["train_samples_per_s"]
        lines.append(
            f"- {stage}: {fast} {a['train_samples_per_s']:.0f} vs {baseline} "
            f"{b['train_samples_per_s']:.0f} training samples/s ({ratio:.2f}x); job wall time "
            f"{a['wall_seconds']:.1f} s vs {b['wall_seconds']:.1f} s; peak RSS "
            f"{a['peak_rss_mb']:.0f} MB vs {b['peak_rss_mb']:.0f} MB."
        )
    return lines


def to_markdown(table: pd.DataFrame, title: str = "Training engines compared") -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = [f"# {title}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    for record in table.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in record) + " |")
    lines += ["", *speedup_lines(table), "", ENGINE_NOTES]
    return "\n".join(lines)


def write_comparison(
    runs: Sequence[tuple[str, str, str, str, float]],
    csv_path: str | os.PathLike[str],
    md_path: str | os.PathLike[str],
    title: str = "Training engines compared",
) -> pd.DataFrame:
    """`runs`: (stage, engine, metrics.json, benchmark TSV, epochs) per trained model.

    Writes the table as CSV and as Markdown (with the loop's speed-up per stage)."""
    table = comparison_table([engine_row(*run) for run in runs])
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_text(md_path, to_markdown(table, title))
    return table
