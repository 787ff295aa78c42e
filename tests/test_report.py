"""`snakemake --report report.html` on the demo: the files the report rules write (confusion
matrices, per-topic tables, learning curves, pseudo-labels, summary, config), the report's
categories and captions, and the report opened in a real headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, run_snakemake

from newstopic.report import loss_by_step
from newstopic.study import report_view

NAMES = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]
# Short training (the pictures and tables are tested, not the accuracy); threshold 0.3 so that
# a briefly trained teacher still keeps rows.
FAST = {
    "mlm": {"epochs": 1},
    "finetune": {"epochs": 2},
    "retrain": {"epochs": 2},
    "pseudo_label": {"threshold": 0.3},
}
CATEGORIES = [
    "1. Run summary",
    "2. Valid scores by topic",
    "3. Learning curves",
    "4. Pseudo-labels",
    "6. Configuration",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, then its report."""
    wf = copy_workflow(tmp_path_factory.mktemp("report") / "wf")
    run_snakemake(wf, config=FAST)
    run_snakemake(wf, "--report", "report.html", config=FAST)
    return wf


def png(path: Path) -> np.ndarray:
    assert path.is_file(), f"missing {path}"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.05, f"{path} is blank"
    return image


def test_valid_scores_by_topic(run: Path) -> None:
    """Per stage: precision/recall/F1 per topic with the names, and a confusion matrix; the
    accuracy of the evaluate rule's valid predictions is the stage's own valid accuracy."""
    valid = pd.read_parquet(run / "results" / "data" / "valid.parquet")
    for stage in ("finetune", "retrain"):
        table = pd.read_csv(run / "results" / "report" / f"{stage}_per_topic.csv", keep_default_na=False)
        assert table["topic"].tolist() == [*NAMES, "macro average", "accuracy"]
        topics = table.iloc[:7]
        assert topics["valid_rows"].sum() == len(valid)
        assert (topics["valid_rows"].to_numpy() == np.bincount(valid["topic_idx"], minlength=7)).all()
        for col in ("precision", "recall", "f1"):
            assert topics[col].astype(float).between(0, 1).all()
        metrics = json.loads((run / "results" / stage / "metrics.json").read_text())
        accuracy = float(table.iloc[8]["f1"])
        assert abs(accuracy - metrics["valid_accuracy"]) <= 1 / len(valid) + 1e-4, (accuracy, metrics)
        macro_f1 = float(table.iloc[7]["f1"])
        assert abs(macro_f1 - metrics["valid_macro_f1"]) <= 0.02
        probs = pd.read_parquet(run / "results" / stage / "valid_probs.parquet")
        assert sorted(probs["index"]) == sorted(valid["index"])
        png(run / "results" / "report" / f"{stage}_confusion.png")


def test_learning_curves_and_pseudo_labels(run: Path) -> None:
    png(run / "results" / "report" / "mlm_loss.png")
    png(run / "results" / "report" / "training_curves.png")
    png(run / "results" / "report" / "pseudo_labels.png")
    steps, losses = loss_by_step(run / "logs" / "mlm_pretrain.log")
    assert steps and steps == sorted(steps) and all(np.isfinite(losses))
    agreement = pd.read_csv(run / "results" / "report" / "teacher_agreement.csv")
    row = agreement.iloc[0]
    assert row["teachers"] == "finetune vs baseline" and 0 <= row["agreement"] <= 1
    report = json.loads((run / "results" / "pseudo_label" / "report.json").read_text())
    assert row["kept_rows"] == report["accepted"] and row["test_rows"] == report["test_rows"]


