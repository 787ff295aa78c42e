"""K-fold cross-validation (config cv.folds): the folds, and a fold model's training.

The fold assignment is checked on its own (stratified, disjoint, deterministic, every training
row in exactly one fold). A fold model is trained in-process on the demo data twice, once with
the held-out valid split's labels scrambled: every choice (the epoch, the weights, the
out-of-fold predictions) must come out identical, so no valid row reaches epoch selection.
"""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, TINY_ARCH

from newstopic.config import validate_config
from newstopic.errors import InputError
from newstopic.folds import assign_folds, make_folds
from newstopic.formats import LABELED_SCHEMA, read_folds, read_probs, read_split, write_parquet

K = 3


def test_folds_are_stratified_disjoint_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(7, size=1003, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.07, 0.03])
    for k in (2, 3, 5):
        folds = assign_folds(labels, k, seed=42)
        assert folds.shape == labels.shape and set(folds) == set(range(k))  # each row in one fold
        sizes = np.bincount(folds)
        assert sizes.max() - sizes.min() <= 1
        for c in range(7):  # every class spread evenly: stratified
            per_fold = np.bincount(folds[labels == c], minlength=k)
            assert per_fold.max() - per_fold.min() <= 1, (k, c, per_fold)
        assert np.array_equal(folds, assign_folds(labels, k, seed=42))  # deterministic
        assert not np.array_equal(folds, assign_folds(labels, k, seed=43))  # ... from the seed
    with pytest.raises(ValueError):
        assign_folds(labels, 1, seed=0)


