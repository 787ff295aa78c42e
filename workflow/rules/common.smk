import sys
from pathlib import Path

from snakemake.iocontainers import Wildcards

from newstopic.config import coerce_overrides, validate_config
from newstopic.members import configured_members, parse_member
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
# K-fold cross-validation (config cv.folds): off (0) leaves the DAG as it was without it.
CV_FOLDS = config["cv"]["folds"]
CV = CV_FOLDS >= 2
FOLDS = f"{RESULTS}/cv/folds.parquet"
ENSEMBLE = config["ensemble"]["enabled"]
# Pseudo-label rounds (config pseudo_label.rounds): with N >= 2 every round r = 1..N has its own
# pseudo_label, retrain fold jobs and ensemble under results/round<r>/ (a {round} wildcard),
# round r's teacher being round r-1's ensemble (round 0: the ensemble without retrain).
ROUNDS = config["pseudo_label"]["rounds"]
MULTI_ROUND = ROUNDS >= 2
ROUND_STAGES = r"|round\d+/retrain" if MULTI_ROUND else ""  # fold_average's {stage}
# Extra members (newstopic.members): training seeds (cv.seeds: a {seed} wildcard of the fold
# jobs, results/<stage>/seed<s>/) and other encoders (ensemble.encoders, the ones
# ensemble.members names: an {encoder} wildcard, results/encoders/<name>/). Both empty by
# default, and then no rule, file or param below differs from a run without them.
SEEDS = config["cv"]["seeds"]
MEMBERS = configured_members(config) if ENSEMBLE else []
ENCODERS = {
    m.encoder: config["ensemble"]["encoders"][m.encoder] for m in MEMBERS if m.encoder
}
ENCODER_DIR = f"{RESULTS}/encoders/{{encoder}}"


def stage_pattern():
    """fold_average's {stage}: the training stages, each round's retrain, and with extra
    members their seeds' and the encoders' stages."""
    stages = f"finetune|retrain{ROUND_STAGES}"
    if ENCODERS:
        stages += f"|encoders/(?:{'|'.join(ENCODERS)})/finetune"
    return f"(?:{stages})(?:/seed\\d+)?" if SEEDS or ENCODERS else stages


wildcard_constraints:
    stage=stage_pattern(),
    fold=r"\d+",
    round=r"\d+",
    seed=r"\d+",
    encoder=r"[a-z][a-z0-9_]*",


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


def rounds_of(stage):
    """Whether a stage's jobs are per round: retrain (and pseudo_label) with rounds >= 2."""
    return MULTI_ROUND and stage in ("retrain", "pseudo_label")


def stage_dir(stage, seeded=False):
    """Where a training stage's job writes: results/<stage>, with rounds under round{round}/,
    at an extra training seed under seed{seed}/, with folds one directory per fold job (a
    {fold} wildcard)."""
    base = (
        f"{RESULTS}/round{{round}}/{stage}"
        if rounds_of(stage)
        else f"{RESULTS}/{stage}"
    )
    base = f"{base}/seed{{seed}}" if seeded else base
    return f"{base}/fold{{fold}}" if CV else base


def job_name(stage, seeded=False):
    """A job's log and benchmark name: the rule's, + _round{round}, _seed{seed} and _fold{fold}."""
    name = f"{stage}_round{{round}}" if rounds_of(stage) else stage
    name = f"{name}_seed{{seed}}" if seeded else name
    return f"{name}_fold{{fold}}" if CV and stage != "pseudo_label" else name


def stage_scratch(stage, seeded=False):
    """A training job's checkpoints: each fold (round, seed) job its own directory."""
    if CV or rounds_of(stage) or seeded:
        return job_scratch(job_name(stage, seeded))
    return scratch(stage)


def job_scratch(name):
    """The checkpoints of the job whose log name is `name` (a pattern of its wildcards)."""
    return lambda w: f"{SCRATCH}/{name.format(**dict(w.items()))}"


def pseudo_dir():
    return (
        f"{RESULTS}/round{{round}}/pseudo_label"
        if MULTI_ROUND
        else f"{RESULTS}/pseudo_label"
    )


