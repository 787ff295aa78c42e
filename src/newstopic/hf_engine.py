"""The `hf` engine: the same custom model, data and hyper-parameters as the hand-written loop
(training.py), trained by the Hugging Face `Trainer` the way people commonly use it.

What is the same as the loop: the model object and its initialisation, the token ids, the
AdamW parameter groups (no decay on biases and norms, `head_lr`), the linear warmup + decay
over the same number of steps, gradient clipping, batch size, seed, device and precision
(bf16 autocast), evaluation on valid at each epoch end and the best epoch kept (by valid
accuracy).

What is the Trainer's own (the honest "Trainer as people use it" baseline):
- batches are drawn at random and padded to their longest title (`DataCollatorWithPadding`),
  no length bucketing, so more padding than the loop;
- MLM uses `DataCollatorForLanguageModeling` and the model's own loss: the LM head projects
  every position onto the vocabulary (the loop projects only the masked ones);
- checkpoints are the Trainer's, one per epoch (`save_strategy="epoch"`, which
  `load_best_model_at_end` requires), kept in `<scratch>/hf/`; `runtime.checkpoint_every` is
  loop-only, so a killed run redoes its current epoch. SIGTERM and SIGUSR1 (Slurm's warning
  before a time limit) save a checkpoint at the end of the step they came in and stop, as
  the loop does, so a job stopped at its time limit requeues and resumes at that step;
- one training process (several GPUs of one process are used through DataParallel); for
  DistributedDataParallel over several processes or nodes use the loop.

A Trainer checkpoint is written file by file, not atomically. After each save a small
`newstopic.json` (run fingerprint, training seconds so far) is written into it: a checkpoint
without one was cut short, one with another fingerprint belongs to another run; neither is
resumed.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from newstopic import distributed
from newstopic.checkpoint import CheckpointDir, TrainState, step_of
from newstopic.data import mask_inputs
from newstopic.device import resolve_device, set_attention
from newstopic.errors import ConfigError, TrainingInterrupted
from newstopic.finetune import ClassifierTask
from newstopic.metrics import classification_metrics
from newstopic.pretrain import MlmTask
from newstopic.training import LoopSettings, StopRequest, adamw, pace

log = logging.getLogger("newstopic")

MARKER = "newstopic.json"
HF_SUBDIR = "hf"


class TokenDataset(torch.utils.data.Dataset):
    """Token-id lists (and labels: class indices, or per-row class distributions) as the
    examples a Trainer data collator expects. With `noise` (prob, [MASK] id, special ids),
    each read masks a fresh random subset of the tokens (finetune.input_mask_prob)."""

    def __init__(
        self,
        ids: Sequence[Sequence[int]],
        labels: Sequence[int] | np.ndarray | None = None,
        noise: tuple[float, int, Sequence[int]] | None = None,
    ) -> None:
        if labels is not None and len(labels) != len(ids):
            raise ValueError(f"{len(ids)} token lists but {len(labels)} labels")
        self.ids = ids
        self.labels = labels
        self.noise = noise if noise and noise[0] > 0 else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": list(self.ids[i])}
        if self.noise:
            prob, mask_id, special_ids = self.noise
            ids = torch.tensor(item["input_ids"])  # the Trainer seeds the global RNG
            item["input_ids"] = mask_inputs(ids, special_ids, mask_id, prob, None).tolist()
        if self.labels is not None:
            label = self.labels[i]
            item["labels"] = np.asarray(label).tolist() if np.ndim(label) else int(label)
        return item


def compute_metrics(pred: EvalPrediction) -> dict[str, float]:
    """The loop's valid metrics (accuracy, macro-F1, NLL) from the Trainer's eval logits."""
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    logits = np.asarray(logits, dtype=np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return classification_metrics(np.asarray(pred.label_ids), probs)


# --- resumable checkpoints ----------------------------------------------------------------
def latest_checkpoint(root: str | Path, run_fingerprint: str) -> tuple[Path | None, float]:
    """The newest complete checkpoint of this run in `root` and its training seconds so far.

    Checkpoints cut short (no marker) or of another run (other fingerprint) are deleted, so
    the Trainer's own checkpoint rotation never counts them.
    """
    root = Path(root)
    found: list[tuple[int, Path, float]] = []
    for path in root.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if root.is_dir() else []:
        if not path.is_dir() or step_of(path) is None:
            continue
        try:
            meta = json.loads((path / MARKER).read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("fingerprint") != run_fingerprint:
            why = "incomplete" if not meta else "of another run"
            log.warning("removing checkpoint %s (%s)", path, why)
            shutil.rmtree(path, ignore_errors=True)
            continue
        found.append((step_of(path), path, float(meta.get("train_seconds", 0.0))))
    if not found:
        return None, 0.0
    _, path, seconds = max(found)
    return path, seconds


_LOGGED = ("loss", "learning_rate", "eval_valid_accuracy", "eval_valid_macro_f1", "eval_valid_loss")


class _NewstopicCallback(TrainerCallback):
    """Progress lines in the rule's log, and the completeness marker after each save."""

    def __init__(self, run_fingerprint: str, log_every: int, previous_seconds: float) -> None:
        self.fingerprint = run_fingerprint
        self.log_every = log_every
        self.previous_seconds = previous_seconds
        self.start = time.perf_counter()
        self.first_step = 0

    def train_seconds(self) -> float:
        return self.previous_seconds + time.perf_counter() - self.start

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        self.start = time.perf_counter()
        self.first_step = state.global_step  # a resumed run's speed counts its own steps only

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):  # noqa: ANN001, ANN201
        if state.global_step % self.log_every == 0:
            lr = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else float("nan")
            done = state.global_step - self.first_step
            speed = pace(done, state.max_steps - state.global_step, time.perf_counter() - self.start)
            step, total = state.global_step, state.max_steps
            log.info("step %d/%d epoch %.2f lr %.2e (%s)", step, total, state.epoch, lr, speed)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        shown = {k: v for k, v in (logs or {}).items() if k in _LOGGED}
        if shown:
            log.info(
                "step %d epoch %.2f: %s",
                state.global_step,
                state.epoch or 0.0,
                " ".join(f"{k} {v:.4g}" for k, v in shown.items()),
            )

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        path = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        meta = {"fingerprint": self.fingerprint, "train_seconds": self.train_seconds()}
        tmp = path / f".{MARKER}.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(path / MARKER)