@pytest.fixture(scope="module")
def demo_split(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The demo data preprocessed, a tokenizer, K folds; a copy of valid with scrambled labels."""
    from newstopic.preprocess import preprocess
    from newstopic.tokenization import build_and_save_tokenizer

    out = tmp_path_factory.mktemp("folds")
    cfg = validate_config({"preprocess": {"sample_per_class": 60}})
    files = {name: str(out / f"{name}.parquet") for name in ("train", "valid", "test")}
    demo = REPO / "data" / "demo"
    preprocess(
        demo / "demo_train.csv", demo / "demo_test.csv", files, section=cfg["preprocess"], seed=cfg["seed"]
    )
    tok_cfg = {**cfg["tokenizer"], "vocab_size": 400, "min_frequency": 1, "max_length": 24}
    files["tokenizer"] = str(out / "tokenizer")
    build_and_save_tokenizer([files["train"], files["test"]], files["tokenizer"], tok_cfg, cfg["model"])
    files["folds"] = str(out / "folds.parquet")
    make_folds(files["train"], files["folds"], k=K, seed=cfg["seed"])
    valid = read_split(files["valid"], labeled=True)
    valid["topic_idx"] = (valid["topic_idx"] + 1) % 7  # every valid label wrong
    files["poisoned_valid"] = str(out / "poisoned_valid.parquet")
    write_parquet(valid, files["poisoned_valid"], LABELED_SCHEMA)
    return files


def test_folds_file_covers_every_training_row_once(demo_split: dict[str, str]) -> None:
    folds = read_folds(demo_split["folds"])
    train = read_split(demo_split["train"], labeled=True)
    valid = read_split(demo_split["valid"], labeled=True)
    assert sorted(folds["index"]) == sorted(train["index"])  # each training row exactly once
    assert not set(folds["index"]) & set(valid["index"])  # no valid row in any fold
    merged = folds.merge(train, on="index", suffixes=("", "_train"))
    assert (merged["topic_idx"] == merged["topic_idx_train"]).all()


def _train_fold(split: dict[str, str], valid: str, out: Path, fold: int) -> dict:
    from newstopic.stages import StageFiles, run_stage

    cfg = validate_config(
        {
            "model": {"arch": TINY_ARCH, "head_hidden_size": 16},
            "finetune": {"epochs": 3, "batch_size": 16, "lr": 2.0e-3},
        }
    )
    settings = {
        "train": cfg["finetune"],
        "model": cfg["model"],
        "runtime": {**cfg["runtime"], "device": "cpu", "checkpoint_every": 1000},
        "max_length": 24,
        "seed": 1,
        "engine": "loop",
    }
    out.mkdir(parents=True)
    files = StageFiles(
        train=[split["train"]],
        valid=valid,
        tokenizer=split["tokenizer"],
        model=str(out / "model"),
        metrics=str(out / "metrics.json"),
        scratch=str(out / "scratch"),
        folds=split["folds"],
        fold=fold,
        test=split["test"],
        oof_probs=str(out / "oof.parquet"),
        valid_probs=str(out / "valid.parquet"),
        test_probs=str(out / "test.parquet"),
    )
    return run_stage("finetune", files, settings)


def test_valid_labels_choose_nothing_in_a_fold_model(demo_split: dict[str, str], tmp_path: Path) -> None:
    clean = _train_fold(demo_split, demo_split["valid"], tmp_path / "clean", fold=1)
    poisoned = _train_fold(demo_split, demo_split["poisoned_valid"], tmp_path / "poisoned", fold=1)
    # The epoch, its fold scores and every epoch's record: chosen on fold 1 alone.
    keep = ("best_epoch", "fold_accuracy", "fold_loss", "train_rows", "fold_rows")
    assert {k: clean[k] for k in keep} == {k: poisoned[k] for k in keep}
    drop_time = [{k: v for k, v in h.items() if "seconds" not in k} for h in clean["history"]]
    assert drop_time == [{k: v for k, v in h.items() if "seconds" not in k} for h in poisoned["history"]]
    assert all("valid_accuracy" not in h for h in clean["history"])
    # Same weights, so the same predictions of fold 1, valid and test, byte for byte.
    for name in ("oof.parquet", "valid.parquet", "test.parquet", "model/model.safetensors"):
        assert filecmp.cmp(tmp_path / "clean" / name, tmp_path / "poisoned" / name, shallow=False), name
    # The poison is seen where it should be: the valid split's score, reported after training.
    assert poisoned["valid_accuracy"] < clean["valid_accuracy"]

    # OOF rows are exactly fold 1's training rows; the model trained on the other folds.
    folds = read_folds(demo_split["folds"])
    oof = read_probs(tmp_path / "clean" / "oof.parquet")
    assert sorted(oof["index"]) == sorted(folds.loc[folds["fold"] == 1, "index"])
    assert clean["train_rows"] == int((folds["fold"] != 1).sum())
    assert clean["fold_rows"] == len(oof)
    valid_probs = read_probs(tmp_path / "clean" / "valid.parquet")
    assert sorted(valid_probs["index"]) == sorted(read_split(demo_split["valid"], labeled=True)["index"])


def test_stale_folds_file_is_refused(demo_split: dict[str, str], tmp_path: Path) -> None:
    from newstopic.finetune import in_fold

    train = read_split(demo_split["train"], labeled=True)
    assert in_fold(demo_split["folds"], 0, train["index"].to_numpy()).sum() > 0
    with pytest.raises(InputError, match="rows of fold 0 are not training rows"):
        in_fold(demo_split["folds"], 0, train["index"].to_numpy()[:10])
    with pytest.raises(InputError, match="no fold 7"):
        in_fold(demo_split["folds"], 7, train["index"].to_numpy())
    bad = pd.DataFrame({"index": [1, 2], "topic_idx": [0, 1], "fold": [0, 2]})
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="numbered 0..K-1"):
        read_folds(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cv": {"folds": 1}}, "key 'cv.folds': 1 fold leaves nothing to train on"),
        ({"ensemble": {"enabled": True}}, "key 'ensemble.enabled': its weights are fit on out-of-fold"),
        (
            {
                "cv": {"folds": 3},
                "ensemble": {"enabled": True, "members": ["retrain"]},
                "pseudo_label": {"enabled": False},
            },
            "key 'ensemble.members': retrain is a member but pseudo_label.enabled is false",
        ),
        ({"cv": {"folds": 3}, "pseudo_label": {"rounds": 2}}, "key 'pseudo_label.rounds'"),
        (
            {
                "cv": {"folds": 3},
                "ensemble": {"enabled": True, "members": ["retrain"]},
                "pseudo_label": {"rounds": 2},
            },
            "round 0's ensemble needs a member other than retrain",
        ),
    ],
)
def test_inconsistent_cv_settings_stop_at_startup(config: dict, message: str) -> None:
    from newstopic.errors import ConfigError
    from newstopic.startup import check_cv

    with pytest.raises(ConfigError) as err:
        check_cv(validate_config(config))
    assert message in str(err.value) and "\n" not in str(err.value)
    check_cv(
        validate_config({"cv": {"folds": 3}, "ensemble": {"enabled": True}, "pseudo_label": {"rounds": 3}})
    )
