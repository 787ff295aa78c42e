"""Rule summary: metrics of every stage and time per rule, as JSON and Markdown."""

from newstopic.logs import run_rule
from newstopic.summary import write_summary

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    write_summary,
    dict(zip(sm.params.stages, sm.input.metrics, strict=True)),
    dict(zip(sm.params.rules, sm.input.benchmarks, strict=True)),
    sm.input.pseudo[-1] if sm.input.pseudo else None,  # with rounds: the last round's
    sm.output.json,
    sm.output.md,
    list(sm.input.rounds),  # with rounds: each round's pseudo-labels
)
