"""Rule summary_table: results/summary.json as one table row per stage (for the report)."""

from newstopic.logs import run_rule
from newstopic.report import summary_table

sm = snakemake  # noqa: F821
run_rule(sm.log[0], summary_table, sm.input[0], sm.output.table, sm.output.html)
