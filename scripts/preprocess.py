"""Rule preprocess: raw Dacon CSVs -> train/valid/test parquet."""

from newstopic.errors import run_main
from newstopic.logs import setup_logging
from newstopic.preprocess import preprocess

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = setup_logging(sm.log[0])
counts = run_main(
    preprocess,
    sm.input.train,
    sm.input.test,
    sm.output.train,
    sm.output.valid,
    sm.output.test,
    valid_fraction=sm.params.valid_fraction,
    seed=sm.params.seed,
    remove_pattern=sm.params.remove_pattern,
    per_class=sm.params.sample_per_class,
    test_sample=sm.params.test_sample,
    log_file=sm.log[0],
)
log.info("rows: %s", counts)
