"""Scheduler resources of the GPU-capable rules, from config 'resources' (torch-free: the
Snakefile imports it on every Snakemake start, Slurm job steps included)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# PyTorch's OpenMP threads spin ~300k iterations waiting for work by default: when another
# process takes one of the cores, a 2-thread job then runs up to 10x slower instead of ~2x.
# A short spin degrades fairly; 3000 costs 12-18% of an idle step on an AMX host, 1000 cost
# 32-41% there (docs/benchmarks_amx.md, docs/performance.md "A busy core"). The Snakefile sets
# it for every job; the benchmark suite's "workflow" setting is this one.
GOMP_SPINCOUNT = "3000"


def job_resources(res: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake resources of a job from its `resources.<rule>` config entry.

    The Slurm executor plugin maps them to sbatch flags: gpu -> --gpus, gpu_model ->
    --gpus=MODEL:N, gres -> --gres, nodes -> --nodes, runtime -> -t, mem_mb -> --mem.
    `processes` (per node) is ours: the training script reads it to start torchrun.
    """
    gpus, nodes = res["gpus"], res.get("nodes", 1)
    model = res.get("gpu_model")
    out: dict[str, Any] = {"processes": res.get("processes") or max(gpus, 1), "nodes": nodes}
    if nodes == 1:
        out["gpu"] = gpus
        if gpus and model:
            out["gpu_model"] = model
    else:
        # One task per node and the job runs its own srun (the plugin's 'mpi' path), which
        # starts one torchrun per node. GPUs per node as GRES: --gpus counts over all nodes.
        # tasks_per_gpu=0 keeps the plugin from turning `tasks` into --ntasks-per-gpu.
        out.update(mpi="srun", tasks=nodes, tasks_per_gpu=0)
        if gpus:
            out["gres"] = f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"
    for key in ("runtime", "mem_mb"):
        if res.get(key) is not None:
            out[key] = res[key]
    return out
