"""K-fold cross-validation of the training split (config `cv.folds`).

The labeled rows of the train split (never the held-out valid split) are cut into K stratified
folds. Fold model k trains on the other K-1 folds and chooses its best epoch on fold k; its
predictions on fold k are out-of-fold (OOF): every training row gets exactly one, from a model
that never saw it. Ensemble weights are fit on those, so the valid split stays untouched by any
choice and remains the honest yardstick.

    folds parquet   index, topic_idx, fold       (FOLDS_SCHEMA, one row per train-split row)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from newstopic.atomic import atomic_path, write_json
from newstopic.errors import InputError
from newstopic.formats import (
    FOLDS_SCHEMA,
    PROB_COLUMNS,
    PROBS_SCHEMA,
    probs_frame,
    read_folds,
    read_json,
    read_probs,
    read_split,
    write_parquet,
)
from newstopic.metrics import classification_metrics

log = logging.getLogger("newstopic")


def assign_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each row: stratified, every fold within one row of the same size
    per class and overall, deterministic from `seed`.

    Rows are shuffled within their class, the classes laid end to end, and dealt round-robin:
    each class's rows go to consecutive folds, so class counts per fold differ by at most one,
    and the dealing carries on across classes, so fold sizes do too."""
    labels = np.asarray(labels)
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    rng = np.random.default_rng([seed, k])  # its own stream: not the split's (seed) or sampling's
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    folds = np.empty(len(labels), dtype=np.int64)
    folds[order] = np.arange(len(labels)) % k
    return folds


def make_folds(train_path: str, folds_path: str, *, k: int, seed: int) -> dict[str, Any]:
    """The make_folds rule: the train split's rows -> their folds."""
    train = read_split(train_path, labeled=True)
    labels = train["topic_idx"].to_numpy()
    folds = assign_folds(labels, k, seed)
    frame = pd.DataFrame({"index": train["index"].to_numpy(), "topic_idx": labels, "fold": folds})
    write_parquet(frame, folds_path, FOLDS_SCHEMA)
    sizes = np.bincount(folds, minlength=k).tolist()
    log.info("%d training rows in %d folds of %s rows", len(frame), k, sizes)
    return {"rows": len(frame), "sizes": sizes}


def _ordered(frame: pd.DataFrame, index: np.ndarray, name: str) -> np.ndarray:
    """The prob_* of `frame` for the rows `index`, in that order; every row must be there."""
    frame = frame.set_index("index")
    if len(frame) != len(index) or not np.isin(index, frame.index.to_numpy()).all():
        raise InputError(f"{name}: its rows are not the expected {len(index)} rows")
    return frame.loc[index, PROB_COLUMNS].to_numpy(dtype=np.float64)


def _mean_probs(paths: list[str], index: np.ndarray) -> np.ndarray:
    """The mean prob_* of several probabilities files for the rows `index`, in that order."""
    return np.mean([_ordered(read_probs(p), index, p) for p in paths], axis=0)


def combine_fold_predictions(
    inputs: Mapping[str, Any], outputs: Mapping[str, str], *, stage: str
) -> dict[str, Any]:
    """The fold_average rule: the K fold models of `stage` as one member.

    `inputs`: folds, valid (parquet), and per fold lists oof, valid_probs, test_probs, metrics.
    Writes: oof (every training row's out-of-fold probabilities), valid_probs and test_probs
    (the mean of the K fold models), submission (argmax of test) and metrics (OOF and valid
    scores, per fold too)."""
    folds = read_folds(inputs["folds"])
    oof = pd.concat([read_probs(p) for p in inputs["oof"]], ignore_index=True)
    index = folds["index"].to_numpy()
    oof_p = _ordered(oof, index, "the fold models' OOF predictions")
    valid = read_split(inputs["valid"], labeled=True)
    valid_p = _mean_probs(inputs["valid_probs"], valid["index"].to_numpy())
    test_index = read_probs(inputs["test_probs"][0])["index"].to_numpy()
    test_p = _mean_probs(inputs["test_probs"], test_index)

    write_parquet(probs_frame(index, oof_p.astype(np.float32)), outputs["oof"], PROBS_SCHEMA)
    valid_frame = probs_frame(valid["index"].to_numpy(), valid_p.astype(np.float32))
    write_parquet(valid_frame, outputs["valid_probs"], PROBS_SCHEMA)
    test_frame = probs_frame(test_index, test_p.astype(np.float32))
    write_parquet(test_frame, outputs["test_probs"], PROBS_SCHEMA)
    with atomic_path(outputs["submission"]) as tmp:
        test_frame[["index", "topic_idx"]].to_csv(tmp, index=False)

    per_fold = [read_json(p) for p in inputs["metrics"]]
    metrics: dict[str, Any] = {"stage": stage, "folds": len(per_fold)}
    metrics |= classification_metrics(valid["topic_idx"].to_numpy(), valid_p, prefix="valid_")
    metrics |= classification_metrics(folds["topic_idx"].to_numpy(), oof_p, prefix="oof_")
    metrics |= {
        "train_rows": int(np.mean([m["train_rows"] for m in per_fold])),
        "oof_rows": len(index),
        "valid_rows": len(valid),
        "seconds": round(sum(m["seconds"] for m in per_fold), 2),
        "per_fold": [
            {k: m.get(k) for k in ("fold", "fold_accuracy", "valid_accuracy", "best_epoch", "train_rows")}
            for m in per_fold
        ],
    }
    write_json(outputs["metrics"], metrics)
    log.info(
        "%s: %d folds, OOF accuracy %.4f, valid accuracy %.4f",
        stage,
        len(per_fold),
        metrics["oof_accuracy"],
        metrics["valid_accuracy"],
    )
    return metrics
