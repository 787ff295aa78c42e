"""The yardstick: TF-IDF on character 1-3-grams + a linear SVM, trained on the same train
split and scored on the same valid split as the transformer."""

from __future__ import annotations

import time
from typing import Any

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from newstopic.atomic import atomic_path, write_json
from newstopic.metrics import accuracy, macro_f1
from newstopic.preprocess import read_split


def tfidf_svm_baseline(
    train_path: str,
    valid_path: str,
    test_path: str,
    metrics_path: str,
    submission_path: str,
    *,
    ngram_max: int = 3,
    c: float = 0.3,
    analyzer: str = "char_wb",
) -> dict[str, Any]:
    """Fit on train, score on valid, predict test; write metrics.json and a submission."""
    start = time.perf_counter()
    train = read_split(train_path, labeled=True)
    valid = read_split(valid_path, labeled=True)
    test = read_split(test_path, labeled=False)
    # sublinear tf: a repeated n-gram in a 20-character title is not 3x the evidence.
    vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=(1, ngram_max), sublinear_tf=True)
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
    with atomic_path(submission_path) as tmp:
        test[["index"]].assign(topic_idx=test_pred).to_csv(tmp, index=False)
    write_json(metrics_path, metrics)
    return metrics
