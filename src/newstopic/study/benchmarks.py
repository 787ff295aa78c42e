"""The benchmark suite of issue 16: the hand-written loop against the Hugging Face Trainer at its
best, prediction at scale, Snakemake's start-up and a busy CPU, side by side in one run.

    python -m newstopic.study.benchmarks [--steps 100] [--only finetune mlm ...] [--quick]

Every training measurement uses the same model (config/dacon.yaml: model.arch, a WordPiece
trained on the real titles as the workflow's build_tokenizer trains it), data, batch size,
precision (runtime.precision) and threads (torch.set_num_threads), each in a process of its own
(newstopic.study.bench_worker):

    finetune   samples/s: the loop (length-grouped batches, dynamic padding) vs the Trainer
               with group_by_length and bf16 vs the Trainer padding every batch to 128
               (run_classification.py's default)
    mlm        samples/s: the loop (LM head on masked positions only) vs the Trainer with
               DataCollatorForLanguageModeling (same mask_prob, length-grouped batches)
    predict    the predict rule (newstopic.predict) on 100k and 1M synthetic titles (real word
               counts, real words at their real frequencies): rows/s and peak RSS per size
    snakemake  wall time of `snakemake -n` on the real-data DAG (in a temporary work directory)
               and of a rerun with nothing to do (a finished run's directory, --done-workdir)
    busy       MLM seconds per step with a busy-loop process on one of the job's cores, with the
               current settings and with OMP_WAIT_POLICY=PASSIVE

Figures are printed with the issue's targets (PASS/MISS; nothing is asserted) and written to
--out (Markdown) and the JSON beside it. Timings need the machine to itself: run it alone.
`--quick` is a functional check (a small encoder, a few steps, 500 and 5,000 rows; its figures
mean nothing): a few minutes, most of it the start-up of its twelve processes.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from newstopic.atomic import write_json, write_text
from newstopic.formats import read_json
from newstopic.resources import GOMP_SPINCOUNT
from newstopic.study.bench_report import check_targets, target_summary, to_markdown
from newstopic.study.bench_worker import mlm_text_files
from newstopic.study.machine import bf16_matmul_unit, cpu_model

SECTIONS = ("finetune", "mlm", "predict", "snakemake", "busy")
PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "snakemake")
STATIC_LENGTH = 128  # run_classification.py's max_seq_length default, padding="max_length"
BUSY_LOOP = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@dataclass
class Sizes:
    steps: int = 100
    warmup: int = 10
    busy_steps: int = 30
    predict_rows: tuple[int, ...] = (100_000, 1_000_000)


QUICK = Sizes(steps=3, warmup=2, busy_steps=3, predict_rows=(500, 5_000))
# --quick trains and predicts with this encoder instead of model.arch: the check is that every
# path runs, and most of its time is the workers' start-up and the first steps' kernel builds.
QUICK_ARCH = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}


@dataclass
class Bench:
    """One benchmark run: the workflow, its config, the data, the sizes and a scratch directory."""

    repo: Path
    configfile: Path
    data: Path
    work: Path
    sizes: Sizes
    threads: int
    done_workdir: Path | None = None
    cfg: dict[str, Any] = field(default_factory=dict)
    _n: int = 0

    @property
    def prep(self) -> Path:
        return self.work / "prep"

    def worker(self, kind: str, env: dict[str, str | None] | None = None, **spec: Any) -> dict[str, Any]:
        """One measurement (bench_worker) in a fresh process; its result."""
        self._n += 1
        scratch = self.work / f"run{self._n}"
        scratch.mkdir()
        spec |= {"kind": kind, "prep": str(self.prep), "threads": self.threads, "scratch": str(scratch)}
        spec |= {"result": str(scratch / "result.json")}
        write_json(scratch / "spec.json", spec)
        cmd = [sys.executable, "-m", "newstopic.study.bench_worker", str(scratch / "spec.json")]
        subprocess.run(cmd, env=child_env(env), check=True)
        return read_json(scratch / "result.json")


def child_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """This environment, the package of this checkout importable, offline, plus `extra` (a
    None value removes the variable)."""
    import newstopic

    env = dict(os.environ)
    src = str(Path(newstopic.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for key, value in (extra or {}).items():  # None: unset
        env.pop(key, None) if value is None else env.update({key: value})
    return env


# --- inputs -----------------------------------------------------------------------------------
def prepare(bench: Bench) -> None:
    """The workflow's first steps on the data: preprocess (cleaned splits) and build_tokenizer
    (on the MLM text: train + test + valid titles); the validated config for the workers."""
    from newstopic.formats import read_titles
    from newstopic.preprocess import preprocess
    from newstopic.tokenization import build_tokenizer, save_tokenizer

    cfg = bench.cfg
    splits = {s: bench.prep / f"{s}.parquet" for s in ("train", "valid", "test")}
    preprocess(
        bench.data / "train.csv", bench.data / "test.csv", splits, section=cfg["preprocess"], seed=cfg["seed"]
    )
    texts = read_titles(mlm_text_files(bench.prep, cfg))
    save_tokenizer(build_tokenizer(cfg["tokenizer"], cfg["model"], texts), bench.prep / "tokenizer")
    write_json(bench.prep / "config.json", cfg)


def synthetic_titles(real: Sequence[str], n: int, seed: int) -> list[str]:
    """`n` titles drawn like `real`: each a real title's word count of words drawn at their
    frequency in the real titles (so their token lengths are distributed much like the real
    ones', the cost of prediction)."""
    rng = np.random.default_rng(seed)
    split = [t.split() for t in real]
    counts = collections.Counter(w for words in split for w in words)
    vocab = np.array(list(counts), dtype=object)  # object: pointers, not fixed-width strings
    freq = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    lengths = rng.choice(np.array([len(w) for w in split if w]), size=n)
    words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=freq / freq.sum())]
    ends = np.cumsum(lengths)
    return [" ".join(words[end - k : end]) for end, k in zip(ends, lengths, strict=True)]