def ensemble_dir(round_=None):
    """The ensemble's folder: results/ensemble, or with rounds results/round<r>/ensemble."""
    if not MULTI_ROUND:
        return f"{RESULTS}/ensemble"
    return f"{RESULTS}/round{'{round}' if round_ is None else round_}/ensemble"


def teacher_probs():
    """The pseudo-label teachers' test probabilities: those config pseudo_label.teachers
    names, or with rounds round r-1's ensemble (an input function of {round}). With folds,
    each teacher's K fold models' files, fold by fold (fold_teacher_probs)."""
    if MULTI_ROUND:
        return lambda wildcards: fold_teacher_probs(
            [ensemble_dir(int(wildcards.round) - 1)]
        )
    teachers = config["pseudo_label"]["teachers"]
    if CV:
        return fold_teacher_probs([member_dir(t) for t in teachers])
    return [f"{RESULTS}/{t}/test_probs.parquet" for t in teachers]


def fold_teacher_probs(teacher_dirs):
    """With folds, fold k's student learns from fold k's teachers only, which never saw fold
    k's rows (else its out-of-fold predictions would know their labels through near-duplicate
    test titles, and the ensemble would over-weight it): the teachers' fold-k test
    probabilities, fold by fold ([fold 0's teachers, fold 1's, ...]). Without folds, their
    test probabilities."""
    if not CV:
        return [f"{d}/test_probs.parquet" for d in teacher_dirs]
    return [fold_test_probs(d, k) for k in range(CV_FOLDS) for d in teacher_dirs]


def member_dir(member):
    """Where a teacher's (or member's) folds live: the baseline's refit under baseline/cv."""
    return f"{RESULTS}/baseline/cv" if member == "baseline" else f"{RESULTS}/{member}"


def fold_test_probs(folder, fold):
    """Fold model `fold`'s test probabilities under a stage's (or the ensemble's) folder."""
    return f"{folder}/fold{fold}/test_probs.parquet"


def pseudo_fold_rows():
    """The pseudo_label rule's per-fold outputs: fold k's student's rows (folds only)."""
    if not CV:
        return {}
    return {
        "fold_rows": [
            f"{pseudo_dir()}/fold{k}/pseudo_labels.parquet" for k in range(CV_FOLDS)
        ]
    }


def pseudo_rows_for_student():
    """The pseudo-label rows a retrain job learns from: with folds, its own fold's."""
    if CV:
        return f"{pseudo_dir()}/fold{{fold}}/pseudo_labels.parquet"
    return f"{pseudo_dir()}/pseudo_labels.parquet"


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


def member_files(member, round_=None):
    """An ensemble member's out-of-fold, valid and test probabilities (retrain: of round_),
    and its K fold models' test probabilities (fold_test)."""
    if member == "baseline":  # the baseline refit on the folds (rule baseline_folds)
        files = {
            k: f"{RESULTS}/baseline/cv/{k}_probs.parquet"
            for k in ("oof", "valid", "test")
        }
        folder = f"{RESULTS}/baseline/cv"
    else:
        parsed = parse_member(member, config["ensemble"]["encoders"], SEEDS)
        folder = f"{RESULTS}/{parsed.directory(round_ if MULTI_ROUND else None)}"
        files = {
            "oof": f"{folder}/cv/oof_probs.parquet",
            "valid": f"{folder}/cv/valid_probs.parquet",
            "test": f"{folder}/test_probs.parquet",
        }
    return files | {"fold_test": [fold_test_probs(folder, k) for k in range(CV_FOLDS)]}


def ensemble_members(round_=None):
    """The configured members; with rounds, round 0 (before any retraining) has no retrain
    (at any seed)."""
    members = config["ensemble"]["members"]
    return [
        m
        for m in members
        if not (MULTI_ROUND and round_ == 0 and m.split("@")[0] == "retrain")
    ]


def training_outputs(folder):
    """A fold job's outputs under `folder` (a pattern): its probabilities, model, metrics."""
    kinds = ("oof_probs", "valid_probs", "test_probs")
    return {k: f"{folder}/{k}.parquet" for k in kinds} | {
        "model": directory(f"{folder}/model"),
        "metrics": f"{folder}/metrics.json",
    }


