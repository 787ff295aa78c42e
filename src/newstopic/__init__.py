"""newstopic: Korean news-headline topic classification, the competition recipe as a package.

Modules, one concern each:
    errors        one-line user-facing errors
    atomic        write-to-temp-then-rename helpers
    config        config loading and JSON-schema validation (defaults filled in)
    preprocess    raw Dacon CSV -> validated, cleaned parquet splits
    tokenization  tokenizer from the hub, a local vocab file, or trained on the corpus
    data          tokenised datasets, length-grouped batches, padding, MLM masking
    model         the custom classifier (encoder + pooling + dropout + MLP head)
    encoder       building the encoder / MLM model from the hub or from a config
    checkpoint    resumable training state in a scratch directory
    training      the hand-written training loops (MLM and classification)
    predict       batched, streaming inference and the Dacon submission
    pseudo        pseudo-label selection
    metrics       accuracy and macro-F1
"""

__version__ = "0.1.0"

NUM_LABELS = 7