def test_summary_table_and_config(run: Path) -> None:
    table = pd.read_csv(run / "results" / "report" / "summary.csv")
    assert table["stage"].tolist() == ["baseline", "finetune", "retrain", "whole run (all rules)"]
    summary = json.loads((run / "results" / "summary.json").read_text())
    assert table["valid_accuracy"].iloc[1] == pytest.approx(
        summary["stages"]["finetune"]["valid_accuracy"], abs=1e-4
    )
    assert (table["wall_s"].iloc[:3] > 0).all() and table["peak_rss_mb"].iloc[:3].notna().all()
    config = yaml.safe_load((run / "results" / "config.yaml").read_text())
    assert (
        config["finetune"]["epochs"] == 2 and config["data"]["topic_dict"] == "data/demo/demo_topic_dict.csv"
    )
    assert config["tokenizer"]["max_length"] == 32  # defaults and config files merged
    # With topic names, the submission still holds Dacon's integer topic_idx.
    submission = pd.read_csv(run / "results" / "submission.csv")
    assert list(submission.columns) == ["index", "topic_idx"] and submission["topic_idx"].between(0, 6).all()
    assert submission["topic_idx"].dtype.kind == "i"


def test_report_holds_the_run(run: Path) -> None:
    """The report file embeds every category, caption and result."""
    html = (run / "report.html").read_text(encoding="utf-8")
    for text in [*CATEGORIES, "Confusion matrix of", "Per-topic scores of", "Masked-language-model loss"]:
        assert text in html, text
    assert "What the pseudo-labels did" in html and "The configuration that produced this run" in html
    # Tables as HTML pages (the report shows those; a CSV it would only offer as a download).
    shown = ["finetune_confusion.png", "retrain_per_topic.html", "mlm_loss.png", "teacher_agreement.html"]
    for name in [*shown, "summary.html", "config.html", "training_curves.png", "pseudo_labels.png"]:
        assert f"filename={name};" in html, name
    page = (run / "results" / "report" / "retrain_per_topic.html").read_text(encoding="utf-8")
    assert all(f"<td>{name}</td>" in page for name in NAMES), page
    # No engines comparison in this run: its category appears only when it was run.
    assert "5. Engines" not in html


def test_report_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    """Opened in a real browser, the report's page lists the categories, and clicking through to
    retrain's confusion matrix shows the picture."""
    if report_view.browser() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it)")
    home = report_view.render(run / "report.html")
    for category in CATEGORIES:
        assert category in home, category
    shot = tmp_path / "shot.png"
    page = report_view.render(
        run / "report.html",
        clicks=["2. Valid scores by topic", "retrain", "css:a[iconname=eye]"],
        screenshot=shot,
    )
    assert "confusion matrix" in page and "precision, recall, F1 per topic" in page
    shown = re.search(r'<img src="data:image/png;[^"]*filename=retrain_confusion.png;base64,', page)
    assert shown, "retrain's confusion matrix is not shown"
    png(shot)
    table = report_view.render(
        run / "report.html",
        clicks=[
            "2. Valid scores by topic",
            "retrain",
            "precision, recall, F1 per topic",
            "css:a[iconname=eye]",
        ],
    )
    assert re.search(r'<iframe src="data:text/html;[^"]*filename=retrain_per_topic.html;', table)


def test_loss_by_step_reads_both_engines_logs(tmp_path: Path) -> None:
    """The loop's progress lines, the hf engine's loss lines (not its eval losses), and a resumed
    run's lines after an interruption's: a step seen twice keeps its last value."""
    log = tmp_path / "mlm_pretrain.log"
    log.write_text(
        "10:00:00 INFO step 20/60 epoch 0 loss 6.4339 lr 6.73e-04 (10.86 steps/s, 0m03s left)\n"
        "10:00:01 INFO step 40/60 epoch 0 loss 5.9041 lr 2.88e-04 (12.95 steps/s, 0m01s left)\n"
        "10:00:02 INFO resumed at step 20 of 60\n"
        "10:00:03 INFO step 40/60 epoch 0 loss 5.9000 lr 2.88e-04 (11.00 steps/s, 0m01s left)\n"
        "10:00:04 INFO step 60 epoch 1.00: loss 5.5 learning_rate 0.0001\n"
        "10:00:05 INFO step 60 epoch 1.00: eval_valid_loss 0.3 eval_valid_accuracy 0.9\n"
    )
    assert loss_by_step(log) == ([20, 40, 60], [6.4339, 5.9, 5.5])
    assert loss_by_step(tmp_path / "absent.log") == ([], [])  # no log: no curve, no failure
