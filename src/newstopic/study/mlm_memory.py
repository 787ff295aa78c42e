"""Where MLM's memory goes: peak RSS and time per step of the real MLM stage for N steps, and
the oneDNN kernel cache that grows with every new input shape.

    python -m newstopic.study.mlm_memory mlm --steps 300 [--copies 2]   (needs ../shared)
    python -m newstopic.study.mlm_memory kernel --vary                  (seconds, no data)
    python -m newstopic.study.mlm_memory profile --steps 40             (where a step's time goes)
    python -m newstopic.study.mlm_memory levers --steps 100             (speed levers side by side)
    python -m newstopic.study.mlm_memory ce --steps 100                 (the LM head's loss alone)
    python -m newstopic.study.mlm_memory trained --steps 30 --model-dir runs/ablation/mlm/results/mlm/model

`mlm` trains the config's MLM (config/dacon.yaml: bf16, batch 128) on the real titles, the
corpus repeated `--copies` times, and prints the peak RSS of this process and the seconds per
step. `kernel` runs the LM head's shape (256 -> 12000) in bf16 with a fixed or a varying
number of rows and prints the RSS growth: oneDNN compiles and caches a kernel, with its packed
weights, per shape (capacity: ONEDNN_PRIMITIVE_CACHE_CAPACITY, default 1024). `profile` prints
the operators' share of an MLM step's CPU time; `levers` the seconds per batch of the MLM step
in bf16 and fp32, with and without dropout, SDPA or eager attention, fused or foreach AdamW,
a doubled batch and a compiled encoder.
Timings need the machine to themselves.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch


class PeakRss:
    """The process's peak RSS, sampled every 0.2 s in a thread."""

    def __init__(self) -> None:
        self.process, self.peak, self.running = psutil.Process(), 0, True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.2)

    def mb(self) -> float:
        return max(self.peak, self.process.memory_info().rss) / 2**20


def kernel_cache(steps: int, vary: bool) -> None:
    torch.set_num_threads(1)
    lin = torch.nn.Linear(256, 12000)
    rows = torch.randn(1000, 256)
    start_mb, start = psutil.Process().memory_info().rss / 2**20, time.perf_counter()
    for i in range(steps):
        x = rows[: 600 + (i % 150) if vary else 640].clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lin(x).float().sum().backward()
        lin.zero_grad(set_to_none=True)
    grown = psutil.Process().memory_info().rss / 2**20 - start_mb
    rows_kind = "varying" if vary else "fixed"
    per_step = (time.perf_counter() - start) / steps
    print(f"kernel: {steps} steps, {rows_kind} row count: RSS +{grown:.0f} MB, {per_step:.3f} s/step")


def cross_entropy_timing(steps: int, rows: int = 640, vocab: int = 12000) -> None:
    """The LM head's loss alone, forward and backward on bf16 logits of the MLM's shape (~40%
    of a batch's 1,600 positions, 12,000 tokens): torch's cross-entropy on a float32 copy
    against the encoder module's blockwise one."""
    from newstopic.encoder import SummedCrossEntropy

    torch.set_num_threads(2)
    logits = torch.randn(rows, vocab).mul_(3).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, vocab, (rows,))

    def torch_ce() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")

    def blockwise() -> torch.Tensor:
        return SummedCrossEntropy.apply(logits, labels)

    for name, loss_fn in [
        ("torch cross_entropy on float32", torch_ce),
        ("blockwise (the MLM's)", blockwise),
    ] * 2:
        for i in range(5 + steps):
            if i == 5:
                start = time.perf_counter()
            loss_fn().backward()
            logits.grad = None
        print(f"cross-entropy: {name:<32} {1000 * (time.perf_counter() - start) / steps:.1f} ms per step")


