# newstopic: Korean news-headline topic classification, the competition recipe as a workflow.
#
#   preprocess -> build_tokenizer -> mlm_pretrain -> finetune -> predict -> pseudo_label
#              -> retrain -> predict -> submission
#
# Run:    snakemake --cores all
# Resume: snakemake --cores all --rerun-incomplete   (training continues from its checkpoint)


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/compare.smk"


rule all:
    default_target: True
    input:
        final_targets(),
