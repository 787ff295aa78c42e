"""Rule engines_table: compare_engines' table as an HTML page for the report."""

from newstopic.logs import run_rule
from newstopic.report import engines_table

sm = snakemake  # noqa: F821
run_rule(sm.log[0], engines_table, sm.input[0], sm.output[0])
