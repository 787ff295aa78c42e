"""The workflow on a real Slurm cluster: one node on localhost (munged, slurmctld and slurmd
started by .ci/slurm-up.sh, stopped by .ci/slurm-down.sh), driven through profiles/slurm.

Every rule runs as a Slurm job; two training jobs are stopped mid-run, one by `scancel` (the
SIGTERM of a cancellation or preemption) and one by SIGUSR1 (the warning the profile asks
for before the time limit); their retries resume from the checkpoint written on the signal,
and the submission is byte-identical to a local run with the same config.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, run_snakemake, snakemake_env

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

SLURM_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "debug"  # the test cluster's only partition (.ci/slurm-up.sh)

# Small and CPU-deterministic: one thread per job, so both runs compute the same numbers.
# log_every=5 shows training progress early enough to interrupt it mid-run.
CONFIG = {"runtime": {"threads": 1, "log_every": 5}}

# At least these (the main chain); every rule the run schedules must go to Slurm.
MAIN_RULES = {
    "preprocess",
    "build_tokenizer",
    "mlm_pretrain",
    "finetune",
    "predict",
    "pseudo_label",
    "retrain",
}
# Rules that only copy or summarise run on the submitting machine (localrules), never queued.
# The report's tables and plots too (topic_scores once per trained stage); `evaluate` (a forward
# pass over valid) is a cluster job.
LOCAL_RULES = sorted(
    ["all", "submission", "summary", "summary_table", "run_config", "learning_curves", "pseudo_label_plots"]
    + ["topic_scores"] * 2
)
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def _pids(cluster_dir: Path) -> list[int]:
    files = ["slurmctld.pid", "slurmd.pid", "munge/munged.pid"]
    return [int((cluster_dir / f).read_text()) for f in files if (cluster_dir / f).is_file()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory):
    """A running single-node cluster; yields the environment for Slurm clients."""
    missing = [p for p in SLURM_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} not found; .ci/run installs it)")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd and munged needs root")
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
        pytest.skip(f"{SYSTEM_CONF} exists: a configured Slurm on this machine, not replaced by the test")
    cluster = tmp_path_factory.mktemp("slurm")
    up_cmd = ["bash", str(REPO / ".ci" / "slurm-up.sh"), str(cluster)]
    up = subprocess.run(up_cmd, capture_output=True, text=True, timeout=120)
    pids = _pids(cluster)
    try:
        assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout}\n{up.stderr}"
        yield {**snakemake_env(), "SLURM_CONF": str(cluster / "slurm.conf"), "CLUSTER_DIR": str(cluster)}
    finally:
        down_cmd = ["bash", str(REPO / ".ci" / "slurm-down.sh"), str(cluster)]
        down = subprocess.run(down_cmd, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, f"slurm-down.sh failed:\n{down.stdout}\n{down.stderr}"
        assert not [p for p in pids if _alive(p)], f"daemons still running after slurm-down.sh: {pids}"
        assert not (SYSTEM_CONF.is_symlink() and os.readlink(SYSTEM_CONF).startswith(str(cluster)))


def _test_profile(workdir: Path) -> Path:
    """profiles/slurm with the test cluster's partition and tiny resources: its resources
    sections with the partition replaced, plus what a cluster without accounting needs."""
    profile = yaml.safe_load((workdir / "profiles" / "slurm" / "config.yaml").read_text())
    default = {**profile["default-resources"], "slurm_partition": PARTITION, "runtime": 30, "mem_mb": 1000}
    per_rule = {rule: {**res, "slurm_partition": PARTITION} for rule, res in profile["set-resources"].items()}
    assert "--signal=USR1@" in per_rule["finetune"]["slurm_extra"]
    overlay = {
        "default-resources": default,
        "set-resources": per_rule,
        # No slurmdbd here: job states come from squeue (finished jobs stay listed for
        # MinJobAge), and the first status check comes after 2 s rather than 40 s.
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 2,
        "slurm-keep-successful-logs": True,
        "show-failed-logs": False,  # keeps job logs (their own "rule X:" lines) out of the output
    }
    path = workdir / "test_profile"
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(overlay))
    return path


def _slurm(env: dict[str, str], *cmd: str) -> str:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=30).stdout


def _interrupt(env: dict[str, str], rule: str, log: Path, scancel_args: list[str], deadline: float) -> str:
    """Wait until `rule`'s Slurm job runs and its training has logged a step, then scancel it."""
    while time.monotonic() < deadline:
        for line in _slurm(env, "squeue", "-h", "-t", "RUNNING", "-o", "%i %k").splitlines():
            job_id, _, comment = line.partition(" ")
            progress = log.is_file() and re.search(r"step \d+/", log.read_text())
            if comment.strip() == f"rule_{rule}" and progress:
                _slurm(env, "scancel", *scancel_args, job_id)
                return job_id
        time.sleep(0.2)
    raise AssertionError(f"no running {rule} job with training progress in {log} before the deadline")


