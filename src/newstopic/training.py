"""The hand-written training loop, shared by MLM pretraining and fine-tuning.

One loop, read top to bottom: AdamW, linear warmup + linear decay, gradient clipping,
length-grouped batches, evaluation at the end of every epoch, best model kept, and a
resumable checkpoint every N steps (and at each epoch end and on SIGTERM/SIGUSR1).

With several processes (newstopic.distributed.Ranks) each rank takes its rows of the same
global batch, DistributedDataParallel averages the gradients, and rank 0 evaluates and writes
the checkpoints: the loss curve is that of one process with the same global batch.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from newstopic.checkpoint import CheckpointDir, TrainState
from newstopic.data import length_grouped_batches
from newstopic.device import autocast, describe, resolve_device, set_attention
from newstopic.distributed import Ranks
from newstopic.errors import TrainingInterrupted
from newstopic.slurm import held_signal

log = logging.getLogger("newstopic")

# (model, batch) -> (sum of the per-item losses, number of items)
LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, int]]


@dataclass
class Task:
    """What the loop trains. `make_batch(rows, step)`: the batch of those row positions (`step`
    may seed per-step noise such as MLM masks); `loss_fn`: (sum of the per-item losses, number
    of items: rows or masked tokens); `evaluate(model)`: metrics, higher is better."""

    model: torch.nn.Module
    lengths: np.ndarray  # tokens per training row: batches group similar lengths
    make_batch: Callable[[np.ndarray, int], dict[str, torch.Tensor]]
    loss_fn: LossFn
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None


@dataclass
class LoopSettings:
    epochs: float
    batch_size: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    seed: int
    checkpoint_every: int = 50
    log_every: int = 20
    head_lr: float | None = None
    device: str = "cpu"
    precision: str = "fp32"

    @classmethod
    def from_config(cls, section: Mapping[str, Any], runtime: Mapping[str, Any], seed: int) -> LoopSettings:
        """A stage's section of the config (mlm, finetune, retrain) and `runtime`."""
        ours = ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "max_grad_norm")
        run = ("checkpoint_every", "log_every", "device", "precision")
        stage = {k: section[k] for k in ours} | {k: runtime[k] for k in run}
        return cls(**stage, head_lr=section.get("head_lr"), seed=seed)


class StopRequest:
    """Turns SIGTERM / SIGUSR1 (what Slurm sends before a time limit or preemption) into a
    flag the loop checks at each step boundary, so the job checkpoints, then exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        self.signal = held_signal()  # a time-limit warning that came during start-up
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Progress:
    """The log line every `log_every` steps: running mean loss, learning rate, speed and the
    time the stage still needs at this run's pace (evaluations included)."""

    def __init__(self, total_steps: int, log_every: int, first_step: int) -> None:
        self.total, self.every, self.first, self.start = (
            total_steps,
            log_every,
            first_step,
            time.perf_counter(),
        )
        self.losses: list[float] = []

    def update(self, step: int, epoch: int, loss: float, lr: float) -> None:
        self.losses.append(loss)
        if step % self.every == 0:
            speed = pace(step - self.first, self.total - step, time.perf_counter() - self.start)
            mean = sum(self.losses) / len(self.losses)
            log.info(f"step {step}/{self.total} epoch {epoch} loss {mean:.4f} lr {lr:.2e} ({speed})")
            self.losses = []


def pace(steps_done: int, steps_left: int, seconds: float) -> str:
    """`x steps/s, 3m20s left`: this run's speed so far (steps since it started or resumed) and
    the time the stage still needs at that speed. Shared by both engines' progress lines."""
    rate = steps_done / max(seconds, 1e-9)
    if rate <= 0:
        return "0.00 steps/s, time left unknown"
    minutes, sec = divmod(round(steps_left / rate), 60)
    left = f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{sec:02d}s"
    return f"{rate:.2f} steps/s, {left} left"


def param_groups(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    head_lr: float | None = None,
    head_prefix: tuple[str, ...] = ("head.", "ngrams."),
) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases and norms; the new layers (head, n-gram bag) may get
    their own lr."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and "norm" not in name.lower()
        is_head = head_lr is not None and name.startswith(head_prefix)
        groups.setdefault((decay, is_head), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": weight_decay if decay else 0.0,
            "lr": head_lr if is_head else lr,
        }
        for (decay, is_head), ps in sorted(groups.items())
    ]


def adamw(model: torch.nn.Module, settings: LoopSettings, device: torch.device) -> torch.optim.AdamW:
    """AdamW over `param_groups`; fused (one kernel for all parameters) where PyTorch has it:
    6-7% of a CPU MLM step (docs/performance.md), the same state dict to resume from."""
    groups = param_groups(model, settings.lr, settings.weight_decay, settings.head_lr)
    return torch.optim.AdamW(groups, lr=settings.lr, fused=device.type in ("cpu", "cuda"))


