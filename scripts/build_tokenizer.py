"""Rule build_tokenizer: train a WordPiece on the titles, or load a vocab file / hub tokenizer."""

from newstopic.logs import run_rule
from newstopic.tokenization import build_and_save_tokenizer

sm = snakemake  # noqa: F821
run_rule(
    sm.log[0],
    build_and_save_tokenizer,
    list(sm.input.texts),
    sm.output[0],
    tok_cfg=sm.params.tokenizer,
    model_cfg=sm.params.model,
)
