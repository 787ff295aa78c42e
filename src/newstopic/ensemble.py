"""The ensemble: a convex combination of members' class probabilities, its weights fit on
out-of-fold (OOF) predictions only.

Members are a training stage's K fold models (their OOF rows, the mean of their valid and
test probabilities) and the TF-IDF baseline refit on the same folds. The weights minimise the
OOF log-loss of the mixture sum_m w_m p_m over the simplex (w >= 0, sum 1).

Why convex weights rather than a stacker (a classifier on the members' probabilities): with
2-6 members they are M-1 numbers, so they cannot overfit the OOF rows, and the result stays a
probability mixture the pseudo-labels can use as it is. The log-loss of a mixture is convex in
w, so the optimum is unique and found from any start, and it is never worse on OOF than the
best single member (a vertex of the simplex). A stacker has 7*(7M+1) parameters and would learn
the OOF rows' calibration, which is not the test rows': a fold model predicts OOF rows alone,
while test and valid get the mean of K models, which is smoother.

The held-out valid split is only scored, after the weights are fixed: no valid row reaches
the fit (`fit_weights` never sees one, and a member whose OOF rows include a valid row is
refused).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize

from newstopic.atomic import atomic_path, write_json, write_text
from newstopic.errors import InputError
from newstopic.formats import (
    PROB_COLUMNS,
    PROBS_SCHEMA,
    probs_frame,
    read_folds,
    read_probs,
    read_split,
    write_parquet,
)
from newstopic.metrics import classification_metrics

log = logging.getLogger("newstopic")


def fit_weights(oof: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Convex weights (>= 0, sum 1) of the members' OOF probabilities (each [rows, classes])
    minimising the mixture's mean log-loss on `labels`. Deterministic: SLSQP on the simplex
    from equal weights, with the exact gradient; a single member (a vertex, where the optimum
    often lies) is taken when the fit stopped short of it."""
    labels = np.asarray(labels)
    # Only the true class's probability enters the log-loss: one [members, rows] matrix.
    p_true = np.stack([np.clip(p[np.arange(len(labels)), labels], 1e-12, None) for p in oof])

    def loss(w: np.ndarray) -> float:
        return float(-np.log(np.clip(w @ p_true, 1e-12, None)).mean())

    def grad(w: np.ndarray) -> np.ndarray:
        return -(p_true / np.clip(w @ p_true, 1e-12, None)).mean(axis=1)

    m = len(oof)
    result = minimize(
        loss,
        np.full(m, 1 / m),
        jac=grad,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(m)}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    weights = np.clip(result.x, 0.0, None)
    weights = weights / weights.sum()
    candidates = [weights, *np.eye(m)]
    return min(candidates, key=loss)  # the first of equals: the fit unless a vertex is better


def aligned_probs(path: str, index: np.ndarray) -> np.ndarray:
    """The prob_* of a probabilities file for the rows `index`, in that order."""
    frame = read_probs(path).set_index("index")
    if len(frame) != len(index) or not np.isin(index, frame.index.to_numpy()).all():
        raise InputError(f"{path}: its rows are not the expected {len(index)} rows")
    return frame.loc[index, PROB_COLUMNS].to_numpy(dtype=np.float64)


def _scores(
    oof_labels: np.ndarray, oof: np.ndarray, valid_labels: np.ndarray, valid: np.ndarray
) -> dict[str, float]:
    return {
        **classification_metrics(oof_labels, oof, prefix="oof_"),
        **classification_metrics(valid_labels, valid, prefix="valid_"),
    }


