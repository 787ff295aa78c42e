"""Pseudo-label selection: threshold, per-class cap, report; soft pseudo-labels."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_ARCH as ARCH
from conftest import copy_workflow
from transformers import BertTokenizerFast, DataCollatorWithPadding

from newstopic.encoder import mlm_from_config
from newstopic.errors import InputError
from newstopic.formats import (
    LABELED_SCHEMA,
    PROB_COLUMNS,
    SOFT_LABELED_SCHEMA,
    UNLABELED_SCHEMA,
    read_labeled,
    read_probs,
    write_parquet,
)
from newstopic.hf_engine import TokenDataset
from newstopic.model import build_classifier
from newstopic.pseudo import average_probs, pseudo_label_files, select_pseudo_labels
from newstopic.study import machine
from newstopic.study.ablation import results_markdown, run_ablation, training_seed
from newstopic.study.runs import Runner, elapsed_s, run_logs, same_files
from newstopic.study.seed_study import paired_gain, seed_markdown
from newstopic.study.teachers import selection_quality


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    probs = np.full((6, 7), 0.01, dtype=np.float32)
    for row, (cls, p) in enumerate([(0, 0.95), (0, 0.99), (0, 0.5), (3, 0.91), (3, 0.89), (6, 0.97)]):
        probs[row, cls] = p
    frame = pd.DataFrame(probs, columns=PROB_COLUMNS)
    frame.insert(0, "index", np.arange(100, 106))
    test = pd.DataFrame(
        {
            "index": np.arange(100, 106),
            "title": [f"t{i}" for i in range(6)],
            "title_raw": [f"r{i}" for i in range(6)],
        }
    )
    return frame, test


def test_threshold_selects_confident_rows() -> None:
    rows, report = select_pseudo_labels(*frames(), threshold=0.9)
    assert rows["index"].tolist() == [100, 101, 103, 105]
    assert rows["topic_idx"].tolist() == [0, 0, 3, 6]
    assert rows["title"].tolist() == ["t0", "t1", "t3", "t5"]
    assert report["accepted"] == 4 and report["test_rows"] == 6
    assert report["per_class"] == {"0": 2, "1": 0, "2": 0, "3": 1, "4": 0, "5": 0, "6": 1}
    assert abs(report["acceptance_rate"] - 4 / 6) < 1e-9


def test_cap_per_class_keeps_the_most_confident() -> None:
    rows, report = select_pseudo_labels(*frames(), threshold=0.9, max_per_class=1)
    assert rows["index"].tolist() == [101, 103, 105]  # 101 (0.99) beats 100 (0.95)
    assert report["per_class"]["0"] == 1


def test_threshold_one_accepts_nothing() -> None:
    rows, report = select_pseudo_labels(*frames(), threshold=1.0)
    assert rows.empty and report["accepted"] == 0 and report["mean_confidence"] is None


def write_probs(frame: pd.DataFrame, path: Path) -> str:
    frame.assign(topic_idx=frame[PROB_COLUMNS].to_numpy().argmax(1)).to_parquet(path, index=False)
    return str(path)


def test_two_teachers_are_averaged_row_by_row(tmp_path: Path) -> None:
    probs, test = frames()
    # A second teacher, rows in another order: it is sure of row 102 (class 5), and
    # unsure of row 101, which the first teacher alone would accept.
    other = probs.copy()
    other.loc[other["index"] == 102, PROB_COLUMNS] = np.eye(7, dtype=np.float32)[5]
    other.loc[other["index"] == 101, PROB_COLUMNS] = np.full(7, 1 / 7, dtype=np.float32)
    other = other.iloc[::-1]
    write_parquet(test.assign(title_raw=test["title_raw"]), tmp_path / "test.parquet", UNLABELED_SCHEMA)
    report = pseudo_label_files(
        [write_probs(probs, tmp_path / "a.parquet"), write_probs(other, tmp_path / "b.parquet")],
        str(tmp_path / "test.parquet"),
        str(tmp_path / "rows.parquet"),
        str(tmp_path / "report.json"),
        section={"threshold": 0.9, "max_per_class": None, "soft": False},
    )
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    # 100: (0.95 + 0.95) / 2; 101: (0.99 + 1/7) / 2 < 0.9; 103: 0.91; 105: 0.97.
    assert rows["index"].tolist() == [100, 103, 105]
    assert rows["topic_idx"].tolist() == [0, 3, 6]
    assert report["mean_confidence"] == pytest.approx((0.95 + 0.91 + 0.97) / 3, abs=1e-6)
    assert report["accepted"] == 3 and len(report["teachers"]) == 2


def test_teachers_must_cover_the_same_rows(tmp_path: Path) -> None:
    probs, _ = frames()
    with pytest.raises(InputError, match=r"b\.parquet: its test rows differ from those of .*a\.parquet"):
        average_probs([probs, probs.iloc[1:]], [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])


def test_selection_quality_counts_kept_rows_and_their_precision() -> None:
    probs = np.array([[0.95, 0.05], [0.92, 0.08], [0.4, 0.6], [0.1, 0.9]])
    quality = selection_quality(np.array([0, 1, 1, 0]), probs, threshold=0.9)
    # argmax right on rows 0 and 2; rows 0, 1, 3 kept, of which only row 0 is right.
    assert quality == {"accuracy": 0.5, "coverage": 0.75, "precision": pytest.approx(1 / 3)}
    assert np.isnan(selection_quality(np.array([0]), np.array([[0.6, 0.4]]), 0.9)["precision"])


def distributions() -> tuple[pd.DataFrame, pd.DataFrame]:
    """frames() with each row's probabilities summing to 1."""
    probs, test = frames()
    p = probs[PROB_COLUMNS].to_numpy()
    probs[PROB_COLUMNS] = p / p.sum(1, keepdims=True)
    return probs, test


