"""The files the rules hand each other, in one place: parquet schemas, readers and writers.

    train/valid parquet   index, title, title_raw, topic_idx      (LABELED_SCHEMA)
    pseudo-labels (soft)  ... + prob_0..prob_6, the teachers'       (SOFT_LABELED_SCHEMA)
    test parquet          index, title, title_raw                  (UNLABELED_SCHEMA)
    probabilities         index, prob_0..prob_6, topic_idx         (PROBS_SCHEMA)
    folds                 index, topic_idx, fold (0..K-1)           (FOLDS_SCHEMA)
    benchmark TSV         Snakemake's: s, max_rss, ...             (read_benchmark)

Every reader checks what it reads and reports a bad file in one line (InputError).
Importing this module loads neither torch nor transformers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from newstopic import NUM_LABELS
from newstopic.atomic import atomic_path
from newstopic.errors import InputError

PROB_COLUMNS = [f"prob_{i}" for i in range(NUM_LABELS)]

LABELED_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("title", pa.string()),
        ("title_raw", pa.string()),
        ("topic_idx", pa.int64()),
    ]
)
# Soft pseudo-labels: also the teachers' class probabilities, which retraining fits.
SOFT_LABELED_SCHEMA = pa.schema([*LABELED_SCHEMA, *(pa.field(c, pa.float64()) for c in PROB_COLUMNS)])
UNLABELED_SCHEMA = pa.schema([("index", pa.int64()), ("title", pa.string()), ("title_raw", pa.string())])
PROBS_SCHEMA = pa.schema(
    [("index", pa.int64())] + [(c, pa.float32()) for c in PROB_COLUMNS] + [("topic_idx", pa.int64())]
)
# K-fold cross-validation of the train split (newstopic.folds): one row per train-split row.
FOLDS_SCHEMA = pa.schema([("index", pa.int64()), ("topic_idx", pa.int64()), ("fold", pa.int64())])

PathLike = str | os.PathLike[str]


def write_parquet(df: pd.DataFrame, path: PathLike, schema: pa.Schema) -> None:
    """`df`'s columns of `schema`, written atomically."""
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _read_table(path: PathLike, columns: list[str]) -> pa.Table:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return table


def read_split(path: PathLike, labeled: bool) -> pd.DataFrame:
    """A preprocessed split (train/valid with topic_idx, test without), schema checked."""
    schema = LABELED_SCHEMA if labeled else UNLABELED_SCHEMA
    return _read_table(path, schema.names).select(schema.names).to_pandas()


def read_titles(paths: list[PathLike]) -> list[str]:
    """The titles of one or more splits, in file order (the MLM corpus, the tokenizer's)."""
    return [t for p in paths for t in read_split(p, labeled=False)["title"].tolist()]


def read_soft_targets(path: PathLike) -> np.ndarray | None:
    """The prob_* columns of a labeled split (soft pseudo-labels) as float32 [rows, classes],
    checked to be class probabilities; None when it has hard labels only."""
    table = _read_table(path, ["index"])
    if not set(PROB_COLUMNS) <= set(table.column_names):
        return None
    targets = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in PROB_COLUMNS])
    ok = np.isfinite(targets).all(1) & (targets >= 0).all(1) & (np.abs(targets.sum(1) - 1) < 1e-3)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise InputError(
            f"{path}: row {row} (index {table.column('index')[row].as_py()}): "
            "prob_* are not class probabilities summing to 1"
        )
    return targets.astype(np.float32)


def read_labeled(paths: list[PathLike]) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Concatenate labeled splits (train, pseudo-labels); an index may appear once.

    Also returns the rows' target distributions when a file has soft labels (one-hot for the
    rows of the others), else None: plain class indices, the usual cross-entropy."""
    frames = [read_split(p, labeled=True) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    dup = df["index"].duplicated()
    if dup.any():
        raise InputError(f"{paths}: index {df['index'][dup].iat[0]} appears twice across the inputs")
    soft = [read_soft_targets(p) for p in paths]
    if all(t is None for t in soft):
        return df, None
    one_hot = np.eye(NUM_LABELS, dtype=np.float32)
    targets = [
        t if t is not None else one_hot[f["topic_idx"].to_numpy()] for t, f in zip(soft, frames, strict=True)
    ]
    return df, np.concatenate(targets)


def probs_frame(index: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """Rows of PROBS_SCHEMA: index, prob_0..prob_6 and the argmax class."""
    frame = pd.DataFrame(probs, columns=PROB_COLUMNS)
    frame.insert(0, "index", index)
    frame["topic_idx"] = probs.argmax(1)
    return frame


def read_probs(path: PathLike) -> pd.DataFrame:
    """A probabilities parquet (index + prob_* columns), checked."""
    return _read_table(path, ["index", *PROB_COLUMNS]).to_pandas()


def read_folds(path: PathLike) -> pd.DataFrame:
    """A folds parquet, checked: folds numbered 0..K-1 (K >= 2), none empty."""
    frame = _read_table(path, FOLDS_SCHEMA.names).select(FOLDS_SCHEMA.names).to_pandas()
    folds = np.unique(frame["fold"].to_numpy())
    if len(folds) < 2 or not np.array_equal(folds, np.arange(len(folds))):
        raise InputError(f"{path}: folds must be numbered 0..K-1 (K >= 2), each with rows")
    if frame["index"].duplicated().any():
        raise InputError(f"{path}: index {frame['index'][frame['index'].duplicated()].iat[0]} appears twice")
    return frame


def read_json(path: PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def read_benchmark(path: PathLike) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of a job from its Snakemake benchmark TSV.

    With `benchmark: repeat(...)` there is one row per repetition: the median wall time and
    the highest peak. (Snakemake samples RSS and CPU time, every 30 s after the first 15 s.)
    """
    try:
        frame = pd.read_csv(path, sep="\t")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a Snakemake benchmark TSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("s", "max_rss") if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (not a Snakemake benchmark TSV?)")
    if frame.empty:
        raise InputError(f"{path}: no benchmark row")
    rss = pd.to_numeric(frame["max_rss"], errors="coerce")  # "-" when the job was too short to sample
    return {
        "wall_s": float(pd.to_numeric(frame["s"], errors="coerce").median()),
        "max_rss_mb": float(rss.max()) if rss.notna().any() else float("nan"),
    }
