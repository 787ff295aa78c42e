"""The workflow on a real Slurm cluster: one node on localhost (munged, slurmctld and slurmd
started by .ci/slurm-up.sh, stopped by .ci/slurm-down.sh), driven through profiles/slurm.

test_workflow_on_slurm: every rule runs as a Slurm job; two training jobs are stopped mid-run,
one by `scancel` (the SIGTERM of a cancellation or preemption: a Snakemake retry resumes it)
and one by SIGUSR1 (the warning the profile asks for before the time limit: the job requeues
itself and resumes under the same job id), and the submission is byte-identical to a local run
with the same config.

test_fold_jobs_side_by_side_through_time_limits: the two fold jobs of finetune (cv.folds 2) run
side by side under a one-minute time limit with Slurm's own time-limit signal, each needing at
least 6 runs (epochs sized by a first, unlimited call that measures the training speed), in one
`snakemake` call with `retries: 1`; the one retry goes to a fold job killed by `scancel`,
which resumes from its own fold's checkpoint.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, run_snakemake, snakemake_env

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]
T = TypeVar("T")

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


def _test_profile(workdir: Path, name: str = "test_profile", **settings: Any) -> Path:
    """profiles/slurm with the test cluster's partition and tiny resources: its resources
    sections with the partition replaced, plus what a cluster without accounting needs, plus
    `settings` (profile keys; `warn_seconds` replaces the N of training's --signal=USR1@N)."""
    profile = yaml.safe_load((workdir / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["slurm-requeue"] is True  # sbatch --requeue: a job may requeue itself
    default = {**profile["default-resources"], "slurm_partition": PARTITION, "runtime": 30, "mem_mb": 1000}
    per_rule = {rule: {**res, "slurm_partition": PARTITION} for rule, res in profile["set-resources"].items()}
    assert "--signal=USR1@" in per_rule["finetune"]["slurm_extra"]
    assert "--open-mode=append" in per_rule["finetune"]["slurm_extra"]  # a log keeps every attempt
    warn = settings.pop("warn_seconds", None)
    for res in per_rule.values():
        if warn is not None and "slurm_extra" in res:
            res["slurm_extra"] = re.sub(r"USR1@\d+", f"USR1@{warn}", res["slurm_extra"])
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
        **settings,
    }
    path = workdir / name
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


def _run_interrupting(
    cmd: list[str],
    wf: Path,
    env: dict[str, str],
    out_path: Path,
    timeout: int,
    interrupt: Callable[[float], T],
) -> tuple[str, T]:
    """Runs the `snakemake` call `cmd` in `wf` (its output to `out_path`), calls `interrupt` with
    a deadline while it runs, and returns its output, once it has succeeded, and what `interrupt`
    returned."""
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=wf, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            interrupted = interrupt(time.monotonic() + 600)
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
    output = out_path.read_text()
    assert rc == 0, f"snakemake on Slurm failed ({rc}):\n{output[-6000:]}"
    return output, interrupted


def _job_state(env: dict[str, str], job_id: str) -> str:
    return _slurm(env, "squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").strip()


def _stop_step(log_text: str, sig: str, rule: str) -> int:
    """The step at which a job's training stopped on `sig` with a checkpoint (its first stop)."""
    saved = re.search(rf"{sig} received: stopped at step (\d+) of \d+ with a checkpoint", log_text)
    assert saved, f"{rule} job did not checkpoint on {sig}:\n{log_text[-3000:]}"
    assert int(saved.group(1)) > 0
    return int(saved.group(1))


def _runs(env: dict[str, str]) -> list[dict[str, str]]:
    """Slurm's record of every run of a job that ended, each requeued attempt too (slurm-up.sh's
    jobcomp/filetxt): JobId, JobState, StartTime, EndTime, ... One per run: jobcomp sometimes
    writes a requeued run's record twice (same job, start and end)."""
    lines = (Path(env["CLUSTER_DIR"]) / "jobcomp.log").read_text().splitlines()
    records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines]
    runs = {(r.get("JobId"), r.get("StartTime"), r.get("EndTime"), r.get("JobState")): r for r in records}
    return list(runs.values())


def _submitted(output: str) -> dict[str, Path]:
    """Slurm job id -> its Slurm log, for every job Snakemake submitted."""
    return {job_id: Path(log) for job_id, log in SUBMITTED.findall(output)}


def test_workflow_on_slurm(slurm_env: dict[str, str], tmp_path: Path) -> None:
    wf = copy_workflow(tmp_path / "slurm")
    (wf / "test_overlay.yaml").write_text(yaml.safe_dump(CONFIG))
    profile = _test_profile(wf)
    # What a cluster user types (README), with the test's partition overlay as the workflow
    # profile. `timeout -k`: Snakemake waiting on a job status ignores SIGTERM.
    cmd = ["timeout", "-k", "10", "900", sys.executable, "-m", "snakemake"]
    cmd += ["--profile", "profiles/slurm", "--workflow-profile", str(profile)]
    cmd += ["--configfile", "config/config.yaml", "test_overlay.yaml"]

    def interrupt(deadline: float) -> tuple[str, str]:
        cancelled = _interrupt(slurm_env, "mlm_pretrain", wf / "logs" / "mlm_pretrain.log", [], deadline)
        # SIGUSR1 to every process of the job step, as --signal=USR1@120 does near the limit.
        warned = _interrupt(slurm_env, "finetune", wf / "logs" / "finetune.log", ["-s", "USR1"], deadline)
        return cancelled, warned

    output, (cancelled, warned) = _run_interrupting(
        cmd, wf, slurm_env, tmp_path / "snakemake.out", 900, interrupt
    )

    # Every job Snakemake scheduled ("rule X:"; "localrule" would run on this machine) was
    # submitted to Slurm, and Slurm's controller allocated each of them.
    jobs = _submitted(output)
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

    # The two interrupted jobs saved a checkpoint on their signal. The cancelled one ended and
    # Snakemake's retry (another job) resumed there. The warned one requeued itself: the same
    # job ran again and resumed, and Snakemake submitted nothing more. Slurm logs hold each
    # attempt's stderr (the rule log is rewritten by each attempt).
    stopped = jobs[cancelled].read_text()
    k = _stop_step(stopped, "SIGTERM", rule="mlm_pretrain")
    assert _job_state(slurm_env, cancelled) == "CANCELLED"
    retries = [log for j, log in jobs.items() if j != cancelled and log.parent == jobs[cancelled].parent]
    assert len(retries) == 1, retries
    resumed = retries[0].read_text()
    assert re.search(rf"resumed at step {k} of \d+", resumed), resumed[-3000:]

    both = jobs[warned].read_text()  # --open-mode=append: both attempts
    k = _stop_step(both, "SIGUSR1", rule="finetune")
    assert f"; Slurm job {warned} requeued: it restarts under the same job id" in both, both[-3000:]
    assert re.search(rf"resumed at step {k} of \d+", both.split(f"Slurm job {warned} requeued")[-1])
    assert [j for j, log in jobs.items() if log.parent == jobs[warned].parent] == [warned]
    states = [r["JobState"] for r in _runs(slurm_env) if r["JobId"] == warned]
    assert len(states) == 2 and states[0] in REQUEUED and states[1] == "COMPLETED", states

    # Same config, same numbers: the interrupted-and-resumed cluster run equals a local run.
    local = copy_workflow(tmp_path / "local")
    run_snakemake(local, config=CONFIG)
    submissions = [(d / "results" / "submission.csv").read_bytes() for d in (wf, local)]
    assert submissions[0] == submissions[1]
    for stage in ("finetune", "retrain"):
        probs = [pd.read_parquet(d / "results" / stage / "test_probs.parquet") for d in (wf, local)]
        pd.testing.assert_frame_equal(*probs)


def test_requeue_only_a_slurm_job_at_its_time_limit(
    slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a stop line ends with when there is nothing to requeue, or the requeue fails (the
    job then ends as a failure, and a Snakemake retry resumes it)."""
    from newstopic.slurm import job_to_requeue, requeue

    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert job_to_requeue(signal.SIGUSR1) is None  # not a Slurm job
    monkeypatch.setenv("SLURM_JOB_ID", "999999")
    assert job_to_requeue(signal.SIGTERM) is None  # a cancellation or preemption
    assert job_to_requeue(signal.SIGUSR1) == "999999"  # the time-limit warning
    note = requeue("999999")  # a job the real controller does not know
    assert note is not None and "\n" not in note
    assert note.startswith("could not requeue Slurm job 999999 (scontrol requeue 999999: "), note
    assert note.endswith("); a Snakemake retry resumes it"), note


# Fold jobs under a time limit: cv.folds 2 (finetune's two fold jobs), no MLM (not needed
# here), one thread per job.
CV_CONFIG: dict[str, Any] = {
    "runtime": {"threads": 1, "log_every": 100},
    "mlm": {"enabled": False},
    "cv": {"folds": 2},
}
FOLD_TARGETS = [f"results/finetune/fold{k}/metrics.json" for k in range(2)]
MIN_ATTEMPTS = 6
# What jobcomp records for a run that ended in a requeue (Slurm 22.05: the state the job went
# back to).
REQUEUED = {"PENDING", "REQUEUED"}
# Each fold job gets Slurm's shortest time limit, one minute (resources.finetune.runtime), and
# the profile's time-limit warning with its lead cut to WARN_LEAD s. Slurm checks time limits
# about every 30 s (a loop that sleeps a second between looks, so a period can run a little
# over) and warns at the first check within 30 s + the lead of the limit: 25 to 55 s into a
# job's first run. A lead of 1 s would leave the warning a window of about one check period,
# and a period that ran late could skip it: the job would then reach its limit unwarned (a
# TIMEOUT that costs a retry). A requeued job starts again ~REQUEUE_DELAY s after its stop
# (cred_expire=10 in slurm-up.sh, + the scheduler), too late to be warned at the next check,
# so each later run is warned at the one after, 60 - REQUEUE_DELAY s in, and a fold job cycles
# once a minute. Training starts at least MIN_STARTUP s into a run (Snakemake twice, then the
# script).
WARN_LEAD, REQUEUE_DELAY, MIN_STARTUP = 5, 14, 5
FIRST_WARNING = 60 - WARN_LEAD
STARTED = re.compile(r"starting at step 0 of \d+ \((\d+) steps per epoch\)")
SPEED = re.compile(r"\((\d+\.\d+) steps/s")
# The stop line, written once per stop to stderr, so once per attempt to the job's Slurm log:
# signal, step, checkpoint directory, and what happens next.
STOP_LINE = re.compile(
    r"^newstopic: stopped: (SIG\w+) received: stopped at step (\d+) of \d+ with a checkpoint in (\S+); (.*)$",
    re.MULTILINE,
)
RESUMED = re.compile(r"resumed at step (\d+) of \d+ from (\S+)")


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _snakemake_on_slurm(wf: Path, env: dict[str, str], profile: Path, config: dict[str, Any]) -> list[str]:
    """The command for `snakemake FOLD_TARGETS` through profiles/slurm + `profile`, `config`
    as the overlay. `timeout -k`: Snakemake waiting on a job status ignores SIGTERM."""
    (wf / "test_overlay.yaml").write_text(yaml.safe_dump(config))
    cmd = ["timeout", "-k", "10", "1500", sys.executable, "-m", "snakemake", *FOLD_TARGETS]
    cmd += ["--profile", "profiles/slurm", "--workflow-profile", str(profile)]
    return cmd + ["--configfile", "config/config.yaml", "test_overlay.yaml"]


def _epochs_for_attempts(wf: Path, env: dict[str, str], attempts: int) -> int:
    """finetune.epochs that take a fold job at least `attempts` one-minute runs on this machine:
    a first Snakemake call trains both fold jobs side by side for 40 epochs without a time limit
    and measures their speed (steps/s). Runs 1 .. attempts-1 then train at most from MIN_STARTUP
    s in to their warning, at up to 1.5 times that speed (the load of a shared machine varies),
    so at least one more run is needed."""
    config = CV_CONFIG | {"finetune": {"epochs": 40}}
    proc = subprocess.run(
        _snakemake_on_slurm(wf, env, _test_profile(wf, "calibration"), config),
        cwd=wf,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"calibration run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    jobs = _submitted(proc.stdout + proc.stderr).values()
    logs = [log.read_text() for log in jobs if "rule_finetune" in str(log)]
    assert len(logs) == 2, proc.stderr[-3000:]
    speed = max(float(SPEED.findall(text)[-1]) for text in logs)  # the mean over the run
    per_epoch = min(int(STARTED.findall(text)[0]) for text in logs)
    seconds = FIRST_WARNING - MIN_STARTUP + (attempts - 2) * (60 - REQUEUE_DELAY - MIN_STARTUP)
    return math.ceil(1.5 * speed * seconds / per_epoch)


def _time_limited_run(
    wf: Path, env: dict[str, str], epochs: int, out_path: Path
) -> tuple[dict[str, Path], dict[int, list[str]], str]:
    """One `snakemake` call, retries: 1, that trains both fold jobs for `epochs` under the
    one-minute limit (preprocess, tokenizer and folds reused) and cancels fold 1's first run
    once it trains. Returns the submitted jobs, each fold's job ids, and the cancelled job."""
    config = CV_CONFIG | {"finetune": {"epochs": epochs}, "resources": {"finetune": {"runtime": 1}}}
    profile = _test_profile(wf, f"limited{epochs}", retries=1, warn_seconds=WARN_LEAD)
    fold1_log = wf / "logs" / "finetune_fold1.log"
    fold1_log.unlink(missing_ok=True)  # an earlier call's
    # Cancelled before its first warning (25 s in at the earliest): that costs the one retry,
    # which resumes from fold 1's checkpoint. No time-limit stop may cost one.
    output, cancelled = _run_interrupting(
        _snakemake_on_slurm(wf, env, profile, config),
        wf,
        env,
        out_path,
        1500,
        lambda deadline: _interrupt(env, "finetune_wildcards_1", fold1_log, [], deadline),
    )
    jobs = _submitted(output)
    fold_jobs = {
        k: [j for j, log in jobs.items() if log.parent.name == str(k) and "rule_finetune" in str(log)]
        for k in range(2)
    }
    return jobs, fold_jobs, cancelled


def _fold_story(
    jobs: dict[str, Path], fold_jobs: dict[int, list[str]], output: str, env: dict[str, str]
) -> str:
    """What a failed assertion on the fold jobs needs to be understood after the fact (CI keeps
    no files): per job, Slurm's states for its runs, its stop lines, what Snakemake and the
    controller said about it, and its log's last lines."""
    runs = _runs(env)
    controller = (Path(env["CLUSTER_DIR"]) / "slurmctld.log").read_text().splitlines()
    lines = []
    for k, ids in fold_jobs.items():
        for j in ids:
            states = [f"{r['JobState']} {r['StartTime']}..{r['EndTime']}" for r in runs if r["JobId"] == j]
            text = jobs[j].read_text() if jobs[j].is_file() else ""
            stops = re.findall(r"^newstopic: stopped: .*$", text, re.MULTILINE)
            said = [line for line in output.splitlines() if f"'{j}'" in line or f" {j} " in line]
            ctld = [line for line in controller if re.search(rf"JobId={j}\b", line)][-12:]
            lines += [f"fold {k} job {j}: runs {states}", *stops, *said, *ctld, *text.splitlines()[-15:], ""]
    return "\n".join(lines)


def test_fold_jobs_side_by_side_through_time_limits(slurm_env: dict[str, str], tmp_path: Path) -> None:
    wf = copy_workflow(tmp_path / "folds")
    epochs = _epochs_for_attempts(wf, slurm_env, MIN_ATTEMPTS)
    for call in range(2):
        jobs, fold_jobs, cancelled = _time_limited_run(
            wf, slurm_env, epochs, tmp_path / f"snakemake{call}.out"
        )
        runs = [r for r in _runs(slurm_env) if r["JobId"] in fold_jobs[0] + fold_jobs[1]]
        if min(sum(r["JobId"] in ids for r in runs) for ids in fold_jobs.values()) >= MIN_ATTEMPTS:
            break
        # The machine trained faster than the calibration measured (the load of a shared
        # machine dropped): once more, twice as long.
        epochs *= 2

    # One submission per fold, plus the retry of the cancelled one: no time-limit stop was
    # resubmitted by Snakemake.
    story = _fold_story(jobs, fold_jobs, (tmp_path / f"snakemake{call}.out").read_text(), slurm_env)
    assert len(fold_jobs[0]) == 1 and len(fold_jobs[1]) == 2 and cancelled in fold_jobs[1], story
    runs = _runs(slurm_env)
    for k, ids in fold_jobs.items():
        fold_runs = [r for r in runs if r["JobId"] in ids]
        states = [r["JobState"] for r in fold_runs]
        assert len(fold_runs) >= MIN_ATTEMPTS, f"fold {k} finished in {len(fold_runs)} runs: {states}"
        assert states[-1] == "COMPLETED" and set(states[:-1]) <= REQUEUED | {"CANCELLED"}, story
        assert states.count("CANCELLED") == (1 if k == 1 else 0), states
        # Every time-limit stop requeued its own job, and the next run resumed at that very
        # step from this fold's own scratch directory.
        texts = {j: jobs[j].read_text() for j in ids}
        stops = [(j, *m) for j, text in texts.items() for m in STOP_LINE.findall(text)]
        warned = [(j, then) for j, sig, _, _, then in stops if sig == "SIGUSR1"]
        assert len(warned) == len([s for s in states if s in REQUEUED]), (stops, states)
        assert all(then.startswith(f"Slurm job {j} requeued: it restarts") for j, then in warned), warned
        resumes = [m for text in texts.values() for m in RESUMED.findall(text)]
        stop_steps = {int(step) for _, _, step, _, _ in stops}
        assert stop_steps == {int(step) for step, _ in resumes}, (stops, resumes)
        assert {d for *_, d, _ in stops} | {d for _, d in resumes} == {f"scratch/finetune_fold{k}"}

    # The cancelled fold job checkpointed on SIGTERM and its retry resumed there, in fold 1's
    # scratch directory.
    k = _stop_step(jobs[cancelled].read_text(), "SIGTERM", rule="finetune fold 1")
    retry = next(j for j in fold_jobs[1] if j != cancelled)
    assert re.search(rf"resumed at step {k} of \d+ from scratch/finetune_fold1", jobs[retry].read_text())

    # Side by side: the two fold jobs were submitted together and their first runs overlapped
    # (Slurm's start and end times).
    first = [next(r for r in runs if r["JobId"] == ids[0]) for ids in fold_jobs.values()]
    start = max(_time(r["StartTime"]) for r in first)
    end = min(_time(r["EndTime"]) for r in first)
    assert start < end, first