class ModelWithLoss(torch.nn.Module):
    """The model and its loss as one module, so DistributedDataParallel sees the forward pass."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return self.loss_fn(self.model, batch)


def train(
    task: Task, settings: LoopSettings, checkpoints: CheckpointDir, metric: str = "valid_accuracy"
) -> TrainState:
    """Train `task.model` in place; return the final state (with the per-epoch history).
    On return the model holds the best weights by `metric` (or the last, without evaluate)."""
    s, model = settings, task.model
    ranks = Ranks(resolve_device(s.device))
    ranks.seed(s.seed)
    model.to(ranks.device)
    set_attention(model, ranks.device)
    log.info("training on %s, %s, %d process(es)", describe(ranks.device), s.precision, ranks.world)
    steps_per_epoch = len(length_grouped_batches(task.lengths, s.batch_size, s.seed, 0))
    total_steps = max(1, math.ceil(s.epochs * steps_per_epoch))
    optimizer = adamw(model, s, ranks.device)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total_steps), total_steps)
    state = resume_or_start(checkpoints, model, optimizer, scheduler, ranks, s.seed)
    resumed = f"resumed at step {state.step} of {total_steps} from {checkpoints.root}"
    log.info(
        resumed if state.step else f"starting at step 0 of {total_steps} ({steps_per_epoch} steps per epoch)"
    )
    step_model = ranks.wrap(ModelWithLoss(model, task.loss_fn))
    progress = Progress(total_steps, s.log_every, state.step)

    def checkpoint() -> None:
        ranks.on_main(checkpoints.save, model, optimizer, scheduler, state)

    def stopped(signum: int) -> TrainingInterrupted:
        ranks.barrier()  # no rank exits (and takes the others down) mid-save
        return TrainingInterrupted(
            f"{signal.Signals(signum).name} received: stopped at step {state.step} of {total_steps} "
            f"with a checkpoint in {checkpoints.root}",
            signum,
        )

    t0 = time.perf_counter() - state.train_seconds
    with StopRequest() as stop:
        # history holds one record per finished (evaluated) epoch, so a run stopped after
        # an epoch's last step but before its evaluation evaluates it on resume.
        for epoch in range(len(state.history), math.ceil(total_steps / steps_per_epoch)):
            model.train()
            # Batches are a pure function of (seed, epoch): resuming mid-epoch replays nothing.
            batches = length_grouped_batches(task.lengths, s.batch_size, s.seed, epoch)
            done = epoch * steps_per_epoch
            for rows in batches[state.step - done : total_steps - done]:
                batch = task.make_batch(rows, state.step)  # the global batch, the same on every rank
                loss = forward_backward(step_model, batch, len(rows), ranks, s.precision)
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.epoch_loss_sum += loss
                state.epoch_batches += 1
                progress.update(state.step, epoch, loss, scheduler.get_last_lr()[0])
                state.train_seconds = time.perf_counter() - t0
                signum = ranks.any_signal(stop.signal)  # all ranks stop together
                if signum or state.step % s.checkpoint_every == 0:
                    checkpoint()
                if signum:
                    raise stopped(signum)

            end_of_epoch(task, state, epoch, ranks, checkpoints, metric)
            state.train_seconds = time.perf_counter() - t0
            checkpoint()
            signum = ranks.any_signal(stop.signal)
            if signum and state.step < total_steps:  # the signal came during the evaluation
                raise stopped(signum)

    ranks.barrier()  # rank 0's last checkpoint and best model are on disk
    if task.evaluate is not None:
        checkpoints.load_best(model, state.best_step)
    return state


def resume_or_start(
    checkpoints: CheckpointDir,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ranks: Ranks,
    seed: int,
) -> TrainState:
    """The state of the newest good checkpoint of this run (loaded into model, optimizer,
    scheduler and RNG), or a fresh state with the scratch directory cleared."""
    state = checkpoints.resume(model, optimizer, scheduler)
    ranks.barrier()  # every rank has read the checkpoint before rank 0 changes anything
    if state is None:
        ranks.on_main(checkpoints.clear)  # stale state of another run, if any
        return TrainState()
    if ranks.world > 1:
        ranks.seed(seed, state.step)
    return state


def forward_backward(
    step_model: torch.nn.Module, batch: dict[str, torch.Tensor], n_rows: int, ranks: Ranks, precision: str
) -> float:
    """Forward and backward on this rank's rows of the global batch; returns the batch's
    mean loss over all ranks."""
    local, weight = ranks.shard(batch, n_rows)
    with autocast(ranks.device, precision):
        loss_sum, items = step_model({k: v.to(ranks.device) for k, v in local.items()})
    (total_items,) = ranks.sum([items * weight])
    loss = loss_sum * weight / max(total_items, 1)  # this rank's share of the mean
    # DistributedDataParallel averages gradients over ranks; x world makes it the sum.
    (loss * ranks.world).backward()
    (mean,) = ranks.sum([loss.item()])
    return mean


def end_of_epoch(
    task: Task, state: TrainState, epoch: int, ranks: Ranks, checkpoints: CheckpointDir, metric: str
) -> None:
    """The epoch's record: mean training loss and, with `task.evaluate`, the valid metrics
    (rank 0 evaluates, every rank takes its figures); the best model is kept."""
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": state.step,
        "train_loss": state.epoch_loss_sum / max(state.epoch_batches, 1),
    }
    state.epoch_loss_sum, state.epoch_batches = 0.0, 0
    if task.evaluate is not None:
        record.update(ranks.from_main(lambda: task.evaluate(task.model)))
        if state.best_metric is None or record[metric] > state.best_metric:
            state.best_metric, state.best_step = record[metric], state.step
            ranks.on_main(checkpoints.save_best, task.model, state.step, record[metric])
        scores = " ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float))
        log.info("epoch %d: %s", epoch + 1, scores)
    state.history.append(record)
