"""Study tools: measurements made of the pipeline, apart from the pipeline itself.

Each runs real Snakemake runs of the workflow (or reads finished ones) and writes a report:

    python -m newstopic.study.ablation     baseline vs no MLM vs MLM vs pseudo-labels -> docs/results.md
    python -m newstopic.study.seed_study   pseudo-label variants under several training seeds
    python -m newstopic.study.teachers     the pseudo-label teachers scored on valid
    python -m newstopic.study.mlm_memory   MLM's peak RSS and time per step; the kernel cache
    python -m newstopic.study.benchmarks   loop vs Trainer at its best, predict, snakemake -n, busy core
    python -m newstopic.study.compare_runs RUN_A RUN_B   parameters that differ, metrics side by side
    python -m newstopic.study.report_view report.html   the report in headless Chromium (screenshot)

    runs       Snakemake command lines and what a finished run left (one place for both)
    compare    the loop vs Trainer table of the `compare_engines` target
    usage      a job's exact CPU time and peak RSS (getrusage), for that table
    bench_worker   one measurement of the benchmark suite, in a process of its own
    bench_report   the suite's targets (PASS/MISS) and docs/benchmarks.md
    machine    the CPU model, cores and bf16 matmul unit a wall time was measured on
"""
