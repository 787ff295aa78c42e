"""Rule predict: test probabilities (parquet) and a Dacon submission (CSV)."""

from newstopic.logs import run_rule
from newstopic.predict import predict_model_dir

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    predict_model_dir,
    sm.input.model,
    sm.input.test,
    sm.output.probs,
    sm.output.submission,
    settings=sm.params.settings,
    threads=sm.threads,
)