def mlm_setup(
    config_file: str,
    copies: int,
    data_dir: Path,
    arch: dict[str, Any] | None = None,
    mlm: dict[str, Any] | None = None,
) -> tuple:
    """The config, and the real MLM stage's task on the real titles (the corpus repeated
    `copies` times; `arch` overrides model.arch keys, `mlm` the mlm section's)."""
    from newstopic.config import load_config
    from newstopic.formats import read_titles
    from newstopic.preprocess import preprocess
    from newstopic.pretrain import mlm_task
    from newstopic.stages import StageFiles
    from newstopic.tokenization import train_wordpiece

    cfg = load_config(config_file)
    torch.set_num_threads(cfg["runtime"]["threads"])
    work = Path(tempfile.mkdtemp(prefix="mlm_memory."))
    splits = {s: work / f"{s}.parquet" for s in ("train", "valid", "test")}
    preprocess(
        data_dir / "train.csv", data_dir / "test.csv", splits, section=cfg["preprocess"], seed=cfg["seed"]
    )
    files = [str(p) for p in splits.values()] * copies
    tok = cfg["tokenizer"]
    tokenizer = train_wordpiece(
        read_titles(files[:3]), tok["vocab_size"], tok["min_frequency"], tok["max_length"]
    )
    model = dict(cfg["model"], arch=dict(cfg["model"]["arch"], **(arch or {})))
    stage = {"model": model, "train": dict(cfg["mlm"], **(mlm or {})), "max_length": tok["max_length"]}
    return cfg, work, mlm_task(StageFiles(files, "", "", "", ""), stage, tokenizer, cfg["seed"])


def mlm_steps(config_file: str, steps: int, copies: int, data_dir: Path) -> None:
    from newstopic.checkpoint import CheckpointDir
    from newstopic.training import LoopSettings, train

    cfg, work, task = mlm_setup(config_file, copies, data_dir)
    steps_per_epoch = -(-len(task.lengths) // cfg["mlm"]["batch_size"])
    section = dict(cfg["mlm"], epochs=steps / steps_per_epoch)
    runtime = dict(cfg["runtime"], checkpoint_every=10**9)
    settings = LoopSettings.from_config(section, runtime, cfg["seed"])
    before, rss = psutil.Process().memory_info().rss / 2**20, PeakRss()
    start = time.perf_counter()
    state = train(task, settings, CheckpointDir(work / "scratch", "mlm_memory", 1))
    rss.running = False
    per_step = (time.perf_counter() - start) / state.step
    print(
        f"mlm: {len(task.lengths)} titles, {state.step} steps, {per_step:.3f} s/step, "
        f"RSS {before:.0f} MB before training, peak {rss.mb():.0f} MB"
    )


def step_timer(
    task: Any, batch_size: int, precision: str, fused: bool = True, attention: str | None = None
) -> Callable[[int], float]:
    """`time(n)`: seconds per step of n plain training steps (AdamW, clipping, the config's
    autocast, the loop's attention kernel unless `attention` names another) on the task's
    length-grouped batches, after the steps already run."""
    from newstopic.data import length_grouped_batches
    from newstopic.device import set_attention
    from newstopic.distributed import Ranks
    from newstopic.training import ModelWithLoss, forward_backward

    batches = length_grouped_batches(task.lengths, batch_size, 0, 0)
    set_attention(task.model, torch.device("cpu"))
    if attention:
        task.model.set_attn_implementation(attention)
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-4, fused=fused)
    ranks = Ranks(torch.device("cpu"))
    step_model = ModelWithLoss(task.model, task.loss_fn)
    done = 0

    def one_step(i: int) -> None:  # the loop's step (training.train), without its bookkeeping
        rows = batches[i % len(batches)]
        forward_backward(step_model, task.make_batch(rows, i), len(rows), ranks, precision)
        torch.nn.utils.clip_grad_norm_(task.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed(n: int) -> float:
        nonlocal done
        start = time.perf_counter()
        for i in range(done, done + n):
            one_step(i)
        done += n
        return (time.perf_counter() - start) / n

    return timed


def profile_steps(config_file: str, steps: int, data_dir: Path) -> None:
    """Where an MLM step's time goes: the operators' share of the CPU time of `steps` steps."""
    from torch.profiler import ProfilerActivity, profile

    cfg, _, task = mlm_setup(config_file, 1, data_dir)
    task.model.train()
    timed = step_timer(task, cfg["mlm"]["batch_size"], cfg["runtime"]["precision"])
    timed(20)  # warm-up: oneDNN builds its kernels for the first shapes
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        per_step = timed(steps)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"profile: {steps} steps, {per_step:.3f} s/step (profiled); share of CPU time by operator:")
    for e in events[:15]:
        print(f"  {e.key:<45} {100 * e.self_cpu_time_total / total:5.1f} %  {e.count // steps:5d} calls/step")


