"""One runner for the training stages (mlm_pretrain, finetune, retrain).

Each stage is a task (newstopic.pretrain, newstopic.finetune); around it the runner does the
same for all: the stage's seed, the run's fingerprint and checkpoint directory, the engine
(the hand-written loop, or the Hugging Face Trainer), saving the model, metrics.json, and
clearing the checkpoints once the outputs are written.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from newstopic import distributed, slurm
from newstopic.atomic import save_pretrained_dir, write_json
from newstopic.checkpoint import CheckpointDir, fingerprint
from newstopic.errors import TrainingInterrupted, run_main
from newstopic.finetune import classifier_task, write_fold_predictions
from newstopic.logs import setup_logging
from newstopic.pretrain import mlm_task
from newstopic.tokenization import load_tokenizer
from newstopic.training import LoopSettings, train

log = logging.getLogger("newstopic")

TASKS = {"mlm_pretrain": mlm_task, "finetune": classifier_task, "retrain": classifier_task}


@dataclass
class StageFiles:
    """A training rule's files."""

    train: list[str]  # training splits (mlm_pretrain: the text files)
    tokenizer: str
    model: str  # output: the model directory (save_pretrained)
    metrics: str  # output: metrics.json
    scratch: str  # resumable checkpoints: not an output, Snakemake would delete it
    valid: str | None = None
    encoder: str | None = None  # the encoder to start from (None: random init from model.arch)
    # A fold model (config cv.folds): the folds file, its fold, the test split, and its outputs
    # (out-of-fold, valid and test probabilities); all None otherwise.
    folds: str | None = None
    fold: int | None = None
    test: str | None = None
    oof_probs: str | None = None
    valid_probs: str | None = None
    test_probs: str | None = None

    @classmethod
    def of_rule(cls, sm: Any) -> StageFiles:
        """The files of a training rule's job (the `snakemake` object of its script)."""
        return cls(
            train=list(sm.input.train),
            valid=sm.input.get("valid"),
            tokenizer=sm.input.tokenizer,
            encoder=sm.params.encoder,
            model=sm.output.model,
            metrics=sm.output.metrics,
            scratch=sm.params.scratch,
            folds=sm.input.get("folds"),
            fold=sm.params.get("fold"),
            test=sm.input.get("test"),
            oof_probs=sm.output.get("oof_probs"),
            valid_probs=sm.output.get("valid_probs"),
            test_probs=sm.output.get("test_probs"),
        )


def stage_seed(cfg: dict[str, Any]) -> int:
    """The stage's own seed (finetune.seed / retrain.seed) when set, else the top-level one."""
    own = cfg["train"].get("seed")
    return cfg["seed"] if own is None else own


def run_stage(stage: str, files: StageFiles, cfg: dict[str, Any]) -> dict[str, Any]:
    """Train `stage` and write its model and metrics. `cfg` holds the config sections the
    stage uses: train (its own section: mlm, finetune or retrain), model, runtime, and
    max_length, seed and engine."""
    start = time.perf_counter()
    seed = stage_seed(cfg)
    tokenizer = load_tokenizer(files.tokenizer)
    task = TASKS[stage](files, cfg, tokenizer, seed)
    settings = LoopSettings.from_config(cfg["train"], cfg["runtime"], seed)
    # A checkpoint is resumed only by a run of the same parameters and input files.
    params = {k: cfg[k] for k in ("model", "train", "max_length")}
    params |= {"stage": stage, "precision": settings.precision, "seed": seed, "encoder": files.encoder}
    if files.folds is not None:
        params["fold"] = files.fold
    encoder = [files.encoder] if files.encoder and Path(files.encoder).exists() else []  # not a hub id
    inputs = [*files.train, *([files.valid] if files.valid else []), files.tokenizer, *encoder]
    inputs += [files.folds] if files.folds else []
    checkpoints = CheckpointDir(
        files.scratch, fingerprint(params, inputs), cfg["runtime"]["keep_checkpoints"]
    )

    if cfg["engine"] == "hf":
        from newstopic.hf_engine import train_with_trainer

        state = train_with_trainer(task, settings, checkpoints)
    else:
        state = train(task, settings, checkpoints)

    metrics = {"stage": stage, "engine": cfg["engine"], **task.metrics(state), "steps": state.step}
    metrics |= {
        "train_seconds": round(state.train_seconds, 2),
        "seconds": round(time.perf_counter() - start, 2),
    }
    metrics.setdefault("history", state.history)
    if distributed.is_main():  # one writer; every rank holds the same weights
        if files.folds is not None:  # the fold model's predictions, its valid scores reported
            metrics |= write_fold_predictions(task, files, cfg["max_length"])
        save_pretrained_dir(files.model, task.model, tokenizer)
        write_json(files.metrics, metrics)
        checkpoints.clear()
    return metrics


def run_stage_in_job(stage: str, files: StageFiles, cfg: dict[str, Any]) -> dict[str, Any]:
    """`run_stage`; training stopped by the Slurm time-limit warning requeues its job
    (newstopic.slurm) and says so at the end of the stop line. Under torchrun the launcher,
    which got the signal itself, requeues once the workers have checkpointed
    (distributed.start)."""
    try:
        return run_stage(stage, files, cfg)
    except TrainingInterrupted as stop:
        job = None if distributed.is_worker() else slurm.job_to_requeue(stop.signum)
        if job is not None:
            # The requeue ends the job at once: the stop line is written first (run_main),
            # then the job requeued; a failed requeue adds a line of its own.
            stop.then = slurm.REQUEUED.format(job=job)
            stop.after = lambda: _say_failed_requeue(slurm.requeue(job))
        raise


def _say_failed_requeue(why_not: str | None) -> None:
    if why_not is not None:
        log.warning("%s", why_not)
        print(f"newstopic: stopped: {why_not}", file=sys.stderr, flush=True)


def run_training_rule(stage: str, sm: Any) -> dict[str, Any]:
    """A training rule's script body (`sm`: its snakemake object): with several processes re-run
    under torchrun (or join the group), log to the rule's log, use the job's threads, run the
    stage; errors in one line. `stage` is the rule's name, or the `stage` param of a rule made
    from a training rule (an extra ensemble member: finetune_seed trains finetune)."""
    stage = sm.params.get("stage", stage)
    res, cfg = sm.resources, sm.params.settings
    distributed.start(res.processes, res.nodes, sm.threads, cfg["runtime"]["device"])
    distributed.quiet_unless_main(setup_logging(sm.log[0]))
    torch.set_num_threads(max(1, sm.threads // res.processes))
    # The spin count decides how a job fares on a shared core (the Snakefile sets it).
    log.info("%d threads, GOMP_SPINCOUNT=%s", torch.get_num_threads(), os.environ.get("GOMP_SPINCOUNT"))
    metrics = run_main(run_stage_in_job, stage, StageFiles.of_rule(sm), cfg, log_file=sm.log[0])
    log.info("done: %s", {k: metrics[k] for k in ("valid_accuracy", "steps", "seconds") if k in metrics})
    return metrics
