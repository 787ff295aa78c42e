"""The k-fold recipe on the real data, step by step (docs/results_cv.md): what one fold model,
the K-fold average, the baseline as a member, the pseudo-label round and the ensemble each
give on the held-out valid split, under several training seeds, with the wall time it costs.

    python -m newstopic.study.cv_study --configfile config/dacon.yaml config/dacon_cv.yaml \\
        --workdir runs/cv --seeds 1 2

Three real Snakemake runs in one work directory:
1. the config's whole DAG (its wall time is the recipe's);
2. the same DAG with `cv.seeds` set to --seeds, asking only for the extra seeds' finetune and
   retrain fold jobs (same folds, encoder, baseline and pseudo-labels: only the training seed
   changes);
3. the DAG's ensemble rule with every seed's finetune and retrain and the baseline as members:
   the recipe without a time limit.
Each step's valid accuracy is computed here from the runs' probability files, with the same
weight fit on out-of-fold rows as the ensemble rule (`newstopic.ensemble.fit_weights`); the
valid split chooses nothing.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from newstopic.atomic import write_text
from newstopic.config import deep_merge
from newstopic.ensemble import aligned_probs, fit_weights
from newstopic.formats import read_benchmark, read_folds, read_json, read_split
from newstopic.members import BASELINE, parse_member
from newstopic.metrics import classification_metrics
from newstopic.study.runs import Runner, last_run_wall_s, merged_config, reproducing_args, training_seed

STAGES = ("finetune", "retrain")
BUDGET_S = 3600  # issue 14: one recipe whose whole DAG runs within an hour on 2 cores


# --- reading a finished run -----------------------------------------------------------------------
class Probabilities:
    """A run's labels (the folds' rows and the valid rows) and its members' probabilities."""

    def __init__(self, results: Path) -> None:
        self.results = results
        folds = read_folds(results / "cv" / "folds.parquet")
        valid = read_split(results / "data" / "valid.parquet", labeled=True)
        self.oof_index, self.y_oof = folds["index"].to_numpy(), folds["topic_idx"].to_numpy()
        self.valid_index, self.y_valid = valid["index"].to_numpy(), valid["topic_idx"].to_numpy()
        self.folds = sorted(folds["fold"].unique().tolist())

    def member_dir(self, member: str) -> Path:
        if member == BASELINE:
            return self.results / "baseline"
        return self.results / parse_member(member, {}, _seeds_of(member)).directory()

    def member(self, member: str) -> tuple[np.ndarray, np.ndarray]:
        """OOF and valid probabilities of a member (its K fold models as one)."""
        folder = self.member_dir(member) / "cv"
        return (
            aligned_probs(str(folder / "oof_probs.parquet"), self.oof_index),
            aligned_probs(str(folder / "valid_probs.parquet"), self.valid_index),
        )

    def fold_models(self, member: str) -> list[float]:
        """Valid accuracy of each fold model of a trained member, alone."""
        return [
            classification_metrics(
                self.y_valid,
                aligned_probs(
                    str(self.member_dir(member) / f"fold{k}" / "valid_probs.parquet"), self.valid_index
                ),
            )["valid_accuracy"]
            for k in self.folds
        ]

    def ensemble(self, members: list[str]) -> dict[str, Any]:
        """Weights fit on OOF rows only, then scored on valid (one member: weight 1)."""
        probs = [self.member(m) for m in members]
        weights = fit_weights([p[0] for p in probs], self.y_oof)
        oof = np.tensordot(weights, np.stack([p[0] for p in probs]), axes=1)
        valid = np.tensordot(weights, np.stack([p[1] for p in probs]), axes=1)
        return {
            "members": members,
            "weights": weights.round(4).tolist(),
            **classification_metrics(self.y_oof, oof, prefix="oof_"),
            **classification_metrics(self.y_valid, valid),
        }


def _seeds_of(member: str) -> list[int]:
    return [int(member.split("@seed")[1])] if "@seed" in member else []


