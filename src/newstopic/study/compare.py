"""The engine comparison table: the hand-written loop vs the Hugging Face Trainer, per stage,
from each run's metrics.json (quality, training seconds), usage.json (the job's CPU seconds
and peak RSS, newstopic.study.usage) and Snakemake benchmark TSV (wall seconds), with the work each
engine's batching implies (padding, MLM head positions)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from newstopic.atomic import atomic_path, write_text
from newstopic.data import encode, length_grouped_batches
from newstopic.errors import InputError
from newstopic.formats import read_benchmark, read_json, read_titles

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
    "cpu_seconds",
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
included). wall_seconds: the whole job, from Snakemake's benchmark file. cpu_seconds and
peak_rss_mb: the whole job's process (start-up and data loading included), from getrusage.
On a machine shared with other work, cpu_seconds is the steadier speed figure.
"""


def _need(obj: dict[str, Any], key: str, path: str | os.PathLike[str]) -> Any:
    if key not in obj:
        raise InputError(f"{path}: missing key {key!r}")
    return obj[key]


def engine_row(
    stage: str,
    engine: str,
    metrics_path: str | os.PathLike[str],
    usage_path: str | os.PathLike[str],
    benchmark_path: str | os.PathLike[str],
    epochs: float,
) -> dict[str, Any]:
    """One table row: quality and speed of one engine on one stage."""
    metrics = read_json(metrics_path)
    usage = read_json(usage_path)
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
        "cpu_seconds": float(_need(usage, "process_cpu_seconds", usage_path)),
        "peak_rss_mb": float(_need(usage, "process_peak_rss_mb", usage_path)),
    }
    row["wall_seconds"] = read_benchmark(benchmark_path)["wall_s"]
    return row


def comparison_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


# --- the work each engine's batching implies ------------------------------------------------
def padded_positions(lengths: np.ndarray, batch_size: int, seed: int) -> dict[str, float]:
    """Token positions an epoch computes (padding included) per real token, with the loop's
    length-bucketed batches and with random batches (the Trainer's default sampler)."""
    lengths = np.asarray(lengths)
    real = float(lengths.sum())

    def positions(batches: Sequence[np.ndarray]) -> float:
        return float(sum(len(b) * lengths[b].max() for b in batches))

    bucketed = length_grouped_batches(lengths, batch_size, seed, epoch=0)
    order = np.random.default_rng(seed).permutation(len(lengths))
    shuffled = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return {"loop": positions(bucketed) / real, "hf": positions(shuffled) / real}


def work_lines(tokenizer: Any, stage_texts: dict[str, list[str]], cfg: dict[str, Any]) -> list[str]:
    """Why the loop does less work: padding per stage and, for MLM, LM-head positions.
    `cfg`: batch_sizes (per stage), max_length, seed, mask_prob."""
    batch_sizes, max_length, seed, mask_prob = (
        cfg[k] for k in ("batch_sizes", "max_length", "seed", "mask_prob")
    )
    lines = []
    for stage, texts in stage_texts.items():
        lengths = np.array([len(x) for x in encode(tokenizer, texts, max_length)])
        pos = padded_positions(lengths, batch_sizes[stage], seed)
        lines.append(
            f"- {stage} encoder positions per real token (padding included): loop {pos['loop']:.3f}, "
            f"hf {pos['hf']:.3f} ({len(lengths)} titles of {lengths.mean():.1f} tokens on average, "
            f"batch {batch_sizes[stage]})."
        )
        if stage == "mlm":
            lines.append(
                f"- mlm LM-head positions per real token: loop {mask_prob:.3f} (masked only), "
                f"hf {pos['hf']:.3f} (every position): {pos['hf'] / mask_prob:.1f}x the "
                "vocabulary projections."
            )
    return lines


# --- the report -----------------------------------------------------------------------------
def speedup_lines(table: pd.DataFrame, baseline: str = "hf", fast: str = "loop") -> list[str]:
    """One sentence per stage: how much faster `fast` trains than `baseline`."""
    lines = []
    for stage, group in table.groupby("stage", sort=False):
        by_engine = group.set_index("engine")
        if not {baseline, fast} <= set(by_engine.index):
            continue
        a, b = by_engine.loc[fast], by_engine.loc[baseline]
        lines.append(
            f"- {stage}: {fast} {a['train_samples_per_s']:.0f} vs {baseline} "
            f"{b['train_samples_per_s']:.0f} training samples/s "
            f"({a['train_samples_per_s'] / b['train_samples_per_s']:.2f}x); job CPU time "
            f"{a['cpu_seconds']:.1f} s vs {b['cpu_seconds']:.1f} s "
            f"({b['cpu_seconds'] / a['cpu_seconds']:.2f}x); wall time {a['wall_seconds']:.1f} s vs "
            f"{b['wall_seconds']:.1f} s; peak RSS {a['peak_rss_mb']:.0f} MB vs {b['peak_rss_mb']:.0f} MB."
        )
    return lines


def to_markdown(
    table: pd.DataFrame, work: Sequence[str] = (), title: str = "Training engines compared"
) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = [f"# {title}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    for record in table.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in record) + " |")
    lines += ["", *speedup_lines(table), *work, "", ENGINE_NOTES]
    return "\n".join(lines)


def write_comparison(
    runs: Sequence[tuple[str, str, str, str, str, float]],
    csv_path: str | os.PathLike[str],
    md_path: str | os.PathLike[str],
    work: Sequence[str] = (),
    title: str = "Training engines compared",
) -> pd.DataFrame:
    """`runs`: (stage, engine, metrics.json, usage.json, benchmark TSV, epochs) per trained
    model; `work`:
    lines from `work_lines`. Writes the table as CSV and as Markdown (with the loop's
    speed-up per stage)."""
    table = comparison_table([engine_row(*run) for run in runs])
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_text(md_path, to_markdown(table, work, title))
    return table


def compare_engines(
    runs: Sequence[tuple[str, str, str, str, str, float]],
    csv_path: str | os.PathLike[str],
    md_path: str | os.PathLike[str],
    *,
    tokenizer_dir: str | os.PathLike[str],
    stage_files: dict[str, list[str]],
    work: dict[str, Any],
) -> pd.DataFrame:
    """The compare_engines stage: the table, plus the padding / LM-head work behind it
    (computed on each stage's training titles, `stage_files`; `work` as in work_lines)."""
    from newstopic.tokenization import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    texts = {stage: read_titles(files) for stage, files in stage_files.items()}
    return write_comparison(runs, csv_path, md_path, work_lines(tokenizer, texts, work))
