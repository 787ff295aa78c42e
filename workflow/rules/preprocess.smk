rule preprocess:
    input:
        train=config["data"]["train"],
        test=config["data"]["test"],
    output:
        train=f"{RESULTS}/data/train.parquet",
        valid=f"{RESULTS}/data/valid.parquet",
        test=f"{RESULTS}/data/test.parquet",
    log:
        f"{LOGS}/preprocess.log",
    benchmark:
        f"{BENCHMARKS}/preprocess.tsv"
    conda:
        "../../envs/newstopic.yaml"
    params:
        preprocess=config["preprocess"],
        seed=config["seed"],
    script:
        "../../scripts/preprocess.py"


rule build_tokenizer:
    input:
        texts=mlm_text_files(),
    output:
        directory(f"{RESULTS}/tokenizer"),
    log:
        f"{LOGS}/build_tokenizer.log",
    benchmark:
        f"{BENCHMARKS}/build_tokenizer.tsv"
    conda:
        "../../envs/newstopic.yaml"
    params:
        tokenizer=config["tokenizer"],
        model=config["model"],
    script:
        "../../scripts/build_tokenizer.py"
