import sys
from pathlib import Path

from newstopic.config import coerce_overrides, validate_config
from newstopic.resources import job_resources
from newstopic.errors import ConfigError

try:
    # Validate against workflow/schemas/config.schema.yaml and fill in every default. Nested
    # --config values arrive as strings: converted to their key's type first.
    _validated = validate_config(
        coerce_overrides(config, workflow.config_settings.config), source="config"
    )
except ConfigError as exc:
    sys.exit(f"newstopic: error: {exc}")
config.clear()
config.update(_validated)


def _check_startup():
    """Every path, CSV and setting the config names, checked before Snakemake builds the DAG
    (so before it deletes the outputs of a job it reruns): newstopic.startup."""
    from newstopic.errors import NewstopicError
    from newstopic.startup import check_startup

    try:
        check_startup(config)
    except NewstopicError as exc:
        sys.exit(f"newstopic: error: {exc}")


_check_startup()

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = "benchmarks"
SCRATCH = config["runtime"]["scratch_dir"]
# K-fold cross-validation (config cv.folds): off (0) leaves the DAG as it was without it.
CV_FOLDS = config["cv"]["folds"]
CV = CV_FOLDS >= 2
FOLDS = f"{RESULTS}/cv/folds.parquet"
ENSEMBLE = config["ensemble"]["enabled"]


wildcard_constraints:
    stage="finetune|retrain",
    fold=r"\d+",


def scratch(rule_name):
    """Resumable checkpoints of a training rule: deliberately not a declared output."""
    return f"{SCRATCH}/{rule_name}"


def resources_of(rule_name):
    """GPUs, nodes, processes, runtime and memory of a GPU-capable rule, from config
    'resources' (the Slurm profile turns them into sbatch flags; 0 GPUs by default)."""
    return job_resources(config["resources"][rule_name])


def runtime_params():
    rt = config["runtime"]
    keys = ["checkpoint_every", "keep_checkpoints", "log_every", "device", "precision"]
    return {key: rt[key] for key in keys}


def training_settings(section, engine=None):
    """The config sections a training rule's stage uses (newstopic.stages.run_stage): its own
    (mlm, finetune or retrain) as `train`, and what every stage shares."""
    return {
        "train": config[section],
        "model": config["model"],
        "runtime": runtime_params(),
        "max_length": config["tokenizer"]["max_length"],
        "seed": config["seed"],
        "engine": engine or config["engine"],
    }


def mlm_text_files():
    """Unlabeled text for MLM: train + test titles (+ valid titles if configured)."""
    files = [f"{RESULTS}/data/train.parquet", f"{RESULTS}/data/test.parquet"]
    if config["mlm"]["include_valid_text"]:
        files.append(f"{RESULTS}/data/valid.parquet")
    return files


def encoder_input():
    """The MLM output as a Snakemake input when MLM is on, else nothing."""
    return [f"{RESULTS}/mlm/model"] if config["mlm"]["enabled"] else []


def encoder_param(wildcards, input):
    """Where fine-tuning takes its encoder from: the MLM output, else model.name_or_path
    (hub id or local directory), else None (random init from model.arch)."""
    return input.encoder[0] if input.encoder else config["model"]["name_or_path"]


def stage_dir(stage):
    """Where a training stage's job writes: results/<stage>, or with folds one directory per
    fold job (a {fold} wildcard)."""
    return f"{RESULTS}/{stage}/fold{{fold}}" if CV else f"{RESULTS}/{stage}"


def job_name(stage):
    """A training job's log and benchmark name: the rule's, with folds + _fold{fold}."""
    return f"{stage}_fold{{fold}}" if CV else stage


def stage_scratch(stage):
    """A training job's checkpoints: each fold job its own directory."""
    if CV:
        return lambda wildcards: f"{SCRATCH}/{stage}_fold{wildcards.fold}"
    return scratch(stage)


# What only a fold job has: empty dicts without folds, so a default run's rules (inputs,
# outputs, params) stay exactly what they were.
def fold_inputs():
    return {"folds": FOLDS, "test": f"{RESULTS}/data/test.parquet"} if CV else {}


def fold_outputs(stage):
    kinds = ("oof_probs", "valid_probs", "test_probs")
    return {k: f"{stage_dir(stage)}/{k}.parquet" for k in kinds} if CV else {}


def fold_params():
    return {"fold": lambda wildcards: int(wildcards.fold)} if CV else {}


def fold_files(stage, name):
    """The K fold jobs' files `name` of a stage (fold_average's inputs)."""
    return [f"{RESULTS}/{stage}/fold{k}/{name}" for k in range(CV_FOLDS)]


def member_files(member):
    """An ensemble member's out-of-fold, valid and test probabilities."""
    if member == "baseline":  # the baseline refit on the folds (rule baseline_folds)
        return {
            k: f"{RESULTS}/baseline/cv/{k}_probs.parquet"
            for k in ("oof", "valid", "test")
        }
    return {
        "oof": f"{RESULTS}/{member}/cv/oof_probs.parquet",
        "valid": f"{RESULTS}/{member}/cv/valid_probs.parquet",
        "test": f"{RESULTS}/{member}/test_probs.parquet",
    }


def ensemble_inputs(kind):
    return [member_files(m)[kind] for m in config["ensemble"]["members"]]


def final_submission():
    if ENSEMBLE:
        return f"{RESULTS}/ensemble/submission.csv"
    return f"{RESULTS}/{final_stage()}/submission.csv"


def final_stage():
    return "retrain" if config["pseudo_label"]["enabled"] else "finetune"


def summary_stages():
    """Stages whose metrics.json the run summary reads."""
    stages = ["baseline", "finetune"]
    stages += ["retrain"] if config["pseudo_label"]["enabled"] else []
    return stages + (["ensemble"] if ENSEMBLE else [])


def benchmarked_rules(wildcards=None):
    """{name: benchmark file} of the rules in this configuration's DAG that have one, in the
    order they run: the producers of the summary's inputs and the submission, and, following
    their inputs back, of everything those need. (An input function: it runs once every rule
    is defined.)"""
    found, seen = {}, set()

    def visit(path):
        for producer in workflow.rules:
            for out in producer.output:
                match = out.match(path)
                if match is None or (producer.name, path) in seen:
                    continue
                seen.add((producer.name, path))
                wildcards = match.groupdict()
                for need in producer.input:
                    if not need.is_callable():
                        visit(str(need.apply_wildcards(wildcards)))
                if producer.benchmark:
                    bench = str(producer.benchmark.apply_wildcards(wildcards))
                    found[Path(bench).stem] = bench

    for path in summary_inputs() + [f"{RESULTS}/submission.csv"]:
        visit(path)
    return found


def summary_inputs():
    """Metrics of every stage and the pseudo-label report: what the run summary reads."""
    files = [f"{RESULTS}/{stage}/metrics.json" for stage in summary_stages()]
    if config["pseudo_label"]["enabled"]:
        files.append(f"{RESULTS}/pseudo_label/report.json")
    return files


def final_targets():
    return [f"{RESULTS}/submission.csv", f"{RESULTS}/summary.md"]
