"""Rule baseline_folds: the TF-IDF baseline refit on the K folds, as an ensemble member."""

from newstopic.baseline import baseline_fold_predictions
from newstopic.logs import run_rule

sm = snakemake  # noqa: F821
inputs = {name: sm.input[name] for name in ("train", "valid", "test", "folds")}
outputs = {name: sm.output[name] for name in ("oof", "valid", "test")}
outputs["fold_test"] = list(sm.output.fold_test)
run_rule(sm.log[0], baseline_fold_predictions, inputs, outputs, section=sm.params.baseline)
