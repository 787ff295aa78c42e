"""How good are the pseudo-label teachers? Scored where the labels are known: the valid split.

The pseudo_label rule labels test rows with the (averaged) probabilities of its teachers and
keeps those above a threshold. The same teachers applied to the valid rows show what that
buys: accuracy, the share of rows kept (coverage) and how many of the kept labels are right
(precision), for each teacher alone and averaged.

    python -m newstopic.study.teachers runs/ablation/mlm/results --configfile config/dacon.yaml
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from newstopic.baseline import calibrated_svm, tfidf_vectorizer
from newstopic.formats import read_split


def selection_quality(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy of argmax, and coverage / precision of the rows whose max prob >= threshold."""
    right = probs.argmax(1) == labels
    kept = probs.max(1) >= threshold
    return {
        "accuracy": float(right.mean()),
        "coverage": float(kept.mean()),
        "precision": float(right[kept].mean()) if kept.any() else float("nan"),
    }


def teacher_quality(
    results_dir: str | Path,
    *,
    threshold: float,
    max_length: int,
    c: float = 0.3,
    ngram_max: int = 3,
    analyzer: str = "char_wb",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Score the finetune model, the calibrated baseline and their mean on valid."""
    from newstopic.data import encode
    from newstopic.model import NewsTopicClassifier
    from newstopic.predict import predict_proba
    from newstopic.tokenization import load_tokenizer

    results = Path(results_dir)
    train = read_split(results / "data" / "train.parquet", labeled=True)
    valid = read_split(results / "data" / "valid.parquet", labeled=True)
    model_dir = results / "finetune" / "model"
    tokenizer = load_tokenizer(model_dir)
    model = NewsTopicClassifier.from_pretrained(model_dir).eval()
    ids = encode(tokenizer, valid["title"].tolist(), max_length)
    model_probs = predict_proba(model, ids, tokenizer.pad_token_id, batch_size)
    vectorizer = tfidf_vectorizer(analyzer, ngram_max)
    svm = calibrated_svm(vectorizer.fit_transform(train["title"]), train["topic_idx"].to_numpy(), c)
    svm_probs = svm.predict_proba(vectorizer.transform(valid["title"]))
    labels = valid["topic_idx"].to_numpy()
    teachers = {
        "finetune": model_probs,
        "baseline (calibrated)": svm_probs,
        "finetune + baseline": (model_probs + svm_probs) / 2,
    }
    return {
        "results": str(results),
        "valid_rows": len(valid),
        "threshold": threshold,
        "teachers": {name: selection_quality(labels, p, threshold) for name, p in teachers.items()},
    }


def quality_markdown(report: dict[str, Any], command: str) -> str:
    lines = [
        "# Pseudo-label teachers, scored on the valid split",
        "",
        f"What the pseudo_label rule would keep at threshold {report['threshold']} if the valid rows "
        f"({report['valid_rows']}) were the unlabeled ones. Reproduce with:",
        "",
        f"    {command}",
        "",
        "| teacher | accuracy | kept (coverage) | kept labels right (precision) |",
        "| --- | --- | --- | --- |",
    ]
    for name, q in report["teachers"].items():
        lines.append(f"| {name} | {q['accuracy']:.4f} | {q['coverage']:.1%} | {q['precision']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from newstopic.atomic import write_json, write_text
    from newstopic.config import load_config
    from newstopic.errors import run_main

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("results", help="a run's results/ directory (with data/ and finetune/model/)")
    parser.add_argument("--configfile", default="config/dacon.yaml", help="the config that run used")
    parser.add_argument("--out", default="docs/pseudo_labels.md")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv

    def report() -> str:
        config = load_config(args.configfile)
        quality = teacher_quality(
            args.results,
            threshold=config["pseudo_label"]["threshold"],
            max_length=config["tokenizer"]["max_length"],
            c=config["baseline"]["c"],
            ngram_max=config["baseline"]["ngram_max"],
            analyzer=config["baseline"]["analyzer"],
        )
        text = quality_markdown(quality, "python -m newstopic.study.teachers " + shlex.join(given))
        write_text(args.out, text)
        write_json(Path(args.out).with_suffix(".json"), quality)
        return text

    print(run_main(report))


if __name__ == "__main__":
    main()
