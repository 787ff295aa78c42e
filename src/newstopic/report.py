"""What `snakemake --report report.html` shows (workflow/rules/report.smk): each trained stage's
valid predictions, confusion matrix and per-topic scores; learning curves; what the
pseudo-labels did; the run summary as a table; the config of the run. Pictures are drawn by
newstopic.plots, tables are CSV files (the report renders them as tables).

The MLM loss by step comes from the rule's log (`step N/T epoch E loss L ...` lines of the loop,
`step N epoch E: loss L` of the hf engine): the stage's metrics.json holds one record per
epoch, and recording every step in it would change the training state that a resumed run must
reproduce bit for bit.
"""

from __future__ import annotations

import html
import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from newstopic import NUM_LABELS
from newstopic.atomic import atomic_path, write_text
from newstopic.errors import InputError
from newstopic.formats import (
    PROB_COLUMNS,
    PROBS_SCHEMA,
    probs_frame,
    read_json,
    read_probs,
    read_split,
    write_parquet,
)
from newstopic.labels import label_of

log = logging.getLogger("newstopic")


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; font-size: 14px; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #eef; }} td:first-child, th:first-child {{ text-align: left; }}
pre {{ font-size: 13px; }}
</style></head><body><h3>{title}</h3>
{body}
</body></html>
"""


def write_html(path: str | Path, title: str, body: str) -> None:
    """A small standalone page: Snakemake's report shows HTML (and pictures) in its own view,
    whereas a CSV or text file is only offered as a download."""
    write_text(path, _PAGE.format(title=html.escape(title), body=body))


def write_html_table(frame: pd.DataFrame, path: str | Path, title: str) -> None:
    write_html(path, title, frame.to_html(index=False, na_rep="", border=0))


# --- valid predictions, confusion matrix, per-topic scores ------------------------------------
def evaluate_model_dir(
    model_dir: str, valid_path: str, probs_path: str, *, settings: dict[str, Any], threads: int = 1
) -> int:
    """The evaluate rule: a trained stage's class probabilities on the valid split (PROBS_SCHEMA,
    as predict writes for test). `settings`: max_length, batch_size, device."""
    import torch

    from newstopic.data import encode
    from newstopic.device import resolve_device
    from newstopic.model import NewsTopicClassifier
    from newstopic.predict import predict_proba
    from newstopic.tokenization import load_tokenizer

    torch.set_num_threads(threads)
    valid = read_split(valid_path, labeled=True)
    tokenizer = load_tokenizer(model_dir)
    model = NewsTopicClassifier.from_pretrained(model_dir).to(resolve_device(settings["device"]))
    ids = encode(tokenizer, valid["title"].tolist(), settings["max_length"])
    probs = predict_proba(model, ids, tokenizer.pad_token_id, settings["batch_size"])
    write_parquet(probs_frame(valid["index"].to_numpy(), probs), probs_path, PROBS_SCHEMA)
    log.info("%s: %d valid rows predicted", model_dir, len(valid))
    return len(valid)


def valid_labels_and_predictions(valid_path: str, probs_path: str) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted topics of the valid rows, matched on index."""
    valid = read_split(valid_path, labeled=True)
    probs = read_probs(probs_path)
    merged = valid[["index", "topic_idx"]].merge(
        probs[["index", *PROB_COLUMNS]], on="index", how="left", validate="1:1"
    )
    missing = merged[PROB_COLUMNS[0]].isna()
    if missing.any():
        raise InputError(f"{probs_path}: no prediction for valid index {merged['index'][missing].iat[0]}")
    return merged["topic_idx"].to_numpy(), merged[PROB_COLUMNS].to_numpy().argmax(1)


