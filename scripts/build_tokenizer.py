"""Rule build_tokenizer: train a WordPiece on the titles, or load a vocab file / hub tokenizer."""

from newstopic.errors import run_main
from newstopic.logs import setup_logging
from newstopic.tokenization import build_and_save_tokenizer

sm = snakemake  # noqa: F821
log = setup_logging(sm.log[0])
size = run_main(
    build_and_save_tokenizer,
    list(sm.input.texts),
    sm.output[0],
    tok_cfg=sm.params.tokenizer,
    model_cfg=sm.params.model,
    log_file=sm.log[0],
)
log.info("tokenizer with %d tokens written to %s", size, sm.output[0])