class _StopAtSignal(TrainerCallback):
    """SIGTERM / SIGUSR1 (Slurm's time-limit warning) as the loop takes them: at the end of the
    step it came in, save a checkpoint and stop; `_train` then raises TrainingInterrupted, and
    the job requeues itself as a loop job does (newstopic.stages.run_stage_in_job)."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.stop.signal and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if control.should_training_stop and self.stop.signal:
            # Stopped mid-epoch: no evaluation there (a resumed run evaluates at the epoch's
            # end, as an uninterrupted one), and the step's checkpoint is written already.
            control.should_evaluate = False
            control.should_save = False


# --- the Trainer ----------------------------------------------------------------------------
def training_arguments(
    output_dir: str | Path,
    settings: LoopSettings,
    *,
    train_rows: int,
    keep_checkpoints: int,
    eval_batch_size: int | None = None,
) -> TrainingArguments:
    """The loop's settings as TrainingArguments; evaluation (and best-model selection by
    valid accuracy) when `eval_batch_size` is given."""
    s = settings
    if distributed.world_size() > 1:
        raise ConfigError(
            "engine 'hf' runs in one process: set resources.<rule>.processes to 1 and nodes to 1, "
            "or use engine 'loop' for several training processes"
        )
    use_cpu = resolve_device(s.device).type == "cpu"
    # batch_size is the global batch; in one process the Trainer splits its per-device batch
    # over every visible GPU (DataParallel), so give it the global batch's share.
    devices = 1 if use_cpu else max(1, torch.cuda.device_count())
    if s.batch_size % devices:
        raise ConfigError(f"batch_size {s.batch_size} is not divisible by the {devices} GPUs (engine 'hf')")
    # The loop's schedule: the same total and warmup step counts. (The Trainer reads a
    # float warmup_steps < 1 as a ratio but rounds it up; an int keeps the loop's count.)
    total_steps = max(1, math.ceil(s.epochs * math.ceil(train_rows / s.batch_size)))
    evaluate = eval_batch_size is not None
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=s.batch_size // devices,
        per_device_eval_batch_size=max(1, (eval_batch_size or s.batch_size) // devices),
        num_train_epochs=s.epochs,
        learning_rate=s.lr,
        weight_decay=s.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=int(s.warmup_ratio * total_steps),
        max_grad_norm=s.max_grad_norm,
        seed=s.seed,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="epoch",
        save_total_limit=keep_checkpoints,
        load_best_model_at_end=evaluate,
        metric_for_best_model="valid_accuracy" if evaluate else None,
        greater_is_better=True if evaluate else None,
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=True,
        # runtime.device and runtime.precision, as the loop applies them.
        use_cpu=use_cpu,
        bf16=s.precision == "bf16",
    )


def _train(
    model: PreTrainedModel,
    args: TrainingArguments,
    *,
    tokenizer: PreTrainedTokenizerBase,
    collator: Any,
    train_dataset: TokenDataset,
    eval_dataset: TokenDataset | None,
    settings: LoopSettings,
    run_fingerprint: str,
) -> TrainState:
    """Run (or resume) the Trainer; the model ends with the best (or last) weights."""
    resume, previous_seconds = latest_checkpoint(args.output_dir, run_fingerprint)
    callback = _NewstopicCallback(run_fingerprint, settings.log_every, previous_seconds)
    # The loop's AdamW (groups, head_lr, fused) and attention kernel; the Trainer adds its
    # scheduler.
    device = resolve_device(settings.device)
    set_attention(model, device)
    optimizer = adamw(model, settings, device)
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        compute_metrics=compute_metrics if eval_dataset is not None else None,
        callbacks=[callback],
        optimizers=(optimizer, None),
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw dicts to stdout; ours logs them
    if resume is None:
        log.info("hf engine: starting at step 0, checkpoints in %s", args.output_dir)
    else:
        log.info("hf engine: resumed at step %d from %s", step_of(resume), resume)
    with StopRequest() as stop:
        trainer.add_callback(_StopAtSignal(stop))
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    step, total = trainer.state.global_step, trainer.state.max_steps
    if stop.signal and step < total:
        raise TrainingInterrupted(
            f"{signal.Signals(stop.signal).name} received: stopped at step {step} of {total} "
            f"with a checkpoint in {args.output_dir}",
            stop.signal,
        )
    if trainer.model is not model:  # the Trainer wrapped or replaced it: copy the weights back
        model.load_state_dict(trainer.model.state_dict())
    return _state_from(trainer, callback.train_seconds())


def _state_from(trainer: Trainer, train_seconds: float) -> TrainState:
    """The loop's TrainState (per-epoch history, best step) from the Trainer's log history."""
    records: dict[int, dict[str, Any]] = {}
    for entry in trainer.state.log_history:
        step = entry.get("step")
        if step is None or ("loss" not in entry and "eval_valid_accuracy" not in entry):
            continue
        rec = records.setdefault(step, {"epoch": math.ceil(entry["epoch"] - 1e-9), "step": step})
        if "loss" in entry:
            rec["train_loss"] = entry["loss"]
        for key in ("valid_accuracy", "valid_macro_f1", "valid_loss"):
            if f"eval_{key}" in entry:
                rec[key] = entry[f"eval_{key}"]
    return TrainState(
        step=trainer.state.global_step,
        best_metric=trainer.state.best_metric,
        best_step=trainer.state.best_global_step,
        history=[records[s] for s in sorted(records)],
        train_seconds=train_seconds,
    )


def train_with_trainer(
    task: MlmTask | ClassifierTask, settings: LoopSettings, checkpoints: CheckpointDir
) -> TrainState:
    """Train the task's model with the Trainer: the classifier with evaluation each epoch and
    the best epoch kept, the masked LM with the standard MLM collator (80/10/10 masking drawn
    from the global RNG, which the Trainer's checkpoints save and restore)."""
    tokenizer = task.tokenizer
    if isinstance(task, MlmTask):
        collator: Any = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=task.mask_prob)
        train_dataset, eval_dataset, eval_batch_size = TokenDataset(task.ids), None, None
    else:
        noise = (task.input_mask_prob, tokenizer.mask_token_id, sorted(set(tokenizer.all_special_ids)))
        collator = DataCollatorWithPadding(tokenizer)
        train_dataset = TokenDataset(task.train_ids, task.labels.numpy(), noise)
        eval_dataset = TokenDataset(task.valid_ids, task.valid_labels)
        eval_batch_size = task.eval_batch_size
    args = training_arguments(
        checkpoints.root / HF_SUBDIR,
        settings,
        train_rows=len(train_dataset),
        keep_checkpoints=checkpoints.keep,
        eval_batch_size=eval_batch_size,
    )
    return _train(
        task.model,
        args,
        tokenizer=tokenizer,
        collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        settings=settings,
        run_fingerprint=checkpoints.fingerprint,
    )
