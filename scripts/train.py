"""Rules mlm_pretrain, finetune and retrain: one training stage (newstopic.stages)."""

from newstopic.slurm import hold_time_limit_signal

hold_time_limit_signal()  # before the slow imports: a time-limit warning then is not lost

from newstopic.stages import run_training_rule  # noqa: E402

run_training_rule(snakemake.rule, snakemake)  # noqa: F821
