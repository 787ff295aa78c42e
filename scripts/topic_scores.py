"""Rule topic_scores: a stage's per-topic precision/recall/F1 (CSV) and confusion matrix (PNG)."""

from newstopic.logs import run_rule
from newstopic.report import topic_scores

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    topic_scores,
    sm.wildcards.stage,
    sm.input.valid,
    sm.input.probs,
    sm.params.names,
    dict(sm.output.items()),
)
