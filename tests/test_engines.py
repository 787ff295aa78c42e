"""The two training engines (hand-written loop, Hugging Face Trainer): both train the demo
well, the `compare_engines` target tabulates them, a model from either loads with
`NewsTopicClassifier.from_pretrained` and predicts the same after a round trip, and the
hf engine resumes from its scratch checkpoint after being killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow, run_snakemake, snakemake_env

from newstopic.config import validate_config
from newstopic.errors import ConfigError, InputError
from newstopic.formats import read_benchmark, read_split
from newstopic.hf_engine import MARKER, latest_checkpoint
from newstopic.metrics import classification_metrics
from newstopic.model import NewsTopicClassifier
from newstopic.predict import predict_proba
from newstopic.study.compare import padded_positions, write_comparison
from newstopic.tokenization import load_tokenizer

CHANCE = 1 / 7
# MLM shortened to keep the test quick; fine-tuning as in the demo config.
COMPARE_OVERLAY = {"mlm": {"epochs": 1}}


# --- fast unit tests ------------------------------------------------------------------------
def test_engine_key_is_validated() -> None:
    assert validate_config({})["engine"] == "loop"
    assert validate_config({"engine": "hf"})["engine"] == "hf"
    with pytest.raises(ConfigError, match=r"key 'engine' must be one of \['loop', 'hf'\], got 'trainer'"):
        validate_config({"engine": "trainer"})


def _checkpoint(root: Path, step: int, marker: dict | None) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if marker is not None:
        (path / MARKER).write_text(json.dumps(marker))
    return path


def test_latest_checkpoint_skips_incomplete_and_foreign(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 10, {"fingerprint": "run-a", "train_seconds": 1.5})
    good = _checkpoint(tmp_path, 20, {"fingerprint": "run-a", "train_seconds": 3.0})
    cut_short = _checkpoint(tmp_path, 30, None)  # killed while the Trainer was saving
    foreign = _checkpoint(tmp_path, 25, {"fingerprint": "run-b", "train_seconds": 9.0})

    assert latest_checkpoint(tmp_path, "run-a") == (good, 3.0)
    # Removed, so the Trainer's checkpoint rotation never counts them.
    assert not cut_short.exists() and not foreign.exists()
    assert latest_checkpoint(tmp_path / "absent", "run-a") == (None, 0.0)
    assert latest_checkpoint(tmp_path, "run-c") == (None, 0.0)


def test_compare_rejects_a_bad_benchmark_file(tmp_path: Path) -> None:
    bench = tmp_path / "finetune_hf.tsv"
    bench.write_text("h:m:s\tmax_rss\n0:00:01\t100\n")
    with pytest.raises(InputError, match=r"finetune_hf\.tsv: missing column 's'"):
        read_benchmark(bench)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"history": [], "steps": 3}))
    usage = tmp_path / "usage.json"
    usage.write_text(json.dumps({"process_cpu_seconds": 1.0, "process_peak_rss_mb": 100.0}))
    bench.write_text("s\tmax_rss\tcpu_time\n1.0\t100\t0.9\n")
    with pytest.raises(InputError, match=r"metrics\.json: missing key 'train_rows'"):
        write_comparison(
            [("finetune", "hf", str(metrics), str(usage), str(bench), 1.0)],
            tmp_path / "a.csv",
            tmp_path / "a.md",
        )
    assert not (tmp_path / "a.csv").exists()


def test_padded_positions() -> None:
    same = np.full(100, 12)
    assert padded_positions(same, 8, seed=0) == {"loop": 1.0, "hf": 1.0}
    lengths = np.random.default_rng(0).integers(3, 40, size=2000)
    pos = padded_positions(lengths, 32, seed=0)
    # Length bucketing leaves little padding; random batches pad to their longest title.
    assert 1.0 <= pos["loop"] < 1.1 < pos["hf"]


# --- compare_engines on the demo ------------------------------------------------------------
@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wf = copy_workflow(tmp_path_factory.mktemp("compare") / "wf")
    run_snakemake(wf, "compare_engines", config=COMPARE_OVERLAY)
    return wf


@pytest.mark.e2e
def test_compare_engines_table(compared: Path) -> None:
    out = compared / "results" / "compare_engines"
    table = pd.read_csv(out / "engines.csv")
    assert list(zip(table["stage"], table["engine"], strict=True)) == [
        ("mlm", "loop"),
        ("mlm", "hf"),
        ("finetune", "loop"),
        ("finetune", "hf"),
    ]
    fine = table[table["stage"] == "finetune"].set_index("engine")
    vocab = len(load_tokenizer(compared / "results" / "tokenizer"))
    for engine in ("loop", "hf"):
        metrics = json.loads((out / engine / "metrics.json").read_text())
        assert metrics["engine"] == engine
        assert metrics["valid_accuracy"] > 0.6 > 4 * CHANCE, metrics  # well above chance
        assert fine.loc[engine, "valid_accuracy"] == pytest.approx(metrics["valid_accuracy"])
        mlm = json.loads((out / engine / "mlm" / "metrics.json").read_text())
        # Below a uniform guess over the vocabulary: the MLM learned something.
        assert mlm["engine"] == engine and mlm["history"][-1]["train_loss"] < np.log(vocab) - 0.5
    for col in ("train_samples_per_s", "wall_seconds", "cpu_seconds", "peak_rss_mb"):
        assert (table[col] > 0).all(), col
    md = (out / "engines.md").read_text()
    assert "| finetune | hf |" in md and re.search(r"- finetune: loop \d+ vs hf \d+ training samples/s", md)
    assert re.search(r"- mlm LM-head positions per real token: loop 0\.150 \(masked only\)", md)
    # Each run has its own log and benchmark; the scratch checkpoints are cleared on success.
    for name in ("mlm_loop", "mlm_hf", "finetune_loop", "finetune_hf"):
        assert (compared / "logs" / "compare_engines" / f"{name}.log").is_file()
        assert read_benchmark(compared / "benchmarks" / "compare_engines" / f"{name}.tsv")["wall_s"] > 0
    assert not list((compared / "scratch").rglob("*.safetensors"))


@pytest.mark.e2e
def test_both_engines_write_the_same_format(compared: Path) -> None:
    out = compared / "results" / "compare_engines"
    loop = json.loads((out / "loop" / "metrics.json").read_text())
    hf = json.loads((out / "hf" / "metrics.json").read_text())
    assert loop.keys() == hf.keys()
    assert loop["steps"] == hf["steps"] and loop["train_rows"] == hf["train_rows"]
    # Both fine-tuned the same encoder: the loop's MLM output.
    assert loop["encoder_source"] == hf["encoder_source"] == "results/compare_engines/loop/mlm/model"
    assert [h["step"] for h in loop["history"]] == [h["step"] for h in hf["history"]]
    assert loop["history"][0].keys() == hf["history"][0].keys()
    assert sorted(p.name for p in (out / "loop" / "model").iterdir()) == sorted(
        p.name for p in (out / "hf" / "model").iterdir()
    )


@pytest.mark.e2e
@pytest.mark.parametrize("engine", ["loop", "hf"])
def test_model_round_trip_predicts_identically(compared: Path, engine: str, tmp_path: Path) -> None:
    model_dir = compared / "results" / "compare_engines" / engine / "model"
    metrics = json.loads((model_dir.parent / "metrics.json").read_text())
    tokenizer = load_tokenizer(model_dir)
    valid = read_split(compared / "results" / "data" / "valid.parquet", labeled=True)
    ids = tokenizer(valid["title"].tolist(), truncation=True, max_length=32)["input_ids"]

    model = NewsTopicClassifier.from_pretrained(model_dir)
    probs = predict_proba(model, ids, tokenizer.pad_token_id, batch_size=64)
    # The valid metrics recorded in training (by the in-memory model, before it was saved)
    # are those of the loaded model.
    again = classification_metrics(valid["topic_idx"].to_numpy(), probs)
    assert again["valid_accuracy"] == metrics["valid_accuracy"]
    assert again["valid_loss"] == pytest.approx(metrics["valid_loss"], rel=1e-4)

    model.save_pretrained(tmp_path / "copy")
    reloaded = NewsTopicClassifier.from_pretrained(tmp_path / "copy")
    np.testing.assert_array_equal(predict_proba(reloaded, ids, tokenizer.pad_token_id, 64), probs)


# --- hf engine: resume after a kill ---------------------------------------------------------
HF_OVERLAY = {"engine": "hf", "mlm": {"enabled": False}}


def _start_finetune(wf: Path) -> subprocess.Popen:
    """`snakemake finetune` afresh, in a session of its own (so its job can be signalled or killed)."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "finetune", "--forcerun", "finetune"]
    cmd += ["--configfile", "config/config.yaml", "test_overlay.yaml"]  # run_snakemake wrote it
    return subprocess.Popen(
        cmd,
        cwd=wf,
        env=snakemake_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_after_first_checkpoint(wf: Path) -> None:
    """Start `snakemake finetune` afresh; SIGKILL it and its job once an epoch checkpoint exists."""
    proc = _start_finetune(wf)
    try:
        deadline = time.monotonic() + 600
        while not list((wf / "scratch" / "finetune" / "hf").glob(f"checkpoint-*/{MARKER}")):
            assert proc.poll() is None, "snakemake finetune ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 600 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the session started above: snakemake and its job
        proc.wait()
    assert not (wf / "results" / "finetune" / "metrics.json").exists(), "killed too late"


@pytest.mark.e2e
def test_hf_engine_resumes_after_kill(workflow_copy: Path) -> None:
    wf = workflow_copy
    metrics_path = wf / "results" / "finetune" / "metrics.json"
    # Uninterrupted first, in the same workflow copy (the same data files and tokenizer).
    run_snakemake(wf, "finetune", config=HF_OVERLAY)
    straight = json.loads(metrics_path.read_text())

    _kill_after_first_checkpoint(wf)
    run_snakemake(wf, "--unlock", config=HF_OVERLAY)  # a SIGKILLed snakemake leaves its lock
    # finetune resumed, then predict on its model.
    run_snakemake(wf, "--rerun-incomplete", "results/finetune/submission.csv", config=HF_OVERLAY)
    log = (wf / "logs" / "finetune.log").read_text()
    resumed = re.search(r"hf engine: resumed at step (\d+) from \S+checkpoint-\d+", log)
    assert resumed and int(resumed.group(1)) > 0, log[-2000:]
    submission = pd.read_csv(wf / "results" / "finetune" / "submission.csv")
    assert len(submission) == len(pd.read_csv(wf / "data" / "demo" / "demo_test.csv"))

    again = json.loads(metrics_path.read_text())
    assert again["valid_accuracy"] > 4 * CHANCE
    # The Trainer restores weights, optimizer, scheduler and RNG states, and its sampler is
    # seeded per epoch: on the same CPU and thread count the resumed run is the same run.
    assert again["history"] == straight["history"]
    assert again["steps"] == straight["steps"] and again["best_epoch"] == straight["best_epoch"]
    assert not list((wf / "scratch").rglob("checkpoint-*"))  # cleared on success


def _signal_the_job_mid_training(wf: Path, sig: int) -> tuple[int, str]:
    """Start `snakemake finetune` afresh; send `sig` to its training job (not to snakemake)
    once the job has logged a training step. Returns snakemake's exit code and the job's log."""
    log = wf / "logs" / "finetune.log"
    log.unlink(missing_ok=True)
    proc = _start_finetune(wf)
    try:
        deadline = time.monotonic() + 600
        while not (log.is_file() and re.search(r"step \d+/\d+ epoch", log.read_text())):
            assert proc.poll() is None, "snakemake finetune ended before a training step"
            assert time.monotonic() < deadline, "no training step after 600 s"
            time.sleep(0.02)
        # The job: the python process running the rule's script, in snakemake's session.
        found = subprocess.run(
            ["pgrep", "-s", str(proc.pid), "-f", r"python.*\.train\.py"], capture_output=True, text=True
        )
        jobs = [int(p) for p in found.stdout.split()]
        assert jobs, "the training job's process was not found"
        for pid in jobs:
            os.kill(pid, sig)
        return proc.wait(timeout=600), log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.e2e
def test_hf_engine_stops_at_the_time_limit_warning_and_resumes_at_that_step(workflow_copy: Path) -> None:
    """SIGUSR1 (Slurm's warning before a time limit) stops the hf engine as it stops the loop:
    a checkpoint at the end of the step it came in, one stop line, and a rerun resumes at that
    step (so under Slurm the job requeues without spending a retry, newstopic.slurm)."""
    wf = workflow_copy
    metrics_path = wf / "results" / "finetune" / "metrics.json"
    run_snakemake(wf, "finetune", config=HF_OVERLAY)
    straight = json.loads(metrics_path.read_text())

    code, log = _signal_the_job_mid_training(wf, signal.SIGUSR1)
    assert code != 0 and not metrics_path.exists()
    stop = re.search(
        r"SIGUSR1 received: stopped at step (\d+) of (\d+) with a checkpoint in (\S+); rerun to resume", log
    )
    assert stop, log[-2000:]
    step, total = int(stop.group(1)), int(stop.group(2))
    assert 0 < step < total == straight["steps"]
    assert (wf / "scratch" / "finetune" / "hf" / f"checkpoint-{step}" / MARKER).is_file()

    run_snakemake(wf, "--rerun-incomplete", "finetune", config=HF_OVERLAY)
    log = (wf / "logs" / "finetune.log").read_text()
    assert re.search(rf"hf engine: resumed at step {step} from \S+checkpoint-{step}", log), log[-2000:]
    again = json.loads(metrics_path.read_text())
    assert again["steps"] == straight["steps"] and again["best_epoch"] == straight["best_epoch"]
    # The same weights at every epoch's end: the same valid scores (the Trainer's logged
    # train loss of the stopped epoch averages only the steps after the resume).
    for key in ("valid_accuracy", "valid_loss"):
        assert [h[key] for h in again["history"]] == pytest.approx(
            [h[key] for h in straight["history"]], rel=1e-5
        )
