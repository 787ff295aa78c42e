"""Rule baseline: TF-IDF character n-grams + LinearSVC on the same split."""

from newstopic.baseline import tfidf_svm_baseline
from newstopic.logs import run_rule

sm = snakemake  # noqa: F821
inputs = {name: sm.input[name] for name in ("train", "valid", "test")}
outputs = {name: sm.output[name] for name in ("metrics", "submission", "test_probs")}
run_rule(sm.log[0], tfidf_svm_baseline, inputs, outputs, section=sm.params.baseline)
