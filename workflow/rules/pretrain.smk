rule mlm_pretrain:
    input:
        texts=mlm_text_files(),
        tokenizer=f"{RESULTS}/tokenizer",
    output:
        model=directory(f"{RESULTS}/mlm/model"),
        metrics=f"{RESULTS}/mlm/metrics.json",
    log:
        f"{LOGS}/mlm_pretrain.log",
    benchmark:
        f"{BENCHMARKS}/mlm_pretrain.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("mlm_pretrain"),
    params:
        **runtime_params(),
        model=config["model"],
        mlm=config["mlm"],
        max_length=config["tokenizer"]["max_length"],
        seed=config["seed"],
        engine=config["engine"],
        scratch=scratch("mlm_pretrain"),
    script:
        "../../scripts/mlm_pretrain.py"
