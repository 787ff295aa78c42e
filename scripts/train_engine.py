"""Rules mlm_engine and finetune_engine (the compare_engines target): one training stage under
the engine the wildcard names, and the job's exact CPU time and peak RSS (usage.json)."""

from newstopic.atomic import write_json
from newstopic.stages import run_training_rule
from newstopic.study.usage import process_usage

sm = snakemake  # noqa: F821
run_training_rule("mlm_pretrain" if sm.rule == "mlm_engine" else "finetune", sm)
write_json(sm.output.usage, process_usage())
