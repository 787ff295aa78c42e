"""The real-data ablation behind docs/results.md: the full DAG (MLM + pseudo-labels) and the
same DAG without MLM, each a real Snakemake run, reported side by side with the baseline.

    python -m newstopic.study.ablation --configfile config/dacon.yaml --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from newstopic.atomic import write_text
from newstopic.study import machine
from newstopic.study.compare_runs import compare, read_run
from newstopic.study.runs import Runner, accuracy, last_run_wall_s, merged_config, reproducing_args
from newstopic.study.runs import training_seed as config_training_seed
from newstopic.study.seed_study import paired_gain

# A variant's whole-DAG elapsed time, written by the call that ran it.
ELAPSED_FILE = "dag_elapsed.yaml"
# An extra training seed's job: common.smk's job_name appends _seed<N> to the rule's name.
EXTRA_SEED_JOB = re.compile(r".+_seed\d+")
# Variant name -> config overlay. "mlm" is the config as given (MLM on, pseudo-labels on).
VARIANTS: dict[str, dict[str, Any]] = {
    "mlm": {},
    "no_mlm": {"mlm": {"enabled": False}, "pseudo_label": {"enabled": False}},
}


def training_seed(config_files: list[Path]) -> int:
    """The seed the config's own finetune trains under (finetune.seed, else the top-level seed)."""
    return config_training_seed(merged_config(config_files))


def read_variant(workdir: Path) -> dict[str, Any]:
    """A finished run's results/summary.json, its valid row count, its wall time and machine
    (as run_ablation recorded them; else the latest Snakemake run's time, machine unknown)."""
    summary = json.loads((workdir / "results" / "summary.json").read_text())
    finetune = json.loads((workdir / "results" / "finetune" / "metrics.json").read_text())
    summary["valid_rows"] = finetune["valid_rows"]
    elapsed = workdir / ELAPSED_FILE
    recorded = yaml.safe_load(elapsed.read_text()) if elapsed.exists() else {}
    summary["snakemake_wall_s"] = recorded.get("dag_elapsed_s") or last_run_wall_s(workdir)
    summary["machine"] = recorded.get("machine")
    return summary


def seeds_markdown(full: dict[str, Any], seeds: dict[int, dict[str, float]], top_seed: int) -> list[str]:
    """The finetune/retrain pair under several training seeds: is each stage's gain bigger
    than the noise of training it?"""
    rows = {top_seed: {s: full["stages"][s]["valid_accuracy"] for s in ("finetune", "retrain")}, **seeds}
    order = sorted(rows)
    base = full["stages"]["baseline"]["valid_accuracy"]
    ft = [rows[s]["finetune"] for s in order]
    rt = [rows[s]["retrain"] for s in order]
    gain = paired_gain(ft, rt)
    lines = [
        f"## Training noise: finetune and retrain under {len(order)} training seeds",
        "",
        "One split, tokenizer, MLM encoder, baseline and pseudo-labels (the `mlm` run's); the",
        "extra seeds (`cv.seeds`: Snakemake targets `results/<stage>/seed<s>/` of that run) vary",
        "the head's initialisation, batch order, dropout and input noise of finetune and retrain.",
        "",
        "| training seed | finetune | retrain | retrain - finetune (points) |",
        "| --- | --- | --- | --- |",
    ]
    for s in order:
        r = rows[s]
        mark = " (the run above)" if s == top_seed else ""
        diff = 100 * (r["retrain"] - r["finetune"])
        lines.append(f"| {s}{mark} | {r['finetune']:.4f} | {r['retrain']:.4f} | {diff:+.2f} |")
    mean_ft, mean_rt = sum(ft) / len(ft), sum(rt) / len(rt)
    lines += [
        f"| **mean** | {mean_ft:.4f} | {mean_rt:.4f} | {gain['mean']:+.2f} |",
        "",
        f"Retrain minus finetune, paired by seed: {gain['mean']:+.2f} points (SE {gain['se']:.2f}), "
        f"retrain ahead under {gain['wins']} of {len(order)} seeds. Mean retrain minus the baseline: "
        f"{100 * (mean_rt - base):+.2f} points (lowest seed {100 * (min(rt) - base):+.2f}).",
        "",
    ]
    return lines


