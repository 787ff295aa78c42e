"""Rule evaluate: a trained stage's class probabilities on the valid split (for the report)."""

from newstopic.logs import run_rule
from newstopic.report import evaluate_model_dir

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    evaluate_model_dir,
    sm.input.model,
    sm.input.valid,
    sm.output.probs,
    settings=sm.params.settings,
    threads=sm.threads,
)
