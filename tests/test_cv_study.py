"""The k-fold recipe's study (newstopic.study.cv_study): the table's numbers come from the
right files, the walls from the right jobs, and the valid split chooses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from newstopic import NUM_LABELS
from newstopic.formats import FOLDS_SCHEMA, LABELED_SCHEMA, PROBS_SCHEMA, probs_frame, write_parquet
from newstopic.study import cv_study
from newstopic.study.runs import Runner, merged_config

K, TRAIN_ROWS, VALID_ROWS = 3, 300, 120
REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "config"


def _probs(labels: np.ndarray, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities that put most mass on the true class for about `skill` of the rows."""
    probs = rng.dirichlet(np.ones(NUM_LABELS), size=len(labels))
    right = rng.random(len(labels)) < skill
    probs[right, labels[right]] += 2.0
    return probs / probs.sum(1, keepdims=True)


def _write(path: Path, index: np.ndarray, probs: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(probs_frame(index, probs.astype(np.float32)), path, PROBS_SCHEMA)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A finished run's files: folds, valid split, members finetune, retrain (seed 42 and 1),
    the baseline, each trained member's fold models, and benchmark files."""
    rng = np.random.default_rng(0)
    results = tmp_path / "results"
    train_index, valid_index = np.arange(TRAIN_ROWS), np.arange(1000, 1000 + VALID_ROWS)
    y_train, y_valid = rng.integers(0, NUM_LABELS, TRAIN_ROWS), rng.integers(0, NUM_LABELS, VALID_ROWS)
    (results / "cv").mkdir(parents=True)
    folds = pd.DataFrame({"index": train_index, "topic_idx": y_train, "fold": train_index % K})
    write_parquet(folds, results / "cv" / "folds.parquet", FOLDS_SCHEMA)
    (results / "data").mkdir()
    valid = pd.DataFrame({"index": valid_index, "title": "t", "title_raw": "t", "topic_idx": y_valid})
    write_parquet(valid, results / "data" / "valid.parquet", LABELED_SCHEMA)
    skills = {"finetune": 0.6, "retrain": 0.7, "finetune/seed1": 0.5, "retrain/seed1": 0.65, "baseline": 0.55}
    for folder, skill in skills.items():
        _write(results / folder / "cv" / "oof_probs.parquet", train_index, _probs(y_train, skill, rng))
        _write(results / folder / "cv" / "valid_probs.parquet", valid_index, _probs(y_valid, skill, rng))
        if folder != "baseline":
            for k in range(K):
                probs = _probs(y_valid, skill - 0.1, rng)
                _write(results / folder / f"fold{k}" / "valid_probs.parquet", valid_index, probs)
    (tmp_path / "benchmarks").mkdir()
    walls = {"preprocess": 1, "build_tokenizer": 2, "mlm_pretrain": 100, "baseline": 10, "baseline_folds": 20}
    walls |= {"pseudo_label": 3, "ensemble": 4}
    walls |= {f"finetune_fold{k}": 30 + k for k in range(K)} | {f"retrain_fold{k}": 40 for k in range(K)}
    walls |= {f"{stage}_seed1_fold{k}": 1000 for k in range(K) for stage in ("finetune", "retrain")}
    for job, wall in walls.items():
        (tmp_path / "benchmarks" / f"{job}.tsv").write_text(f"s\tmax_rss\n{wall}\t{wall + 100}\n")
    return tmp_path


CHAIN = ["preprocess", "build_tokenizer", "mlm_pretrain", "baseline"]
FINETUNE = [f"finetune_fold{k}" for k in range(K)]
STEPS_JOBS = {
    "fold_model": [*CHAIN, "finetune_fold0"],
    "finetune": [*CHAIN, *FINETUNE],
    "finetune+baseline": [*CHAIN, *FINETUNE, "baseline_folds", "ensemble"],
    "retrain": [*CHAIN, *FINETUNE, "pseudo_label", *(f"retrain_fold{k}" for k in range(K))],
    "ensemble": [*CHAIN, *FINETUNE, "baseline_folds", "pseudo_label", *(f"retrain_fold{k}" for k in range(K))]
    + ["ensemble"],
}
CONFIG = {"seed": 42, "finetune": {"seed": None}}


def _study(workdir: Path, seeds: list[int], stages: tuple[str, ...] = cv_study.STAGES) -> dict:
    return cv_study.read_study(workdir, CONFIG, seeds, STEPS_JOBS, stages)


def _accuracy(path: Path, labels: np.ndarray) -> float:
    frame = pd.read_parquet(path)
    return float((frame[[f"prob_{i}" for i in range(NUM_LABELS)]].to_numpy().argmax(1) == labels).mean())


def test_each_step_is_scored_from_its_own_files(workdir: Path) -> None:
    results = workdir / "results"
    y_valid = pd.read_parquet(results / "data" / "valid.parquet")["topic_idx"].to_numpy()
    study = _study(workdir, [1])
    assert set(study["steps"]) == {"42", "1"}
    top, other = study["steps"]["42"], study["steps"]["1"]
    folds = [_accuracy(results / "finetune" / f"fold{k}" / "valid_probs.parquet", y_valid) for k in range(K)]
    assert top["fold_model"]["valid_accuracy"] == pytest.approx(np.mean(folds))
    assert top["finetune"]["valid_accuracy"] == pytest.approx(
        _accuracy(results / "finetune" / "cv" / "valid_probs.parquet", y_valid)
    )
    # The extra seed's steps read its own folder.
    assert other["retrain"]["valid_accuracy"] == pytest.approx(
        _accuracy(results / "retrain" / "seed1" / "cv" / "valid_probs.parquet", y_valid)
    )
    assert top["ensemble"]["members"] == ["finetune", "retrain", "baseline"]
    assert sum(top["ensemble"]["weights"]) == pytest.approx(1.0, abs=1e-3)
    assert study["best"]["members"] == ["finetune", "retrain", "finetune@seed1", "retrain@seed1", "baseline"]
    assert (study["valid_rows"], study["oof_rows"], study["folds"]) == (VALID_ROWS, TRAIN_ROWS, K)


def test_valid_labels_choose_no_weight(workdir: Path) -> None:
    """Scrambled valid labels change the valid scores, never the weights."""
    before = _study(workdir, [1])
    path = workdir / "results" / "data" / "valid.parquet"
    valid = pd.read_parquet(path)
    valid["topic_idx"] = np.random.default_rng(1).permutation(valid["topic_idx"].to_numpy())
    write_parquet(valid, path, LABELED_SCHEMA)
    after = _study(workdir, [1])
    assert after["best"]["weights"] == before["best"]["weights"]
    assert after["steps"]["42"]["ensemble"]["weights"] == before["steps"]["42"]["ensemble"]["weights"]


def test_walls_sum_the_jobs_of_each_steps_dag(workdir: Path) -> None:
    study = _study(workdir, [1])
    chain = 1 + 2 + 100 + 10
    finetune = 30 + 31 + 32
    assert study["step_wall_s"]["fold_model"] == chain + 30
    assert study["step_wall_s"]["finetune+baseline"] == chain + finetune + 20 + 4
    assert study["step_wall_s"]["ensemble"] == chain + finetune + 20 + 3 + 3 * 40 + 4
    assert study["dag_wall_s"] == study["step_wall_s"]["ensemble"]
    assert study["all_wall_s"] == study["dag_wall_s"] + 6 * 1000  # + the seed jobs
    assert study["rules"]["finetune_seed*_fold*"] == {"jobs": 3, "wall_s": 3000.0, "max_rss_mb": 1100.0}


def test_each_steps_dag_is_listed_by_snakemake(tmp_path: Path) -> None:
    """The steps' DAGs from a real dry run of the demo config with 3 folds."""
    (tmp_path / "cv.yaml").write_text(
        "cv: {folds: 3}\nensemble: {enabled: true, members: [finetune, retrain, baseline]}\n"
    )
    runner = Runner(REPO, [CONFIG_DIR / "config.yaml", tmp_path / "cv.yaml"])
    work = tmp_path / "work"
    work.mkdir()
    jobs = cv_study.step_jobs(runner, work, runner.data_overlay(relative_to=work))
    folds = [f"finetune_fold{k}" for k in range(3)]
    retrain = [f"retrain_fold{k}" for k in range(3)]
    assert set(folds) <= set(jobs["finetune"]) and not {"ensemble", "pseudo_label", *retrain} & set(
        jobs["finetune"]
    )
    assert {"baseline_folds", "ensemble"} <= set(jobs["finetune+baseline"]) and not set(retrain) & set(
        jobs["finetune+baseline"]
    )
    assert set(retrain) <= set(jobs["retrain"]) and "ensemble" not in jobs["retrain"]
    assert {"mlm_pretrain", "baseline_folds", "ensemble", *folds, *retrain} <= set(jobs["ensemble"])
    assert [j for j in jobs["fold_model"] if j.startswith("finetune_fold")] == ["finetune_fold0"]
    assert not list(work.glob("*.yaml")) and not (work / "results").exists()  # a dry run: nothing written


def test_report_has_every_step_and_the_seeds_statistics(workdir: Path) -> None:
    study = _study(workdir, [1])
    study |= {"dag_elapsed_s": 300.0, "dag_best_valid_accuracy": study["best"]["valid_accuracy"]}
    text = cv_study.results_markdown(study, "python -m newstopic.study.cv_study --seeds 1", "cv: {folds: 3}")
    for step in cv_study.STEP_NAMES.values():
        assert step.format(k=K, k1=K - 1) in text
    assert "| step | seed 42 | seed 1 | mean | SE over seeds |" in text
    assert "python -m newstopic.study.cv_study --seeds 1" in text
    assert f"{study['steps']['42']['ensemble']['valid_accuracy']:.4f}" in text
    assert "Within 60 minutes on 2 cores: one fold model" in text
    # The retrained seeds are members: config/dacon_cv_seeds.yaml (finetune seeds) is not this one.
    assert "config/dacon_cv_seeds.yaml is this ensemble without the retrained seeds" in text


def test_data_paths_are_given_as_a_run_in_the_workdir_sees_them(tmp_path: Path) -> None:
    """A run started by hand in the work directory records the same input paths: the study's
    overlay must not make Snakemake rerun the DAG from preprocess."""
    repo, work = tmp_path / "repo", tmp_path / "work"
    (repo / "config").mkdir(parents=True)
    (repo / "config" / "c.yaml").write_text("data:\n  train: ../shared/train.csv\n")
    runner = Runner(repo, [repo / "config" / "c.yaml"])
    assert runner.data_overlay(relative_to=work) == {"data": {"train": "../shared/train.csv"}}
    assert runner.data_overlay(relative_to=tmp_path / "a" / "b")["data"]["train"] == "../../shared/train.csv"


def test_seeds_that_train_finetune_alone(workdir: Path) -> None:
    """--seed-stages finetune: the extra seeds have the finetune steps only, the table says so."""
    study = _study(workdir, [1], ("finetune",))
    assert set(study["steps"]["1"]) == {"fold_model", "finetune", "finetune+baseline"}
    assert study["best"]["members"] == ["finetune", "retrain", "finetune@seed1", "baseline"]
    study |= {"dag_elapsed_s": 300.0, "dag_best_valid_accuracy": study["best"]["valid_accuracy"]}
    text = cv_study.results_markdown(study, "cmd", "")
    seeds_table = text.split("training seeds")[1]
    retrain_row = next(ln for ln in seeds_table.splitlines() if ln.startswith("| 3-fold average of retrain"))
    assert "| — |" in retrain_row and "— (one seed)" in retrain_row
    assert "+ the TF-IDF baseline as a member minus one fold model, paired by seed" in text
    assert "as config/dacon_cv_seeds.yaml does for seeds 1 and 2" in text


def test_the_60_minute_config_is_the_step_the_study_measures() -> None:
    """config/dacon_cv_60min.yaml is the overlay whose DAG docs/results_cv.md times."""
    overlay = yaml.safe_load((CONFIG_DIR / "dacon_cv_60min.yaml").read_text())
    assert overlay == cv_study.STEP_DAGS["finetune+baseline"]


def test_the_kfold_overlays_are_valid_over_the_dacon_config() -> None:
    full = merged_config([CONFIG_DIR / "dacon.yaml", CONFIG_DIR / "dacon_cv.yaml"])
    assert (full["cv"]["folds"], full["ensemble"]["members"]) == (5, ["finetune", "retrain", "baseline"])
    assert full["mlm"]["epochs"] == 40 and full["mlm"]["mask_prob"] == 0.4  # the rest is dacon.yaml's
    files = [CONFIG_DIR / f for f in ("dacon.yaml", "dacon_cv.yaml", "dacon_cv_60min.yaml")]
    short = merged_config(files)
    assert not short["pseudo_label"]["enabled"] and short["ensemble"]["members"] == ["finetune", "baseline"]


def test_the_60_minute_dag_trains_the_40_epoch_encoder_of_the_chain_without_a_limit() -> None:
    """The k-fold configs train the encoder of docs/results_mlm40.md's chain (dacon_mlm40.yaml:
    40 epochs, the rest dacon.yaml's), so the two recipes' figures compare encoder for encoder."""
    short = merged_config([CONFIG_DIR / f for f in ("dacon.yaml", "dacon_cv.yaml", "dacon_cv_60min.yaml")])
    chain = merged_config([CONFIG_DIR / f for f in ("dacon.yaml", "dacon_mlm40.yaml")])
    assert short["mlm"] == chain["mlm"] and short["mlm"]["epochs"] == 40
    assert (short["model"], short["tokenizer"]) == (chain["model"], chain["tokenizer"])


def test_the_80_epoch_recipe_is_the_kfold_recipe_with_twice_its_mlm_epochs() -> None:
    """config/dacon_cv80.yaml changes the MLM epochs and nothing else, so docs/results_cv80.md
    compares with docs/results_cv.md encoder budget for encoder budget (same folds, seeds, members)."""
    kfold = merged_config([CONFIG_DIR / f for f in ("dacon.yaml", "dacon_cv.yaml")])
    longer = merged_config([CONFIG_DIR / f for f in ("dacon.yaml", "dacon_cv.yaml", "dacon_cv80.yaml")])
    assert longer["mlm"]["epochs"] == 2 * kfold["mlm"]["epochs"] == 80
    longer["mlm"]["epochs"] = kfold["mlm"]["epochs"]
    assert longer == kfold


def test_the_seeds_config_is_the_ensemble_the_study_scores() -> None:
    files = [CONFIG_DIR / f for f in ("dacon.yaml", "dacon_cv.yaml", "dacon_cv_seeds.yaml")]
    config = merged_config(files)
    assert config["ensemble"]["members"] == cv_study.best_members(config["cv"]["seeds"], ("finetune",))


def test_rounds_report_compares_a_one_round_run_refit_with_its_own_members(workdir: Path) -> None:
    """`rounds_report --compare`: the one-round run's ensemble is refit from its probability
    files with finetune, retrain and the baseline only (the run's own ensemble also had the
    extra seeds), weights from OOF rows, retrain's figures from its metrics; both land in the
    markdown's comparison table beside round 1."""
    from newstopic.ensemble import fit_weights
    from newstopic.study import rounds_report

    results = workdir / "results"
    retrain = {"valid_accuracy": 0.71, "oof_accuracy": 0.74, "valid_rows": VALID_ROWS}
    (results / "retrain" / "metrics.json").write_text(json.dumps(retrain))
    compare = rounds_report.read_one_round(workdir)

    members = list(rounds_report.ONE_ROUND_MEMBERS)
    y_oof = pd.read_parquet(results / "cv" / "folds.parquet")["topic_idx"].to_numpy()
    y_valid = pd.read_parquet(results / "data" / "valid.parquet")["topic_idx"].to_numpy()
    oof = [
        pd.read_parquet(results / m / "cv" / "oof_probs.parquet").filter(like="prob_").to_numpy()
        for m in members
    ]
    weights = fit_weights(oof, y_oof)
    assert list(compare["weights"]) == members
    assert list(compare["weights"].values()) == pytest.approx(weights, abs=1e-4)
    valid = sum(
        w * pd.read_parquet(results / m / "cv" / "valid_probs.parquet").filter(like="prob_").to_numpy()
        for w, m in zip(weights, members, strict=True)
    )
    assert compare["ensemble"]["valid_accuracy"] == pytest.approx(float((valid.argmax(1) == y_valid).mean()))
    assert compare["retrain"]["oof_minus_valid"] == pytest.approx(0.03)
    assert compare["retrain"]["valid_se"] == pytest.approx((0.71 * 0.29 / VALID_ROWS) ** 0.5)

    fold_aware = rounds_report.stage_scores(retrain | {"valid_accuracy": 0.72, "oof_accuracy": 0.73})
    rounds = [
        {"round": r, "retrain": fold_aware if r else None, "ensemble": compare["ensemble"]}
        | {"weights": compare["weights"], "gain": None, "agreement": None, "wall_s": 10.0}
        for r in range(2)
    ]
    study = {"rounds": rounds, "finetune": fold_aware, "dag_wall_s": 60.0}
    table = rounds_report.rounds_markdown(study | {"compare": compare, "compare_dir": "runs/cv"}, "cmd")
    rows = table.split("## Round 1 against teachers that saw every fold")[1].splitlines()
    every = next(line for line in rows if line.startswith("| every fold's models |"))
    assert "| 0.7100 (0.0414) | +3.00 |" in every, every
    assert f"| {compare['ensemble']['valid_accuracy']:.4f} " in every, every
    own = next(line for line in rows if line.startswith("| fold k's models only |"))
    assert "| 0.7200 (0.0410) | +1.00 |" in own, own


def test_a_report_of_runs_not_made_in_one_go_says_how_and_claims_no_elapsed_time(workdir: Path) -> None:
    """--report-only over runs assembled by hand (no cv_study.yaml): the note says how they
    were made, and no elapsed time of a whole DAG is made up."""
    study = _study(workdir, []) | {"note": "The MLM encoder was copied from runs/mlm40."}
    text = cv_study.results_markdown(study, "cmd", "")
    assert "The MLM encoder was copied from runs/mlm40." in text
    assert "s of rules summed (its runs were not one `snakemake`" in text and "elapsed (" not in text
    args = ["--seeds", "1", "--note", "how", "--report-only", "--note=x", "--out", "d.md"]
    assert cv_study.reproducing_args(args) == ["--seeds", "1", "--out", "d.md"]
