"""Rule ensemble: members' probabilities averaged with weights fit on out-of-fold predictions."""

from newstopic.ensemble import ensemble_files
from newstopic.logs import run_rule

sm = snakemake  # noqa: F821
inputs = {"folds": sm.input.folds, "valid": sm.input.valid}
inputs |= {name: list(sm.input[name]) for name in ("oof", "valid_probs", "test_probs", "fold_test_probs")}
names = ("metrics", "report", "oof", "valid_probs", "test_probs", "submission")
outputs = {name: sm.output[name] for name in names} | {"fold_test": list(sm.output.fold_test)}
# A member is its name, or {name, label} for an extra seed or encoder (common.smk member_params).
members = [m if isinstance(m, str) else m["name"] for m in sm.params.members]
labels = {m["name"]: m["label"] for m in sm.params.members if not isinstance(m, str)}
run_rule(sm.log[0], ensemble_files, inputs, outputs, members=members, labels=labels)
