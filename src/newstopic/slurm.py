"""A training job stopped at its Slurm time limit comes back by itself, without a retry.

The Slurm profile asks for SIGUSR1 shortly before a training job's time limit
(`--signal=USR1@120`); training saves a checkpoint at the next step and stops. If the job then
simply failed, Snakemake would submit it again, and every such stop would spend one of its
`retries`: a stage needing more attempts than that would fail. Instead the job puts itself
back in the queue (`scontrol requeue`, as PyTorch Lightning's SLURM auto-requeue does). Slurm
restarts it under the same job id from the top of its batch script, training resumes from the
checkpoint, and the executor plugin, which counts REQUEUED, PENDING and RUNNING as "still
running", keeps waiting on it: no retry is spent. Jobs must be requeueable: the profile's
`slurm-requeue: true` submits them with `sbatch --requeue`.

The plugin's own `slurm-requeue` does nothing more than that flag (Slurm then requeues a job
after a node failure or a preemption, never after a time limit or a failed exit), so the job
must do the requeue itself. A cancellation or a preemption (SIGTERM) is not requeued here:
`scancel` means stop, and a preemption is requeued by Slurm itself where the site allows it.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess

# What the profile's `--signal=USR1@<seconds>` sends before the time limit.
TIME_LIMIT_SIGNAL = signal.SIGUSR1


def job_id() -> str | None:
    """This process's Slurm job id (SLURM_JOB_ID, kept by the jobstep plugin), or None."""
    return os.environ.get("SLURM_JOB_ID") or None


def ignore_time_limit_signal_in_job() -> None:
    """Inside a Slurm job, make the calling process (Snakemake in the job) ignore SIGUSR1.

    `--signal=USR1@...` reaches every process of the job step: the Snakemake that runs the rule
    and the shell around its script as well as the training process. Python and bash end on an
    unhandled SIGUSR1, and Snakemake's death would end the job before training has saved its
    checkpoint and requeued the job. An ignored signal stays ignored in the children (the
    shell, the script), and the training loop installs its own handler (training.StopRequest).
    Outside Slurm nothing changes."""
    if job_id() is not None:
        signal.signal(TIME_LIMIT_SIGNAL, signal.SIG_IGN)


_held: list[int] = []  # time-limit warnings received before the training loop took over


def hold_time_limit_signal() -> None:
    """Keep a time-limit warning that comes while a training script is still starting up (the
    imports, data and model take seconds) for the training loop, which stops after its first
    step; without this it would be ignored, as Snakemake's SIG_IGN is inherited, and the job
    would run into the time limit. Call it first in the script; torch-free, so it is quick.

    At exit the signal is ignored (inside a Slurm job): CPython resets its own handlers to the
    default at interpreter exit, and the default ends the process on SIGUSR1, so a warning that
    came after the work was written failed a finished job. atexit runs before that reset, on
    every way out (return, SystemExit), and an ignored signal is left alone by it."""
    signal.signal(TIME_LIMIT_SIGNAL, lambda signum, _frame: _held.append(signum))
    atexit.register(ignore_time_limit_signal_in_job)


def held_signal() -> int | None:
    """The time-limit warning received since `hold_time_limit_signal`, if any."""
    return _held[0] if _held else None


REQUEUED = "Slurm job {job} requeued: it restarts under the same job id and resumes from this checkpoint"


def job_to_requeue(signum: int) -> str | None:
    """The Slurm job to requeue after training stopped on `signum` with a checkpoint: this
    job when that was the time-limit warning, else None (another signal, or not a Slurm job)."""
    job = job_id()
    return job if signum == TIME_LIMIT_SIGNAL and job is not None else None


def requeue(job: str) -> str | None:
    """`scontrol requeue` the job; None when it was requeued (Slurm then ends this process at
    once), else why not. A failed requeue is reported, not raised: the job then ends as before,
    as a failure that a Snakemake retry resumes from the same checkpoint."""
    cmd = ["scontrol", "requeue", job]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not requeue Slurm job {job} ({' '.join(cmd)}: {exc}); a Snakemake retry resumes it"
    if proc.returncode != 0:
        why = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        return f"could not requeue Slurm job {job} ({' '.join(cmd)}: {why}); a Snakemake retry resumes it"
    return None