def seeded(stage: str, seed: int | None) -> str:
    return stage if seed is None else f"{stage}@seed{seed}"


def recipe_steps(
    probs: Probabilities, seed: int | None, stages: tuple[str, ...] = STAGES
) -> dict[str, dict[str, Any]]:
    """The recipe's steps at one training seed (None: the config's own); those of retrain
    only when `stages` has it."""
    ft, rt = seeded("finetune", seed), seeded("retrain", seed)
    folds = probs.fold_models(ft)
    steps = {
        "fold_model": {"valid_accuracy": float(np.mean(folds)), "folds": folds},
        "finetune": probs.ensemble([ft]),
        "finetune+baseline": probs.ensemble([ft, BASELINE]),
    }
    if "retrain" in stages:
        steps |= {"retrain": probs.ensemble([rt]), "ensemble": probs.ensemble([ft, rt, BASELINE])}
    return steps


STEP_NAMES = {
    "fold_model": "one fold model (trained on {k1} of {k} folds), mean of the {k}",
    "finetune": "{k}-fold average of finetune",
    "finetune+baseline": "+ the TF-IDF baseline as a member",
    "retrain": "{k}-fold average of retrain (round 1: soft pseudo-labels)",
    "ensemble": "ensemble: finetune + retrain + baseline (the submission)",
}

# Each step as a DAG of its own: the config with this overlay submits that step's predictions.
# Its wall is the sum of its jobs' walls in the study's run (`snakemake -n --forceall` lists them).
STEP_DAGS: dict[str, dict[str, Any]] = {
    "finetune": {"pseudo_label": {"enabled": False}, "ensemble": {"enabled": False}},
    "finetune+baseline": {
        "pseudo_label": {"enabled": False},
        "ensemble": {"enabled": True, "members": ["finetune", BASELINE]},
    },
    "retrain": {"ensemble": {"enabled": False}},
    "ensemble": {},
}


def benchmarks(workdir: Path) -> dict[str, dict[str, float]]:
    """Every job's wall time and peak RSS, by its benchmark file's name (finetune_fold0, ...)."""
    return {p.stem: read_benchmark(p) for p in sorted((workdir / "benchmarks").glob("*.tsv"))}


