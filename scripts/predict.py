"""Rule predict: test probabilities (parquet) and a Dacon submission (CSV)."""

import torch

from newstopic.errors import run_main
from newstopic.logs import setup_logging
from newstopic.predict import predict_model_dir

sm = snakemake  # noqa: F821
log = setup_logging(sm.log[0])
torch.set_num_threads(sm.threads)
n = run_main(
    predict_model_dir,
    sm.input.model,
    sm.input.test,
    sm.output.probs,
    sm.output.submission,
    max_length=sm.params.max_length,
    batch_size=sm.params.batch_size,
    read_batch_rows=sm.params.read_batch_rows,
    device=sm.params.device,
    log_file=sm.log[0],
)
log.info("predicted %d test rows", n)
