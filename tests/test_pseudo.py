"""Pseudo-label selection: threshold, per-class cap, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from newstopic.errors import InputError
from newstopic.predict import PROB_COLUMNS
from newstopic.preprocess import UNLABELED_SCHEMA, write_parquet
from newstopic.pseudo import average_probs, pseudo_label_files, select_pseudo_labels
from newstopic.teachers import selection_quality


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


def write_probs(frame: pd.DataFrame, path: Path) -> str:
    frame.assign(topic_idx=frame[PROB_COLUMNS].to_numpy().argmax(1)).to_parquet(path, index=False)
    return str(path)


def test_two_teachers_are_averaged_row_by_row(tmp_path: Path) -> None:
    probs, test = frames()
    # A second teacher, rows in another order: it is sure of row 102 (class 5), and
    # unsure of row 101, which the first teacher alone would accept.
    other = probs.copy()
    other.loc[other["index"] == 102, PROB_COLUMNS] = np.eye(7, dtype=np.float32)[5]
    other.loc[other["index"] == 101, PROB_COLUMNS] = np.full(7, 1 / 7, dtype=np.float32)
    other = other.iloc[::-1]
    write_parquet(test.assign(title_raw=test["title_raw"]), tmp_path / "test.parquet", UNLABELED_SCHEMA)
    report = pseudo_label_files(
        [write_probs(probs, tmp_path / "a.parquet"), write_probs(other, tmp_path / "b.parquet")],
        str(tmp_path / "test.parquet"),
        str(tmp_path / "rows.parquet"),
        str(tmp_path / "report.json"),
        threshold=0.9,
        max_per_class=None,
    )
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    # 100: (0.95 + 0.95) / 2; 101: (0.99 + 1/7) / 2 < 0.9; 103: 0.91; 105: 0.97.
    assert rows["index"].tolist() == [100, 103, 105]
    assert rows["topic_idx"].tolist() == [0, 3, 6]
    assert report["mean_confidence"] == pytest.approx((0.95 + 0.91 + 0.97) / 3, abs=1e-6)
    assert report["accepted"] == 3 and len(report["teachers"]) == 2


def test_teachers_must_cover_the_same_rows(tmp_path: Path) -> None:
    probs, _ = frames()
    with pytest.raises(InputError, match=r"b\.parquet: its test rows differ from those of .*a\.parquet"):
        average_probs([probs, probs.iloc[1:]], [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])


def test_selection_quality_counts_kept_rows_and_their_precision() -> None:
    probs = np.array([[0.95, 0.05], [0.92, 0.08], [0.4, 0.6], [0.1, 0.9]])
    quality = selection_quality(np.array([0, 1, 1, 0]), probs, threshold=0.9)
    # argmax right on rows 0 and 2; rows 0, 1, 3 kept, of which only row 0 is right.
    assert quality == {"accuracy": 0.5, "coverage": 0.75, "precision": pytest.approx(1 / 3)}
    assert np.isnan(selection_quality(np.array([0]), np.array([[0.6, 0.4]]), 0.9)["precision"])
