"""Pseudo-label selection: threshold, per-class cap, report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from newstopic.predict import PROB_COLUMNS
from newstopic.pseudo import select_pseudo_labels


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    probs = np.full((6, 7), 0.01, dtype=np.float32)
    for row, (cls, p) in enumerate([(0, 0.95), (0, 0.99), (0, 0.5), (3, 0.91), (3, 0.89), (6, 0.97)]):
        probs[row, cls] = p
    frame = pd.DataFrame(probs, columns=PROB_COLUMNS)
    frame.insert(0, "index", np.arange(100, 106))
    test = pd.DataFrame(
        {
            "index": np.arange(100, 106),
            "title": [f"t{i}" for i in range(6)],
            "title_raw": [f"r{i}" for i in range(6)],
        }
    )
    return frame, test


def test_threshold_selects_confident_rows() -> None:
    rows, report = select_pseudo_labels(*frames(), threshold=0.9)
    assert rows["index"].tolist() == [100, 101, 103, 105]
    assert rows["topic_idx"].tolist() == [0, 0, 3, 6]
    assert rows["title"].tolist() == ["t0", "t1", "t3", "t5"]
    assert report["accepted"] == 4 and report["test_rows"] == 6
    assert report["per_class"] == {"0": 2, "1": 0, "2": 0, "3": 1, "4": 0, "5": 0, "6": 1}
    assert abs(report["acceptance_rate"] - 4 / 6) < 1e-9


def test_cap_per_class_keeps_the_most_confident() -> None:
    rows, report = select_pseudo_labels(*frames(), threshold=0.9, max_per_class=1)
    assert rows["index"].tolist() == [101, 103, 105]  # 101 (0.99) beats 100 (0.95)
    assert report["per_class"]["0"] == 1


def test_threshold_one_accepts_nothing() -> None:
    rows, report = select_pseudo_labels(*frames(), threshold=1.0)
    assert rows.empty and report["accepted"] == 0 and report["mean_confidence"] is None