# Variants of the MLM step tried as speed levers: (name, model.arch overrides, mlm overrides,
# options). "As configured" is the loop's step: fused AdamW, eager attention on the CPU.
LEVERS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("as configured", {}, {}, {}),
    ("fp32 (no bf16 autocast)", {}, {}, {"precision": "fp32"}),
    ("no dropout (mlm.dropout 0)", {}, {"dropout": 0.0}, {}),
    ("dropout 0.1 (model.arch's)", {}, {"dropout": 0.1}, {}),
    ("no dropout, SDPA attention", {}, {"dropout": 0.0}, {"attention": "sdpa"}),
    ("dropout 0.1, SDPA attention", {}, {"dropout": 0.1}, {"attention": "sdpa"}),
    ("AdamW unfused (foreach)", {}, {}, {"fused": False}),
    ("batch x2 (time per configured batch)", {}, {}, {"batch_factor": 2}),
    ("torch.compile(encoder, dynamic=True)", {}, {}, {"compile": True}),
]


def levers(config_file: str, steps: int, data_dir: Path) -> None:
    """Seconds per configured batch of the MLM step under each lever, on the same machine."""
    for name, arch, mlm, opts in LEVERS:
        cfg, _, task = mlm_setup(config_file, 1, data_dir, arch, mlm)
        task.model.train()
        factor = opts.get("batch_factor", 1)
        precision = opts.get("precision", cfg["runtime"]["precision"])
        timed = step_timer(
            task,
            cfg["mlm"]["batch_size"] * factor,
            precision,
            opts.get("fused", True),
            opts.get("attention"),
        )
        if opts.get("compile"):
            task.model.bert = torch.compile(task.model.bert, dynamic=True)
        start = time.perf_counter()
        timed(30)  # warm-up (compilation included)
        warm = time.perf_counter() - start
        per_batch, size = timed(steps) / factor, cfg["mlm"]["batch_size"]
        print(f"lever {name:<40} {per_batch:.3f} s per batch of {size} (warm-up {warm:.0f} s)")


def trained_steps(config_file: str, steps: int, data_dir: Path, model_dir: Path) -> None:
    """Seconds per MLM step from a trained encoder's weights (`model_dir`, a finished
    mlm_pretrain) and from fresh ones, each with and without flushing denormal floats: does a
    trained model's step cost more?"""
    from transformers import AutoModelForMaskedLM

    cfg, _, task = mlm_setup(config_file, 1, data_dir)
    weights = {
        "trained": AutoModelForMaskedLM.from_pretrained(model_dir).state_dict(),
        "fresh": {k: v.clone() for k, v in task.model.state_dict().items()},
    }
    for name in ("trained", "fresh", "trained"):
        task.model.load_state_dict(weights[name])
        task.model.train()
        timed = step_timer(task, cfg["mlm"]["batch_size"], cfg["runtime"]["precision"])
        timed(15)  # warm-up
        for flush in (False, True, False, True):
            torch.set_flush_denormal(flush)
            print(f"trained: {name:8} flush_denormal={flush!s:5} {timed(steps):.3f} s/step", flush=True)
        torch.set_flush_denormal(False)


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("what", choices=["mlm", "kernel", "profile", "levers", "trained", "ce"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--vary", action="store_true", help="kernel: a different row count each step")
    parser.add_argument("--copies", type=int, default=1, help="mlm: the corpus repeated this often")
    parser.add_argument("--configfile", default="config/dacon.yaml")
    parser.add_argument("--data", default="../shared/data/ynat", help="mlm: train.csv and test.csv")
    parser.add_argument(
        "--model-dir", default="runs/ablation/mlm/results/mlm/model", help="trained: its weights"
    )
    args = parser.parse_args(argv)
    if args.what == "kernel":
        kernel_cache(args.steps, args.vary)
    elif args.what == "profile":
        profile_steps(args.configfile, args.steps, Path(args.data))
    elif args.what == "levers":
        levers(args.configfile, args.steps, Path(args.data))
    elif args.what == "ce":
        cross_entropy_timing(args.steps)
    elif args.what == "trained":
        trained_steps(args.configfile, args.steps, Path(args.data), Path(args.model_dir))
    else:
        mlm_steps(args.configfile, args.steps, args.copies, Path(args.data))


if __name__ == "__main__":
    main()
