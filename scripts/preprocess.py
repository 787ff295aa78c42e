"""Rule preprocess: raw Dacon CSVs -> train/valid/test parquet."""

from newstopic.logs import run_rule
from newstopic.preprocess import preprocess

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
run_rule(
    sm.log[0],
    preprocess,
    sm.input.train,
    sm.input.test,
    {"train": sm.output.train, "valid": sm.output.valid, "test": sm.output.test},
    section=sm.params.preprocess,
    seed=sm.params.seed,
)
