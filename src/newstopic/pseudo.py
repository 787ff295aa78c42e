"""Pseudo-labels: confident test predictions become extra training rows.

Hard pseudo-labels are the teachers' argmax. Soft ones also keep the teachers' averaged class
probabilities (prob_* columns), and retraining fits those (knowledge distillation): an uncertain
row then teaches "A or B", not a coin flip, and the student learns what the TF-IDF teacher
knows, not only what it agrees on with the fine-tuned model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from newstopic import NUM_LABELS
from newstopic.atomic import write_json
from newstopic.errors import InputError
from newstopic.formats import (
    LABELED_SCHEMA,
    PROB_COLUMNS,
    SOFT_LABELED_SCHEMA,
    probs_frame,
    read_probs,
    read_split,
    write_parquet,
)

log = logging.getLogger("newstopic")


def select_pseudo_labels(
    probs: pd.DataFrame,
    test: pd.DataFrame,
    threshold: float,
    max_per_class: int | None = None,
    soft: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows whose max probability >= threshold, at most `max_per_class` (most confident first)
    per predicted class. Returns (rows with index, title, title_raw, topic_idx, confidence, and
    with `soft` the prob_* columns; report)."""
    p = probs[PROB_COLUMNS].to_numpy()
    frame = pd.DataFrame(
        {"index": probs["index"].to_numpy(), "topic_idx": p.argmax(1), "confidence": p.max(1)}
    )
    if soft:
        frame[PROB_COLUMNS] = p
    frame = frame.merge(test[["index", "title", "title_raw"]], on="index", how="inner", validate="1:1")
    chosen = frame[frame["confidence"] >= threshold]
    if max_per_class is not None:
        chosen = (
            chosen.sort_values(["topic_idx", "confidence", "index"], ascending=[True, False, True])
            .groupby("topic_idx", sort=True)
            .head(max_per_class)
        )
    chosen = chosen.sort_values("index").reset_index(drop=True)
    counts = np.bincount(chosen["topic_idx"].to_numpy(), minlength=NUM_LABELS)
    report = {
        "threshold": threshold,
        "soft": soft,
        "max_per_class": max_per_class,
        "test_rows": int(len(frame)),
        "accepted": int(len(chosen)),
        "acceptance_rate": float(len(chosen) / max(len(frame), 1)),
        "per_class": {str(c): int(counts[c]) for c in range(NUM_LABELS)},
        "mean_confidence": float(chosen["confidence"].mean()) if len(chosen) else None,
    }
    columns = ["index", "title", "title_raw", "topic_idx", "confidence"]
    return chosen[columns + (PROB_COLUMNS if soft else [])], report


def average_probs(frames: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """The teachers' mean class probabilities per test row (rows matched on index)."""
    ordered = [f.set_index("index").sort_index() for f in frames]
    for frame, name in zip(ordered[1:], names[1:], strict=True):
        if not frame.index.equals(ordered[0].index):
            raise InputError(f"{name}: its test rows differ from those of {names[0]}")
    mean = sum(f[PROB_COLUMNS].to_numpy(dtype=np.float64) for f in ordered) / len(ordered)
    return probs_frame(ordered[0].index.to_numpy(), mean)


def pseudo_label_files(
    probs_paths: list[str],
    test_path: str,
    rows_path: str,
    report_path: str,
    *,
    section: dict[str, Any],
    fold_rows: list[str] | None = None,
) -> dict[str, Any]:
    """The pseudo_label stage: average the teachers' test probabilities (one file or several),
    keep the confident rows; write rows (soft: with their probabilities) + report.
    `section`: threshold, max_per_class and soft (config `pseudo_label`).

    With folds (`fold_rows`: K paths), `probs_paths` holds the teachers' fold models, fold by
    fold, and fold k's rows (its students' training rows) come from fold k's teachers alone.
    `rows_path` then holds the labels of all K folds' teachers averaged (what the report and
    the next round compare), which no student trains on."""
    threshold, max_per_class, soft = section["threshold"], section["max_per_class"], section["soft"]
    test = read_split(test_path, labeled=False)
    probs = average_probs([read_probs(p) for p in probs_paths], list(probs_paths))
    rows, report = select_pseudo_labels(probs, test, threshold, max_per_class, soft)
    report["teachers"] = list(probs_paths)
    schema = SOFT_LABELED_SCHEMA if soft else LABELED_SCHEMA
    if fold_rows:
        report["folds"] = _fold_pseudo_labels(probs_paths, test, rows, fold_rows, section)
    write_parquet(rows, rows_path, schema)
    write_json(report_path, report)
    log.info("accepted %d of %d test rows", report["accepted"], report["test_rows"])
    return report


def _fold_pseudo_labels(
    probs_paths: list[str],
    test: pd.DataFrame,
    mean_rows: pd.DataFrame,
    fold_rows: list[str],
    section: dict[str, Any],
) -> list[dict[str, Any]]:
    """Write fold k's pseudo-labels from fold k's teachers (probs_paths, fold by fold); return
    per fold how many rows it kept and how many of its labels agree with the mean teachers'."""
    k = len(fold_rows)
    if len(probs_paths) % k:
        raise InputError(f"{len(probs_paths)} teacher files do not split into {k} folds")
    per_fold = len(probs_paths) // k
    mean_labels = mean_rows.set_index("index")["topic_idx"]
    schema = SOFT_LABELED_SCHEMA if section["soft"] else LABELED_SCHEMA
    folds = []
    for fold, out in enumerate(fold_rows):
        paths = list(probs_paths[fold * per_fold : (fold + 1) * per_fold])
        probs = average_probs([read_probs(p) for p in paths], paths)
        rows, report = select_pseudo_labels(
            probs, test, section["threshold"], section["max_per_class"], section["soft"]
        )
        write_parquet(rows, out, schema)
        shared = rows.set_index("index")["topic_idx"].align(mean_labels, join="inner")
        agreement = float((shared[0] == shared[1]).mean()) if len(shared[0]) else None
        kept = {"accepted": report["accepted"], "agreement_with_mean": agreement}
        folds.append({"fold": fold, "teachers": paths, **kept})
    return folds
