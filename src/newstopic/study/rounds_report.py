"""Pseudo-label rounds on the real data, round by round (docs/results_cv_rounds.md): what each
round's retrained fold models and its ensemble give on the held-out valid split, how far their
out-of-fold (OOF) accuracy runs ahead of valid (the sign of a teacher that saw the OOF rows),
how much the labels move between rounds, and the wall time each round costs.

    snakemake --cores all --configfile config/dacon.yaml config/dacon_cv.yaml \\
        config/dacon_cv_rounds.yaml                     # in the work directory runs/cv_rounds
    python -m newstopic.study.rounds_report --workdir runs/cv_rounds [--compare runs/cv]

It only reads a finished run (cv.folds >= 2, pseudo_label.rounds >= 2): the rounds' ensemble and
retrain metrics, the summary's rounds table and the benchmark files. `--compare` adds a finished
one-round run of the same folds (e.g. cv_study's) beside round 1, for its retrain's OOF gap.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from newstopic.atomic import write_text
from newstopic.formats import read_benchmark, read_json

# The one-round run's ensemble, as config/dacon_cv.yaml names it.
ONE_ROUND_MEMBERS = ("finetune", "retrain", "baseline")


def _se(accuracy: float, rows: int) -> float:
    return math.sqrt(accuracy * (1 - accuracy) / rows)


def round_wall_s(benchmarks: Path, r: int) -> float:
    """Round r's jobs' wall (its pseudo_label, retrain fold jobs and ensemble; round 0: its
    ensemble), summed from their benchmark files."""
    names = [f"ensemble_round{r}.tsv"]
    if r:
        names += [
            f"pseudo_label_round{r}.tsv",
            *(p.name for p in benchmarks.glob(f"retrain_round{r}_fold*.tsv")),
        ]
    return round(sum(read_benchmark(benchmarks / n)["wall_s"] for n in names if (benchmarks / n).exists()), 1)


def stage_scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """A fold-averaged stage's (or an ensemble's) valid and OOF accuracy, and their gap."""
    valid, oof = metrics["valid_accuracy"], metrics["oof_accuracy"]
    return {
        "valid_accuracy": valid,
        "valid_se": _se(valid, metrics["valid_rows"]),
        "oof_accuracy": oof,
        "oof_minus_valid": oof - valid,
    }


def read_rounds(workdir: Path) -> dict[str, Any]:
    """Every round's figures from a finished run in `workdir`."""
    results, benchmarks = workdir / "results", workdir / "benchmarks"
    summary = read_json(results / "summary.json")
    if "rounds" not in summary:
        raise SystemExit(
            f"rounds_report: {results / 'summary.json'} has no rounds (pseudo_label.rounds >= 2)"
        )
    rounds = []
    for row in summary["rounds"]:
        r = row["round"]
        ensemble = read_json(results / f"round{r}" / "ensemble" / "metrics.json")
        entry = {
            "round": r,
            "ensemble": stage_scores(ensemble),
            "weights": ensemble["weights"],
            "gain": row["gain"],
            "agreement": row["agreement"],
            "wall_s": round_wall_s(benchmarks, r),
        }
        if r:
            entry["retrain"] = stage_scores(read_json(results / f"round{r}" / "retrain" / "metrics.json"))
        rounds.append(entry)
    return {
        "finetune": stage_scores(read_json(results / "finetune" / "metrics.json")),
        "rounds": rounds,
        "dag_wall_s": summary["total_wall_s"],
    }


def read_one_round(
    workdir: Path, members: tuple[str, ...] = ("finetune", "retrain", "baseline")
) -> dict[str, Any]:
    """A finished one-round run's retrain, and its ensemble of `members` refit from their
    probability files as the ensemble rule fits it (that run's own ensemble may have had
    other members, e.g. cv_study's extra seeds)."""
    from newstopic.study.cv_study import Probabilities

    results = workdir / "results"
    ensemble = Probabilities(results).ensemble(list(members))
    ensemble["valid_rows"] = read_json(results / "retrain" / "metrics.json")["valid_rows"]
    return {
        "retrain": stage_scores(read_json(results / "retrain" / "metrics.json")),
        "ensemble": stage_scores(ensemble),
        "weights": dict(zip(members, ensemble["weights"], strict=True)),
    }


