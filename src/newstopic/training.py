"""The hand-written training loop, shared by MLM pretraining and fine-tuning.

One loop, read top to bottom: AdamW, linear warmup + linear decay, gradient clipping,
length-grouped batches, evaluation at the end of every epoch, best model kept, and a
resumable checkpoint every N steps (and at each epoch end and on SIGTERM/SIGUSR1).

With several processes (newstopic.distributed) each rank takes its rows of the same global
batch, DistributedDataParallel averages the gradients, and rank 0 evaluates and writes the
checkpoints: the loss curve is that of one process with the same global batch.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from newstopic import distributed
from newstopic.checkpoint import CheckpointDir, TrainState
from newstopic.data import length_grouped_batches
from newstopic.errors import TrainingInterrupted

log = logging.getLogger("newstopic")


class StopRequest:
    """Turns SIGTERM / SIGUSR1 (what Slurm sends before a time limit or preemption) into a
    flag the loop checks at each step boundary, so the job checkpoints, then exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __bool__(self) -> bool:
        return self.signal is not None


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


def resolve_device(name: str) -> torch.device:
    """'auto' = the GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast (matmuls in bfloat16 on GPUs and on CPUs with AMX/AVX512-BF16)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


# (model, batch) -> (sum of the per-item losses, number of items)
LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, int]]


class _WithLoss(torch.nn.Module):
    """The model and its loss as one module, so DistributedDataParallel sees the forward pass."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return self.loss_fn(self.model, batch)


def train(
    model: torch.nn.Module,
    lengths: np.ndarray,
    make_batch: Callable[[np.ndarray, int], dict[str, torch.Tensor]],
    loss_fn: LossFn,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None,
    settings: LoopSettings,
    checkpoints: CheckpointDir,
    metric: str = "valid_accuracy",
) -> TrainState:
    """Train `model` in place; return the final state (with the per-epoch history).

    `make_batch(rows, step)` builds the batch of the given row positions (it may use `step`
    to seed per-step randomness such as MLM masks), every tensor with one row per position;
    `loss_fn(model, batch)` returns (the sum of the per-item losses, the number of items),
    items being rows or masked tokens; the loss is their mean over the global batch.
    `evaluate(model)` returns metrics, `metric` among them (higher is better). On return
    the model holds the best weights (or the last, without `evaluate`).
    """
    s = settings
    world, main = distributed.world_size(), distributed.is_main()
    dev = distributed.local_device(resolve_device(s.device))  # with several GPUs: this rank's
    torch.manual_seed(s.seed + distributed.rank())  # dropout noise differs between ranks
    model.to(dev)
    where = f"{dev} ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else str(dev)
    log.info("training on %s, %s, %d process(es)", where, s.precision, world)
    steps_per_epoch = len(length_grouped_batches(lengths, s.batch_size, s.seed, 0))
    total_steps = max(1, math.ceil(s.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(param_groups(model, s.lr, s.weight_decay, s.head_lr), lr=s.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total_steps), total_steps)

    state = checkpoints.resume(model, optimizer, scheduler)
    distributed.barrier()  # every rank has read the checkpoint before rank 0 changes anything
    if state is None:
        if main:
            checkpoints.clear()  # stale state of another run, if any
        state = TrainState()
        log.info("starting at step 0 of %d (%d steps per epoch)", total_steps, steps_per_epoch)
    else:
        log.info("resumed at step %d of %d from %s", state.step, total_steps, checkpoints.root)
        if world > 1:  # the checkpoint holds rank 0's RNG state only
            torch.manual_seed(s.seed + distributed.rank() + world * state.step)
    step_model: torch.nn.Module = _WithLoss(model, loss_fn)
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            step_model, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    def save() -> None:
        if main:
            checkpoints.save(model, optimizer, scheduler, state)

    def interrupted(signum: int) -> TrainingInterrupted:
        name = signal.Signals(signum).name
        return TrainingInterrupted(
            f"{name} received: stopped at step {state.step} of {total_steps} with a checkpoint "
            f"in {checkpoints.root}; rerun to resume",
            signum,
        )

    t0 = time.perf_counter() - state.train_seconds
    running_loss, running_n = 0.0, 0
    with StopRequest() as stop:
        # history holds one record per finished (evaluated) epoch, so a run stopped after
        # an epoch's last step but before its evaluation evaluates it on resume.
        for epoch in range(len(state.history), math.ceil(total_steps / steps_per_epoch)):
            batches = length_grouped_batches(lengths, s.batch_size, s.seed, epoch)
            first = state.step - epoch * steps_per_epoch
            last = min(len(batches), total_steps - epoch * steps_per_epoch)
            model.train()
            for rows in batches[first:last]:
                batch = make_batch(rows, state.step)  # the global batch, the same on every rank
                local, weight = distributed.shard(batch, len(rows))
                with autocast(dev, s.precision):
                    loss_sum, items = step_model({k: v.to(dev) for k, v in local.items()})
                (total_items,) = distributed.all_reduce_sum([items * weight], dev)
                loss = loss_sum * weight / max(total_items, 1)  # this rank's share of the mean
                # DistributedDataParallel averages gradients over ranks; x world makes it the sum.
                (loss * world).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                (loss_value,) = distributed.all_reduce_sum([loss.item()], dev)
                stop_signal = distributed.any_signal(stop.signal, dev)  # all ranks stop together
                running_loss += loss_value
                running_n += 1
                state.epoch_loss_sum += loss_value
                state.epoch_batches += 1
                if state.step % s.log_every == 0:
                    log.info(
                        "step %d/%d epoch %d loss %.4f lr %.2e",
                        state.step,
                        total_steps,
                        epoch,
                        running_loss / running_n,
                        scheduler.get_last_lr()[0],
                    )
                    running_loss, running_n = 0.0, 0
                state.train_seconds = time.perf_counter() - t0
                if stop_signal or state.step % s.checkpoint_every == 0:
                    save()
                if stop_signal:
                    distributed.barrier()  # no rank exits (and takes the others down) mid-save
                    raise interrupted(stop_signal)

            # End of an epoch (or of the last, partial one): evaluate, keep the best.
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": state.step,
                "train_loss": state.epoch_loss_sum / max(state.epoch_batches, 1),
            }
            state.epoch_loss_sum, state.epoch_batches = 0.0, 0
            if evaluate is not None:
                # Rank 0 evaluates; the others take its figures so that all agree on the best.
                record.update(distributed.broadcast(evaluate(model) if main else None))
                if state.best_metric is None or record[metric] > state.best_metric:
                    state.best_metric, state.best_step = record[metric], state.step
                    if main:
                        checkpoints.save_best(model, state.step, record[metric])
                log.info(
                    "epoch %d: %s",
                    epoch + 1,
                    " ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)),
                )
            state.history.append(record)
            state.train_seconds = time.perf_counter() - t0
            save()
            stop_signal = distributed.any_signal(stop.signal, dev)
            if stop_signal and state.step < total_steps:  # the signal came during the evaluation
                distributed.barrier()
                raise interrupted(stop_signal)

    distributed.barrier()  # rank 0's last checkpoint and best model are on disk
    if evaluate is not None:
        checkpoints.load_best(model, state.best_step)
    return state
