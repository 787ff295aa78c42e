rule mlm_pretrain:
    input:
        texts=mlm_text_files(),
        tokenizer=f"{RESULTS}/tokenizer",
    output:
        model=directory(f"{RESULTS}/mlm/model"),
        metrics=f"{RESULTS}/mlm/metrics.json",
    params:
        model=config["model"],
        mlm=config["mlm"],
        max_length=config["tokenizer"]["max_length"],
        seed=config["seed"],
        scratch=scratch("mlm_pretrain"),
        **runtime_params(),
    threads: config["runtime"]["threads"]
    resources:
        gpu=1,
    log:
        f"{LOGS}/mlm_pretrain.log",
    benchmark:
        f"{BENCHMARKS}/mlm_pretrain.tsv"
    script:
        "../../scripts/mlm_pretrain.py"
