"""Raw Dacon CSV -> validated, cleaned parquet splits (schemas in newstopic.formats).

Every problem with the input is reported as one line naming the file and the row.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from newstopic import NUM_LABELS
from newstopic.errors import InputError
from newstopic.formats import LABELED_SCHEMA, UNLABELED_SCHEMA, write_parquet

TRAIN_COLUMNS = ["index", "title", "topic_idx"]
TEST_COLUMNS = ["index", "title"]

log = logging.getLogger("newstopic")

_SPACES = re.compile(r"\s+")


def clean_title(title: str, remove_pattern: re.Pattern[str] | None) -> str:
    """Replace characters matched by `remove_pattern` with a space, collapse whitespace."""
    if remove_pattern is not None:
        title = remove_pattern.sub(" ", title)
    return _SPACES.sub(" ", title).strip()


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        # utf-8-sig accepts (and drops) a UTF-8 byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = ""
        try:
            data.decode("cp949")
            hint = "; it looks like CP949/EUC-KR (Korean Excel): save it as UTF-8"
        except UnicodeDecodeError:
            pass
        raise InputError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}){hint}"
        ) from None


def _csv_rows(path: Path, text: str) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, data rows, line number where each row starts); blank lines are skipped.

    The csv module rather than pandas: pandas silently shifts the columns of rows with one
    field too many (taking the first as a row label), and fills rows with too few.
    """
    # No field can be longer than the file: a 1 MB title is data, not an error.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows, lines = [], []
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [h.strip() for h in row]
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{path}: line {start}: {len(row)} fields, the header has {len(header)} "
                    f"({','.join(header)}); a title containing a comma must be in double quotes"
                )
            rows.append(row)
            lines.append(start)
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    if header is None:
        raise InputError(f"{path}: file is empty (expected a header and data rows)")
    return header, rows, lines


def _check_header(path: Path, header: list[str], has_rows: bool, required: list[str]) -> None:
    if len(header) == 1 and any(d in header[0] for d in ";\t|"):
        raise InputError(
            f"{path}: header {header[0]!r} is not comma-separated (expected columns {','.join(required)})"
        )
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (header: {','.join(header)})")
    extra = [h or "<unnamed>" for h in header if h not in required]
    if extra:
        raise InputError(f"{path}: unexpected column {extra[0]!r} (expected exactly {','.join(required)})")
    if len(set(header)) != len(header):
        raise InputError(f"{path}: a column name appears twice (header: {','.join(header)})")
    if not has_rows:
        raise InputError(f"{path}: no data rows (header only)")


def _first(mask: pd.Series | np.ndarray) -> int | None:
    """Position of the first True, or None."""
    hits = np.flatnonzero(np.asarray(mask))
    return int(hits[0]) if hits.size else None


def _integers(raw: pd.Series) -> tuple[pd.Series, int | None]:
    """`raw` strings as numbers, and the position of the first that is not an integer."""
    raw = raw.str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    return values, _first(values.isna().to_numpy() | (values % 1 != 0).to_numpy())


def read_raw_csv(path: str | Path, labeled: bool) -> pd.DataFrame:
    """Read and validate a Dacon CSV; return columns index (int), title (str)[, topic_idx (int)].

    Accepted: a UTF-8 byte-order mark, CRLF line ends, blank lines, quoted titles (with
    commas, quotes or line breaks), any column order. A title is text: the word "NaN" is
    a title like any other; an empty (or whitespace-only) title is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    required = TRAIN_COLUMNS if labeled else TEST_COLUMNS
    header, rows, lines = _csv_rows(path, _decode(path))
    _check_header(path, header, bool(rows), required)
    df = pd.DataFrame(rows, columns=header, dtype=object)

    def fail(i: int, what: str) -> InputError:
        return InputError(f"{path}: row {i + 1} (line {lines[i]}, index={df['index'].iat[i]!r}): {what}")

    index, bad = _integers(df["index"])
    if bad is not None:
        raise fail(bad, f"index {df['index'].iat[bad]!r} is not an integer")
    index = index.astype(np.int64)
    if (dup := _first(index.duplicated())) is not None:
        raise fail(dup, f"duplicate index {index.iat[dup]}")
    if (empty := _first(df["title"].str.strip().eq(""))) is not None:
        raise fail(empty, "empty title")
    out = pd.DataFrame({"index": index.to_numpy(), "title": df["title"].to_numpy()})
    if labeled:
        label, bad = _integers(df["topic_idx"])
        if bad is not None:
            raise fail(bad, f"topic_idx {df['topic_idx'].iat[bad].strip()!r} is not an integer")
        if (out_of_range := _first(~label.between(0, NUM_LABELS - 1))) is not None:
            raw = df["topic_idx"].iat[out_of_range].strip()
            raise fail(out_of_range, f"topic_idx {raw} is outside 0..{NUM_LABELS - 1}")
        out["topic_idx"] = label.astype(np.int64).to_numpy()
    return out


def stratified_split(labels: np.ndarray, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of train and valid, each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train_idx, valid_idx = [], []
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        n_valid = int(round(len(rows) * valid_fraction))
        if len(rows) >= 2:
            n_valid = min(max(n_valid, 1), len(rows) - 1)
        valid_idx.append(rows[:n_valid])
        train_idx.append(rows[n_valid:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(valid_idx))


def sample_per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted row positions of at most `n` random rows of each class."""
    rng = np.random.default_rng(seed + 1)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def preprocess(
    train_csv: str | Path,
    test_csv: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    section: Mapping[str, Any],
    seed: int,
) -> dict[str, int]:
    """Validate both CSVs, clean titles, split train stratified, write the `outputs`
    train, valid and test parquet files. `section` is the config's `preprocess`.

    Nothing is written unless both inputs are valid.
    """
    train = read_raw_csv(train_csv, labeled=True)
    test = read_raw_csv(test_csv, labeled=False)
    overlap = np.intersect1d(train["index"], test["index"])
    if overlap.size:
        raise InputError(f"{test_csv}: index {overlap[0]} also appears in {train_csv}")
    pattern = re.compile(section["remove_pattern"]) if section["remove_pattern"] else None
    for df in (train, test):
        df["title_raw"] = df["title"]
        df["title"] = [clean_title(t, pattern) for t in df["title_raw"]]
    labels = train["topic_idx"].to_numpy()
    if section["sample_per_class"]:
        train = train.iloc[sample_per_class(labels, section["sample_per_class"], seed)].reset_index(drop=True)
        labels = train["topic_idx"].to_numpy()
    if section["test_sample"]:
        test = test.iloc[: section["test_sample"]].reset_index(drop=True)
    tr, va = stratified_split(labels, section["valid_fraction"], seed)
    write_parquet(train.iloc[tr], outputs["train"], LABELED_SCHEMA)
    write_parquet(train.iloc[va], outputs["valid"], LABELED_SCHEMA)
    write_parquet(test, outputs["test"], UNLABELED_SCHEMA)
    counts = {"train": len(tr), "valid": len(va), "test": len(test)}
    log.info("rows: %s", counts)
    return counts
