"""Rule learning_curves: MLM loss by step, finetune/retrain loss and valid accuracy by epoch."""

from newstopic.logs import run_rule
from newstopic.report import learning_curves

sm = snakemake  # noqa: F821
mlm = {"metrics": sm.input.mlm[0], "log": sm.params.mlm_log} if sm.input.mlm else None
run_rule(
    sm.log[0],
    learning_curves,
    mlm,
    dict(zip(sm.params.stages, sm.input.stages, strict=True)),
    sm.output.mlm[0] if sm.output.mlm else None,
    sm.output.curves,
)
