# newstopic: Korean news-headline topic classification, the competition recipe as a workflow.
#   preprocess -> build_tokenizer -> mlm_pretrain -> finetune -> predict -> pseudo_label
#              -> retrain -> predict -> submission          (snakemake --cores all)


import os
import sys
from snakemake.utils import min_version

min_version("9.0")

# The package is this checkout's src/, here and in every job (local, conda, Slurm: they
# inherit PYTHONPATH); without src/, an installed newstopic.
_SRC = os.path.join(workflow.basedir, "src")
if os.path.isdir(_SRC):
    sys.path.insert(0, _SRC)
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [_SRC, os.environ.get("PYTHONPATH")]))
    )

from newstopic.resources import GOMP_SPINCOUNT
from newstopic.slurm import ignore_time_limit_signal_in_job

# In a Slurm job, Snakemake and the shell around a rule's script must outlive the training
# process when the time-limit warning (SIGUSR1) comes: that process checkpoints and requeues
# the job (newstopic.slurm).
ignore_time_limit_signal_in_job()


# A short OpenMP spin, so that a busy core slows a job fairly (newstopic.resources says why).
# Every job inherits it; set GOMP_SPINCOUNT yourself to choose another value.
os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/cv.smk"
include: "workflow/rules/members.smk"
include: "workflow/rules/report.smk"


# Rules that only copy or summarise run where Snakemake runs, never as cluster jobs.
localrules:
    all,
    submission,
    summary,
    compare_engines,
    engines_table,
    topic_scores,
    learning_curves,
    pseudo_label_plots,
    summary_table,
    run_config,


rule all:
    default_target: True
    input:
        final_targets(),
