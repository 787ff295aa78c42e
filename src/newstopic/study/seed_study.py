"""Is retraining on pseudo-labels better than fine-tuning, beyond training noise?

One valid split of ~4,600 rows gives each accuracy a standard error of about 0.5 points, and
two training runs of the same recipe differ by a few tenths: one finetune/retrain pair cannot
settle a gain of that size. This study trains both under several training seeds
(`finetune.seed` / `retrain.seed`; the split stays put) and pairs them by seed. Each run is a
real Snakemake run that reuses one finished run's split, tokenizer, MLM encoder and baseline
(`--allowed-rules`), so a seed costs fine-tuning and retraining only.

    python -m newstopic.study.seed_study --configfile config/dacon.yaml --seeds 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from newstopic.atomic import write_text
from newstopic.config import deep_merge
from newstopic.study.runs import Runner, accuracy, same_files

# Pseudo-label variants: name -> config overlay. The first one also trains the seed's finetune,
# which the others reuse (same teacher, so the pairs differ in the pseudo-labels alone).
PSEUDO_VARIANTS: dict[str, dict[str, Any]] = {
    "hard": {"pseudo_label": {"soft": False, "threshold": 0.9}, "retrain": {"input_mask_prob": 0.0}},
    "soft": {"pseudo_label": {"soft": True, "threshold": 0.0}, "retrain": {"input_mask_prob": 0.0}},
    "soft_noised": {"pseudo_label": {"soft": True, "threshold": 0.0}, "retrain": {"input_mask_prob": 0.1}},
}
# What every seed reuses from the finished run: none of it depends on the training seed.
REUSED = ["data", "tokenizer", "mlm", "baseline"]


def run_seed(
    runner: Runner,
    source: Path,
    workdir: Path,
    seed: int,
    variants: dict[str, dict[str, Any]] = PSEUDO_VARIANTS,
    refresh: bool = False,
) -> dict[str, float]:
    """Finetune + each variant's retrain under one training seed; valid accuracies. A variant
    is a config overlay on top of the config files ({} = the config as given).

    A finished run is read, not rerun; with `refresh`, Snakemake is asked again (so a changed
    config reruns what it affects) after the reused results are copied afresh from `source`
    wherever they differ from it (a new MLM encoder, say)."""
    result: dict[str, float] = {}
    first = None
    for variant, extra in variants.items():
        run = workdir / f"seed{seed}" / variant
        if refresh or not (run / "results" / "retrain" / "metrics.json").exists():
            for name in REUSED + (["finetune"] if first else []):
                src, dst = (first or source) / "results" / name, run / "results" / name
                if dst.exists() and not same_files(src, dst):
                    shutil.rmtree(dst)
                if not dst.exists():
                    shutil.copytree(src, dst)  # copy2 keeps mtimes: Snakemake sees them as they are
            seeds = {"finetune": {"seed": seed}, "retrain": {"seed": seed}}
            overlay = deep_merge(deep_merge(runner.data_overlay(), seeds), extra)
            allowed = (
                ["pseudo_label", "retrain"] if first else ["finetune", "predict", "pseudo_label", "retrain"]
            )
            runner.run(run, overlay, ["results/retrain/metrics.json"], allowed)
        first = first or run
        result.setdefault("finetune", accuracy(run, "finetune"))
        result[variant] = accuracy(run, "retrain")
    return result


def read_seed(
    workdir: Path, seed: int, variants: dict[str, dict[str, Any]] = PSEUDO_VARIANTS
) -> dict[str, float]:
    """What run_seed returns, from its finished runs in `workdir` (nothing is trained)."""
    runs = [workdir / f"seed{seed}" / v for v in variants]
    missing = [str(r) for r in runs if not (r / "results" / "retrain" / "metrics.json").exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no finished run (results/retrain/metrics.json missing)")
    return {
        "finetune": accuracy(runs[0], "finetune"),
        **{v: accuracy(r, "retrain") for v, r in zip(variants, runs, strict=True)},
    }


def paired_gain(before: list[float], after: list[float]) -> dict[str, float]:
    """Mean of the per-seed differences (points), its standard error and t (mean / SE)."""
    diffs = [100 * (a - b) for a, b in zip(after, before, strict=True)]
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return {
        "mean": mean,
        "se": se,
        "t": mean / se if se > 0 else float("nan"),
        "wins": sum(d > 0 for d in diffs),
    }


def seed_markdown(
    results: dict[int, dict[str, float]], valid_rows: int, command: str, source: str = ""
) -> str:
    seeds = sorted(results)
    variants = [v for v in PSEUDO_VARIANTS if v in results[seeds[0]]]  # those this study ran
    lines = [
        "# Pseudo-labels against training noise",
        "",
        f"Valid accuracy of finetune and retrain under {len(seeds)} training seeds (`finetune.seed`,",
        f"`retrain.seed`); one split ({valid_rows} valid rows), one tokenizer, MLM encoder and baseline.",
        *([source] if source else []),
        "Written by `python -m newstopic.study.seed_study`; reproduce with:",
        "",
        f"    {command}",
        "",
        "Variants: "
        + "; ".join(f"`{v}` = `{json.dumps(PSEUDO_VARIANTS[v])}`" for v in variants)
        + "; the teachers are the config's.",
        "",
        "| seed | finetune | " + " | ".join(f"retrain ({v})" for v in variants) + " |",
        "| --- | --- | " + " | ".join("---" for _ in variants) + " |",
    ]
    for s in seeds:
        r = results[s]
        cells = [f"{r[v]:.4f} ({100 * (r[v] - r['finetune']):+.2f})" for v in variants]
        lines.append(f"| {s} | {r['finetune']:.4f} | " + " | ".join(cells) + " |")
    ft = [results[s]["finetune"] for s in seeds]
    lines += ["", "Retrain minus finetune, paired by seed (points):", ""]
    lines += [
        "| variant | mean | SE of the mean | t | seeds where retrain wins |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        g = paired_gain(ft, [results[s][v] for s in seeds])
        lines.append(
            f"| {v} | {g['mean']:+.2f} | {g['se']:.2f} | {g['t']:.1f} | {g['wins']} of {len(seeds)} |"
        )
    spread = 100 * statistics.stdev(ft) if len(ft) > 1 else float("nan")
    lines += [
        "",
        f"Training noise: finetune accuracy varies by {spread:.2f} points (SD) across seeds.",
        "",
    ]
    return "\n".join(lines)


def run_seed_study(
    runner: Runner,
    source: Path,
    workdir: Path,
    seeds: list[int],
    out: Path,
    command: str,
    variants: list[str] | None = None,
) -> dict[int, dict[str, float]]:
    """Run (or, for seeds already finished in `workdir`, read) every seed under each variant
    (default: all of PSEUDO_VARIANTS); write `out`."""
    chosen = {v: PSEUDO_VARIANTS[v] for v in variants or PSEUDO_VARIANTS}
    if not (source / "results" / "mlm" / "model").exists():
        raise FileNotFoundError(
            f"{source}: no finished run (results/mlm/model missing); run newstopic.study.ablation first"
        )
    results = {s: run_seed(runner, source, workdir, s, chosen) for s in seeds}
    finetune = json.loads((source / "results" / "finetune" / "metrics.json").read_text())
    mlm = json.loads((source / "results" / "mlm" / "metrics.json").read_text())
    repo = runner.repo
    about = (
        f"Reused from `{source.relative_to(repo) if source.is_relative_to(repo) else source}`: "
        f"its split, tokenizer, MLM encoder (final loss "
        f"{mlm['history'][-1]['train_loss']:.2f}) and baseline, none of which depend on the "
        f"training seed or the pseudo-label settings; its own finetune (the top-level seed) scored "
        f"{finetune['valid_accuracy']:.4f}."
    )
    write_text(out, seed_markdown(results, finetune["valid_rows"], command, about))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", default=".", help="the workflow's repository (default: here)")
    parser.add_argument("--configfile", nargs="+", default=["config/dacon.yaml"])
    parser.add_argument("--source", default="runs/ablation/mlm", help="a finished run of the ablation")
    parser.add_argument(
        "--workdir",
        default="runs/seeds",
        help="where each seed's runs write results/; finished seeds there are read, not rerun "
        "(use a fresh one for another --source)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(PSEUDO_VARIANTS),
        default=list(PSEUDO_VARIANTS),
        help="pseudo-label variants to retrain (the first one also trains each seed's finetune)",
    )
    parser.add_argument("--out", default="docs/pseudo_seeds.md")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    runner = Runner(Path(args.repo).resolve(), [Path(f).resolve() for f in args.configfile], args.cores)
    command = "python -m newstopic.study.seed_study " + shlex.join(sys.argv[1:] if argv is None else argv)
    run_seed_study(
        runner,
        Path(args.source).resolve(),
        Path(args.workdir).resolve(),
        args.seeds,
        Path(args.out),
        command.strip(),
        args.variants,
    )


if __name__ == "__main__":
    main()