def test_soft_pseudo_labels_keep_the_teachers_mean_and_train_as_distributions(tmp_path: Path) -> None:
    probs, test = distributions()
    write_parquet(test, tmp_path / "test.parquet", UNLABELED_SCHEMA)
    report = pseudo_label_files(
        [write_probs(probs, tmp_path / "a.parquet")],
        str(tmp_path / "test.parquet"),
        str(tmp_path / "soft.parquet"),
        str(tmp_path / "report.json"),
        section={"threshold": 0.0, "max_per_class": None, "soft": True},
    )
    assert report["soft"] is True and report["accepted"] == 6  # threshold 0: every test row
    soft = pd.read_parquet(tmp_path / "soft.parquet")
    np.testing.assert_allclose(soft[PROB_COLUMNS].to_numpy(), probs[PROB_COLUMNS].to_numpy(), rtol=1e-6)

    # Retraining reads train (hard) + soft rows: one-hot targets, then the teachers' probabilities.
    train = pd.DataFrame({"index": [1, 2], "title": ["a", "b"], "title_raw": ["a", "b"], "topic_idx": [4, 1]})
    write_parquet(train, tmp_path / "train.parquet", LABELED_SCHEMA)
    df, targets = read_labeled([str(tmp_path / "train.parquet"), str(tmp_path / "soft.parquet")])
    assert df["index"].tolist() == [1, 2, *range(100, 106)]
    np.testing.assert_array_equal(targets[:2], np.eye(7, dtype=np.float32)[[4, 1]])
    np.testing.assert_allclose(targets[2:], probs[PROB_COLUMNS].to_numpy(), rtol=1e-6)
    # Hard pseudo-labels (the default) keep the plain class-index path.
    assert read_labeled([str(tmp_path / "train.parquet")])[1] is None


