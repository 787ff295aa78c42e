# With folds, a stage's test probabilities are its fold models' mean (rule fold_average).
if not CV:

    rule predict:
        input:
            model=f"{RESULTS}/{{stage}}/model",
            test=f"{RESULTS}/data/test.parquet",
        output:
            probs=f"{RESULTS}/{{stage}}/test_probs.parquet",
            submission=f"{RESULTS}/{{stage}}/submission.csv",
        log:
            f"{LOGS}/predict_{{stage}}.log",
        benchmark:
            f"{BENCHMARKS}/predict_{{stage}}.tsv"
        conda:
            "../../envs/newstopic.yaml"
        threads: config["runtime"]["threads"]
        resources:
            **resources_of("predict"),
        params:
            settings={
                "max_length": config["tokenizer"]["max_length"],
                "batch_size": config["predict"]["batch_size"],
                "read_batch_rows": config["predict"]["read_batch_rows"],
                "device": config["runtime"]["device"],
            },
        script:
            "../../scripts/predict.py"


rule submission:
    input:
        final_submission(),
    output:
        f"{RESULTS}/submission.csv",
    log:
        f"{LOGS}/submission.log",
    conda:
        "../../envs/newstopic.yaml"
    shell:
        "(cp {input} {output}.tmp && mv {output}.tmp {output}) > {log} 2>&1"
