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


def _topic_names():
    from newstopic.labels import topic_names

    return topic_names(config)


# The topic names in topic_idx order (config labels or data.topic_dict), None for ids; checked
# at start-up. Trained models carry them (id2label), the report shows them.
TOPIC_NAMES = _topic_names()

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
    keys = ["checkpoint_every", "keep_checkpoints", "log_every", "device", "precision"]
    return {key: rt[key] for key in keys}


def training_settings(section, engine=None):
    """The config sections a training rule's stage uses (newstopic.stages.run_stage): its own
    (mlm, finetune or retrain) as `train`, and what every stage shares."""
    return {
        "train": config[section],
        # The classifier's config carries the topic names (its id2label): a change retrains
        # the classifiers, never the MLM encoder, which has no labels. Without names the
        # params are as before (no rerun of an existing run).
        "model": (
            {**config["model"], "topic_names": TOPIC_NAMES}
            if TOPIC_NAMES and section != "mlm"
            else config["model"]
        ),
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


def final_stage():
    return "retrain" if config["pseudo_label"]["enabled"] else "finetune"


def summary_stages():
    """Stages whose metrics.json the run summary reads."""
    stages = ["baseline", "finetune"]
    return stages + (["retrain"] if config["pseudo_label"]["enabled"] else [])


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
    """The submission, the summary and what the report shows (report_targets, report.smk)."""
    return [f"{RESULTS}/submission.csv", f"{RESULTS}/summary.md", *report_targets()]


# --- the report (workflow/rules/report.smk) ---
def report_caption(name):
    return f"../report/{name}.rst"


def trained_stages():
    """Stages that train a classifier scored on valid: a confusion matrix and a per-topic table
    each."""
    return ["finetune"] + (["retrain"] if config["pseudo_label"]["enabled"] else [])


def report_targets():
    """Every file the report shows (rule all asks for them)."""
    files = [
        f"{RESULTS}/report/summary.html",
        f"{RESULTS}/report/training_curves.png",
        f"{RESULTS}/report/config.html",
    ]
    for stage in trained_stages():
        files += [
            f"{RESULTS}/report/{stage}_confusion.png",
            f"{RESULTS}/report/{stage}_per_topic.html",
        ]
    if config["mlm"]["enabled"]:
        files.append(f"{RESULTS}/report/mlm_loss.png")
    if config["pseudo_label"]["enabled"]:
        files += [
            f"{RESULTS}/report/pseudo_labels.png",
            f"{RESULTS}/report/teacher_agreement.html",
        ]
    return files
