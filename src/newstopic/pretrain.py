"""The mlm_pretrain stage: task-adaptive masked-LM training of the encoder on the task's
own titles (train + test, optionally valid text; labels are never used)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from newstopic import distributed
from newstopic.atomic import save_pretrained_dir, write_json
from newstopic.checkpoint import CheckpointDir, fingerprint
from newstopic.data import encode, mask_tokens, pad_batch, special_tokens_mask, step_generator
from newstopic.encoder import masked_lm_loss, mlm_from_config, mlm_from_pretrained
from newstopic.preprocess import read_split
from newstopic.tokenization import load_tokenizer
from newstopic.training import LoopSettings, train

log = logging.getLogger("newstopic")

IGNORE = -100  # target of the tokens that are not predicted


def mlm_pretrain(
    text_files: list[str],
    tokenizer_dir: str,
    out_dir: str,
    metrics_path: str,
    *,
    model_cfg: dict[str, Any],
    mlm_cfg: dict[str, Any],
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
    start = time.perf_counter()
    tokenizer = load_tokenizer(tokenizer_dir)
    texts = [t for f in text_files for t in read_split(f, labeled=False)["title"].tolist()]
    ids = encode(tokenizer, texts, max_length)
    lengths = np.array([len(x) for x in ids])
    log.info("MLM on %d titles (%d tokens)", len(ids), int(lengths.sum()))

    torch.manual_seed(seed)
    if model_cfg["name_or_path"]:
        model = mlm_from_pretrained(model_cfg["name_or_path"], len(tokenizer), model_cfg["trust_remote_code"])
    else:
        model = mlm_from_config(model_cfg["arch"], len(tokenizer), tokenizer.pad_token_id)
    special_ids = sorted(set(tokenizer.all_special_ids))
    vocab_size = model.get_input_embeddings().num_embeddings

    def make_batch(rows: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        # Masks are drawn for the whole global batch from (seed, step): the same whatever the
        # number of processes that share it.
        batch = pad_batch([ids[i] for i in rows], tokenizer.pad_token_id)
        special = special_tokens_mask(batch["input_ids"], special_ids)
        masked, positions, labels = mask_tokens(
            batch["input_ids"],
            special,
            tokenizer.mask_token_id,
            vocab_size,
            mlm_cfg["mask_prob"],
            step_generator(seed, step),
        )
        # Targets as a row-aligned [batch, length] tensor (IGNORE elsewhere), so that a batch
        # splits by rows between processes.
        targets = torch.full_like(masked, IGNORE)
        targets.view(-1)[positions] = labels
        return {"input_ids": masked, "attention_mask": batch["attention_mask"], "targets": targets}

    def loss_fn(m: torch.nn.Module, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        chosen = b["targets"] != IGNORE
        positions = torch.nonzero(chosen.flatten()).flatten()
        loss = masked_lm_loss(
            m, b["input_ids"], b["attention_mask"], positions, b["targets"][chosen], reduction="sum"
        )
        return loss, len(positions)

    settings = LoopSettings(
        epochs=mlm_cfg["epochs"],
        batch_size=mlm_cfg["batch_size"],
        lr=mlm_cfg["lr"],
        weight_decay=mlm_cfg["weight_decay"],
        warmup_ratio=mlm_cfg["warmup_ratio"],
        max_grad_norm=mlm_cfg["max_grad_norm"],
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        device=device,
        precision=precision,
    )
    run_id = fingerprint(
        {
            "stage": "mlm",
            "model": model_cfg,
            "precision": precision,
            "mlm": mlm_cfg,
            "max_length": max_length,
            "seed": seed,
        },
        [*text_files, tokenizer_dir],
    )
    checkpoints = CheckpointDir(Path(scratch_dir), run_id, keep_checkpoints)
    if engine == "hf":
        from newstopic.hf_engine import train_mlm

        state = train_mlm(
            model,
            tokenizer,
            ids,
            settings,
            mask_prob=mlm_cfg["mask_prob"],
            scratch_dir=scratch_dir,
            run_fingerprint=run_id,
            keep_checkpoints=keep_checkpoints,
        )
    else:
        state = train(model, lengths, make_batch, loss_fn, None, settings, checkpoints)

    if distributed.is_main():  # one writer; every rank holds the same weights
        save_pretrained_dir(out_dir, model, tokenizer)
    metrics = {
        "stage": "mlm_pretrain",
        "engine": engine,
        "rows": len(ids),
        "tokens": int(lengths.sum()),
        "steps": state.step,
        "train_seconds": round(state.train_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
        "history": state.history,
    }
    if distributed.is_main():
        write_json(metrics_path, metrics)
        checkpoints.clear()
    return metrics
