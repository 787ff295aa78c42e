"""Rule pseudo_label: the teachers' test predictions as extra labeled rows."""

from newstopic.logs import run_rule
from newstopic.pseudo import pseudo_label_files

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    pseudo_label_files,
    # One file per teacher (pseudo_label.teachers); with folds, per fold one per teacher.
    list(sm.input.probs),
    sm.input.test,
    sm.output.rows,
    sm.output.report,
    section=sm.params.pseudo_label,
    fold_rows=list(sm.output.get("fold_rows", [])),  # with folds: fold k's students' rows
)