def write_titles(path: Path, titles: Sequence[str]) -> None:
    """A test-split-like parquet (index, title), what the predict rule reads."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"index": pa.array(np.arange(len(titles)), pa.int64()), "title": pa.array(titles)})
    pq.write_table(table, path)


# --- the sections -----------------------------------------------------------------------------
def _say(what: str, r: dict[str, Any]) -> None:
    print(
        f"  {what}: {r['samples_per_s']:.1f} samples/s, {r['s_per_step']:.4f} s/step over {r['steps']} "
        f"steps ({r['positions_per_token']:.2f} positions per real token, peak RSS "
        f"{r['process_peak_rss_mb']:.0f} MB)",
        flush=True,
    )


def run_finetune(bench: Bench) -> dict[str, Any]:
    s, out = bench.sizes, {}
    common = {"stage": "finetune", "steps": s.steps, "warmup": s.warmup}
    runs = {
        "loop": ("loop", {}),
        "trainer_grouped": ("trainer", {"grouped": True}),
        "trainer_static": ("trainer", {"static_length": STATIC_LENGTH, "positions": STATIC_LENGTH}),
    }
    for name, (kind, extra) in runs.items():
        out[name] = bench.worker(kind, **common, **extra)
        _say(name, out[name])
    return out | {"batch_size": bench.cfg["finetune"]["batch_size"], "static_length": STATIC_LENGTH}


def run_mlm(bench: Bench) -> dict[str, Any]:
    s, out = bench.sizes, {}
    common = {"stage": "mlm", "steps": s.steps, "warmup": s.warmup}
    for name, kind in (("loop", "loop"), ("trainer", "trainer")):
        out[name] = bench.worker(kind, **common, grouped=True)
        _say(name, out[name])
    mlm = bench.cfg["mlm"]
    return out | {"batch_size": mlm["batch_size"], "mask_prob": mlm["mask_prob"]}


def run_predict(bench: Bench) -> dict[str, Any]:
    """A random-init classifier saved as the workflow saves one (speed and memory do not depend
    on the weights), then the predict rule per size, each in its own process."""
    from transformers.utils import logging as hf_logging

    from newstopic.atomic import save_pretrained_dir
    from newstopic.finetune import initial_classifier
    from newstopic.formats import read_titles
    from newstopic.tokenization import load_tokenizer

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar among the figures
    cfg, prep = bench.cfg, bench.prep
    tokenizer = load_tokenizer(prep / "tokenizer")
    model = initial_classifier(None, cfg["model"], len(tokenizer), tokenizer.pad_token_id)
    save_pretrained_dir(prep / "model", model, tokenizer)
    real = read_titles([prep / f"{s}.parquet" for s in ("train", "valid", "test")])
    titles = synthetic_titles(real, max(bench.sizes.predict_rows), cfg["seed"])
    out: dict[str, Any] = {"sizes": []}
    for rows in bench.sizes.predict_rows:
        path = prep / f"titles_{rows}.parquet"
        write_titles(path, titles[:rows])
        r = bench.worker("predict", titles=str(path))
        print(
            f"  predict {rows} rows: {r['rows_per_s']:.0f} rows/s ({r['seconds']:.1f} s), "
            f"peak RSS {r['process_peak_rss_mb']:.0f} MB",
            flush=True,
        )
        out["sizes"].append(r)
    return out | {
        "batch_size": cfg["predict"]["batch_size"],
        "read_batch_rows": cfg["predict"]["read_batch_rows"],
    }


def dry_run(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Wall time of `cmd` (a `snakemake -n`, the interpreter's start-up included) and the
    number of jobs it would run."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    found = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
    return {"seconds": round(seconds, 2), "jobs": int(found.group(1)) if found else 0}


def run_snakemake(bench: Bench) -> dict[str, Any]:
    """`snakemake -n` twice in a fresh work directory (the whole DAG to run: nothing is written
    but .snakemake/), and once in a finished run's directory when there is one."""
    from newstopic.study.runs import Runner

    runner = Runner(bench.repo, [bench.configfile], cores=bench.threads)
    workdir = bench.work / "snakemake"
    workdir.mkdir()
    topic_dict = bench.data / "topic_dict.csv"
    data = {"train": bench.data / "train.csv", "test": bench.data / "test.csv"}
    data["topic_dict"] = topic_dict if topic_dict.is_file() else None
    overlay = workdir / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump({"data": {k: str(v.resolve()) if v else None for k, v in data.items()}})
    )
    cmd = [*runner.command(workdir, [overlay]), "--dry-run"]
    out = {"full_dag": dry_run(cmd, workdir), "full_dag_again": dry_run(cmd, workdir)}
    done = bench.done_workdir
    if done is not None and (done / "overlay.yaml").is_file():
        out["done_run"] = dry_run([*runner.command(done, [done / "overlay.yaml"]), "--dry-run"], done)
        out["done_workdir"] = str(done)
    for name in ("full_dag", "full_dag_again", "done_run"):
        if name in out:
            print(
                f"  snakemake -n ({name}): {out[name]['seconds']:.2f} s, {out[name]['jobs']} jobs", flush=True
            )
    return out


