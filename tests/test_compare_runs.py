"""`python -m newstopic.study.compare_runs` on two demo runs that differ in one parameter: the
parameter that differs, the metrics side by side with their differences, as a terminal table and
as Markdown; a git revision's committed results; bad input in one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_workflow, run_snakemake, snakemake_env

# No MLM and no pseudo-labels: the comparison is tested, not the recipe (and a run without MLM
# draws no MLM curve).
BASE = {"mlm": {"enabled": False}, "pseudo_label": {"enabled": False}, "finetune": {"epochs": 1}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run A, then run B: a copy of A with finetune.epochs 2 (only finetune and what follows rerun)."""
    root = tmp_path_factory.mktemp("compare")
    a = copy_workflow(root / "a")
    run_snakemake(a, config=BASE)
    b = root / "b"
    shutil.copytree(a, b, symlinks=True)
    run_snakemake(b, config=BASE | {"finetune": {"epochs": 2}})
    return a, b


def compare(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "newstopic.study.compare_runs", *args]
    return subprocess.run(cmd, cwd=cwd, env=snakemake_env(), capture_output=True, text=True, timeout=120)


def accuracy(run: Path) -> float:
    return json.loads((run / "results" / "summary.json").read_text())["stages"]["finetune"]["valid_accuracy"]


def test_terminal_table(runs: tuple[Path, Path]) -> None:
    a, b = runs
    out = compare(str(a), str(b))
    assert out.returncode == 0, out.stderr
    params, metrics = out.stdout.split("\nMetrics\n")
    rows = [line.split() for line in params.splitlines()[4:] if line.strip()]
    assert rows == [["finetune.epochs", "1", "2"]], params  # the one parameter that differs
    lines = {
        line.split()[0] + " " + line.split()[1]: line for line in metrics.splitlines()[3:] if line.strip()
    }
    delta = accuracy(b) - accuracy(a)
    finetune = lines["finetune valid_accuracy"].split()
    assert float(finetune[2]) == pytest.approx(accuracy(a), abs=1e-4)
    assert float(finetune[3]) == pytest.approx(accuracy(b), abs=1e-4)
    expected = "(=)" if delta == 0 else f"({delta:+.4f})"
    assert finetune[4] == expected, lines["finetune valid_accuracy"]
    # The baseline does not depend on finetune.epochs: the same number, no difference.
    assert lines["baseline valid_accuracy"].endswith("(=)")
    assert "total wall_s" in lines and "retrain valid_accuracy" not in lines


def test_markdown_and_all(runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = runs
    target = tmp_path / "cmp.md"
    out = compare(str(a / "results"), str(b), "--markdown", "-o", str(target))
    assert out.returncode == 0 and out.stdout == "", out.stderr
    text = target.read_text()
    assert f"| parameter | {a / 'results'} | {b} |" in text
    assert "| finetune.epochs | 1 | 2 |" in text
    assert re.search(r"^\| finetune valid_macro_f1 \| [0-9.]+ \| [0-9.]+ \((=|[+-][0-9.]+)\) \|$", text, re.M)
    full = compare(str(a), str(b), "--all").stdout
    assert "model.pooling" in full and "finetune wall_s" in full and "finetune peak_rss_mb" in full


def test_a_git_revisions_run(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """`HEAD:results`: run A's results committed, run B's in the work tree (like `dvc metrics diff`)."""
    a, b = runs
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    for name in ("config.yaml", "summary.json"):
        shutil.copy(a / "results" / name, repo / "results" / name)
    subprocess.run([*git, "add", "results"], check=True)
    subprocess.run([*git, "commit", "-qm", "run A"], check=True)
    for name in ("config.yaml", "summary.json"):
        shutil.copy(b / "results" / name, repo / "results" / name)
    out = compare("HEAD:results", "results", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^finetune\.epochs\s+1\s+2$", out.stdout, re.M), out.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["nowhere"], r"nowhere: no such directory, nor a git revision as REV:PATH"),
        (["empty"], r"empty: no config.yaml or summary.json"),
        (["broken"], r"broken: summary.json is not valid JSON"),
    ],
)
def test_bad_runs_are_one_line(runs: tuple[Path, Path], tmp_path: Path, args: list[str], error: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{oops")
    out = compare(str(runs[0]), *args, cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("newstopic: error: ") and re.search(error, lines[0]), (
        out.stderr
    )


def test_one_run_is_a_usage_error(runs: tuple[Path, Path]) -> None:
    out = compare(str(runs[0]))
    assert out.returncode == 2 and "at least two runs" in out.stderr
