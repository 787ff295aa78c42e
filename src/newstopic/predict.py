"""Batched inference: titles sorted by length (little padding), results in input order;
the test set is streamed from parquet in row batches and written batch by batch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers import PreTrainedTokenizerBase

from newstopic.atomic import atomic_path
from newstopic.data import encode, length_grouped_batches, pad_batch
from newstopic.errors import InputError
from newstopic.formats import PROBS_SCHEMA, probs_frame

log = logging.getLogger("newstopic")


@torch.inference_mode()
def predict_proba(model: torch.nn.Module, ids: list[list[int]], pad_id: int, batch_size: int) -> np.ndarray:
    """Class probabilities (n, num_labels) for token-id lists, in the order given."""
    was_training = model.training
    model.eval()
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    device = next(model.parameters()).device
    out = np.empty((len(ids), model.config.num_labels), dtype=np.float32)
    for rows in length_grouped_batches(lengths, batch_size, seed=0, epoch=0, shuffle=False):
        batch = {k: v.to(device) for k, v in pad_batch([ids[i] for i in rows], pad_id).items()}
        logits = model(**batch).logits.float()
        out[rows] = torch.softmax(logits, -1).cpu().numpy()
    model.train(was_training)
    return out


def predict_parquet(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    test_path: str | Path,
    probs_path: str | Path,
    submission_path: str | Path,
    *,
    max_length: int,
    batch_size: int,
    read_batch_rows: int,
) -> int:
    """Stream `test_path` (columns index, title) -> probabilities parquet + Dacon submission CSV."""
    try:
        source = pq.ParquetFile(test_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{test_path}: not a readable parquet file ({exc})") from None
    for col in ("index", "title"):
        if col not in source.schema_arrow.names:
            raise InputError(f"{test_path}: missing column {col!r}")
    n = 0
    # Both files appear together (renamed after both writers closed), or neither does.
    with (
        atomic_path(probs_path) as tmp_probs,
        atomic_path(submission_path) as tmp_sub,
        pq.ParquetWriter(tmp_probs, PROBS_SCHEMA) as writer,
        open(tmp_sub, "w") as sub,
    ):
        sub.write("index,topic_idx\n")
        for chunk in source.iter_batches(batch_size=read_batch_rows, columns=["index", "title"]):
            index = chunk.column("index").to_numpy()
            titles = chunk.column("title").to_pylist()
            probs = predict_proba(
                model, encode(tokenizer, titles, max_length), tokenizer.pad_token_id, batch_size
            )
            frame = probs_frame(index, probs)
            writer.write_table(pa.Table.from_pandas(frame, schema=PROBS_SCHEMA, preserve_index=False))
            sub.writelines(f"{i},{p}\n" for i, p in zip(index, frame["topic_idx"], strict=True))
            n += len(index)
            log.info("predicted %d rows", n)
    return n


def predict_model_dir(
    model_dir: str | Path,
    test_path: str | Path,
    probs_path: str | Path,
    submission_path: str | Path,
    *,
    settings: dict[str, Any],
    threads: int = 1,
) -> int:
    """The predict stage: load a saved classifier (and its tokenizer) and predict the test set.
    `settings`: max_length, batch_size, read_batch_rows (config `predict`) and device."""
    from newstopic.device import resolve_device
    from newstopic.model import NewsTopicClassifier
    from newstopic.tokenization import load_tokenizer

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir)
    model = NewsTopicClassifier.from_pretrained(model_dir).to(resolve_device(settings["device"]))
    n = predict_parquet(
        model,
        tokenizer,
        test_path,
        probs_path,
        submission_path,
        max_length=settings["max_length"],
        batch_size=settings["batch_size"],
        read_batch_rows=settings["read_batch_rows"],
    )
    log.info("predicted %d test rows", n)
    return n
