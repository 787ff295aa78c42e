"""End-to-end: the real Snakemake workflow on the embedded demo and on a subsample of the
real competition data, plus `snakemake --lint`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import run_snakemake, snakemake_env

from newstopic.formats import PROB_COLUMNS

pytestmark = pytest.mark.e2e

OUTPUTS = [
    "results/data/train.parquet",
    "results/data/valid.parquet",
    "results/data/test.parquet",
    "results/tokenizer/tokenizer.json",
    "results/mlm/model/model.safetensors",
    "results/mlm/metrics.json",
    "results/finetune/model/model.safetensors",
    "results/finetune/model/config.json",
    "results/finetune/metrics.json",
    "results/finetune/test_probs.parquet",
    "results/finetune/submission.csv",
    "results/pseudo_label/pseudo_labels.parquet",
    "results/pseudo_label/report.json",
    "results/retrain/model/model.safetensors",
    "results/retrain/metrics.json",
    "results/retrain/test_probs.parquet",
    "results/retrain/submission.csv",
    "results/submission.csv",
    "results/baseline/metrics.json",
    "results/baseline/submission.csv",
    "results/baseline/test_probs.parquet",
    "results/summary.json",
    "results/summary.md",
    "benchmarks/mlm_pretrain.tsv",
    "benchmarks/finetune.tsv",
    "benchmarks/retrain.tsv",
]
RULE_LOGS = [
    "baseline",
    "summary",
    "preprocess",
    "build_tokenizer",
    "mlm_pretrain",
    "finetune",
    "predict_finetune",
    "pseudo_label",
    "retrain",
    "predict_retrain",
    "submission",
]


def check_submission(wf: Path, test_csv: Path, n_test: int | None = None) -> pd.DataFrame:
    sub = pd.read_csv(wf / "results" / "submission.csv")
    assert list(sub.columns) == ["index", "topic_idx"]
    test = pd.read_csv(test_csv)
    expected = test["index"] if n_test is None else test["index"][:n_test]
    assert sub["index"].tolist() == expected.tolist()  # every test index, in order
    assert sub["topic_idx"].between(0, 6).all()
    probs = pq.read_table(wf / "results" / "retrain" / "test_probs.parquet").to_pandas()
    p = probs[[f"prob_{i}" for i in range(7)]].to_numpy()
    assert np.allclose(p.sum(1), 1.0, atol=1e-4)
    assert (p.argmax(1) == sub["topic_idx"].to_numpy()).all()
    return sub


def test_demo_workflow_end_to_end(workflow_copy: Path) -> None:
    wf = workflow_copy
    run_snakemake(wf)
    for rel in OUTPUTS:
        assert (wf / rel).exists(), f"missing output {rel}"
    for name in RULE_LOGS:
        assert (wf / "logs" / f"{name}.log").is_file(), f"missing log {name}"
    check_submission(wf, wf / "data" / "demo" / "demo_test.csv")

    for stage in ("finetune", "retrain"):
        m = json.loads((wf / "results" / stage / "metrics.json").read_text())
        assert m["valid_accuracy"] > 0.8, m  # chance is 1/7
        assert 0 < m["valid_macro_f1"] <= 1 and m["valid_loss"] > 0
        assert m["train_rows"] > 0 and m["valid_rows"] > 0 and m["seconds"] > 0
    mlm = json.loads((wf / "results" / "mlm" / "metrics.json").read_text())
    assert mlm["history"][-1]["train_loss"] < mlm["history"][0]["train_loss"]
    report = json.loads((wf / "results" / "pseudo_label" / "report.json").read_text())
    assert report["accepted"] > 0 and sum(report["per_class"].values()) == report["accepted"]
    # The demo config averages two teachers: the fine-tuned model and the calibrated baseline.
    teachers = ["results/finetune/test_probs.parquet", "results/baseline/test_probs.parquet"]
    assert report["teachers"] == teachers
    baseline_probs = pd.read_parquet(wf / "results" / "baseline" / "test_probs.parquet")
    assert np.allclose(baseline_probs[PROB_COLUMNS].sum(axis=1), 1.0, atol=1e-5)
    retrain = json.loads((wf / "results" / "retrain" / "metrics.json").read_text())
    assert (
        retrain["train_rows"]
        == json.loads((wf / "results" / "finetune" / "metrics.json").read_text())["train_rows"]
        + report["accepted"]
    )
    summary = json.loads((wf / "results" / "summary.json").read_text())
    assert set(summary["stages"]) == {"baseline", "finetune", "retrain"}
    assert summary["stages"]["baseline"]["valid_accuracy"] > 0.8
    assert summary["rules"]["mlm_pretrain"]["wall_s"] > 0
    # Jobs spin briefly, so that a busy core slows training fairly (the Snakefile's default).
    assert "GOMP_SPINCOUNT=3000" in (wf / "logs" / "finetune.log").read_text()
    # Successful training leaves no resumable state behind.
    assert not any((wf / "scratch").glob("*/step-*"))

    # Nothing left to do: a second run schedules no job.
    dry = run_snakemake(wf, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr

    # Soft pseudo-labels on every test row: only pseudo-labelling and what follows rerun, and
    # retraining fits the teachers' averaged probabilities.
    soft = run_snakemake(wf, config={"pseudo_label": {"soft": True, "threshold": 0.0}})
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", soft.stdout + soft.stderr, re.MULTILINE))
    assert {"pseudo_label", "retrain"} <= jobs and not jobs & {"mlm_pretrain", "finetune", "baseline"}
    report = json.loads((wf / "results" / "pseudo_label" / "report.json").read_text())
    assert report["soft"] and report["accepted"] == report["test_rows"]
    rows = pd.read_parquet(wf / "results" / "pseudo_label" / "pseudo_labels.parquet")
    assert np.allclose(rows[PROB_COLUMNS].sum(axis=1), 1.0, atol=1e-5)
    assert "(soft labels)" in (wf / "logs" / "retrain.log").read_text()
    soft_retrain = json.loads((wf / "results" / "retrain" / "metrics.json").read_text())
    finetune_rows = json.loads((wf / "results" / "finetune" / "metrics.json").read_text())["train_rows"]
    assert soft_retrain["train_rows"] == finetune_rows + len(rows)
    assert soft_retrain["valid_accuracy"] > 0.8


def test_changing_a_hyperparameter_reruns_what_it_affects(workflow_copy: Path) -> None:
    wf = workflow_copy
    run_snakemake(wf, "--until", "pseudo_label")
    dry = run_snakemake(wf, "-n", "--until", "pseudo_label", config={"pseudo_label": {"threshold": 0.5}})
    out = dry.stdout + dry.stderr
    assert (
        "pseudo_label" in out
        and "mlm_pretrain" not in out
        and "finetune" not in out.replace("results/finetune", "")
    )
    # A stage's own training seed reruns that stage (and what follows), not the split or MLM.
    # So does its input noise.
    for key, value in [("seed", 7), ("input_mask_prob", 0.1)]:
        dry = run_snakemake(wf, "-n", "--until", "finetune", config={"finetune": {key: value}})
        jobs = set(re.findall(r"^(?:local)?rule (\w+):", dry.stdout + dry.stderr, re.MULTILINE))
        assert jobs == {"finetune"}, (key, jobs)


def test_extra_training_seeds_are_targets_of_the_same_run(workflow_copy: Path) -> None:
    """cv.seeds without folds: finetune and retrain again under seed 7, in the same work
    directory, as Snakemake targets (the ablation's seed study; no folder is copied). Nothing
    else reruns; the same split and pseudo-labels; their own folders, logs and checkpoints."""
    wf = workflow_copy
    run_snakemake(wf, "--until", "pseudo_label")
    seeds = {"cv": {"seeds": [7]}}
    targets = ["results/finetune/seed7/metrics.json", "results/retrain/seed7/metrics.json"]
    dry = run_snakemake(wf, "-n", *targets, config=seeds)
    jobs = re.findall(r"^(?:local)?rule (\w+):", dry.stdout + dry.stderr, re.MULTILINE)
    assert sorted(jobs) == ["finetune_seed", "retrain_seed"]
    run_snakemake(wf, *targets, config=seeds)

    res = wf / "results"
    base, seeded = (json.loads((res / "finetune" / d / "metrics.json").read_text()) for d in ("", "seed7"))
    assert seeded["train_rows"] == base["train_rows"] and seeded["valid_rows"] == base["valid_rows"]
    assert seeded["history"] != base["history"]  # another initialisation and batch order
    retrain = json.loads((res / "retrain" / "seed7" / "metrics.json").read_text())
    pseudo = pd.read_parquet(res / "pseudo_label" / "pseudo_labels.parquet")
    assert retrain["train_rows"] == base["train_rows"] + len(pseudo)  # the run's own pseudo-labels
    for job in ("finetune_seed7", "retrain_seed7"):
        assert (wf / "logs" / f"{job}.log").is_file() and (wf / "benchmarks" / f"{job}.tsv").is_file()
        assert not list((wf / "scratch" / job).glob("step-*"))  # its own checkpoints, cleared
    assert not (res / "retrain" / "metrics.json").exists()  # the run's own retrain: not asked for
    again = run_snakemake(wf, "-n", *targets, config=seeds)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_lint_passes(repo: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"],
        cwd=repo,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.mark.realdata
def test_real_data_subsample_beats_majority_class(workflow_copy: Path, ynat: Path) -> None:
    wf = workflow_copy
    config = {
        "data": {"train": str(ynat / "train.csv"), "test": str(ynat / "test.csv")},
        "preprocess": {"sample_per_class": 500, "test_sample": 1000, "valid_fraction": 0.15},
        "tokenizer": {"vocab_size": 4000, "min_frequency": 2, "max_length": 32},
        "model": {
            "arch": {
                "hidden_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 256,
            }
        },
        "mlm": {"epochs": 6, "batch_size": 64, "lr": 1.0e-3},
        "finetune": {"epochs": 5, "batch_size": 32, "lr": 5.0e-4, "head_lr": 1.0e-3},
        "retrain": {"epochs": 5, "batch_size": 32, "lr": 5.0e-4, "head_lr": 1.0e-3},
        "pseudo_label": {"threshold": 0.9},
        "runtime": {"checkpoint_every": 100},
    }
    run_snakemake(wf, config=config, timeout=1500)
    check_submission(wf, ynat / "test.csv", n_test=1000)
    valid = pd.read_parquet(wf / "results" / "data" / "valid.parquet")
    majority = valid["topic_idx"].value_counts(normalize=True).max()
    for stage in ("finetune", "retrain"):
        m = json.loads((wf / "results" / stage / "metrics.json").read_text())
        assert m["valid_accuracy"] > majority + 0.25, (stage, m["valid_accuracy"], majority)