def seed_outputs(stage):
    """A training job's outputs at the extra seed {seed}: its model and metrics, and with folds
    its fold's probabilities (an ensemble member's)."""
    folder = stage_dir(stage, seeded=True)
    if CV:
        return training_outputs(folder)
    return {"model": directory(f"{folder}/model"), "metrics": f"{folder}/metrics.json"}


def seeded_settings(section):
    """A training stage's settings at the extra seed {seed}: its section's seed alone changes."""
    return lambda w: {
        **training_settings(section),
        "train": {**config[section], "seed": int(w.seed)},
    }


def encoder_model(name):
    """The model section of encoder member `name`: the config's head (pooling, dropout, MLP),
    its own encoder. Without `arch`, which is the config's own encoder's (a change there must
    not retrain this member)."""
    enc = ENCODERS[name]
    model = {k: v for k, v in config["model"].items() if k != "arch"}
    return model | {k: enc[k] for k in ("name_or_path", "trust_remote_code")}


def encoder_settings(name, section, seed=None):
    """Settings of encoder member `name`'s MLM (section mlm: the mlm section's) or fine-tuning
    (its own finetune section), at the extra training seed `seed` (None: its own)."""
    settings = training_settings(section)
    train = ENCODERS[name]["finetune"] if section == "finetune" else config["mlm"]
    train = train if seed is None else {**train, "seed": seed}
    model = encoder_model(name)
    if section != "mlm" and TOPIC_NAMES:
        model["topic_names"] = TOPIC_NAMES
    return settings | {"train": train, "model": model}


def encoder_mlm_input(wildcards):
    """The encoder member's MLM output when it has MLM (ensemble.encoders.<name>.mlm)."""
    mlm = ENCODERS[wildcards.encoder]["mlm"]
    return [f"{RESULTS}/encoders/{wildcards.encoder}/mlm/model"] if mlm else []


def encoder_member_param(wildcards, input):
    """Where the encoder member's fine-tuning starts: its MLM output, else its name_or_path."""
    if input.encoder:
        return input.encoder[0]
    return ENCODERS[wildcards.encoder]["name_or_path"]


def ensemble_inputs(kind):
    """The members' files of `kind` (member_files), in member order; fold_test flattened
    member by member."""

    def files(round_):
        found = [member_files(m, round_)[kind] for m in ensemble_members(round_)]
        return [f for group in found for f in group] if kind == "fold_test" else found

    if MULTI_ROUND:
        return lambda w: files(int(w.round))
    return files(None)


def ensemble_param():
    if MULTI_ROUND:
        return lambda w: member_params(int(w.round))
    return member_params()


def member_params(round_=None):
    """The ensemble's `members` param: each member's name, or for an extra seed or encoder
    {name, label} (label: what the report calls it). Only those carry a label, so an
    ensemble without them keeps its params, and is not rerun, when they are added elsewhere
    (another round, or cv.seeds alone)."""
    encoders = config["ensemble"]["encoders"]
    params = []
    for name in ensemble_members(round_):
        member = parse_member(name, encoders, SEEDS)
        extra = member.seed is not None or member.encoder
        params.append(
            {"name": name, "label": member.label(encoders)} if extra else name
        )
    return params


def final_submission():
    if ENSEMBLE:
        return f"{ensemble_dir(ROUNDS if MULTI_ROUND else None)}/submission.csv"
    return f"{RESULTS}/{final_stage()}/submission.csv"


def final_stage():
    return "retrain" if config["pseudo_label"]["enabled"] else "finetune"


def summary_stages():
    """Stages whose metrics.json the run summary reads."""
    stages = ["baseline", "finetune"]
    if MULTI_ROUND:
        stages += [f"round{r}/retrain" for r in range(1, ROUNDS + 1)]
        stages += [f"round{r}/ensemble" for r in range(ROUNDS + 1)]
        return stages + member_stages()
    stages += ["retrain"] if config["pseudo_label"]["enabled"] else []
    return stages + (["ensemble"] if ENSEMBLE else []) + member_stages()


