rule mlm_pretrain:
    input:
        train=mlm_text_files(),
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
        settings=training_settings("mlm"),
        encoder=None,
        scratch=scratch("mlm_pretrain"),
    script:
        "../../scripts/train.py"
