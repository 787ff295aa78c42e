"""K-fold cross-validation, the ensemble and pseudo-label rounds in the real workflow (config
cv.folds, ensemble, pseudo_label.rounds): one Snakemake run of the demo with K=3 fold jobs per
training stage and 2 rounds, each round's ensemble of the fine-tuned folds, that round's
retrained folds and the baseline, shared by the tests of this module; dry runs for what a
change reruns; the default (cv off) DAG as it was."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from newstopic.formats import PROB_COLUMNS, read_folds, read_probs, read_split
from newstopic.study import rounds_report

pytestmark = pytest.mark.e2e

K = 3
CV = {
    "cv": {"folds": K},
    "ensemble": {"enabled": True, "members": ["finetune", "retrain", "baseline"]},
    # Short training: this module checks the DAG and the files, not the accuracy.
    "mlm": {"epochs": 2},
    "finetune": {"epochs": 3},
    "retrain": {"epochs": 2},
    "pseudo_label": {"soft": True, "threshold": 0.0, "rounds": 2},
}
ROUNDS = 2
# The report's rules (newstopic.report): they read what the stages wrote and draw it.
REPORT_RULES = {
    "evaluate",
    "topic_scores",
    "learning_curves",
    "pseudo_label_plots",
    "summary_table",
    "run_config",
}
# The default demo's jobs: none of them a fold's.
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
} | REPORT_RULES


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
    stages = [("finetune", "finetune", None)]
    stages += [
        (f"round{r}/retrain", f"retrain_round{r}", f"round{r}/pseudo_label") for r in range(1, ROUNDS + 1)
    ]
    for stage, job, pseudo_dir in stages:
        seen = []
        for k in range(K):
            # A retrained fold model learns its own fold's pseudo-labels (fold k's teachers').
            pseudo = res / str(pseudo_dir) / f"fold{k}" / "pseudo_labels.parquet"
            extra = len(pd.read_parquet(pseudo)) if pseudo_dir else 0
            if pseudo_dir:
                assert (
                    f"'results/{pseudo_dir}/fold{k}/pseudo_labels.parquet'"
                    in (wf / "logs" / f"{job}_fold{k}.log").read_text()
                )
            fold_dir = res / stage / f"fold{k}"
            m = json.loads((fold_dir / "metrics.json").read_text())
            oof = read_probs(fold_dir / "oof_probs.parquet")
            # Fold k's rows are predicted by the model that trained on the others (+ pseudo rows).
            assert sorted(oof["index"]) == sorted(folds.loc[folds["fold"] == k, "index"])
            assert m["fold"] == k and m["fold_rows"] == len(oof)
            assert m["train_rows"] == len(train) - len(oof) + extra
            assert sorted(read_probs(fold_dir / "valid_probs.parquet")["index"]) == sorted(valid["index"])
            assert (wf / "logs" / f"{job}_fold{k}.log").is_file()
            assert (wf / "benchmarks" / f"{job}_fold{k}.tsv").is_file()
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


def test_rounds_and_the_ensemble_submission(cv_run: Path) -> None:
    res = cv_run / "results"
    for r in range(ROUNDS + 1):
        m = json.loads((res / f"round{r}" / "ensemble" / "metrics.json").read_text())
        # Round 0 (the first teacher) is the ensemble before any retraining.
        members = ["finetune", "baseline"] if r == 0 else CV["ensemble"]["members"]
        assert list(m["weights"]) == members, r
        assert abs(sum(m["weights"].values()) - 1) < 1e-6 and min(m["weights"].values()) >= 0
        assert m["oof_loss"] <= min(x["oof_loss"] for x in m["members"]) + 1e-6
        assert m["valid_accuracy"] > 0.8  # chance is 1/7
        assert "**ensemble**" in (res / f"round{r}" / "ensemble" / "report.md").read_text()
        if r:  # round r's teacher: round r-1's ensemble, and nothing else
            report = json.loads((res / f"round{r}" / "pseudo_label" / "report.json").read_text())
            teachers = [f"results/round{r - 1}/ensemble/fold{k}/test_probs.parquet" for k in range(K)]
            assert report["teachers"] == teachers
            for k in range(K):  # fold k's students: fold k's mixture alone, never another fold's
                assert report["folds"][k]["teachers"] == [teachers[k]]
                rows = pd.read_parquet(
                    res / f"round{r}" / "pseudo_label" / f"fold{k}" / "pseudo_labels.parquet"
                )
                teacher = read_probs(res / teachers[k].removeprefix("results/")).set_index("index")
                assert np.allclose(rows[PROB_COLUMNS], teacher.loc[rows["index"], PROB_COLUMNS], atol=1e-6)
    final = res / f"round{ROUNDS}" / "ensemble" / "submission.csv"
    assert (res / "submission.csv").read_bytes() == final.read_bytes()
    summary = json.loads((res / "summary.json").read_text())
    assert set(summary["stages"]) == {
        "baseline",
        "finetune",
        *(f"round{r}/retrain" for r in range(1, ROUNDS + 1)),
        *(f"round{r}/ensemble" for r in range(ROUNDS + 1)),
    }
    assert {"finetune_fold0", "retrain_round2_fold2", "ensemble_round2"} <= set(summary["rules"])
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == list(range(ROUNDS + 1))
    ensembles = [summary["stages"][f"round{r}/ensemble"]["valid_accuracy"] for r in range(ROUNDS + 1)]
    assert [r["valid_accuracy"] for r in rounds] == ensembles
    assert rounds[2]["gain"] == pytest.approx(ensembles[2] - ensembles[1])
    assert 0 <= rounds[2]["agreement"] <= 1 and 0 < rounds[1]["valid_se"] < 0.1
    assert "| round |" in (res / "summary.md").read_text()
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(run_snakemake(cv_run, "-n", config=CV))


FOLD_JOBS_PER_ROUND = {"pseudo_label": 1, "retrain": K, "fold_average": 1, "ensemble": 1}


def rounds_jobs(first: int, last: int) -> Counter:
    """The jobs of rounds first..last (pseudo-labels, retrained folds, their mean, ensemble)."""
    return Counter({job: n * (last - first + 1) for job, n in FOLD_JOBS_PER_ROUND.items()})


@pytest.mark.parametrize(
    ("change", "rerun"),
    [
        # Other folds: every fold job and what follows, not the split, tokenizer, MLM or baseline.
        (
            {"cv": {"folds": 2}},
            Counter(make_folds=1, finetune=2, baseline_folds=1, fold_average=3, ensemble=3)
            + Counter({"pseudo_label": 2, "retrain": 4}),
        ),
        # Dropping the baseline: round 0's ensemble changes, so every round follows.
        ({"ensemble": {"members": ["finetune", "retrain"]}}, rounds_jobs(1, ROUNDS) + Counter(ensemble=1)),
        # Dropping retrain: round 0's members are the same, so it stays; rounds 1.. follow.
        (
            {"ensemble": {"members": ["finetune", "baseline"]}},
            Counter(ensemble=2) + rounds_jobs(2, 2) - Counter(ensemble=1),
        ),
        # Pseudo-label settings: every round, not the fine-tuned folds or round 0.
        ({"pseudo_label": {"threshold": 0.5}}, rounds_jobs(1, ROUNDS)),
        # One more round: its jobs only.
        ({"pseudo_label": {"rounds": 3}}, rounds_jobs(3, 3)),
    ],
)
def test_a_change_reruns_what_it_affects(cv_run: Path, change: dict, rerun: Counter) -> None:
    config = {**CV, **{k: {**CV.get(k, {}), **v} for k, v in change.items()}}
    jobs = Counter(jobs_of(run_snakemake(cv_run, "-n", config=config)))
    # The report's rules redraw whatever changed (run_config: the config itself): not training.
    assert jobs["run_config"] == 1, change
    jobs = Counter({job: n for job, n in jobs.items() if job not in REPORT_RULES})
    assert jobs == rerun + Counter(submission=1, summary=1, all=1), change


SEED = {"cv": {"folds": K, "seeds": [7]}}


@pytest.mark.parametrize(
    ("change", "rerun"),
    [
        # An extra seed, not a member: finetune's and each round's retrain fold jobs at seed 7
        # and their averages (the summary's seed study); no ensemble, no round changes.
        (SEED, Counter(finetune_seed=K, retrain_seed=K * ROUNDS, fold_average=1 + ROUNDS)),
        # retrain at seed 7 as a member too: round 0 (no retrain) stays, rounds 1.. follow.
        (
            {**SEED, "ensemble": {"members": [*CV["ensemble"]["members"], "retrain@seed7"]}},
            Counter(finetune_seed=K, retrain_seed=K * ROUNDS, fold_average=1 + ROUNDS)
            + Counter(ensemble=1, submission=1)
            + rounds_jobs(2, 2),
        ),
    ],
)
def test_an_extra_seed_reruns_what_it_affects(cv_run: Path, change: dict, rerun: Counter) -> None:
    config = {**CV, **{k: {**CV.get(k, {}), **v} for k, v in change.items()}}
    proc = run_snakemake(cv_run, "-n", config=config)
    jobs = Counter({job: n for job, n in Counter(jobs_of(proc)).items() if job not in REPORT_RULES})
    assert jobs == rerun + Counter(summary=1, all=1), change
    # Each round's retrain at seed 7 learns from that round's pseudo-labels.
    assert re.search(r"output: results/round2/retrain/seed7/fold2/oof_probs.parquet", proc.stdout)


def test_lint_passes_with_folds(cv_run: Path) -> None:
    proc = run_snakemake(cv_run, "--lint", config=CV)
    assert "Congratulations" in proc.stdout + proc.stderr


def test_rounds_report_shows_each_rounds_files(cv_run: Path, tmp_path: Path) -> None:
    """docs/results_cv_rounds.md's figures are the run's: each round's ensemble and retrain
    metrics, and its jobs' walls from their benchmark files."""
    out = tmp_path / "rounds.md"
    rounds_report.main(["--workdir", str(cv_run), "--out", str(out)])
    study = yaml.safe_load(out.with_suffix(".yaml").read_text())
    res, bench = cv_run / "results", cv_run / "benchmarks"
    assert [r["round"] for r in study["rounds"]] == list(range(ROUNDS + 1))
    for row in study["rounds"]:
        r = row["round"]
        m = json.loads((res / f"round{r}" / "ensemble" / "metrics.json").read_text())
        assert row["ensemble"]["valid_accuracy"] == m["valid_accuracy"] and row["weights"] == m["weights"]
        jobs = [f"ensemble_round{r}"]
        if r:
            rt = json.loads((res / f"round{r}" / "retrain" / "metrics.json").read_text())
            gap = rt["oof_accuracy"] - rt["valid_accuracy"]
            assert row["retrain"]["oof_minus_valid"] == pytest.approx(gap)
            jobs += [f"pseudo_label_round{r}", *(f"retrain_round{r}_fold{k}" for k in range(K))]
        walls = [float(pd.read_csv(bench / f"{job}.tsv", sep="\t")["s"].iloc[0]) for job in jobs]
        assert row["wall_s"] == pytest.approx(sum(walls), abs=0.1)
    summary = json.loads((res / "summary.json").read_text())
    assert study["dag_wall_s"] == summary["total_wall_s"]
    assert f"| {ROUNDS} | " in out.read_text()