def member_stages():
    """The stages of the seed study (finetune and retrain at each of cv.seeds; with rounds,
    each round's retrain) and of the encoder members: what `all` trains besides."""
    retrain = [] if not config["pseudo_label"]["enabled"] else ["retrain"]
    if MULTI_ROUND:
        retrain = [f"round{r}/retrain" for r in range(1, ROUNDS + 1)]
    stages = [f"{stage}/seed{s}" for s in SEEDS for stage in ["finetune", *retrain]]
    encoder_dirs = [m.directory() for m in MEMBERS if m.encoder]
    return stages + [d for d in encoder_dirs if d not in stages]


def pseudo_reports():
    """The pseudo-label report(s) the summary shows: one per round."""
    if not config["pseudo_label"]["enabled"]:
        return []
    if MULTI_ROUND:
        return [
            f"{RESULTS}/round{r}/pseudo_label/report.json" for r in range(1, ROUNDS + 1)
        ]
    return [f"{RESULTS}/pseudo_label/report.json"]


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
                    if callable(need):  # an input function (with rounds: of {round})
                        found_paths = need(Wildcards(fromdict=wildcards))
                        for p in (
                            [found_paths]
                            if isinstance(found_paths, str)
                            else found_paths
                        ):
                            visit(p)
                    elif not need.is_callable():
                        visit(str(need.apply_wildcards(wildcards)))
                if producer.benchmark:
                    bench = str(producer.benchmark.apply_wildcards(wildcards))
                    found[Path(bench).stem] = bench

    for path in summary_inputs() + [f"{RESULTS}/submission.csv"]:
        visit(path)
    return found


def summary_inputs():
    """Metrics of every stage and the pseudo-label report: what the run summary reads."""
    return [
        f"{RESULTS}/{stage}/metrics.json" for stage in summary_stages()
    ] + pseudo_reports()


def final_targets():
    """The submission, the summary and what the report shows (report_targets, report.smk)."""
    return [f"{RESULTS}/submission.csv", f"{RESULTS}/summary.md", *report_targets()]


# --- the report (workflow/rules/report.smk) ---
def report_caption(name):
    return f"../report/{name}.rst"


def own_trained_stages():
    """The config's own training stages: finetune, and retrain (with rounds: each round's)."""
    stages = ["finetune"]
    if config["pseudo_label"]["enabled"]:
        rounds = range(1, ROUNDS + 1)
        stages += [f"round{r}/retrain" for r in rounds] if MULTI_ROUND else ["retrain"]
    return stages


def trained_stages():
    """Stages that train a classifier scored on valid: a confusion matrix and a per-topic table
    each. The config's own stages, the extra seeds' and encoders' (member_stages), and with
    the ensemble the final ensemble too."""
    return own_trained_stages() + member_stages() + (["ensemble"] if ENSEMBLE else [])


def curve_metrics():
    """{name: metrics.json} whose per-epoch history the learning curves show: each of the
    config's own stages, or with folds each fold model's (scored on its own held-out fold).
    Not the extra seeds' or encoders': K more lines each would bury the plot."""
    stages = own_trained_stages()
    if not CV:
        return {stage: f"{RESULTS}/{stage}/metrics.json" for stage in stages}
    return {
        f"{stage} fold{k}": f"{RESULTS}/{stage}/fold{k}/metrics.json"
        for stage in stages
        for k in range(CV_FOLDS)
    }


def valid_probs_of(wildcards):
    """A scored stage's valid probabilities: the final ensemble's, the fold models' mean (cv),
    or those the evaluate rule computes from the stage's model."""
    if wildcards.stage == "ensemble":
        return f"{ensemble_dir(ROUNDS if MULTI_ROUND else None)}/valid_probs.parquet"
    if CV:
        return f"{RESULTS}/{wildcards.stage}/cv/valid_probs.parquet"
    return f"{RESULTS}/{wildcards.stage}/valid_probs.parquet"


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
    if (
        config["pseudo_label"]["enabled"] and not MULTI_ROUND
    ):  # rounds: the summary's table
        files += [
            f"{RESULTS}/report/pseudo_labels.png",
            f"{RESULTS}/report/teacher_agreement.html",
        ]
    return files
