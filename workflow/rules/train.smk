rule finetune:
    input:
        train=[f"{RESULTS}/data/train.parquet"],
        valid=f"{RESULTS}/data/valid.parquet",
        tokenizer=f"{RESULTS}/tokenizer",
        encoder=encoder_input(),
    output:
        model=directory(f"{RESULTS}/finetune/model"),
        metrics=f"{RESULTS}/finetune/metrics.json",
    log:
        f"{LOGS}/finetune.log",
    benchmark:
        f"{BENCHMARKS}/finetune.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("finetune"),
    params:
        **runtime_params(),
        encoder=encoder_param,
        model=config["model"],
        train=config["finetune"],
        max_length=config["tokenizer"]["max_length"],
        seed=config["seed"],
        engine=config["engine"],
        scratch=scratch("finetune"),
    script:
        "../../scripts/finetune.py"


rule pseudo_label:
    input:
        probs=[
            f"{RESULTS}/{teacher}/test_probs.parquet"
            for teacher in config["pseudo_label"]["teachers"]
        ],
        test=f"{RESULTS}/data/test.parquet",
    output:
        rows=f"{RESULTS}/pseudo_label/pseudo_labels.parquet",
        report=f"{RESULTS}/pseudo_label/report.json",
    log:
        f"{LOGS}/pseudo_label.log",
    benchmark:
        f"{BENCHMARKS}/pseudo_label.tsv"
    conda:
        "../../envs/newstopic.yaml"
    params:
        threshold=config["pseudo_label"]["threshold"],
        max_per_class=config["pseudo_label"]["max_per_class"],
        soft=config["pseudo_label"]["soft"],
    script:
        "../../scripts/pseudo_label.py"


rule retrain:
    input:
        train=[
            f"{RESULTS}/data/train.parquet",
            f"{RESULTS}/pseudo_label/pseudo_labels.parquet",
        ],
        valid=f"{RESULTS}/data/valid.parquet",
        tokenizer=f"{RESULTS}/tokenizer",
        encoder=encoder_input(),
    output:
        model=directory(f"{RESULTS}/retrain/model"),
        metrics=f"{RESULTS}/retrain/metrics.json",
    log:
        f"{LOGS}/retrain.log",
    benchmark:
        f"{BENCHMARKS}/retrain.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("retrain"),
    params:
        **runtime_params(),
        encoder=encoder_param,
        model=config["model"],
        train=config["retrain"],
        max_length=config["tokenizer"]["max_length"],
        seed=config["seed"],
        engine=config["engine"],
        scratch=scratch("retrain"),
    script:
        "../../scripts/finetune.py"
