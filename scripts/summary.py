"""Rule summary: metrics of every stage and time per rule, as JSON and Markdown."""

from newstopic.errors import run_main
from newstopic.logs import setup_logging
from newstopic.summary import write_summary

sm = snakemake  # noqa: F821
log = setup_logging(sm.log[0])
summary = run_main(
    write_summary,
    dict(zip(sm.params.stages, sm.input.metrics, strict=True)),
    dict(zip(sm.params.rules, sm.input.benchmarks, strict=True)),
    sm.input.pseudo[0] if sm.input.pseudo else None,
    sm.output.json,
    sm.output.md,
    log_file=sm.log[0],
)
log.info("summary: %s", summary["stages"])
