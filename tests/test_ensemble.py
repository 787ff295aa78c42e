"""The ensemble rule's core: convex weights fit on out-of-fold predictions only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from newstopic.ensemble import ensemble_files, fit_weights
from newstopic.errors import InputError
from newstopic.formats import (
    FOLDS_SCHEMA,
    LABELED_SCHEMA,
    PROB_COLUMNS,
    PROBS_SCHEMA,
    probs_frame,
    read_probs,
    write_parquet,
)

N_OOF, N_VALID, N_TEST = 600, 150, 80


def _noisy(labels: np.ndarray, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities of a member that puts `skill` extra mass on the true class, noisily."""
    logits = rng.normal(size=(len(labels), 7))
    logits[np.arange(len(labels)), labels] += skill
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.log(probs[np.arange(len(labels)), labels]).mean())


def test_weights_are_convex_and_no_worse_than_any_member() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, N_OOF)
    members = [_noisy(labels, s, rng) for s in (3.0, 1.5, 0.0)]  # strong, weak, useless
    w = fit_weights(members, labels)
    assert w.shape == (3,) and np.all(w >= 0) and abs(w.sum() - 1) < 1e-9
    assert w[0] > w[1] and w[2] < 0.05  # the useless member gets (almost) nothing
    mix = np.tensordot(w, np.stack(members), axes=1)
    assert _log_loss(labels, mix) <= min(_log_loss(labels, m) for m in members) + 1e-9
    assert np.array_equal(w, fit_weights(members, labels))  # deterministic
    assert fit_weights(members[:1], labels).tolist() == [1.0]


@pytest.fixture
def member_files(tmp_path: Path) -> tuple[dict, dict, list[str]]:
    rng = np.random.default_rng(1)
    oof_index, valid_index = np.arange(N_OOF), np.arange(N_OOF, N_OOF + N_VALID)
    test_index = np.arange(10_000, 10_000 + N_TEST)
    y_oof, y_valid = rng.integers(0, 7, N_OOF), rng.integers(0, 7, N_VALID)
    folds = pd.DataFrame({"index": oof_index, "topic_idx": y_oof, "fold": oof_index % 3})
    write_parquet(folds, tmp_path / "folds.parquet", FOLDS_SCHEMA)
    valid = pd.DataFrame({"index": valid_index, "title": "t", "title_raw": "t", "topic_idx": y_valid})
    write_parquet(valid, tmp_path / "valid.parquet", LABELED_SCHEMA)
    inputs: dict = {"folds": str(tmp_path / "folds.parquet"), "valid": str(tmp_path / "valid.parquet")}
    names = ["a", "b"]
    for kind in ("oof", "valid_probs", "test_probs"):
        inputs[kind] = []
        for name, skill in zip(names, (2.5, 1.0), strict=True):
            index, y = {"oof": (oof_index, y_oof), "valid_probs": (valid_index, y_valid)}.get(
                kind, (test_index, rng.integers(0, 7, N_TEST))
            )
            path = tmp_path / f"{name}_{kind}.parquet"
            write_parquet(probs_frame(index, _noisy(y, skill, rng).astype(np.float32)), path, PROBS_SCHEMA)
            inputs[kind].append(str(path))
    outputs = {
        k: str(tmp_path / "out" / f"{k}.{ext}")
        for k, ext in [
            ("metrics", "json"),
            ("report", "md"),
            ("oof", "parquet"),
            ("valid_probs", "parquet"),
            ("test_probs", "parquet"),
            ("submission", "csv"),
        ]
    }
    (tmp_path / "out").mkdir()
    return inputs, outputs, names


def test_ensemble_files_report_and_submission(member_files: tuple[dict, dict, list[str]]) -> None:
    inputs, outputs, names = member_files
    m = ensemble_files(inputs, outputs, members=names)
    assert json.loads(Path(outputs["metrics"]).read_text())["weights"] == m["weights"]
    assert [r["name"] for r in m["members"]] == names
    for key in ("oof_accuracy", "oof_macro_f1", "valid_accuracy", "valid_macro_f1"):
        assert 0 <= m[key] <= 1 and all(key in r for r in m["members"])
    assert m["oof_loss"] <= min(r["oof_loss"] for r in m["members"]) + 1e-6
    report = Path(outputs["report"]).read_text()
    assert "| a |" in report and "**ensemble**" in report and "equal weights" in report
    test = read_probs(outputs["test_probs"])
    sub = pd.read_csv(outputs["submission"])
    assert sub["index"].tolist() == test["index"].tolist() == list(range(10_000, 10_000 + N_TEST))
    assert (sub["topic_idx"] == test["topic_idx"]).all()


