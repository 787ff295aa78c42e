"""One measurement of newstopic.study.benchmarks, in a process of its own.

    python -m newstopic.study.bench_worker SPEC.json

SPEC names the measurement (`kind`), the prepared inputs (`prep`: splits, tokenizer, config,
written by benchmarks.prepare) and where the result JSON goes. A process per measurement, so
that each starts from the same state (no oneDNN kernel cache or allocator pool of the one
before), its peak RSS is its own, and environment variables such as OMP_WAIT_POLICY apply
(the OpenMP runtime reads them once, when torch loads).

Speed is measured at the same point of every engine's step cycle: the call that builds a batch
(the loop's `task.make_batch`, the Trainer's data collator). The time from the batch of step
`warmup` to that of step `warmup + steps` is `steps` whole steps (data, forward, backward,
clipping, optimiser, scheduler, bookkeeping); the training runs themselves are the package's
(`newstopic.training.train`, `transformers.Trainer`), not copies of them. (The Trainer's data
loader builds one batch ahead: its batches are built a step early, the period is the same.)
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newstopic.atomic import write_json
from newstopic.formats import read_json
from newstopic.study.usage import process_usage

# Checkpoints and progress lines are off in the measured runs of both engines: the Trainer's
# are per epoch and the loop's every N steps, a cost that depends on the run's length, not on
# the step.
NEVER = 10**9


@dataclasses.dataclass
class StepClock:
    """When each batch was built, its rows, and its encoder positions (padding included)
    against its real tokens."""

    times: list[float] = dataclasses.field(default_factory=list)
    rows: list[int] = dataclasses.field(default_factory=list)
    positions: list[int] = dataclasses.field(default_factory=list)
    tokens: list[int] = dataclasses.field(default_factory=list)

    def wrap(self, build: Callable[..., Any]) -> Callable[..., Any]:
        """`build` (rows or features, ...) -> batch, timed and counted."""

        def timed(items: Any, *args: Any) -> Any:
            self.times.append(time.perf_counter())
            batch = build(items, *args)
            self.rows.append(len(items))
            ids, mask = batch["input_ids"], batch.get("attention_mask")
            self.positions.append(int(ids.numel()))
            self.tokens.append(int(mask.sum()) if mask is not None else int(ids.numel()))
            return batch

        return timed

    def summary(self, warmup: int, steps: int) -> dict[str, Any]:
        """Samples/s and seconds per step over steps warmup .. warmup+steps-1."""
        if len(self.times) < warmup + steps + 1:
            raise RuntimeError(f"{len(self.times)} batches built, {warmup + steps + 1} needed")
        window = slice(warmup, warmup + steps)
        seconds = self.times[warmup + steps] - self.times[warmup]
        times = self.times[warmup : warmup + steps + 1]
        durations = [b - a for a, b in zip(times, times[1:], strict=False)]
        return {
            "steps": steps,
            "warmup_steps": warmup,
            "seconds": round(seconds, 3),
            "samples_per_s": round(sum(self.rows[window]) / seconds, 1),
            "s_per_step": round(seconds / steps, 4),
            "median_s_per_step": round(statistics.median(durations), 4),
            "positions_per_token": round(sum(self.positions[window]) / sum(self.tokens[window]), 3),
        }


# --- the prepared inputs -------------------------------------------------------------------
def _inputs(spec: dict[str, Any]) -> tuple[dict[str, Any], Any, Path]:
    from newstopic.tokenization import load_tokenizer

    prep = Path(spec["prep"])
    return read_json(prep / "config.json"), load_tokenizer(prep / "tokenizer"), prep


def mlm_text_files(prep: Path, cfg: dict[str, Any]) -> list[Path]:
    """The workflow's MLM (and tokenizer) text: train + test (+ valid) titles, as its
    mlm_text_files() (workflow/rules/common.smk)."""
    names = ["train", "test"] + (["valid"] if cfg["mlm"]["include_valid_text"] else [])
    return [prep / f"{name}.parquet" for name in names]


def _stage_files(prep: Path, cfg: dict[str, Any], mlm: bool) -> Any:
    from newstopic.stages import StageFiles

    train = mlm_text_files(prep, cfg) if mlm else [prep / "train.parquet"]
    return StageFiles(
        train=[str(p) for p in train],
        tokenizer="",
        model="",
        metrics="",
        scratch="",
        valid=str(prep / "valid.parquet"),
    )


def _task(spec: dict[str, Any], cfg: dict[str, Any], tokenizer: Any, prep: Path) -> Any:
    """The stage's task as the workflow builds it; `positions` widens the position table (a
    static padding longer than model.arch.max_position_embeddings needs the rows)."""
    from newstopic.finetune import classifier_task
    from newstopic.pretrain import mlm_task

    mlm = spec["stage"] == "mlm"
    model = dict(cfg["model"])
    if spec.get("positions"):
        arch = model["arch"]
        model["arch"] = dict(
            arch, max_position_embeddings=max(arch["max_position_embeddings"], spec["positions"])
        )
    stage = {"model": model, "train": cfg[spec["stage"]], "max_length": cfg["tokenizer"]["max_length"]}
    build = mlm_task if mlm else classifier_task
    task = build(_stage_files(prep, cfg, mlm), stage, tokenizer, cfg["seed"])
    task.evaluate = None  # evaluation is not a training step (the Trainer's is off too)
    return task


def _steps(task: Any, batch_size: int, spec: dict[str, Any]) -> tuple[int, int, int]:
    """(warmup, steps, steps per epoch), the measured steps cut to fit one epoch: past it the
    loop evaluates and checkpoints, the Trainer reshuffles."""
    from newstopic.data import length_grouped_batches

    per_epoch = len(length_grouped_batches(task.lengths, batch_size, 0, 0))
    warmup = min(spec["warmup"], max(0, per_epoch - 2))
    return warmup, max(1, min(spec["steps"], per_epoch - warmup - 1)), per_epoch


def _settings(cfg: dict[str, Any], section: dict[str, Any], epochs: float) -> Any:
    from newstopic.training import LoopSettings

    runtime = dict(cfg["runtime"], checkpoint_every=NEVER, log_every=NEVER)
    return LoopSettings.from_config(dict(section, epochs=epochs), runtime, cfg["seed"])


# --- the measurements ----------------------------------------------------------------------
def loop(spec: dict[str, Any]) -> dict[str, Any]:
    """The hand-written loop (newstopic.training.train) on the stage's task."""
    from newstopic.checkpoint import CheckpointDir
    from newstopic.training import train

    cfg, tokenizer, prep = _inputs(spec)
    task = _task(spec, cfg, tokenizer, prep)
    section = cfg[spec["stage"]]
    warmup, steps, per_epoch = _steps(task, section["batch_size"], spec)
    clock = StepClock()
    task.make_batch = clock.wrap(task.make_batch)
    settings = _settings(cfg, section, (warmup + steps + 1) / per_epoch)
    # Its own directory: the loop clears it when it starts.
    train(task, settings, CheckpointDir(Path(spec["scratch"]) / "checkpoints", "benchmark", 1))
    return clock.summary(warmup, steps)


