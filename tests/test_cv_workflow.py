"""K-fold cross-validation and the ensemble in the real workflow (config cv.folds, ensemble):
one Snakemake run of the demo with K=3 fold jobs per training stage and an ensemble of the
fine-tuned folds, the retrained folds and the baseline, shared by the tests of this module;
dry runs for what a change reruns; the default (cv off) DAG as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow, run_snakemake

from newstopic.formats import PROB_COLUMNS, read_folds, read_probs, read_split

pytestmark = pytest.mark.e2e

K = 3
CV = {
    "cv": {"folds": K},
    "ensemble": {"enabled": True, "members": ["finetune", "retrain", "baseline"]},
    # Short training: this module checks the DAG and the files, not the accuracy.
    "mlm": {"epochs": 2},
    "finetune": {"epochs": 3},
    "retrain": {"epochs": 2},
    "pseudo_label": {"soft": True, "threshold": 0.0},
}
# The default demo's jobs, before folds existed.
DEFAULT_JOBS = {
    "preprocess",
    "build_tokenizer",
    "mlm_pretrain",
    "finetune",
    "predict",
    "pseudo_label",
    "retrain",
    "baseline",
    "submission",
    "summary",
    "all",
}


def jobs_of(proc: object) -> list[str]:
    out = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    return re.findall(r"^(?:local)?rule (\w+):", out, re.MULTILINE)


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wf = copy_workflow(tmp_path_factory.mktemp("cv") / "wf")
    run_snakemake(wf, config=CV, timeout=1500)
    return wf


def test_default_dag_is_unchanged(tmp_path: Path) -> None:
    wf = copy_workflow(tmp_path / "wf")
    jobs = jobs_of(run_snakemake(wf, "-n"))
    assert set(jobs) == DEFAULT_JOBS and jobs.count("finetune") == 1
    assert "fold" not in run_snakemake(wf, "-n", "--quiet", "all").stdout


def test_fold_jobs_and_out_of_fold_rows(cv_run: Path) -> None:
    wf = cv_run
    res = wf / "results"
    train = read_split(res / "data" / "train.parquet", labeled=True)
    valid = read_split(res / "data" / "valid.parquet", labeled=True)
    folds = read_folds(res / "cv" / "folds.parquet")
    assert sorted(folds["index"]) == sorted(train["index"]) and set(folds["fold"]) == set(range(K))
    pseudo = pd.read_parquet(res / "pseudo_label" / "pseudo_labels.parquet")
    for stage, extra in (("finetune", 0), ("retrain", len(pseudo))):
        seen = []
        for k in range(K):
            fold_dir = res / stage / f"fold{k}"
            m = json.loads((fold_dir / "metrics.json").read_text())
            oof = read_probs(fold_dir / "oof_probs.parquet")
            # Fold k's rows are predicted by the model that trained on the others (+ pseudo rows).
            assert sorted(oof["index"]) == sorted(folds.loc[folds["fold"] == k, "index"])
            assert m["fold"] == k and m["fold_rows"] == len(oof)
            assert m["train_rows"] == len(train) - len(oof) + extra
            assert sorted(read_probs(fold_dir / "valid_probs.parquet")["index"]) == sorted(valid["index"])
            assert (wf / "logs" / f"{stage}_fold{k}.log").is_file()
            assert (wf / "benchmarks" / f"{stage}_fold{k}.tsv").is_file()
            seen += oof["index"].tolist()
        assert sorted(seen) == sorted(train["index"])  # OOF rows = the training rows, once each
        stage_oof = read_probs(res / stage / "cv" / "oof_probs.parquet")
        assert sorted(stage_oof["index"]) == sorted(train["index"])
        m = json.loads((res / stage / "metrics.json").read_text())
        assert m["folds"] == K and len(m["per_fold"]) == K and m["oof_rows"] == len(train)
        test = read_probs(res / stage / "test_probs.parquet")
        mean = np.mean(
            [read_probs(res / stage / f"fold{k}" / "test_probs.parquet")[PROB_COLUMNS] for k in range(K)], 0
        )
        assert np.allclose(test[PROB_COLUMNS].to_numpy(), mean, atol=1e-6)
    assert sorted(read_probs(res / "baseline" / "cv" / "oof_probs.parquet")["index"]) == sorted(
        train["index"]
    )
    # Successful fold jobs leave no resumable state behind; each had its own directory.
    assert not any((wf / "scratch").glob("*/step-*"))


def test_ensemble_is_the_submission(cv_run: Path) -> None:
    res = cv_run / "results"
    m = json.loads((res / "ensemble" / "metrics.json").read_text())
    assert list(m["weights"]) == CV["ensemble"]["members"]
    assert abs(sum(m["weights"].values()) - 1) < 1e-6 and min(m["weights"].values()) >= 0
    assert m["oof_loss"] <= min(r["oof_loss"] for r in m["members"]) + 1e-6
    assert m["valid_accuracy"] > 0.8  # chance is 1/7
    assert (res / "submission.csv").read_bytes() == (res / "ensemble" / "submission.csv").read_bytes()
    summary = json.loads((res / "summary.json").read_text())
    assert set(summary["stages"]) == {"baseline", "finetune", "retrain", "ensemble"}
    assert {"finetune_fold0", "retrain_fold2", "baseline_folds", "ensemble"} <= set(summary["rules"])
    assert "**ensemble**" in (res / "ensemble" / "report.md").read_text()
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(run_snakemake(cv_run, "-n", config=CV))


@pytest.mark.parametrize(
    ("change", "rerun"),
    [
        # Other folds: every fold job and what follows, not the split, tokenizer, MLM or baseline.
        (
            {"cv": {"folds": 2}},
            {
                "make_folds",
                "finetune",
                "fold_average",
                "pseudo_label",
                "retrain",
                "baseline_folds",
                "ensemble",
            },
        ),
        # Other members: only the ensemble (and the submission and summary it feeds).
        ({"ensemble": {"members": ["finetune", "baseline"]}}, {"ensemble"}),
        ({"ensemble": {"members": ["retrain"]}}, {"ensemble"}),
        # Pseudo-labels: the retrained folds and what follows, not the fine-tuned folds.
        ({"pseudo_label": {"threshold": 0.5}}, {"pseudo_label", "retrain", "fold_average", "ensemble"}),
    ],
)
def test_a_change_reruns_what_it_affects(cv_run: Path, change: dict, rerun: set[str]) -> None:
    config = {**CV, **{k: {**CV.get(k, {}), **v} for k, v in change.items()}}
    jobs = set(jobs_of(run_snakemake(cv_run, "-n", config=config)))
    assert jobs == rerun | {"submission", "summary", "all"}, (change, jobs)


def test_lint_passes_with_folds(cv_run: Path) -> None:
    proc = run_snakemake(cv_run, "--lint", config=CV)
    assert "Congratulations" in proc.stdout + proc.stderr