def results_markdown(
    runs: dict[str, dict[str, Any]],
    config_text: str,
    command: str,
    seeds: dict[int, dict[str, float]] | None = None,
    top_seed: int = 0,
    comparison: str = "",
) -> str:
    """docs/results.md; `comparison`: the two runs side by side (newstopic.study.compare_runs,
    Markdown), placed before the config."""
    full, plain = runs["mlm"], runs["no_mlm"]
    rows = [
        ("baseline: TF-IDF char 1-3-grams + LinearSVC", full["stages"]["baseline"], ["baseline"]),
        (
            "no MLM: finetune from random init",
            plain["stages"]["finetune"],
            ["build_tokenizer", "finetune"],
            plain,
        ),
        (
            "MLM: finetune from the MLM encoder",
            full["stages"]["finetune"],
            ["build_tokenizer", "mlm_pretrain", "finetune"],
        ),
        (
            "MLM + pseudo-labels: retrain",
            full["stages"]["retrain"],
            ["build_tokenizer", "mlm_pretrain", "finetune", "predict_finetune", "pseudo_label", "retrain"],
        ),
    ]
    lines = [
        "# Results on the real data (offline, 2 CPU cores)",
        "",
        "Valid split: a stratified 10% of Dacon's train.csv (the test labels are not public; nothing",
        "is tuned on the test set). Written by `newstopic.study.ablation`; reproduce with:",
        "",
        f"    {command}",
        "",
        "| model | valid accuracy | valid macro-F1 | training wall (s) |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        name, m, rules = row[0], row[1], row[2]
        run = row[3] if len(row) > 3 else full
        wall = sum(run["rules"][r]["wall_s"] for r in rules if r in run["rules"])
        lines.append(f"| {name} | {m['valid_accuracy']:.4f} | {m['valid_macro_f1']:.4f} | {wall:.0f} |")
    lines += [
        "",
        "Training wall = the rules that model needs beyond preprocess (tokenizer, MLM, "
        "fine-tuning, pseudo-labelling), from Snakemake's benchmark files.",
        "",
    ]
    for name, run in runs.items():
        lines += [
            f"## Wall time per rule: `{name}` run",
            "",
            f"Machine: {run.get('machine') or 'not recorded by this run'}.",
            "",
            "| rule | wall (s) | peak RSS (MB) |",
            "| --- | --- | --- |",
        ]
        # The extra seeds' jobs (finetune_seed1, ...) are the seed study's, not the DAG's.
        dag = {r: b for r, b in run["rules"].items() if not EXTRA_SEED_JOB.fullmatch(r)}
        extra = {r: b for r, b in run["rules"].items() if r not in dag}
        lines += [f"| {r} | {b['wall_s']:.1f} | {b['max_rss_mb']:.0f} |" for r, b in dag.items()]
        # The rules run one after another (each takes every core), so their sum is the DAG's wall
        # even when a rerun reused some of them; the last Snakemake invocation may be partial.
        total = sum(b["wall_s"] for b in dag.values())
        lines += [
            f"| **whole DAG (sum of the rules)** | {total:.1f} | |",
            f"| the `snakemake` call that ran the DAG, elapsed | {run['snakemake_wall_s']:.1f} | |",
        ]
        lines += [
            f"| {r} (extra seed, not in the sum) | {b['wall_s']:.1f} | {b['max_rss_mb']:.0f} |"
            for r, b in extra.items()
        ]
        lines.append("")
    n = full["valid_rows"]
    acc = full["stages"]["finetune"]["valid_accuracy"]
    lines += [
        f"Sampling noise: with {n} valid rows, one accuracy near {acc:.2f} has a standard error of "
        f"{(acc * (1 - acc) / n) ** 0.5:.4f}; differences smaller than that are not evidence.",
        "",
    ]
    p = full.get("pseudo_label")
    if p:
        # Reports from before pseudo_label.teachers existed name none: finetune was the one.
        paths = p.get("teachers", ["results/finetune/test_probs.parquet"])
        teachers = ", ".join(Path(t).parent.name for t in paths)
        kind = "soft (the teachers' averaged probabilities)" if p.get("soft") else "hard (argmax)"
        lines += [
            f"Pseudo-labels: {p['accepted']} of {p['test_rows']} test rows "
            f"({p['acceptance_rate']:.1%}) at threshold {p['threshold']}, {kind}, teachers: {teachers}.",
            "",
        ]
    if seeds:
        lines += seeds_markdown(full, seeds, top_seed)
    if comparison:
        lines += ["The two runs side by side (`python -m newstopic.study.compare_runs`):", "", comparison]
    lines += ["## Config", "", "```yaml", config_text.rstrip(), "```", ""]
    return "\n".join(lines)


def run_ablation(
    runner: Runner,
    workdir: Path,
    out: Path,
    command: str,
    report_only: bool = False,
    seeds: list[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every variant (or, with report_only, read the finished runs), then finetune and
    retrain again under each extra training seed, and write `out`."""
    top_seed = training_seed(runner.config_files)
    if top_seed in (seeds or []):
        raise ValueError(f"--seeds {top_seed}: the config's own training seed, which the mlm run trains")
    runs = {}
    for name, overlay in VARIANTS.items():
        if not report_only:
            seconds = runner.run(workdir / name, {**overlay, **runner.data_overlay()})
            if seconds is not None:  # this call ran the DAG; the extra seeds' later calls are not it
                record = {"dag_elapsed_s": seconds, "machine": machine.describe()}
                write_text(workdir / name / ELAPSED_FILE, yaml.safe_dump(record))
        runs[name] = read_variant(workdir / name)
    # finetune and retrain once more per extra seed (cv.seeds: jobs of the mlm run itself, on
    # its split, encoder and pseudo-labels; nothing else reruns, nothing is copied). The whole
    # DAG, not only the seeds' models: their reports and the summary too, so that the run is
    # complete under its overlay (a later `snakemake` there has nothing to do).
    stages = ("finetune", "retrain")
    if seeds and not report_only:
        overlay = {**VARIANTS["mlm"], **runner.data_overlay(), "cv": {"seeds": seeds}}
        runner.run(workdir / "mlm", overlay)
    repeats = {s: {st: accuracy(workdir / "mlm", f"{st}/seed{s}") for st in stages} for s in seeds or []}
    config_text = "\n".join(f"# {f.name}\n{f.read_text()}" for f in runner.config_files)
    # The generic comparison of the two runs: the keys that differ and every metric with its
    # difference (this report's tables above add the rule groups and the seeds' statistics).
    # Columns named by variant, as the sections above are (no machine's absolute paths in docs).
    variants = [replace(read_run(str(workdir / name)), name=name) for name in VARIANTS]
    comparison = compare(variants, markdown=True)
    write_text(out, results_markdown(runs, config_text, command, repeats, top_seed, comparison))
    return runs


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--repo", default=".", help="the workflow's repository (default: here)")
    parser.add_argument("--configfile", nargs="+", default=["config/dacon.yaml"])
    parser.add_argument(
        "--workdir",
        default="runs/ablation",
        help="where the two runs write results/ (the extra seeds' under mlm/results/<stage>/seed<s>/)",
    )
    parser.add_argument("--out", default="docs/results.md")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=[],
        help="extra training seeds (finetune.seed / retrain.seed): finetune and retrain again on the "
        "mlm run's encoder under each, to set the stages' gains against training noise",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite --out from the finished runs in --workdir (wall times from their Snakemake logs)",
    )
    args = parser.parse_args(argv)
    # The command that reproduces the runs (not merely the report).
    given = sys.argv[1:] if argv is None else argv
    command = "python -m newstopic.study.ablation " + shlex.join(reproducing_args(given))
    runner = Runner(Path(args.repo).resolve(), [Path(f).resolve() for f in args.configfile], args.cores)
    run_ablation(
        runner, Path(args.workdir).resolve(), Path(args.out), command.strip(), args.report_only, args.seeds
    )


if __name__ == "__main__":
    main()
