rule summary:
    input:
        metrics=[f"{RESULTS}/{stage}/metrics.json" for stage in summary_stages()],
        benchmarks=lambda wildcards: list(benchmarked_rules().values()),
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
        rules=lambda wildcards: list(benchmarked_rules()),
    script:
        "../../scripts/summary.py"
