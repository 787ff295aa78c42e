# Extra ensemble members (newstopic.members): finetune and retrain (with folds: their fold
# jobs) at the extra training seeds of cv.seeds (a {seed} wildcard), and the encoders of
# ensemble.encoders that ensemble.members names (an {encoder} wildcard). None of these rules
# exists when both are empty. Each is a training rule of train.smk or pretrain.smk with its own
# outputs, log, checkpoints and settings; with folds, fold_average then makes its fold models
# one member. Without folds a seed is no member (the ensemble needs folds): it is the seed study
# of the summary, a Snakemake target (results/finetune/seed7/metrics.json).

if SEEDS:

    # finetune at seed {seed}: the same split (and folds), another training seed.
    use rule finetune as finetune_seed with:
        output:
            **seed_outputs("finetune"),
        log:
            f"{LOGS}/{job_name('finetune', seeded=True)}.log",
        benchmark:
            f"{BENCHMARKS}/{job_name('finetune', seeded=True)}.tsv"
        params:
            stage="finetune",
            settings=seeded_settings("finetune"),
            scratch=stage_scratch("finetune", seeded=True),

    # retrain at seed {seed}: the same pseudo-labels (of its round), another training seed.
    use rule retrain as retrain_seed with:
        output:
            **seed_outputs("retrain"),
        log:
            f"{LOGS}/{job_name('retrain', seeded=True)}.log",
        benchmark:
            f"{BENCHMARKS}/{job_name('retrain', seeded=True)}.tsv"
        params:
            stage="retrain",
            settings=seeded_settings("retrain"),
            scratch=stage_scratch("retrain", seeded=True),


if ENCODERS:

    # The encoder's own tokenizer: the one saved with its name_or_path.
    use rule build_tokenizer as encoder_tokenizer with:
        output:
            directory(f"{ENCODER_DIR}/tokenizer"),
        log:
            f"{LOGS}/encoder_tokenizer_{{encoder}}.log",
        benchmark:
            f"{BENCHMARKS}/encoder_tokenizer_{{encoder}}.tsv"
        params:
            tokenizer={
                "source": "pretrained",
                "max_length": config["tokenizer"]["max_length"],
            },
            # What the tokenizer is read from; the head's settings do not concern it.
            model=lambda w: {
                k: ENCODERS[w.encoder][k]
                for k in ("name_or_path", "trust_remote_code")
            },

    # Only for an encoder with `mlm: true` (encoder_mlm_input): a hub model is fine-tuned as
    # downloaded unless the config asks for task-adaptive pretraining.
    use rule mlm_pretrain as encoder_mlm_pretrain with:
        input:
            train=mlm_text_files(),
            tokenizer=f"{ENCODER_DIR}/tokenizer",
        output:
            model=directory(f"{ENCODER_DIR}/mlm/model"),
            metrics=f"{ENCODER_DIR}/mlm/metrics.json",
        log:
            f"{LOGS}/encoder_mlm_pretrain_{{encoder}}.log",
        benchmark:
            f"{BENCHMARKS}/encoder_mlm_pretrain_{{encoder}}.tsv"
        params:
            stage="mlm_pretrain",
            settings=lambda w: encoder_settings(w.encoder, "mlm"),
            scratch=job_scratch("encoder_mlm_pretrain_{encoder}"),

    # The encoder's fold jobs of finetune, with its own tokenizer and hyper-parameters.
    use rule finetune as encoder_finetune with:
        input:
            **fold_inputs(),
            train=[f"{RESULTS}/data/train.parquet"],
            valid=f"{RESULTS}/data/valid.parquet",
            tokenizer=f"{ENCODER_DIR}/tokenizer",
            encoder=encoder_mlm_input,
        output:
            **training_outputs(f"{ENCODER_DIR}/finetune/fold{{fold}}"),
        log:
            f"{LOGS}/encoder_finetune_{{encoder}}_fold{{fold}}.log",
        benchmark:
            f"{BENCHMARKS}/encoder_finetune_{{encoder}}_fold{{fold}}.tsv"
        params:
            stage="finetune",
            settings=lambda w: encoder_settings(w.encoder, "finetune"),
            encoder=encoder_member_param,
            scratch=job_scratch("encoder_finetune_{encoder}_fold{fold}"),


if ENCODERS and SEEDS:

    # An encoder member at seed {seed} (ensemble.members: NAME@seed<s>).
    use rule encoder_finetune as encoder_finetune_seed with:
        output:
            **training_outputs(f"{ENCODER_DIR}/finetune/seed{{seed}}/fold{{fold}}"),
        log:
            f"{LOGS}/encoder_finetune_{{encoder}}_seed{{seed}}_fold{{fold}}.log",
        benchmark:
            f"{BENCHMARKS}/encoder_finetune_{{encoder}}_seed{{seed}}_fold{{fold}}.tsv"
        params:
            settings=lambda w: encoder_settings(w.encoder, "finetune", int(w.seed)),
            scratch=job_scratch("encoder_finetune_{encoder}_seed{seed}_fold{fold}"),
