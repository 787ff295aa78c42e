"""Rule baseline: TF-IDF character n-grams + LinearSVC on the same split."""

from newstopic.baseline import tfidf_svm_baseline
from newstopic.errors import run_main
from newstopic.logs import setup_logging

sm = snakemake  # noqa: F821
log = setup_logging(sm.log[0])
metrics = run_main(
    tfidf_svm_baseline,
    sm.input.train,
    sm.input.valid,
    sm.input.test,
    sm.output.metrics,
    sm.output.submission,
    sm.output.test_probs,
    ngram_max=sm.params.ngram_max,
    c=sm.params.c,
    analyzer=sm.params.analyzer,
    log_file=sm.log[0],
)
log.info("baseline valid accuracy %.4f", metrics["valid_accuracy"])
