"""Rule compare_engines: the loop vs Trainer table (CSV + Markdown) from the runs' metrics,
usage and benchmark files."""

from newstopic.logs import run_rule
from newstopic.study.compare import compare_engines

sm = snakemake  # noqa: F821
runs = [
    (stage, engine, metrics, usage, benchmark, sm.params.epochs[stage])
    for (stage, engine), metrics, usage, benchmark in zip(
        sm.params.runs, sm.input.metrics, sm.input.usage, sm.input.benchmarks, strict=True
    )
]
stage_files = {"finetune": list(sm.input.train)}
if "mlm" in sm.params.epochs:
    stage_files = {"mlm": list(sm.input.texts), **stage_files}
run_rule(
    sm.log[0],
    compare_engines,
    runs,
    sm.output.csv,
    sm.output.md,
    tokenizer_dir=sm.input.tokenizer,
    stage_files=stage_files,
    work=sm.params.work,
)
