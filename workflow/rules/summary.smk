rule summary:
    input:
        metrics=[f"{RESULTS}/{stage}/metrics.json" for stage in summary_stages()],
        benchmarks=[f"{BENCHMARKS}/{name}.tsv" for name in benchmarked_rules()],
        pseudo=(
            [f"{RESULTS}/pseudo_label/report.json"]
            if config["pseudo_label"]["enabled"]
            else []
        ),
    output:
        json=f"{RESULTS}/summary.json",
        md=f"{RESULTS}/summary.md",
    log:
        f"{LOGS}/summary.log",
    conda:
        "../../envs/newstopic.yaml"
    params:
        stages=summary_stages(),
        rules=benchmarked_rules(),
    script:
        "../../scripts/summary.py"