def ensemble_report(metrics: dict[str, Any]) -> str:
    """The ensemble's table: each member, equal weights, and the fitted weights."""
    lines = [
        "| member | weight | OOF accuracy | OOF macro-F1 | valid accuracy | valid macro-F1 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows = [*metrics["members"], {"name": "equal weights", **metrics["equal_weights"]}]
    scores = [k for k in metrics["equal_weights"]]
    rows.append({"name": "**ensemble**", "weight": 1.0, **{k: metrics[k] for k in scores}})
    for r in rows:
        weight = f"{r['weight']:.3f}" if "weight" in r else ""
        name = f"{r['name']}: {r['label']}" if r.get("label") else r["name"]
        lines.append(
            f"| {name} | {weight} | {r['oof_accuracy']:.4f} | {r['oof_macro_f1']:.4f} "
            f"| {r['valid_accuracy']:.4f} | {r['valid_macro_f1']:.4f} |"
        )
    lines += [
        "",
        f"Weights fit on {metrics['oof_rows']} out-of-fold rows (OOF log-loss); "
        f"valid ({metrics['valid_rows']} rows) chose nothing.",
    ]
    return "\n".join(lines) + "\n"


def write_fold_mixtures(
    member_folds: list[str], outputs: list[str], weights: np.ndarray, test_index: np.ndarray
) -> None:
    """Fold k's mixture of the members' fold-k test probabilities, with the ensemble's weights:
    the next round's teacher of fold k's students, from models that never saw fold k.
    `member_folds`: member by member, each member's K fold files; `outputs`: K paths."""
    k = len(outputs)
    if len(member_folds) != k * len(weights):
        raise InputError(f"{len(member_folds)} fold test files: not {k} per member ({len(weights)})")
    for fold, out in enumerate(outputs):
        probs = [aligned_probs(member_folds[m * k + fold], test_index) for m in range(len(weights))]
        mixture = np.tensordot(weights, np.stack(probs), axes=1)
        write_parquet(probs_frame(test_index, mixture.astype(np.float32)), out, PROBS_SCHEMA)


def ensemble_files(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, str],
    *,
    members: list[str],
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ensemble rule. `inputs`: folds and valid (parquet), and per member (in `members`'
    order) lists oof, valid_probs, test_probs, and fold_test_probs (each member's K fold
    models' test probabilities, member by member). `labels`: what a member is, in words (extra
    seeds and encoders: newstopic.members), shown beside its name. Writes metrics (json),
    report (md), the ensemble's oof, valid and test probabilities, its submission, and
    fold_test (fold k's mixture, K paths)."""
    labels = labels or {}
    start = time.perf_counter()
    folds = read_folds(inputs["folds"])
    valid = read_split(inputs["valid"], labeled=True)
    oof_index, valid_index = folds["index"].to_numpy(), valid["index"].to_numpy()
    leaked = np.intersect1d(oof_index, valid_index)
    if leaked.size:  # the weights would be fit on a row they are then scored on
        raise InputError(f"{inputs['folds']}: valid row index {leaked[0]} is in a fold")
    oof = [aligned_probs(p, oof_index) for p in inputs["oof"]]
    weights = fit_weights(oof, folds["topic_idx"].to_numpy())  # OOF rows only

    valid_p = [aligned_probs(p, valid_index) for p in inputs["valid_probs"]]
    test_index = read_probs(inputs["test_probs"][0])["index"].to_numpy()
    test_p = [aligned_probs(p, test_index) for p in inputs["test_probs"]]
    y_oof, y_valid = folds["topic_idx"].to_numpy(), valid["topic_idx"].to_numpy()

    def mix(probs: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        return np.tensordot(w, np.stack(probs), axes=1)

    equal = np.full(len(members), 1 / len(members))
    metrics: dict[str, Any] = {
        "stage": "ensemble",
        "weights": dict(zip(members, weights.round(6).tolist(), strict=True)),
        **_scores(y_oof, mix(oof, weights), y_valid, mix(valid_p, weights)),
        "members": [
            {"name": m, **({"label": labels[m]} if m in labels else {}), "weight": float(w)}
            | _scores(y_oof, o, y_valid, v)
            for m, w, o, v in zip(members, weights, oof, valid_p, strict=True)
        ],
        "equal_weights": _scores(y_oof, mix(oof, equal), y_valid, mix(valid_p, equal)),
        "train_rows": len(oof_index),
        "oof_rows": len(oof_index),
        "valid_rows": len(valid_index),
    }
    for name, index, probs in (("oof", oof_index, oof), ("valid_probs", valid_index, valid_p)):
        write_parquet(probs_frame(index, mix(probs, weights).astype(np.float32)), outputs[name], PROBS_SCHEMA)
    test_frame = probs_frame(test_index, mix(test_p, weights).astype(np.float32))
    write_parquet(test_frame, outputs["test_probs"], PROBS_SCHEMA)
    write_fold_mixtures(inputs.get("fold_test_probs", []), outputs.get("fold_test", []), weights, test_index)
    with atomic_path(outputs["submission"]) as tmp:
        test_frame[["index", "topic_idx"]].to_csv(tmp, index=False)
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    write_json(outputs["metrics"], metrics)
    write_text(outputs["report"], ensemble_report(metrics))
    log.info("ensemble weights %s: valid accuracy %.4f", metrics["weights"], metrics["valid_accuracy"])
    return metrics
