"""Rule compare_engines: the loop vs Trainer table (CSV + Markdown) from the runs' metrics
and benchmark files."""

from newstopic.compare import write_comparison
from newstopic.errors import run_main
from newstopic.logs import setup_logging

sm = snakemake  # noqa: F821
log = setup_logging(sm.log[0])
runs = [
    (stage, engine, metrics, benchmark, sm.params.epochs[stage])
    for (stage, engine), metrics, benchmark in zip(
        sm.params.runs, sm.input.metrics, sm.input.benchmarks, strict=True
    )
]
table = run_main(write_comparison, runs, sm.output.csv, sm.output.md, log_file=sm.log[0])
log.info("engine comparison:\n%s", table.to_string(index=False))
