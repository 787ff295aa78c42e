rule finetune:
    input:
        **fold_inputs(),
        train=[f"{RESULTS}/data/train.parquet"],
        valid=f"{RESULTS}/data/valid.parquet",
        tokenizer=f"{RESULTS}/tokenizer",
        encoder=encoder_input(),
    output:
        **fold_outputs("finetune"),
        model=directory(f"{stage_dir('finetune')}/model"),
        metrics=f"{stage_dir('finetune')}/metrics.json",
    log:
        f"{LOGS}/{job_name('finetune')}.log",
    benchmark:
        f"{BENCHMARKS}/{job_name('finetune')}.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("finetune"),
    params:
        **fold_params(),
        settings=training_settings("finetune"),
        encoder=encoder_param,
        scratch=stage_scratch("finetune"),
    script:
        "../../scripts/train.py"


rule pseudo_label:
    input:
        probs=teacher_probs(),
        test=f"{RESULTS}/data/test.parquet",
    output:
        **pseudo_fold_rows(),
        rows=f"{pseudo_dir()}/pseudo_labels.parquet",
        report=f"{pseudo_dir()}/report.json",
    log:
        f"{LOGS}/{job_name('pseudo_label')}.log",
    benchmark:
        f"{BENCHMARKS}/{job_name('pseudo_label')}.tsv"
    conda:
        "../../envs/newstopic.yaml"
    params:
        pseudo_label={
            key: config["pseudo_label"][key]
            for key in ("threshold", "max_per_class", "soft")
        },
    script:
        "../../scripts/pseudo_label.py"


rule retrain:
    input:
        **fold_inputs(),
        train=[
            f"{RESULTS}/data/train.parquet",
            pseudo_rows_for_student(),
        ],
        valid=f"{RESULTS}/data/valid.parquet",
        tokenizer=f"{RESULTS}/tokenizer",
        encoder=encoder_input(),
    output:
        **fold_outputs("retrain"),
        model=directory(f"{stage_dir('retrain')}/model"),
        metrics=f"{stage_dir('retrain')}/metrics.json",
    log:
        f"{LOGS}/{job_name('retrain')}.log",
    benchmark:
        f"{BENCHMARKS}/{job_name('retrain')}.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("retrain"),
    params:
        **fold_params(),
        settings=training_settings("retrain"),
        encoder=encoder_param,
        scratch=stage_scratch("retrain"),
    script:
        "../../scripts/train.py"