def test_soft_labels_that_are_not_probabilities_are_named(tmp_path: Path) -> None:
    rows, _ = select_pseudo_labels(*distributions(), threshold=0.0, soft=True)
    rows.loc[3, "prob_2"] = 0.5  # row 3 (index 103) now sums to ~1.4
    write_parquet(rows, tmp_path / "soft.parquet", SOFT_LABELED_SCHEMA)
    with pytest.raises(InputError, match=r"soft\.parquet: row 3 \(index 103\): prob_\* are not class prob"):
        read_labeled([str(tmp_path / "soft.parquet")])


def test_one_hot_targets_give_the_class_index_loss(tmp_path: Path) -> None:
    # So a retrain mixing train rows (one-hot) and soft rows optimises the usual cross-entropy
    # on the former; and the Trainer's dataset hands both kinds of label to the collator.
    torch.manual_seed(0)
    model = build_classifier(mlm_from_config(ARCH, 100, 0).base_model, "mean", 0.0, 16).eval()
    ids = torch.tensor([[2, 10, 11, 3], [2, 20, 3, 0]])
    mask = (ids != 0).long()
    hard = model(ids, mask, labels=torch.tensor([5, 1])).loss
    soft = model(ids, mask, labels=torch.eye(7)[[5, 1]]).loss
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)
    dataset = TokenDataset([[2, 10, 3], [2, 3]], np.eye(7, dtype=np.float32)[[5, 1]])
    assert dataset[0]["labels"] == [0, 0, 0, 0, 0, 1, 0]
    assert TokenDataset([[2, 3]], np.array([6]))[0]["labels"] == 6
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]))
    collate = DataCollatorWithPadding(BertTokenizerFast(str(tmp_path / "vocab.txt")))
    batch = collate([dataset[0], dataset[1]])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (2, 7)
    # The Trainer's input noise (retrain.input_mask_prob): [MASK] (4) in place of ordinary
    # tokens only, labels untouched.
    noisy = TokenDataset([[2, *range(10, 210), 3]], np.array([6]), noise=(0.5, 4, [0, 1, 2, 3, 4]))
    item = noisy[0]
    assert item["input_ids"][0] == 2 and item["input_ids"][-1] == 3 and item["labels"] == 6
    masked = sum(t == 4 for t in item["input_ids"])
    assert 60 < masked < 140 and set(item["input_ids"]) <= {2, 3, 4, *range(10, 210)}


def test_seed_study_pairs_retrain_with_finetune_by_seed() -> None:
    gain = paired_gain([0.860, 0.870, 0.865], [0.865, 0.872, 0.866])
    assert gain["mean"] == pytest.approx((0.5 + 0.2 + 0.1) / 3)
    assert gain["se"] == pytest.approx(statistics.stdev([0.5, 0.2, 0.1]) / 3**0.5)
    assert gain["wins"] == 3
    results = {
        1: {"finetune": 0.8600, "hard": 0.8650, "soft": 0.8590},
        2: {"finetune": 0.8700, "hard": 0.8720, "soft": 0.8710},
    }
    text = seed_markdown(results, 4564, "python -m newstopic.study.seed_study")
    assert "| 1 | 0.8600 | 0.8650 (+0.50) | 0.8590 (-0.10) |" in text
    assert "| hard | +0.35 | 0.15 | 2.3 | 2 of 2 |" in text