def _collator(spec: dict[str, Any], task: Any, tokenizer: Any) -> Any:
    from transformers import DataCollatorForLanguageModeling, DataCollatorWithPadding

    if spec["stage"] == "mlm":
        return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=task.mask_prob)
    if spec.get("static_length"):  # run_classification.py's default: every batch padded to 128
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=spec["static_length"])
    return DataCollatorWithPadding(tokenizer)


def _grouped() -> dict[str, Any]:
    """group_by_length=True, spelt as the installed transformers spells it (5.x:
    train_sampling_strategy="group_by_length")."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def trainer(spec: dict[str, Any]) -> dict[str, Any]:
    """The Hugging Face Trainer on the same model, data, batch size, precision and threads,
    set up as newstopic.hf_engine sets it up, plus its best settings: length-grouped batches,
    bf16 (runtime.precision), no dataloader workers, and the loop's fused AdamW and attention
    kernel (a Trainer user's `optim="adamw_torch_fused"` and `attn_implementation`)."""
    from transformers import PrinterCallback, Trainer

    from newstopic.device import resolve_device, set_attention
    from newstopic.hf_engine import TokenDataset, training_arguments
    from newstopic.training import adamw

    cfg, tokenizer, prep = _inputs(spec)
    task = _task(spec, cfg, tokenizer, prep)
    section = cfg[spec["stage"]]
    warmup, steps, _ = _steps(task, section["batch_size"], spec)
    if spec["stage"] == "mlm":
        dataset = TokenDataset(task.ids)
    else:
        noise = (task.input_mask_prob, tokenizer.mask_token_id, sorted(set(tokenizer.all_special_ids)))
        dataset = TokenDataset(task.train_ids, task.labels.numpy(), noise)
    settings = _settings(cfg, section, 1.0)
    args = training_arguments(Path(spec["scratch"]), settings, train_rows=len(dataset), keep_checkpoints=1)
    # Without eval_batch_size there is no evaluation (nor best-model selection) already.
    args = dataclasses.replace(
        args,
        max_steps=warmup + steps + 1,
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        **(_grouped() if spec.get("grouped") else {}),
    )
    clock = StepClock()
    model = task.model
    device = resolve_device(settings.device)
    set_attention(model, device)
    optimizer = adamw(model, settings, device)
    run = Trainer(
        model=model,
        args=args,
        data_collator=clock.wrap(_collator(spec, task, tokenizer)),
        train_dataset=dataset,
        processing_class=tokenizer,
        optimizers=(optimizer, None),
    )
    run.remove_callback(PrinterCallback)
    run.train()
    return clock.summary(warmup, steps)


def predict(spec: dict[str, Any]) -> dict[str, Any]:
    """The workflow's predict rule (newstopic.predict.predict_model_dir) on a parquet of titles."""
    from newstopic.predict import predict_model_dir

    cfg, _, prep = _inputs(spec)
    out = Path(spec["scratch"])
    settings = {"max_length": cfg["tokenizer"]["max_length"], "device": cfg["runtime"]["device"]}
    settings |= {k: cfg["predict"][k] for k in ("batch_size", "read_batch_rows")}
    rss_before = process_usage()["process_peak_rss_mb"]
    start = time.perf_counter()
    rows = predict_model_dir(
        prep / "model",
        spec["titles"],
        out / "probs.parquet",
        out / "submission.csv",
        settings=settings,
        threads=spec["threads"],
    )
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "peak_rss_before_mb": rss_before,
    }


MEASURES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "loop": loop,
    "trainer": trainer,
    "predict": predict,
}


def main(argv: list[str] | None = None) -> None:
    (spec_path,) = sys.argv[1:] if argv is None else argv
    spec = read_json(spec_path)
    if spec.get("cpus"):
        # Before torch's first parallel region: OpenMP's threads inherit this CPU set.
        os.sched_setaffinity(0, spec["cpus"])
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the predict rule's "Loading weights" bar
    torch.set_num_threads(spec["threads"])
    result = MEASURES[spec["kind"]](spec)
    result |= {"torch_threads": torch.get_num_threads(), **process_usage()}
    result["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    write_json(spec["result"], result)


if __name__ == "__main__":
    main()
