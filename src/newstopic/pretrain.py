"""The mlm_pretrain stage's task: task-adaptive masked-LM training of the encoder on the
task's own titles (train + test, optionally valid text; labels are never used)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from newstopic.checkpoint import TrainState
from newstopic.data import encode, mask_tokens, pad_batch, special_tokens_mask, step_generator
from newstopic.encoder import IGNORE_INDEX, masked_lm_loss, mlm_from_config, mlm_from_pretrained, set_dropout
from newstopic.formats import read_titles
from newstopic.training import Task

if TYPE_CHECKING:
    from newstopic.stages import StageFiles

log = logging.getLogger("newstopic")


@dataclass(kw_only=True)
class MlmTask(Task):
    """The loop's masked-LM task, and what the Trainer engine needs besides."""

    tokenizer: PreTrainedTokenizerBase
    ids: list[list[int]]
    mask_prob: float

    def metrics(self, state: TrainState) -> dict[str, Any]:
        return {"rows": len(self.ids), "tokens": int(self.lengths.sum())}


def mlm_task(
    files: StageFiles, cfg: dict[str, Any], tokenizer: PreTrainedTokenizerBase, seed: int
) -> MlmTask:
    """Tokenised titles, the masked-LM model (pretrained or from model.arch), and batches
    whose masks are drawn from (seed, step)."""
    model_cfg, mask_prob = cfg["model"], cfg["train"]["mask_prob"]
    ids = encode(tokenizer, read_titles(files.train), cfg["max_length"])
    lengths = np.array([len(x) for x in ids])
    log.info("MLM on %d titles (%d tokens)", len(ids), int(lengths.sum()))

    torch.manual_seed(seed)
    if model_cfg["name_or_path"]:
        model = mlm_from_pretrained(model_cfg["name_or_path"], len(tokenizer), model_cfg["trust_remote_code"])
    else:
        model = mlm_from_config(model_cfg["arch"], len(tokenizer), tokenizer.pad_token_id)
    if cfg["train"]["dropout"] is not None:
        set_dropout(model, cfg["train"]["dropout"])
    vocab_size = model.get_input_embeddings().num_embeddings

    def make_batch(rows: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        # Masks are drawn for the whole global batch from (seed, step): the same whatever the
        # number of processes that share it.
        return masked_batch(
            [ids[i] for i in rows], tokenizer, vocab_size, mask_prob, step_generator(seed, step)
        )

    return MlmTask(
        model=model,
        lengths=lengths,
        make_batch=make_batch,
        loss_fn=mlm_loss,
        tokenizer=tokenizer,
        ids=ids,
        mask_prob=mask_prob,
    )


def masked_batch(
    ids: list[list[int]],
    tokenizer: PreTrainedTokenizerBase,
    vocab_size: int,
    mask_prob: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Titles padded and masked for the masked-LM loss (`mlm_loss`), masks drawn from
    `generator`; special tokens are never chosen."""
    batch = pad_batch(ids, tokenizer.pad_token_id)
    special = special_tokens_mask(batch["input_ids"], sorted(set(tokenizer.all_special_ids)))
    masked, positions, labels = mask_tokens(
        batch["input_ids"], special, tokenizer.mask_token_id, vocab_size, mask_prob, generator
    )
    # Targets as a row-aligned [batch, length] tensor (IGNORE_INDEX elsewhere), so that a batch
    # splits by rows between processes.
    targets = torch.full_like(masked, IGNORE_INDEX)
    targets.view(-1)[positions] = labels
    return {"input_ids": masked, "attention_mask": batch["attention_mask"], "targets": targets}


def mlm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the masked positions, and how many there are."""
    chosen = batch["targets"] != IGNORE_INDEX
    positions = torch.nonzero(chosen.flatten()).flatten()
    loss = masked_lm_loss(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        positions,
        batch["targets"][chosen],
        reduction="sum",
    )
    return loss, len(positions)
