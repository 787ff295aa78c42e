"""Pseudo-labels: confident test predictions become extra training rows.

Hard pseudo-labels are the teachers' argmax. Soft ones also keep the teachers' averaged class
probabilities (prob_* columns), and retraining fits those (knowledge distillation): an uncertain
row then teaches "A or B", not a coin flip, and the student learns what the TF-IDF teacher
knows, not only what it agrees on with the fine-tuned model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from newstopic import NUM_LABELS
from newstopic.predict import PROB_COLUMNS, probs_frame


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


def read_probs(path: str) -> pd.DataFrame:
    """A probabilities parquet (index + prob_* columns), checked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from newstopic.errors import InputError

    try:
        probs = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ["index", *PROB_COLUMNS] if c not in probs.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return probs


def average_probs(frames: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """The teachers' mean class probabilities per test row (rows matched on index)."""
    from newstopic.errors import InputError

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
    threshold: float,
    max_per_class: int | None,
    soft: bool = False,
) -> dict[str, Any]:
    """The pseudo_label stage: average the teachers' test probabilities (one file or several),
    keep the confident rows; write rows (soft: with their probabilities) + report."""
    from newstopic.atomic import write_json
    from newstopic.preprocess import LABELED_SCHEMA, SOFT_LABELED_SCHEMA, read_split, write_parquet

    probs = average_probs([read_probs(p) for p in probs_paths], list(probs_paths))
    test = read_split(test_path, labeled=False)
    rows, report = select_pseudo_labels(probs, test, threshold, max_per_class, soft)
    report["teachers"] = list(probs_paths)
    write_parquet(rows, rows_path, SOFT_LABELED_SCHEMA if soft else LABELED_SCHEMA)
    write_json(report_path, report)
    return report
