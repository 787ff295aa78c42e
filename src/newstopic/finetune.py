"""The finetune and retrain stages: the custom classifier trained by the hand-written loop
on labeled rows (train, or train + pseudo-labels), evaluated on valid every epoch, the
best epoch kept and saved with save_pretrained."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from newstopic import NUM_LABELS, distributed
from newstopic.atomic import save_pretrained_dir, write_json
from newstopic.checkpoint import CheckpointDir, fingerprint
from newstopic.data import encode, mask_inputs, pad_batch, step_generator
from newstopic.encoder import encoder_from_pretrained, mlm_from_config
from newstopic.errors import InputError
from newstopic.metrics import classification_metrics
from newstopic.model import NewsTopicClassifier, build_classifier
from newstopic.predict import predict_proba
from newstopic.preprocess import read_soft_targets, read_split
from newstopic.tokenization import load_tokenizer
from newstopic.training import LoopSettings, train

log = logging.getLogger("newstopic")


def read_labeled(paths: list[str]) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Concatenate labeled parquet files (train, pseudo-labels); an index may appear once.
    Also returns the rows' target distributions when a file has soft labels (one-hot for the
    rows of the others), else None: plain class indices, the usual cross-entropy."""
    frames = [read_split(p, labeled=True) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    dup = df["index"].duplicated()
    if dup.any():
        raise InputError(f"{paths}: index {df['index'][dup].iat[0]} appears twice across the inputs")
    soft = [read_soft_targets(p) for p in paths]
    if all(t is None for t in soft):
        return df, None
    one_hot = np.eye(NUM_LABELS, dtype=np.float32)
    targets = [
        t if t is not None else one_hot[f["topic_idx"].to_numpy()] for t, f in zip(soft, frames, strict=True)
    ]
    return df, np.concatenate(targets)


def initial_classifier(
    encoder_source: str | None, model_cfg: dict[str, Any], vocab_size: int, pad_token_id: int
) -> NewsTopicClassifier:
    """The classifier before fine-tuning: encoder from `encoder_source` (the MLM output or a
    hub/local model), or random from model.arch when there is none."""
    if encoder_source:
        encoder = encoder_from_pretrained(encoder_source, model_cfg["trust_remote_code"])
    else:
        encoder = mlm_from_config(model_cfg["arch"], vocab_size, pad_token_id).base_model
    return build_classifier(
        encoder,
        model_cfg["pooling"],
        model_cfg["dropout"],
        model_cfg["head_hidden_size"],
        ngrams=model_cfg.get("ngrams"),
    )


def finetune(
    train_files: list[str],
    valid_file: str,
    tokenizer_dir: str,
    encoder_source: str | None,
    out_dir: str,
    metrics_path: str,
    *,
    stage: str,
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    max_length: int,
    seed: int,
    scratch_dir: str,
    checkpoint_every: int,
    keep_checkpoints: int,
    log_every: int,
    device: str = "cpu",
    precision: str = "fp32",
    engine: str = "loop",
) -> dict[str, Any]:
    """Train the classifier on `train_files` from `encoder_source` (or a random encoder) with
    a new head; keep its best epoch on `valid_file`."""
    start = time.perf_counter()
    if train_cfg.get("seed") is not None:  # this stage's own seed; the top-level one fixed the split
        seed = train_cfg["seed"]
    tokenizer = load_tokenizer(tokenizer_dir)
    train_df, soft_targets = read_labeled(train_files)
    valid_df = read_split(valid_file, labeled=True)
    train_ids = encode(tokenizer, train_df["title"].tolist(), max_length)
    valid_ids = encode(tokenizer, valid_df["title"].tolist(), max_length)
    # Class indices, or with soft pseudo-labels one distribution per row (cross_entropy takes both).
    labels = (
        torch.tensor(train_df["topic_idx"].to_numpy(), dtype=torch.long)
        if soft_targets is None
        else torch.from_numpy(soft_targets)
    )
    valid_labels = valid_df["topic_idx"].to_numpy()
    lengths = np.array([len(x) for x in train_ids])
    log.info(
        "%s: %d training rows from %s (%s labels), %d valid rows",
        stage,
        len(train_ids),
        train_files,
        "hard" if soft_targets is None else "soft",
        len(valid_ids),
    )

    torch.manual_seed(seed)
    model = initial_classifier(encoder_source, model_cfg, len(tokenizer), tokenizer.pad_token_id)

    input_mask_prob = train_cfg["input_mask_prob"]
    special_ids = sorted(set(tokenizer.all_special_ids))

    def make_batch(rows: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        batch = pad_batch([train_ids[i] for i in rows], tokenizer.pad_token_id)
        if input_mask_prob > 0:  # drawn from (seed, step): a resumed run sees the same noise
            noise = step_generator(seed, step)
            batch["input_ids"] = mask_inputs(
                batch["input_ids"], special_ids, tokenizer.mask_token_id, input_mask_prob, noise
            )
        batch["labels"] = labels[rows]
        return batch

    def loss_fn(m: torch.nn.Module, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return m(**b).loss * len(b["labels"]), len(b["labels"])

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        probs = predict_proba(m, valid_ids, tokenizer.pad_token_id, train_cfg["eval_batch_size"])
        return classification_metrics(valid_labels, probs)

    settings = LoopSettings(
        epochs=train_cfg["epochs"],
        batch_size=train_cfg["batch_size"],
        lr=train_cfg["lr"],
        head_lr=train_cfg["head_lr"],
        weight_decay=train_cfg["weight_decay"],
        warmup_ratio=train_cfg["warmup_ratio"],
        max_grad_norm=train_cfg["max_grad_norm"],
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        device=device,
        precision=precision,
    )
    run_id = fingerprint(
        {
            "stage": stage,
            "model": model_cfg,
            "precision": precision,
            "train": train_cfg,
            "max_length": max_length,
            "seed": seed,
            "encoder": encoder_source,
        },
        [
            *train_files,
            valid_file,
            tokenizer_dir,
            *([encoder_source] if encoder_source and Path(encoder_source).exists() else []),
        ],
    )
    checkpoints = CheckpointDir(Path(scratch_dir), run_id, keep_checkpoints)
    if engine == "hf":
        from newstopic.hf_engine import train_classifier

        state = train_classifier(
            model,
            tokenizer,
            train_ids,
            labels.numpy(),
            valid_ids,
            valid_labels,
            settings,
            eval_batch_size=train_cfg["eval_batch_size"],
            scratch_dir=scratch_dir,
            run_fingerprint=run_id,
            keep_checkpoints=keep_checkpoints,
            input_mask_prob=input_mask_prob,
        )
    else:
        state = train(model, lengths, make_batch, loss_fn, evaluate, settings, checkpoints)

    if distributed.is_main():  # one writer; every rank holds the same weights
        save_pretrained_dir(out_dir, model, tokenizer)
    best = next(h for h in state.history if h["step"] == state.best_step)
    metrics = {
        "stage": stage,
        "engine": engine,
        "valid_accuracy": best["valid_accuracy"],
        "valid_macro_f1": best["valid_macro_f1"],
        "valid_loss": best["valid_loss"],
        "best_epoch": best["epoch"],
        "train_rows": len(train_ids),
        "valid_rows": len(valid_ids),
        "steps": state.step,
        "train_seconds": round(state.train_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
        "encoder_source": encoder_source,
        "history": state.history,
    }
    if distributed.is_main():
        write_json(metrics_path, metrics)
        checkpoints.clear()
    return metrics
