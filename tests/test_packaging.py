"""How the package is installed and how its rule scripts behave as processes: a plain (not
editable) install runs the demo, the conda environment file matches the package's
dependencies, scripts that load no model leave transformers unimported, and a bug's
traceback reaches the rule's log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_workflow


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_conda_environment_has_the_package_dependencies() -> None:
    """envs/newstopic.yaml (what `--sdm conda` builds) names every dependency of pyproject.toml
    but snakemake (which runs the workflow, outside the rules' environment) and no path."""
    deps = _names(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((REPO / "envs" / "newstopic.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    # conda-forge's names: pytorch; matplotlib-base is matplotlib without a GUI toolkit (Qt).
    conda_names = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
    listed = {conda_names.get(n, n) for n in _names([d for d in env if isinstance(d, str)] + pip)}
    assert deps - {"snakemake"} <= listed, deps - listed
    assert not [p for p in pip if p.startswith(("-e", ".", "/"))], "a path breaks in .snakemake/conda/"


NO_MODEL = """
import sys
from newstopic import baseline, formats, preprocess, pseudo, summary
from newstopic.logs import setup_logging
setup_logging()
print(sorted(m for m in ("transformers", "torch") if m in sys.modules))
"""


def test_scripts_that_load_no_model_do_not_import_transformers() -> None:
    """preprocess, baseline, pseudo_label and summary start fast: no transformers, no torch."""
    out = subprocess.run([sys.executable, "-c", NO_MODEL], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


BUG = """
from newstopic.logs import run_rule
def main():
    dict()["missing"]
run_rule({log!r}, main)
"""


def test_a_bugs_traceback_reaches_the_rule_log(tmp_path: Path) -> None:
    """On a cluster the rule's log is what a user reads: an unexpected exception's traceback is
    there as well as on stderr, and the job fails."""
    log = tmp_path / "rule.log"
    proc = subprocess.run([sys.executable, "-c", BUG.format(log=str(log))], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "KeyError: 'missing'" in proc.stderr
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "KeyError: 'missing'" in text


@pytest.mark.e2e
def test_a_plain_install_runs_the_demo(tmp_path: Path) -> None:
    """`pip install .` (not -e) into a fresh virtual environment, then the demo from a copy of
    the workflow without src/: the package, its config schema included, comes from the venv."""
    venv = tmp_path / "venv"
    # The venv sees the system's packages (torch, transformers...), but its own come first.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", str(REPO)]
    subprocess.run(pip, check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"  # whichever python a job starts
    where = subprocess.run(
        [python, "-c", "import newstopic.config as c; c.load_schema(); print(c.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    wf = copy_workflow(tmp_path / "wf")
    assert not (wf / "src").exists()
    run = subprocess.run(
        [python, "-m", "snakemake", "--cores", "2"], cwd=wf, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert (wf / "results" / "submission.csv").read_text().startswith("index,topic_idx\n")