def _acc(s: dict[str, Any]) -> str:
    return f"{s['valid_accuracy']:.4f} ({s['valid_se']:.4f})"


def _weights(w: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in w.items())


def rounds_markdown(study: dict[str, Any], command: str) -> str:
    """docs/results_cv_rounds.md."""
    lines = [
        "# Pseudo-label rounds on the real data (5 folds, 2 CPU cores)",
        "",
        "Round r's fold-k students learn soft pseudo-labels from round r-1's ensemble of the",
        "fold-k models only (fold-aware teachers: none of them saw fold k's rows); round 0 is the",
        "ensemble of finetune and the baseline. Valid (4,564 rows) chooses nothing. Written by:",
        "",
        f"    {command}",
        "",
        "| round | retrain: valid (SE) | retrain: OOF − valid (points) | ensemble: valid (SE) "
        "| gain (points) | pseudo-labels as round r−1's | ensemble weights | round wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in study["rounds"]:
        rt = r.get("retrain")
        gain = "" if r["gain"] is None else f"{100 * r['gain']:+.2f}"
        gap = f"{100 * rt['oof_minus_valid']:+.2f}" if rt else ""
        agreement = "" if r["agreement"] is None else f"{100 * r['agreement']:.1f}%"
        lines.append(
            f"| {r['round']} | {_acc(rt) if rt else ''} | {gap} "
            f"| {_acc(r['ensemble'])} | {gain} | {agreement} | {_weights(r['weights'])} | {r['wall_s']:.0f} |"
        )
    ft = study["finetune"]
    lines += [
        "",
        f"finetune (5-fold average): valid {_acc(ft)}, "
        f"OOF − valid {100 * ft['oof_minus_valid']:+.2f} points.",
        f"Whole DAG (every rule's wall from its benchmark file, summed): {study['dag_wall_s']:.0f} s "
        f"({study['dag_wall_s'] / 60:.0f} min) on 2 cores.",
    ]
    if study.get("note"):
        lines += ["", study["note"]]
    if "compare" in study:
        c, r1 = study["compare"], study["rounds"][1]
        lines += [
            "",
            "## Round 1 against teachers that saw every fold",
            "",
            "The same folds, encoder and baseline with one round whose students all learned from the",
            f"5-fold average of finetune and the full-train baseline ({study['compare_dir']}):",
            "",
            "| teachers of fold k's student | retrain: valid (SE) | retrain: OOF − valid (points) "
            "| ensemble: valid (SE) | ensemble weights |",
            "| --- | --- | --- | --- | --- |",
            f"| every fold's models | {_acc(c['retrain'])} | {100 * c['retrain']['oof_minus_valid']:+.2f} "
            f"| {_acc(c['ensemble'])} | {_weights(c['weights'])} |",
            f"| fold k's models only | {_acc(r1['retrain'])} | {100 * r1['retrain']['oof_minus_valid']:+.2f} "
            f"| {_acc(r1['ensemble'])} | {_weights(r1['weights'])} |",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default="runs/cv_rounds", help="the finished rounds run")
    parser.add_argument("--compare", default=None, help="a finished one-round run of the same folds")
    parser.add_argument("--out", default="docs/results_cv_rounds.md")
    parser.add_argument("--note", default=None, help="a paragraph to add (how the run was made)")
    args = parser.parse_args(argv)
    study = read_rounds(Path(args.workdir))
    if args.compare:
        study |= {"compare": read_one_round(Path(args.compare)), "compare_dir": args.compare}
    if args.note:
        study["note"] = args.note
    given = sys.argv[1:] if argv is None else argv
    out = Path(args.out)
    write_text(out, rounds_markdown(study, "python -m newstopic.study.rounds_report " + shlex.join(given)))
    write_text(out.with_suffix(".yaml"), yaml.safe_dump(study, sort_keys=False))
    print(out.read_text())


if __name__ == "__main__":
    main()
