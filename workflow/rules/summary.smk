rule summary:
    input:
        metrics=[f"{RESULTS}/{stage}/metrics.json" for stage in summary_stages()],
        benchmarks=lambda wildcards: list(benchmarked_rules().values()),
        pseudo=pseudo_reports(),
        rounds=[
            f"{RESULTS}/round{r}/pseudo_label/pseudo_labels.parquet"
            for r in range(1, ROUNDS + 1)
            if MULTI_ROUND
        ],
    output:
        json=f"{RESULTS}/summary.json",
        md=f"{RESULTS}/summary.md",
    log:
        f"{LOGS}/summary.log",
    conda:
        "../../envs/newstopic.yaml"
    params:
        **({"rounds": ROUNDS} if MULTI_ROUND else {}),
        stages=summary_stages(),
        rules=lambda wildcards: list(benchmarked_rules()),
    script:
        "../../scripts/summary.py"
