"""Where MLM's memory goes: peak RSS and time per step of the real MLM stage for N steps, and
the oneDNN kernel cache that grows with every new input shape.

    python -m newstopic.study.mlm_memory mlm --steps 300 [--copies 2]   (needs ../shared)
    python -m newstopic.study.mlm_memory kernel --vary                  (seconds, no data)

`mlm` trains the config's MLM (config/dacon.yaml: bf16, batch 128) on the real titles, the
corpus repeated `--copies` times, and prints the peak RSS of this process and the seconds per
step. `kernel` runs the LM head's shape (256 -> 12000) in bf16 with a fixed or a varying
number of rows and prints the RSS growth: oneDNN compiles and caches a kernel, with its packed
weights, per shape (capacity: ONEDNN_PRIMITIVE_CACHE_CAPACITY, default 1024).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

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


def mlm_steps(config_file: str, steps: int, copies: int, data_dir: Path) -> None:
    from newstopic.checkpoint import CheckpointDir
    from newstopic.config import load_config
    from newstopic.formats import read_titles
    from newstopic.preprocess import preprocess
    from newstopic.pretrain import mlm_task
    from newstopic.stages import StageFiles
    from newstopic.tokenization import train_wordpiece
    from newstopic.training import LoopSettings, train

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
    stage = {"model": cfg["model"], "train": cfg["mlm"], "max_length": tok["max_length"]}
    task = mlm_task(StageFiles(files, "", "", "", ""), stage, tokenizer, cfg["seed"])
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


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("what", choices=["mlm", "kernel"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--vary", action="store_true", help="kernel: a different row count each step")
    parser.add_argument("--copies", type=int, default=1, help="mlm: the corpus repeated this often")
    parser.add_argument("--configfile", default="config/dacon.yaml")
    parser.add_argument("--data", default="../shared/data/ynat", help="mlm: train.csv and test.csv")
    args = parser.parse_args(argv)
    if args.what == "kernel":
        kernel_cache(args.steps, args.vary)
    else:
        mlm_steps(args.configfile, args.steps, args.copies, Path(args.data))


if __name__ == "__main__":
    main()
