"""Shared fixtures: the repository, the real data in ../shared (skipped when absent), and a
helper that runs the real Snakemake workflow in a temporary copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEWSTOPIC_SHARED", REPO.parent / "shared"))
YNAT = SHARED / "data" / "ynat"
TOKENIZERS = SHARED / "data" / "tokenizers"
# The tiny encoder of the unit tests (model.arch): seconds to build and run on a CPU.
TINY_ARCH = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_ARCH |= {"max_position_embeddings": 64, "dropout": 0.1}
WORKFLOW_FILES = ["Snakefile", "workflow", "scripts", "config", "data", "envs", "profiles"]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def ynat() -> Path:
    if not (YNAT / "train.csv").is_file():
        pytest.skip(f"real data not found: {YNAT} (the ../shared checkout is absent)")
    return YNAT


@pytest.fixture(scope="session")
def kcbert_vocab() -> Path:
    vocab = TOKENIZERS / "kcbert-base" / "vocab.txt"
    if not vocab.is_file():
        pytest.skip(f"vocabulary not found: {vocab} (the ../shared checkout is absent)")
    return vocab


def copy_workflow(dest: Path) -> Path:
    """A fresh copy of the workflow (what a user clones), without results."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def snakemake_env() -> dict[str, str]:
    env = dict(os.environ)
    # Scripts import the package of this checkout, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_snakemake(
    workdir: Path,
    *args: str,
    config: dict[str, Any] | None = None,
    check: bool = True,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run `snakemake --cores 2 [args]` in `workdir`, with `config` as an extra config file."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    if config is not None:
        overlay = workdir / "test_overlay.yaml"
        overlay.write_text(yaml.safe_dump(config, allow_unicode=True))
        cmd += ["--configfile", "config/config.yaml", str(overlay)]
    proc = subprocess.run(
        cmd, cwd=workdir, env=snakemake_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "wf")
