"""Rule ensemble: members' probabilities averaged with weights fit on out-of-fold predictions."""

from newstopic.ensemble import ensemble_files
from newstopic.logs import run_rule

sm = snakemake  # noqa: F821
inputs = {"folds": sm.input.folds, "valid": sm.input.valid}
inputs |= {name: list(sm.input[name]) for name in ("oof", "valid_probs", "test_probs")}
names = ("metrics", "report", "oof", "valid_probs", "test_probs", "submission")
outputs = {name: sm.output[name] for name in names}
labels = sm.params.get("labels") or {}  # only with extra seeds or encoders as members
run_rule(sm.log[0], ensemble_files, inputs, outputs, members=list(sm.params.members), labels=labels)