# OpenMP settings compared with a busy core: libgomp's default (threads spin ~300k iterations
# for work), the workflow's (the Snakefile sets GOMP_SPINCOUNT for every job) and PASSIVE
# (threads sleep at once). Each name's environment; None removes the variable.
OMP_SETTINGS: dict[str, dict[str, str | None]] = {
    "default": {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None},
    "workflow": {"GOMP_SPINCOUNT": GOMP_SPINCOUNT, "OMP_WAIT_POLICY": None},
    "passive": {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"},
    # Spin counts in between: how much of the idle speed a shorter spin keeps.
    "spin1k": {"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": None},
    "spin10k": {"GOMP_SPINCOUNT": "10000", "OMP_WAIT_POLICY": None},
}


def run_busy(bench: Bench) -> dict[str, Any]:
    """MLM steps with the job's CPUs to itself and with a busy-loop process on the first of them,
    under each of OMP_SETTINGS (read when the OpenMP runtime loads: each in its own process).
    Results are keyed `<setting>` (idle) and `<setting>_busy`."""
    cpus = sorted(os.sched_getaffinity(0))[: bench.threads]
    out: dict[str, Any] = {"cpus": cpus, "competitor_cpu": cpus[0], "settings": OMP_SETTINGS}
    # Fine-tuning too: its ops are smaller than MLM's, so a thread's wake-up costs it more.
    for stage, prefix in (("mlm", ""), ("finetune", "finetune_")):
        for setting, env in OMP_SETTINGS.items():
            for busy in (False, True):
                name = f"{prefix}{setting}_busy" if busy else f"{prefix}{setting}"
                competitor = (
                    subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(cpus[0])]) if busy else None
                )
                try:
                    steps = bench.sizes.busy_steps
                    r = bench.worker("loop", env, stage=stage, steps=steps, warmup=2, cpus=cpus)
                finally:
                    if competitor is not None:
                        competitor.kill()
                        competitor.wait()
                print(
                    f"  {stage} {name}: {r['s_per_step']:.3f} s/step (median {r['median_s_per_step']:.3f})",
                    flush=True,
                )
                out[name] = r
    return out


RUNNERS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "finetune": run_finetune,
    "mlm": run_mlm,
    "predict": run_predict,
    "snakemake": run_snakemake,
    "busy": run_busy,
}


