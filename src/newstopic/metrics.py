"""Classification metrics (numpy only; the competition metric is accuracy)."""

from __future__ import annotations

import numpy as np

from newstopic import NUM_LABELS


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int = NUM_LABELS) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in range(num_labels):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, prefix: str = "valid_") -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of predicted probabilities."""
    y_true = np.asarray(y_true)
    pred = probs.argmax(1)
    nll = -np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None)).mean()
    return {
        f"{prefix}accuracy": accuracy(y_true, pred),
        f"{prefix}macro_f1": macro_f1(y_true, pred),
        f"{prefix}loss": float(nll),
    }
