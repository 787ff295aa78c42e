"""The finetune and retrain stages' task: the custom classifier on labeled rows (train, or
train + pseudo-labels), evaluated on valid every epoch, its best epoch kept.

With K-fold cross-validation (config `cv.folds`, newstopic.folds) a fold model of fold k trains
on the labeled rows outside fold k (plus every pseudo-label row) and is evaluated on fold k,
which chooses its epoch; the held-out valid split is only predicted after training (it chooses
nothing). Its predictions of fold k (out-of-fold), valid and test are written for the ensemble.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from newstopic.checkpoint import TrainState
from newstopic.data import encode, mask_inputs, pad_batch, step_generator
from newstopic.encoder import encoder_from_pretrained, mlm_from_config
from newstopic.errors import InputError
from newstopic.formats import PROBS_SCHEMA, probs_frame, read_folds, read_labeled, read_split, write_parquet
from newstopic.metrics import classification_metrics
from newstopic.model import NewsTopicClassifier, build_classifier
from newstopic.predict import predict_proba
from newstopic.training import Task

if TYPE_CHECKING:
    from newstopic.stages import StageFiles

log = logging.getLogger("newstopic")


@dataclass(kw_only=True)
class ClassifierTask(Task):
    """The loop's classification task, and what the Trainer engine needs besides."""

    tokenizer: PreTrainedTokenizerBase
    train_ids: list[list[int]]
    labels: torch.Tensor  # class indices, or one distribution per row (soft pseudo-labels)
    valid_ids: list[list[int]]
    valid_labels: np.ndarray
    eval_batch_size: int
    input_mask_prob: float
    encoder_source: str | None
    # Fold mode: the fold whose rows are valid_ids (they choose the epoch), their row indices.
    fold: int | None = None
    fold_index: np.ndarray | None = None

    def metrics(self, state: TrainState) -> dict[str, Any]:
        """The best epoch's valid scores (the model that is saved); a fold model's are its
        fold's, named fold_* (its history too), never to be taken for the valid split's."""
        best = next(h for h in state.history if h["step"] == state.best_step)
        metrics = {f"valid_{m}": best[f"valid_{m}"] for m in ("accuracy", "macro_f1", "loss")}
        metrics |= {"best_epoch": best["epoch"], "train_rows": len(self.train_ids)}
        metrics |= {"valid_rows": len(self.valid_ids), "encoder_source": self.encoder_source}
        if self.fold is None:
            return metrics
        rename = {f"valid_{m}": f"fold_{m}" for m in ("accuracy", "macro_f1", "loss", "rows")}
        history = [{rename.get(k, k): v for k, v in h.items()} for h in state.history]
        return {"fold": self.fold, **{rename.get(k, k): v for k, v in metrics.items()}, "history": history}


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
        # The topic names (workflow/rules/common.smk puts them here from labels/data.topic_dict).
        id2label=dict(enumerate(model_cfg["topic_names"])) if model_cfg.get("topic_names") else None,
    )


def classifier_task(
    files: StageFiles, cfg: dict[str, Any], tokenizer: PreTrainedTokenizerBase, seed: int
) -> ClassifierTask:
    """Tokenised training and valid rows, the classifier (encoder + new head), batches with
    optional input noise drawn from (seed, step), and evaluation on valid."""
    section, max_length = cfg["train"], cfg["max_length"]
    train_df, soft_targets = read_labeled(files.train)
    # Class indices, or with soft pseudo-labels one distribution per row (cross_entropy takes both).
    labels = (
        torch.tensor(train_df["topic_idx"].to_numpy(), dtype=torch.long)
        if soft_targets is None
        else torch.from_numpy(soft_targets)
    )
    if files.folds is None:
        valid_df = read_split(files.valid, labeled=True)
        fold_index = None
    else:  # the fold's rows choose the epoch; the held-out valid split is not read here
        held_out = in_fold(files.folds, files.fold, train_df["index"].to_numpy())
        valid_df, train_df, labels = train_df[held_out], train_df[~held_out], labels[~held_out]
        fold_index = valid_df["index"].to_numpy()
    train_ids = encode(tokenizer, train_df["title"].tolist(), max_length)
    valid_ids = encode(tokenizer, valid_df["title"].tolist(), max_length)
    valid_labels = valid_df["topic_idx"].to_numpy()
    log.info(
        "%d training rows from %s (%s labels), %d %s rows",
        *(len(train_ids), files.train, "hard" if soft_targets is None else "soft", len(valid_ids)),
        "valid" if files.folds is None else f"fold-{files.fold}",
    )

    torch.manual_seed(seed)
    model = initial_classifier(files.encoder, cfg["model"], len(tokenizer), tokenizer.pad_token_id)
    input_mask_prob = section["input_mask_prob"]
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

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        probs = predict_proba(m, valid_ids, tokenizer.pad_token_id, section["eval_batch_size"])
        return classification_metrics(valid_labels, probs)

    return ClassifierTask(
        model=model,
        lengths=np.array([len(x) for x in train_ids]),
        make_batch=make_batch,
        loss_fn=classifier_loss,
        evaluate=evaluate,
        tokenizer=tokenizer,
        train_ids=train_ids,
        labels=labels,
        valid_ids=valid_ids,
        valid_labels=valid_labels,
        eval_batch_size=section["eval_batch_size"],
        input_mask_prob=input_mask_prob,
        encoder_source=files.encoder,
        fold=files.fold if files.folds is not None else None,
        fold_index=fold_index,
    )


def in_fold(folds_path: str, fold: int, index: np.ndarray) -> np.ndarray:
    """Which of the training rows (`index`: train split, then any pseudo-label rows) belong to
    `fold`. Pseudo-label rows are test rows, in no fold: always trained on."""
    folds = read_folds(folds_path)
    if fold not in set(folds["fold"]):
        raise InputError(f"{folds_path}: no fold {fold}")
    members = folds.loc[folds["fold"] == fold, "index"].to_numpy()
    mask = np.isin(index, members)
    missing = len(members) - int(mask.sum())
    if missing:  # folds of another split (a stale file) would silently shrink the fold
        raise InputError(f"{folds_path}: {missing} rows of fold {fold} are not training rows")
    return mask


def write_fold_predictions(task: ClassifierTask, files: StageFiles, max_length: int) -> dict[str, Any]:
    """A fold model's predictions, after training (nothing here chooses anything): its fold's
    rows (out-of-fold), the valid split and the test set. Returns its valid scores."""

    def predict(ids: list[list[int]]) -> np.ndarray:
        return predict_proba(task.model, ids, task.tokenizer.pad_token_id, task.eval_batch_size)

    def encoded(path: str, labeled: bool) -> tuple[Any, list[list[int]]]:
        df = read_split(path, labeled=labeled)
        return df, encode(task.tokenizer, df["title"].tolist(), max_length)

    write_parquet(probs_frame(task.fold_index, predict(task.valid_ids)), files.oof_probs, PROBS_SCHEMA)
    valid_df, valid_ids = encoded(files.valid, labeled=True)
    valid_probs = predict(valid_ids)
    write_parquet(probs_frame(valid_df["index"].to_numpy(), valid_probs), files.valid_probs, PROBS_SCHEMA)
    test_df, test_ids = encoded(files.test, labeled=False)
    write_parquet(probs_frame(test_df["index"].to_numpy(), predict(test_ids)), files.test_probs, PROBS_SCHEMA)
    return classification_metrics(valid_df["topic_idx"].to_numpy(), valid_probs)


def classifier_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the batch's rows, and how many there are."""
    return model(**batch).loss * len(batch["labels"]), len(batch["labels"])
