"""Rule compare_engines: the loop vs Trainer table (CSV + Markdown) from the runs' metrics,
usage and benchmark files."""

from newstopic.compare import compare_engines
from newstopic.errors import run_main
from newstopic.logs import setup_logging

sm = snakemake  # noqa: F821
log = setup_logging(sm.log[0])
runs = [
    (stage, engine, metrics, usage, benchmark, sm.params.epochs[stage])
    for (stage, engine), metrics, usage, benchmark in zip(
        sm.params.runs, sm.input.metrics, sm.input.usage, sm.input.benchmarks, strict=True
    )
]
stage_files = {"finetune": list(sm.input.train)}
if "mlm" in sm.params.epochs:
    stage_files = {"mlm": list(sm.input.texts), **stage_files}
table = run_main(
    compare_engines,
    runs,
    sm.output.csv,
    sm.output.md,
    tokenizer_dir=sm.input.tokenizer,
    stage_files=stage_files,
    batch_sizes=sm.params.batch_sizes,
    max_length=sm.params.max_length,
    seed=sm.params.seed,
    mask_prob=sm.params.mask_prob,
    log_file=sm.log[0],
)
log.info("engine comparison:\n%s", table.to_string(index=False))
