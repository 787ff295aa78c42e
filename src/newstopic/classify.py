"""newstopic-classify: classify headlines with a trained model directory, without writing Python.

    newstopic-classify results/retrain/model "손흥민 시즌 10호골" "코스피 2,500 회복"
    cat titles.txt | newstopic-classify results/retrain/model
    newstopic-classify results/retrain/model --input test.csv --output predicted.parquet

Headlines come as arguments, one per line on standard input, or from a file (`--input`: a CSV
with a `title` column, or a parquet file), read and classified in chunks of `--chunk-rows`, so
a file of any size runs in bounded memory. Each headline is cleaned the way `preprocess`
cleans training titles (`--remove-pattern`, the config default unless given). Printed: one line
per headline, `topic<TAB>probability<TAB>title`; with `--output` (.csv or .parquet) a file with
index (when the input has one), title, topic, topic_idx, probability and prob_0..prob_6.
The topic is the model's topic name (id2label, see README "Topic names"), or the id.

Bad input ends in one line naming the file and line (or row) and exit status 1, as in the
workflow.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from newstopic.atomic import atomic_path
from newstopic.errors import ConfigError, InputError, run_main
from newstopic.formats import PROB_COLUMNS


@dataclass
class Chunk:
    """Headlines read together: their titles, where each came from (for error lines) and the
    input's index column when it has one."""

    titles: list[str]
    where: list[str]
    index: list[Any] | None = None


def _checked(chunk: Chunk) -> Chunk:
    for title, where in zip(chunk.titles, chunk.where, strict=True):
        if title is None or not str(title).strip():
            raise InputError(f"{where}: empty title")
    return chunk


def _batched(lines: Iterable[str], source: str, chunk_rows: int, first_line: int = 1) -> Iterator[Chunk]:
    titles: list[str] = []
    where: list[str] = []
    for number, line in enumerate(lines, start=first_line):
        line = line.rstrip("\r\n")
        if not line.strip():  # blank lines between headlines are skipped, not an error
            continue
        titles.append(line)
        where.append(f"{source}: line {number}")
        if len(titles) == chunk_rows:
            yield Chunk(titles, where)
            titles, where = [], []
    if titles:
        yield Chunk(titles, where)


def _csv_chunks(path: Path, column: str, chunk_rows: int) -> Iterator[Chunk]:
    try:
        # keep_default_na=False: the text "NaN" is a headline (as in preprocess).
        reader = pd.read_csv(
            path, dtype=str, keep_default_na=False, chunksize=chunk_rows, encoding="utf-8-sig"
        )
        line = 2  # the header is line 1; a quoted title spanning lines shifts this (rare)
        for frame in reader:
            if column not in frame.columns:
                found = ", ".join(map(str, frame.columns))
                raise InputError(f"{path}: no column {column!r} (columns: {found})")
            where = [f"{path}: line {line + i}" for i in range(len(frame))]
            index = frame["index"].tolist() if "index" in frame.columns else None
            line += len(frame)
            yield _checked(Chunk(frame[column].tolist(), where, index))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]})") from None


def _parquet_chunks(path: Path, column: str, chunk_rows: int) -> Iterator[Chunk]:
    try:
        source = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    names = source.schema_arrow.names
    if column not in names:
        raise InputError(f"{path}: no column {column!r} (columns: {', '.join(names)})")
    columns = [column] + (["index"] if "index" in names else [])
    row = 0
    for batch in source.iter_batches(batch_size=chunk_rows, columns=columns):
        titles = batch.column(column).to_pylist()
        index = batch.column("index").to_pylist() if "index" in names else None
        yield _checked(Chunk(titles, [f"{path}: row {row + i}" for i in range(len(titles))], index))
        row += len(titles)


def read_chunks(args: argparse.Namespace, stdin: TextIO) -> Iterator[Chunk]:
    """The headlines of the command line, of --input, or of standard input, in chunks."""
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise InputError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
        read = _parquet_chunks if path.suffix.lower() == ".parquet" else _csv_chunks
        chunks = read(path, args.column, args.chunk_rows)
        # The first chunk now: a wrong file or column is reported before the model loads.
        first = next(chunks, None)
        return itertools.chain([first], chunks) if first is not None else iter(())
    if args.titles:
        return (_checked(Chunk(list(args.titles), [f"argument {i + 1}" for i in range(len(args.titles))])),)
    return _batched(stdin, "<stdin>", args.chunk_rows)


class Classifier:
    """A trained model directory (model + tokenizer) that turns titles into probabilities."""

    def __init__(self, model_dir: str, device: str = "cpu", max_length: int | None = None) -> None:
        from newstopic.startup import path_problem

        problem = path_problem(model_dir, "dir", contains=("config.json",))
        if problem:
            raise ConfigError(f"{model_dir}: {problem}")
        from transformers.utils import logging as hf_logging

        from newstopic.model import NewsTopicClassifier
        from newstopic.tokenization import load_tokenizer

        hf_logging.disable_progress_bar()  # no "Loading weights" bar between the answers

        try:
            self.model = NewsTopicClassifier.from_pretrained(model_dir).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{model_dir}: not a newstopic classifier ({first})") from None
        self.tokenizer = load_tokenizer(model_dir)
        positions = self.model.config.encoder.get("max_position_embeddings", 512)
        self.max_length = max_length or min(self.tokenizer.model_max_length, positions)
        self.names = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def proba(self, titles: list[str], batch_size: int = 256) -> np.ndarray:
        from newstopic.data import encode
        from newstopic.predict import predict_proba

        ids = encode(self.tokenizer, titles, self.max_length)
        return predict_proba(self.model, ids, self.tokenizer.pad_token_id, batch_size)


