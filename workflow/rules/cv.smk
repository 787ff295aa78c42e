# K-fold cross-validation and the ensemble (config cv.folds, ensemble): none of these rules
# is in the DAG when cv.folds is 0.


rule make_folds:
    input:
        train=f"{RESULTS}/data/train.parquet",
    output:
        FOLDS,
    log:
        f"{LOGS}/make_folds.log",
    localrule: True
    conda:
        "../../envs/newstopic.yaml"
    params:
        folds=CV_FOLDS,
        seed=config["seed"],
    script:
        "../../scripts/make_folds.py"


if CV:

    # A stage's K fold models as one: out-of-fold predictions of every training row, the mean
    # of their valid and test probabilities, the stage's submission and metrics.
    rule fold_average:
        input:
            folds=FOLDS,
            valid=f"{RESULTS}/data/valid.parquet",
            oof=fold_files("{stage}", "oof_probs.parquet"),
            valid_probs=fold_files("{stage}", "valid_probs.parquet"),
            test_probs=fold_files("{stage}", "test_probs.parquet"),
            metrics=fold_files("{stage}", "metrics.json"),
        output:
            oof=f"{RESULTS}/{{stage}}/cv/oof_probs.parquet",
            valid_probs=f"{RESULTS}/{{stage}}/cv/valid_probs.parquet",
            test_probs=f"{RESULTS}/{{stage}}/test_probs.parquet",
            submission=f"{RESULTS}/{{stage}}/submission.csv",
            metrics=f"{RESULTS}/{{stage}}/metrics.json",
        log:
            f"{LOGS}/fold_average_{{stage}}.log",
        localrule: True
        conda:
            "../../envs/newstopic.yaml"
        script:
            "../../scripts/fold_average.py"


rule baseline_folds:
    input:
        train=f"{RESULTS}/data/train.parquet",
        valid=f"{RESULTS}/data/valid.parquet",
        test=f"{RESULTS}/data/test.parquet",
        folds=FOLDS,
    output:
        **member_files("baseline"),
    log:
        f"{LOGS}/baseline_folds.log",
    benchmark:
        f"{BENCHMARKS}/baseline_folds.tsv"
    conda:
        "../../envs/newstopic.yaml"
    params:
        baseline=config["baseline"],
    script:
        "../../scripts/baseline_folds.py"


rule ensemble:
    input:
        folds=FOLDS,
        valid=f"{RESULTS}/data/valid.parquet",
        oof=ensemble_inputs("oof"),
        valid_probs=ensemble_inputs("valid"),
        test_probs=ensemble_inputs("test"),
        fold_test_probs=ensemble_inputs("fold_test"),
    output:
        metrics=f"{ensemble_dir()}/metrics.json",
        report=f"{ensemble_dir()}/report.md",
        oof=f"{ensemble_dir()}/oof_probs.parquet",
        valid_probs=f"{ensemble_dir()}/valid_probs.parquet",
        test_probs=f"{ensemble_dir()}/test_probs.parquet",
        submission=f"{ensemble_dir()}/submission.csv",
        # Fold k's mixture, the next round's teacher of fold k's students.
        fold_test=[fold_test_probs(ensemble_dir(), k) for k in range(CV_FOLDS)],
    log:
        f"{LOGS}/ensemble{'_round{round}' if MULTI_ROUND else ''}.log",
    benchmark:
        f"{BENCHMARKS}/ensemble{'_round{round}' if MULTI_ROUND else ''}.tsv"
    conda:
        "../../envs/newstopic.yaml"
    params:
        members=ensemble_param(),
    script:
        "../../scripts/ensemble.py"