def test_ablation_report_sets_the_stage_gains_against_training_noise() -> None:
    def stage(acc: float) -> dict[str, float]:
        return {"valid_accuracy": acc, "valid_macro_f1": acc - 0.002}

    rules = {
        "mlm_pretrain": {"wall_s": 2000.0, "max_rss_mb": 5000},
        "retrain": {"wall_s": 300.0, "max_rss_mb": 900},
        "retrain_seed1": {"wall_s": 310.0, "max_rss_mb": 950},  # the seed study's, not the DAG's
    }
    full = {
        "stages": {"baseline": stage(0.8580), "finetune": stage(0.8690), "retrain": stage(0.8670)},
        "rules": rules,
        "snakemake_wall_s": 310.0,  # a rerun that reused mlm_pretrain
        "valid_rows": 4564,
    }
    plain = {
        "stages": {"finetune": stage(0.8440)},
        "rules": {},
        "snakemake_wall_s": 250.0,
        "valid_rows": 4564,
    }
    seeds = {1: {"finetune": 0.8660, "retrain": 0.8700}, 2: {"finetune": 0.8690, "retrain": 0.8710}}
    text = results_markdown(
        {"mlm": full, "no_mlm": plain}, "seed: 42", "python -m newstopic.study.ablation", seeds, 42
    )
    assert "| **whole DAG (sum of the rules)** | 2300.0 | |" in text
    assert "| retrain_seed1 (extra seed, not in the sum) | 310.0 | 950 |" in text
    assert "| 42 (the run above) | 0.8690 | 0.8670 | -0.20 |" in text
    assert "| 1 | 0.8660 | 0.8700 | +0.40 |" in text
    # Mean over the three seeds: finetune 0.8680, retrain 0.8693; paired differences -0.2, 0.4, 0.2.
    assert "| **mean** | 0.8680 | 0.8693 | +0.13 |" in text
    assert "retrain ahead under 2 of 3 seeds" in text
    assert "Mean retrain minus the baseline: +1.13 points (lowest seed +0.90)" in text


def test_ablation_names_the_seed_its_finetune_trains_under(tmp_path: Path) -> None:
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base.write_text("seed: 7\n")
    assert training_seed([base]) == 7
    overlay.write_text("finetune:\n  seed: 3\n")
    assert training_seed([base, overlay]) == 3


def test_seed_runs_recopy_what_no_longer_matches_the_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    (src / "model" / "weights").write_bytes(b"old")
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    assert same_files(src, copy)
    (src / "model" / "weights").write_bytes(b"new encoder")  # the source run was redone
    assert not same_files(src, copy)