def dag_jobs(runner: Runner, workdir: Path, overlay: dict[str, Any]) -> list[str]:
    """The benchmark names of the jobs of the whole DAG the config + `overlay` makes (jobs
    without a benchmark file, the local rules that take a second or less, are not listed)."""
    overlay_file = workdir / "step_overlay.yaml"
    write_text(overlay_file, yaml.safe_dump(overlay, allow_unicode=True))
    cmd = [*runner.command(workdir, [overlay_file]), "-n", "--forceall", "--nolock"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    overlay_file.unlink()
    if out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return sorted(
        {Path(b).stem for b in re.findall(r"^\s*benchmark: (\S+\.tsv)$", out.stdout + out.stderr, re.M)}
    )


def step_jobs(runner: Runner, workdir: Path, overlay: dict[str, Any]) -> dict[str, list[str]]:
    """Each step's jobs; one fold model's are the K-fold average's with one finetune fold."""
    jobs = {step: dag_jobs(runner, workdir, deep_merge(overlay, o)) for step, o in STEP_DAGS.items()}
    one = [j for j in jobs["finetune"] if not j.startswith("finetune_fold") or j == "finetune_fold0"]
    return {"fold_model": one, **jobs}


def rule_of(job: str) -> str:
    """finetune_seed1_fold3 -> finetune_seed*_fold*: one line per rule in the wall table."""
    parts = ["seed*" if p.startswith("seed") and p[4:].isdigit() else p for p in job.split("_")]
    parts = ["fold*" if p.startswith("fold") and p[4:].isdigit() else p for p in parts]
    return "_".join(parts)


# --- the report ------------------------------------------------------------------------------------
def se_binomial(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error across seeds (0 with one value)."""
    mean = float(np.mean(values))
    return mean, (float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0)


def results_markdown(study: dict[str, Any], command: str, config_text: str) -> str:
    k, n = study["folds"], study["valid_rows"]
    names = {s: t.format(k=k, k1=k - 1) for s, t in STEP_NAMES.items()}
    top = study["steps"][str(study["top_seed"])]
    lines = [
        "# The k-fold recipe on the real data (offline, 2 CPU cores)",
        "",
        "The same held-out valid split as docs/results.md (a stratified 10% of Dacon's train.csv);",
        "folds, epoch choice, ensemble weights and pseudo-labels never see it. Written by",
        "`newstopic.study.cv_study`; reproduce with:",
        "",
        f"    {command}",
        "",
        *([study["note"], ""] if study.get("note") else []),
        f"## The recipe step by step (training seed {study['top_seed']})",
        "",
        "Wall: the whole DAG that submits this step's predictions (the config with the step's",
        "overlay, `cv_study.STEP_DAGS`), its jobs' walls summed from this run's benchmark files.",
        "",
        "| step | valid accuracy | SE | valid macro-F1 | OOF accuracy | wall (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for step, name in names.items():
        r = top[step]
        acc = r["valid_accuracy"]
        f1 = f"{r['valid_macro_f1']:.4f}" if "valid_macro_f1" in r else "—"
        oof = f"{r['oof_accuracy']:.4f}" if "oof_accuracy" in r else "—"
        wall = study["step_wall_s"][step]
        lines.append(f"| {name} | {acc:.4f} | {se_binomial(acc, n):.4f} | {f1} | {oof} | {wall:.0f} |")
    weights = ", ".join(
        f"{m} {w:.3f}" for m, w in zip(top["ensemble"]["members"], top["ensemble"]["weights"], strict=True)
    )
    folds = ", ".join(f"{a:.4f}" for a in top["fold_model"]["folds"])
    lines += [
        "",
        f"Ensemble weights (fit on {study['oof_rows']} OOF rows): {weights}. The {k} fold models "
        f"alone: {folds}. SE: the binomial standard error of one accuracy on {n} valid rows.",
        "",
        f"Whole DAG: {study['dag_wall_s']:.0f} s of rules summed"
        + (
            f", {study['dag_elapsed_s']:.0f} s elapsed (`snakemake` from an empty work directory)."
            if "dag_elapsed_s" in study
            else " (its runs were not one `snakemake` from an empty work directory: no elapsed time)."
        ),
        "",
    ]
    in_budget = [names[s] for s, wall in study["step_wall_s"].items() if wall <= BUDGET_S]
    best = max(
        (s for s, wall in study["step_wall_s"].items() if wall <= BUDGET_S and s != "fold_model"),
        key=lambda s: top[s]["valid_accuracy"],
        default=None,
    )
    lines += [
        f"Within {BUDGET_S // 60} minutes on 2 cores: {'; '.join(in_budget) or 'no step'}."
        + (f" The most accurate of them: {names[best]}." if best else ""),
        "",
    ]
    seeds = list(study["steps"])
    if len(seeds) > 1:
        lines += [
            f"## Under {len(seeds)} training seeds",
            "",
            f"Each extra seed (`cv.seeds`) trains {' and '.join(study['seed_stages'])} again (all folds),",
            "on the same folds, MLM encoder and baseline (a retrain learns the same pseudo-labels, the",
            "config's own seed's teachers'): the spread below is the training noise of those stages.",
            "",
            "| step | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | SE over seeds |",
            "| --- | " + " | ".join("---" for _ in seeds) + " | --- | --- |",
        ]
        for step, name in names.items():
            values = [study["steps"][s][step]["valid_accuracy"] for s in seeds if step in study["steps"][s]]
            shown = [
                f"{study['steps'][s][step]['valid_accuracy']:.4f}" if step in study["steps"][s] else "—"
                for s in seeds
            ]
            mean, se = mean_se(values)
            spread = f"{se:.4f}" if len(values) > 1 else "— (one seed)"
            lines.append(f"| {name} | " + " | ".join(shown) + f" | **{mean:.4f}** | {spread} |")
        last = [step for step in names if all(step in study["steps"][s] for s in seeds)][-1]
        gain = [
            100
            * (study["steps"][s][last]["valid_accuracy"] - study["steps"][s]["fold_model"]["valid_accuracy"])
            for s in seeds
        ]
        g, g_se = mean_se(gain)
        lines += [
            "",
            f"{names[last]} minus one fold model, paired by seed: {g:+.2f} points (SE {g_se:.2f}).",
            "",
        ]
        best = study["best"]
        weights = ", ".join(
            f"{m} {w:.3f}" for m, w in zip(best["members"], best["weights"], strict=True) if w > 0
        )
        acc = best["valid_accuracy"]
        # config/dacon_cv_seeds.yaml lists the extra seeds' finetune models only.
        as_config = (
            "as config/dacon_cv_seeds.yaml does for seeds 1 and 2"
            if study["seed_stages"] == ["finetune"]
            else "config/dacon_cv_seeds.yaml is this ensemble without the retrained seeds"
        )
        lines += [
            "## Without a time limit: every seed's members in one ensemble",
            "",
            f"Members: {', '.join(best['members'])} (an overlay setting `cv.seeds` and these "
            f"`ensemble.members`; {as_config}).",
            "",
            "| ensemble | valid accuracy | SE | valid macro-F1 | OOF accuracy | whole DAG wall (s) |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {len(best['members'])} members | {acc:.4f} | {se_binomial(acc, n):.4f} | "
            f"{best['valid_macro_f1']:.4f} | {best['oof_accuracy']:.4f} | {study['all_wall_s']:.0f} |",
            "",
            f"Non-zero weights: {weights}. The DAG's own ensemble rule, run with these members, "
            f"scored {study['dag_best_valid_accuracy']:.4f}.",
            "",
        ]
    lines += [
        "## Wall time per rule",
        "",
        "| rule | jobs | wall (s), all jobs | peak RSS (MB), highest |",
        "| --- | --- | --- | --- |",
    ]
    for rule, r in study["rules"].items():
        lines.append(f"| {rule} | {r['jobs']} | {r['wall_s']:.1f} | {r['max_rss_mb']:.0f} |")
    lines += ["", "## Config", "", "```yaml", config_text.rstrip(), "```", ""]
    return "\n".join(lines)


def read_study(
    workdir: Path,
    config: dict[str, Any],
    seeds: list[int],
    steps_jobs: dict[str, list[str]],
    seed_stages: tuple[str, ...] = STAGES,
) -> dict[str, Any]:
    """The study's figures from the finished runs in `workdir`; `steps_jobs`: each step's jobs
    (`step_jobs`)."""
    results = workdir / "results"
    probs = Probabilities(results)
    top_seed = training_seed(config)
    steps = {str(top_seed): recipe_steps(probs, None)}
    steps |= {str(s): recipe_steps(probs, s, seed_stages) for s in seeds}
    jobs = benchmarks(workdir)
    rules: dict[str, dict[str, float]] = {}
    for job, b in jobs.items():
        r = rules.setdefault(rule_of(job), {"jobs": 0, "wall_s": 0.0, "max_rss_mb": 0.0})
        r["jobs"] += 1
        r["wall_s"] += b["wall_s"]
        r["max_rss_mb"] = max(r["max_rss_mb"], b["max_rss_mb"])
    study: dict[str, Any] = {
        "folds": len(probs.folds),
        "valid_rows": len(probs.valid_index),
        "oof_rows": len(probs.oof_index),
        "top_seed": top_seed,
        "steps": steps,
        "step_wall_s": {s: sum(jobs[j]["wall_s"] for j in names) for s, names in steps_jobs.items()},
        "dag_wall_s": sum(jobs[j]["wall_s"] for j in steps_jobs["ensemble"]),
        "all_wall_s": sum(b["wall_s"] for b in jobs.values()),
        "rules": rules,
        "seed_stages": list(seed_stages),
    }
    if seeds:
        study["best"] = probs.ensemble(best_members(seeds, seed_stages))
    return study


def best_members(seeds: list[int], seed_stages: tuple[str, ...] = STAGES) -> list[str]:
    return [*STAGES, *(seeded(st, s) for s in seeds for st in seed_stages), BASELINE]


def run_study(
    runner: Runner,
    workdir: Path,
    out: Path,
    seeds: list[int],
    command: str,
    report_only: bool,
    seed_stages: tuple[str, ...] = STAGES,
    note: str | None = None,
) -> dict:
    overlay = runner.data_overlay(relative_to=workdir)
    config = merged_config(runner.config_files)
    if not config["cv"]["folds"] or not config["ensemble"]["enabled"]:
        raise SystemExit(
            "cv_study: the config needs cv.folds >= 2 and ensemble.enabled (config/dacon_cv.yaml)"
        )
    state_file = workdir / "cv_study.yaml"
    if not report_only:
        runner.run(workdir, overlay)  # 1. the recipe's whole DAG
        if not state_file.exists():  # the run from an empty work directory, not a later top-up
            write_text(state_file, yaml.safe_dump({"dag_elapsed_s": last_run_wall_s(workdir)}))
        if seeds:
            seed_overlay = deep_merge(overlay, {"cv": {"seeds": seeds}})
            targets = [f"results/{st}/seed{s}/metrics.json" for s in seeds for st in seed_stages]
            runner.run(workdir, seed_overlay, targets)  # 2. the extra seeds' fold jobs
            best = deep_merge(seed_overlay, {"ensemble": {"members": best_members(seeds, seed_stages)}})
            runner.run(workdir, best, ["results/ensemble/metrics.json"])  # 3. their ensemble
    study = read_study(workdir, config, seeds, step_jobs(runner, workdir, overlay), seed_stages)
    if state_file.exists():
        study |= yaml.safe_load(state_file.read_text())
    if note:
        study["note"] = note
    if seeds:
        study["dag_best_valid_accuracy"] = read_json(workdir / "results" / "ensemble" / "metrics.json")[
            "valid_accuracy"
        ]
    config_text = "\n".join(f"# {f.name}\n{f.read_text()}" for f in runner.config_files)
    write_text(out, results_markdown(study, command, config_text))
    write_text(out.with_suffix(".yaml"), yaml.safe_dump(study, sort_keys=False))
    return study


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", default=".", help="the workflow's repository (default: here)")
    parser.add_argument("--configfile", nargs="+", default=["config/dacon.yaml", "config/dacon_cv.yaml"])
    parser.add_argument("--workdir", default="runs/cv", help="where the runs write results/")
    parser.add_argument("--out", default="docs/results_cv.md")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seeds", nargs="*", type=int, default=[], help="extra training seeds (cv.seeds)")
    parser.add_argument(
        "--seed-stages",
        nargs="+",
        choices=STAGES,
        default=list(STAGES),
        help="what the extra seeds train again (finetune alone: about half the time)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite --out from the finished runs in --workdir"
    )
    parser.add_argument("--note", default=None, help="a paragraph to add (how the runs were made)")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m newstopic.study.cv_study " + shlex.join(reproducing_args(given))
    runner = Runner(Path(args.repo).resolve(), [Path(f).resolve() for f in args.configfile], args.cores)
    run_study(
        runner,
        Path(args.workdir).resolve(),
        Path(args.out),
        args.seeds,
        command.strip(),
        args.report_only,
        tuple(args.seed_stages),
        args.note,
    )


if __name__ == "__main__":
    main()
