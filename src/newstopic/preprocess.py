"""Raw Dacon CSV -> validated, cleaned parquet with a fixed Arrow schema.

Train/valid rows: index, title, title_raw, topic_idx. Test rows: index, title, title_raw.
Every problem with the input is reported as one line naming the file and the row.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from newstopic import NUM_LABELS
from newstopic.atomic import atomic_path
from newstopic.errors import InputError

LABELED_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("title", pa.string()),
        ("title_raw", pa.string()),
        ("topic_idx", pa.int64()),
    ]
)
# Soft pseudo-labels: also the teachers' class probabilities, which retraining fits.
PROB_COLUMNS = [f"prob_{i}" for i in range(NUM_LABELS)]
SOFT_LABELED_SCHEMA = pa.schema([*LABELED_SCHEMA, *(pa.field(c, pa.float64()) for c in PROB_COLUMNS)])
UNLABELED_SCHEMA = pa.schema([("index", pa.int64()), ("title", pa.string()), ("title_raw", pa.string())])
TRAIN_COLUMNS = ["index", "title", "topic_idx"]
TEST_COLUMNS = ["index", "title"]

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


def read_raw_csv(path: str | Path, labeled: bool) -> pd.DataFrame:
    """Read and validate a Dacon CSV; return columns index (int), title (str)[, topic_idx (int)].

    Accepted: a UTF-8 byte-order mark, CRLF line ends, blank lines, quoted titles (with
    commas, quotes or line breaks), any column order. A title is text: the word "NaN" is
    a title like any other; an empty (or whitespace-only) title is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    text = _decode(path)
    required = TRAIN_COLUMNS if labeled else TEST_COLUMNS
    header, rows, lines = _csv_rows(path, text)
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
    if not rows:
        raise InputError(f"{path}: no data rows (header only)")
    df = pd.DataFrame(rows, columns=header, dtype=object)

    def row_name(i: int) -> str:
        return f"row {i + 1} (line {lines[i]}, index={df['index'].iat[i]!r})"

    index = pd.to_numeric(df["index"].str.strip(), errors="coerce")
    bad = np.flatnonzero(index.isna().to_numpy() | (index % 1 != 0).to_numpy())
    if bad.size:
        raise InputError(f"{path}: {row_name(bad[0])}: index {df['index'].iat[bad[0]]!r} is not an integer")
    index = index.astype(np.int64)
    dup = np.flatnonzero(index.duplicated().to_numpy())
    if dup.size:
        raise InputError(f"{path}: {row_name(dup[0])}: duplicate index {index.iat[dup[0]]}")
    empty = np.flatnonzero(df["title"].str.strip().eq("").to_numpy())
    if empty.size:
        raise InputError(f"{path}: {row_name(empty[0])}: empty title")
    out = pd.DataFrame({"index": index.to_numpy(), "title": df["title"].to_numpy()})
    if labeled:
        raw = df["topic_idx"].str.strip()
        label = pd.to_numeric(raw, errors="coerce")
        not_int = np.flatnonzero(label.isna().to_numpy() | (label % 1 != 0).to_numpy())
        if not_int.size:
            i = not_int[0]
            raise InputError(f"{path}: {row_name(i)}: topic_idx {raw.iat[i]!r} is not an integer")
        out_of_range = np.flatnonzero(~label.between(0, NUM_LABELS - 1).to_numpy())
        if out_of_range.size:
            i = out_of_range[0]
            raise InputError(f"{path}: {row_name(i)}: topic_idx {raw.iat[i]} is outside 0..{NUM_LABELS - 1}")
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


def write_parquet(df: pd.DataFrame, path: str | Path, schema: pa.Schema) -> None:
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_split(path: str | Path, labeled: bool) -> pd.DataFrame:
    """Read a preprocessed parquet split, checking it has the expected schema."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable parquet file ({exc})") from None
    schema = LABELED_SCHEMA if labeled else UNLABELED_SCHEMA
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return table.select(schema.names).to_pandas()


def read_soft_targets(path: str | Path) -> np.ndarray | None:
    """The prob_* columns of a labeled split (soft pseudo-labels) as float32 [rows, classes],
    checked to be class probabilities; None when it has hard labels only."""
    table = pq.read_table(path)
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


def preprocess(
    train_csv: str | Path,
    test_csv: str | Path,
    out_train: str | Path,
    out_valid: str | Path,
    out_test: str | Path,
    *,
    valid_fraction: float,
    seed: int,
    remove_pattern: str | None,
    per_class: int | None = None,
    test_sample: int | None = None,
) -> dict[str, int]:
    """Validate both CSVs, clean titles, split train stratified, write three parquet files.

    Nothing is written unless both inputs are valid.
    """
    train = read_raw_csv(train_csv, labeled=True)
    test = read_raw_csv(test_csv, labeled=False)
    overlap = np.intersect1d(train["index"], test["index"])
    if overlap.size:
        raise InputError(f"{test_csv}: index {overlap[0]} also appears in {train_csv}")
    pattern = re.compile(remove_pattern) if remove_pattern else None
    for df in (train, test):
        df["title_raw"] = df["title"]
        df["title"] = [clean_title(t, pattern) for t in df["title_raw"]]
    labels = train["topic_idx"].to_numpy()
    if per_class:
        train = train.iloc[sample_per_class(labels, per_class, seed)].reset_index(drop=True)
        labels = train["topic_idx"].to_numpy()
    if test_sample:
        test = test.iloc[:test_sample].reset_index(drop=True)
    tr, va = stratified_split(labels, valid_fraction, seed)
    write_parquet(train.iloc[tr], out_train, LABELED_SCHEMA)
    write_parquet(train.iloc[va], out_valid, LABELED_SCHEMA)
    write_parquet(test, out_test, UNLABELED_SCHEMA)
    return {"train": len(tr), "valid": len(va), "test": len(test)}