def test_ablation_refuses_an_extra_seed_equal_to_the_configs_own(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 5\n")
    with pytest.raises(ValueError, match="--seeds 5: the config's own training seed"):
        run_ablation(Runner(tmp_path, [cfg], 1), tmp_path / "runs", tmp_path / "out.md", "cmd", seeds=[1, 5])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out.md").exists()  # nothing ran


def test_fold_students_learn_from_their_folds_teachers_alone(tmp_path: Path) -> None:
    """With folds, fold k's pseudo-labels come from fold k's teachers only (models that never
    saw fold k's rows): another fold's teacher changing leaves them as they were. The rows file
    (report, next round's agreement) is all K folds' teachers averaged."""
    probs, test = frames()
    write_parquet(test, tmp_path / "test.parquet", UNLABELED_SCHEMA)
    rng = np.random.default_rng(0)

    def teacher(name: str) -> str:
        frame = probs.copy()
        frame[PROB_COLUMNS] = rng.dirichlet(np.full(7, 0.3), len(frame)).astype(np.float32)
        return write_probs(frame, tmp_path / f"{name}.parquet")

    # Fold by fold, two teachers each (e.g. finetune's and the baseline's fold models).
    paths = [teacher(f"{t}_fold{k}") for k in range(3) for t in ("ft", "bl")]
    fold_rows = [str(tmp_path / f"fold{k}.parquet") for k in range(3)]
    section = {"threshold": 0.0, "max_per_class": None, "soft": True}
    args = (str(tmp_path / "test.parquet"), str(tmp_path / "rows.parquet"), str(tmp_path / "report.json"))
    report = pseudo_label_files(paths, *args, section=section, fold_rows=fold_rows)
    for k in range(3):
        expected = (
            read_probs(paths[2 * k])[PROB_COLUMNS].to_numpy()
            + read_probs(paths[2 * k + 1])[PROB_COLUMNS].to_numpy()
        ) / 2
        rows = pd.read_parquet(fold_rows[k]).set_index("index").loc[probs["index"]]
        np.testing.assert_allclose(rows[PROB_COLUMNS].to_numpy(), expected, atol=1e-6)
        assert report["folds"][k]["teachers"] == paths[2 * k : 2 * k + 2]
    mean = np.mean([read_probs(p)[PROB_COLUMNS].to_numpy() for p in paths], axis=0)
    all_rows = pd.read_parquet(tmp_path / "rows.parquet").set_index("index").loc[probs["index"]]
    np.testing.assert_allclose(all_rows[PROB_COLUMNS].to_numpy(), mean, atol=1e-6)

    fold1 = pd.read_parquet(fold_rows[1])
    teacher("ft_fold0"), teacher("bl_fold2")  # other folds' teachers change
    pseudo_label_files(paths, *args, section=section, fold_rows=fold_rows)
    assert pd.read_parquet(fold_rows[1]).equals(fold1)
    assert not pd.read_parquet(fold_rows[0]).equals(fold1)

    with pytest.raises(InputError, match="5 teacher files do not split into 3 folds"):
        pseudo_label_files(paths[:5], *args, section=section, fold_rows=fold_rows)


@pytest.mark.e2e
def test_ablation_trains_extra_seeds_as_targets_of_its_mlm_run(tmp_path: Path) -> None:
    """The ablation's seed study: finetune and retrain under the extra seed are Snakemake
    targets of the mlm run itself (cv.seeds), reported beside the run's own seed."""
    wf = copy_workflow(tmp_path / "wf")
    short = tmp_path / "short.yaml"  # the DAG, not the accuracy, is under test
    short.write_text(
        yaml.safe_dump({"mlm": {"epochs": 1}, "finetune": {"epochs": 2}, "retrain": {"epochs": 1}})
    )
    runner = Runner(wf, [wf / "config" / "config.yaml", short], 2)
    out = tmp_path / "results.md"
    run_ablation(runner, tmp_path / "runs", out, "cmd", seeds=[7])
    results = tmp_path / "runs" / "mlm" / "results"
    seeded = {
        st: json.loads((results / st / "seed7" / "metrics.json").read_text())
        for st in ("finetune", "retrain")
    }
    own = json.loads((results / "finetune" / "metrics.json").read_text())
    assert (
        seeded["finetune"]["train_rows"] == own["train_rows"]
        and seeded["finetune"]["history"] != own["history"]
    )
    row = f"| 7 | {seeded['finetune']['valid_accuracy']:.4f} | {seeded['retrain']['valid_accuracy']:.4f} |"
    assert row in out.read_text()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mlm", "no_mlm"]  # no copied runs
    # The mlm run is complete under its overlay, the seeds' reports too: a rerun has nothing to do.
    mlm = tmp_path / "runs" / "mlm"
    dry_run = [*runner.command(mlm, [mlm / "overlay.yaml"]), "--dry-run"]
    dry = subprocess.run(dry_run, capture_output=True, text=True, check=True)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    # Wall times come with the machine that ran them (CPU model, cores, bf16 unit).
    assert f"Machine: {machine.describe()}." in out.read_text().split("`no_mlm` run")[0]
    # The two runs compared by variant name: docs carry no machine's directories.
    assert "| parameter | mlm | no_mlm |" in out.read_text() and str(tmp_path) not in out.read_text()
    # The mlm run's elapsed time is its whole DAG's, not the seeds' later call in the same
    # directory, also when the report is rewritten from the finished runs.
    dag_log, seeds_log = run_logs(tmp_path / "runs" / "mlm")
    assert elapsed_s(dag_log) != elapsed_s(seeds_log)
    dag_row = f"| the `snakemake` call that ran the DAG, elapsed | {elapsed_s(dag_log):.1f} | |"
    assert dag_row in out.read_text().split("`no_mlm` run")[0]
    run_ablation(runner, tmp_path / "runs", out, "cmd", report_only=True, seeds=[7])
    assert dag_row in out.read_text().split("`no_mlm` run")[0]
