"""The yardstick: TF-IDF on character 1-3-grams + a linear SVM, trained on the same train
split and scored on the same valid split as the transformer."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.sparse import spmatrix
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from newstopic import NUM_LABELS
from newstopic.atomic import atomic_path, write_json
from newstopic.formats import PROBS_SCHEMA, probs_frame, read_folds, read_split, write_parquet
from newstopic.metrics import accuracy, macro_f1

log = logging.getLogger("newstopic")


def tfidf_vectorizer(analyzer: str, ngram_max: int) -> TfidfVectorizer:
    # sublinear tf: a repeated n-gram in a 20-character title is not 3x the evidence.
    return TfidfVectorizer(analyzer=analyzer, ngram_range=(1, ngram_max), sublinear_tf=True)


def calibrated_svm(
    x_train: spmatrix, labels: np.ndarray, c: float, random_state: int | None = None
) -> CalibratedClassifierCV:
    """The LinearSVC with probabilities. An SVM has margins, not probabilities: Platt scaling
    fitted by 3-fold CV on the training rows (nothing else is seen) turns them into
    probabilities another model's can be averaged with."""
    svm = LinearSVC(C=c, random_state=random_state)
    return CalibratedClassifierCV(svm, cv=3, method="sigmoid").fit(x_train, labels)


def tfidf_svm_baseline(
    inputs: Mapping[str, str], outputs: Mapping[str, str], *, section: Mapping[str, Any]
) -> dict[str, Any]:
    """The baseline stage: fit on the train split, score on valid, predict test. `inputs`:
    train, valid and test parquet; `outputs`: metrics (json), submission (csv) and test_probs
    (calibrated test probabilities, for pseudo-labelling); `section`: config `baseline`."""
    start = time.perf_counter()
    analyzer, ngram_max, c = section["analyzer"], section["ngram_max"], section["c"]
    train = read_split(inputs["train"], labeled=True)
    valid = read_split(inputs["valid"], labeled=True)
    test = read_split(inputs["test"], labeled=False)
    vectorizer = tfidf_vectorizer(analyzer, ngram_max)
    x_train = vectorizer.fit_transform(train["title"])
    clf = LinearSVC(C=c).fit(x_train, train["topic_idx"])
    pred = clf.predict(vectorizer.transform(valid["title"]))
    metrics = {
        "stage": "baseline",
        "model": f"tfidf-{analyzer}-1-{ngram_max}-gram + LinearSVC(C={c})",
        "valid_accuracy": accuracy(valid["topic_idx"], pred),
        "valid_macro_f1": macro_f1(valid["topic_idx"], pred),
        "train_rows": len(train),
        "valid_rows": len(valid),
        "features": len(vectorizer.vocabulary_),
        "seconds": round(time.perf_counter() - start, 2),
    }
    test_pred = clf.predict(vectorizer.transform(test["title"]))
    with atomic_path(outputs["submission"]) as tmp:
        test[["index"]].assign(topic_idx=test_pred).to_csv(tmp, index=False)
    calibrated = calibrated_svm(x_train, train["topic_idx"].to_numpy(), c)
    probs = calibrated.predict_proba(vectorizer.transform(test["title"]))
    frame = probs_frame(test["index"].to_numpy(), probs.astype("float32"))
    write_parquet(frame, outputs["test_probs"], PROBS_SCHEMA)
    write_json(outputs["metrics"], metrics)
    log.info("baseline valid accuracy %.4f", metrics["valid_accuracy"])
    return metrics


def baseline_fold_predictions(
    inputs: Mapping[str, str], outputs: Mapping[str, str], *, section: Mapping[str, Any]
) -> dict[str, Any]:
    """The baseline_folds rule: the baseline as an ensemble member, refit on the same K folds as
    the fold models. Fold model k (TF-IDF fit on the other folds, Platt-calibrated SVM) predicts
    fold k (out-of-fold); valid and test probabilities are the K models' mean, as a training
    stage's are. `inputs`: train, valid, test, folds; `outputs`: oof, valid, test (parquet)
    and fold_test (K paths: each fold model's test probabilities)."""
    train = read_split(inputs["train"], labeled=True)
    valid = read_split(inputs["valid"], labeled=True)
    test = read_split(inputs["test"], labeled=False)
    folds = read_folds(inputs["folds"]).set_index("index").loc[train["index"], "fold"].to_numpy()
    k = int(folds.max()) + 1
    oof = np.zeros((len(train), NUM_LABELS))
    valid_p, test_p = np.zeros((len(valid), NUM_LABELS)), np.zeros((len(test), NUM_LABELS))
    for fold in range(k):
        rows = folds != fold
        vectorizer = tfidf_vectorizer(section["analyzer"], section["ngram_max"])
        x = vectorizer.fit_transform(train["title"][rows])
        # A fixed random_state (LinearSVC's coordinate descent shuffles): the same folds give
        # the same probabilities, so a rerun ensemble is byte-identical.
        clf = calibrated_svm(x, train["topic_idx"].to_numpy()[rows], section["c"], random_state=0)
        oof[~rows] = clf.predict_proba(vectorizer.transform(train["title"][~rows]))
        valid_p += clf.predict_proba(vectorizer.transform(valid["title"])) / k
        fold_test = clf.predict_proba(vectorizer.transform(test["title"]))
        test_p += fold_test / k
        # Fold k's own test probabilities: the pseudo-label teacher of fold k's students.
        frame = probs_frame(test["index"].to_numpy(), fold_test.astype("float32"))
        write_parquet(frame, outputs["fold_test"][fold], PROBS_SCHEMA)
    for name, frame, probs in (("oof", train, oof), ("valid", valid, valid_p), ("test", test, test_p)):
        rows_probs = probs_frame(frame["index"].to_numpy(), probs.astype("float32"))
        write_parquet(rows_probs, outputs[name], PROBS_SCHEMA)
    scores = {
        "oof_accuracy": accuracy(train["topic_idx"], oof.argmax(1)),
        "valid_accuracy": accuracy(valid["topic_idx"], valid_p.argmax(1)),
    }
    log.info("baseline on %d folds: %s", k, scores)
    return scores