def test_valid_rows_reach_no_weight(member_files: tuple[dict, dict, list[str]], tmp_path: Path) -> None:
    """Scrambling the valid split's labels and probabilities changes the reported valid scores,
    never the weights or the test predictions."""
    inputs, outputs, names = member_files
    clean = ensemble_files(inputs, outputs, members=names)
    clean_test = read_probs(outputs["test_probs"])
    valid = pd.read_parquet(inputs["valid"])
    valid["topic_idx"] = (valid["topic_idx"] + 3) % 7
    write_parquet(valid, inputs["valid"], LABELED_SCHEMA)
    for path in inputs["valid_probs"]:
        frame = read_probs(path)
        probs = frame.filter(like="prob_").to_numpy()[:, ::-1].copy()
        write_parquet(probs_frame(frame["index"].to_numpy(), probs), path, PROBS_SCHEMA)
    poisoned = ensemble_files(inputs, outputs, members=names)
    assert poisoned["weights"] == clean["weights"]
    assert read_probs(outputs["test_probs"]).equals(clean_test)
    assert poisoned["valid_accuracy"] != clean["valid_accuracy"]

    # A valid row inside the folds (a folds file of another split) would be fit on: refused.
    folds = pd.read_parquet(inputs["folds"])
    folds.loc[0, "index"] = valid["index"].iat[0]
    write_parquet(folds, inputs["folds"], FOLDS_SCHEMA)
    with pytest.raises(InputError, match="valid row index .* is in a fold"):
        ensemble_files(inputs, outputs, members=names)


def test_fold_mixtures_use_each_folds_models_alone(
    member_files: tuple[dict, dict, list[str]], tmp_path: Path
) -> None:
    """The ensemble's fold-k test probabilities (the next round's teacher of fold k's students)
    are the weighted mix of the members' fold-k models: changing another fold's files leaves
    fold k's mixture as it was."""
    inputs, outputs, names = member_files
    rng = np.random.default_rng(2)
    test_index = read_probs(inputs["test_probs"][0])["index"].to_numpy()

    def random_probs(path: Path | str) -> None:
        write_parquet(probs_frame(test_index, rng.dirichlet(np.ones(7), len(test_index))), path, PROBS_SCHEMA)

    k = 3
    inputs["fold_test_probs"] = []
    for name in names:  # member by member, each member's K fold files
        for fold in range(k):
            path = tmp_path / f"{name}_fold{fold}_test.parquet"
            write_parquet(
                probs_frame(test_index, rng.dirichlet(np.ones(7), len(test_index))), path, PROBS_SCHEMA
            )
            inputs["fold_test_probs"].append(str(path))
    outputs["fold_test"] = [str(tmp_path / "out" / f"fold{fold}_test.parquet") for fold in range(k)]
    m = ensemble_files(inputs, outputs, members=names)
    w = np.array([m["weights"][n] for n in names])
    for fold in range(k):
        members = [
            read_probs(inputs["fold_test_probs"][i * k + fold])[PROB_COLUMNS].to_numpy() for i in range(2)
        ]
        mixed = read_probs(outputs["fold_test"][fold])
        assert mixed["index"].tolist() == test_index.tolist()
        np.testing.assert_allclose(
            mixed[PROB_COLUMNS].to_numpy(), w[0] * members[0] + w[1] * members[1], atol=1e-5
        )
    fold1 = read_probs(outputs["fold_test"][1])
    for name in names:  # fold 0's and fold 2's models change: fold 1's mixture does not
        for fold in (0, 2):
            path = inputs["fold_test_probs"][names.index(name) * k + fold]
            write_parquet(
                probs_frame(test_index, rng.dirichlet(np.ones(7), len(test_index))), path, PROBS_SCHEMA
            )
    ensemble_files(inputs, outputs, members=names)
    assert read_probs(outputs["fold_test"][1]).equals(fold1)
    assert not read_probs(outputs["fold_test"][0]).equals(read_probs(outputs["fold_test"][1]))

    inputs["fold_test_probs"] = inputs["fold_test_probs"][:-1]
    with pytest.raises(InputError, match="5 fold test files: not 3 per member"):
        ensemble_files(inputs, outputs, members=names)