def _frame(chunk: Chunk, probs: np.ndarray, names: list[str]) -> pd.DataFrame:
    best = probs.argmax(1)
    frame = pd.DataFrame({"title": chunk.titles})
    if chunk.index is not None:
        frame.insert(0, "index", chunk.index)
    frame["topic"] = [names[i] for i in best]
    frame["topic_idx"] = best.astype(np.int64)
    # Six decimals: float32 softmax outputs carry no more.
    frame["probability"] = probs[np.arange(len(best)), best].astype(np.float64).round(6)
    for i, col in enumerate(PROB_COLUMNS):
        frame[col] = probs[:, i].astype(np.float64).round(6)
    return frame


def _print_chunk(frame: pd.DataFrame, out: TextIO) -> None:
    for topic, prob, title in zip(frame["topic"], frame["probability"], frame["title"], strict=True):
        out.write(f"{topic}\t{prob:.4f}\t{title}\n")
    out.flush()


def _write_file(frames: Iterator[pd.DataFrame], path: Path) -> int:
    """Stream the frames into `path` (.csv or .parquet), atomically; the number of rows."""
    n = 0
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            writer = None
            try:
                for frame in frames:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
                    n += len(frame)
            finally:
                if writer is not None:
                    writer.close()
            if writer is None:  # no rows: still a valid, empty file
                pq.write_table(pa.table({"title": pa.array([], pa.string())}), tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for i, frame in enumerate(frames):
                    frame.to_csv(fh, index=False, header=i == 0, quoting=csv.QUOTE_MINIMAL)
                    n += len(frame)
    return n


def classify(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    """The command: classify every headline; the number classified."""
    if args.output and Path(args.output).suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(f"--output {args.output}: expected a .csv or .parquet file name")
    try:
        pattern = re.compile(args.remove_pattern) if args.remove_pattern else None
    except re.error as exc:
        problem = f"not a valid regular expression ({exc})"
        raise ConfigError(f"--remove-pattern {args.remove_pattern!r}: {problem}") from None
    chunks = read_chunks(args, stdin)  # opens and checks the input before the model loads
    classifier = Classifier(args.model, args.device, args.max_length)

    from newstopic.preprocess import clean_title

    def frames() -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            cleaned = [clean_title(str(t), pattern) or str(t) for t in chunk.titles]
            probs = classifier.proba(cleaned, args.batch_size)
            yield _frame(chunk, probs, classifier.names)

    if args.output:
        return _write_file(frames(), Path(args.output))
    n = 0
    for frame in frames():
        _print_chunk(frame, stdout)
        n += len(frame)
    return n


def default_remove_pattern() -> str | None:
    """preprocess.remove_pattern's default: what the workflow's training titles went through."""
    from newstopic.config import load_schema

    return load_schema()["properties"]["preprocess"]["properties"]["remove_pattern"]["default"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="newstopic-classify",
        description="Classify news headlines with a trained newstopic model directory.",
    )
    p.add_argument("model", help="a trained model directory, e.g. results/retrain/model")
    p.add_argument("titles", nargs="*", help="headlines to classify (none: --input, or standard input)")
    p.add_argument("--input", "-i", help="a CSV (with a title column) or parquet file of headlines")
    p.add_argument("--output", "-o", help="write a .csv or .parquet file instead of printing")
    p.add_argument("--column", default="title", help="the input file's headline column (default: title)")
    p.add_argument("--chunk-rows", type=int, default=10_000, help="headlines read and classified at once")
    p.add_argument("--batch-size", type=int, default=256, help="headlines per forward pass")
    p.add_argument("--max-length", type=int, default=None, help="tokens per headline (default: the model's)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument(
        "--remove-pattern",
        default=None,
        help="regex of characters replaced by a space before classifying (default: preprocess's default)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = parser().parse_args(argv)
    logging.getLogger("newstopic").addHandler(logging.NullHandler())  # the error line is printed once
    if args.titles and args.input:
        parser().error("give headlines as arguments or --input, not both")
    if args.chunk_rows < 1 or args.batch_size < 1:
        parser().error("--chunk-rows and --batch-size must be at least 1")
    if args.remove_pattern is None:
        args.remove_pattern = default_remove_pattern()
    # Standard input as UTF-8 whatever the locale says (a C locale would read Hangul as ASCII).
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8") if not args.titles else sys.stdin
    try:
        run_main(classify, args, stdin, sys.stdout)
    except UnicodeDecodeError as exc:
        # Standard input that is not UTF-8: one line like every other bad input.
        run_main(_raise, InputError(f"<stdin>: not valid UTF-8 ({exc.reason} at byte {exc.start})"))
    return 0


def _raise(exc: Exception) -> None:
    raise exc


if __name__ == "__main__":
    sys.exit(main())
