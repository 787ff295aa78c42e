import sys

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


wildcard_constraints:
    stage="finetune|retrain",


def scratch(rule_name):
    """Resumable checkpoints of a training rule: deliberately not a declared output."""
    return f"{SCRATCH}/{rule_name}"


def resources_of(rule_name):
    """GPUs, nodes, processes, runtime and memory of a GPU-capable rule, from config
    'resources' (the Slurm profile turns them into sbatch flags; 0 GPUs by default)."""
    return job_resources(config["resources"][rule_name])


def runtime_params():
    rt = config["runtime"]
    return dict(
        checkpoint_every=rt["checkpoint_every"],
        keep_checkpoints=rt["keep_checkpoints"],
        log_every=rt["log_every"],
        device=rt["device"],
        precision=rt["precision"],
    )


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


def final_stage():
    return "retrain" if config["pseudo_label"]["enabled"] else "finetune"


def summary_stages():
    """Stages whose metrics.json the run summary reads."""
    stages = ["baseline", "finetune"]
    return stages + (["retrain"] if config["pseudo_label"]["enabled"] else [])


def benchmarked_rules():
    """Benchmark files (benchmarks/<name>.tsv) of the rules this configuration runs."""
    names = ["preprocess", "build_tokenizer", "baseline"]
    names += ["mlm_pretrain"] if config["mlm"]["enabled"] else []
    names += ["finetune", "predict_finetune"]
    if config["pseudo_label"]["enabled"]:
        names += ["pseudo_label", "retrain", "predict_retrain"]
    return names


def final_targets():
    return [f"{RESULTS}/submission.csv", f"{RESULTS}/summary.md"]
