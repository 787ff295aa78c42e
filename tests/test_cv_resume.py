"""A fold job killed mid-training resumes from its own checkpoint, and the ensemble's
submission is byte-identical to an uninterrupted run's (the machinery of test_resume.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import copy_workflow, run_snakemake
from test_resume import LOOP, OVERLAY, RESUME, Interrupt, run_interrupted, run_to_end, tensors

from newstopic.config import deep_merge

pytestmark = pytest.mark.e2e

CV_OVERLAY = deep_merge(
    OVERLAY,
    {
        "cv": {"folds": 2},
        "ensemble": {"enabled": True, "members": ["finetune", "baseline"]},
        "pseudo_label": {"enabled": False},
    },
)


def test_killed_fold_job_resumes_and_the_ensemble_matches(tmp_path: Path) -> None:
    reference = copy_workflow(tmp_path / "reference")
    run_snakemake(reference, config=CV_OVERLAY)

    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "test_overlay.yaml").write_text(yaml.safe_dump(CV_OVERLAY, allow_unicode=True))
    cut = Interrupt("finetune_fold1", 12)  # SIGKILL once scratch/finetune_fold1 has step >= 12
    attempt = run_interrupted(workdir, LOOP, cut)
    assert attempt.returncode != 0, attempt.output[-3000:]
    steps = sorted(int(p.name.split("-")[1]) for p in (workdir / "scratch" / "finetune_fold1").glob("step-*"))
    assert steps and steps[-1] >= 12
    # Each fold job has its own checkpoints: fold 0's are not fold 1's.
    assert not (workdir / "scratch" / "finetune").exists()

    final = run_to_end(workdir, CV_OVERLAY, *RESUME)
    log = (workdir / "logs" / "finetune_fold1.log").read_text()
    resumed = [int(s) for s in re.findall(LOOP.resumed_re, log)]
    assert resumed == [steps[-1]], log[-2000:]
    assert "logs/finetune_fold1.log" in final.started
    assert "logs/finetune_fold0.log" not in final.started or "logs/finetune_fold0.log" not in attempt.finished

    res, ref = workdir / "results", reference / "results"
    for name in ("submission.csv", "ensemble/submission.csv", "ensemble/test_probs.parquet"):
        assert (res / name).read_bytes() == (ref / name).read_bytes(), name
    got, want = tensors(res / "finetune" / "fold1" / "model"), tensors(ref / "finetune" / "fold1" / "model")
    assert all(torch.equal(got[k], want[k]) for k in want)
