"""Training on several processes: one per GPU (or several on CPU), on one or more nodes.

A training script calls `start(processes, nodes)` first. With one process in all it returns
and nothing changes. With more, the first call re-runs the same script under torchrun (one
torchrun per node, through srun when there are several nodes) and exits with its status;
each worker then joins the process group (nccl on GPUs, gloo on CPU) and the training loop
uses the helpers below: every rank builds the same global batch (batches are a pure
function of (seed, epoch), MLM masks of (seed, step)) and takes its own rows, gradients
are averaged by DistributedDataParallel, and only rank 0 writes files.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from newstopic import slurm

# -- launching --------------------------------------------------------------------------------

WORKER_ENV = "LOCAL_RANK"  # set by torchrun in each worker


def is_worker() -> bool:
    """True in a process started by torchrun."""
    return WORKER_ENV in os.environ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def torchrun_command(script: str, processes: int, nodes: int, cpus: int = 1) -> list[str]:
    """The command that runs `script` in `processes` workers on each of `nodes` nodes
    (`cpus` per node: the job step's share of the allocation on each node)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}"]
    if nodes == 1:
        return [*torchrun, "--standalone", script]
    # Several nodes: this process runs on the allocation's first node, which hosts the
    # rendezvous; srun starts one torchrun per node inside the Slurm allocation.
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        raise RuntimeError(f"nodes={nodes} needs a Slurm allocation (SLURM_JOB_ID is not set)")
    return [
        *("srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={cpus}"),
        "--kill-on-bad-exit=1",
        *torchrun,
        f"--nnodes={nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={socket.gethostname()}:{_free_port()}",
        f"--rdzv-id={job_id}",
        script,
    ]


def start(processes: int = 1, nodes: int = 1, cpus: int = 1, device: str = "auto") -> None:
    """Make the calling script a training process (call it first, before any work).

    One process in all: return. More, outside torchrun: re-run this script under torchrun
    and exit with its status. In a torchrun worker: join the process group (nccl when
    `device` (runtime.device) means GPUs, else gloo) and return.
    """
    if is_worker():
        _init_process_group(device == "cuda" or (device == "auto" and torch.cuda.is_available()))
        return
    if processes * nodes == 1:
        return
    cmd = torchrun_command(os.path.abspath(sys.argv[0]), processes, nodes, cpus)
    print(f"newstopic: {processes * nodes} training processes: {' '.join(cmd)}", file=sys.stderr, flush=True)
    # torchrun forwards SIGTERM to the workers (they checkpoint and stop) but dies of SIGUSR1,
    # which Slurm may send to every process of the job: it ignores SIGUSR1 (workers set their
    # own handler), and a signal sent to this process reaches the workers as SIGTERM.
    child = subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(signal.SIGUSR1, signal.SIG_IGN))
    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        child.send_signal(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, forward)
    status = child.wait()
    # The workers saw SIGTERM, so the time-limit warning is this process's to act on: once
    # they have checkpointed and stopped, the job requeues itself (newstopic.slurm), unless
    # a cancellation came as well.
    only_warned = status != 0 and set(received) == {slurm.TIME_LIMIT_SIGNAL}
    job = slurm.job_to_requeue(slurm.TIME_LIMIT_SIGNAL) if only_warned else None
    if job is not None:  # the line first: the requeue ends the job at once
        print(f"newstopic: stopped: {slurm.REQUEUED.format(job=job)}", file=sys.stderr, flush=True)
        why_not = slurm.requeue(job)
        if why_not is not None:
            print(f"newstopic: stopped: {why_not}", file=sys.stderr, flush=True)
    sys.exit(status)


def _init_process_group(gpus: bool) -> None:
    if dist.is_initialized():
        return
    if gpus:
        torch.cuda.set_device(int(os.environ[WORKER_ENV]))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    atexit.register(_destroy)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# -- in the training loop ---------------------------------------------------------------------


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that logs and writes files."""
    return int(os.environ.get("RANK", "0")) == 0


def local_device(device: torch.device) -> torch.device:
    """`device`, except that 'cuda' in a torchrun worker is its own GPU (one per local rank)."""
    if device.type == "cuda" and device.index is None and is_worker():
        return torch.device("cuda", int(os.environ[WORKER_ENV]))
    return device


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


class Ranks:
    """The training processes as the loop sees them, with every piece of data-parallel
    bookkeeping. With one process (no process group) each method is the identity or does
    nothing, so the loop reads the same either way."""

    def __init__(self, device: torch.device) -> None:
        self.rank, self.world, self.main = rank(), world_size(), is_main()
        self.device = local_device(device)  # with several GPUs: this rank's

    def seed(self, seed: int, step: int = 0) -> None:
        """Seed the global RNG; dropout noise differs between ranks (and, after a resume, from
        the noise before it: the checkpoint holds rank 0's RNG state only)."""
        torch.manual_seed(seed + self.rank + self.world * step)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` under DistributedDataParallel, which averages gradients over ranks."""
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def shard(self, batch: Mapping[str, torch.Tensor], n_rows: int) -> tuple[dict[str, torch.Tensor], float]:
        """This rank's contiguous slice of the rows of a global batch, and its weight.

        A rank left with no rows (a batch smaller than the world) gets the first row with
        weight 0: it still runs forward and backward, which DistributedDataParallel needs.
        """
        lo, hi = self.rank * n_rows // self.world, (self.rank + 1) * n_rows // self.world
        if lo == hi:
            return {k: v[:1] for k, v in batch.items()}, 0.0
        return {k: v[lo:hi] for k, v in batch.items()}, 1.0

    def sum(self, values: Sequence[float]) -> list[float]:
        """Sum `values` over all ranks."""
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(t)
        return t.tolist()

    def any_signal(self, signum: int | None) -> int | None:
        """The stop signal that any rank received (the same answer on every rank), or None."""
        if self.world == 1:
            return signum
        t = torch.tensor([signum or 0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item()) or None

    def from_main(self, compute: Callable[[], Any]) -> Any:
        """`compute()` run on rank 0 alone, its result on every rank (a picklable object)."""
        if self.world == 1:
            return compute()
        box = [compute() if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, write: Callable[..., Any], *args: Any) -> None:
        """`write(*args)` on rank 0 alone: the one process that writes files."""
        if self.main:
            write(*args)

    def barrier(self) -> None:
        barrier()


def quiet_unless_main(log: logging.Logger) -> None:
    """Ranks other than 0 log warnings and errors only (rank 0 tells the story once)."""
    if not is_main():
        log.setLevel(logging.WARNING)
