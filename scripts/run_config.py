"""Rule run_config: the validated config of the run as results/config.yaml."""

from newstopic.logs import run_rule
from newstopic.report import write_run_config

sm = snakemake  # noqa: F821
run_rule(sm.log[0], write_run_config, sm.params.config, sm.output.yaml, sm.output.html)
