"""Rules mlm_pretrain, finetune and retrain: one training stage (newstopic.stages)."""

from newstopic.stages import Job, StageFiles, run_training_rule

sm = snakemake  # noqa: F821
job = Job(sm.resources.processes, sm.resources.nodes, sm.threads, sm.log[0])
run_training_rule(sm.rule, StageFiles.of_rule(sm), sm.params.settings, job)
