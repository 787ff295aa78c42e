# compare_engines: the same custom model trained by the hand-written loop and by the Hugging
# Face Trainer, on the same split, tokenizer, seed and hyper-parameters; not part of `all`.
#
#   snakemake --cores 2 compare_engines
#
# Both engines fine-tune on top of the same encoder: the loop's MLM output when mlm.enabled
# (else model.name_or_path, or a random init). The MLM stage itself is compared too.


include: "compare_common.smk"


rule mlm_engine:
    input:
        train=mlm_text_files(),
        tokenizer=f"{RESULTS}/tokenizer",
    output:
        model=directory(f"{RESULTS}/compare_engines/{{engine}}/mlm/model"),
        metrics=f"{RESULTS}/compare_engines/{{engine}}/mlm/metrics.json",
        usage=f"{RESULTS}/compare_engines/{{engine}}/mlm/usage.json",
    log:
        f"{LOGS}/compare_engines/mlm_{{engine}}.log",
    benchmark:
        f"{BENCHMARKS}/compare_engines/mlm_{{engine}}.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("mlm_pretrain"),
    params:
        settings=lambda wildcards: training_settings("mlm", wildcards.engine),
        encoder=None,
        scratch=lambda wildcards: scratch(f"compare_engines/mlm_{wildcards.engine}"),
    script:
        "../../scripts/train_engine.py"


rule finetune_engine:
    input:
        train=[f"{RESULTS}/data/train.parquet"],
        valid=f"{RESULTS}/data/valid.parquet",
        tokenizer=f"{RESULTS}/tokenizer",
        encoder=compare_encoder(),
    output:
        model=directory(f"{RESULTS}/compare_engines/{{engine}}/model"),
        metrics=f"{RESULTS}/compare_engines/{{engine}}/metrics.json",
        usage=f"{RESULTS}/compare_engines/{{engine}}/usage.json",
    log:
        f"{LOGS}/compare_engines/finetune_{{engine}}.log",
    benchmark:
        f"{BENCHMARKS}/compare_engines/finetune_{{engine}}.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("finetune"),
    params:
        settings=lambda wildcards: training_settings("finetune", wildcards.engine),
        encoder=encoder_param,
        scratch=lambda wildcards: scratch(
            f"compare_engines/finetune_{wildcards.engine}"
        ),
    script:
        "../../scripts/train_engine.py"


rule compare_engines:
    input:
        metrics=[f"{compare_dir(s, e)}/metrics.json" for s, e in compare_runs()],
        usage=[f"{compare_dir(s, e)}/usage.json" for s, e in compare_runs()],
        benchmarks=[
            f"{BENCHMARKS}/compare_engines/{s}_{e}.tsv" for s, e in compare_runs()
        ],
        train=[f"{RESULTS}/data/train.parquet"],
        texts=mlm_text_files(),
        tokenizer=f"{RESULTS}/tokenizer",
    output:
        csv=f"{RESULTS}/compare_engines/engines.csv",
        md=f"{RESULTS}/compare_engines/engines.md",
    log:
        f"{LOGS}/compare_engines/compare.log",
    conda:
        "../../envs/newstopic.yaml"
    params:
        runs=compare_runs(),
        epochs=compare_epochs(),
        work={
            "batch_sizes": {
                "mlm": config["mlm"]["batch_size"],
                "finetune": config["finetune"]["batch_size"],
            },
            "max_length": config["tokenizer"]["max_length"],
            "seed": config["seed"],
            "mask_prob": config["mlm"]["mask_prob"],
        },
    script:
        "../../scripts/compare_engines.py"
