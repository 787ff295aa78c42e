"""preprocess: CSV validation, cleaning, the stratified split and the parquet schema."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from newstopic.errors import InputError
from newstopic.formats import LABELED_SCHEMA, UNLABELED_SCHEMA
from newstopic.preprocess import (
    clean_title,
    preprocess,
    read_raw_csv,
    stratified_split,
)

DEFAULT_PATTERN = "[^가-힣A-Za-z0-9一-鿿 ]"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_clean_title_keeps_hangul_latin_digits_hanja() -> None:
    pattern = re.compile(DEFAULT_PATTERN)
    assert clean_title("NYT 클린턴 측근韓기업 특수관계 조명…공과 사", pattern) == (
        "NYT 클린턴 측근韓기업 특수관계 조명 공과 사"
    )
    assert clean_title("인천→핀란드  항공기\t결항", pattern) == "인천 핀란드 항공기 결항"
    assert clean_title("  a\tb  ", None) == "a b"


def test_stratified_split_keeps_class_proportions() -> None:
    labels = np.repeat(np.arange(7), [100, 200, 300, 50, 70, 90, 110])
    train, valid = stratified_split(labels, 0.1, seed=1)
    assert len(np.intersect1d(train, valid)) == 0
    assert len(train) + len(valid) == len(labels)
    for c, n in zip(range(7), [100, 200, 300, 50, 70, 90, 110], strict=True):
        assert (labels[valid] == c).sum() == round(n * 0.1)
    again = stratified_split(labels, 0.1, seed=1)
    assert np.array_equal(valid, again[1])
    assert not np.array_equal(valid, stratified_split(labels, 0.1, seed=2)[1])


def test_preprocess_writes_fixed_schema(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},제목 {i} 뉴스…,{i % 7}" for i in range(70))
    train = write(tmp_path / "train.csv", "index,title,topic_idx\n" + rows + "\n")
    test = write(tmp_path / "test.csv", "index,title\n100,시험 제목\n101,또 다른 제목!\n")
    out = tmp_path / "out"
    section = {
        "valid_fraction": 0.2,
        "remove_pattern": DEFAULT_PATTERN,
        "sample_per_class": None,
        "test_sample": None,
    }
    counts = preprocess(
        train,
        test,
        {split: out / f"{split}.parquet" for split in ("train", "valid", "test")},
        section=section,
        seed=0,
    )
    assert counts == {"train": 56, "valid": 14, "test": 2}
    assert pq.read_schema(out / "train.parquet").remove_metadata() == LABELED_SCHEMA
    assert pq.read_schema(out / "test.parquet").remove_metadata() == UNLABELED_SCHEMA
    tr = pq.read_table(out / "train.parquet").to_pandas()
    va = pq.read_table(out / "valid.parquet").to_pandas()
    assert set(tr["index"]).isdisjoint(va["index"])
    assert sorted(va["topic_idx"].value_counts()) == [2] * 7
    assert tr["title"].iat[0].endswith("뉴스") and tr["title_raw"].iat[0].endswith("뉴스…")
    te = pq.read_table(out / "test.parquet").to_pandas()
    assert te["title"].tolist() == ["시험 제목", "또 다른 제목"]
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffindex,title,topic_idx\r\n0,가나다,1\r\n1,라마바,2\r\n".encode())
    df = read_raw_csv(path, labeled=True)
    assert df["index"].tolist() == [0, 1]
    assert df["title"].tolist() == ["가나다", "라마바"]
    assert df["topic_idx"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("index,title,topic_idx\n0,가,7\n", r"row 1 .*topic_idx 7 is outside 0..6"),
        ("index,title,topic_idx\n0,가,1\n0,나,2\n", r"row 2 .*duplicate index 0"),
        ("index,title,topic_idx\n0,,1\n", r"row 1 .*empty title"),
        ("index,title\n0,가\n", r"missing column 'topic_idx'"),
        ("index,title,topic_idx\n0,가,x\n", r"topic_idx 'x' is not an integer"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError, match=expected) as err:
        read_raw_csv(path, labeled=True)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_real_train_csv_reads_clean(ynat: Path) -> None:
    df = read_raw_csv(ynat / "train.csv", labeled=True)
    assert len(df) == 45654
    assert np.bincount(df["topic_idx"]).tolist() == [4824, 6222, 7362, 5933, 7629, 6933, 6751]
    test = read_raw_csv(ynat / "test.csv", labeled=False)
    assert len(test) == 9131 and test["index"].min() == 45654
