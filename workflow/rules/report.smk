# What `snakemake --report report.html` shows, besides Snakemake's runtime statistics: outputs
# marked with report() under categories, each with a caption in workflow/report/. Plots are
# drawn by newstopic.plots (matplotlib, Agg). These rules are part of `all`; all but evaluate
# (a forward pass over the valid split) only read files and draw.


rule evaluate:
    input:
        model=f"{RESULTS}/{{stage}}/model",
        valid=f"{RESULTS}/data/valid.parquet",
    output:
        probs=f"{RESULTS}/{{stage}}/valid_probs.parquet",
    log:
        f"{LOGS}/evaluate_{{stage}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_{{stage}}.tsv"
    conda:
        "../../envs/newstopic.yaml"
    threads: config["runtime"]["threads"]
    resources:
        **resources_of("predict"),
    params:
        settings={
            "max_length": config["tokenizer"]["max_length"],
            "batch_size": config["predict"]["batch_size"],
            "device": config["runtime"]["device"],
        },
    script:
        "../../scripts/evaluate.py"


rule topic_scores:
    input:
        valid=f"{RESULTS}/data/valid.parquet",
        probs=valid_probs_of,
    output:
        table=f"{RESULTS}/report/{{stage}}_per_topic.csv",
        # The report shows HTML and pictures; a CSV it would only offer as a download.
        html=report(
            f"{RESULTS}/report/{{stage}}_per_topic.html",
            caption=report_caption("per_topic"),
            category="2. Valid scores by topic",
            subcategory="{stage}",
            labels={"stage": "{stage}", "what": "precision, recall, F1 per topic"},
        ),
        confusion=report(
            f"{RESULTS}/report/{{stage}}_confusion.png",
            caption=report_caption("confusion"),
            category="2. Valid scores by topic",
            subcategory="{stage}",
            labels={"stage": "{stage}", "what": "confusion matrix"},
        ),
    log:
        f"{LOGS}/topic_scores_{{stage}}.log",
    wildcard_constraints:
        stage=f"{stage_pattern()}|ensemble",
    conda:
        "../../envs/newstopic.yaml"
    params:
        names=TOPIC_NAMES,
    script:
        "../../scripts/topic_scores.py"


rule learning_curves:
    input:
        mlm=([f"{RESULTS}/mlm/metrics.json"] if config["mlm"]["enabled"] else []),
        stages=list(curve_metrics().values()),
    output:
        curves=report(
            f"{RESULTS}/report/training_curves.png",
            caption=report_caption("training_curves"),
            category="3. Learning curves",
            labels={"what": "finetune and retrain by epoch"},
        ),
        mlm=(
            [
                report(
                    f"{RESULTS}/report/mlm_loss.png",
                    caption=report_caption("mlm_loss"),
                    category="3. Learning curves",
                    labels={"what": "MLM loss by step"},
                )
            ]
            if config["mlm"]["enabled"]
            else []
        ),
    log:
        f"{LOGS}/learning_curves.log",
    conda:
        "../../envs/newstopic.yaml"
    params:
        stages=list(curve_metrics()),
        # Read, not an input: a rule's log is no other rule's output. The MLM metrics input
        # makes this rule run after mlm_pretrain, which wrote it.
        mlm_log=f"{LOGS}/mlm_pretrain.log",
    script:
        "../../scripts/learning_curves.py"


rule pseudo_label_plots:
    input:
        report=f"{RESULTS}/pseudo_label/report.json",
        rows=f"{RESULTS}/pseudo_label/pseudo_labels.parquet",
        probs=[
            f"{RESULTS}/{teacher}/test_probs.parquet"
            for teacher in config["pseudo_label"]["teachers"]
        ],
    output:
        png=report(
            f"{RESULTS}/report/pseudo_labels.png",
            caption=report_caption("pseudo_labels"),
            category="4. Pseudo-labels",
            labels={"what": "rows kept per topic, confidence"},
        ),
        agreement=f"{RESULTS}/report/teacher_agreement.csv",
        agreement_html=report(
            f"{RESULTS}/report/teacher_agreement.html",
            caption=report_caption("teacher_agreement"),
            category="4. Pseudo-labels",
            labels={"what": "agreement between teachers"},
        ),
    log:
        f"{LOGS}/pseudo_label_plots.log",
    conda:
        "../../envs/newstopic.yaml"
    params:
        teachers=config["pseudo_label"]["teachers"],
        names=TOPIC_NAMES,
    script:
        "../../scripts/pseudo_label_plots.py"


rule summary_table:
    input:
        f"{RESULTS}/summary.json",
    output:
        table=f"{RESULTS}/report/summary.csv",
        html=report(
            f"{RESULTS}/report/summary.html",
            caption=report_caption("summary"),
            category="1. Run summary",
            labels={"what": "valid scores, time and memory per stage"},
        ),
    log:
        f"{LOGS}/summary_table.log",
    conda:
        "../../envs/newstopic.yaml"
    script:
        "../../scripts/summary_table.py"


rule run_config:
    output:
        yaml=f"{RESULTS}/config.yaml",
        html=report(
            f"{RESULTS}/report/config.html",
            caption=report_caption("config"),
            category="6. Configuration",
            labels={"what": "the config of this run"},
        ),
    log:
        f"{LOGS}/run_config.log",
    conda:
        "../../envs/newstopic.yaml"
    params:
        # The whole validated config: a change of any key rewrites the file.
        config=config,
    script:
        "../../scripts/run_config.py"


# Not part of `all` (compare_engines trains four more models): `snakemake --cores all
# engines_table`, then `snakemake --report report.html all engines_table`.
rule engines_table:
    input:
        f"{RESULTS}/compare_engines/engines.csv",
    output:
        report(
            f"{RESULTS}/report/engines.html",
            caption=report_caption("engines"),
            category="5. Engines",
            labels={"what": "loop vs Hugging Face Trainer"},
        ),
    log:
        f"{LOGS}/engines_table.log",
    conda:
        "../../envs/newstopic.yaml"
    script:
        "../../scripts/engines_table.py"