def per_topic_table(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str] | None) -> pd.DataFrame:
    """Precision, recall, F1 and rows (support) per topic, then the macro average and accuracy."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(NUM_LABELS))
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    table = pd.DataFrame(
        {
            "topic_idx": [str(i) for i in labels],
            "topic": [label_of(list(names) if names else None, i) for i in labels],
            "precision": p,
            "recall": r,
            "f1": f,
            "valid_rows": n,
        }
    )
    macro = {
        "topic_idx": "",
        "topic": "macro average",
        "precision": p.mean(),
        "recall": r.mean(),
        "f1": f.mean(),
    }
    accuracy = float((y_true == y_pred).mean()) if len(y_true) else float("nan")
    overall = {"topic_idx": "", "topic": "accuracy", "precision": np.nan, "recall": np.nan, "f1": accuracy}
    rows = [macro | {"valid_rows": len(y_true)}, overall | {"valid_rows": len(y_true)}]
    out = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    return out.round({"precision": 4, "recall": 4, "f1": 4}).astype({"valid_rows": "Int64"})


def topic_scores(
    stage: str, valid_path: str, probs_path: str, names: Sequence[str] | None, outputs: Mapping[str, str]
) -> pd.DataFrame:
    """The topic_scores rule: a stage's per-topic table (`table` CSV, `html` page) and its
    confusion matrix (`confusion` PNG)."""
    from sklearn.metrics import confusion_matrix

    from newstopic import plots

    y_true, y_pred = valid_labels_and_predictions(valid_path, probs_path)
    table = per_topic_table(y_true, y_pred, names)
    write_csv(table, outputs["table"])
    write_html_table(table, outputs["html"], f"{stage}: precision, recall and F1 per topic on valid")
    png_path = outputs["confusion"]
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(NUM_LABELS)))
    accuracy = float((y_true == y_pred).mean())
    plots.confusion_matrix(
        matrix, names, png_path, f"{stage}: valid confusion matrix (accuracy {accuracy:.4f})"
    )
    return table


# --- learning curves ----------------------------------------------------------------------------
_LOOP_LINE = re.compile(r"\bstep (\d+)/\d+ epoch \d+ loss ([-+\d.eE]+|nan)")
_HF_LINE = re.compile(r"\bstep (\d+) epoch [\d.]+: (?:.*\s)?loss ([-+\d.eE]+|nan)")


def loss_by_step(log_path: str | Path) -> tuple[list[int], list[float]]:
    """(steps, running mean losses) of a training rule's log; a resumed run's lines follow the
    ones before the interruption, so a step seen twice keeps its last value."""
    path = Path(log_path)
    if not path.is_file():
        log.warning("%s: not found: the MLM loss by step is not drawn", path)
        return [], []
    found: dict[int, float] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LOOP_LINE.search(line) or _HF_LINE.search(line)
        if match:
            found[int(match.group(1))] = float(match.group(2))
    steps = sorted(found)
    return steps, [found[s] for s in steps]


def learning_curves(
    mlm: Mapping[str, str] | None, stages: Mapping[str, str], mlm_png: str | None, curves_png: str
) -> None:
    """The learning_curves rule. `mlm`: {metrics, log} of mlm_pretrain (None when MLM is off);
    `stages`: {name: metrics.json} of the classifier stages."""
    from newstopic import plots

    if mlm and mlm_png:
        steps, losses = loss_by_step(mlm["log"])
        plots.mlm_loss(steps, losses, read_json(mlm["metrics"]).get("history", []), mlm_png)
    histories = {name: read_json(path).get("history", []) for name, path in stages.items()}
    plots.training_curves(histories, curves_png)


# --- pseudo-labels --------------------------------------------------------------------------------
def teacher_agreement(teachers: Mapping[str, pd.DataFrame], kept_index: np.ndarray) -> pd.DataFrame:
    """For each pair of teachers: on how many test rows (and kept rows) their topics agree."""
    chosen = {
        name: frame.set_index("index")[PROB_COLUMNS].to_numpy().argmax(1) for name, frame in teachers.items()
    }
    index = next(iter(teachers.values()))["index"].to_numpy()
    kept = np.isin(index, kept_index)
    rows = []
    for a, b in itertools.combinations(chosen, 2):
        same = chosen[a] == chosen[b]
        rows.append(
            {
                "teachers": f"{a} vs {b}",
                "test_rows": len(same),
                "agreement": float(same.mean()) if len(same) else float("nan"),
                "kept_rows": int(kept.sum()),
                "agreement_on_kept": float(same[kept].mean()) if kept.any() else float("nan"),
            }
        )
    if not rows:  # one teacher: nothing to compare, said in the table rather than an empty file
        rows.append(
            {"teachers": f"{next(iter(chosen))} alone", "test_rows": len(index), "kept_rows": int(kept.sum())}
        )
    table = pd.DataFrame(rows)
    return table.round({c: 4 for c in ("agreement", "agreement_on_kept") if c in table})


def pseudo_label_report(
    report_path: str,
    rows_path: str,
    teacher_probs: Mapping[str, str],
    names: Sequence[str] | None,
    outputs: Mapping[str, str],
) -> None:
    """The pseudo_label_plots rule: rows kept per topic and the confidence histogram (`png`), the
    agreement between teachers (`agreement` CSV, `agreement_html` page)."""
    from newstopic import plots
    from newstopic.pseudo import average_probs

    report = read_json(report_path)
    kept = pd.read_parquet(rows_path, columns=["index", "topic_idx"])
    frames = {name: read_probs(path) for name, path in teacher_probs.items()}
    # Sorted by index, as the teachers' frames are compared below.
    frames = {name: frame.sort_values("index").reset_index(drop=True) for name, frame in frames.items()}
    mean = average_probs(list(frames.values()), list(teacher_probs.values()))
    confidence = mean[PROB_COLUMNS].to_numpy().max(1)
    kept_conf = confidence[np.isin(mean["index"].to_numpy(), kept["index"].to_numpy())]
    per_topic = [int(report["per_class"].get(str(i), 0)) for i in range(NUM_LABELS)]
    plots.pseudo_labels(per_topic, confidence, kept_conf, float(report["threshold"]), names, outputs["png"])
    agreement = teacher_agreement(frames, kept["index"].to_numpy())
    write_csv(agreement, outputs["agreement"])
    write_html_table(agreement, outputs["agreement_html"], "Agreement between the pseudo-label teachers")


# --- the run summary and the config -----------------------------------------------------------------
def summary_table(summary_path: str, table_path: str, html_path: str) -> pd.DataFrame:
    """results/summary.json as one row per stage: valid accuracy, macro-F1, rows, and the wall
    time and peak memory of the rule that trained it."""
    summary = read_json(summary_path)
    rules = summary.get("rules", {})
    rows = []
    for stage, m in summary.get("stages", {}).items():
        bench = rules.get(stage, {})
        rows.append(
            {
                "stage": stage,
                "valid_accuracy": m.get("valid_accuracy"),
                "valid_macro_f1": m.get("valid_macro_f1"),
                "train_rows": m.get("train_rows"),
                "wall_s": bench.get("wall_s"),
                "peak_rss_mb": bench.get("max_rss_mb"),
            }
        )
    rows.append({"stage": "whole run (all rules)", "wall_s": summary.get("total_wall_s")})
    table = pd.DataFrame(rows).round({"valid_accuracy": 4, "valid_macro_f1": 4, "wall_s": 1})
    # Whole numbers stay whole beside the empty cells of the last row (pandas would make floats).
    table["train_rows"] = table["train_rows"].astype("Int64")
    table["peak_rss_mb"] = table["peak_rss_mb"].round().astype("Int64")
    write_csv(table, table_path)
    write_html_table(table, html_path, "Run summary: valid scores, time and memory per stage")
    return table


def write_run_config(config: Mapping[str, Any], path: str, html_path: str) -> None:
    """The validated config of the run, defaults filled in: what produced these results (and
    what newstopic.study.compare_runs reads to tell two runs' parameters apart); also as a page
    for the report."""
    header = "# The configuration of this run, every default filled in (written by the run_config rule).\n"
    text = header + yaml.safe_dump(dict(config), allow_unicode=True, sort_keys=True)
    write_text(path, text)
    write_html(html_path, "The configuration of this run", f"<pre>{html.escape(text)}</pre>")


def engines_table(csv_path: str, html_path: str) -> None:
    """The engines_table rule: compare_engines' table as a page for the report."""
    try:
        frame = pd.read_csv(csv_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{csv_path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    write_html_table(frame, html_path, "Training engines: the hand-written loop vs the Hugging Face Trainer")
