"""Rules mlm_pretrain, finetune and retrain: one training stage (newstopic.stages)."""

from newstopic.stages import run_training_rule

run_training_rule(snakemake.rule, snakemake)  # noqa: F821
