"""Rule fold_average: a stage's K fold models as one (OOF, valid and test probabilities)."""

from newstopic.folds import combine_fold_predictions
from newstopic.logs import run_rule

sm = snakemake  # noqa: F821
inputs = {"folds": sm.input.folds, "valid": sm.input.valid}
inputs |= {name: list(sm.input[name]) for name in ("oof", "valid_probs", "test_probs", "metrics")}
outputs = {name: sm.output[name] for name in ("oof", "valid_probs", "test_probs", "submission", "metrics")}
run_rule(sm.log[0], combine_fold_predictions, inputs, outputs, stage=sm.wildcards.stage)
