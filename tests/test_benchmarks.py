"""newstopic.study.benchmarks: the report's targets and Markdown (figures given here, no timing),
the synthetic titles, and a --quick run on the demo's synthetic corpus (a functional check:
its figures are not looked at; speed targets live in the benchmark, never in tests)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from newstopic.study.bench_report import check_targets, to_markdown
from newstopic.study.benchmarks import synthetic_titles


def speed(samples_per_s: float) -> dict[str, Any]:
    return {
        "samples_per_s": samples_per_s,
        "s_per_step": 64 / samples_per_s,
        "median_s_per_step": 64 / samples_per_s,
        "positions_per_token": 1.1,
        "process_peak_rss_mb": 900.0,
        "steps": 100,
        "warmup_steps": 10,
    }


def report_of(results: dict[str, Any]) -> dict[str, Any]:
    return {
        "command": "python -m newstopic.study.benchmarks --steps 100",
        "quick": False,
        "machine": {"cpu": "Some CPU", "torch_threads": 2, "omp_wait_policy": None},
        "model": {"max_position_embeddings": 64, "tokenizer_max_length": 32},
        "targets": check_targets(results),
        "results": results,
    }


def test_targets_pass_and_miss_by_the_issues_ratios() -> None:
    results = {
        "finetune": {
            "loop": speed(1000.0),
            "trainer_grouped": speed(500.0),  # 2.0x: >= 1.5x
            "trainer_static": speed(250.0),  # 4.0x: < 5x
            "batch_size": 64,
            "static_length": 128,
        },
        "predict": {
            "sizes": [
                {"rows": 1_000_000, "process_peak_rss_mb": 1100.0},
                {"rows": 100_000, "process_peak_rss_mb": 1000.0},
            ]
        },
        "snakemake": {
            "full_dag": {"seconds": 3.4, "jobs": 14},
            "full_dag_again": {"seconds": 2.9, "jobs": 14},
        },
    }
    by_name = {t["name"]: t for t in check_targets(results)}
    assert by_name["fine-tuning: loop / Trainer at its best (samples/s)"]["status"] == "PASS"
    assert by_name["fine-tuning: loop / Trainer, static padding (samples/s)"]["status"] == "MISS"
    assert by_name["predict: peak RSS, largest / smallest size"] == {
        "name": "predict: peak RSS, largest / smallest size",
        "value": 1.1,
        "target": "≤ 1.2×",
        "status": "PASS",
    }
    assert by_name["snakemake -n, whole DAG (s)"]["status"] == "MISS"
    assert by_name["snakemake -n, whole DAG (s)"]["target"] == "< 3 s"
    # Sections not run, and a no-op rerun that was not measured, have no target line.
    assert not any(name.startswith(("MLM", "snakemake -n, finished")) for name in by_name)
    # Nor a "finished" run that still had jobs to run: its dry run is not the no-op rerun.
    results["snakemake"]["done_run"] = {"seconds": 1.5, "jobs": 16}
    assert not any(t["name"].startswith("snakemake -n, finished") for t in check_targets(results))
    results["snakemake"]["done_run"] = {"seconds": 1.5, "jobs": 0}
    finished = [t for t in check_targets(results) if t["name"].startswith("snakemake -n, finished")]
    assert [t["status"] for t in finished] == ["PASS"]


def test_markdown_has_the_command_machine_sections_and_notes() -> None:
    results = {
        "mlm": {"loop": speed(600.0), "trainer": speed(150.0), "batch_size": 128, "mask_prob": 0.4},
        "snakemake": {
            "full_dag": {"seconds": 2.5, "jobs": 14},
            "full_dag_again": {"seconds": 2.4, "jobs": 14},
        },
    }
    md = to_markdown(report_of(results))
    assert "python -m newstopic.study.benchmarks --steps 100" in md
    assert "| cpu | Some CPU |" in md
    assert "| MLM: loop / Trainer (samples/s) | 4.00 | ≥ 3× | PASS |" in md
    assert "## MLM" in md and "## Fine-tuning" not in md
    assert "4.00×" in md  # the loop against the Trainer, per row
    assert "no no-op rerun" in md  # said, not faked, when no finished run was measured
    assert "128-row position table" in md
    assert "not idle" not in md  # no load average given: no warning
    busy = report_of(results)
    busy["machine"] |= {"load_average_1m": 1.7, "usable_cores": 2}
    assert "load average 1.70 on 2 cores" in to_markdown(busy)


def test_busy_core_rows_and_targets_per_openmp_setting() -> None:
    """Each OpenMP setting: idle and busy-core step times and their ratio; the ≤ 2× target is
    checked for libgomp's default and for the workflow's setting."""
    runs = {"default": (0.3, 2.7), "workflow": (0.3, 0.5), "passive": (0.37, 0.42)}
    busy: dict[str, Any] = {"cpus": [0, 1], "competitor_cpu": 0}
    for setting, (idle, loaded) in runs.items():
        busy[setting] = speed(64 / idle)
        busy[f"{setting}_busy"] = speed(64 / loaded)
        busy[f"finetune_{setting}"] = speed(64 / (idle / 3))
        busy[f"finetune_{setting}_busy"] = speed(64 / (loaded / 2))
    by_name = {t["name"]: t for t in check_targets({"busy": busy})}
    assert by_name["MLM s/step, busy core / idle (libgomp default)"]["status"] == "MISS"
    assert by_name["MLM s/step, busy core / idle (workflow: GOMP_SPINCOUNT=3000)"]["status"] == "PASS"
    md = to_markdown(report_of({"busy": busy}))
    assert "| MLM | workflow: GOMP_SPINCOUNT=3000 (the Snakefile's) | 0.300 | 0.500 | 1.67× |" in md
    assert "| MLM | libgomp default (threads spin ~300k iterations) | 0.300 | 2.700 | 9.00× |" in md
    assert "| fine-tuning | libgomp default (threads spin ~300k iterations) | 0.100 | 1.350 | 13.50× |" in md


def test_synthetic_titles_are_real_words_at_real_lengths() -> None:
    real = ["코스피 2,500 회복", "손흥민 시즌 10호골", "정부 예산 발표 내년"]
    titles = synthetic_titles(real, 200, seed=1)
    assert len(titles) == 200
    words = {w for t in real for w in t.split()}
    assert all(set(t.split()) <= words for t in titles)
    assert {len(t.split()) for t in titles} == {3, 4}
    assert titles == synthetic_titles(real, 200, seed=1)


@pytest.mark.e2e
def test_quick_run_on_the_demo_corpus(repo: Path, tmp_path: Path) -> None:
    """Every section runs end to end on the demo's synthetic titles and writes both files."""
    from newstopic.formats import read_json
    from newstopic.study.benchmarks import main

    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "test", "topic_dict"):
        shutil.copy(repo / "data" / "demo" / f"demo_{name}.csv", data / f"{name}.csv")
    out = tmp_path / "benchmarks.md"
    argv = [
        "--quick",
        "--data",
        str(data),
        "--out",
        str(out),
        "--configfile",
        str(repo / "config" / "dacon.yaml"),
    ]
    main([*argv, "--repo", str(repo), "--done-workdir", ""])
    report = read_json(out.with_suffix(".json"))
    assert set(report["results"]) == {"finetune", "mlm", "predict", "snakemake", "busy"}
    assert [t["status"] in ("PASS", "MISS") for t in report["targets"]] == [True] * 7
    assert report["results"]["predict"]["sizes"][-1]["rows"] == 5_000
    assert "--quick: a functional check" in out.read_text()
