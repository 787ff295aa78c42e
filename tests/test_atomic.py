"""Outputs are written atomically: an interrupted write (exception or SIGKILL) leaves the
previous file intact and nothing that a later rule would accept."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import snakemake_env

from newstopic.atomic import atomic_path, write_json, write_text
from newstopic.formats import UNLABELED_SCHEMA, write_parquet
from newstopic.predict import predict_parquet
from newstopic.tokenization import save_tokenizer, train_wordpiece


class Boom(Exception):
    pass


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_exception_mid_write_keeps_previous_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text('{"accuracy": 0.')  # half of the new content
        raise Boom
    assert json.loads(target.read_text()) == {"accuracy": 0.9}
    assert listing(tmp_path) == ["metrics.json"]


def test_first_write_interrupted_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(Boom), atomic_path(tmp_path / "out" / "submission.csv") as tmp:
        tmp.write_text("index,topic_idx\n1,")
        raise Boom
    assert listing(tmp_path / "out") == []


def test_unserialisable_json_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"accepted": 3})
    with pytest.raises(TypeError):
        write_json(target, {"accepted": object()})
    assert json.loads(target.read_text()) == {"accepted": 3}
    assert listing(tmp_path) == ["report.json"]


def test_directory_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("old")
        (tmp / "only-in-old.bin").write_text("x")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("new")
        raise Boom
    assert listing(target) == ["config.json", "only-in-old.bin"]
    assert (target / "config.json").read_text() == "old"

    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("new")
    assert listing(target) == ["config.json"]  # replaced, not merged
    assert (target / "config.json").read_text() == "new"
    assert listing(tmp_path) == ["model"]


WRITER = """
import sys, time
from newstopic.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "w") as fh:
        fh.write("half of the new content")
        fh.flush()
        print("writing", flush=True)
        time.sleep(120)
"""


def test_sigkill_mid_write_keeps_previous_file_and_next_write_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "submission.csv"
    write_text(target, "index,topic_idx\n1,3\n")
    other = tmp_path / ".train.parquet.abcd1234.tmp"  # another target's temporary: not ours
    other.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], env=snakemake_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert target.read_text() == "index,topic_idx\n1,3\n"
    leftovers = [n for n in listing(tmp_path) if n.startswith(".submission.csv.")]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # hidden, another name

    write_text(target, "index,topic_idx\n1,4\n")
    assert target.read_text() == "index,topic_idx\n1,4\n"
    assert listing(tmp_path) == [other.name, "submission.csv"]


def test_parquet_writer_failure_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "test.parquet"
    good = pd.DataFrame({"index": [1, 2], "title": ["a", "b"], "title_raw": ["a", "b"]})
    write_parquet(good, target, UNLABELED_SCHEMA)
    bad = good.assign(title=[1.5, None])  # not strings: Arrow refuses the table
    with pytest.raises(Exception):  # noqa: B017  (whatever Arrow raises)
        write_parquet(bad, target, UNLABELED_SCHEMA)
    pd.testing.assert_frame_equal(pq.read_table(target).to_pandas(), good, check_dtype=False)
    assert listing(tmp_path) == ["test.parquet"]


def test_prediction_failing_midway_keeps_previous_probs_and_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict streams batch by batch: a failure in a later batch must not leave the first
    batches as a complete-looking submission."""
    import newstopic.predict as predict

    titles = [f"제목 {i} 경제 증시" for i in range(20)]
    test = pd.DataFrame({"index": range(20), "title": titles, "title_raw": titles})
    write_parquet(test, tmp_path / "test.parquet", UNLABELED_SCHEMA)
    tokenizer = train_wordpiece(titles, 100, 1, 16)
    probs_path, sub_path = tmp_path / "test_probs.parquet", tmp_path / "submission.csv"
    write_text(probs_path, "previous probs")
    write_text(sub_path, "previous submission")

    calls = []

    def flaky(model, ids, pad_id, batch_size):  # noqa: ANN001, ANN202
        calls.append(len(ids))
        if len(calls) == 2:
            raise Boom
        return np.full((len(ids), 7), 1 / 7, dtype=np.float32)

    monkeypatch.setattr(predict, "predict_proba", flaky)
    with pytest.raises(Boom):
        predict_parquet(
            None,
            tokenizer,
            tmp_path / "test.parquet",
            probs_path,
            sub_path,
            max_length=16,
            batch_size=4,
            read_batch_rows=8,
        )
    assert calls == [8, 8]
    assert probs_path.read_text() == "previous probs"
    assert sub_path.read_text() == "previous submission"
    assert listing(tmp_path) == ["submission.csv", "test.parquet", "test_probs.parquet"]


def test_tokenizer_directory_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = train_wordpiece(["가 나 다", "라 마 바"], 100, 1, 16)
    save_tokenizer(tokenizer, tmp_path / "tokenizer")
    before = {p.name: p.read_bytes() for p in (tmp_path / "tokenizer").iterdir()}

    def fail(self, directory, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "tokenizer.json").write_text("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", fail)
    with pytest.raises(OSError):
        save_tokenizer(tokenizer, tmp_path / "tokenizer")
    assert {p.name: p.read_bytes() for p in (tmp_path / "tokenizer").iterdir()} == before
    assert listing(tmp_path) == ["tokenizer"]
