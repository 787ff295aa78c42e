"""newstopic: Korean news-headline topic classification, the competition recipe as a package.

Modules, one concern each (the pipeline; the study tools are in newstopic.study):
    errors        one-line user-facing errors
    atomic        write-to-temp-then-rename helpers
    logs          logging of rule scripts, run_rule
    config        config loading and JSON-schema validation (defaults filled in)
    startup       every input the config names, checked before any job runs
    resources     scheduler resources of the GPU-capable rules
    formats       the files rules hand each other: parquet schemas, readers, writers
    preprocess    raw Dacon CSV -> validated, cleaned parquet splits
    tokenization  tokenizer from the hub, a local vocab file, or trained on the corpus
    data          token ids, length-grouped batches, padding, MLM masking
    encoder       the encoder / MLM model from the hub or from a config
    model         the custom classifier (encoder + pooling + dropout + MLP head)
    device        runtime.device and bf16 autocast
    checkpoint    resumable training state in a scratch directory
    distributed   several training processes (torchrun, DDP) behind Ranks
    slurm         a training job stopped at its Slurm time limit requeues itself
    training      the hand-written training loop
    pretrain      the mlm_pretrain stage's task
    finetune      the finetune / retrain stages' task
    stages        the one runner of the training stages (and their engine)
    hf_engine     the same tasks trained by the Hugging Face Trainer
    predict       batched, streaming inference and the Dacon submission
    pseudo        pseudo-label selection
    baseline      TF-IDF + LinearSVC yardstick (and refit on the K folds)
    folds         K-fold cross-validation of the train split; a stage's fold models as one
    ensemble      convex weights of members' probabilities, fit on out-of-fold rows only
    metrics       accuracy, macro-F1
    summary       the run summary
    labels        topic names (config labels or data.topic_dict) for the models and the report
    report        what `snakemake --report` shows: valid predictions, tables, curves' data
    plots         the report's pictures (matplotlib, Agg)
    classify      newstopic-classify: headlines -> topic names from a trained model directory
    demo          the embedded synthetic demo data
"""

__version__ = "0.1.0"

NUM_LABELS = 7
