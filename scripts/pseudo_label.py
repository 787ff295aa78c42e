"""Rule pseudo_label: the teachers' test predictions as extra labeled rows."""

from newstopic.logs import run_rule
from newstopic.pseudo import pseudo_label_files

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    pseudo_label_files,
    list(sm.input.probs),  # one file per teacher (pseudo_label.teachers)
    sm.input.test,
    sm.output.rows,
    sm.output.report,
    section=sm.params.pseudo_label,
)