def _job_state(env: dict[str, str], job_id: str) -> str:
    return _slurm(env, "squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").strip()


def test_workflow_on_slurm(slurm_env: dict[str, str], tmp_path: Path) -> None:
    wf = copy_workflow(tmp_path / "slurm")
    (wf / "test_overlay.yaml").write_text(yaml.safe_dump(CONFIG))
    profile = _test_profile(wf)
    # What a cluster user types (README), with the test's partition overlay as the workflow
    # profile. `timeout -k`: Snakemake waiting on a job status ignores SIGTERM.
    cmd = ["timeout", "-k", "10", "900", sys.executable, "-m", "snakemake"]
    cmd += ["--profile", "profiles/slurm", "--workflow-profile", str(profile)]
    cmd += ["--configfile", "config/config.yaml", "test_overlay.yaml"]
    out_path = tmp_path / "snakemake.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=wf, env=slurm_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            cancelled = _interrupt(slurm_env, "mlm_pretrain", wf / "logs" / "mlm_pretrain.log", [], deadline)
            # SIGUSR1 to every process of the job step, as --signal=USR1@120 does near the limit.
            warned = _interrupt(slurm_env, "finetune", wf / "logs" / "finetune.log", ["-s", "USR1"], deadline)
            rc = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
    output = out_path.read_text()
    assert rc == 0, f"snakemake on Slurm failed ({rc}):\n{output[-6000:]}"

    # Every job Snakemake scheduled ("rule X:"; "localrule" would run on this machine) was
    # submitted to Slurm, and Slurm's controller allocated each of them.
    jobs = {job_id: Path(log) for job_id, log in SUBMITTED.findall(output)}
    submitted = Counter(
        next(p.name[5:] for p in log.parents if p.name.startswith("rule_")) for log in jobs.values()
    )
    assert submitted == Counter(re.findall(r"^rule (\w+):$", output, re.MULTILINE)), output[-4000:]
    assert set(submitted) >= MAIN_RULES, submitted
    assert sorted(re.findall(r"^localrule (\w+):$", output, re.MULTILINE)) == LOCAL_RULES
    ctld_log = (Path(slurm_env["CLUSTER_DIR"]) / "slurmctld.log").read_text()
    for job_id in jobs:  # started by the main scheduler or by backfill
        started = rf"(Allocate|_start_job: Started) JobId={job_id} "
        assert re.search(started, ctld_log), f"Slurm never started job {job_id}"

    # The two interrupted jobs: each saved a checkpoint on its signal and the retry resumed
    # there. Slurm logs hold each attempt's stderr (the rule log is rewritten on retry).
    for job_id, rule, state, sig in [
        (cancelled, "mlm_pretrain", "CANCELLED", "SIGTERM"),
        (warned, "finetune", "FAILED", "SIGUSR1"),
    ]:
        assert _job_state(slurm_env, job_id) == state
        stopped = jobs[job_id].read_text()
        saved = re.search(rf"{sig} received: stopped at step (\d+) of \d+ with a checkpoint", stopped)
        assert saved, f"{rule} job {job_id} did not checkpoint on {sig}:\n{stopped[-3000:]}"
        k = int(saved.group(1))
        retries = [log for j, log in jobs.items() if j != job_id and log.parent == jobs[job_id].parent]
        assert len(retries) == 1, retries
        assert k > 0
        resumed = retries[0].read_text()
        assert re.search(rf"resumed at step {k} of \d+", resumed), resumed[-3000:]

    # Same config, same numbers: the interrupted-and-resumed cluster run equals a local run.
    local = copy_workflow(tmp_path / "local")
    run_snakemake(local, config=CONFIG)
    submissions = [(d / "results" / "submission.csv").read_bytes() for d in (wf, local)]
    assert submissions[0] == submissions[1]
    for stage in ("finetune", "retrain"):
        probs = [pd.read_parquet(d / "results" / stage / "test_probs.parquet") for d in (wf, local)]
        pd.testing.assert_frame_equal(*probs)
