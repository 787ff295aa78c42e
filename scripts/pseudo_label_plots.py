"""Rule pseudo_label_plots: rows kept per topic, confidence histogram, agreement between teachers."""

from newstopic.logs import run_rule
from newstopic.report import pseudo_label_report

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    pseudo_label_report,
    sm.input.report,
    sm.input.rows,
    dict(zip(sm.params.teachers, sm.input.probs, strict=True)),
    sm.params.names,
    dict(sm.output.items()),
)