def machine_info(repo: Path, threads: int) -> dict[str, Any]:
    """The CPU, the versions, the threads and the load when the run started."""
    import torch

    commit = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return {
        "cpu": cpu_model(),
        "bf16_matmul_unit": bf16_matmul_unit(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        **{name: importlib.metadata.version(name) for name in PACKAGES},
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        # Before any measurement: other work on the machine (later ones include our own).
        "load_average_1m": round(os.getloadavg()[0], 2),
        "git": commit.stdout.strip() or None,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--steps", type=int, default=None, help="measured training steps (default 100)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="steps before the measured ones (default 10)"
    )
    parser.add_argument(
        "--busy-steps", type=int, default=None, help="measured MLM steps per busy variant (30)"
    )
    parser.add_argument(
        "--predict-rows", type=int, nargs="+", default=None, help="predict sizes (default 100000 1000000)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a functional check, not figures")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"sections to run (default all: {' '.join(SECTIONS)})",
    )
    parser.add_argument("--out", default="docs/benchmarks.md", help="Markdown; the JSON goes beside it")
    parser.add_argument("--configfile", default="config/dacon.yaml")
    parser.add_argument("--data", default="../shared/data/ynat", help="train.csv, test.csv (topic_dict.csv)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: runtime.threads)")
    parser.add_argument(
        "--done-workdir",
        default="runs/ablation/mlm",
        help="a finished run of the config (with its overlay.yaml, as the study tools leave it) for "
        "the no-op `snakemake -n`; skipped when absent",
    )
    parser.add_argument("--repo", default=".", help="the workflow's repository (default: here)")
    args = parser.parse_args(argv)
    if args.only != list(SECTIONS):
        args.only = [s for s in SECTIONS if s in args.only]  # the report's order, each once
    return args


def sizes_of(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else Sizes()
    return Sizes(
        steps=args.steps or base.steps,
        warmup=base.warmup if args.warmup is None else args.warmup,
        busy_steps=args.busy_steps or base.busy_steps,
        predict_rows=tuple(args.predict_rows or base.predict_rows),
    )


def run(bench: Bench, sections: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each section's figures, and per section its wall seconds or the error that stopped it (a
    section that fails does not cost the others' figures of a long run)."""
    if set(sections) - {"snakemake"}:
        print("preparing: preprocess and tokenizer on", bench.data, flush=True)
        prepare(bench)
    results, seconds, errors = {}, {}, {}
    for name in sections:
        print(f"{name}:", flush=True)
        start = time.perf_counter()
        try:
            results[name] = RUNNERS[name](bench)
        except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"  {name} failed: {errors[name]}", flush=True)
        seconds[name] = round(time.perf_counter() - start, 1)
    return results, {"section_seconds": seconds, "errors": errors}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from newstopic.config import load_config

    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m newstopic.study.benchmarks " + shlex.join(given)
    data = Path(args.data).resolve()
    if not (data / "train.csv").is_file() or not (data / "test.csv").is_file():
        sys.exit(f"--data {args.data}: train.csv and test.csv not found there")
    cfg = load_config(args.configfile)
    if args.quick:
        cfg["model"]["arch"] |= QUICK_ARCH
    threads = args.threads or cfg["runtime"]["threads"]
    done = Path(args.done_workdir).resolve() if args.done_workdir else None
    with tempfile.TemporaryDirectory(prefix="benchmarks.") as tmp:
        bench = Bench(
            Path(args.repo).resolve(),
            Path(args.configfile).resolve(),
            data,
            Path(tmp),
            sizes_of(args),
            threads,
        )
        bench.cfg, bench.done_workdir = cfg, done
        machine = machine_info(bench.repo, threads)
        results, timing = run(bench, args.only)
    report = {
        "command": command,
        "quick": args.quick,
        "machine": machine,
        "model": {
            **{
                k: cfg["model"]["arch"][k]
                for k in ("hidden_size", "num_hidden_layers", "max_position_embeddings")
            },
            "vocab_size": cfg["tokenizer"]["vocab_size"],
            "tokenizer_max_length": cfg["tokenizer"]["max_length"],
            "precision": cfg["runtime"]["precision"],
        },
        "targets": check_targets(results),
        "results": results,
        **timing,
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), report)
    write_text(out, to_markdown(report))
    print(f"targets:\n{target_summary(report['targets'])}\nwritten: {out}, {out.with_suffix('.json')}")
    return report


if __name__ == "__main__":
    main()
